//! The 2-level event-channel ABI: pending and mask bitmaps in `shared_info`,
//! a selector word and an upcall flag in each `vcpu_info`, all updated with
//! atomic read-modify-writes on the live guest pages (Xen's
//! `evtchn_2l_set_pending` / `evtchn_2l_unmask`).
//!
//! Bits are addressed through 32-bit atomics whatever the guest's word size:
//! on little-endian x86 bit `n` of a bitmap is bit `n % 32` of the `u32` at
//! byte `4 * (n / 32)`, and locked 32-bit operations are coherent with the
//! guest's 64-bit ones.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use xen_abi::xen::{vcpu_info_offsets as vio, SharedInfoLayout};

use crate::guest::{Gpa, GuestMemory, MemError};
use crate::types::Port;

/// Where one vCPU's event state lives right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Guest-physical address of `shared_info`.
    pub shinfo: Gpa,
    /// Guest-physical address of the vCPU's `vcpu_info`.
    pub vcpu_info: Gpa,
    /// 32-bit (compat) layout.
    pub compat: bool,
}

impl Target {
    fn layout(&self) -> SharedInfoLayout {
        if self.compat {
            SharedInfoLayout::COMPAT
        } else {
            SharedInfoLayout::NATIVE
        }
    }

    fn bits_per_word(&self) -> u32 {
        if self.compat {
            32
        } else {
            64
        }
    }

    fn sel_offset(&self) -> u64 {
        if self.compat {
            vio::PENDING_SEL_COMPAT as u64
        } else {
            vio::PENDING_SEL as u64
        }
    }
}

fn bit_addr(base: Gpa, bit: u32) -> (Gpa, u32) {
    (base + 4 * u64::from(bit / 32), 1u32 << (bit % 32))
}

/// Atomically sets bit `bit` of the bitmap at `base`; returns its old value.
fn test_and_set(mem: &dyn GuestMemory, base: Gpa, bit: u32) -> Result<bool, MemError> {
    let (addr, mask) = bit_addr(base, bit);
    Ok(mem.atomic_u32(addr)?.fetch_or(mask, Ordering::SeqCst) & mask != 0)
}

fn test_and_clear(mem: &dyn GuestMemory, base: Gpa, bit: u32) -> Result<bool, MemError> {
    let (addr, mask) = bit_addr(base, bit);
    Ok(mem.atomic_u32(addr)?.fetch_and(!mask, Ordering::SeqCst) & mask != 0)
}

fn test(mem: &dyn GuestMemory, base: Gpa, bit: u32) -> Result<bool, MemError> {
    let (addr, mask) = bit_addr(base, bit);
    Ok(mem.atomic_u32(addr)?.load(Ordering::SeqCst) & mask != 0)
}

/// Marks `port` pending. Returns `true` when the vCPU needs an upcall (the
/// port was not already pending, is unmasked, its selector bit was clear and
/// `evtchn_upcall_pending` went 0 → 1).
pub fn set_pending(mem: &dyn GuestMemory, t: Target, port: Port) -> Result<bool, MemError> {
    let l = t.layout();
    if test_and_set(mem, t.shinfo + l.evtchn_pending as u64, port.0)? {
        return Ok(false);
    }
    if test(mem, t.shinfo + l.evtchn_mask as u64, port.0)? {
        return Ok(false);
    }
    mark_selector(mem, t, port)
}

fn mark_selector(mem: &dyn GuestMemory, t: Target, port: Port) -> Result<bool, MemError> {
    if test_and_set(
        mem,
        t.vcpu_info + t.sel_offset(),
        port.0 / t.bits_per_word(),
    )? {
        return Ok(false);
    }
    mark_events_pending(mem, t.vcpu_info)
}

/// `vcpu_mark_events_pending`: sets `evtchn_upcall_pending`; `true` if it
/// was clear (an upcall must be raised).
pub fn mark_events_pending(mem: &dyn GuestMemory, vcpu_info: Gpa) -> Result<bool, MemError> {
    let b = mem.atomic_u8(vcpu_info + vio::UPCALL_PENDING as u64)?;
    Ok(b.swap(1, Ordering::SeqCst) == 0)
}

/// `EVTCHNOP_unmask`: clears the mask bit; if the port is pending, raises
/// the selector and upcall as a fresh event would. Returns `true` when an
/// upcall is needed.
pub fn unmask(mem: &dyn GuestMemory, t: Target, port: Port) -> Result<bool, MemError> {
    let l = t.layout();
    if test_and_clear(mem, t.shinfo + l.evtchn_mask as u64, port.0)?
        && test(mem, t.shinfo + l.evtchn_pending as u64, port.0)?
    {
        return mark_selector(mem, t, port);
    }
    Ok(false)
}

/// Whether `port` is pending (for `SCHEDOP_poll`).
pub fn is_pending(
    mem: &dyn GuestMemory,
    shinfo: Gpa,
    compat: bool,
    port: Port,
) -> Result<bool, MemError> {
    let l = if compat {
        SharedInfoLayout::COMPAT
    } else {
        SharedInfoLayout::NATIVE
    };
    test(mem, shinfo + l.evtchn_pending as u64, port.0)
}

/// Clears `port`'s pending bit (a freed channel must not fire on re-bind).
pub fn clear_pending(
    mem: &dyn GuestMemory,
    shinfo: Gpa,
    compat: bool,
    port: Port,
) -> Result<(), MemError> {
    let l = if compat {
        SharedInfoLayout::COMPAT
    } else {
        SharedInfoLayout::NATIVE
    };
    test_and_clear(mem, shinfo + l.evtchn_pending as u64, port.0).map(|_| ())
}

/// Whether `evtchn_upcall_pending` is set in the `vcpu_info` at `gpa`.
pub fn upcall_pending(mem: &dyn GuestMemory, vcpu_info: Gpa) -> Result<bool, MemError> {
    Ok(mem
        .atomic_u8(vcpu_info + vio::UPCALL_PENDING as u64)?
        .load(Ordering::SeqCst)
        != 0)
}

/// Clears `evtchn_upcall_mask` (`local_event_delivery_enable`, done by
/// `SCHEDOP_block`).
pub fn clear_upcall_mask(mem: &dyn GuestMemory, vcpu_info: Gpa) -> Result<(), MemError> {
    mem.atomic_u8(vcpu_info + vio::UPCALL_MASK as u64)?
        .store(0, Ordering::SeqCst);
    Ok(())
}

/// One vCPU's 2-level event words as host pointers, bounds checked once
/// when shared_info or the vCPU's `vcpu_info` is placed, so that a send
/// costs its four atomic instructions rather than four guest-address
/// lookups (the VMM's lookup takes a lock and walks its memory map each
/// time). Built by [`Mapped::resolve`] from [`GuestMemory::host_range`];
/// memories that give no host pointers (test fakes) keep using the
/// address-based functions above.
///
/// The cache is keyed by [`Target`] and by the memory's
/// [`GuestMemory::layout_generation`]: moving either area, or placing an
/// overlay or grant alias over its frame, resolves it again, so that sends
/// always reach the page the guest sees at the frame now, as the
/// address-based functions above do. (Xen instead keeps writing to the page
/// it mapped when the area was registered, whatever the guest later puts
/// at the frame; the two differ only for a guest that covers its own
/// `vcpu_info`.)
#[derive(Debug, Clone, Copy)]
pub struct Mapped {
    /// `evtchn_pending[0]` in shared_info, as 32-bit words.
    pending: NonNull<AtomicU32>,
    /// `evtchn_mask[0]`.
    mask: NonNull<AtomicU32>,
    /// `evtchn_pending_sel` (one or two 32-bit words).
    sel: NonNull<AtomicU32>,
    /// `evtchn_upcall_pending`.
    upcall_pending: NonNull<AtomicU8>,
    /// Ports the bitmaps hold (their size in bits).
    nr_channels: u32,
    bits_per_word: u32,
}

// SAFETY: `Mapped` only holds pointers to atomics in guest memory, which
// any thread may access (the guest's vCPUs do so concurrently anyway);
// every access through them is an atomic operation.
unsafe impl Send for Mapped {}
// SAFETY: as for `Send`: shared access is atomic-only.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Host pointers for `t`'s event words in `mem`, or `None` if `mem`
    /// gives no host pointers or an area is not backed or misaligned (the
    /// caller then uses the address-based path, which reports the error).
    pub fn resolve(mem: &dyn GuestMemory, t: Target) -> Option<Self> {
        let l = t.layout();
        let bitmap = (l.nr_channels / 8) as usize;
        let sel_bytes = if t.compat { 4 } else { 8 };
        let pending = mem.host_range(t.shinfo + l.evtchn_pending as u64, bitmap)?;
        let mask = mem.host_range(t.shinfo + l.evtchn_mask as u64, bitmap)?;
        let sel = mem.host_range(t.vcpu_info + t.sel_offset(), sel_bytes)?;
        let upcall_pending = mem.host_range(t.vcpu_info + vio::UPCALL_PENDING as u64, 1)?;
        let aligned = |p: NonNull<u8>| p.as_ptr() as usize % 4 == 0;
        if !(aligned(pending) && aligned(mask) && aligned(sel)) {
            return None;
        }
        Some(Self {
            pending: pending.cast(),
            mask: mask.cast(),
            sel: sel.cast(),
            upcall_pending: upcall_pending.cast(),
            nr_channels: l.nr_channels,
            bits_per_word: t.bits_per_word(),
        })
    }

    /// The 32-bit word holding bit `bit` of the bitmap at `base`, and the
    /// bit's mask in it.
    ///
    /// # Safety
    /// `bit` is below the bitmap's size in bits and the memory `self` was
    /// resolved from is alive.
    unsafe fn word(&self, base: NonNull<AtomicU32>, bit: u32) -> (&AtomicU32, u32) {
        // SAFETY: `resolve` checked (host_range) that the bitmap's bytes
        // are backed host memory within one page, 4-byte aligned; `bit` is
        // within it (caller), so the word is too. The memory outlives this
        // use (caller). Guest memory is only ever accessed atomically by
        // xen-emu, and the guest's own accesses are its business as with
        // `GuestMemory::atomic_u32`.
        let w = unsafe { &*base.as_ptr().add((bit / 32) as usize) };
        (w, 1u32 << (bit % 32))
    }

    /// [`set_pending`] through the host pointers: `Some(true)` when the
    /// vCPU needs an upcall, `None` for a port beyond the bitmaps.
    ///
    /// # Safety
    /// The [`GuestMemory`] `self` was resolved from is still alive.
    pub unsafe fn set_pending(&self, port: Port) -> Option<bool> {
        if port.0 >= self.nr_channels {
            return None;
        }
        // SAFETY: `port` is within the bitmaps (checked above); the memory
        // is alive (caller).
        let (p, bit) = unsafe { self.word(self.pending, port.0) };
        if p.fetch_or(bit, Ordering::SeqCst) & bit != 0 {
            return Some(false);
        }
        // SAFETY: as above, the mask bitmap has the same size.
        let (m, bit) = unsafe { self.word(self.mask, port.0) };
        if m.load(Ordering::SeqCst) & bit != 0 {
            return Some(false);
        }
        // The selector has one bit per bitmap word: below 64 (native) or
        // 32 (compat), within the `sel_bytes` `resolve` checked.
        // SAFETY: index within the selector; the memory is alive (caller).
        let (s, bit) = unsafe { self.word(self.sel, port.0 / self.bits_per_word) };
        if s.fetch_or(bit, Ordering::SeqCst) & bit != 0 {
            return Some(false);
        }
        // SAFETY: `resolve` checked the byte is backed; the memory is
        // alive (caller).
        let up = unsafe { self.upcall_pending.as_ref() };
        Some(up.swap(1, Ordering::SeqCst) == 0)
    }

    /// [`unmask`] through the host pointers: `Some(true)` when the vCPU
    /// needs an upcall, `None` for a port beyond the bitmaps.
    ///
    /// # Safety
    /// The [`GuestMemory`] `self` was resolved from is still alive.
    pub unsafe fn unmask(&self, port: Port) -> Option<bool> {
        if port.0 >= self.nr_channels {
            return None;
        }
        // SAFETY: `port` is within the bitmaps (checked above); the memory
        // is alive (caller).
        let (m, bit) = unsafe { self.word(self.mask, port.0) };
        if m.fetch_and(!bit, Ordering::SeqCst) & bit == 0 {
            return Some(false);
        }
        // SAFETY: as above.
        let (p, bit) = unsafe { self.word(self.pending, port.0) };
        if p.load(Ordering::SeqCst) & bit == 0 {
            return Some(false);
        }
        // SAFETY: index within the selector (see `set_pending`); the
        // memory is alive (caller).
        let (s, bit) = unsafe { self.word(self.sel, port.0 / self.bits_per_word) };
        if s.fetch_or(bit, Ordering::SeqCst) & bit != 0 {
            return Some(false);
        }
        // SAFETY: `resolve` checked the byte is backed; the memory is
        // alive (caller).
        let up = unsafe { self.upcall_pending.as_ref() };
        Some(up.swap(1, Ordering::SeqCst) == 0)
    }
}

#[cfg(test)]
mod tests {

    use proptest::prelude::*;

    use super::*;

    use crate::testing::DirectMemory;

    /// `pages` 4 KiB pages of RAM, with host pointers or without.
    fn pages(pages: usize, direct: bool) -> DirectMemory {
        DirectMemory::with_direct(pages * 4096, direct)
    }

    const SHINFO: Gpa = 0x1000;

    fn target(compat: bool, vcpu_info: Gpa) -> Target {
        Target {
            shinfo: SHINFO,
            vcpu_info,
            compat,
        }
    }

    #[test]
    fn resolve_needs_host_pointers_and_backed_aligned_areas() {
        let t = target(false, SHINFO);
        assert!(Mapped::resolve(&pages(4, false), t).is_none());
        assert!(Mapped::resolve(&pages(4, true), t).is_some());
        // vcpu_info past the end of memory, or its selector misaligned.
        assert!(Mapped::resolve(&pages(4, true), target(false, 0x4000)).is_none());
        assert!(Mapped::resolve(&pages(4, true), target(false, 0x3002)).is_none());
        // shared_info's bitmaps must be backed too.
        let t = Target {
            shinfo: 0x3000,
            ..target(false, SHINFO)
        };
        assert!(Mapped::resolve(&pages(3, true), t).is_none());
    }

    #[test]
    fn ports_beyond_the_bitmaps_are_left_to_the_address_path() {
        let mem = pages(4, true);
        let m = Mapped::resolve(&mem, target(true, 0x3000)).expect("mapped");
        // SAFETY: `mem` outlives `m`'s uses.
        unsafe {
            assert_eq!(m.set_pending(Port(1023)), Some(true));
            assert_eq!(m.set_pending(Port(1024)), None);
            assert_eq!(m.unmask(Port(4096)), None);
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Send(u32),
        Unmask(u32),
        /// The guest masks a port.
        Mask(u32),
        /// The guest's upcall handler: clears upcall_pending, the selector
        /// and one port's pending bit.
        Handle(u32),
    }

    fn op(ports: u32) -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..ports).prop_map(Op::Send),
            (0..ports).prop_map(Op::Unmask),
            (0..ports).prop_map(Op::Mask),
            (0..ports).prop_map(Op::Handle),
        ]
    }

    fn guest_op(mem: &DirectMemory, t: Target, o: &Op) {
        let l = t.layout();
        match *o {
            Op::Mask(p) => {
                test_and_set(mem, t.shinfo + l.evtchn_mask as u64, p).expect("mask");
            }
            Op::Handle(p) => {
                mem.atomic_u8(t.vcpu_info + vio::UPCALL_PENDING as u64)
                    .expect("upcall")
                    .store(0, Ordering::SeqCst);
                for w in 0..(if t.compat { 1 } else { 2 }) {
                    mem.atomic_u32(t.vcpu_info + t.sel_offset() + 4 * w)
                        .expect("sel")
                        .store(0, Ordering::SeqCst);
                }
                test_and_clear(mem, t.shinfo + l.evtchn_pending as u64, p).expect("clear");
            }
            _ => {}
        }
    }

    proptest! {
        /// The host-pointer path gives the same answers and leaves the same
        /// guest memory as the address-based one, for both layouts.
        #[test]
        fn mapped_matches_the_address_path(
            compat in any::<bool>(),
            vi_slot in 0u64..3,
            ops in proptest::collection::vec(op(4096), 1..200),
        ) {
            let vi = if vi_slot == 0 { SHINFO } else { 0x2000 + 64 * vi_slot };
            let t = target(compat, vi);
            let slow = pages(4, false);
            let fast = pages(4, true);
            let m = Mapped::resolve(&fast, t).expect("mapped");
            let nr = t.layout().nr_channels;
            for o in &ops {
                match *o {
                    Op::Send(p) => {
                        let want = set_pending(&slow, t, Port(p)).ok();
                        // SAFETY: `fast` outlives `m`'s uses.
                        let got = unsafe { m.set_pending(Port(p)) };
                        if p < nr {
                            prop_assert_eq!(got, want);
                        } else {
                            prop_assert_eq!(got, None);
                            set_pending(&fast, t, Port(p)).ok();
                        }
                    }
                    Op::Unmask(p) => {
                        let want = unmask(&slow, t, Port(p)).ok();
                        // SAFETY: as above.
                        let got = unsafe { m.unmask(Port(p)) };
                        if p < nr {
                            prop_assert_eq!(got, want);
                        } else {
                            prop_assert_eq!(got, None);
                            unmask(&fast, t, Port(p)).ok();
                        }
                    }
                    _ => {
                        guest_op(&slow, t, o);
                        guest_op(&fast, t, o);
                    }
                }
                prop_assert!(slow.dump() == fast.dump(), "memories differ after {:?}", o);
            }
        }
    }
}
