/*
 * Start of day: checks hvm_start_info (magic, version) and prints what it
 * finds for the test to compare with the domain's config:
 *   startinfo version 1 flags 0x0
 *   cmdline: <text>
 *   modules 1
 *   module 0 size 0x<n> cmdline '<text>' data '<first bytes>'
 *   memmap <i> addr 0x<a> size 0x<s> type <t>
 *   ram below 4G 0x<bytes>
 *   ram above 4G 0x<bytes>
 *   acpi rsdp 0x<paddr> rev <r> oem '<id>'
 *   acpi table <SIG> at 0x<paddr> len <n>
 *   madt lapic uid <n> id <apic id> enabled <0|1>
 *   madt lapics <n> enabled <n>        (or "madt none")
 * Checks here are the ones that need no config: structure, checksums,
 * a memmap without overlaps, the kernel inside RAM.
 */
#include "rt.h"

struct acpi_header {
    char signature[4];
    uint32_t length;
    uint8_t revision;
    uint8_t checksum;
    char oem_id[6];
    char oem_table_id[8];
    uint32_t oem_revision;
    uint32_t creator_id;
    uint32_t creator_revision;
} __attribute__((packed));

struct acpi_rsdp {
    char signature[8];
    uint8_t checksum;
    char oem_id[6];
    uint8_t revision;
    uint32_t rsdt_address;
    uint32_t length;
    uint64_t xsdt_address;
    uint8_t extended_checksum;
    uint8_t reserved[3];
} __attribute__((packed));

extern char __image_start[], __image_end[];

static uint8_t sum(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint8_t s = 0;
    while (n--)
        s += *b++;
    return s;
}

static void print_bytes(const char *label, const char *p, size_t n)
{
    printf("%s'", label);
    for (size_t i = 0; i < n; i++)
        printf("%c", p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '.');
    printf("'");
}

static void check_modules(struct hvm_start_info *si)
{
    const struct hvm_modlist_entry *mods = phys(si->modlist_paddr);
    printf("modules %u\n", si->nr_modules);
    if (!si->nr_modules)
        return;
    if (!mods) {
        check(0, "modlist_paddr 0x%llx unreachable", (unsigned long long)si->modlist_paddr);
        return;
    }
    for (uint32_t i = 0; i < si->nr_modules && i < 16; i++) {
        const char *data = phys(mods[i].paddr);
        const char *cmd = mods[i].cmdline_paddr ? phys(mods[i].cmdline_paddr) : "";
        check(data != NULL, "module %u at 0x%llx unreachable", i,
              (unsigned long long)mods[i].paddr);
        check((mods[i].paddr & 0xfff) == 0, "module %u not page aligned", i);
        check(mods[i].paddr >= (uintptr_t)__image_end ||
                  mods[i].paddr + mods[i].size <= (uintptr_t)__image_start,
              "module %u overlaps the kernel", i);
        printf("module %u size 0x%llx cmdline '%s' ", i, (unsigned long long)mods[i].size,
               cmd ? cmd : "?");
        if (data)
            print_bytes("data ", data, mods[i].size < 32 ? (size_t)mods[i].size : 32);
        printf("\n");
    }
}

static void check_memmap(struct hvm_start_info *si)
{
    const struct hvm_memmap_table_entry *map = phys(si->memmap_paddr);
    uint64_t low_ram = 0, high_ram = 0;
    int kernel_in_ram = 0;
    check(si->memmap_entries > 0 && map != NULL, "no memory map");
    if (!map)
        return;
    for (uint32_t i = 0; i < si->memmap_entries && i < 64; i++) {
        uint64_t a = map[i].addr, s = map[i].size;
        printf("memmap %u addr 0x%llx size 0x%llx type %u\n", i, (unsigned long long)a,
               (unsigned long long)s, map[i].type);
        /* libxl lists the ACPI modules in load order, so the map need not be
         * sorted; entries must not overlap. */
        for (uint32_t j = 0; j < i; j++)
            check(a + s <= map[j].addr || map[j].addr + map[j].size <= a,
                  "memmap %u overlaps entry %u", i, j);
        if (map[i].type == 1) {
            if (a + s <= 0x100000000ULL)
                low_ram += s;
            else
                high_ram += s;
            if (a <= 0x100000 && a + s >= (uintptr_t)__image_end)
                kernel_in_ram = 1;
        }
    }
    printf("ram below 4G 0x%llx\n", (unsigned long long)low_ram);
    printf("ram above 4G 0x%llx\n", (unsigned long long)high_ram);
    check(kernel_in_ram, "the kernel image is not inside a RAM entry");
}

static void check_madt(const struct acpi_header *madt)
{
    const uint8_t *p = (const uint8_t *)madt + 44, *end = (const uint8_t *)madt + madt->length;
    unsigned lapics = 0, enabled = 0;
    for (; p + 2 <= end && p[1] >= 2; p += p[1]) {
        if (p[0] == 0 && p[1] >= 8) { /* Processor Local APIC */
            printf("madt lapic uid %u id %u enabled %u\n", p[2], p[3], p[4] & 1);
            lapics++;
            enabled += p[4] & 1;
        }
    }
    printf("madt lapics %u enabled %u\n", lapics, enabled);
}

static void check_acpi(struct hvm_start_info *si)
{
    const struct acpi_rsdp *rsdp = phys(si->rsdp_paddr);
    const struct acpi_header *xsdt;
    int have_madt = 0, have_fadt = 0;
    if (!si->rsdp_paddr || !rsdp) {
        check(0, "no rsdp_paddr");
        return;
    }
    printf("acpi rsdp 0x%llx rev %u ", (unsigned long long)si->rsdp_paddr, rsdp->revision);
    print_bytes("oem ", rsdp->oem_id, 6);
    printf("\n");
    check(!memcmp(rsdp->signature, "RSD PTR ", 8), "RSDP signature");
    check(sum(rsdp, 20) == 0, "RSDP checksum");
    if (rsdp->revision < 2) {
        check(0, "RSDP revision %u has no XSDT", rsdp->revision);
        return;
    }
    check(sum(rsdp, rsdp->length) == 0, "RSDP extended checksum");
    xsdt = phys(rsdp->xsdt_address);
    if (!xsdt || memcmp(xsdt->signature, "XSDT", 4)) {
        check(0, "no XSDT at 0x%llx", (unsigned long long)rsdp->xsdt_address);
        return;
    }
    check(sum(xsdt, xsdt->length) == 0, "XSDT checksum");
    for (uint32_t off = 36; off + 8 <= xsdt->length; off += 8) {
        uint64_t pa;
        const struct acpi_header *t;
        memcpy(&pa, (const char *)xsdt + off, 8);
        t = phys(pa);
        if (!t) {
            check(0, "XSDT entry 0x%llx unreachable", (unsigned long long)pa);
            continue;
        }
        print_bytes("acpi table ", t->signature, 4);
        printf(" at 0x%llx len %u\n", (unsigned long long)pa, t->length);
        check(sum(t, t->length) == 0, "checksum of table at 0x%llx", (unsigned long long)pa);
        if (!memcmp(t->signature, "APIC", 4)) {
            have_madt = 1;
            check_madt(t);
        }
        if (!memcmp(t->signature, "FACP", 4)) {
            uint32_t dsdt32;
            uint64_t dsdt64 = 0;
            const struct acpi_header *dsdt;
            have_fadt = 1;
            memcpy(&dsdt32, (const char *)t + 40, 4);
            if (t->length >= 148)
                memcpy(&dsdt64, (const char *)t + 140, 8);
            dsdt = phys(dsdt64 ? dsdt64 : dsdt32);
            check(dsdt && !memcmp(dsdt->signature, "DSDT", 4), "FADT names no DSDT");
            if (dsdt && !memcmp(dsdt->signature, "DSDT", 4)) {
                printf("acpi table DSDT len %u\n", dsdt->length);
                check(sum(dsdt, dsdt->length) == 0, "DSDT checksum");
            }
        }
    }
    /* No MADT is right for apic = 0; the test decides from the config. */
    if (!have_madt)
        printf("madt none\n");
    check(have_fadt, "no FADT");
}

void guest_main(struct hvm_start_info *si)
{
    const char *cmdline = si->cmdline_paddr ? phys(si->cmdline_paddr) : NULL;
    printf("startinfo at %p magic 0x%x version %u flags 0x%x\n", (void *)si, si->magic,
           si->version, si->flags);
    check(si->magic == XEN_HVM_START_MAGIC_VALUE, "magic 0x%x", si->magic);
    check(si->version >= 1, "version %u has no memory map", si->version);
    if (si->magic != XEN_HVM_START_MAGIC_VALUE)
        return;
    check((uintptr_t)si >= (uintptr_t)__image_end || (uintptr_t)si + sizeof(*si) <= 0x100000,
          "start info overlaps the kernel");
    printf("cmdline: %s\n", cmdline ? cmdline : "");
    check_modules(si);
    if (si->version >= 1)
        check_memmap(si);
    check_acpi(si);
}
