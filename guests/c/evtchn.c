/*
 * Event channels through the vector callback: loopback interdomain
 * channels to the guest itself with interrupts on and off, masked and
 * unmasked, the per-vCPU upcall vector, and Xen's error codes for bad
 * arguments. Prints "evtchn: upcalls N" at the end.
 */
#include "core.c"

static void bad_arguments(int port)
{
    CHECK_EQ("send on port 4000", send(4000), -XEN_EINVAL);
    struct evtchn_close c0 = {.port = 0};
    CHECK_EQ("close port 0", evtchn_op(EVTCHNOP_close, &c0), -XEN_EINVAL);
    struct evtchn_bind_interdomain bi = {.remote_dom = DOMID_SELF, .remote_port = port};
    CHECK_EQ("bind to a bound port", evtchn_op(EVTCHNOP_bind_interdomain, &bi), -XEN_EINVAL);
    bi.remote_dom = 77;
    CHECK_EQ("bind to domain 77", evtchn_op(EVTCHNOP_bind_interdomain, &bi), -XEN_ESRCH);
    struct evtchn_bind_virq bv = {.virq = 99, .vcpu = 0};
    CHECK_EQ("bind virq 99", evtchn_op(EVTCHNOP_bind_virq, &bv), -XEN_EINVAL);
    bv = (struct evtchn_bind_virq){.virq = VIRQ_TIMER, .vcpu = 7};
    CHECK_EQ("bind timer to vCPU 7", evtchn_op(EVTCHNOP_bind_virq, &bv), -XEN_ENOENT);
    struct evtchn_bind_ipi ipi = {.vcpu = 9};
    CHECK_EQ("bind ipi to vCPU 9", evtchn_op(EVTCHNOP_bind_ipi, &ipi), -XEN_ENOENT);
    struct evtchn_alloc_unbound au = {.dom = 77, .remote_dom = 0};
    CHECK_EQ("alloc_unbound for domain 77", evtchn_op(EVTCHNOP_alloc_unbound, &au), -XEN_ESRCH);
    struct evtchn_init_control ic = {.control_gfn = 0x100, .offset = 4, .vcpu = 0};
    CHECK_EQ("FIFO init_control misaligned", evtchn_op(EVTCHNOP_init_control, &ic), -XEN_EINVAL);
    ic.offset = 0;
    ic.vcpu = 5;
    CHECK_EQ("FIFO init_control vCPU 5", evtchn_op(EVTCHNOP_init_control, &ic), -XEN_ENOENT);
    ic.vcpu = 0;
    CHECK_EQ("FIFO init_control", evtchn_op(EVTCHNOP_init_control, &ic), -XEN_ENOSYS);
    CHECK_EQ("unknown op", evtchn_op(99, &ic), -XEN_ENOSYS);
}

void guest_main(struct hvm_start_info *si)
{
    (void)si;
    core_setup();
    CHECK_EQ("callback vector", hvm_set_param(HVM_PARAM_CALLBACK_IRQ,
                                              HVM_CALLBACK_VECTOR(UPCALL_VECTOR)), 0);

    /* Loopback: a is unbound for ourselves, b binds to it. Xen sets b
     * pending at bind time; with IF=0 the upcall waits. */
    cli();
    int a = alloc_unbound(DOMID_SELF);
    check(a > 0, "alloc_unbound: %d", a);
    struct evtchn_bind_interdomain bi = {.remote_dom = DOMID_SELF, .remote_port = a};
    CHECK_EQ("bind_interdomain loopback", evtchn_op(EVTCHNOP_bind_interdomain, &bi), 0);
    int b = bi.local_port;
    check(b > a, "local port %d", b);
    exit_once();
    CHECK_EQ("no upcall while IF=0", upcalls, 0);
    CHECK_EQ("bind left b pending", (shinfo->evtchn_pending[0] >> b) & 1, 1);
    sti();
    exit_once();
    CHECK_EQ("upcall once IF=1", upcalls, 1);
    CHECK_EQ("handler saw b", seen[b], 1);

    /* IF on: a send on a reaches b at once (at the hypercall's exit). */
    CHECK_EQ("send a", send(a), 0);
    CHECK_EQ("upcall for send", upcalls, 2);
    CHECK_EQ("b seen twice", seen[b], 2);
    CHECK_EQ("send b", send(b), 0);
    CHECK_EQ("a seen", seen[a], 1);

    /* IF off: the event waits in the bitmap; taken after sti. */
    cli();
    CHECK_EQ("send a (IF=0)", send(a), 0);
    CHECK_EQ("no upcall yet", upcalls, 3);
    CHECK_EQ("b pending", (shinfo->evtchn_pending[0] >> b) & 1, 1);
    CHECK_EQ("upcall flag", shinfo->vcpu_info[0].evtchn_upcall_pending, 1);
    sti();
    exit_once();
    CHECK_EQ("upcall after sti", upcalls, 4);
    CHECK_EQ("b seen 3 times", seen[b], 3);

    /* Masked: pending is set, no selector, no upcall; unmask delivers. */
    __atomic_fetch_or(&shinfo->evtchn_mask[0], 1ULL << b, __ATOMIC_SEQ_CST);
    CHECK_EQ("send a (masked)", send(a), 0);
    exit_once();
    CHECK_EQ("masked: no upcall", upcalls, 4);
    CHECK_EQ("masked: pending", (shinfo->evtchn_pending[0] >> b) & 1, 1);
    CHECK_EQ("masked: no selector", shinfo->vcpu_info[0].evtchn_pending_sel, 0);
    struct evtchn_port_only um = {.port = b};
    CHECK_EQ("unmask", evtchn_op(EVTCHNOP_unmask, &um), 0);
    exit_once();
    CHECK_EQ("unmask delivered", upcalls, 5);
    CHECK_EQ("b seen 4 times", seen[b], 4);

    /* The per-vCPU upcall vector replaces the callback for vCPU 0. */
    struct xen_hvm_evtchn_upcall_vector uv = {.vcpu = 0, .vector = 0x0f};
    CHECK_EQ("upcall vector 0x0f", hypercall2(__HYPERVISOR_hvm_op,
                                              HVMOP_set_evtchn_upcall_vector, &uv),
             -XEN_EINVAL);
    uv.vector = UPCALL_VECTOR;
    CHECK_EQ("upcall vector", hypercall2(__HYPERVISOR_hvm_op, HVMOP_set_evtchn_upcall_vector,
                                         &uv), 0);
    CHECK_EQ("send a (vector)", send(a), 0);
    CHECK_EQ("upcall via per-vCPU vector", upcalls, 6);

    bad_arguments(b);

    /* Closing a makes b unbound for us again; sending on b is dropped. */
    struct evtchn_close cl = {.port = a};
    CHECK_EQ("close a", evtchn_op(EVTCHNOP_close, &cl), 0);
    struct evtchn_status st = {.dom = DOMID_SELF, .port = b};
    CHECK_EQ("status b", evtchn_op(EVTCHNOP_status, &st), 0);
    CHECK_EQ("b unbound", st.status, EVTCHNSTAT_unbound);
    CHECK_EQ("send on unbound b", send(b), 0);
    CHECK_EQ("dropped", upcalls, 6);
    printf("evtchn: upcalls %lu\n", upcalls);
}
