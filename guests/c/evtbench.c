/*
 * Benchmark guest (not a test): event-channel send -> upcall round trip
 * against the same loop with a bare hypercall exit plus a LAPIC self-IPI
 * on the same vector, and a bare hypercall alone. Prints ns per iteration
 * ("evtbench: send+upcall N ns", ...). See docs/core-services.md.
 */
#include "core.c"

#define ITERS 2000
#define LAPIC_ICR_LO ((volatile uint32_t *)0xfee00300UL)

void guest_main(struct hvm_start_info *si)
{
    (void)si;
    core_setup();
    CHECK_EQ("callback vector", hvm_set_param(HVM_PARAM_CALLBACK_IRQ,
                                            HVM_CALLBACK_VECTOR(UPCALL_VECTOR)), 0);
    int a = alloc_unbound(DOMID_SELF);
    struct evtchn_bind_interdomain bi = {.remote_dom = DOMID_SELF, .remote_port = a};
    CHECK_EQ("bind", evtchn_op(EVTCHNOP_bind_interdomain, &bi), 0);
    sti();
    exit_once();

    unsigned long u0 = upcalls;
    uint64_t t0 = now_ns();
    for (int i = 0; i < ITERS; i++)
        send(a);
    uint64_t t1 = now_ns();
    CHECK_EQ("one upcall per send", upcalls - u0, ITERS);

    u0 = upcalls;
    uint64_t t2 = now_ns();
    for (int i = 0; i < ITERS; i++) {
        exit_once();
        *LAPIC_ICR_LO = 0x40000 | UPCALL_VECTOR; /* self, fixed */
    }
    uint64_t t3 = now_ns();
    CHECK_EQ("one interrupt per self-IPI", upcalls - u0, ITERS);

    uint64_t t4 = now_ns();
    for (int i = 0; i < ITERS; i++)
        exit_once();
    uint64_t t5 = now_ns();

    printf("evtbench: send+upcall %lu ns\n", (unsigned long)((t1 - t0) / ITERS));
    printf("evtbench: hypercall+self-ipi %lu ns\n", (unsigned long)((t3 - t2) / ITERS));
    printf("evtbench: hypercall %lu ns\n", (unsigned long)((t5 - t4) / ITERS));
}
