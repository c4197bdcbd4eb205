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
#include "pvfront.h"

#define OP_READ 0
#define MAX_DEVS 8
#define RING_SIZE 32

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

static uint8_t ring[4096] __attribute__((aligned(4096)));
static uint8_t data[4096] __attribute__((aligned(4096)));
static struct dev devs[MAX_DEVS];

/* The text of node `dir`/`key` into out (empty and 0 when missing). */
static int read_node(const char *dir, const char *key, char *out, size_t cap)
{
    char p[192];
    cat(p, dir, key);
    if (xs_request(XS_READ, p, 0, 0) != XS_READ) {
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
    xs_request(XS_WRITE, cat(p, dir, key), val, 0);
}

/* Waits (following watch events) until `dir`/state reads `want`. */
static int follow_state(const char *dir, const char *want)
{
    char s[16];
    for (int i = 0; i < 2000; i++) {
        if (read_node(dir, "/state", s, sizeof(s)) && strcmp(s, want) == 0)
            return 1;
        if (!watch_fired)
            xs_wait();
        watch_fired = 0;
    }
    return 0;
}

/* blkfront's connect, then one READ of sector 0. */
static void connect_vbd(struct dev *d)
{
    char num[24];
    if (!follow_state(d->backend, "2")) {
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
    if (!follow_state(d->backend, "4")) {
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
    send(d->port);
    volatile uint32_t *rsp_prod = (volatile uint32_t *)(ring + 8);
    int status = 99;
    for (int i = 0; i < 200000; i++) {
        if (__atomic_load_n(rsp_prod, __ATOMIC_ACQUIRE) != 0) {
            struct rsp *p = (struct rsp *)(ring + 64);
            status = p->id == 1 && p->operation == OP_READ ? p->status : 98;
            break;
        }
        yield();
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
    xs_request(XS_WATCH, cat(p, d->backend, "/state"), "be", 1);
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
    if (xs_request(XS_DIRECTORY, cat(p, "device/", kind), 0, 0) != XS_DIRECTORY)
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
        xs_request(XS_UNWATCH, cat(p, d->backend, "/state"), "be", 1);
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
    (void)si;
    /* Events are polled, never delivered as upcalls. */
    if (!pvfront_map_shared_info()) {
        check(0, "cannot map shared_info");
        return;
    }
    if (!pvfront_init()) {
        check(0, "no XenStore ring or grant frame 0");
        return;
    }
    if (xs_request(XS_WATCH, "device", "dev", 1) != XS_WATCH) {
        check(0, "XS_WATCH device failed: %s", reply);
        return;
    }
    printf("hotplug: watching device/\n");
    for (;;) {
        while (!watch_fired)
            xs_read_msg();
        watch_fired = 0;
        scan("vbd");
        scan("vif");
        for (int i = 0; i < MAX_DEVS; i++)
            if (devs[i].used)
                follow(&devs[i]);
    }
}
