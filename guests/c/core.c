/* See core.h. Included by the core-services guests (one translation unit each). */
#include "core.h"

struct shared_info_native *shinfo;
volatile uint32_t seen[256];
volatile unsigned long upcalls;

struct idt_entry {
    uint16_t off0, sel;
    uint8_t ist, type;
    uint16_t off1;
    uint32_t off2, rsvd;
} __attribute__((packed));

static struct idt_entry idt[256] __attribute__((aligned(16)));

struct interrupt_frame;

#define LAPIC_EOI ((volatile uint32_t *)0xfee000b0UL)
#define LAPIC_SVR ((volatile uint32_t *)0xfee000f0UL)

/* The 2-level scan a Xen guest's upcall handler does: take the selector,
 * then each word's pending & ~mask bits, clearing them as handled. */
__attribute__((interrupt)) static void upcall_isr(struct interrupt_frame *f)
{
    (void)f;
    upcalls++;
    struct vcpu_info_native *vi = &shinfo->vcpu_info[0];
    vi->evtchn_upcall_pending = 0;
    uint64_t sel = __atomic_exchange_n(&vi->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);
    while (sel) {
        unsigned w = __builtin_ctzll(sel);
        sel &= sel - 1;
        uint64_t bits = shinfo->evtchn_pending[w] & ~shinfo->evtchn_mask[w];
        while (bits) {
            unsigned b = __builtin_ctzll(bits);
            bits &= bits - 1;
            __atomic_fetch_and(&shinfo->evtchn_pending[w], ~(1ULL << b), __ATOMIC_SEQ_CST);
            unsigned port = w * 64 + b;
            if (port < 256)
                seen[port]++;
        }
    }
    *LAPIC_EOI = 0;
}

void core_setup(void)
{
    struct xen_add_to_physmap xatp = {
        .domid = DOMID_SELF, .space = XENMAPSPACE_shared_info, .idx = 0, .gpfn = SHINFO_GFN};
    CHECK_EQ("map shared_info", hypercall2(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, &xatp),
             0);
    shinfo = phys(SHINFO_GFN << 12);
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    uint64_t h = (uint64_t)(uintptr_t)upcall_isr;
    idt[UPCALL_VECTOR] = (struct idt_entry){
        .off0 = (uint16_t)h, .sel = cs, .type = 0x8e, .off1 = (uint16_t)(h >> 16),
        .off2 = (uint32_t)(h >> 32)};
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) d = {sizeof(idt) - 1, (uint64_t)(uintptr_t)idt};
    __asm__ volatile("lidt %0" ::"m"(d));
    /* Software-enable the LAPIC, spurious vector 0xff. */
    *LAPIC_SVR = 0x1ff;
}

uint64_t now_ns(void)
{
    uint64_t t = 0;
    hypercall2(__HYPERVISOR_hvm_op, HVMOP_get_time, &t);
    return t;
}

long evtchn_op(unsigned int cmd, void *arg)
{
    return hypercall2(__HYPERVISOR_event_channel_op, cmd, arg);
}

int alloc_unbound(uint16_t remote)
{
    struct evtchn_alloc_unbound a = {.dom = DOMID_SELF, .remote_dom = remote};
    long r = evtchn_op(EVTCHNOP_alloc_unbound, &a);
    return r ? (int)r : (int)a.port;
}

int send(uint32_t port)
{
    struct evtchn_send s = {.port = port};
    return (int)evtchn_op(EVTCHNOP_send, &s);
}

void exit_once(void)
{
    hypercall2(__HYPERVISOR_xen_version, XENVER_version, 0);
}
