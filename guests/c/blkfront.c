/*
 * A minimal blkfront, as Linux's and GRUB's do it: finds its disk under
 * device/vbd in XenStore, waits for the backend's InitWait, grants a ring
 * page and data pages, allocates an event channel for the backend, writes
 * ring-ref / event-channel / protocol and Initialised, waits for
 * Connected, then issues every request type and checks the results:
 * WRITE, FLUSH_DISKCACHE, READ, WRITE_BARRIER, INDIRECT, DISCARD, a read
 * past the end of the disk and a read through an ungranted reference.
 * Built 64-bit (x86_64-abi) and 32-bit (x86_32-abi: the same C structs
 * with i386 alignment). Polls with SCHEDOP_yield; no interrupts. The
 * XenStore client and grant helpers are in pvfront.h.
 */
#include "pvfront.h"

#define OP_READ 0
#define OP_WRITE 1
#define OP_WRITE_BARRIER 2
#define OP_FLUSH 3
#define OP_DISCARD 5
#define OP_INDIRECT 6

#ifdef __x86_64__
#define PROTOCOL "x86_64-abi"
#define PAD(n) uint8_t n[4];
#else
#define PROTOCOL "x86_32-abi"
#define PAD(n)
#endif

struct seg {
    uint32_t gref;
    uint8_t first_sect, last_sect;
    uint16_t pad;
};

struct req_rw {
    uint8_t operation, nr_segments;
    uint16_t handle;
    PAD(pad1)
    uint64_t id, sector;
    struct seg seg[11];
} __attribute__((packed));

struct req_discard {
    uint8_t operation, flag;
    uint16_t handle;
    PAD(pad1)
    uint64_t id, sector, nr_sectors;
} __attribute__((packed));

struct req_indirect {
    uint8_t operation, indirect_op;
    uint16_t nr_segments;
    PAD(pad1)
    uint64_t id, sector;
    uint16_t handle, pad2;
    uint32_t grefs[8];
    PAD(pad3)
} __attribute__((packed));

struct rsp {
    uint64_t id;
    uint8_t operation;
    int16_t status;
};

#define SLOT sizeof(struct req_rw)
#define RING_SIZE 32

static uint8_t ring[4096] __attribute__((aligned(4096)));
static uint8_t data[5][4096] __attribute__((aligned(4096)));
static uint32_t blk_port;
static uint32_t req_prod, rsp_cons;

static void *slot(uint32_t idx)
{
    return ring + 64 + (idx % RING_SIZE) * SLOT;
}

static void push(void)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n((volatile uint32_t *)ring, req_prod, __ATOMIC_RELEASE);
    send(blk_port);
}

/* Waits for the response to the last request; returns its status (or 99). */
static int wait_rsp(uint64_t id, uint8_t op)
{
    volatile uint32_t *rsp_prod = (volatile uint32_t *)(ring + 8);
    for (int i = 0; i < 200000; i++) {
        if (__atomic_load_n(rsp_prod, __ATOMIC_ACQUIRE) != rsp_cons) {
            struct rsp *r = slot(rsp_cons++);
            if (r->id != id || r->operation != op)
                return 98;
            return r->status;
        }
        yield();
    }
    return 99;
}

static int rw(uint8_t op, uint64_t id, uint64_t sector, uint32_t gref, uint8_t last)
{
    struct req_rw *r = slot(req_prod++);
    memset(r, 0, sizeof(*r));
    r->operation = op;
    r->nr_segments = op == OP_FLUSH ? 0 : 1;
    r->id = id;
    r->sector = sector;
    r->seg[0].gref = gref;
    r->seg[0].first_sect = 0;
    r->seg[0].last_sect = last;
    push();
    return wait_rsp(id, op);
}

void guest_main(struct hvm_start_info *si)
{
    char dir[64], p[128], num[24];
    (void)si;
    if (!pvfront_init()) {
        check(0, "no XenStore ring or grant frame");
        return;
    }
    if (xs_req(XS_DIRECTORY, "device/vbd", 0) != XS_DIRECTORY || !reply[0]) {
        check(0, "no device/vbd");
        return;
    }
    cat(dir, "device/vbd/", reply);
    char backend[128];
    if (xs_req(XS_READ, cat(p, dir, "/backend"), 0) != XS_READ) {
        check(0, "no backend node");
        return;
    }
    memcpy(backend, reply, strlen(reply) + 1);
    if (!wait_state(cat(p, backend, "/state"), "2")) {
        check(0, "backend never reached InitWait");
        return;
    }
    xs_req(XS_READ, cat(p, backend, "/sectors"), 0);
    uint64_t sectors = atou(reply);
    xs_req(XS_READ, cat(p, backend, "/feature-max-indirect-segments"), 0);
    uint64_t max_ind = atou(reply);
    CHECK_EQ("feature-max-indirect-segments", max_ind, 256);

    grant(8, ring);
    for (uint32_t i = 0; i < 5; i++)
        grant(9 + i, data[i]);
    struct evtchn_alloc_unbound au = { .dom = DOMID_SELF, .remote_dom = 0 };
    if (hypercall2(__HYPERVISOR_event_channel_op, EVTCHNOP_alloc_unbound, &au) != 0) {
        check(0, "alloc_unbound failed");
        return;
    }
    blk_port = au.port;
    /* SHARED_RING_INIT: indices 0, req_event = rsp_event = 1. */
    memset(ring, 0, 64);
    ((volatile uint32_t *)ring)[1] = 1;
    ((volatile uint32_t *)ring)[3] = 1;
    xs_req(XS_WRITE, cat(p, dir, "/ring-ref"), "8");
    utoa(num, blk_port);
    xs_req(XS_WRITE, cat(p, dir, "/event-channel"), num);
    xs_req(XS_WRITE, cat(p, dir, "/protocol"), PROTOCOL);
    xs_req(XS_WRITE, cat(p, dir, "/state"), "3");
    if (!wait_state(cat(p, backend, "/state"), "4")) {
        check(0, "backend never reached Connected");
        return;
    }

    for (int i = 0; i < 4096; i++) {
        data[0][i] = (uint8_t)(0xa0 + i / 512);
        data[4][i] = (uint8_t)(0x30 + i / 512);
    }
    CHECK_EQ("WRITE", rw(OP_WRITE, 1, 16, 9, 7), 0);
    CHECK_EQ("FLUSH_DISKCACHE", rw(OP_FLUSH, 2, 0, 0, 0), 0);
    CHECK_EQ("READ", rw(OP_READ, 3, 16, 10, 7), 0);
    check(memcmp(data[0], data[1], 4096) == 0, "READ returned other data than WRITE wrote");
    CHECK_EQ("WRITE_BARRIER", rw(OP_WRITE_BARRIER, 4, 24, 13, 7), 0);

    /* INDIRECT: sectors 16..31 into pages 2 and 3, the descriptors in page 1
     * (re-granted as the indirect page). */
    struct seg *d = (struct seg *)data[1];
    memset(data[1], 0, 4096);
    d[0] = (struct seg){ .gref = 11, .first_sect = 0, .last_sect = 7 };
    d[1] = (struct seg){ .gref = 12, .first_sect = 0, .last_sect = 7 };
    struct req_indirect *ir = slot(req_prod++);
    memset(ir, 0, SLOT);
    ir->operation = OP_INDIRECT;
    ir->indirect_op = OP_READ;
    ir->nr_segments = 2;
    ir->id = 5;
    ir->sector = 16;
    ir->grefs[0] = 10;
    push();
    /* Answered with the inner operation, as Linux's blkback does and
     * Linux's blkfront requires (a response carrying OP_INDIRECT makes it
     * disable the disk). */
    CHECK_EQ("INDIRECT", wait_rsp(5, OP_READ), 0);
    check(memcmp(data[2], data[0], 4096) == 0, "INDIRECT segment 0 data");
    check(memcmp(data[3], data[4], 4096) == 0, "INDIRECT segment 1 data");

    struct req_discard *dr = slot(req_prod++);
    memset(dr, 0, SLOT);
    dr->operation = OP_DISCARD;
    dr->id = 6;
    dr->sector = 32;
    dr->nr_sectors = 8;
    push();
    CHECK_EQ("DISCARD", wait_rsp(6, OP_DISCARD), 0);
    CHECK_EQ("READ past the end", rw(OP_READ, 7, sectors - 1, 10, 7), -1);
    CHECK_EQ("READ through an ungranted ref", rw(OP_READ, 8, 0, 4000, 0), -1);

    /* Close as GRUB does before handing over. */
    xs_req(XS_WRITE, cat(p, dir, "/state"), "6");
    check(wait_state(cat(p, backend, "/state"), "6"), "backend did not close");
    printf("blkfront %s: %u sectors, done\n", PROTOCOL, (unsigned)sectors);
}
