//! The test guests: tiny freestanding PVH kernels (C and GNU as under `rt/`
//! and `c/`) that `build.rs` compiles with gcc. Each exercises one area of
//! the Xen personality and prints a verdict line,
//! `XKVM-TEST <name>: PASS` or `XKVM-TEST <name>: FAIL <reason>`, on the Xen
//! console (`console_io`), then shuts down.
//!
//! | guest | area |
//! | --- | --- |
//! | `demo`, `demo32` | greeting on console_io and the console ring, poweroff (64/32-bit) |
//! | `startinfo` | hvm_start_info: magic, version, cmdline, modules, memmap, ACPI MADT |
//! | `cpuid` | prints the Xen CPUID leaves for the test to assert on |
//! | `hypercalls`, `hypercalls32` | issue-4 hypercalls incl. bad arguments (64/32-bit) |
//! | `shutdown` | `sched_op` shutdown with the reason named on its command line |
//! | `console` | the primary console ring: output, then input echoed back |
//! | `fault` | a triple fault (no IDT), which Xen turns into a reboot |
//! | `hotplug` | boots with no disk; connects to vbds plugged in while it runs, prints sector 0, closes its end on unplug (no verdict: runs until destroyed) |

use std::path::PathBuf;

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The ELF image of the guest `name`, or `None` if there is no such guest.
pub fn try_path(name: &str) -> Option<PathBuf> {
    GUESTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| PathBuf::from(p))
}

/// The ELF image of the guest `name`.
///
/// # Panics
/// If `name` is not one of [`GUESTS`]: a typo in a test, not a runtime input.
pub fn path(name: &str) -> PathBuf {
    match try_path(name) {
        Some(p) => p,
        None => panic!("no test guest named {name:?}; the guests are {:?}", names()),
    }
}

/// The names of all guests.
pub fn names() -> Vec<&'static str> {
    GUESTS.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_guest_is_a_pvh_elf_with_a_phys32_entry_note() {
        for name in names() {
            let image = std::fs::read(path(name)).expect("guest image exists");
            assert_eq!(&image[..4], b"\x7fELF", "{name} is an ELF file");
            let (class, entry) = phys32_entry(&image)
                .unwrap_or_else(|| panic!("{name}: no PHYS32_ENTRY note in a PT_NOTE"));
            let want_class = if name.ends_with("32") { 1 } else { 2 };
            assert_eq!(class, want_class, "{name}: ELF class");
            assert!(
                entry >= 0x100000,
                "{name}: entry {entry:#x} is where the image is linked"
            );
        }
    }

    /// Finds XEN_ELFNOTE_PHYS32_ENTRY (18) through the program headers only.
    fn phys32_entry(elf: &[u8]) -> Option<(u8, u64)> {
        let class = *elf.get(4)?;
        let rd = |off: usize, len: usize| -> Option<u64> {
            let b = elf.get(off..off + len)?;
            Some(
                b.iter()
                    .rev()
                    .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)),
            )
        };
        let (phoff, phentsize, phnum, field) = if class == 2 {
            (rd(0x20, 8)?, rd(0x36, 2)?, rd(0x38, 2)?, 8)
        } else {
            (rd(0x1c, 4)?, rd(0x2a, 2)?, rd(0x2c, 2)?, 4)
        };
        for i in 0..phnum {
            let ph = usize::try_from(phoff + i * phentsize).ok()?;
            if rd(ph, 4)? != 4 {
                continue; // not PT_NOTE
            }
            let (off, size) = if class == 2 {
                (rd(ph + 8, 8)?, rd(ph + 32, 8)?)
            } else {
                (rd(ph + 4, 4)?, rd(ph + 16, 4)?)
            };
            let (mut at, end) = (
                usize::try_from(off).ok()?,
                usize::try_from(off + size).ok()?,
            );
            while at + 12 <= end {
                let (namesz, descsz, kind) = (rd(at, 4)?, rd(at + 4, 4)?, rd(at + 8, 4)?);
                let name_at = at + 12;
                let desc_at = name_at + usize::try_from((namesz + 3) & !3).ok()?;
                if kind == 18 && elf.get(name_at..name_at + 3)? == b"Xen" {
                    let _ = field;
                    return Some((class, rd(desc_at, usize::try_from(descsz).ok()?.min(8))?));
                }
                at = desc_at + usize::try_from((descsz + 3) & !3).ok()?;
            }
        }
        None
    }
}
