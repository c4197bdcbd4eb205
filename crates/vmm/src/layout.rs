//! Guest-physical layout of a PVH domain, as libxl and libxenguest build it
//! (`libxl_x86.c`, `xg_dom_x86.c`): RAM from 0 up to the MMIO hole below
//! 4 GiB, the rest above 4 GiB; the HVM special pages just below
//! `X86_HVM_END_SPECIAL_REGION`; ACPI tables in the hole at
//! `ACPI_INFO_PHYSICAL_ADDRESS`.

/// Page size of the guest ABI.
pub const PAGE_SIZE: u64 = 4096;
/// 4 GiB: where high RAM starts.
pub const FOUR_GIB: u64 = 1 << 32;
/// Start of the MMIO hole below 4 GiB for a PVH domain without a device
/// model: libxl makes the hole start at the lowest of the special pages,
/// `LAPIC_BASE_ADDRESS` and `ACPI_INFO_PHYSICAL_ADDRESS` (the last).
pub const MMIO_HOLE_START: u64 = 0xFC00_0000;
/// One past the last special page frame (`X86_HVM_END_SPECIAL_REGION`).
pub const END_SPECIAL_REGION_PFN: u64 = 0xff000;
/// Number of special pages (`X86_HVM_NR_SPECIAL_PAGES`).
pub const NR_SPECIAL_PAGES: u64 = 8;
/// Index of the XenStore ring page (`SPECIALPAGE_XENSTORE`).
pub const SPECIALPAGE_XENSTORE: u64 = 4;
/// Index of the console ring page (`SPECIALPAGE_CONSOLE`).
pub const SPECIALPAGE_CONSOLE: u64 = 7;
/// Where libxl puts the ACPI modules for PVH (`ACPI_INFO_PHYSICAL_ADDRESS`):
/// the `acpi_info` page, then the tables from the next page, then the RSDP.
pub const ACPI_BASE: u64 = 0xFC00_0000;
/// Where the ACPI tables proper start (after the `acpi_info` page).
pub const ACPI_TABLES: u64 = ACPI_BASE + PAGE_SIZE;
/// Guest memory reserved for the ACPI modules (a KVM memslot of its own).
pub const ACPI_SIZE: u64 = 0x1_0000;
/// The local APIC's MMIO base (MADT).
pub const LAPIC_BASE: u64 = 0xFEE0_0000;
/// Private I/O port the hypercall-page stubs write to (path 1): an 8-bit
/// port (so the stub needs no register but EAX) in a range no PC device or
/// PVH guest uses.
pub const HYPERCALL_PORT: u8 = 0x5f;
/// The Xen hypercall-page MSR the VMM advertises in CPUID base+2.
pub const HYPERCALL_MSR: u32 = 0x4000_0000;

/// Guest frame number of special page `idx` (`special_pfn()` in libxenguest).
pub const fn special_pfn(idx: u64) -> u64 {
    END_SPECIAL_REGION_PFN - NR_SPECIAL_PAGES + idx
}

/// Guest-physical start of the special-page region.
pub const SPECIAL_REGION_START: u64 = special_pfn(0) * PAGE_SIZE;
/// Size of the special-page region.
pub const SPECIAL_REGION_SIZE: u64 = NR_SPECIAL_PAGES * PAGE_SIZE;

/// Where guest RAM lives for a given amount of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamLayout {
    /// Bytes of RAM starting at GPA 0 (`lowmem_end`).
    pub low_size: u64,
    /// Bytes of RAM starting at 4 GiB (`highmem_end - 4 GiB`).
    pub high_size: u64,
}

impl RamLayout {
    /// Splits `memory_bytes` around the MMIO hole as libxl does.
    pub fn new(memory_bytes: u64) -> Self {
        let low_size = memory_bytes.min(MMIO_HOLE_START);
        Self {
            low_size,
            high_size: memory_bytes - low_size,
        }
    }

    /// The RAM ranges `(gpa, size)`, low first.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        let mut v = vec![(0, self.low_size)];
        if self.high_size > 0 {
            v.push((FOUR_GIB, self.high_size));
        }
        v
    }

    /// Whether `[gpa, gpa+len)` lies entirely in RAM.
    pub fn contains(&self, gpa: u64, len: u64) -> bool {
        let Some(end) = gpa.checked_add(len) else {
            return false;
        };
        self.ranges()
            .iter()
            .any(|&(start, size)| gpa >= start && end <= start + size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_pages_match_libxenguest() {
        assert_eq!(special_pfn(SPECIALPAGE_XENSTORE), 0xfeffc);
        assert_eq!(special_pfn(SPECIALPAGE_CONSOLE), 0xfefff);
        assert_eq!(SPECIAL_REGION_START, 0xfeff_8000);
    }

    #[test]
    fn small_guest_has_only_low_ram() {
        let l = RamLayout::new(128 << 20);
        assert_eq!(l.ranges(), vec![(0, 128 << 20)]);
    }

    #[test]
    fn big_guest_is_split_around_the_hole() {
        let l = RamLayout::new(5 << 30);
        assert_eq!(l.low_size, 0xfc00_0000);
        assert_eq!(l.high_size, (5 << 30) - MMIO_HOLE_START);
        assert!(l.contains(FOUR_GIB, 4096));
        assert!(!l.contains(MMIO_HOLE_START, 1));
    }
}
