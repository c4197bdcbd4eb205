/*
 * A second vCPU started with VCPUOP_initialise + VCPUOP_up (64-bit
 * context), IPIs over event channels both ways, VCPUOP_is_up/down.
 * Needs vcpus = 2. The AP never enables interrupts: it polls its IPI
 * port with SCHEDOP_poll.
 */
#include "core.c"

static volatile uint32_t ap_ipi_port, bsp_ipi_port;
static volatile int ap_stage;
static uint8_t ap_stack[4096] __attribute__((aligned(16)));

static long vcpu_op(unsigned cmd, unsigned vcpu, void *arg)
{
    return hypercall3(__HYPERVISOR_vcpu_op, cmd, vcpu, arg);
}

/* vCPU 1 starts here (IF=0, its own stack, the BSP's page tables). */
__attribute__((noreturn, used)) static void ap_main(void)
{
    ap_stage = 1;
    /* Tell vCPU 0. */
    send(bsp_ipi_port);
    /* Wait for vCPU 0's IPI on our port. */
    uint32_t port = ap_ipi_port;
    struct sched_poll sp = {.ports = (uint64_t)(uintptr_t)&port, .nr_ports = 1, .timeout = 0};
    while (!((shinfo->evtchn_pending[port / 64] >> (port % 64)) & 1))
        hypercall2(__HYPERVISOR_sched_op, SCHEDOP_poll, &sp);
    ap_stage = 2;
    send(bsp_ipi_port);
    for (;;)
        vcpu_op(VCPUOP_down, 1, 0);
}

void guest_main(struct hvm_start_info *si)
{
    (void)si;
    core_setup();
    CHECK_EQ("callback vector", hvm_set_param(HVM_PARAM_CALLBACK_IRQ,
                                              HVM_CALLBACK_VECTOR(UPCALL_VECTOR)), 0);
    struct evtchn_bind_ipi ipi = {.vcpu = 0};
    CHECK_EQ("bind ipi vCPU 0", evtchn_op(EVTCHNOP_bind_ipi, &ipi), 0);
    bsp_ipi_port = ipi.port;
    ipi = (struct evtchn_bind_ipi){.vcpu = 1};
    CHECK_EQ("bind ipi vCPU 1", evtchn_op(EVTCHNOP_bind_ipi, &ipi), 0);
    ap_ipi_port = ipi.port;
    /* vCPU 1's events must not reach vCPU 0's handler: mask them there. */
    __atomic_fetch_or(&shinfo->evtchn_mask[0], 1ULL << ap_ipi_port, __ATOMIC_SEQ_CST);

    CHECK_EQ("vCPU 1 down", vcpu_op(VCPUOP_is_up, 1, 0), 0);
    CHECK_EQ("up before initialise", vcpu_op(VCPUOP_up, 1, 0), -XEN_EINVAL);
    CHECK_EQ("is_up vCPU 5", vcpu_op(VCPUOP_is_up, 5, 0), -XEN_ENOENT);

    uint64_t cr0, cr3, cr4, efer_lo, efer_hi;
    __asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("rdmsr" : "=a"(efer_lo), "=d"(efer_hi) : "c"(0xc0000080));
    struct vcpu_hvm_context ctx = {.mode = 1};
    ctx.cpu_regs.x86_64 = (struct vcpu_hvm_x86_64){
        .rip = (uint64_t)(uintptr_t)ap_main,
        .rsp = (uint64_t)(uintptr_t)(ap_stack + sizeof(ap_stack) - 8),
        .rflags = 2,
        .cr0 = cr0,
        .cr3 = cr3,
        .cr4 = cr4,
        .efer = efer_lo | (efer_hi << 32)};
    struct vcpu_hvm_context bad = ctx;
    bad.mode = 9;
    CHECK_EQ("initialise bad mode", vcpu_op(VCPUOP_initialise, 1, &bad), -XEN_EINVAL);
    CHECK_EQ("initialise", vcpu_op(VCPUOP_initialise, 1, &ctx), 0);
    CHECK_EQ("initialise twice", vcpu_op(VCPUOP_initialise, 1, &ctx), -XEN_EEXIST);
    sti();
    CHECK_EQ("up", vcpu_op(VCPUOP_up, 1, 0), 0);
    CHECK_EQ("vCPU 1 up", vcpu_op(VCPUOP_is_up, 1, 0), 1);

    /* The AP's first IPI. */
    for (int i = 0; i < 1000 && !seen[bsp_ipi_port]; i++)
        hypercall2(__HYPERVISOR_sched_op, SCHEDOP_block, 0);
    CHECK_EQ("IPI from vCPU 1", seen[bsp_ipi_port], 1);
    CHECK_EQ("AP ran", ap_stage, 1);
    /* Ours to it. */
    CHECK_EQ("send IPI to vCPU 1", send(ap_ipi_port), 0);
    for (int i = 0; i < 1000 && seen[bsp_ipi_port] < 2; i++)
        hypercall2(__HYPERVISOR_sched_op, SCHEDOP_block, 0);
    CHECK_EQ("second IPI from vCPU 1", seen[bsp_ipi_port], 2);
    CHECK_EQ("AP saw our IPI", ap_stage, 2);
    /* It takes itself down. */
    for (int i = 0; i < 1000 && vcpu_op(VCPUOP_is_up, 1, 0) != 0; i++)
        hypercall0(__HYPERVISOR_sched_op);
    CHECK_EQ("vCPU 1 down again", vcpu_op(VCPUOP_is_up, 1, 0), 0);
    printf("smp: ipis %u\n", seen[bsp_ipi_port]);
}
