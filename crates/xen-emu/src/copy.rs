//! `copy_from_guest` / `copy_to_guest`: hypercall pointers are guest-virtual;
//! each page is translated through the calling vCPU and accessed through
//! [`GuestMemory`], so nothing outside guest memory is ever touched.

use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::guest::{GuestMemory, GuestMode, Gva, VcpuContext};
use crate::types::Errno;

const PAGE: u64 = xen_abi::PAGE_SIZE as u64;

/// The calling vCPU plus guest memory: everything a handler needs to read
/// its arguments and write its results.
pub struct GuestAccess<'a> {
    pub mem: &'a dyn GuestMemory,
    pub vcpu: &'a mut dyn VcpuContext,
    /// Mode latched at entry (decides struct layouts).
    pub mode: GuestMode,
}

impl GuestAccess<'_> {
    /// True for a 32-bit caller (compat layouts).
    pub fn compat(&self) -> bool {
        self.mode == GuestMode::Protected32
    }

    /// Applies the address-size of the caller: 32-bit guests' pointers wrap
    /// at 4 GiB.
    fn addr(&self, gva: Gva, off: u64) -> Result<Gva, Errno> {
        let a = gva.checked_add(off).ok_or(Errno::EFAULT)?;
        if self.compat() && a > u64::from(u32::MAX) {
            return Err(Errno::EFAULT);
        }
        Ok(a)
    }

    /// Reads `buf.len()` bytes at guest-virtual `gva`.
    pub fn read_bytes(&mut self, gva: Gva, buf: &mut [u8]) -> Result<(), Errno> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = self.addr(gva, done as u64)?;
            let n = ((PAGE - at % PAGE) as usize).min(buf.len() - done);
            let gpa = self.vcpu.translate(at)?;
            self.mem.read(gpa, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// Writes `data` at guest-virtual `gva`.
    pub fn write_bytes(&mut self, gva: Gva, data: &[u8]) -> Result<(), Errno> {
        let mut done = 0usize;
        while done < data.len() {
            let at = self.addr(gva, done as u64)?;
            let n = ((PAGE - at % PAGE) as usize).min(data.len() - done);
            let gpa = self.vcpu.translate(at)?;
            self.mem.write(gpa, &data[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// `copy_from_guest(&obj, arg, 1)`.
    pub fn read<T: FromBytes + IntoBytes>(&mut self, gva: Gva) -> Result<T, Errno> {
        let mut v = T::new_zeroed();
        self.read_bytes(gva, v.as_mut_bytes())?;
        Ok(v)
    }

    /// `copy_to_guest(arg, &obj, 1)`.
    pub fn write<T: IntoBytes + Immutable>(&mut self, gva: Gva, v: &T) -> Result<(), Errno> {
        self.write_bytes(gva, v.as_bytes())
    }

    /// Writes one field of a structure at `gva + offset` (Xen's
    /// `__copy_field_to_guest`, used for OUT fields so IN fields the guest
    /// may be changing concurrently are not rewritten).
    pub fn write_at<T: IntoBytes + Immutable>(
        &mut self,
        gva: Gva,
        offset: usize,
        v: &T,
    ) -> Result<(), Errno> {
        let at = self.addr(gva, offset as u64)?;
        self.write_bytes(at, v.as_bytes())
    }
}
