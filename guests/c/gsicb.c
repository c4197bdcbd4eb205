/*
 * The event-channel callback as a level-triggered GSI
 * (HVM_PARAM_CALLBACK_IRQ type 0) through the IOAPIC: exactly one
 * interrupt per event, so the line is deasserted once the guest has
 * cleared evtchn_upcall_pending (a line left high would re-deliver after
 * every EOI). Prints "gsicb: upcalls N".
 */
#include "core.c"

#define CALLBACK_GSI 20
#define IOAPIC_SEL ((volatile uint32_t *)0xfec00000UL)
#define IOAPIC_WIN ((volatile uint32_t *)0xfec00010UL)

static void ioapic_write(uint32_t reg, uint32_t v)
{
    *IOAPIC_SEL = reg;
    *IOAPIC_WIN = v;
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
    for (int i = 0; i < 20 && upcalls < 1; i++)
        exit_once();
    CHECK_EQ("upcall for the bind", upcalls, 1);
    for (int n = 2; n <= 4; n++) {
        CHECK_EQ("send", send(a), 0);
        for (int i = 0; i < 20 && upcalls < (unsigned long)n; i++)
            exit_once();
        /* A few more exits: a line left asserted would fire again. */
        for (int i = 0; i < 5; i++)
            exit_once();
        CHECK_EQ("one upcall per event", upcalls, n);
    }
    CHECK_EQ("b seen", seen[bi.local_port], 4);
    printf("gsicb: upcalls %lu\n", upcalls);
}
