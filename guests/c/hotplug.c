/*
 * A guest that takes PV devices plugged in and out while it runs, as
 * Linux's xenbus frontends do. It boots with no disk, watches device/ in
 * XenStore and:
 *  - when a vbd appears, connects to it as blkfront does (InitWait →
 *    grant a ring, event channel, Initialised → Connected), reads sector
 *    0 and prints it: "hotplug: vbd <id> sector0 '<text>'";
 *  - when a vif appears, prints "hotplug: vif <id> mac <mac>" (it does not
 *    connect: the backend waits in InitWait);
 *  - when a device's backend goes to Closing (an unplug), closes its end
 *    (state 6, as blkfront_closing / xenbus_frontend_closed do) and prints
 *    "hotplug: <kind> <id> closed";
 *  - when the device's directory is gone, prints
 *    "hotplug: <kind> <id> removed".
 * It sleeps in SCHEDOP_poll on the XenStore event channel between watch
 * events and runs until destroyed. 64-bit only (x86_64-abi).
 */
#include "rt.h"

#define SCHEDOP_poll 3
#define XS_DIRECTORY 1
#define XS_READ 2
#define XS_WATCH 4
#define XS_UNWATCH 5
#define XS_WRITE 11
#define XS_WATCH_EVENT 15
#define XS_ERROR 16

#define OP_READ 0
#define MAX_DEVS 8
#define RING_SIZE 32

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

struct seg {
    uint32_t gref;
    uint8_t first_sect, last_sect;
    uint16_t pad;
};

struct req_rw {
    uint8_t operation, nr_segments;
    uint16_t handle;
    uint8_t pad1[4];
    uint64_t id, sector;
    struct seg seg[11];
} __attribute__((packed));

struct rsp {
    uint64_t id;
    uint8_t operation;
    int16_t status;
};

/* One device seen under device/. */
struct dev {
    int used;
    int closed;
    const char *kind; /* "vbd" or "vif" */
    char id[16];
    char dir[64];
    char backend[128];
    uint32_t port;
};

static uint8_t shinfo[4096] __attribute__((aligned(4096)));
static uint8_t gnttab[4096] __attribute__((aligned(4096)));
static uint8_t ring[4096] __attribute__((aligned(4096)));
static uint8_t data[4096] __attribute__((aligned(4096)));
static volatile struct xs_ring *xs;
static uint32_t xs_port;
static int watch_fired;
static char reply[1024];
static uint32_t reply_len;
static struct dev devs[MAX_DEVS];

static void notify(uint32_t port)
{
    struct evtchn_send send = { .port = port };
    hypercall2(__HYPERVISOR_event_channel_op, EVTCHNOP_send, &send);
}

/* Sleeps until the XenStore port is pending, then clears it (64-bit
 * shared_info: the pending bitmap is at offset 2048). */
static void wait_event(void)
{
    volatile unsigned long *pending = (volatile unsigned long *)(shinfo + 2048);
    unsigned long bit = 1UL << (xs_port % 64);
    struct sched_poll p = { .ports = &xs_port, .nr_ports = 1, .timeout = 0 };
    if (!(pending[xs_port / 64] & bit))
        hypercall2(__HYPERVISOR_sched_op, SCHEDOP_poll, &p);
    __atomic_fetch_and(&pending[xs_port / 64], ~bit, __ATOMIC_SEQ_CST);
    __atomic_store_n(&shinfo[0], 0, __ATOMIC_SEQ_CST);
}

static void ring_put(const void *d, uint32_t len)
{
    const char *b = d;
    while (len) {
        uint32_t prod = xs->req_prod;
        if (prod - __atomic_load_n(&xs->req_cons, __ATOMIC_ACQUIRE) >= sizeof(xs->req)) {
            notify(xs_port);
            wait_event();
            continue;
        }
        xs->req[prod % sizeof(xs->req)] = *b++;
        __atomic_store_n(&xs->req_prod, prod + 1, __ATOMIC_RELEASE);
        len--;
    }
}

static void ring_get(void *d, uint32_t len)
{
    char *b = d;
    while (len) {
        uint32_t cons = xs->rsp_cons;
        if (__atomic_load_n(&xs->rsp_prod, __ATOMIC_ACQUIRE) == cons) {
            wait_event();
            continue;
        }
        *b++ = xs->rsp[cons % sizeof(xs->rsp)];
        __atomic_store_n(&xs->rsp_cons, cons + 1, __ATOMIC_RELEASE);
        len--;
        notify(xs_port);
    }
}

/* Reads one message into reply[] (NUL-terminated, truncated); returns its
 * type. */
static uint32_t read_msg(void)
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
    return r.type;
}

/* One request (a, NUL, then b, NUL-terminated when nul_b); returns the
 * reply's type. Watch events that arrive meanwhile set watch_fired. */
static uint32_t request(uint32_t type, const char *a, const char *b, int nul_b)
{
    static uint32_t id;
    uint32_t la = strlen(a) + 1, lb = b ? strlen(b) + (nul_b ? 1 : 0) : 0;
    struct xs_hdr h = { .type = type, .req_id = ++id, .tx_id = 0, .len = la + lb };
    ring_put(&h, sizeof(h));
    ring_put(a, la);
    if (lb)
        ring_put(b, lb);
    notify(xs_port);
    for (;;) {
        uint32_t t = read_msg();
        if (t == XS_WATCH_EVENT) {
            watch_fired = 1;
            continue;
        }
        return t;
    }
}

static char *cat(char *dst, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    memcpy(dst, a, la);
    memcpy(dst + la, b, lb + 1);
    return dst;
}

static void utoa(char *out, uint64_t v)
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

/* The text of node `dir`/`key` into out (empty and 0 when missing). */
static int read_node(const char *dir, const char *key, char *out, size_t cap)
{
    char p[192];
    cat(p, dir, key);
    if (request(XS_READ, p, 0, 0) != XS_READ) {
        out[0] = 0;
        return 0;
    }
    size_t n = strlen(reply) < cap - 1 ? strlen(reply) : cap - 1;
    memcpy(out, reply, n);
    out[n] = 0;
    return 1;
}

static void write_node(const char *dir, const char *key, const char *val)
{
    char p[192];
    request(XS_WRITE, cat(p, dir, key), val, 0);
}

/* Waits (following watch events) until `dir`/state reads `want`. */
static int wait_state(const char *dir, const char *want)
{
    char s[16];
    for (int i = 0; i < 2000; i++) {
        if (read_node(dir, "/state", s, sizeof(s)) && strcmp(s, want) == 0)
            return 1;
        if (!watch_fired)
            wait_event();
        watch_fired = 0;
    }
    return 0;
}

static void grant(uint32_t ref, void *page)
{
    volatile struct grant_entry_v1 *e = (volatile struct grant_entry_v1 *)gnttab + ref;
    e->frame = (uint32_t)((uintptr_t)page >> 12);
    e->domid = 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    e->flags = GTF_permit_access;
}

static void ungrant(uint32_t ref)
{
    volatile struct grant_entry_v1 *e = (volatile struct grant_entry_v1 *)gnttab + ref;
    e->flags = 0;
}

/* blkfront's connect, then one READ of sector 0. */
static void connect_vbd(struct dev *d)
{
    char num[24];
    if (!wait_state(d->backend, "2")) {
        printf("hotplug: vbd %s: backend never reached InitWait\n", d->id);
        return;
    }
    memset(ring, 0, sizeof(ring));
    memset(data, 0, sizeof(data));
    /* SHARED_RING_INIT: indices 0, req_event = rsp_event = 1. */
    ((volatile uint32_t *)ring)[1] = 1;
    ((volatile uint32_t *)ring)[3] = 1;
    grant(8, ring);
    grant(9, data);
    struct evtchn_alloc_unbound au = { .dom = DOMID_SELF, .remote_dom = 0 };
    if (hypercall2(__HYPERVISOR_event_channel_op, EVTCHNOP_alloc_unbound, &au) != 0) {
        printf("hotplug: vbd %s: alloc_unbound failed\n", d->id);
        return;
    }
    d->port = au.port;
    write_node(d->dir, "/ring-ref", "8");
    utoa(num, d->port);
    write_node(d->dir, "/event-channel", num);
    write_node(d->dir, "/protocol", "x86_64-abi");
    write_node(d->dir, "/state", "3");
    if (!wait_state(d->backend, "4")) {
        printf("hotplug: vbd %s: backend never reached Connected\n", d->id);
        return;
    }
    write_node(d->dir, "/state", "4");

    struct req_rw *r = (struct req_rw *)(ring + 64);
    memset(r, 0, sizeof(*r));
    r->operation = OP_READ;
    r->nr_segments = 1;
    r->id = 1;
    r->sector = 0;
    r->seg[0].gref = 9;
    r->seg[0].first_sect = 0;
    r->seg[0].last_sect = 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n((volatile uint32_t *)ring, 1, __ATOMIC_RELEASE);
    notify(d->port);
    volatile uint32_t *rsp_prod = (volatile uint32_t *)(ring + 8);
    int status = 99;
    for (int i = 0; i < 200000; i++) {
        if (__atomic_load_n(rsp_prod, __ATOMIC_ACQUIRE) != 0) {
            struct rsp *p = (struct rsp *)(ring + 64);
            status = p->id == 1 && p->operation == OP_READ ? p->status : 98;
            break;
        }
        hypercall2(__HYPERVISOR_sched_op, SCHEDOP_yield, 0);
    }
    char text[48];
    size_t n = 0;
    while (n < sizeof(text) - 1 && data[n] >= 0x20 && data[n] < 0x7f) {
        text[n] = (char)data[n];
        n++;
    }
    text[n] = 0;
    printf("hotplug: vbd %s sector0 status %d '%s'\n", d->id, status, text);
}

static void found(const char *kind, const char *id)
{
    struct dev *d = 0;
    for (int i = 0; i < MAX_DEVS; i++) {
        if (devs[i].used && strcmp(devs[i].kind, kind) == 0 && strcmp(devs[i].id, id) == 0)
            return;
        if (!devs[i].used && !d)
            d = &devs[i];
    }
    if (!d || strlen(id) >= sizeof(d->id))
        return;
    memset(d, 0, sizeof(*d));
    d->used = 1;
    d->kind = kind;
    memcpy(d->id, id, strlen(id) + 1);
    cat(d->dir, "device/", kind);
    cat(d->dir, d->dir, "/");
    cat(d->dir, d->dir, id);
    if (!read_node(d->dir, "/backend", d->backend, sizeof(d->backend))) {
        d->used = 0;
        return;
    }
    char p[160];
    /* Follow the backend as Linux's xenbus does (otherend watch). */
    request(XS_WATCH, cat(p, d->backend, "/state"), "be", 1);
    if (kind[1] == 'b') {
        connect_vbd(d);
    } else {
        char mac[32];
        read_node(d->dir, "/mac", mac, sizeof(mac));
        printf("hotplug: vif %s mac %s\n", d->id, mac);
    }
}

static void scan(const char *kind)
{
    char p[32], names[256];
    if (request(XS_DIRECTORY, cat(p, "device/", kind), 0, 0) != XS_DIRECTORY)
        return;
    uint32_t len = reply_len < sizeof(names) ? reply_len : sizeof(names) - 1;
    memcpy(names, reply, len);
    names[len] = 0;
    for (uint32_t off = 0; off < len;) {
        const char *name = names + off;
        size_t l = strlen(name);
        if (l)
            found(kind, name);
        off += (uint32_t)l + 1;
    }
}

/* Follows each device's backend: Closing → close our end; directory gone →
 * forget the device. */
static void follow(struct dev *d)
{
    char s[16], p[160];
    if (!read_node(d->dir, "/state", s, sizeof(s))) {
        printf("hotplug: %s %s removed\n", d->kind, d->id);
        request(XS_UNWATCH, cat(p, d->backend, "/state"), "be", 1);
        if (d->port) {
            struct evtchn_close c = { .port = d->port };
            hypercall2(__HYPERVISOR_event_channel_op, EVTCHNOP_close, &c);
        }
        if (d->kind[1] == 'b') {
            ungrant(8);
            ungrant(9);
        }
        d->used = 0;
        return;
    }
    if (d->closed)
        return;
    if (read_node(d->backend, "/state", s, sizeof(s)) && strcmp(s, "5") == 0) {
        write_node(d->dir, "/state", "6");
        d->closed = 1;
        printf("hotplug: %s %s closed\n", d->kind, d->id);
    }
}

void guest_main(struct hvm_start_info *si)
{
    struct xen_add_to_physmap xatp = {
        .domid = DOMID_SELF, .space = XENMAPSPACE_shared_info, .idx = 0,
        .gpfn = (uintptr_t)shinfo >> 12,
    };
    uint64_t pfn = 0, port = 0;
    (void)si;
    if (hypercall2(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, &xatp) != 0) {
        check(0, "cannot map shared_info");
        return;
    }
    /* Events are polled, never delivered as upcalls. */
    shinfo[1] = 1;
    xatp.space = XENMAPSPACE_grant_table;
    xatp.gpfn = (uintptr_t)gnttab >> 12;
    if (hypercall2(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, &xatp) != 0) {
        check(0, "cannot map grant frame 0");
        return;
    }
    if (hvm_get_param(HVM_PARAM_STORE_PFN, &pfn) || !pfn ||
        hvm_get_param(HVM_PARAM_STORE_EVTCHN, &port)) {
        check(0, "no XenStore ring");
        return;
    }
    xs = phys(pfn << 12);
    xs_port = (uint32_t)port;
    if (request(XS_WATCH, "device", "dev", 1) != XS_WATCH) {
        check(0, "XS_WATCH device failed: %s", reply);
        return;
    }
    printf("hotplug: watching device/\n");
    for (;;) {
        while (!watch_fired) {
            if (read_msg() == XS_WATCH_EVENT)
                watch_fired = 1;
        }
        watch_fired = 0;
        scan("vbd");
        scan("vif");
        for (int i = 0; i < MAX_DEVS; i++)
            if (devs[i].used)
                follow(&devs[i]);
    }
}
