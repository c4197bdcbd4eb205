//! The 2-level event-channel ABI: pending and mask bitmaps in `shared_info`,
//! a selector word and an upcall flag in each `vcpu_info`, all updated with
//! atomic read-modify-writes on the live guest pages (Xen's
//! `evtchn_2l_set_pending` / `evtchn_2l_unmask`).
//!
//! Bits are addressed through 32-bit atomics whatever the guest's word size:
//! on little-endian x86 bit `n` of a bitmap is bit `n % 32` of the `u32` at
//! byte `4 * (n / 32)`, and locked 32-bit operations are coherent with the
//! guest's 64-bit ones.

use std::sync::atomic::Ordering;

use xen_abi::xen::{vcpu_info_offsets as vio, SharedInfoLayout};

use crate::guest::{Gpa, GuestMemory, MemError};
use crate::types::Port;

/// Where one vCPU's event state lives right now.
#[derive(Debug, Clone, Copy)]
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
