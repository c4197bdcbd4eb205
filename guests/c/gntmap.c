/*
 * The guest's own GNTTABOP_map_grant_ref / unmap_grant_ref: it grants its
 * own pages to itself and maps them at guest-physical host_addr (a frame
 * that is not RAM, and a frame it ballooned out), reads and writes through
 * the second mapping, sees GTF_reading/GTF_writing while mapped, and gets
 * Xen's per-op GNTST_* status for every bad argument (the hypercall itself
 * returns 0). Prints "gntmap: mapped N".
 */
#include "core.c"

#define GNTTABOP_map_grant_ref 0
#define GNTTABOP_unmap_grant_ref 1
#define GNTMAP_device_map 1
#define GNTMAP_host_map 2
#define GNTMAP_readonly 4
#define GNTMAP_application_map 8
#define GNTST_general_error_ (-1)
#define GNTST_bad_domain (-2)
#define GNTST_bad_gntref (-3)
#define GNTST_bad_handle (-4)
#define GNTST_bad_dev_addr (-6)
#define GTF_readonly 4
#define GTF_reading 8
#define GTF_writing 16
#define XENMEM_decrease_reservation 1
#define XENMEM_populate_physmap 6

struct gnttab_map_grant_ref {
    uint64_t host_addr;
    uint32_t flags, ref;
    uint16_t dom;
    int16_t status;
    uint32_t handle;
    uint64_t dev_bus_addr;
};
struct gnttab_unmap_grant_ref {
    uint64_t host_addr, dev_bus_addr;
    uint32_t handle;
    int16_t status;
};
struct xen_memory_reservation {
    uint64_t extent_start, nr_extents;
    uint32_t extent_order, mem_flags;
    uint16_t domid;
};

#define GT_GFN 0xfd100ULL
/* Not RAM (the guest has 64 MiB), where Linux's unpopulated-alloc would
 * take frames from. */
#define HOLE_A 0xfd400000ULL
#define HOLE_B 0xfd401000ULL

static uint8_t page_a[4096] __attribute__((aligned(4096)));
static uint8_t page_b[4096] __attribute__((aligned(4096)));
static uint8_t page_ram[4096] __attribute__((aligned(4096)));
static uint8_t page_ballooned[4096] __attribute__((aligned(4096)));

static long gnttab_op(unsigned cmd, void *arg, unsigned count)
{
    return hypercall3(__HYPERVISOR_grant_table_op, cmd, arg, count);
}

static struct gnttab_map_grant_ref mop(uint64_t host, uint32_t flags, uint32_t ref, uint16_t dom)
{
    return (struct gnttab_map_grant_ref){.host_addr = host, .flags = flags, .ref = ref,
                                         .dom = dom, .status = 99, .handle = 0xabcd};
}

static int16_t unmap(uint64_t host, uint64_t dev, uint32_t handle)
{
    struct gnttab_unmap_grant_ref u = {.host_addr = host, .dev_bus_addr = dev,
                                       .handle = handle, .status = 99};
    CHECK_EQ("unmap rc", gnttab_op(GNTTABOP_unmap_grant_ref, &u, 1), 0);
    return u.status;
}

static long reservation(unsigned cmd, uint64_t gfn)
{
    struct xen_memory_reservation r = {.extent_start = (uintptr_t)&gfn, .nr_extents = 1,
                                       .domid = DOMID_SELF};
    return hypercall2(__HYPERVISOR_memory_op, cmd, &r);
}

void guest_main(struct hvm_start_info *si)
{
    (void)si;
    core_setup();
    uint32_t a, b, c, d;
    cpuid(xen_cpuid_base + 4, 0, &a, &b, &c, &d);
    uint16_t me = (uint16_t)c;
    struct xen_add_to_physmap x = {.domid = DOMID_SELF, .space = XENMAPSPACE_grant_table,
                                   .idx = 0, .gpfn = GT_GFN};
    CHECK_EQ("map grant frame 0", hypercall2(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, &x), 0);
    volatile struct grant_entry_v1 *gt = phys(GT_GFN << 12);
    uint32_t fa = (uint32_t)((uintptr_t)page_a >> 12), fb = (uint32_t)((uintptr_t)page_b >> 12);
    gt[10] = (struct grant_entry_v1){.flags = GTF_permit_access, .domid = me, .frame = fa};
    gt[11] = (struct grant_entry_v1){.flags = GTF_permit_access | GTF_readonly, .domid = me,
                                     .frame = fb};
    gt[12] = (struct grant_entry_v1){.flags = GTF_permit_access, .domid = 0, .frame = fa};
    gt[13] = (struct grant_entry_v1){.flags = 0, .domid = me, .frame = fa};
    memcpy(page_a, "page A through a grant", 23);
    memcpy(page_b, "page B, read-only", 18);

    /* Bad arguments: per-op status, the call itself succeeds. */
    struct gnttab_map_grant_ref bad[] = {
        mop(HOLE_A, 0, 10, me),
        mop(HOLE_A, GNTMAP_host_map | GNTMAP_device_map, 10, me),
        mop(HOLE_A, GNTMAP_host_map | GNTMAP_application_map, 10, me),
        mop(HOLE_A, GNTMAP_host_map, 10, DOMID_SELF),
        mop(HOLE_A, GNTMAP_host_map, 10, 77),
        mop(HOLE_A, GNTMAP_host_map, 1u << 20, me),
        mop(HOLE_A, GNTMAP_host_map, 13, me),
        mop(HOLE_A, GNTMAP_host_map, 12, me),
        mop(HOLE_A, GNTMAP_host_map, 11, me),
        mop((uintptr_t)page_ram, GNTMAP_host_map, 10, me),
        mop(SHINFO_GFN << 12, GNTMAP_host_map, 10, me),
        mop(GT_GFN << 12, GNTMAP_host_map, 10, me),
    };
    static const int16_t want[] = {
        GNTST_bad_gntref,     GNTST_general_error_, GNTST_general_error_, GNTST_bad_domain,
        GNTST_bad_domain,     GNTST_bad_gntref,     GNTST_general_error_, GNTST_general_error_,
        GNTST_general_error_, GNTST_general_error_, GNTST_general_error_, GNTST_general_error_,
    };
    unsigned n = sizeof(bad) / sizeof(bad[0]);
    CHECK_EQ("map rc with bad ops", gnttab_op(GNTTABOP_map_grant_ref, bad, n), 0);
    for (unsigned i = 0; i < n; i++) {
        check(bad[i].status == want[i], "bad map op %u: status %d, want %d", i, bad[i].status,
              want[i]);
        check(bad[i].handle == 0xabcd, "bad map op %u wrote handle %u", i, bad[i].handle);
    }
    CHECK_EQ("flags after failed maps", gt[10].flags, GTF_permit_access);
    CHECK_EQ("r/o flags after failed write map", gt[11].flags, GTF_permit_access | GTF_readonly);

    /* Map A writable into a hole and B read-only next to it, in one call. */
    struct gnttab_map_grant_ref ok[2] = {
        mop(HOLE_A, GNTMAP_host_map, 10, me),
        mop(HOLE_B, GNTMAP_host_map | GNTMAP_readonly, 11, me),
    };
    CHECK_EQ("map rc", gnttab_op(GNTTABOP_map_grant_ref, ok, 2), 0);
    CHECK_EQ("map A", ok[0].status, 0);
    CHECK_EQ("map B r/o", ok[1].status, 0);
    CHECK_EQ("dev_bus_addr A", ok[0].dev_bus_addr, (uintptr_t)page_a);
    check(ok[0].handle != ok[1].handle, "handles %u %u", ok[0].handle, ok[1].handle);
    CHECK_EQ("A in use", gt[10].flags, GTF_permit_access | GTF_reading | GTF_writing);
    CHECK_EQ("B in use, read", gt[11].flags, GTF_permit_access | GTF_readonly | GTF_reading);
    volatile char *ma = phys(HOLE_A), *mb = phys(HOLE_B);
    check(memcmp((const void *)(uintptr_t)ma, "page A through a grant", 23) == 0, "A at host_addr: \"%s\"",
          (const char *)(uintptr_t)ma);
    check(memcmp((const void *)(uintptr_t)mb, "page B, read-only", 18) == 0, "B at host_addr: \"%s\"",
          (const char *)(uintptr_t)mb);
    ma[0] = 'P';
    CHECK_EQ("write through the mapping reaches the page", page_a[0], 'P');
    page_a[1] = 'A';
    CHECK_EQ("and back", ma[1], 'A');
    /* The frame is taken now. */
    struct gnttab_map_grant_ref again = mop(HOLE_A, GNTMAP_host_map, 10, me);
    CHECK_EQ("map rc again", gnttab_op(GNTTABOP_map_grant_ref, &again, 1), 0);
    CHECK_EQ("host_addr already mapped", again.status, GNTST_general_error_);

    /* A frame the guest gave back is a hole too. */
    uint64_t bgfn = (uintptr_t)page_ballooned >> 12;
    CHECK_EQ("balloon out", reservation(XENMEM_decrease_reservation, bgfn), 1);
    struct gnttab_map_grant_ref ballooned = mop(bgfn << 12, GNTMAP_host_map, 10, me);
    CHECK_EQ("map rc ballooned", gnttab_op(GNTTABOP_map_grant_ref, &ballooned, 1), 0);
    CHECK_EQ("map onto a ballooned frame", ballooned.status, 0);
    check(memcmp(page_ballooned, "PAge A", 6) == 0, "ballooned frame shows \"%s\"",
          (const char *)page_ballooned);
    CHECK_EQ("unmap ballooned", unmap(bgfn << 12, 0, ballooned.handle), 0);
    CHECK_EQ("populate again", reservation(XENMEM_populate_physmap, bgfn), 1);
    CHECK_EQ("repopulated frame is zero", page_ballooned[0], 0);

    /* Bad unmaps. */
    CHECK_EQ("unmap unknown handle", unmap(HOLE_A, 0, 4242), GNTST_bad_handle);
    CHECK_EQ("unmap wrong dev_bus_addr", unmap(HOLE_A, (uintptr_t)page_b, ok[0].handle),
             GNTST_bad_dev_addr);
    CHECK_EQ("unmap wrong host_addr", unmap(HOLE_B, 0, ok[0].handle), GNTST_general_error_);
    CHECK_EQ("unmap without host_addr (nothing done)", unmap(0, 0, ok[0].handle), 0);
    CHECK_EQ("still mapped", ma[0], 'P');
    /* Good unmaps: the flags go back. */
    CHECK_EQ("unmap A", unmap(HOLE_A, (uintptr_t)page_a, ok[0].handle), 0);
    CHECK_EQ("unmap A again", unmap(HOLE_A, 0, ok[0].handle), GNTST_bad_handle);
    CHECK_EQ("A released", gt[10].flags, GTF_permit_access);
    CHECK_EQ("unmap B", unmap(HOLE_B, 0, ok[1].handle), 0);
    CHECK_EQ("B released", gt[11].flags, GTF_permit_access | GTF_readonly);
    /* The hole can be mapped again after the unmap. */
    struct gnttab_map_grant_ref re = mop(HOLE_A, GNTMAP_host_map, 11, me);
    re.flags |= GNTMAP_readonly;
    CHECK_EQ("map rc after unmap", gnttab_op(GNTTABOP_map_grant_ref, &re, 1), 0);
    CHECK_EQ("re-map the hole", re.status, 0);
    CHECK_EQ("now B there", ma[0], 'p');
    CHECK_EQ("unmap re", unmap(HOLE_A, 0, re.handle), 0);
    printf("gntmap: mapped %u\n", 4u);
}
