/*
 * A minimal netfront: finds device/vif/0, waits for the backend's InitWait,
 * grants a TX and an RX ring and buffers, writes tx-ring-ref / rx-ring-ref /
 * event-channel / request-rx-copy and Connected, posts RX buffers, then
 * sends ARP requests for 10.99.1.1 from 10.99.1.2 (its MAC from
 * XenStore) until an ARP reply arrives through the RX ring. The test puts
 * the other end of the TAP into a network namespace with 10.99.1.1.
 */
#include "pvfront.h"

#define NETTXF_more_data 4
#define RX_BUFS 8
#define ATTEMPTS 400

static uint8_t txring[4096] __attribute__((aligned(4096)));
static uint8_t rxring[4096] __attribute__((aligned(4096)));
static uint8_t txbuf[4096] __attribute__((aligned(4096)));
static uint8_t rxbuf[RX_BUFS][4096] __attribute__((aligned(4096)));
static uint32_t port, tx_prod, tx_cons, rx_prod, rx_cons;
static uint8_t mac[6];

struct tx_req {
    uint32_t gref;
    uint16_t offset, flags, id, size;
};
struct rx_req {
    uint16_t id, pad;
    uint32_t gref;
};
struct rx_rsp {
    uint16_t id, offset, flags;
    int16_t status;
};

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void post_rx(uint16_t id)
{
    struct rx_req *r = (struct rx_req *)(rxring + 64) + (rx_prod % 256);
    r->id = id;
    r->gref = 10 + id;
    rx_prod++;
    __atomic_store_n((volatile uint32_t *)rxring, rx_prod, __ATOMIC_RELEASE);
}

static void send_arp(uint16_t id)
{
    static const uint8_t me[4] = { 10, 99, 1, 2 }, peer[4] = { 10, 99, 1, 1 };
    uint8_t *f = txbuf;
    memset(f, 0xff, 6);
    memcpy(f + 6, mac, 6);
    f[12] = 0x08; f[13] = 0x06;
    f[14] = 0; f[15] = 1; f[16] = 0x08; f[17] = 0; f[18] = 6; f[19] = 4;
    f[20] = 0; f[21] = 1;
    memcpy(f + 22, mac, 6);
    memcpy(f + 28, me, 4);
    memset(f + 32, 0, 6);
    memcpy(f + 38, peer, 4);
    struct tx_req *t = (struct tx_req *)(txring + 64) + (tx_prod % 256);
    t->gref = 14;
    t->offset = 0;
    t->flags = 0;
    t->id = id;
    t->size = 42;
    tx_prod++;
    __atomic_store_n((volatile uint32_t *)txring, tx_prod, __ATOMIC_RELEASE);
    send(port);
}

/* Returns 1 when an ARP reply from 10.99.1.1 came in. */
static int poll_rx(void)
{
    volatile uint32_t *rsp_prod = (volatile uint32_t *)(rxring + 8);
    int got = 0;
    while (__atomic_load_n(rsp_prod, __ATOMIC_ACQUIRE) != rx_cons) {
        struct rx_rsp *r = (struct rx_rsp *)(rxring + 64) + (rx_cons % 256);
        rx_cons++;
        uint16_t id = r->id % RX_BUFS;
        uint8_t *f = rxbuf[id] + r->offset;
        if (r->status >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 &&
            f[28] == 10 && f[29] == 99 && f[30] == 1 && f[31] == 1 && memcmp(f, mac, 6) == 0) {
            printf("netfront: ARP reply from %x:%x:%x:%x:%x:%x\n", f[6], f[7], f[8], f[9],
                   f[10], f[11]);
            got = 1;
        }
        post_rx(id);
    }
    /* TX responses: just consume them. */
    tx_cons = __atomic_load_n((volatile uint32_t *)(txring + 8), __ATOMIC_ACQUIRE);
    return got;
}

void guest_main(struct hvm_start_info *si)
{
    char dir[64], p[128], num[24], backend[128];
    (void)si;
    if (!pvfront_init()) {
        check(0, "no XenStore ring or grant frame");
        return;
    }
    if (xs_req(XS_DIRECTORY, "device/vif", 0) != XS_DIRECTORY || !reply[0]) {
        check(0, "no device/vif");
        return;
    }
    cat(dir, "device/vif/", reply);
    if (xs_req(XS_READ, cat(p, dir, "/backend"), 0) != XS_READ) {
        check(0, "no backend node");
        return;
    }
    memcpy(backend, reply, strlen(reply) + 1);
    if (!wait_state(cat(p, backend, "/state"), "2")) {
        check(0, "backend never reached InitWait");
        return;
    }
    if (xs_req(XS_READ, cat(p, dir, "/mac"), 0) != XS_READ || strlen(reply) != 17) {
        check(0, "no mac");
        return;
    }
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)(hexval(reply[3 * i]) << 4 | hexval(reply[3 * i + 1]));
    grant(8, txring);
    grant(9, rxring);
    for (int i = 0; i < RX_BUFS; i++)
        grant(10 + i, rxbuf[i]);
    grant(14, txbuf);
    struct evtchn_alloc_unbound au = { .dom = DOMID_SELF, .remote_dom = 0 };
    if (hypercall2(__HYPERVISOR_event_channel_op, EVTCHNOP_alloc_unbound, &au) != 0) {
        check(0, "alloc_unbound failed");
        return;
    }
    port = au.port;
    memset(txring, 0, 64);
    memset(rxring, 0, 64);
    ((volatile uint32_t *)txring)[1] = 1;
    ((volatile uint32_t *)txring)[3] = 1;
    ((volatile uint32_t *)rxring)[1] = 1;
    ((volatile uint32_t *)rxring)[3] = 1;
    xs_req(XS_WRITE, cat(p, dir, "/tx-ring-ref"), "8");
    xs_req(XS_WRITE, cat(p, dir, "/rx-ring-ref"), "9");
    utoa(num, port);
    xs_req(XS_WRITE, cat(p, dir, "/event-channel"), num);
    xs_req(XS_WRITE, cat(p, dir, "/request-rx-copy"), "1");
    xs_req(XS_WRITE, cat(p, dir, "/state"), "4");
    if (!wait_state(cat(p, backend, "/state"), "4")) {
        check(0, "backend never reached Connected");
        return;
    }
    for (uint16_t i = 0; i < RX_BUFS; i++)
        post_rx(i);
    send(port);
    int ok = 0;
    for (int a = 0; a < ATTEMPTS && !ok; a++) {
        send_arp((uint16_t)a);
        for (int s = 0; s < 2000 && !ok; s++) {
            ok = poll_rx();
            if (!ok)
                yield();
        }
    }
    check(ok, "no ARP reply after %d requests", ATTEMPTS);
    xs_req(XS_WRITE, cat(p, dir, "/state"), "6");
    check(wait_state(cat(p, backend, "/state"), "6"), "backend did not close");
}
