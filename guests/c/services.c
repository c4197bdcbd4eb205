/*
 * Grant-table frames on demand and the guest's own GNTTABOP_copy, the
 * balloon calls (decrease_reservation / populate_physmap), physdev_op on a
 * PVH guest (no PIRQs: -ENOSYS) and the remaining hvm_ops, each with Xen's
 * error codes. Prints "services: nr_frames N".
 */
#include "core.c"

#define GNTTABOP_copy 5
#define GNTCOPY_source_gref 1
#define GNTST_bad_copy_arg (-10)
#define GNTST_permission_denied_ (-8)
#define XENMEM_decrease_reservation 1
#define XENMEM_populate_physmap 6
#define HVMOP_flush_tlbs 5
#define HVMOP_pagetable_dying 9
#define PHYSDEVOP_map_pirq 13

struct gnttab_copy_ptr {
    uint64_t u;
    uint16_t domid, offset;
    uint32_t pad;
};
struct gnttab_copy {
    struct gnttab_copy_ptr source, dest;
    uint16_t len, flags;
    int16_t status;
    uint16_t pad;
};
struct xen_memory_reservation {
    uint64_t extent_start, nr_extents;
    uint32_t extent_order, mem_flags;
    uint16_t domid;
};

#define GT_GFN 0xfd100ULL

static uint8_t page_a[4096] __attribute__((aligned(4096)));
static uint8_t page_b[4096] __attribute__((aligned(4096)));
static uint8_t balloon[4096] __attribute__((aligned(4096)));

static long gnttab_op(unsigned cmd, void *arg, unsigned count)
{
    return hypercall3(__HYPERVISOR_grant_table_op, cmd, arg, count);
}

static long current_reservation(void)
{
    uint16_t d = DOMID_SELF;
    return hypercall2(__HYPERVISOR_memory_op, XENMEM_current_reservation, &d);
}

static void grants(uint16_t domid)
{
    struct gnttab_query_size q = {.dom = DOMID_SELF};
    CHECK_EQ("query_size", gnttab_op(GNTTABOP_query_size, &q, 1), 0);
    CHECK_EQ("initial frames", q.nr_frames, 1);
    uint32_t max = q.max_nr_frames;
    /* Map frame 3: the table grows to 4 frames on demand. */
    struct xen_add_to_physmap x = {.domid = DOMID_SELF, .space = XENMAPSPACE_grant_table,
                                   .idx = 3, .gpfn = GT_GFN + 3};
    CHECK_EQ("map grant frame 3", hypercall2(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, &x), 0);
    x.idx = max;
    x.gpfn = GT_GFN + 9;
    CHECK_EQ("map grant frame max", hypercall2(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, &x),
           -XEN_EINVAL);
    CHECK_EQ("query_size again", gnttab_op(GNTTABOP_query_size, &q, 1), 0);
    CHECK_EQ("frames after growing", q.nr_frames, 4);
    x.idx = 0;
    x.gpfn = GT_GFN;
    CHECK_EQ("map grant frame 0", hypercall2(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, &x), 0);
    uint64_t frames[2];
    struct gnttab_setup_table st = {.dom = DOMID_SELF, .nr_frames = max + 1,
                                    .frame_list = (unsigned long)frames};
    CHECK_EQ("setup_table rc", gnttab_op(GNTTABOP_setup_table, &st, 1), 0);
    CHECK_EQ("setup_table past max", st.status, GNTST_general_error);

    /* Grant page_a to ourselves and copy through the grant into page_b. */
    struct grant_entry_v1 *gt = phys(GT_GFN << 12);
    memcpy(page_a, "through a grant", 16);
    gt[10] = (struct grant_entry_v1){.flags = GTF_permit_access, .domid = domid,
                                     .frame = (uint32_t)((uintptr_t)page_a >> 12)};
    uint64_t b_gfn = (uintptr_t)page_b >> 12;
    struct gnttab_copy c[3] = {
        {.source = {.u = 10, .domid = DOMID_SELF}, .dest = {.u = b_gfn, .domid = DOMID_SELF},
         .len = 16, .flags = GNTCOPY_source_gref, .status = 99},
        {.source = {.u = 10, .domid = DOMID_SELF}, .dest = {.u = b_gfn, .domid = DOMID_SELF},
         .len = 4097, .flags = GNTCOPY_source_gref, .status = 99},
        {.source = {.u = b_gfn, .domid = 0}, .dest = {.u = b_gfn, .domid = DOMID_SELF},
         .len = 8, .flags = 0, .status = 99},
    };
    CHECK_EQ("copy rc", gnttab_op(GNTTABOP_copy, c, 3), 0);
    CHECK_EQ("copy via grant", c[0].status, GNTST_okay);
    check(memcmp(page_b, "through a grant", 16) == 0, "page_b holds \"%s\"", (char *)page_b);
    CHECK_EQ("copy past the page", c[1].status, GNTST_bad_copy_arg);
    CHECK_EQ("copy by foreign frame", c[2].status, GNTST_permission_denied_);
    CHECK_EQ("grant flags back to permit", gt[10].flags, GTF_permit_access);
    printf("services: nr_frames %u\n", q.nr_frames);
}

static void balloon_page(void)
{
    long before = current_reservation();
    check(before > 0, "current_reservation %ld", before);
    balloon[0] = 0x5a;
    uint64_t gfn = (uintptr_t)balloon >> 12;
    struct xen_memory_reservation r = {.extent_start = (uintptr_t)&gfn, .nr_extents = 1,
                                       .domid = DOMID_SELF};
    CHECK_EQ("decrease_reservation", hypercall2(__HYPERVISOR_memory_op,
                                              XENMEM_decrease_reservation, &r), 1);
    CHECK_EQ("one page less", current_reservation(), before - 1);
    CHECK_EQ("populate_physmap", hypercall2(__HYPERVISOR_memory_op, XENMEM_populate_physmap, &r), 1);
    CHECK_EQ("page back", current_reservation(), before);
    CHECK_EQ("fresh page is zero", balloon[0], 0);
    r.extent_order = 10;
    CHECK_EQ("order 10", hypercall2(__HYPERVISOR_memory_op, XENMEM_populate_physmap, &r), 0);
    r.extent_order = 0;
    r.domid = 0;
    CHECK_EQ("foreign domain", hypercall2(__HYPERVISOR_memory_op, XENMEM_populate_physmap, &r), 0);
}

void guest_main(struct hvm_start_info *si)
{
    (void)si;
    core_setup();
    uint32_t a, b, c, d;
    cpuid(xen_cpuid_base + 4, 0, &a, &b, &c, &d);
    check(a & (1u << 4), "CPUID: no domid (eax %x)", a);
    grants((uint16_t)c);
    balloon_page();
    uint8_t map[40] = {0};
    CHECK_EQ("physdev map_pirq on PVH", hypercall2(__HYPERVISOR_physdev_op, PHYSDEVOP_map_pirq, map),
           -XEN_ENOSYS);
    uint64_t dying[2] = {DOMID_SELF, 0x1000};
    CHECK_EQ("pagetable_dying (HAP)", hypercall2(__HYPERVISOR_hvm_op, HVMOP_pagetable_dying, dying),
           -XEN_EINVAL);
    CHECK_EQ("flush_tlbs", hypercall2(__HYPERVISOR_hvm_op, HVMOP_flush_tlbs, 0), 0);
    CHECK_EQ("flush_tlbs with arg", hypercall2(__HYPERVISOR_hvm_op, HVMOP_flush_tlbs, 1),
           -XEN_EINVAL);
}
