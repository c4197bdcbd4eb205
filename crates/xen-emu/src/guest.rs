//! How xen-emu reaches guest memory and the calling vCPU.

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8};

/// A guest-physical address.
pub type Gpa = u64;
/// A guest-virtual address, as hypercall arguments carry them.
pub type Gva = u64;

/// Why a guest memory access failed. Hypercalls turn this into `-EFAULT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MemError {
    /// The guest-physical range is not backed by guest RAM or a special page.
    #[error("guest-physical address {0:#x} is not backed by guest memory")]
    Unbacked(Gpa),
    /// The guest-virtual address has no valid translation in the vCPU's page tables.
    #[error("guest-virtual address {0:#x} is not mapped")]
    NotMapped(Gva),
    /// An atomic access was not naturally aligned.
    #[error("atomic access at {0:#x} is misaligned")]
    Misaligned(Gpa),
}

/// Guest-physical memory of one domain: RAM plus any special pages the
/// platform has mapped (shared_info, grant frames). Every access is bounds
/// checked by the implementor; a bad address is an error, never host memory.
///
/// The atomic accessors exist because shared_info / vcpu_info / grant entries
/// are shared with a running guest: pending bits and grant flags must be
/// updated with the same atomic instructions Xen uses. The returned reference
/// lives as long as the memory object (guest memory is never unmapped while a
/// domain exists).
pub trait GuestMemory: Send + Sync {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError>;
    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), MemError>;
    fn atomic_u8(&self, gpa: Gpa) -> Result<&AtomicU8, MemError>;
    fn atomic_u16(&self, gpa: Gpa) -> Result<&AtomicU16, MemError>;
    fn atomic_u32(&self, gpa: Gpa) -> Result<&AtomicU32, MemError>;
    fn atomic_u64(&self, gpa: Gpa) -> Result<&AtomicU64, MemError>;
}

/// The execution mode of the calling vCPU, which decides the hypercall ABI
/// (argument registers and structure layouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMode {
    /// 64-bit long mode: args in rdi rsi rdx r10 r8, native 64-bit structs.
    Long64,
    /// 32-bit protected mode (with or without paging): args in ebx ecx edx
    /// esi edi, Xen's 32-bit ("compat") struct layouts.
    Protected32,
}

/// The vCPU that made a hypercall, as seen during that hypercall.
pub trait VcpuContext {
    /// Xen's vCPU id (0-based, as in `VCPUOP_*`).
    fn vcpu_id(&self) -> u32;
    fn mode(&self) -> GuestMode;
    /// Translates a guest-virtual address through the vCPU's current paging
    /// mode (identity when paging is off).
    fn translate(&mut self, gva: Gva) -> Result<Gpa, MemError>;
}
