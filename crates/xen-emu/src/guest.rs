//! How xen-emu reaches guest memory and the calling vCPU.
//!
//! The VMM implements both traits. xen-emu never touches host memory
//! outside what [`GuestMemory`] hands out; every hypercall pointer goes
//! through [`VcpuContext::translate`] page by page first.

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
/// `read`/`write` may cross page boundaries (the implementor splits them);
/// xen-emu itself only issues accesses within one page.
///
/// The atomic accessors exist because shared_info / vcpu_info / grant entries
/// are shared with a running guest: pending bits and grant flags must be
/// updated with the same atomic instructions Xen uses. `gpa` must be
/// naturally aligned (else [`MemError::Misaligned`]). The returned reference
/// lives as long as the memory object (guest memory is never unmapped while a
/// domain exists; a special page that moves keeps its host page).
pub trait GuestMemory: Send + Sync {
    /// Copies `buf.len()` bytes at `gpa` into `buf`.
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError>;
    /// Copies `data` to `gpa`.
    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), MemError>;
    /// The byte at `gpa`, for atomic access.
    fn atomic_u8(&self, gpa: Gpa) -> Result<&AtomicU8, MemError>;
    /// The naturally aligned `u16` at `gpa`, for atomic access.
    fn atomic_u16(&self, gpa: Gpa) -> Result<&AtomicU16, MemError>;
    /// The naturally aligned `u32` at `gpa`, for atomic access.
    fn atomic_u32(&self, gpa: Gpa) -> Result<&AtomicU32, MemError>;
    /// The naturally aligned `u64` at `gpa`, for atomic access.
    fn atomic_u64(&self, gpa: Gpa) -> Result<&AtomicU64, MemError>;
    /// Host address of the `len` bytes at `gpa`, for backends that let the
    /// host kernel move data straight into or out of a page the guest
    /// granted them (`preadv`/`pwritev` with iovecs into guest RAM).
    ///
    /// `None` unless the whole range lies within one 4 KiB guest page that
    /// is backed by host memory, and always `None` from implementors that
    /// do not offer direct access (the default); callers then fall back to
    /// [`Self::read`]/[`Self::write`]. The pointer stays valid as long as
    /// the memory object, as the atomic accessors' references do. The
    /// guest may access the page concurrently: use the pointer only for
    /// raw copies (system calls, `ptr::copy`), never to make a Rust
    /// reference, and only while the backend holds the grant for it.
    fn host_range(&self, gpa: Gpa, len: usize) -> Option<std::ptr::NonNull<u8>> {
        let _ = (gpa, len);
        None
    }
    /// Gives the host memory behind the RAM page at `gpa` (page aligned)
    /// back to the host (`XENMEM_decrease_reservation`). `Ok(true)`: done,
    /// the page reads as zeroes and costs no resident memory until it is
    /// touched again. `Ok(false)`: the implementor cannot free it (the
    /// default, e.g. test fakes); the caller zeroes it instead. Only RAM
    /// pages are discarded, never a special (overlay) page.
    fn discard_page(&self, gpa: Gpa) -> Result<bool, MemError> {
        let _ = gpa;
        Ok(false)
    }
    /// A number that changes whenever what backs a guest frame may have
    /// changed (an overlay or grant alias placed, moved or removed), so
    /// that host pointers resolved with [`Self::host_range`] can be checked
    /// for staleness with one load. Read it before resolving; a change
    /// bumps it once complete. Default: 0, a layout that never changes.
    fn layout_generation(&self) -> u64 {
        0
    }
}

/// The execution mode of the calling vCPU, which decides the hypercall ABI
/// (argument registers and structure layouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMode {
    /// 64-bit long mode: args in rdi rsi rdx r10 r8, native 64-bit structs.
    Long64,
    /// 32-bit protected mode (with or without paging): args in ebx ecx edx
    /// esi edi, Xen's 32-bit ("compat") struct layouts. xen-emu truncates
    /// the hypercall number and arguments to 32 bits itself.
    Protected32,
}

/// The vCPU that made a hypercall, as seen during that hypercall.
pub trait VcpuContext {
    /// Xen's vCPU id (0-based, as in `VCPUOP_*`).
    fn vcpu_id(&self) -> u32;
    /// The mode the vCPU was in when it made the call.
    fn mode(&self) -> GuestMode;
    /// Translates a guest-virtual address through the vCPU's current paging
    /// mode (identity when paging is off). Only the page of `gva` needs to
    /// be translated; xen-emu calls this once per page it touches.
    fn translate(&mut self, gva: Gva) -> Result<Gpa, MemError>;
    /// Current privilege level (CS.DPL / SS.DPL). Xen refuses hypercalls
    /// from CPL > 0 of HVM guests with `-EPERM`. Default: 0 (kernel), for
    /// trap paths that only ever see kernel calls.
    fn cpl(&self) -> u8 {
        0
    }
    /// Whether the vCPU had interrupts enabled (`RFLAGS.IF`) when it made
    /// the call. Xen's `SCHEDOP_block`/`SCHEDOP_poll` only return at once
    /// for a pending upcall the vCPU can take (`hvm_local_events_need_delivery`).
    /// Default: enabled.
    fn interrupts_enabled(&self) -> bool {
        true
    }
    /// Offers to block the vCPU in the platform after this hypercall
    /// returns (e.g. KVM's halted state), where any interrupt it can take
    /// wakes it: the event-channel upcall, but also its local APIC timer
    /// and IPIs, which xen-emu cannot see. Return `true` to accept; xen-emu
    /// then returns from `SCHEDOP_block` at once instead of sleeping the
    /// thread. Only offered while interrupts are enabled and the upcall is
    /// delivered by interrupt. Default: declined.
    fn block_in_platform(&mut self) -> bool {
        false
    }
    /// Whether the trap path can make the vCPU run this hypercall again
    /// (Xen's continuations): if so, a long batch (`XENMEM_*_reservation`,
    /// grant map/unmap/copy) stops after a bounded chunk and calls
    /// [`Self::create_continuation`]. Default: no, every call runs to its end.
    fn can_continue(&self) -> bool {
        false
    }
    /// Xen's `hypercall_preempt_check`: the platform wants the vCPU back
    /// (a stop or pause request). Asked between the items of a batch, only
    /// when [`Self::can_continue`]. Default: nothing pending.
    fn preempt_pending(&self) -> bool {
        false
    }
    /// Xen's `hypercall_create_continuation`: instead of returning a result,
    /// leave the vCPU on its hypercall instruction with RAX = `nr` and the
    /// first `args.len()` argument registers (of the call's ABI) set to
    /// `args`, the rest untouched, so it makes the call again and carries on
    /// where this one stopped. Only called when [`Self::can_continue`]; the
    /// return value of that hypercall is then ignored.
    fn create_continuation(&mut self, nr: u64, args: &[u64]) {
        let _ = (nr, args);
    }
}
