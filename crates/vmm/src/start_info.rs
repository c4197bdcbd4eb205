//! Start of day for a PVH guest: the kernel's segments, the boot modules and
//! the `hvm_start_info` block (with its command lines, module list and
//! memory map) placed in guest RAM where nothing else is.

use xen_abi::hvm::start_info::{
    HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo, HVM_START_INFO_VERSION,
    XEN_HVM_START_MAGIC_VALUE,
};
use xen_emu::guest::GuestMemory;
use zerocopy::IntoBytes;

use crate::e820::E820Entry;
use crate::elf::PvhImage;
use crate::layout::{RamLayout, PAGE_SIZE};

/// A module's contents and command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub data: Vec<u8>,
    pub cmdline: String,
}

/// What the vCPU needs to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootParams {
    /// `XEN_ELFNOTE_PHYS32_ENTRY`.
    pub entry: u32,
    /// Guest-physical address of `hvm_start_info` (goes in EBX).
    pub start_info: u32,
}

/// Why the images cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    #[error("kernel segment at {0:#x}..{1:#x} is not in guest RAM")]
    KernelOutsideRam(u64, u64),
    #[error("no room for {what} ({size} bytes) in guest RAM below 4 GiB")]
    NoRoom { what: &'static str, size: u64 },
    #[error("writing guest memory at {0:#x} failed")]
    Write(u64),
}

/// First-fit allocator over guest RAM below 4 GiB (the start info and
/// modules must be reachable from 32-bit protected mode) that avoids
/// everything already placed.
#[derive(Debug, Clone)]
pub struct Placer {
    ram_end: u64,
    used: Vec<(u64, u64)>,
    /// Where to start looking first (just above the kernel, as libxenguest).
    prefer_from: u64,
}

impl Placer {
    pub fn new(ram: &RamLayout) -> Self {
        // Page 0 stays free: a null start-info pointer would be ambiguous.
        Self {
            ram_end: ram.low_size,
            used: vec![(0, PAGE_SIZE)],
            prefer_from: PAGE_SIZE,
        }
    }

    /// Marks `[start, end)` as taken.
    pub fn reserve(&mut self, start: u64, end: u64) {
        self.used.push((start, end));
        self.prefer_from = self.prefer_from.max(end);
    }

    fn fits(&self, at: u64, size: u64) -> bool {
        let Some(end) = at.checked_add(size) else {
            return false;
        };
        end <= self.ram_end && self.used.iter().all(|&(s, e)| end <= s || at >= e)
    }

    /// Finds `size` bytes aligned to `align`, preferring addresses above the
    /// kernel and falling back to the lowest gap.
    pub fn alloc(&mut self, what: &'static str, size: u64, align: u64) -> Result<u64, PlaceError> {
        let up = |x: u64| x.div_ceil(align) * align;
        let mut candidates: Vec<u64> = vec![up(self.prefer_from)];
        candidates.extend(self.used.iter().map(|&(_, e)| up(e)));
        candidates.sort_unstable();
        let pick = candidates
            .iter()
            .copied()
            .filter(|&c| c >= self.prefer_from)
            .chain(candidates.iter().copied())
            .find(|&c| self.fits(c, size.max(1)))
            .ok_or(PlaceError::NoRoom { what, size })?;
        self.reserve(pick, pick + size.max(1));
        Ok(pick)
    }
}

fn write(mem: &dyn GuestMemory, gpa: u64, data: &[u8]) -> Result<(), PlaceError> {
    mem.write(gpa, data).map_err(|_| PlaceError::Write(gpa))
}

/// Everything that goes into guest memory at boot.
#[derive(Debug, Clone, Copy)]
pub struct BootImages<'a> {
    /// The kernel file and its parsed form.
    pub file: &'a [u8],
    pub image: &'a PvhImage,
    pub cmdline: &'a str,
    pub modules: &'a [Module],
    pub memmap: &'a [E820Entry],
    /// Guest-physical address of the ACPI RSDP (0: none).
    pub rsdp: u64,
}

/// Loads the kernel and modules, builds `hvm_start_info` with the command
/// line, the memory map and the RSDP, and returns where the vCPU starts.
pub fn load(
    mem: &dyn GuestMemory,
    ram: &RamLayout,
    boot: &BootImages<'_>,
) -> Result<BootParams, PlaceError> {
    let BootImages {
        file,
        image,
        cmdline,
        modules,
        memmap,
        rsdp,
    } = *boot;
    let mut placer = Placer::new(ram);
    for seg in &image.segments {
        let end = seg.paddr + seg.mem_size;
        if !ram.contains(seg.paddr, seg.mem_size) {
            return Err(PlaceError::KernelOutsideRam(seg.paddr, end));
        }
        let off = seg.offset as usize;
        let data = file
            .get(off..off + seg.file_size as usize)
            .ok_or(PlaceError::Write(seg.paddr))?;
        write(mem, seg.paddr, data)?;
        let zeros = vec![0u8; (seg.mem_size - seg.file_size) as usize];
        write(mem, seg.paddr + seg.file_size, &zeros)?;
        placer.used.push((seg.paddr, end));
        placer.prefer_from = placer.prefer_from.max(end);
    }

    let mut modlist = Vec::with_capacity(modules.len());
    for m in modules {
        let at = placer.alloc("boot module", m.data.len() as u64, PAGE_SIZE)?;
        write(mem, at, &m.data)?;
        modlist.push(HvmModlistEntry {
            paddr: at,
            size: m.data.len() as u64,
            cmdline_paddr: 0,
            reserved: 0,
        });
    }

    // One block: start info, module list, memory map, then the strings.
    let info_size = std::mem::size_of::<HvmStartInfo>() as u64;
    let mod_off = info_size;
    let map_off = mod_off + (modlist.len() * std::mem::size_of::<HvmModlistEntry>()) as u64;
    let str_off = map_off + (memmap.len() * std::mem::size_of::<HvmMemmapTableEntry>()) as u64;
    let mut strings: Vec<u8> = Vec::new();
    let mut add_string = |s: &str| -> Option<u64> {
        if s.is_empty() {
            return None;
        }
        let off = str_off + strings.len() as u64;
        strings.extend_from_slice(s.as_bytes());
        strings.push(0);
        Some(off)
    };
    let cmdline_off = add_string(cmdline);
    let mod_cmd_offs: Vec<Option<u64>> = modules.iter().map(|m| add_string(&m.cmdline)).collect();
    let total = str_off + strings.len() as u64;
    let base = placer.alloc("hvm_start_info", total, 8)?;

    for (entry, off) in modlist.iter_mut().zip(&mod_cmd_offs) {
        entry.cmdline_paddr = off.map_or(0, |o| base + o);
    }
    let map: Vec<HvmMemmapTableEntry> = memmap
        .iter()
        .map(|e| HvmMemmapTableEntry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        })
        .collect();
    let info = HvmStartInfo {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: HVM_START_INFO_VERSION,
        flags: 0,
        nr_modules: modlist.len() as u32,
        modlist_paddr: if modlist.is_empty() {
            0
        } else {
            base + mod_off
        },
        cmdline_paddr: cmdline_off.map_or(0, |o| base + o),
        rsdp_paddr: rsdp,
        memmap_paddr: base + map_off,
        memmap_entries: map.len() as u32,
        reserved: 0,
    };
    write(mem, base, info.as_bytes())?;
    write(mem, base + mod_off, modlist.as_bytes())?;
    write(mem, base + map_off, map.as_bytes())?;
    write(mem, base + str_off, &strings)?;
    Ok(BootParams {
        entry: image.entry,
        start_info: base as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::build::{image, NoteVia};
    use crate::memory::{test_memory, DomainMemory};
    use zerocopy::FromBytes;

    fn setup(mib: u64) -> (DomainMemory, RamLayout) {
        let ram = RamLayout::new(mib << 20);
        (test_memory(&ram.ranges()), ram)
    }

    fn read<T: FromBytes>(mem: &DomainMemory, gpa: u64) -> T {
        let mut b = vec![0u8; std::mem::size_of::<T>()];
        mem.read(gpa, &mut b).expect("read");
        T::read_from_bytes(&b).expect("size")
    }

    fn read_str(mem: &DomainMemory, gpa: u64) -> String {
        let mut b = vec![0u8; 256];
        mem.read(gpa, &mut b).expect("read");
        let n = b.iter().position(|&c| c == 0).expect("nul");
        String::from_utf8_lossy(&b[..n]).into_owned()
    }

    #[test]
    fn start_info_has_cmdline_modules_and_memmap_and_overlaps_nothing() {
        let (mem, ram) = setup(16);
        let file = image(
            true,
            0x10_0000,
            &[0xf4; 32],
            0x2000,
            0x10_0000,
            NoteVia::ProgramHeader,
        );
        let img = crate::elf::parse(&file).expect("parse");
        let map = crate::e820::build(
            &ram,
            &crate::e820::AcpiModules {
                rsdp: 0xfc00_2000,
                tables_len: 0x800,
            },
        );
        let mods = vec![
            Module {
                data: vec![7; 5000],
                cmdline: "pv-kernel console=hvc0".into(),
            },
            Module {
                data: vec![9; 10],
                cmdline: String::new(),
            },
        ];
        let boot = BootImages {
            file: &file,
            image: &img,
            cmdline: "root=/dev/xvda1",
            modules: &mods,
            memmap: &map,
            rsdp: 0xfc00_0040,
        };
        let bp = load(&mem, &ram, &boot).expect("load");
        assert_eq!(bp.entry, 0x10_0000);
        let si: HvmStartInfo = read(&mem, u64::from(bp.start_info));
        assert_eq!(si.magic, XEN_HVM_START_MAGIC_VALUE);
        assert_eq!(si.version, 1);
        assert_eq!(si.rsdp_paddr, 0xfc00_0040);
        assert_eq!(read_str(&mem, si.cmdline_paddr), "root=/dev/xvda1");
        assert_eq!(si.nr_modules, 2);
        assert_eq!(si.memmap_entries as usize, map.len());
        let e0: HvmMemmapTableEntry = read(&mem, si.memmap_paddr);
        assert_eq!((e0.addr, e0.size, e0.type_), (0, 16 << 20, 1));

        let m0: HvmModlistEntry = read(&mem, si.modlist_paddr);
        let m1: HvmModlistEntry = read(&mem, si.modlist_paddr + 32);
        assert_eq!(read_str(&mem, m0.cmdline_paddr), "pv-kernel console=hvc0");
        assert_eq!(m1.cmdline_paddr, 0);
        assert_eq!(m0.paddr % PAGE_SIZE, 0);
        let mut b = [0u8; 1];
        mem.read(m0.paddr + 4999, &mut b).expect("read");
        assert_eq!(b[0], 7);
        // Nothing overlaps the kernel (0x100000..0x102020) or each other.
        let ranges = [
            (0x10_0000u64, 0x10_2020u64),
            (m0.paddr, m0.paddr + m0.size),
            (m1.paddr, m1.paddr + m1.size),
            (u64::from(bp.start_info), u64::from(bp.start_info) + 56),
        ];
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                assert!(a.1 <= b.0 || b.1 <= a.0, "{a:x?} overlaps {b:x?}");
            }
        }
    }

    #[test]
    fn kernel_linked_at_zero_pushes_start_info_elsewhere() {
        let (mem, ram) = setup(4);
        let file = image(false, 0, &[0x90; 64], 0x3000, 0, NoteVia::SectionHeader);
        let img = crate::elf::parse(&file).expect("parse");
        let map = crate::e820::build(
            &ram,
            &crate::e820::AcpiModules {
                rsdp: 0xfc00_2000,
                tables_len: 0x800,
            },
        );
        let boot = BootImages {
            file: &file,
            image: &img,
            cmdline: "",
            modules: &[],
            memmap: &map,
            rsdp: 0,
        };
        let bp = load(&mem, &ram, &boot).expect("load");
        assert!(u64::from(bp.start_info) >= 0x3040);
        let si: HvmStartInfo = read(&mem, u64::from(bp.start_info));
        assert_eq!(si.cmdline_paddr, 0);
        assert_eq!(si.modlist_paddr, 0);
    }

    #[test]
    fn kernel_outside_ram_and_full_memory_are_errors() {
        let (mem, ram) = setup(2);
        let file = image(
            true,
            0x40_0000,
            &[0; 4],
            0,
            0x40_0000,
            NoteVia::ProgramHeader,
        );
        let img = crate::elf::parse(&file).expect("parse");
        assert!(matches!(
            load(
                &mem,
                &ram,
                &BootImages {
                    file: &file,
                    image: &img,
                    cmdline: "",
                    modules: &[],
                    memmap: &[],
                    rsdp: 0
                }
            ),
            Err(PlaceError::KernelOutsideRam(..))
        ));
        let file = image(true, 0x1000, &[0; 4], 0, 0x1000, NoteVia::ProgramHeader);
        let img = crate::elf::parse(&file).expect("parse");
        let big = [Module {
            data: vec![0; 3 << 20],
            cmdline: String::new(),
        }];
        assert!(matches!(
            load(
                &mem,
                &ram,
                &BootImages {
                    file: &file,
                    image: &img,
                    cmdline: "",
                    modules: &big,
                    memmap: &[],
                    rsdp: 0
                }
            ),
            Err(PlaceError::NoRoom { .. })
        ));
    }
}
