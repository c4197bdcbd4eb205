//! `coredump-destroy` / `coredump-restart`: the stopped domain as an ELF64
//! core file — one `PT_LOAD` per guest RAM region (guest-physical address
//! in `p_paddr` and `p_vaddr`), and a `PT_NOTE` with one `NT_PRSTATUS` per
//! vCPU (x86-64 `user_regs_struct`, `pr_pid` = vCPU id + 1, as gdb expects
//! threads) plus an `XKVM` note per vCPU with cr0, cr2, cr3, cr4, efer.
//!
//! xl writes its dumps to `/var/lib/xen/dump/<name>`; so do we, or to
//! `$XKVM_DUMP_DIR/<name>`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use vmm::{CoreDump, VcpuRegisters};

const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;
const NT_PRSTATUS: u32 = 1;
/// `sizeof(struct elf_prstatus)` on x86-64.
const PRSTATUS_SIZE: usize = 336;
/// Offset of `pr_reg` in `struct elf_prstatus`.
const PR_REG: usize = 112;
const PR_PID: usize = 32;

/// Where dumps go: `$XKVM_DUMP_DIR` or xl's `/var/lib/xen/dump`.
pub fn dump_dir() -> PathBuf {
    std::env::var_os("XKVM_DUMP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/xen/dump"))
}

/// Writes the dump of domain `name` into [`dump_dir`] as xl names it
/// (`<dir>/<name>`), returning the path.
pub fn write_for(name: &str, dump: &CoreDump) -> anyhow::Result<PathBuf> {
    let dir = dump_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    write(&path, dump)?;
    Ok(path)
}

fn note(name: &str, kind: u32, desc: &[u8], out: &mut Vec<u8>) {
    let name_z = [name.as_bytes(), b"\0"].concat();
    out.extend_from_slice(&(name_z.len() as u32).to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&name_z);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
}

fn prstatus(vcpu: usize, r: &VcpuRegisters) -> Vec<u8> {
    let mut d = vec![0u8; PRSTATUS_SIZE];
    d[PR_PID..PR_PID + 4].copy_from_slice(&(vcpu as u32 + 1).to_le_bytes());
    let regs = [
        r.r15,
        r.r14,
        r.r13,
        r.r12,
        r.rbp,
        r.rbx,
        r.r11,
        r.r10,
        r.r9,
        r.r8,
        r.rax,
        r.rcx,
        r.rdx,
        r.rsi,
        r.rdi,
        u64::MAX, // orig_rax: not in a system call
        r.rip,
        u64::from(r.cs),
        r.rflags,
        r.rsp,
        u64::from(r.ss),
        r.fs_base,
        r.gs_base,
        u64::from(r.ds),
        u64::from(r.es),
        u64::from(r.fs),
        u64::from(r.gs),
    ];
    for (i, v) in regs.iter().enumerate() {
        d[PR_REG + 8 * i..PR_REG + 8 * i + 8].copy_from_slice(&v.to_le_bytes());
    }
    d
}

fn notes(dump: &CoreDump) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, r) in dump.vcpus.iter().enumerate() {
        if let Some(r) = r {
            note("CORE", NT_PRSTATUS, &prstatus(i, r), &mut out);
            let cr: Vec<u8> = [r.cr0, r.cr2, r.cr3, r.cr4, r.efer]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            note("XKVM", 1, &cr, &mut out);
        }
    }
    out
}

/// Writes `dump` as an ELF64 core file at `path`.
pub fn write(path: &Path, dump: &CoreDump) -> anyhow::Result<()> {
    let notes = notes(dump);
    let phnum = 1 + dump.memory.len() as u64;
    let notes_off = EHDR_SIZE + PHDR_SIZE * phnum;
    let mut data_off = (notes_off + notes.len() as u64).next_multiple_of(4096);

    let mut f =
        BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
    let mut h = Vec::with_capacity(EHDR_SIZE as usize);
    h.extend_from_slice(b"\x7fELF");
    h.extend_from_slice(&[2, 1, 1, 0]); // ELFCLASS64, little endian, version 1, SysV
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&4u16.to_le_bytes()); // ET_CORE
    h.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    h.extend_from_slice(&EHDR_SIZE.to_le_bytes()); // e_phoff
    h.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    h.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    h.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
    h.extend_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
    h.extend_from_slice(&(phnum as u16).to_le_bytes());
    h.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    h.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    h.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    f.write_all(&h)?;

    let phdr = |kind: u32, flags: u32, off: u64, addr: u64, size: u64, align: u64| {
        let mut p = Vec::with_capacity(PHDR_SIZE as usize);
        p.extend_from_slice(&kind.to_le_bytes());
        p.extend_from_slice(&flags.to_le_bytes());
        for v in [off, addr, addr, size, size, align] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        p
    };
    f.write_all(&phdr(4, 0, notes_off, 0, notes.len() as u64, 4))?; // PT_NOTE
    for m in &dump.memory {
        f.write_all(&phdr(1, 7, data_off, m.gpa, m.data.len() as u64, 4096))?; // PT_LOAD RWX
        data_off += (m.data.len() as u64).next_multiple_of(4096);
    }
    f.write_all(&notes)?;
    let mut pos = notes_off + notes.len() as u64;
    for m in &dump.memory {
        let pad = pos.next_multiple_of(4096) - pos;
        f.write_all(&vec![0u8; pad as usize])?;
        f.write_all(&m.data)?;
        pos += pad + m.data.len() as u64;
    }
    f.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_file_has_loads_and_prstatus_readelf_understands() {
        let dump = CoreDump {
            memory: vec![
                vmm::MemoryRange {
                    gpa: 0,
                    data: vec![0xaa; 8192],
                },
                vmm::MemoryRange {
                    gpa: 0x10_0000,
                    data: vec![0x55; 4096],
                },
            ],
            vcpus: vec![Some(VcpuRegisters {
                rip: 0x1234,
                ..Default::default()
            })],
        };
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("core");
        write(&path, &dump).expect("written");
        let out = match std::process::Command::new("readelf")
            .args(["-h", "-l", "-n"])
            .arg(&path)
            .output()
        {
            Ok(o) => o,
            Err(e) => {
                eprintln!("skipping: readelf not available ({e})");
                return;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("CORE (Core file)"), "{text}");
        assert_eq!(text.matches("LOAD").count(), 2, "{text}");
        assert!(text.contains("NT_PRSTATUS"), "{text}");
        assert!(text.contains("0x0000000000100000"), "{text}");
    }
}
