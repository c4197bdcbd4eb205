/*
 * The XenStore ring client and grant helpers shared by the PV test guests
 * (blkfront.c, netfront.c, hotplug.c, xsshutdown.c). Interrupts are never
 * used. The client waits for the other end in one of two ways:
 *  - by SCHEDOP_yield (the default: no shared_info needed);
 *  - by SCHEDOP_poll on the XenStore event channel, once
 *    pvfront_map_shared_info() has mapped shared_info (guests that sleep
 *    between watch events, as Linux's xenbus does).
 */
#ifndef XKVM_PVFRONT_H
#define XKVM_PVFRONT_H

#include "rt.h"

#define SCHEDOP_poll 3
#define XS_DIRECTORY 1
#define XS_READ 2
#define XS_WATCH 4
#define XS_UNWATCH 5
#define XS_WRITE 11
#define XS_WATCH_EVENT 15
#define XS_ERROR 16

struct xs_ring {
    char req[1024];
    char rsp[1024];
    uint32_t req_cons, req_prod;
    uint32_t rsp_cons, rsp_prod;
};
struct xs_hdr {
    uint32_t type, req_id, tx_id, len;
};
struct sched_poll {
    uint32_t *ports;
    uint32_t nr_ports;
    uint64_t timeout;
};

static uint8_t gnttab[4096] __attribute__((aligned(4096)));
/* shared_info lives in this RAM page, as Linux places it (only once
 * pvfront_map_shared_info() has run). */
static uint8_t shinfo[4096] __attribute__((aligned(4096)));
static int shinfo_mapped;
static volatile struct xs_ring *xs;
static uint32_t xs_port;
/* Set when a watch event arrived (while waiting for a reply, or read by
 * xs_read_msg()); the guest clears it when it has acted on it. */
static int watch_fired;
static char reply[1024];
static uint32_t reply_len;

static __attribute__((unused)) void yield(void)
{
    hypercall2(__HYPERVISOR_sched_op, SCHEDOP_yield, 0);
}

static __attribute__((unused)) void send(uint32_t port)
{
    struct evtchn_send s = { .port = port };
    hypercall2(__HYPERVISOR_event_channel_op, EVTCHNOP_send, &s);
}

/* Waits for the XenStore port: sleeps in SCHEDOP_poll until it is pending
 * and clears it (64-bit shared_info: the pending bitmap is at offset 2048),
 * or just yields when shared_info is not mapped. */
static __attribute__((unused)) void xs_wait(void)
{
    if (!shinfo_mapped) {
        yield();
        return;
    }
    volatile unsigned long *pending = (volatile unsigned long *)(shinfo + 2048);
    unsigned long bit = 1UL << (xs_port % 64);
    struct sched_poll p = { .ports = &xs_port, .nr_ports = 1, .timeout = 0 };
    if (!(pending[xs_port / 64] & bit))
        hypercall2(__HYPERVISOR_sched_op, SCHEDOP_poll, &p);
    __atomic_fetch_and(&pending[xs_port / 64], ~bit, __ATOMIC_SEQ_CST);
    /* vcpu_info[0].evtchn_upcall_pending: nothing handles upcalls here. */
    __atomic_store_n(&shinfo[0], 0, __ATOMIC_SEQ_CST);
}

static __attribute__((unused)) void ring_put(const void *d, uint32_t len)
{
    const char *b = d;
    while (len) {
        uint32_t prod = xs->req_prod;
        if (prod - __atomic_load_n(&xs->req_cons, __ATOMIC_ACQUIRE) >= sizeof(xs->req)) {
            send(xs_port);
            xs_wait();
            continue;
        }
        xs->req[prod % sizeof(xs->req)] = *b++;
        __atomic_store_n(&xs->req_prod, prod + 1, __ATOMIC_RELEASE);
        len--;
    }
}

static __attribute__((unused)) void ring_get(void *d, uint32_t len)
{
    char *b = d;
    int consumed = 0;
    while (len) {
        uint32_t cons = xs->rsp_cons;
        if (__atomic_load_n(&xs->rsp_prod, __ATOMIC_ACQUIRE) == cons) {
            /* The daemon may be stalled on the full response ring we
             * just emptied: tell it once before waiting. */
            if (consumed)
                send(xs_port);
            consumed = 0;
            xs_wait();
            continue;
        }
        *b++ = xs->rsp[cons % sizeof(xs->rsp)];
        __atomic_store_n(&xs->rsp_cons, cons + 1, __ATOMIC_RELEASE);
        consumed = 1;
        len--;
    }
    send(xs_port);
}

/* Reads one message into reply[] (NUL-terminated, truncated, its length in
 * reply_len); returns its type and notes watch events in watch_fired. */
static __attribute__((unused)) uint32_t xs_read_msg(void)
{
    struct xs_hdr r;
    char skip;
    ring_get(&r, sizeof(r));
    uint32_t keep = r.len < sizeof(reply) - 1 ? r.len : sizeof(reply) - 1;
    ring_get(reply, keep);
    for (uint32_t i = keep; i < r.len; i++)
        ring_get(&skip, 1);
    reply[keep] = 0;
    reply_len = keep;
    if (r.type == XS_WATCH_EVENT)
        watch_fired = 1;
    return r.type;
}

/* One request with the strings a (NUL-terminated) and b (NUL-terminated
 * when nul_b, as XS_WATCH's token); the reply's payload lands in reply[].
 * Watch events that arrive meanwhile set watch_fired. Returns the reply's
 * type. */
static __attribute__((unused)) uint32_t xs_request(uint32_t type, const char *a, const char *b,
                                                   int nul_b)
{
    static uint32_t id;
    uint32_t la = strlen(a) + 1, lb = b ? strlen(b) + (nul_b ? 1 : 0) : 0;
    struct xs_hdr h = { .type = type, .req_id = ++id, .tx_id = 0, .len = la + lb };
    ring_put(&h, sizeof(h));
    ring_put(a, la);
    if (lb)
        ring_put(b, lb);
    send(xs_port);
    for (;;) {
        uint32_t t = xs_read_msg();
        if (t != XS_WATCH_EVENT)
            return t;
    }
}

/* xs_request with b (if any) sent without its NUL, as XS_WRITE's value. */
static __attribute__((unused)) uint32_t xs_req(uint32_t type, const char *a, const char *b)
{
    return xs_request(type, a, b, 0);
}

static __attribute__((unused)) char *cat(char *dst, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    memcpy(dst, a, la);
    memcpy(dst + la, b, lb + 1);
    return dst;
}

static __attribute__((unused)) void utoa(char *out, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = 0;
}

static __attribute__((unused)) uint64_t atou(const char *s)
{
    uint64_t v = 0;
    while (*s >= '0' && *s <= '9')
        v = v * 10 + (uint64_t)(*s++ - '0');
    return v;
}

static __attribute__((unused)) int wait_state(const char *path, const char *want)
{
    for (int i = 0; i < 20000; i++) {
        if (xs_req(XS_READ, path, 0) == XS_READ && strcmp(reply, want) == 0)
            return 1;
        yield();
    }
    return 0;
}

static __attribute__((unused)) void grant(uint32_t ref, void *page)
{
    volatile struct grant_entry_v1 *e = (volatile struct grant_entry_v1 *)gnttab + ref;
    e->frame = (uint32_t)((uintptr_t)page >> 12);
    e->domid = 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    e->flags = GTF_permit_access;
}

static __attribute__((unused)) void ungrant(uint32_t ref)
{
    volatile struct grant_entry_v1 *e = (volatile struct grant_entry_v1 *)gnttab + ref;
    e->flags = 0;
}


/* Maps shared_info at shinfo[] with upcalls masked (vcpu_info[0]
 * evtchn_upcall_mask), so the client sleeps in SCHEDOP_poll from now on. */
static __attribute__((unused)) int pvfront_map_shared_info(void)
{
    struct xen_add_to_physmap xatp = {
        .domid = DOMID_SELF, .space = XENMAPSPACE_shared_info, .idx = 0,
        .gpfn = (uintptr_t)shinfo >> 12,
    };
    if (hypercall2(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, &xatp) != 0)
        return 0;
    shinfo[1] = 1;
    shinfo_mapped = 1;
    return 1;
}

/* Points the XenStore client at the ring and maps grant frame 0. */
static __attribute__((unused)) int pvfront_init(void)
{
    uint64_t pfn = 0, port = 0;
    if (hvm_get_param(HVM_PARAM_STORE_PFN, &pfn) || !pfn ||
        hvm_get_param(HVM_PARAM_STORE_EVTCHN, &port))
        return 0;
    xs = phys(pfn << 12);
    xs_port = (uint32_t)port;
    struct xen_add_to_physmap xatp = {
        .domid = DOMID_SELF, .space = XENMAPSPACE_grant_table, .idx = 0,
        .gpfn = (uintptr_t)gnttab >> 12,
    };
    return hypercall2(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, &xatp) == 0;
}

#endif
