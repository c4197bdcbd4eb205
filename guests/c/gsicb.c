/*
 * The event-channel callback as a level-triggered GSI
 * (HVM_PARAM_CALLBACK_IRQ type 0) through the IOAPIC: exactly one
 * interrupt per event, so the line is deasserted once the guest has
 * cleared evtchn_upcall_pending (a line left high would re-deliver after
 * every EOI). Prints "gsicb: upcalls N".
 */
#include "core.c"

#define CALLBACK_GSI 20
/* The bind's event plus sends; a stale re-assert shows up as extras. */
#define EVENTS 10
#define IOAPIC_SEL ((volatile uint32_t *)0xfec00000UL)
#define IOAPIC_WIN ((volatile uint32_t *)0xfec00010UL)

static void ioapic_write(uint32_t reg, uint32_t v)
{
    *IOAPIC_SEL = reg;
    *IOAPIC_WIN = v;
}

/* Exits until `n` upcalls arrived (an irqfd's injection can lag by
 * milliseconds on a busy host), then keeps exiting for QUIET_NS: a line
 * left asserted, or re-asserted late, would deliver again meanwhile. */
#define WAIT_NS 200000000ULL
#define QUIET_NS 30000000ULL
static void wait_for(unsigned long n)
{
    uint64_t t0 = now_ns();
    while (upcalls < n && now_ns() - t0 < WAIT_NS)
        exit_once();
    uint64_t t1 = now_ns();
    while (now_ns() - t1 < QUIET_NS)
        exit_once();
}

void guest_main(struct hvm_start_info *si)
{
    (void)si;
    core_setup();
    /* Pin 20 -> vector 0xf3 on APIC 0, level, active high, unmasked. */
    ioapic_write(0x11 + 2 * CALLBACK_GSI, 0);
    ioapic_write(0x10 + 2 * CALLBACK_GSI, UPCALL_VECTOR | (1u << 15));
    CHECK_EQ("callback GSI", hvm_set_param(HVM_PARAM_CALLBACK_IRQ, CALLBACK_GSI), 0);
    cli();
    int a = alloc_unbound(DOMID_SELF);
    struct evtchn_bind_interdomain bi = {.remote_dom = DOMID_SELF, .remote_port = a};
    CHECK_EQ("bind", evtchn_op(EVTCHNOP_bind_interdomain, &bi), 0);
    sti();
    wait_for(1);
    CHECK_EQ("upcall for the bind", upcalls, 1);
    for (int n = 2; n <= EVENTS; n++) {
        CHECK_EQ("send", send(a), 0);
        wait_for(n);
        CHECK_EQ("one upcall per event", upcalls, n);
    }
    CHECK_EQ("b seen", seen[bi.local_port], EVENTS);
    printf("gsicb: upcalls %lu\n", upcalls);
}
