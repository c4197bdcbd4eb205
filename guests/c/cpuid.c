/*
 * Prints Xen's CPUID leaves, one line each, for the test to assert on per
 * configured xen_version/viridian:
 *   cpuid base 0x40000000
 *   cpuid leaf 0x40000003.1: eax ebx ecx edx
 * and checks what the guest itself can: the signature, that leaf base+1
 * agrees with XENVER_version, and that base+2 names one hypercall page.
 */
#include "rt.h"

static void dump(uint32_t leaf, uint32_t sub)
{
    uint32_t a, b, c, d;
    cpuid(leaf, sub, &a, &b, &c, &d);
    printf("cpuid leaf 0x%x.%u: %08x %08x %08x %08x\n", leaf, sub, a, b, c, d);
}

void guest_main(struct hvm_start_info *si)
{
    uint32_t base = xen_cpuid_base, max, a, b, c, d;
    long version = hypercall2(__HYPERVISOR_xen_version, XENVER_version, 0);
    (void)si;

    cpuid(0x40000000, 0, &a, &b, &c, &d);
    printf("cpuid 0x40000000 signature %c%c%c%c%c%c%c%c%c%c%c%c\n", (char)b, (char)(b >> 8),
           (char)(b >> 16), (char)(b >> 24), (char)c, (char)(c >> 8), (char)(c >> 16),
           (char)(c >> 24), (char)d, (char)(d >> 8), (char)(d >> 16), (char)(d >> 24));
    cpuid(base, 0, &max, &b, &c, &d);
    printf("cpuid base 0x%x max 0x%x\n", base, max);
    check(max >= base + 2 && max < base + 0x100, "max leaf 0x%x out of range", max);
    for (uint32_t leaf = base; leaf <= max && leaf < base + 0x10; leaf++) {
        dump(leaf, 0);
        if (leaf == base + 3) { /* time leaf: sub-leaves 1 and 2 */
            dump(leaf, 1);
            dump(leaf, 2);
        }
    }
    cpuid(base + 1, 0, &a, &b, &c, &d);
    printf("xen_version %ld.%ld\n", version >> 16, version & 0xffff);
    check((long)a == version, "leaf base+1 eax 0x%x differs from XENVER_version 0x%lx", a,
          version);
    cpuid(base + 2, 0, &a, &b, &c, &d);
    check(a == 1, "base+2: %u hypercall pages, want 1", a);
    cpuid(1, 0, &a, &b, &c, &d);
    printf("cpuid leaf 0x1.0: %08x %08x %08x %08x\n", a, b, c, d);
    check(c & (1U << 31), "cpuid 1 ecx: hypervisor bit clear");
    printf("apic %s\n", d & (1U << 9) ? "present" : "absent");
}
