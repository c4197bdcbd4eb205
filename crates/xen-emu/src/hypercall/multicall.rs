//! `HYPERVISOR_multicall(call_list, nr_calls)`: a batch of hypercalls in
//! one trap (Xen's `common/multicall.c` with `hvm_do_multicall_call`).
//!
//! Each `multicall_entry` (64 bytes, or 32 for a 32-bit caller) is read,
//! its `op` run with `args[0..5]` through the same table as a direct call
//! from this vCPU ([`super::call_handler`]), and its `result` written
//! back. Xen's rules, kept here:
//!
//! - A multicall inside a multicall is `-EINVAL` (for that entry; the
//!   outer batch goes on).
//! - An entry that cannot be read, or whose `result` cannot be written,
//!   ends the batch with `-EFAULT`; the entries before it stay done.
//! - Between entries the batch may be preempted: the multicall becomes a
//!   continuation of itself for the entries left (`call_list` advanced,
//!   `nr_calls` reduced), so a completed entry is never run again.
//! - An entry whose own call makes a continuation (a long grant-table or
//!   reservation batch) gets the continuation's arguments written into it
//!   (with `result` = its op, as Xen's `hypercall_create_continuation`
//!   returns), and the multicall continues *from that entry*, which then
//!   carries on where its call stopped.
//!
//! Otherwise the multicall returns 0; failures of single calls are only in
//! their `result`.

use xen_abi::xen::{MulticallEntry, MulticallEntryCompat, HYPERVISOR_MULTICALL};

use super::{call_handler, Call};
use crate::copy::GuestAccess;
use crate::types::{Errno, HcResult};

/// Entries one invocation runs before it preempts itself (when the trap
/// path can re-run it). Xen preempts on pending softirqs instead; a count
/// bounds the time a huge batch holds the vCPU the same way. Linux batches
/// at most 32 entries, so its multicalls never need more than one exit.
pub const CHUNK_ENTRIES: u64 = 64;

/// Per-entry state of a running multicall (Xen's `mc_state`).
#[derive(Debug, Default)]
pub struct EntryState {
    /// The arguments of the continuation the entry's call made, if any.
    pub continuation: Option<Vec<u64>>,
}

/// One entry, in the caller's layout, widened.
#[derive(Debug, Clone, Copy)]
struct Entry {
    op: u64,
    args: [u64; 6],
}

fn entry_size(compat: bool) -> u64 {
    if compat {
        size_of::<MulticallEntryCompat>() as u64
    } else {
        size_of::<MulticallEntry>() as u64
    }
}

/// Address of entry `i` of the list at `list`: Xen advances the guest
/// handle, which for a 32-bit caller is a 32-bit pointer.
fn entry_at(list: u64, i: u64, compat: bool) -> u64 {
    let at = list.wrapping_add(i.wrapping_mul(entry_size(compat)));
    if compat {
        at & 0xffff_ffff
    } else {
        at
    }
}

fn read_entry(g: &mut GuestAccess<'_>, at: u64) -> Result<Entry, Errno> {
    if g.compat() {
        let e: MulticallEntryCompat = g.read(at)?;
        Ok(Entry {
            op: u64::from(e.op),
            args: e.args.map(u64::from),
        })
    } else {
        let e: MulticallEntry = g.read(at)?;
        Ok(Entry {
            op: e.op,
            args: e.args,
        })
    }
}

/// `__copy_field_to_guest(call_list, &mcs->call, result)`: only the
/// `result` field, truncated to the caller's `xen_ulong_t`.
fn write_result(g: &mut GuestAccess<'_>, at: u64, result: i64) -> Result<(), Errno> {
    if g.compat() {
        g.write_at(at, 4, &(result as u32))
    } else {
        g.write_at(at, 8, &(result as u64))
    }
}

/// The whole entry, as Xen copies a preempted sub-call back: `op`, its
/// `result` and the continuation's arguments in place of the first ones.
fn write_entry(g: &mut GuestAccess<'_>, at: u64, e: &Entry, result: i64) -> Result<(), Errno> {
    if g.compat() {
        let out = MulticallEntryCompat {
            op: e.op as u32,
            result: result as u32,
            args: e.args.map(|a| a as u32),
        };
        g.write(at, &out)
    } else {
        let out = MulticallEntry {
            op: e.op,
            result: result as u64,
            args: e.args,
        };
        g.write(at, &out)
    }
}

/// What running one entry gave.
struct Ran {
    result: i64,
    /// The entry's call made a continuation with these arguments.
    continuation: Option<Vec<u64>>,
}

/// Runs one entry's call as a direct hypercall of `op` from this vCPU.
fn run_entry(c: &mut Call<'_>, e: &Entry) -> Ran {
    let mut args = [0u64; 5];
    args.copy_from_slice(&e.args[..5]);
    let mut sub = Call {
        d: c.d,
        g: GuestAccess {
            mem: c.g.mem,
            vcpu: &mut *c.g.vcpu,
            mode: c.g.mode,
        },
        vcpu_id: c.vcpu_id,
        args,
        multicall: Some(EntryState::default()),
    };
    let result = match call_handler(&mut sub, e.op) {
        Ok(v) => v,
        Err(err) => err.to_ret(),
    };
    let continuation = sub.multicall.and_then(|s| s.continuation);
    Ran {
        result,
        continuation,
    }
}

/// `HYPERVISOR_multicall(call_list, nr_calls)`.
pub fn multicall(c: &mut Call<'_>) -> HcResult {
    // Xen: "Multicall reentry is disallowed."
    if c.multicall.is_some() {
        return Err(Errno::EINVAL);
    }
    let compat = c.compat();
    let list = c.args[0];
    // `uint32_t nr_calls` in both ABIs.
    let n = c.args[1] & 0xffff_ffff;
    let mut i = 0u64;
    while i < n {
        let at = entry_at(list, i, compat);
        // As Xen: never before the first entry, so every invocation
        // makes progress.
        if i != 0 && c.preempt(i, CHUNK_ENTRIES) {
            return c.create_continuation(HYPERVISOR_MULTICALL, &[at, n - i]);
        }
        let mut e = read_entry(&mut c.g, at)?;
        let ran = run_entry(c, &e);
        write_result(&mut c.g, at, ran.result)?;
        if let Some(cont) = ran.continuation {
            for (slot, a) in e.args.iter_mut().zip(cont) {
                *slot = a;
            }
            // Xen cancels the sub-call's continuation when the entry
            // cannot be written back; the batch then fails here.
            write_entry(&mut c.g, at, &e, ran.result)?;
            return c.create_continuation(HYPERVISOR_MULTICALL, &[at, n - i]);
        }
        i += 1;
    }
    Ok(0)
}
