//! The memory map the guest sees (`hvm_start_info.memmap_paddr` and
//! `XENMEM_memory_map`), built as libxl's `domain_construct_memmap` does for
//! PVH, in its order: low RAM from 0, the special pages as reserved, one
//! ACPI entry per ACPI module (RSDP, `acpi_info` page, tables), high RAM.

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
    fn entries_are_disjoint_and_in_libxl_order() {
        let map = build(&RamLayout::new(6 << 30), &ACPI);
        let kinds: Vec<u32> = map.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                E820_RAM,
                E820_RESERVED,
                E820_ACPI,
                E820_ACPI,
                E820_ACPI,
                E820_RAM
            ]
        );
        let mut sorted = map.clone();
        sorted.sort_by_key(|e| e.addr);
        for w in sorted.windows(2) {
            assert!(w[0].addr + w[0].size <= w[1].addr, "{w:?}");
        }
        assert_eq!(
            map[0].size, 0xfc00_0000,
            "low RAM ends where the PVH MMIO hole starts"
        );
        assert_eq!((map[4].addr, map[4].size), (0xfc00_1000, 0x2000));
        assert_eq!((map[2].addr, map[2].size), (0xfc00_3000, 64));
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
