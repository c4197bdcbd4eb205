/*
 * Benchmark guest (not a test), booted with VmConfig::debug_hypercall.
 * Compares, in rounds, two loops that each pay one hypercall exit and one
 * KVM_SIGNAL_MSI of the upcall vector, and differ only in the Xen
 * event-channel work:
 *   send: EVTCHNOP_send on a loopback port -> 2-level bits set by the VMM
 *         -> upcall -> the handler's 2-level scan finds the port;
 *   msi:  the xkvm-private debug hypercall that only signals the MSI ->
 *         the same handler finds no port.
 * A third loop is a bare hypercall exit. Guest time is the TSC scaled by
 * vcpu_info[0]'s pvclock; the host time of each exit (KVM_RUN returned
 * -> next KVM_RUN) is read back through the debug hypercall. Prints
 * "evtbench: round R send G ns host H ns" etc. See docs/core-services.md.
 */
#include "core.c"

#define ROUNDS 5
#define ITERS 400

#define XKVM_DEBUG 127 /* crates/vmm/src/debug_hook.rs */
#define DBG_SIGNAL_MSI 0
#define DBG_RESET_TIMES 1
#define DBG_TOTAL_NS 2
#define DBG_COUNT 3
#define KEY(nr, op) (((unsigned long)(nr) << 8) | (op))

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

/* Pvclock scaling of a TSC delta (no 128-bit arithmetic needed). */
static uint64_t tsc_to_ns(uint64_t delta)
{
    volatile struct vcpu_time_info *t = &shinfo->vcpu_info[0].time;
    int8_t shift = t->tsc_shift;
    uint32_t mul = t->tsc_to_system_mul;
    if (shift < 0)
        delta >>= -shift;
    else
        delta <<= shift;
    return (delta >> 32) * mul + (((delta & 0xffffffffULL) * mul) >> 32);
}

static long dbg(unsigned long op, unsigned long a, unsigned long b)
{
    return hypercall3(XKVM_DEBUG, op, a, b);
}

/*
 * The upcall handler both loops run, doing what Linux's 2-level upcall
 * does (__xen_evtchn_do_upcall, evtchn_2l_handle_events, clear_evtchn)
 * and no more: clear evtchn_upcall_pending, take the selector with xchg,
 * for each selected word take pending & ~mask, clear each such port's
 * pending bit with a locked btr and handle it, and go round again while
 * the hypervisor set evtchn_upcall_pending meanwhile. Then the LAPIC EOI
 * that delivery by KVM_SIGNAL_MSI needs. "Handling" a port is counting
 * it (ports here are below 256). The msi loop runs the same code and
 * finds an empty selector. Replaces core.c's handler, which bounds-checks
 * ports and re-reads shinfo around each atomic: guest CPL0 code runs in
 * KVM's instruction emulator here (~1 us per instruction), so every
 * instruction shows in the guest column.
 */
__attribute__((interrupt)) static void bench_isr(struct interrupt_frame *f)
{
    (void)f;
    struct shared_info_native *s = shinfo;
    struct vcpu_info_native *vi = &s->vcpu_info[0];
    upcalls++;
    do {
        vi->evtchn_upcall_pending = 0;
        uint64_t sel = __atomic_exchange_n(&vi->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);
        while (sel) {
            unsigned w = __builtin_ctzll(sel);
            sel &= sel - 1;
            uint64_t bits = s->evtchn_pending[w] & ~s->evtchn_mask[w];
            while (bits) {
                uint64_t b = __builtin_ctzll(bits);
                bits &= bits - 1;
                __asm__ volatile("lock btrq %1, %0"
                                 : "+m"(s->evtchn_pending[w])
                                 : "r"(b)
                                 : "memory");
                seen[(w * 64 + b) & 255]++;
            }
        }
    } while (*(volatile uint8_t *)&vi->evtchn_upcall_pending);
    *LAPIC_EOI = 0;
}

static void install_bench_isr(void)
{
    uint64_t h = (uint64_t)(uintptr_t)bench_isr;
    idt[UPCALL_VECTOR].off0 = (uint16_t)h;
    idt[UPCALL_VECTOR].off1 = (uint16_t)(h >> 16);
    idt[UPCALL_VECTOR].off2 = (uint32_t)(h >> 32);
}

/* Host ns per exit recorded under `key` since the last reset. */
static unsigned long host_ns(unsigned long key)
{
    long n = dbg(DBG_COUNT, key, 0);
    return n > 0 ? (unsigned long)dbg(DBG_TOTAL_NS, key, 0) / (unsigned long)n : 0;
}

void guest_main(struct hvm_start_info *si)
{
    (void)si;
    core_setup();
    install_bench_isr();
    CHECK_EQ("callback vector", hvm_set_param(HVM_PARAM_CALLBACK_IRQ,
                                            HVM_CALLBACK_VECTOR(UPCALL_VECTOR)), 0);
    int a = alloc_unbound(DOMID_SELF);
    struct evtchn_bind_interdomain bi = {.remote_dom = DOMID_SELF, .remote_port = a};
    CHECK_EQ("bind", evtchn_op(EVTCHNOP_bind_interdomain, &bi), 0);
    sti();
    exit_once();
    long e = dbg(DBG_RESET_TIMES, 0, 0);
    CHECK_EQ("debug hypercall enabled", e, 0);
    if (e)
        return; /* not booted with VmConfig::debug_hypercall */
    check(shinfo->vcpu_info[0].time.tsc_to_system_mul != 0, "pvclock is not running");

    for (int r = 0; r < ROUNDS; r++) {
        unsigned long u0 = upcalls;
        dbg(DBG_RESET_TIMES, 0, 0);
        uint64_t t0 = rdtsc();
        for (int i = 0; i < ITERS; i++)
            send(a);
        uint64_t t1 = rdtsc();
        CHECK_EQ("one upcall per send", upcalls - u0, ITERS);
        unsigned long h_send = host_ns(KEY(__HYPERVISOR_event_channel_op, EVTCHNOP_send));

        u0 = upcalls;
        dbg(DBG_RESET_TIMES, 0, 0);
        uint64_t t2 = rdtsc();
        for (int i = 0; i < ITERS; i++)
            dbg(DBG_SIGNAL_MSI, UPCALL_VECTOR, 0);
        uint64_t t3 = rdtsc();
        CHECK_EQ("one upcall per MSI", upcalls - u0, ITERS);
        unsigned long h_msi = host_ns(KEY(XKVM_DEBUG, DBG_SIGNAL_MSI));

        dbg(DBG_RESET_TIMES, 0, 0);
        uint64_t t4 = rdtsc();
        for (int i = 0; i < ITERS; i++)
            exit_once();
        uint64_t t5 = rdtsc();
        unsigned long h_bare = host_ns(KEY(__HYPERVISOR_xen_version, XENVER_version));

        printf("evtbench: round %d send %lu ns host %lu ns\n", r,
               (unsigned long)(tsc_to_ns(t1 - t0) / ITERS), h_send);
        printf("evtbench: round %d msi %lu ns host %lu ns\n", r,
               (unsigned long)(tsc_to_ns(t3 - t2) / ITERS), h_msi);
        printf("evtbench: round %d bare %lu ns host %lu ns\n", r,
               (unsigned long)(tsc_to_ns(t5 - t4) / ITERS), h_bare);
    }
    /* The bind itself left the port pending once. */
    CHECK_EQ("send delivered to the bound port", seen[bi.local_port], ROUNDS * ITERS + 1);
}
