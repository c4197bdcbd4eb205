//! Guest-virtual to guest-physical translation by walking the guest's page
//! tables in software (hypercall pointer arguments are virtual addresses).
//! Covers no paging, 32-bit two-level (with PSE), PAE, 4-level and 5-level
//! long mode. Only presence is checked: Xen's copy_from_guest would also
//! check writability and user/supervisor, which a later issue may add.

use xen_emu::guest::{Gpa, GuestMemory, Gva, MemError};

const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
const PRESENT: u64 = 1;
const PS: u64 = 1 << 7;
/// Physical address bits 51:12 of an entry.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The control registers that decide the paging mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PagingState {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

fn read_u64(mem: &dyn GuestMemory, gpa: Gpa) -> Option<u64> {
    let mut b = [0u8; 8];
    mem.read(gpa, &mut b).ok()?;
    Some(u64::from_le_bytes(b))
}

fn read_u32(mem: &dyn GuestMemory, gpa: Gpa) -> Option<u64> {
    let mut b = [0u8; 4];
    mem.read(gpa, &mut b).ok()?;
    Some(u64::from(u32::from_le_bytes(b)))
}

/// Translates `gva` for a vCPU in state `st`.
pub fn translate(mem: &dyn GuestMemory, st: &PagingState, gva: Gva) -> Result<Gpa, MemError> {
    let fail = MemError::NotMapped(gva);
    if st.cr0 & CR0_PG == 0 {
        // Protected mode without paging: linear addresses are 32 bits.
        return Ok(gva & 0xffff_ffff);
    }
    if st.cr4 & CR4_PAE == 0 {
        let gva = gva & 0xffff_ffff;
        let pde = read_u32(mem, (st.cr3 & 0xffff_f000) + ((gva >> 22) & 0x3ff) * 4).ok_or(fail)?;
        if pde & PRESENT == 0 {
            return Err(fail);
        }
        if pde & PS != 0 && st.cr4 & CR4_PSE != 0 {
            // 4 MiB page; bits 20:13 hold physical address bits 39:32.
            let high = ((pde >> 13) & 0xff) << 32;
            return Ok(high | (pde & 0xffc0_0000) | (gva & 0x3f_ffff));
        }
        let pte = read_u32(mem, (pde & 0xffff_f000) + ((gva >> 12) & 0x3ff) * 4).ok_or(fail)?;
        if pte & PRESENT == 0 {
            return Err(fail);
        }
        return Ok((pte & 0xffff_f000) | (gva & 0xfff));
    }
    let (table, levels) = if st.efer & EFER_LMA != 0 {
        let levels = if st.cr4 & CR4_LA57 != 0 { 5 } else { 4 };
        (st.cr3 & ADDR_MASK, levels)
    } else {
        // PAE: a 4-entry PDPT at CR3[31:5].
        let gva32 = gva & 0xffff_ffff;
        let pdpte = read_u64(mem, (st.cr3 & 0xffff_ffe0) + ((gva32 >> 30) & 3) * 8).ok_or(fail)?;
        if pdpte & PRESENT == 0 {
            return Err(fail);
        }
        return walk(mem, pdpte & ADDR_MASK, 2, gva32).ok_or(fail);
    };
    walk(mem, table, levels, gva).ok_or(fail)
}

/// Walks `levels` levels of 512-entry tables from `table`.
fn walk(mem: &dyn GuestMemory, mut table: u64, levels: u32, gva: u64) -> Option<u64> {
    for level in (1..=levels).rev() {
        let shift = 12 + 9 * (level - 1);
        let idx = (gva >> shift) & 0x1ff;
        let e = read_u64(mem, table + idx * 8)?;
        if e & PRESENT == 0 {
            return None;
        }
        // Large pages at the 1 GiB (level 3) and 2 MiB (level 2) levels.
        if (level == 2 || level == 3) && e & PS != 0 {
            let mask = (1u64 << shift) - 1;
            return Some((e & ADDR_MASK & !mask) | (gva & mask));
        }
        table = e & ADDR_MASK;
    }
    Some(table | (gva & 0xfff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{test_memory, DomainMemory};

    fn mem() -> DomainMemory {
        test_memory(&[(0, 16 << 20)])
    }

    fn put64(m: &DomainMemory, gpa: u64, v: u64) {
        m.write(gpa, &v.to_le_bytes()).expect("write");
    }
    fn put32(m: &DomainMemory, gpa: u64, v: u32) {
        m.write(gpa, &v.to_le_bytes()).expect("write");
    }

    #[test]
    fn no_paging_is_identity() {
        let m = mem();
        let st = PagingState::default();
        assert_eq!(translate(&m, &st, 0x1234), Ok(0x1234));
    }

    #[test]
    fn four_level_with_4k_and_2m_pages() {
        let m = mem();
        let gva: u64 = 0xffff_8000_0040_3123;
        let (pml4, pdpt, pd, pt) = (0x10_0000u64, 0x10_1000u64, 0x10_2000u64, 0x10_3000u64);
        put64(&m, pml4 + ((gva >> 39) & 0x1ff) * 8, pdpt | 3);
        put64(&m, pdpt + ((gva >> 30) & 0x1ff) * 8, pd | 3);
        put64(&m, pd + ((gva >> 21) & 0x1ff) * 8, pt | 3);
        put64(&m, pt + ((gva >> 12) & 0x1ff) * 8, 0x55_5000 | 3);
        let st = PagingState {
            cr0: CR0_PG | 1,
            cr3: pml4,
            cr4: CR4_PAE,
            efer: EFER_LMA | (1 << 8),
        };
        assert_eq!(translate(&m, &st, gva), Ok(0x55_5123));
        // 2 MiB page for the next PD entry.
        let gva2 = gva + (1 << 21);
        put64(&m, pd + ((gva2 >> 21) & 0x1ff) * 8, 0x80_0000 | PS | 3);
        assert_eq!(translate(&m, &st, gva2), Ok(0x80_0000 | (gva2 & 0x1f_ffff)));
        // Not present.
        assert_eq!(translate(&m, &st, 0x1000), Err(MemError::NotMapped(0x1000)));
    }

    #[test]
    fn five_level() {
        let m = mem();
        let gva: u64 = 0x0100_0000_0000_0abc;
        let tables = [0x20_0000u64, 0x20_1000, 0x20_2000, 0x20_3000, 0x20_4000];
        for (i, t) in tables.iter().enumerate() {
            let level = 5 - i as u32;
            let shift = 12 + 9 * (level - 1);
            let next = tables.get(i + 1).copied().unwrap_or(0x66_6000);
            put64(&m, t + ((gva >> shift) & 0x1ff) * 8, next | 1);
        }
        let st = PagingState {
            cr0: CR0_PG,
            cr3: tables[0],
            cr4: CR4_PAE | CR4_LA57,
            efer: EFER_LMA,
        };
        assert_eq!(translate(&m, &st, gva), Ok(0x66_6abc));
    }

    #[test]
    fn pae_and_two_level_32bit() {
        let m = mem();
        let gva: u64 = 0xc010_2345;
        put64(&m, 0x30_0000 + 3 * 8, 0x30_1000 | 1);
        put64(&m, 0x30_1000 + ((gva >> 21) & 0x1ff) * 8, 0x30_2000 | 1);
        put64(&m, 0x30_2000 + ((gva >> 12) & 0x1ff) * 8, 0x77_7000 | 1);
        let st = PagingState {
            cr0: CR0_PG | 1,
            cr3: 0x30_0000,
            cr4: CR4_PAE,
            efer: 0,
        };
        assert_eq!(translate(&m, &st, gva), Ok(0x77_7345));

        put32(&m, 0x40_0000 + (gva >> 22) * 4, 0x40_1000 | 1);
        put32(&m, 0x40_1000 + ((gva >> 12) & 0x3ff) * 4, 0x88_8000 | 1);
        let st = PagingState {
            cr0: CR0_PG | 1,
            cr3: 0x40_0000,
            cr4: 0,
            efer: 0,
        };
        assert_eq!(translate(&m, &st, gva), Ok(0x88_8345));
        // PSE 4 MiB page.
        put32(&m, 0x40_0000 + (gva >> 22) * 4, 0x0080_0000 | PS as u32 | 1);
        let st = PagingState { cr4: CR4_PSE, ..st };
        assert_eq!(translate(&m, &st, gva), Ok(0x80_0000 | (gva & 0x3f_ffff)));
    }
}
