/*
 * VIRQ_TIMER from the singleshot timer (VCPUOP and set_timer_op) and the
 * periodic timer, waited for in SCHEDOP_block; SCHEDOP_poll timeouts;
 * Xen's error codes for bad timer arguments. Prints the measured delays
 * ("timers: singleshot N us", ...).
 */
#include "core.c"

static void block(void)
{
    hypercall2(__HYPERVISOR_sched_op, SCHEDOP_block, 0);
}

static long vcpu_op(unsigned cmd, unsigned vcpu, void *arg)
{
    return hypercall3(__HYPERVISOR_vcpu_op, cmd, vcpu, arg);
}

void guest_main(struct hvm_start_info *si)
{
    (void)si;
    core_setup();
    CHECK_EQ("callback vector", hvm_set_param(HVM_PARAM_CALLBACK_IRQ,
                                              HVM_CALLBACK_VECTOR(UPCALL_VECTOR)), 0);
    struct evtchn_bind_virq bv = {.virq = VIRQ_TIMER, .vcpu = 0};
    CHECK_EQ("bind VIRQ_TIMER", evtchn_op(EVTCHNOP_bind_virq, &bv), 0);
    uint32_t tp = bv.port;
    CHECK_EQ("bind VIRQ_TIMER twice", evtchn_op(EVTCHNOP_bind_virq, &bv), -XEN_EEXIST);
    sti();

    /* Singleshot, 20 ms ahead; SCHEDOP_block sleeps until it fires. */
    uint64_t t0 = now_ns();
    struct vcpu_set_singleshot_timer ss = {.timeout_abs_ns = t0 + 20000000ULL};
    CHECK_EQ("singleshot", vcpu_op(VCPUOP_set_singleshot_timer, 0, &ss), 0);
    for (int i = 0; i < 100 && !seen[tp]; i++)
        block();
    uint64_t dt = now_ns() - t0;
    CHECK_EQ("singleshot fired once", seen[tp], 1);
    check(dt >= 20000000ULL, "singleshot fired after %lu ns", (unsigned long)dt);
    printf("timers: singleshot %lu us\n", (unsigned long)(dt / 1000));

    /* Bad arguments. */
    ss.timeout_abs_ns = 1;
    ss.flags = VCPU_SSHOTTMR_future;
    CHECK_EQ("past with future flag", vcpu_op(VCPUOP_set_singleshot_timer, 0, &ss), -XEN_ETIME);
    CHECK_EQ("singleshot for vCPU 1", vcpu_op(VCPUOP_set_singleshot_timer, 1, &ss), -XEN_EINVAL);
    CHECK_EQ("singleshot for vCPU 9", vcpu_op(VCPUOP_set_singleshot_timer, 9, &ss), -XEN_ENOENT);
    struct vcpu_set_periodic_timer pt = {.period_ns = 500000};
    CHECK_EQ("period under 1 ms", vcpu_op(VCPUOP_set_periodic_timer, 0, &pt), -XEN_EINVAL);

    /* A deadline in the past fires at once. */
    ss.flags = 0;
    ss.timeout_abs_ns = 1;
    CHECK_EQ("past singleshot", vcpu_op(VCPUOP_set_singleshot_timer, 0, &ss), 0);
    for (int i = 0; i < 100 && seen[tp] < 2; i++)
        block();
    CHECK_EQ("past deadline fired", seen[tp], 2);

    /* set_timer_op, 10 ms. */
    t0 = now_ns();
    CHECK_EQ("set_timer_op", hypercall1(__HYPERVISOR_set_timer_op, t0 + 10000000ULL), 0);
    for (int i = 0; i < 100 && seen[tp] < 3; i++)
        block();
    dt = now_ns() - t0;
    CHECK_EQ("set_timer_op fired", seen[tp], 3);
    check(dt >= 10000000ULL, "set_timer_op fired after %lu ns", (unsigned long)dt);

    /* Periodic, 10 ms: three ticks. */
    pt.period_ns = 10000000ULL;
    t0 = now_ns();
    CHECK_EQ("periodic", vcpu_op(VCPUOP_set_periodic_timer, 0, &pt), 0);
    for (int i = 0; i < 300 && seen[tp] < 6; i++)
        block();
    dt = now_ns() - t0;
    CHECK_EQ("stop periodic", vcpu_op(VCPUOP_stop_periodic_timer, 0, 0), 0);
    CHECK_EQ("three periodic ticks", seen[tp], 6);
    check(dt >= 30000000ULL, "three ticks after %lu ns", (unsigned long)dt);
    printf("timers: periodic 3 ticks %lu us\n", (unsigned long)(dt / 1000));

    /* SCHEDOP_poll on a port nobody sends on: returns at the timeout. */
    int p = alloc_unbound(0);
    uint32_t port = (uint32_t)p;
    t0 = now_ns();
    struct sched_poll sp = {.ports = (uint64_t)(uintptr_t)&port, .nr_ports = 1,
                            .timeout = t0 + 15000000ULL};
    CHECK_EQ("poll", hypercall2(__HYPERVISOR_sched_op, SCHEDOP_poll, &sp), 0);
    dt = now_ns() - t0;
    check(dt >= 15000000ULL, "poll returned after %lu ns", (unsigned long)dt);
    printf("timers: poll timeout %lu us\n", (unsigned long)(dt / 1000));
    sp.nr_ports = 200;
    CHECK_EQ("poll 200 ports", hypercall2(__HYPERVISOR_sched_op, SCHEDOP_poll, &sp), -XEN_EINVAL);
    port = 5000;
    sp.nr_ports = 1;
    CHECK_EQ("poll bad port", hypercall2(__HYPERVISOR_sched_op, SCHEDOP_poll, &sp), -XEN_EINVAL);

    /* Runstate: vCPU 0 running, vCPU 1 (never started) offline. */
    struct vcpu_runstate_info rs;
    CHECK_EQ("runstate 0", vcpu_op(VCPUOP_get_runstate_info, 0, &rs), 0);
    CHECK_EQ("vCPU 0 running", rs.state, 0);
    check(rs.time[2] >= 20000000ULL, "blocked time %lu", (unsigned long)rs.time[2]);
    CHECK_EQ("runstate 1", vcpu_op(VCPUOP_get_runstate_info, 1, &rs), 0);
    CHECK_EQ("vCPU 1 offline", rs.state, 3);
    printf("timers: virq %u seen %u\n", tp, seen[tp]);
}
