//! ACPI tables for a PVH guest, as libxl builds them (`libxl_x86_acpi.c` +
//! `libacpi`): RSDP → XSDT → {FADT → DSDT, MADT}. The FADT is hardware
//! reduced (no PM blocks, no FACS); the DSDT holds one processor object per
//! possible vCPU; the MADT one local APIC per possible vCPU, enabled for the
//! vCPUs online at boot, with Xen's APIC ids (`2 * vcpu`).

/// Where the ACPI tables live and what they describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcpiConfig {
    /// Guest-physical address the table blob is placed at.
    pub base: u64,
    pub vcpus: u32,
    pub max_vcpus: u32,
    /// With `apic = 0` there is no MADT.
    pub apic: bool,
}

/// The built tables: `bytes` go at `base`. The tables proper take the first
/// `tables_len` bytes; the RSDP is on the next page, at `rsdp` (libxl puts
/// it right after the table pages, its own ACPI module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiTables {
    pub bytes: Vec<u8>,
    pub tables_len: u64,
    pub rsdp: u64,
}

/// Size of the RSDP module in the memory map (libxl: 64 bytes).
pub const RSDP_MODULE_LEN: u64 = 64;

/// Xen's APIC id for a vCPU (`LAPIC_ID()` in hvmloader/libacpi).
pub const fn apic_id(vcpu: u32) -> u32 {
    vcpu * 2
}

const OEM_ID: &[u8; 6] = b"Xen\0\0\0";
const OEM_TABLE_ID: &[u8; 8] = b"HVM\0\0\0\0\0";
const CREATOR_ID: &[u8; 4] = b"HVML";

/// FADT flags: `HW_REDUCED_ACPI` (bit 20).
const FADT_HW_REDUCED_ACPI: u32 = 1 << 20;
/// FADT IA-PC boot flags: no VGA (bit 2), no CMOS RTC (bit 5).
const FADT_BOOT_NO_VGA_NO_RTC: u16 = (1 << 2) | (1 << 5);

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// A table with the standard 36-byte header; length and checksum are
/// filled at the end.
fn table(sig: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(36 + body.len());
    t.extend_from_slice(sig);
    t.extend_from_slice(&((36 + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0);
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(CREATOR_ID);
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(body);
    t[9] = checksum(&t);
    t
}

/// AML PkgLength encoding of `len` bytes of content (the encoding counts
/// itself).
fn pkg_length(content: usize) -> Vec<u8> {
    for n in 1..=4usize {
        let total = content + n;
        let limit = if n == 1 {
            1 << 6
        } else {
            1 << (4 + 8 * (n - 1))
        };
        if total < limit {
            if n == 1 {
                return vec![total as u8];
            }
            let mut v = vec![(((n - 1) as u8) << 6) | (total & 0xf) as u8];
            for i in 0..n - 1 {
                v.push((total >> (4 + 8 * i)) as u8);
            }
            return v;
        }
    }
    // Tables here are far smaller than 256 MiB.
    vec![0xff, 0xff, 0xff, 0xff]
}

/// One processor object, as libacpi's `mk_dsdt` declares them:
/// `Processor (PRxx, id, 0x0000b010, 0x06) { Name (_HID, "ACPI0007")
/// Name (_UID, id) Method (_STA) { Return (present ? 0xF : 0x0) } }`.
/// (Xen's `_MAT`/`_EJ0` hotplug methods read the `acpi_info` page; CPU
/// hotplug is not offered yet, so `_STA` is static.)
fn processor(cpu: u32, present: bool) -> Vec<u8> {
    let mut body = format!("PR{:02X}", cpu & 0xff).into_bytes();
    body.push(cpu as u8); // ProcID
    body.extend_from_slice(&0xb010u32.to_le_bytes()); // PblkAddr
    body.push(6); // PblkLen
    body.push(0x08); // NameOp
    body.extend_from_slice(b"_HID");
    body.push(0x0d); // StringPrefix
    body.extend_from_slice(b"ACPI0007\0");
    body.push(0x08);
    body.extend_from_slice(b"_UID");
    body.extend_from_slice(&[0x0a, cpu as u8]); // BytePrefix
    let sta = [
        b'_',
        b'S',
        b'T',
        b'A',
        0x00,
        0xa4,
        0x0a,
        if present { 0x0f } else { 0x00 },
    ];
    body.push(0x14); // MethodOp
    body.extend_from_slice(&pkg_length(sta.len()));
    body.extend_from_slice(&sta);
    let mut p = vec![0x5b, 0x83]; // ProcessorOp
    p.extend_from_slice(&pkg_length(body.len()));
    p.extend_from_slice(&body);
    p
}

fn dsdt(cfg: &AcpiConfig) -> Vec<u8> {
    let mut scope_body = b"\\_SB_".to_vec();
    for cpu in 0..cfg.max_vcpus {
        scope_body.extend_from_slice(&processor(cpu, cpu < cfg.vcpus));
    }
    let mut aml = vec![0x10]; // ScopeOp
    aml.extend_from_slice(&pkg_length(scope_body.len()));
    aml.extend_from_slice(&scope_body);
    table(b"DSDT", 2, &aml)
}

fn madt(cfg: &AcpiConfig) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(crate::layout::LAPIC_BASE as u32).to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes()); // no PC-AT 8259s in PVH
    for cpu in 0..cfg.max_vcpus {
        body.push(0); // Processor Local APIC
        body.push(8);
        body.push(cpu as u8);
        body.push(apic_id(cpu) as u8);
        let enabled = u32::from(cpu < cfg.vcpus);
        body.extend_from_slice(&enabled.to_le_bytes());
    }
    table(b"APIC", 3, &body)
}

fn fadt(dsdt: u64) -> Vec<u8> {
    // Revision 5 FADT: 268 bytes in total, 232 after the header.
    let mut body = vec![0u8; 268 - 36];
    let at = |off: usize| off - 36;
    body[at(40)..at(44)].copy_from_slice(&(dsdt as u32).to_le_bytes());
    body[at(109)..at(111)].copy_from_slice(&FADT_BOOT_NO_VGA_NO_RTC.to_le_bytes());
    body[at(112)..at(116)].copy_from_slice(&FADT_HW_REDUCED_ACPI.to_le_bytes());
    body[at(140)..at(148)].copy_from_slice(&dsdt.to_le_bytes());
    table(b"FACP", 5, &body)
}

fn rsdp(xsdt: u64) -> Vec<u8> {
    let mut r = Vec::with_capacity(36);
    r.extend_from_slice(b"RSD PTR ");
    r.push(0);
    r.extend_from_slice(OEM_ID);
    r.push(2); // ACPI 2.0+
    r.extend_from_slice(&0u32.to_le_bytes()); // no RSDT
    r.extend_from_slice(&36u32.to_le_bytes());
    r.extend_from_slice(&xsdt.to_le_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r[8] = checksum(&r[..20]);
    r[32] = checksum(&r);
    r
}

/// Builds the tables for `cfg`, laid out from `cfg.base`, 16-byte aligned.
pub fn build(cfg: &AcpiConfig) -> AcpiTables {
    let mut blob = Vec::new();
    let place = |blob: &mut Vec<u8>, t: &[u8]| -> u64 {
        while blob.len() % 16 != 0 {
            blob.push(0);
        }
        let at = cfg.base + blob.len() as u64;
        blob.extend_from_slice(t);
        at
    };
    let dsdt_at = place(&mut blob, &dsdt(cfg));
    let fadt_at = place(&mut blob, &fadt(dsdt_at));
    let mut entries = vec![fadt_at];
    if cfg.apic {
        entries.push(place(&mut blob, &madt(cfg)));
    }
    let xsdt_body: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    let xsdt_at = place(&mut blob, &table(b"XSDT", 1, &xsdt_body));
    let tables_len = blob.len() as u64;
    blob.resize(tables_len.div_ceil(4096) as usize * 4096, 0);
    let rsdp_at = cfg.base + blob.len() as u64;
    blob.extend_from_slice(&rsdp(xsdt_at));
    AcpiTables {
        bytes: blob,
        tables_len,
        rsdp: rsdp_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vcpus: u32, max: u32, apic: bool) -> AcpiConfig {
        AcpiConfig {
            base: 0xfc00_0000,
            vcpus,
            max_vcpus: max,
            apic,
        }
    }

    /// Follows the table pointers like a guest and returns (sig, table bytes).
    fn walk(t: &AcpiTables, base: u64) -> Vec<([u8; 4], Vec<u8>)> {
        let at = |gpa: u64| (gpa - base) as usize;
        let r = &t.bytes[at(t.rsdp)..at(t.rsdp) + 36];
        assert_eq!(&r[..8], b"RSD PTR ");
        assert_eq!(
            r[..20].iter().fold(0u8, |a, b| a.wrapping_add(*b)),
            0,
            "RSDP v1 checksum"
        );
        assert_eq!(
            r.iter().fold(0u8, |a, b| a.wrapping_add(*b)),
            0,
            "RSDP extended checksum"
        );
        let xsdt = u64::from_le_bytes(r[24..32].try_into().expect("8 bytes"));
        let get = |gpa: u64| {
            let o = at(gpa);
            let len = u32::from_le_bytes(t.bytes[o + 4..o + 8].try_into().expect("4")) as usize;
            let tb = t.bytes[o..o + len].to_vec();
            assert_eq!(
                tb.iter().fold(0u8, |a, b| a.wrapping_add(*b)),
                0,
                "checksum of {:?}",
                &tb[..4]
            );
            tb
        };
        let x = get(xsdt);
        assert_eq!(&x[..4], b"XSDT");
        let mut out = Vec::new();
        for e in x[36..].chunks(8) {
            let tb = get(u64::from_le_bytes(e.try_into().expect("8")));
            let sig: [u8; 4] = tb[..4].try_into().expect("4");
            if &sig == b"FACP" {
                let dsdt = u64::from_le_bytes(tb[140..148].try_into().expect("8"));
                let d = get(dsdt);
                out.push((*b"DSDT", d));
            }
            out.push((sig, tb));
        }
        out
    }

    #[test]
    fn tables_chain_from_rsdp_with_valid_checksums() {
        let t = build(&cfg(2, 4, true));
        let sigs: Vec<[u8; 4]> = walk(&t, 0xfc00_0000).iter().map(|(s, _)| *s).collect();
        assert_eq!(sigs, vec![*b"DSDT", *b"FACP", *b"APIC"]);
    }

    #[test]
    fn madt_has_one_lapic_per_possible_vcpu_enabled_for_online_ones() {
        let t = build(&cfg(2, 3, true));
        let tables = walk(&t, 0xfc00_0000);
        let madt = &tables.iter().find(|(s, _)| s == b"APIC").expect("madt").1;
        let entries: Vec<&[u8]> = madt[44..].chunks(8).collect();
        assert_eq!(entries.len(), 3);
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e[0], 0);
            assert_eq!(e[2] as usize, i);
            assert_eq!(e[3] as usize, 2 * i);
            assert_eq!(e[4], u8::from(i < 2));
        }
    }

    #[test]
    fn no_madt_without_apic() {
        let t = build(&cfg(1, 1, false));
        assert!(walk(&t, 0xfc00_0000).iter().all(|(s, _)| s != b"APIC"));
    }

    #[test]
    fn dsdt_has_processor_objects_and_fadt_is_hw_reduced() {
        let t = build(&cfg(1, 2, true));
        let tables = walk(&t, 0xfc00_0000);
        let dsdt = &tables.iter().find(|(s, _)| s == b"DSDT").expect("dsdt").1;
        let aml = &dsdt[36..];
        assert_eq!(aml[0], 0x10);
        // ProcessorOp, PkgLength, "PR00", ProcID 0, PblkAddr 0xb010, PblkLen 6.
        let p0 = aml
            .windows(7)
            .position(|w| w[..2] == [0x5b, 0x83] && &w[3..7] == b"PR00")
            .expect("PR00");
        assert_eq!(&aml[p0 + 7..p0 + 13], &[0, 0x10, 0xb0, 0, 0, 6]);
        // Body: name 4, id 1, pblk 5, _HID 15, _UID 7, _STA method 10.
        assert_eq!(aml[p0 + 2], 43, "PkgLength");
        assert!(aml.windows(9).any(|w| w == b"ACPI0007\0"));
        // _STA: PR00 online (0xF), PR01 offline (0x0).
        let stas: Vec<u8> = aml
            .windows(8)
            .filter(|w| &w[..4] == b"_STA")
            .map(|w| w[7])
            .collect();
        assert_eq!(stas, vec![0x0f, 0x00]);
        // ScopeOp, 2-byte PkgLength covering the rest, \_SB_, two processors.
        assert_eq!(aml.len(), 1 + 2 + 5 + 2 * 45);
        assert_eq!(pkg_length(aml.len() - 3), aml[1..3].to_vec());
        let fadt = &tables.iter().find(|(s, _)| s == b"FACP").expect("fadt").1;
        assert_eq!(fadt.len(), 268);
        assert_eq!(fadt[8], 5);
        let flags = u32::from_le_bytes(fadt[112..116].try_into().expect("4"));
        assert_ne!(flags & FADT_HW_REDUCED_ACPI, 0);
    }

    #[test]
    fn rsdp_sits_on_the_page_after_the_tables() {
        let t = build(&cfg(4, 4, true));
        assert_eq!(t.rsdp % 4096, 0);
        assert_eq!(t.rsdp, 0xfc00_0000 + t.tables_len.div_ceil(4096) * 4096);
    }

    #[test]
    fn pkg_length_multibyte() {
        assert_eq!(pkg_length(10), vec![11]);
        assert_eq!(pkg_length(62), vec![63]);
        // 63 + 2 = 65 = 0x41: low nibble 1 in byte 0, 0x4 in byte 1.
        assert_eq!(pkg_length(63), vec![0x41, 0x04]);
    }
}
