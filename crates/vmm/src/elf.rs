//! PVH kernel images: ELF32 or ELF64 with the `XEN_ELFNOTE_PHYS32_ENTRY`
//! note, found through the program headers or, failing that, the section
//! headers (as libelf does). Segments are loaded at their physical
//! addresses, which may be anything including 0.

/// `XEN_ELFNOTE_PHYS32_ENTRY` (`xen/include/public/elfnote.h`).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const SHT_NOTE: u32 = 7;
const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;

/// A loadable segment: `file_size` bytes from `offset` in the file go to
/// `paddr`; the rest up to `mem_size` is zeroed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub paddr: u64,
    pub offset: u64,
    pub file_size: u64,
    pub mem_size: u64,
}

/// What the loader needs from a PVH kernel image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvhImage {
    /// 32-bit physical entry point from `XEN_ELFNOTE_PHYS32_ENTRY`.
    pub entry: u32,
    pub segments: Vec<Segment>,
    pub is_64bit: bool,
}

impl PvhImage {
    /// The physical range `[start, end)` the segments occupy.
    pub fn extent(&self) -> (u64, u64) {
        let start = self.segments.iter().map(|s| s.paddr).min().unwrap_or(0);
        let end = self
            .segments
            .iter()
            .map(|s| s.paddr.saturating_add(s.mem_size))
            .max()
            .unwrap_or(0);
        (start, end)
    }
}

/// Why an image cannot be booted as PVH (the message completes
/// "`<path>`: ...").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    #[error(
        "not an ELF file (a PVH kernel must be an ELF image with a XEN_ELFNOTE_PHYS32_ENTRY note)"
    )]
    NotElf,
    #[error("unsupported ELF: {0}")]
    Unsupported(&'static str),
    #[error("truncated or corrupt ELF: {0}")]
    Corrupt(&'static str),
    #[error(
        "not a PVH kernel: no XEN_ELFNOTE_PHYS32_ENTRY note (is it a PV-only or bzImage kernel?)"
    )]
    NoPvhEntry,
}

struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn u16(&self, off: u64) -> Result<u16, ElfError> {
        self.bytes(off, 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&self, off: u64) -> Result<u32, ElfError> {
        self.bytes(off, 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&self, off: u64) -> Result<u64, ElfError> {
        let s = self.bytes(off, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    /// A word: 4 bytes in ELF32, 8 in ELF64.
    fn word(&self, off: u64, is64: bool) -> Result<u64, ElfError> {
        if is64 {
            self.u64(off)
        } else {
            self.u32(off).map(u64::from)
        }
    }
    fn bytes(&self, off: u64, len: u64) -> Result<&[u8], ElfError> {
        let start = usize::try_from(off).map_err(|_| ElfError::Corrupt("offset out of range"))?;
        let len = usize::try_from(len).map_err(|_| ElfError::Corrupt("size out of range"))?;
        let end = start
            .checked_add(len)
            .ok_or(ElfError::Corrupt("offset overflow"))?;
        self.b
            .get(start..end)
            .ok_or(ElfError::Corrupt("reference past end of file"))
    }
}

/// Finds the PHYS32_ENTRY value in a note area.
fn find_entry_note(r: &Reader<'_>, off: u64, size: u64) -> Result<Option<u32>, ElfError> {
    let area = r.bytes(off, size)?;
    let n = Reader { b: area };
    let mut p = 0u64;
    let align4 = |x: u64| x.div_ceil(4) * 4;
    while p + 12 <= size {
        let namesz = u64::from(n.u32(p)?);
        let descsz = u64::from(n.u32(p + 4)?);
        let kind = n.u32(p + 8)?;
        let name_off = p + 12;
        let desc_off = name_off + align4(namesz);
        let name = n.bytes(name_off, namesz)?;
        if name.strip_suffix(&[0]).unwrap_or(name) == b"Xen" && kind == XEN_ELFNOTE_PHYS32_ENTRY {
            let v = match descsz {
                4 => n.u32(desc_off)?,
                8 => u32::try_from(n.u64(desc_off)?)
                    .map_err(|_| ElfError::Corrupt("PHYS32_ENTRY above 4 GiB"))?,
                _ => return Err(ElfError::Corrupt("PHYS32_ENTRY note has a bad size")),
            };
            return Ok(Some(v));
        }
        p = desc_off + align4(descsz);
    }
    Ok(None)
}

/// Parses a PVH kernel image.
pub fn parse(bytes: &[u8]) -> Result<PvhImage, ElfError> {
    if bytes.len() < 16 || &bytes[0..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    let is64 = match bytes[4] {
        1 => false,
        2 => true,
        _ => return Err(ElfError::Unsupported("ELF class")),
    };
    if bytes[5] != 1 {
        return Err(ElfError::Unsupported("big-endian ELF"));
    }
    let r = Reader { b: bytes };
    let machine = r.u16(18)?;
    if machine != EM_386 && machine != EM_X86_64 {
        return Err(ElfError::Unsupported(
            "machine is not x86 (EM_386 or EM_X86_64)",
        ));
    }
    let (phoff, shoff, sizes) = if is64 {
        (r.u64(32)?, r.u64(40)?, 52)
    } else {
        (u64::from(r.u32(28)?), u64::from(r.u32(32)?), 40)
    };
    let phentsize = u64::from(r.u16(sizes + 2)?);
    let phnum = u64::from(r.u16(sizes + 4)?);
    let shentsize = u64::from(r.u16(sizes + 6)?);
    let shnum = u64::from(r.u16(sizes + 8)?);

    let mut segments = Vec::new();
    let mut entry = None;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let kind = r.u32(ph)?;
        // ELF64: type flags offset vaddr paddr filesz memsz; ELF32: type offset vaddr paddr filesz memsz flags.
        let (offset, paddr, filesz, memsz) = if is64 {
            (
                r.u64(ph + 8)?,
                r.u64(ph + 24)?,
                r.u64(ph + 32)?,
                r.u64(ph + 40)?,
            )
        } else {
            (
                r.word(ph + 4, false)?,
                r.word(ph + 12, false)?,
                r.word(ph + 16, false)?,
                r.word(ph + 20, false)?,
            )
        };
        match kind {
            PT_LOAD if memsz > 0 => {
                if filesz > memsz {
                    return Err(ElfError::Corrupt("segment file size exceeds memory size"));
                }
                r.bytes(offset, filesz)?;
                paddr
                    .checked_add(memsz)
                    .ok_or(ElfError::Corrupt("segment wraps the address space"))?;
                segments.push(Segment {
                    paddr,
                    offset,
                    file_size: filesz,
                    mem_size: memsz,
                });
            }
            PT_NOTE if entry.is_none() => entry = find_entry_note(&r, offset, filesz)?,
            _ => {}
        }
    }
    if entry.is_none() && shoff != 0 {
        for i in 0..shnum {
            let sh = shoff + i * shentsize;
            if r.u32(sh + 4)? != SHT_NOTE {
                continue;
            }
            let (offset, size) = if is64 {
                (r.u64(sh + 24)?, r.u64(sh + 32)?)
            } else {
                (u64::from(r.u32(sh + 16)?), u64::from(r.u32(sh + 20)?))
            };
            entry = find_entry_note(&r, offset, size)?;
            if entry.is_some() {
                break;
            }
        }
    }
    let entry = entry.ok_or(ElfError::NoPvhEntry)?;
    if segments.is_empty() {
        return Err(ElfError::Corrupt("no loadable segments"));
    }
    Ok(PvhImage {
        entry,
        segments,
        is_64bit: is64,
    })
}

/// Test helpers that build minimal ELF images (also used by the kvm tests
/// through [`test_image`]).
pub mod build {
    /// Where the PHYS32_ENTRY note should be reachable from.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum NoteVia {
        ProgramHeader,
        SectionHeader,
        Nowhere,
    }

    fn note(entry: u32) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&4u32.to_le_bytes());
        n.extend_from_slice(&4u32.to_le_bytes());
        n.extend_from_slice(&super::XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
        n.extend_from_slice(b"Xen\0");
        n.extend_from_slice(&entry.to_le_bytes());
        n
    }

    /// An ELF (32- or 64-bit) with one PT_LOAD of `code` at `paddr` (memsz
    /// `code.len() + bss`) and the entry note.
    pub fn image(
        is64: bool,
        paddr: u64,
        code: &[u8],
        bss: u64,
        entry: u32,
        via: NoteVia,
    ) -> Vec<u8> {
        let (ehsize, phentsize, shentsize) = if is64 {
            (64u64, 56u64, 64u64)
        } else {
            (52, 32, 40)
        };
        let nph = if via == NoteVia::ProgramHeader { 2 } else { 1 };
        let phoff = ehsize;
        let note_off = phoff + nph * phentsize;
        let note = note(entry);
        let code_off = (note_off + note.len() as u64).div_ceil(16) * 16;
        let shoff = (code_off + code.len() as u64).div_ceil(8) * 8;
        let nsh = if via == NoteVia::SectionHeader { 2 } else { 0 };
        let total = shoff + nsh * shentsize;
        let mut f = vec![0u8; total as usize];
        let put = |f: &mut Vec<u8>, off: u64, v: &[u8]| {
            f[off as usize..off as usize + v.len()].copy_from_slice(v);
        };
        put(&mut f, 0, b"\x7fELF");
        f[4] = if is64 { 2 } else { 1 };
        f[5] = 1;
        f[6] = 1;
        put(&mut f, 16, &2u16.to_le_bytes());
        put(&mut f, 18, &(if is64 { 62u16 } else { 3 }).to_le_bytes());
        put(&mut f, 20, &1u32.to_le_bytes());
        let w = |f: &mut Vec<u8>, off: u64, v: u64| {
            if is64 {
                put(f, off, &v.to_le_bytes());
            } else {
                put(f, off, &(v as u32).to_le_bytes());
            }
        };
        let (phoff_at, shoff_at, sizes) = if is64 { (32, 40, 52) } else { (28, 32, 40) };
        w(&mut f, phoff_at, phoff);
        w(&mut f, shoff_at, if nsh > 0 { shoff } else { 0 });
        put(&mut f, sizes, &(ehsize as u16).to_le_bytes());
        put(&mut f, sizes + 2, &(phentsize as u16).to_le_bytes());
        put(&mut f, sizes + 4, &(nph as u16).to_le_bytes());
        put(&mut f, sizes + 6, &(shentsize as u16).to_le_bytes());
        put(&mut f, sizes + 8, &(nsh as u16).to_le_bytes());
        let phdr =
            |f: &mut Vec<u8>, i: u64, kind: u32, off: u64, paddr: u64, filesz: u64, memsz: u64| {
                let ph = phoff + i * phentsize;
                put(f, ph, &kind.to_le_bytes());
                if is64 {
                    put(f, ph + 8, &off.to_le_bytes());
                    put(f, ph + 16, &paddr.to_le_bytes());
                    put(f, ph + 24, &paddr.to_le_bytes());
                    put(f, ph + 32, &filesz.to_le_bytes());
                    put(f, ph + 40, &memsz.to_le_bytes());
                } else {
                    for (k, v) in [off, paddr, paddr, filesz, memsz].iter().enumerate() {
                        put(f, ph + 4 + 4 * k as u64, &(*v as u32).to_le_bytes());
                    }
                }
            };
        let clen = code.len() as u64;
        phdr(&mut f, 0, 1, code_off, paddr, clen, clen + bss);
        if via == NoteVia::ProgramHeader {
            phdr(&mut f, 1, 4, note_off, 0, note.len() as u64, 0);
        }
        put(&mut f, note_off, &note);
        put(&mut f, code_off, code);
        if via == NoteVia::SectionHeader {
            let sh = shoff + shentsize; // section 0 is the null section
            put(&mut f, sh + 4, &7u32.to_le_bytes());
            if is64 {
                put(&mut f, sh + 24, &note_off.to_le_bytes());
                put(&mut f, sh + 32, &(note.len() as u64).to_le_bytes());
            } else {
                put(&mut f, sh + 16, &(note_off as u32).to_le_bytes());
                put(&mut f, sh + 20, &(note.len() as u32).to_le_bytes());
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::build::{image, NoteVia};
    use super::*;

    #[test]
    fn entry_found_through_program_headers_32_and_64() {
        for is64 in [false, true] {
            let img = parse(&image(
                is64,
                0x10_0000,
                &[0xf4; 16],
                0x100,
                0x10_0004,
                NoteVia::ProgramHeader,
            ))
            .expect("parse");
            assert_eq!(img.entry, 0x10_0004);
            assert_eq!(img.is_64bit, is64);
            assert_eq!(img.extent(), (0x10_0000, 0x10_0110));
        }
    }

    #[test]
    fn entry_found_through_section_headers_when_no_pt_note() {
        for is64 in [false, true] {
            let img =
                parse(&image(is64, 0, &[0x90; 4], 0, 0, NoteVia::SectionHeader)).expect("parse");
            assert_eq!(img.entry, 0);
            assert_eq!(img.segments[0].paddr, 0, "image linked at 0");
        }
    }

    #[test]
    fn kernel_without_the_note_is_rejected_clearly() {
        let e =
            parse(&image(true, 0x10_0000, &[0; 4], 0, 0, NoteVia::Nowhere)).expect_err("no note");
        assert_eq!(e, ElfError::NoPvhEntry);
        assert!(e.to_string().contains("XEN_ELFNOTE_PHYS32_ENTRY"));
        assert_eq!(parse(b"MZ\x90\x00 not an elf file"), Err(ElfError::NotElf));
    }

    #[test]
    fn truncated_images_are_errors_not_panics() {
        let full = image(
            true,
            0x10_0000,
            &[0; 64],
            0,
            0x10_0000,
            NoteVia::ProgramHeader,
        );
        for len in 0..full.len() {
            let _ = parse(&full[..len]);
        }
        let mut bad = full.clone();
        bad[32..40].copy_from_slice(&u64::MAX.to_le_bytes()); // e_phoff
        assert!(matches!(parse(&bad), Err(ElfError::Corrupt(_))));
    }
}
