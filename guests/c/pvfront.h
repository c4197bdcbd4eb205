/*
 * XenStore client and grant helpers shared by the PV frontend test guests
 * (blkfront.c, netfront.c). Everything is
 * polled with SCHEDOP_yield: no interrupts, no shared_info.
 */
#ifndef XKVM_PVFRONT_H
#define XKVM_PVFRONT_H

#include "rt.h"

#define XS_DIRECTORY 1
#define XS_READ 2
#define XS_WRITE 11
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

static uint8_t gnttab[4096] __attribute__((aligned(4096)));
static volatile struct xs_ring *xs;
static uint32_t xs_port;
static char reply[512];

static __attribute__((unused)) void yield(void)
{
    hypercall2(__HYPERVISOR_sched_op, SCHEDOP_yield, 0);
}

static __attribute__((unused)) void send(uint32_t port)
{
    struct evtchn_send s = { .port = port };
    hypercall2(__HYPERVISOR_event_channel_op, EVTCHNOP_send, &s);
}

static __attribute__((unused)) void ring_put(const void *d, uint32_t len)
{
    const char *b = d;
    while (len) {
        uint32_t prod = xs->req_prod;
        if (prod - __atomic_load_n(&xs->req_cons, __ATOMIC_ACQUIRE) >= sizeof(xs->req)) {
            send(xs_port);
            yield();
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
    while (len) {
        uint32_t cons = xs->rsp_cons;
        if (__atomic_load_n(&xs->rsp_prod, __ATOMIC_ACQUIRE) == cons) {
            yield();
            continue;
        }
        *b++ = xs->rsp[cons % sizeof(xs->rsp)];
        __atomic_store_n(&xs->rsp_cons, cons + 1, __ATOMIC_RELEASE);
        len--;
    }
    send(xs_port);
}

/* One request with one or two strings; the reply's payload lands in
 * reply[] (NUL-terminated, truncated). Returns the reply type. */
static __attribute__((unused)) uint32_t xs_req(uint32_t type, const char *a, const char *b)
{
    static uint32_t id;
    uint32_t la = strlen(a) + 1, lb = b ? strlen(b) : 0;
    struct xs_hdr h = { .type = type, .req_id = ++id, .tx_id = 0, .len = la + lb };
    ring_put(&h, sizeof(h));
    ring_put(a, la);
    if (lb)
        ring_put(b, lb);
    send(xs_port);
    struct xs_hdr r;
    char skip;
    ring_get(&r, sizeof(r));
    uint32_t keep = r.len < sizeof(reply) - 1 ? r.len : sizeof(reply) - 1;
    ring_get(reply, keep);
    for (uint32_t i = keep; i < r.len; i++)
        ring_get(&skip, 1);
    reply[keep] = 0;
    return r.type;
}

static char *cat(char *dst, const char *a, const char *b)
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
