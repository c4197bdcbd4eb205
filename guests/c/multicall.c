/*
 * HYPERVISOR_multicall, in either ABI (xen_ulong_t is `unsigned long`, so
 * one struct is the 64-byte native and the 32-byte compat entry):
 *
 *  1. a mixed batch: xen_version, mapping shared_info, alloc_unbound,
 *     set_timer_op, a failing call, a bad pointer, an unknown hypercall, a
 *     nested multicall and a console write; each result checked against
 *     Xen's;
 *  2. loopback event channel by batches: bind_interdomain, then send (the
 *     pending bit shows in shared_info), set_timer_op(0) and closes;
 *  3. 100 alloc_unbound entries, more than the VMM runs per exit: the
 *     multicall continues itself, and no entry runs twice (the ports are
 *     consecutive, the next direct allocation gets the one after);
 *  4. a GNTTABOP_copy of 300 ops between two console writes: the copy
 *     entry continues inside the multicall and neither write repeats;
 *  5. an unreadable call list is -EFAULT, an empty one 0.
 *
 * Prints "multicall: ..." lines the test counts; verdict from the runtime.
 */
#include "rt.h"

#define __HYPERVISOR_multicall 13
#define __HYPERVISOR_set_timer_op 15
#define EVTCHNOP_bind_interdomain 0
#define GNTTABOP_copy 5
#define GNTST_okay 0

#ifdef __x86_64__
#define BAD_PTR 0x10000000000UL
#else
#define BAD_PTR 0xF0000000UL
#endif
/* Nothing is there (MMIO hole), as in hypercalls.c. */
#define SHINFO_GFN 0xF1000UL

struct multicall_entry {
    unsigned long op, result, args[6];
};
struct evtchn_bind_interdomain {
    uint16_t remote_dom;
    uint32_t remote_port, local_port;
};
struct gnttab_copy_ptr {
    unsigned long gmfn; /* union with grant_ref_t; xen_pfn_t */
    uint16_t domid, offset;
};
struct gnttab_copy {
    struct gnttab_copy_ptr source, dest;
    uint16_t len, flags;
    int16_t status;
};

#define UNSET 0xdeadUL

static struct multicall_entry mc[100];
static struct multicall_entry nested[1];

static void set(struct multicall_entry *e, unsigned long op, unsigned long a0, unsigned long a1,
                unsigned long a2)
{
    memset(e, 0, sizeof(*e));
    e->op = op;
    e->result = UNSET;
    e->args[0] = a0;
    e->args[1] = a1;
    e->args[2] = a2;
}

static long multicall(struct multicall_entry *list, unsigned long n)
{
    return hypercall2(__HYPERVISOR_multicall, list, n);
}

/* set_timer_op(timeout): one s_time_t, two halves for a 32-bit caller. */
static void set_timer(struct multicall_entry *e, uint64_t timeout)
{
#ifdef __x86_64__
    set(e, __HYPERVISOR_set_timer_op, timeout, 0, 0);
#else
    set(e, __HYPERVISOR_set_timer_op, (uint32_t)timeout, (uint32_t)(timeout >> 32), 0);
#endif
}

static void write_entry(struct multicall_entry *e, const char *s)
{
    set(e, __HYPERVISOR_console_io, CONSOLEIO_write, strlen(s), (uintptr_t)s);
}

#define RESULT(i, want) CHECK_EQ("entry " #i, (long)mc[i].result, (long)(want))

static struct evtchn_alloc_unbound au = {.dom = DOMID_SELF, .remote_dom = DOMID_SELF};
static struct xen_add_to_physmap xatp = {
    .domid = DOMID_SELF, .space = XENMAPSPACE_shared_info, .idx = 0, .gpfn = SHINFO_GFN};
static struct evtchn_close close0 = {.port = 0};
static const char entry8[] = "multicall: entry 8 ran\n";

static void mixed_batch(void)
{
    long version = hypercall2(__HYPERVISOR_xen_version, XENVER_version, 0);
    set(&nested[0], __HYPERVISOR_xen_version, XENVER_version, 0, 0);
    set(&mc[0], __HYPERVISOR_xen_version, XENVER_version, 0, 0);
    set(&mc[1], __HYPERVISOR_memory_op, XENMEM_add_to_physmap, (uintptr_t)&xatp, 0);
    set(&mc[2], __HYPERVISOR_event_channel_op, EVTCHNOP_alloc_unbound, (uintptr_t)&au, 0);
    set_timer(&mc[3], 1ULL << 42); /* over an hour from boot */
    set(&mc[4], __HYPERVISOR_event_channel_op, EVTCHNOP_close, (uintptr_t)&close0, 0);
    set(&mc[5], __HYPERVISOR_xen_version, XENVER_extraversion, BAD_PTR, 0);
    set(&mc[6], 100, 0, 0, 0);
    set(&mc[7], __HYPERVISOR_multicall, (uintptr_t)nested, 1, 0);
    write_entry(&mc[8], entry8);
    CHECK_EQ("mixed multicall", multicall(mc, 9), 0);
    RESULT(0, version);
    RESULT(1, 0);
    RESULT(2, 0);
    check(au.port != 0, "alloc_unbound in a multicall gave port 0");
    RESULT(3, 0);
    RESULT(4, -XEN_EINVAL);
    RESULT(5, -XEN_EFAULT);
    RESULT(6, -XEN_ENOSYS);
    RESULT(7, -XEN_EINVAL);
    RESULT(8, 0);
    CHECK_EQ("nested entry never ran", nested[0].result, UNSET);
    /* Only `result` is written back. */
    CHECK_EQ("entry 5 op kept", mc[5].op, __HYPERVISOR_xen_version);
    CHECK_EQ("entry 5 arg kept", mc[5].args[1], BAD_PTR);
    printf("multicall: mixed batch done, port %u\n", au.port);
}

static void loopback(void)
{
    struct evtchn_bind_interdomain bi = {.remote_dom = DOMID_SELF, .remote_port = au.port};
    struct evtchn_send s;
    struct evtchn_close c;
    volatile uint8_t *pending = (volatile uint8_t *)(SHINFO_GFN << 12) + 2048;

    set(&mc[0], __HYPERVISOR_event_channel_op, EVTCHNOP_bind_interdomain, (uintptr_t)&bi, 0);
    CHECK_EQ("bind multicall", multicall(mc, 1), 0);
    RESULT(0, 0);
    check(bi.local_port != 0 && bi.local_port != au.port, "bind_interdomain port %u",
          bi.local_port);
    check(!(pending[au.port / 8] & (1 << (au.port % 8))), "port %u pending before send",
          au.port);

    s.port = bi.local_port;
    set(&mc[0], __HYPERVISOR_event_channel_op, EVTCHNOP_send, (uintptr_t)&s, 0);
    CHECK_EQ("send multicall", multicall(mc, 1), 0);
    RESULT(0, 0);
    check(pending[au.port / 8] & (1 << (au.port % 8)), "send in a multicall: port %u not pending",
          au.port);

    c.port = bi.local_port;
    set_timer(&mc[0], 0);
    set(&mc[1], __HYPERVISOR_event_channel_op, EVTCHNOP_close, (uintptr_t)&c, 0);
    set(&mc[2], __HYPERVISOR_event_channel_op, EVTCHNOP_close, (uintptr_t)&c, 0);
    CHECK_EQ("close multicall", multicall(mc, 3), 0);
    RESULT(0, 0);
    RESULT(1, 0);
    RESULT(2, -XEN_EINVAL);
    printf("multicall: loopback done\n");
}

static struct evtchn_alloc_unbound many[100];

static void long_batch(void)
{
    const unsigned n = 100;
    for (unsigned i = 0; i < n; i++) {
        many[i].dom = DOMID_SELF;
        many[i].remote_dom = 0;
        many[i].port = 0;
        set(&mc[i], __HYPERVISOR_event_channel_op, EVTCHNOP_alloc_unbound, (uintptr_t)&many[i],
            0);
    }
    CHECK_EQ("long multicall", multicall(mc, n), 0);
    unsigned ok = 0;
    for (unsigned i = 0; i < n; i++) {
        if (mc[i].result == 0 && (i == 0 || many[i].port == many[i - 1].port + 1))
            ok++;
    }
    CHECK_EQ("long batch entries with consecutive ports", ok, n);
    struct evtchn_alloc_unbound next = {.dom = DOMID_SELF, .remote_dom = 0};
    CHECK_EQ("alloc after the batch",
             hypercall2(__HYPERVISOR_event_channel_op, EVTCHNOP_alloc_unbound, &next), 0);
    CHECK_EQ("no entry ran twice", next.port, many[n - 1].port + 1);
    printf("multicall: long batch %u entries ok\n", ok);
}

#define COPIES 300
static uint64_t src[512] __attribute__((aligned(4096)));
static uint64_t dst[512] __attribute__((aligned(4096)));
static struct gnttab_copy ops[COPIES];
static const char before[] = "multicall: copy-before\n";
static const char after[] = "multicall: copy-after\n";

static void continued_entry(void)
{
    for (unsigned i = 0; i < COPIES; i++) {
        src[i] = 0x1234000000ULL + i;
        ops[i].source.gmfn = (uintptr_t)src >> 12;
        ops[i].source.domid = DOMID_SELF;
        ops[i].source.offset = 8 * i;
        ops[i].dest.gmfn = (uintptr_t)dst >> 12;
        ops[i].dest.domid = DOMID_SELF;
        ops[i].dest.offset = 8 * i;
        ops[i].len = 8;
        ops[i].flags = 0;
        ops[i].status = 99;
    }
    write_entry(&mc[0], before);
    set(&mc[1], __HYPERVISOR_grant_table_op, GNTTABOP_copy, (uintptr_t)ops, COPIES);
    write_entry(&mc[2], after);
    CHECK_EQ("copy multicall", multicall(mc, 3), 0);
    RESULT(0, 0);
    RESULT(1, 0);
    RESULT(2, 0);
    unsigned ok = 0;
    for (unsigned i = 0; i < COPIES; i++)
        ok += ops[i].status == GNTST_okay && dst[i] == src[i];
    CHECK_EQ("copies done", ok, COPIES);
    printf("multicall: copies %u\n", ok);
}

void guest_main(struct hvm_start_info *si)
{
    (void)si;
    mixed_batch();
    loopback();
    long_batch();
    continued_entry();
    CHECK_EQ("unreadable call list", multicall((void *)BAD_PTR, 1), -XEN_EFAULT);
    CHECK_EQ("empty call list", multicall((void *)BAD_PTR, 0), 0);
}
