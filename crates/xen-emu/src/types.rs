//! Guest-controlled numbers, parsed into types at the edge and checked once.

use std::fmt;

use xen_abi::errno;

/// A positive Xen errno; hypercalls return it negated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i64);

impl Errno {
    pub const EPERM: Self = Self(errno::EPERM);
    pub const ENOENT: Self = Self(errno::ENOENT);
    pub const ESRCH: Self = Self(errno::ESRCH);
    pub const EFAULT: Self = Self(errno::EFAULT);
    pub const EACCES: Self = Self(errno::EACCES);
    pub const EBUSY: Self = Self(errno::EBUSY);
    pub const EEXIST: Self = Self(errno::EEXIST);
    pub const EINVAL: Self = Self(errno::EINVAL);
    pub const ENOSPC: Self = Self(errno::ENOSPC);
    pub const ENOSYS: Self = Self(errno::ENOSYS);
    pub const ENOBUFS: Self = Self(errno::ENOBUFS);
    pub const ENOMEM: Self = Self(errno::ENOMEM);
    pub const EOPNOTSUPP: Self = Self(errno::EOPNOTSUPP);
    pub const E2BIG: Self = Self(errno::E2BIG);
    pub const EXDEV: Self = Self(errno::EXDEV);
    pub const ENODATA: Self = Self(errno::ENODATA);

    /// The value for rax.
    pub fn to_ret(self) -> i64 {
        -self.0
    }
}

impl From<crate::guest::MemError> for Errno {
    fn from(_: crate::guest::MemError) -> Self {
        Errno::EFAULT
    }
}

/// What a hypercall handler returns: a non-negative value for rax, or an errno.
pub type HcResult = Result<i64, Errno>;

/// An event-channel port number, not yet checked against a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port(pub u32);

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

/// A grant reference (index into the grant table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantRef(pub u32);

/// A guest frame number (guest-physical address >> 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gfn(pub u64);

/// x86 physical addresses have at most 52 bits.
pub const MAX_PADDR_BITS: u32 = 52;

impl Gfn {
    /// Parses a guest-supplied frame number: it must lie within the 52-bit
    /// physical address space (so `gpa + offset` arithmetic cannot overflow).
    pub fn parse(raw: u64) -> Result<Self, Errno> {
        if raw >> (MAX_PADDR_BITS - xen_abi::PAGE_SHIFT) != 0 {
            Err(Errno::EINVAL)
        } else {
            Ok(Gfn(raw))
        }
    }

    /// The guest-physical address of the frame's first byte, if it fits.
    pub fn gpa(self) -> Option<u64> {
        self.0.checked_mul(xen_abi::PAGE_SIZE as u64)
    }
}
