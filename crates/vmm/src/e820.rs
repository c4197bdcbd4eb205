//! The memory map the guest sees (`hvm_start_info.memmap_paddr` and
//! `XENMEM_memory_map`), with the entries libxl's `domain_construct_memmap`
//! makes for PVH: low RAM from 0, the special pages as reserved, one ACPI
//! entry per ACPI module (RSDP, `acpi_info` page, tables), high RAM.
//!
//! libxl hands them to Xen in that order, which is not sorted by address
//! (the special pages sit above the ACPI modules). We sort them: the
//! entries are the same, and a sorted map is valid for every consumer,
//! including naive ones that assume ascending addresses.

use crate::acpi::RSDP_MODULE_LEN;
use crate::layout::{
    RamLayout, ACPI_BASE, ACPI_TABLES, PAGE_SIZE, SPECIAL_REGION_SIZE, SPECIAL_REGION_START,
};

/// E820 entry types (`hvm_memmap_table_entry.type`, `XEN_HVM_MEMMAP_TYPE_*`).
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;
pub const E820_ACPI: u32 = 3;

/// One entry of the guest's memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// Where the ACPI modules ended up (see [`crate::acpi::AcpiTables`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcpiModules {
    pub rsdp: u64,
    pub tables_len: u64,
}

/// The memory map for a domain with this RAM layout and ACPI modules.
pub fn build(ram: &RamLayout, acpi: &AcpiModules) -> Vec<E820Entry> {
    let mut map = vec![E820Entry {
        addr: 0,
        size: ram.low_size,
        kind: E820_RAM,
    }];
    map.push(E820Entry {
        addr: SPECIAL_REGION_START,
        size: SPECIAL_REGION_SIZE,
        kind: E820_RESERVED,
    });
    let modules = [
        (acpi.rsdp, RSDP_MODULE_LEN),
        (ACPI_BASE, PAGE_SIZE),
        (ACPI_TABLES, acpi.tables_len.div_ceil(PAGE_SIZE) * PAGE_SIZE),
    ];
    for (addr, len) in modules {
        let off = addr % PAGE_SIZE;
        map.push(E820Entry {
            addr: addr - off,
            size: len + off,
            kind: E820_ACPI,
        });
    }
    if ram.high_size > 0 {
        map.push(E820Entry {
            addr: crate::layout::FOUR_GIB,
            size: ram.high_size,
            kind: E820_RAM,
        });
    }
    map.sort_by_key(|e| e.addr);
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{special_pfn, SPECIALPAGE_CONSOLE, SPECIALPAGE_XENSTORE};

    fn covering(map: &[E820Entry], gpa: u64) -> Option<E820Entry> {
        map.iter()
            .copied()
            .find(|e| gpa >= e.addr && gpa < e.addr + e.size)
    }

    const ACPI: AcpiModules = AcpiModules {
        rsdp: 0xfc00_3000,
        tables_len: 0x1234,
    };

    #[test]
    fn entries_are_libxls_sorted_and_disjoint() {
        let map = build(&RamLayout::new(6 << 30), &ACPI);
        let got: Vec<(u64, u64, u32)> = map.iter().map(|e| (e.addr, e.size, e.kind)).collect();
        assert_eq!(
            got,
            [
                (0, 0xfc00_0000, E820_RAM),
                (0xfc00_0000, 0x1000, E820_ACPI),
                (0xfc00_1000, 0x2000, E820_ACPI),
                (0xfc00_3000, 64, E820_ACPI),
                (0xfeff_8000, 0x8000, E820_RESERVED),
                (1 << 32, (6 << 30) - 0xfc00_0000, E820_RAM),
            ]
        );
        for w in map.windows(2) {
            assert!(w[0].addr + w[0].size <= w[1].addr, "{w:?}");
        }
        let ram: u64 = map
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum();
        assert_eq!(ram, 6 << 30);
    }

    #[test]
    fn console_and_xenstore_pages_are_reserved() {
        let map = build(&RamLayout::new(256 << 20), &ACPI);
        for idx in [SPECIALPAGE_CONSOLE, SPECIALPAGE_XENSTORE] {
            let e = covering(&map, special_pfn(idx) << 12).expect("special page in map");
            assert_eq!(e.kind, E820_RESERVED);
        }
        assert_eq!(covering(&map, ACPI_BASE).map(|e| e.kind), Some(E820_ACPI));
        assert_eq!(covering(&map, 0).map(|e| e.size), Some(256 << 20));
    }
}
