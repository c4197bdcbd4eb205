/*
 * Ballooning gives memory back to the host: the guest touches 16 MiB of
 * its RAM, gives it back with XENMEM_decrease_reservation (2 MiB extents)
 * and asks the VMM (test probe of the debug hypercall, booted with
 * VmConfig::debug_hypercall) how many of those pages are still resident
 * in host memory; then populates them again and finds them zeroed.
 * Prints "balloon: resident before B after A repopulated R".
 */
#include "core.c"

#define XENMEM_decrease_reservation 1
#define XENMEM_populate_physmap 6
#define XKVM_DEBUG 127 /* crates/vmm/src/debug_hook.rs */
#define OP_RESIDENT_PAGES 18

/* 32..48 MiB of the 64 MiB guest: far above the image at 1 MiB. */
#define BASE 0x2000000ULL
#define PAGES 4096ULL
#define ORDER 9

struct xen_memory_reservation {
    uint64_t extent_start, nr_extents;
    uint32_t extent_order, mem_flags;
    uint16_t domid;
};

static long resident(void)
{
    return hypercall3(XKVM_DEBUG, OP_RESIDENT_PAGES, BASE, PAGES);
}

static long current_reservation(void)
{
    uint16_t d = DOMID_SELF;
    return hypercall2(__HYPERVISOR_memory_op, XENMEM_current_reservation, &d);
}

void guest_main(struct hvm_start_info *si)
{
    (void)si;
    for (uint64_t p = 0; p < PAGES; p++)
        *(volatile uint8_t *)phys(BASE + (p << 12)) = 0xa5;
    long before = resident();
    long pages0 = current_reservation();
    uint64_t extents[PAGES >> ORDER];
    for (uint64_t i = 0; i < (PAGES >> ORDER); i++)
        extents[i] = (BASE >> 12) + (i << ORDER);
    struct xen_memory_reservation r = {.extent_start = (uintptr_t)extents,
                                       .nr_extents = PAGES >> ORDER, .extent_order = ORDER,
                                       .domid = DOMID_SELF};
    CHECK_EQ("decrease_reservation", hypercall2(__HYPERVISOR_memory_op,
                                              XENMEM_decrease_reservation, &r),
             PAGES >> ORDER);
    CHECK_EQ("tot_pages down", current_reservation(), pages0 - (long)PAGES);
    long after = resident();
    CHECK_EQ("populate_physmap", hypercall2(__HYPERVISOR_memory_op, XENMEM_populate_physmap, &r),
             PAGES >> ORDER);
    CHECK_EQ("tot_pages back", current_reservation(), pages0);
    long repopulated = resident();
    int nonzero = 0;
    for (uint64_t p = 0; p < PAGES; p += 97)
        nonzero += *(volatile uint8_t *)phys(BASE + (p << 12)) != 0;
    CHECK_EQ("repopulated pages read zero", nonzero, 0);
    check(before >= 0 && after >= 0 && repopulated >= 0, "probe failed %ld %ld %ld", before,
          after, repopulated);
    printf("balloon: resident before %ld after %ld repopulated %ld\n", before, after,
           repopulated);
}
