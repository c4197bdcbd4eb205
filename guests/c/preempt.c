/*
 * Hypercall continuations. First a batch longer than the VMM's chunk:
 * XENMEM_decrease_reservation of 6144 single pages comes back as a
 * continuation the VMM makes the vCPU re-issue (RIP back on the `out`, the
 * extent index in the command), and must still return 6144, as must the
 * populate_physmap that takes them back. Prints "preempt: resumed ok".
 *
 * Then (64-bit only) a call that would run for minutes without
 * preemption: populate_physmap of 2^26 - 1 extents, all naming the same
 * frame, through a 1 GiB virtual window at 4 GiB whose page tables alias
 * one 4 KiB page of extents. After "preempt: huge call" the host destroys
 * the domain, which must not wait for the call to end.
 */
#include "rt.h"

#define XENMEM_decrease_reservation 1
#define XENMEM_populate_physmap 6
#define MEMOP_EXTENT_SHIFT 6

/* 32..56 MiB of the 64 MiB guest: far above the image at 1 MiB. */
#define BASE 0x2000000ULL
#define PAGES 6144ULL

#ifdef __x86_64__
struct xen_memory_reservation {
    uint64_t extent_start, nr_extents;
    uint32_t extent_order, mem_flags;
    uint16_t domid;
};
typedef uint64_t xen_pfn_t;
#else
struct xen_memory_reservation {
    uint32_t extent_start, nr_extents;
    uint32_t extent_order, mem_flags;
    uint16_t domid;
};
typedef uint32_t xen_pfn_t;
#endif

static long current_reservation(void)
{
    uint16_t d = DOMID_SELF;
    return hypercall2(__HYPERVISOR_memory_op, XENMEM_current_reservation, &d);
}

/* The extent list (48 KiB), above the balloon range. */
#define LIST 0x3c00000ULL

static void resumed_batch(void)
{
    xen_pfn_t *list = phys(LIST);
    for (uint64_t i = 0; i < PAGES; i++)
        list[i] = (BASE >> 12) + i;
    *(volatile uint8_t *)phys(BASE + ((PAGES - 1) << 12)) = 0xa5;
    long pages0 = current_reservation();
    struct xen_memory_reservation r = {.extent_start = (uintptr_t)LIST,
                                       .nr_extents = PAGES, .extent_order = 0,
                                       .domid = DOMID_SELF};
    CHECK_EQ("decrease_reservation",
             hypercall2(__HYPERVISOR_memory_op, XENMEM_decrease_reservation, &r), PAGES);
    CHECK_EQ("tot_pages down", current_reservation(), pages0 - (long)PAGES);
    CHECK_EQ("last page given back", *(volatile uint8_t *)phys(BASE + ((PAGES - 1) << 12)), 0);
    CHECK_EQ("populate_physmap", hypercall2(__HYPERVISOR_memory_op, XENMEM_populate_physmap, &r),
             PAGES);
    CHECK_EQ("tot_pages back", current_reservation(), pages0);
    if (!rt_failures)
        printf("preempt: resumed ok\n");
}

#ifdef __x86_64__
static uint64_t alias_pd[512] __attribute__((aligned(4096)));
static uint64_t alias_pt[512] __attribute__((aligned(4096)));
static uint64_t extents[512] __attribute__((aligned(4096)));

#define WINDOW 0x100000000ULL /* 4 GiB: PDPT entry 4 */

static void huge_call(void)
{
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    uint64_t *pml4 = (uint64_t *)(uintptr_t)(cr3 & ~0xfffULL);
    uint64_t *pdpt = (uint64_t *)(uintptr_t)(pml4[0] & 0xffffffffff000ULL);
    for (int i = 0; i < 512; i++) {
        extents[i] = (BASE >> 12) + 7;
        alias_pt[i] = (uintptr_t)extents | 3;
        alias_pd[i] = (uintptr_t)alias_pt | 3;
    }
    pdpt[4] = (uintptr_t)alias_pd | 3;
    __asm__ volatile("mov %0, %%cr3" ::"r"(cr3) : "memory");
    CHECK_EQ("window aliases the extent page", ((volatile uint64_t *)WINDOW)[123456789],
             (BASE >> 12) + 7);
    struct xen_memory_reservation r = {.extent_start = WINDOW,
                                       .nr_extents = (1ULL << (32 - MEMOP_EXTENT_SHIFT)) - 1,
                                       .extent_order = 0, .domid = DOMID_SELF};
    printf("preempt: huge call\n");
    long n = hypercall2(__HYPERVISOR_memory_op, XENMEM_populate_physmap, &r);
    printf("preempt: huge call returned %ld\n", n);
}
#endif

void guest_main(struct hvm_start_info *si)
{
    (void)si;
    resumed_batch();
#ifdef __x86_64__
    if (!rt_failures)
        huge_call();
#endif
}
