//! The hypercall page of trap path 1 (DESIGN.md). When the guest writes the
//! hypercall MSR, the VMM fills the page at the written address with one
//! 32-byte stub per hypercall (hypercall `n` at offset `n * 32`, as Xen):
//!
//! ```text
//!   b8 nn nn nn nn    mov  $n, %eax
//!   e7 PP             out  %eax, $PORT
//!   c3                ret
//! ```
//!
//! Every instruction encodes identically in 32-bit and 64-bit mode, so one
//! page serves both. The port is an 8-bit immediate so the stub touches no
//! register but EAX (a port in DX would clobber the third argument); the
//! `out` exit hands the VMM the hypercall number as the written data, the
//! arguments sit untouched in their registers, and the result goes into
//! RAX before the guest resumes at the `ret`.

/// Bytes per stub.
pub const STUB_SIZE: usize = 32;
/// `__HYPERVISOR_iret`: Xen gives HVM guests `ud2` there instead of a stub.
pub const HYPERVISOR_IRET: usize = 23;

/// Builds the hypercall page for the private 8-bit `port`.
pub fn build(port: u8) -> [u8; 4096] {
    let mut page = [0xcc_u8; 4096]; // int3 padding, as Xen
    for (nr, stub) in page.chunks_mut(STUB_SIZE).enumerate() {
        if nr == HYPERVISOR_IRET {
            stub[..2].copy_from_slice(&[0x0f, 0x0b]);
            continue;
        }
        stub[0] = 0xb8;
        stub[1..5].copy_from_slice(&(nr as u32).to_le_bytes());
        stub[5] = 0xe7;
        stub[6] = port;
        stub[7] = 0xc3;
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stub_loads_its_number_and_outs_to_the_port() {
        let p = build(0x5f);
        for nr in [0usize, 2, 17, 29, 127] {
            let s = &p[nr * STUB_SIZE..(nr + 1) * STUB_SIZE];
            assert_eq!(s[0], 0xb8);
            assert_eq!(u32::from_le_bytes([s[1], s[2], s[3], s[4]]) as usize, nr);
            assert_eq!(&s[5..8], &[0xe7, 0x5f, 0xc3]);
            assert!(s[8..].iter().all(|&b| b == 0xcc));
        }
        let iret = &p[HYPERVISOR_IRET * STUB_SIZE..][..STUB_SIZE];
        assert_eq!(&iret[..3], &[0x0f, 0x0b, 0xcc], "ud2 like Xen's HVM page");
    }
}
