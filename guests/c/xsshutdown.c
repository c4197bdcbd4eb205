/*
 * A guest with "PV drivers" for shutdown, as Linux's xenbus does it: it
 * advertises control/feature-poweroff and feature-reboot, watches
 * control/shutdown through its XenStore ring, and when the toolstack writes
 * a request there ("poweroff", "reboot", "halt", "crash") it acknowledges by
 * clearing the node and shuts down with that reason. Until then it sleeps in
 * SCHEDOP_poll on the XenStore event channel, so it also serves as a guest
 * that runs until destroyed.
 */
#include "rt.h"

#define SCHEDOP_poll 3
#define XS_READ 2
#define XS_WATCH 4
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

/* shared_info lives in this RAM page, as Linux places it. */
static uint8_t shinfo[4096] __attribute__((aligned(4096)));
static volatile struct xs_ring *xs;
static uint32_t xs_port;
static int watch_fired;
static char reply[512];

static void notify(void)
{
    struct evtchn_send send = { .port = xs_port };
    hypercall2(__HYPERVISOR_event_channel_op, EVTCHNOP_send, &send);
}

/* Sleeps until the XenStore port is pending, then clears it. The pending
 * bitmap starts at offset 2048 of shared_info (64-bit layout). */
static void wait_event(void)
{
    volatile unsigned long *pending = (volatile unsigned long *)(shinfo + 2048);
    unsigned long bit = 1UL << (xs_port % 64);
    struct sched_poll p = { .ports = &xs_port, .nr_ports = 1, .timeout = 0 };
    if (!(pending[xs_port / 64] & bit))
        hypercall2(__HYPERVISOR_sched_op, SCHEDOP_poll, &p);
    __atomic_fetch_and(&pending[xs_port / 64], ~bit, __ATOMIC_SEQ_CST);
    /* vcpu_info[0].evtchn_upcall_pending: nothing handles upcalls here. */
    __atomic_store_n(&shinfo[0], 0, __ATOMIC_SEQ_CST);
}

static void ring_put(const void *data, uint32_t len)
{
    const char *b = data;
    while (len) {
        uint32_t prod = xs->req_prod;
        if (prod - __atomic_load_n(&xs->req_cons, __ATOMIC_ACQUIRE) >= sizeof(xs->req)) {
            notify();
            wait_event();
            continue;
        }
        xs->req[prod % sizeof(xs->req)] = *b++;
        __atomic_store_n(&xs->req_prod, prod + 1, __ATOMIC_RELEASE);
        len--;
    }
}

static void ring_get(void *data, uint32_t len)
{
    char *b = data;
    while (len) {
        uint32_t cons = xs->rsp_cons;
        if (__atomic_load_n(&xs->rsp_prod, __ATOMIC_ACQUIRE) == cons) {
            wait_event();
            continue;
        }
        *b++ = xs->rsp[cons % sizeof(xs->rsp)];
        __atomic_store_n(&xs->rsp_cons, cons + 1, __ATOMIC_RELEASE);
        len--;
        notify();
    }
}

/* Sends one request (two strings joined: a, NUL, b) and returns the reply's
 * type; watch events seen meanwhile set watch_fired. */
static uint32_t request(uint32_t type, const char *a, const char *b, int nul_b)
{
    static uint32_t id;
    uint32_t la = strlen(a) + 1, lb = b ? strlen(b) + (nul_b ? 1 : 0) : 0;
    struct xs_hdr h = { .type = type, .req_id = ++id, .tx_id = 0, .len = la + lb };
    ring_put(&h, sizeof(h));
    ring_put(a, la);
    if (lb)
        ring_put(b, lb);
    notify();
    for (;;) {
        struct xs_hdr r;
        char skip;
        ring_get(&r, sizeof(r));
        uint32_t keep = r.len < sizeof(reply) - 1 ? r.len : sizeof(reply) - 1;
        ring_get(reply, keep);
        for (uint32_t i = keep; i < r.len; i++)
            ring_get(&skip, 1);
        reply[keep] = 0;
        if (r.type == XS_WATCH_EVENT) {
            watch_fired = 1;
            continue;
        }
        return r.type;
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
    /* vcpu_info[0].evtchn_upcall_mask: events are polled, never
     * delivered as upcalls. */
    shinfo[1] = 1;
    if (hvm_get_param(HVM_PARAM_STORE_PFN, &pfn) || !pfn ||
        hvm_get_param(HVM_PARAM_STORE_EVTCHN, &port)) {
        check(0, "no XenStore ring");
        return;
    }
    /* PV drivers announce themselves with a callback: libxl only uses
     * control/shutdown for a PVH/HVM guest that has set one. Interrupts
     * stay off here, so the vector is never taken. */
    if (hvm_set_param(HVM_PARAM_CALLBACK_IRQ, (2ULL << 56) | 0xf3) != 0) {
        check(0, "cannot set HVM_PARAM_CALLBACK_IRQ");
        return;
    }
    xs = phys(pfn << 12);
    xs_port = (uint32_t)port;
    request(XS_WRITE, "control/feature-poweroff", "1", 0);
    request(XS_WRITE, "control/feature-reboot", "1", 0);
    if (request(XS_WATCH, "control/shutdown", "xkvm", 1) != XS_WATCH) {
        check(0, "XS_WATCH control/shutdown failed: %s", reply);
        return;
    }
    printf("xsshutdown: waiting for control/shutdown\n");
    for (;;) {
        while (!watch_fired) {
            struct xs_hdr r;
            char skip;
            ring_get(&r, sizeof(r));
            for (uint32_t i = 0; i < r.len; i++)
                ring_get(&skip, 1);
            if (r.type == XS_WATCH_EVENT)
                watch_fired = 1;
        }
        watch_fired = 0;
        if (request(XS_READ, "control/shutdown", NULL, 0) != XS_READ || !reply[0])
            continue;
        unsigned int reason;
        if (!strcmp(reply, "poweroff") || !strcmp(reply, "halt"))
            reason = SHUTDOWN_poweroff;
        else if (!strcmp(reply, "reboot"))
            reason = SHUTDOWN_reboot;
        else if (!strcmp(reply, "crash"))
            reason = SHUTDOWN_crash;
        else {
            printf("xsshutdown: ignoring request '%s'\n", reply);
            continue;
        }
        printf("XKVM-TEST %s: PASS control/shutdown = %s\n", guest_name, reply);
        /* Acknowledge: libxl waits for the node to be emptied. */
        request(XS_WRITE, "control/shutdown", "", 0);
        shutdown(reason);
    }
}
