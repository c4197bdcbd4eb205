//! `HYPERVISOR_multicall`: entries run as direct calls, results written
//! back in both layouts, Xen's failure modes, and continuations (the
//! multicall's own between entries, and an entry's call continuing inside
//! it) that never re-run a completed entry.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::*;
use xen_abi::errno::*;
use xen_abi::event_channel::*;
use xen_abi::grant_table::*;
use xen_abi::xen::*;
use xen_abi::DOMID_SELF;
use xen_emu::guest::{Gpa, GuestMemory, GuestMode, MemError};
use xen_emu::testing::{FakeMemory, FakePlatform, FakeVcpu};
use xen_emu::Domain;
use zerocopy::FromZeros;

/// Where the tests put the entry list.
const LIST: u64 = 0x3000;
const MC: u64 = HYPERVISOR_MULTICALL;

fn e64(op: u64, args: &[u64]) -> MulticallEntry {
    let mut e = MulticallEntry {
        op,
        result: 0x5a5a,
        ..MulticallEntry::new_zeroed()
    };
    e.args[..args.len()].copy_from_slice(args);
    e
}

fn e32(op: u32, args: &[u32]) -> MulticallEntryCompat {
    let mut e = MulticallEntryCompat {
        op,
        result: 0x5a5a,
        ..MulticallEntryCompat::new_zeroed()
    };
    e.args[..args.len()].copy_from_slice(args);
    e
}

fn results64(t: &H, at: u64, n: usize) -> Vec<i64> {
    (0..n)
        .map(|i| t.mem.get::<MulticallEntry>(at + 64 * i as u64).result as i64)
        .collect()
}

fn results32(t: &H, at: u64, n: usize) -> Vec<i32> {
    (0..n)
        .map(|i| t.mem.get::<MulticallEntryCompat>(at + 32 * i as u64).result as i32)
        .collect()
}

/// `EVTCHNOP_alloc_unbound` for the backend domain at `at`.
fn put_alloc_unbound(t: &H, at: u64) {
    t.mem.put(
        at,
        &EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: 0,
            port: 0,
        },
    );
}

#[test]
fn a_64_bit_batch_runs_each_entry_as_a_direct_call() {
    let mut t = h();
    put_alloc_unbound(&t, ARG);
    let batch = [
        e64(HYPERVISOR_XEN_VERSION, &[0, 0]),
        e64(HYPERVISOR_EVENT_CHANNEL_OP, &[EVTCHNOP_ALLOC_UNBOUND, ARG]),
        e64(HYPERVISOR_SET_TIMER_OP, &[0]),
        // Not in the HVM table.
        e64(HYPERVISOR_MMU_UPDATE, &[0, 0, 0, 0]),
        // A bad pointer inside one entry: only that entry fails.
        e64(HYPERVISOR_XEN_VERSION, &[1, UNMAPPED]),
        // Upper bits of a 64-bit op are part of the number.
        e64((1 << 32) | HYPERVISOR_XEN_VERSION, &[0, 0]),
    ];
    t.mem.put(LIST, &batch[..]);
    assert_eq!(t.call(MC, &[LIST, batch.len() as u64]), 0);
    let r = results64(&t, LIST, batch.len());
    assert_eq!(r[0], t.call(HYPERVISOR_XEN_VERSION, &[0, 0]));
    let port = t.mem.get::<EvtchnAllocUnbound>(ARG).port;
    assert!(port > 0);
    assert_eq!(r[1], 0);
    assert_eq!(r[2], 0);
    assert_eq!(r[3], -ENOSYS);
    assert_eq!(r[4], -EFAULT);
    assert_eq!(r[5], -ENOSYS);
    // Only `result` was written: op and args are the guest's.
    for (i, e) in batch.iter().enumerate() {
        let after: MulticallEntry = t.mem.get(LIST + 64 * i as u64);
        assert_eq!((after.op, after.args), (e.op, e.args), "entry {i}");
    }
    // The port is really allocated: a second alloc gets another one.
    put_alloc_unbound(&t, ARG);
    assert_eq!(
        t.call(HYPERVISOR_EVENT_CHANNEL_OP, &[EVTCHNOP_ALLOC_UNBOUND, ARG]),
        0
    );
    assert_ne!(t.mem.get::<EvtchnAllocUnbound>(ARG).port, port);
}

#[test]
fn a_32_bit_batch_uses_the_compat_layout() {
    let mut t = h32();
    put_alloc_unbound(&t, ARG);
    let batch = [
        e32(HYPERVISOR_XEN_VERSION as u32, &[0, 0]),
        e32(
            HYPERVISOR_EVENT_CHANNEL_OP as u32,
            &[EVTCHNOP_ALLOC_UNBOUND as u32, ARG as u32],
        ),
        // set_timer_op(lo, hi) = 0: stop.
        e32(HYPERVISOR_SET_TIMER_OP as u32, &[0, 0]),
        e32(HYPERVISOR_MMU_UPDATE as u32, &[]),
        e32(HYPERVISOR_XEN_VERSION as u32, &[1, UNMAPPED as u32]),
    ];
    t.mem.put(LIST, &batch[..]);
    // The upper half of a 32-bit caller's register is not its.
    assert_eq!(t.call(MC, &[LIST | (7 << 32), batch.len() as u64]), 0);
    let r = results32(&t, LIST, batch.len());
    assert_eq!(
        i64::from(r[0]),
        t.call(HYPERVISOR_XEN_VERSION, &[0, 0]),
        "{r:?}"
    );
    assert_eq!(r[1], 0);
    assert!(t.mem.get::<EvtchnAllocUnbound>(ARG).port > 0);
    assert_eq!(r[2], 0);
    assert_eq!(i64::from(r[3]), -ENOSYS);
    assert_eq!(i64::from(r[4]), -EFAULT);
    for (i, e) in batch.iter().enumerate() {
        let after: MulticallEntryCompat = t.mem.get(LIST + 32 * i as u64);
        assert_eq!((after.op, after.args), (e.op, e.args), "entry {i}");
    }
}

#[test]
fn a_multicall_inside_a_multicall_is_einval_for_that_entry() {
    let mut t = h();
    let inner = LIST + 0x800;
    t.mem.put(inner, &e64(HYPERVISOR_XEN_VERSION, &[0, 0]));
    t.mem.put(
        LIST,
        &[e64(MC, &[inner, 1]), e64(HYPERVISOR_XEN_VERSION, &[0, 0])][..],
    );
    assert_eq!(t.call(MC, &[LIST, 2]), 0);
    let r = results64(&t, LIST, 2);
    assert_eq!(r[0], -EINVAL);
    assert!(r[1] > 0);
    // The inner list was never run.
    assert_eq!(t.mem.get::<MulticallEntry>(inner).result, 0x5a5a);
}

#[test]
fn an_unreadable_entry_ends_the_batch_with_efault() {
    for compat in [false, true] {
        let mut t = if compat { h32() } else { h() };
        let size = if compat { 32 } else { 64 };
        // Two entries, the second straddling into unmapped space.
        let end = 0x8000;
        t.v.unmapped_from = end;
        let at = end - size - size / 2;
        t.mem
            .put(at, &console_entry(compat, BUF, 1)[..size as usize]);
        t.mem.put(BUF, b"x");
        assert_eq!(t.call(MC, &[at, 5]), -EFAULT, "compat {compat}");
        assert_eq!(*t.plat.console.lock().unwrap(), b"x", "first entry ran");
        let res = u32::from_le_bytes(t.mem.get::<[u8; 4]>(at + size / 8));
        assert_eq!(res, 0, "its result was written");
        // No entries: nothing to read, nothing to fail.
        assert_eq!(t.call(MC, &[end, 0]), 0);
    }
}

/// A `console_io(CONSOLEIO_write, len, buf)` entry in either layout, as
/// raw bytes.
fn console_entry(compat: bool, buf: u64, len: u64) -> Vec<u8> {
    use zerocopy::IntoBytes;
    if compat {
        e32(
            HYPERVISOR_CONSOLE_IO as u32,
            &[CONSOLEIO_WRITE as u32, len as u32, buf as u32],
        )
        .as_bytes()
        .to_vec()
    } else {
        e64(HYPERVISOR_CONSOLE_IO, &[CONSOLEIO_WRITE, len, buf])
            .as_bytes()
            .to_vec()
    }
}

/// Guest memory that refuses writes to one page (a read-only mapping).
struct ReadOnlyPage {
    inner: Arc<FakeMemory>,
    page: Gpa,
}

impl GuestMemory for ReadOnlyPage {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        self.inner.read(gpa, buf)
    }
    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), MemError> {
        if gpa >> 12 == self.page >> 12 {
            return Err(MemError::Unbacked(gpa));
        }
        self.inner.write(gpa, data)
    }
    fn atomic_u8(&self, gpa: Gpa) -> Result<&std::sync::atomic::AtomicU8, MemError> {
        self.inner.atomic_u8(gpa)
    }
    fn atomic_u16(&self, gpa: Gpa) -> Result<&std::sync::atomic::AtomicU16, MemError> {
        self.inner.atomic_u16(gpa)
    }
    fn atomic_u32(&self, gpa: Gpa) -> Result<&std::sync::atomic::AtomicU32, MemError> {
        self.inner.atomic_u32(gpa)
    }
    fn atomic_u64(&self, gpa: Gpa) -> Result<&std::sync::atomic::AtomicU64, MemError> {
        self.inner.atomic_u64(gpa)
    }
}

#[test]
fn an_unwritable_result_ends_the_batch_with_efault_after_the_call_ran() {
    let cfg = config();
    let mem = Arc::new(FakeMemory::new(RAM, cfg.max_grant_frames));
    let ro = LIST + 0x1000;
    let plat = Arc::new(FakePlatform::new(mem.clone()));
    let d = Domain::new(
        cfg,
        Arc::new(ReadOnlyPage {
            inner: mem.clone(),
            page: ro,
        }),
        plat.clone(),
    );
    mem.put(BUF, b"ab");
    // Entry 0 on a writable page, entry 1 at the start of the read-only
    // one, entry 2 never reached.
    let at = ro - 64;
    mem.put(at, &console_entry(false, BUF, 1)[..]);
    mem.put(ro, &console_entry(false, BUF + 1, 1)[..]);
    mem.put(ro + 64, &console_entry(false, BUF, 2)[..]);
    let mut v = FakeVcpu::long64(0);
    assert_eq!(d.hypercall(&mut v, MC, [at, 3, 0, 0, 0]), -EFAULT);
    // Xen runs the call before it finds it cannot write the result.
    assert_eq!(*plat.console.lock().unwrap(), b"ab");
    assert_eq!(mem.get::<MulticallEntry>(at).result, 0);
}

#[test]
fn nr_calls_is_32_bits_and_a_huge_count_stops_at_the_first_fault() {
    let mut t = h();
    t.mem.put(LIST, &e64(HYPERVISOR_XEN_VERSION, &[0, 0]));
    t.mem.put(LIST + 64, &e64(HYPERVISOR_XEN_VERSION, &[0, 0]));
    // 2^32 + 1 calls is one call.
    assert_eq!(t.call(MC, &[LIST, (1 << 32) | 1]), 0);
    assert!(t.mem.get::<MulticallEntry>(LIST).result as i64 > 0);
    assert_eq!(t.mem.get::<MulticallEntry>(LIST + 64).result, 0x5a5a);
    // 2^32 - 1 entries from near the end of mapped memory: a few run, then
    // -EFAULT (a path that cannot continue runs them in one go).
    let end = 0x8000;
    t.v.unmapped_from = end;
    let at = end - 4 * 64;
    for i in 0..4 {
        t.mem
            .put(at + 64 * i, &e64(HYPERVISOR_XEN_VERSION, &[0, 0]));
    }
    assert_eq!(t.call(MC, &[at, u64::from(u32::MAX)]), -EFAULT);
    assert!(results64(&t, at, 4).iter().all(|&r| r > 0));
}

/// Re-issues the multicall while it comes back as a continuation of
/// itself (never of its entry), as the vCPU would: [`run_to_end`] with the
/// multicall's two argument registers.
fn run_multicall(d: &Domain, v: &mut Restartable, args: [u64; 2]) -> (i64, Vec<Vec<u64>>) {
    let (r, conts) = run_to_end(d, v, MC, &args);
    for regs in &conts {
        assert_eq!(regs.len(), 2);
    }
    (r, conts)
}

#[test]
fn a_long_batch_continues_every_chunk_without_rerunning_entries() {
    let t = h();
    let n = 200u64;
    // Each entry writes one byte: the console shows each ran exactly once,
    // in order.
    let text: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
    t.mem.put(BUF, &text[..]);
    for i in 0..n {
        t.mem
            .put(LIST + 64 * i, &console_entry(false, BUF + i, 1)[..]);
    }
    let mut v = Restartable::new(t.v.clone());
    let (r, conts) = run_multicall(&t.d, &mut v, [LIST, n]);
    assert_eq!(r, 0);
    assert_eq!(
        conts,
        vec![
            vec![LIST + 64 * 64, n - 64],
            vec![LIST + 64 * 128, n - 128],
            vec![LIST + 64 * 192, n - 192],
        ]
    );
    assert_eq!(*t.plat.console.lock().unwrap(), text);
}

#[test]
fn a_pending_stop_preempts_between_entries_in_both_abis() {
    for compat in [false, true] {
        let t = if compat { h32() } else { h() };
        let size = if compat { 32 } else { 64 };
        t.mem.put(BUF, b"xyz");
        for i in 0..3 {
            t.mem
                .put(LIST + size * i, &console_entry(compat, BUF + i, 1)[..]);
        }
        let mut v = Restartable::new(t.v.clone());
        v.pending.store(true, Ordering::SeqCst);
        let (r, conts) = run_multicall(&t.d, &mut v, [LIST, 3]);
        assert_eq!(r, 0);
        assert_eq!(
            conts,
            vec![vec![LIST + size, 2], vec![LIST + 2 * size, 1]],
            "compat {compat}"
        );
        assert_eq!(*t.plat.console.lock().unwrap(), b"xyz");
    }
}

#[test]
fn an_entry_that_continues_is_rewritten_and_resumed_from_where_it_stopped() {
    let t = big(GuestMode::Long64);
    let n = 600u64;
    let uop = 0x20000;
    put_copies(&t, uop, n);
    t.mem.put(BUF, b"AB");
    let list = 0x10000u64;
    t.mem.put(list, &console_entry(false, BUF, 1)[..]);
    t.mem.put(
        list + 64,
        &e64(HYPERVISOR_GRANT_TABLE_OP, &[GNTTABOP_COPY, uop, n, 7, 8, 9]),
    );
    t.mem.put(list + 128, &console_entry(false, BUF + 1, 1)[..]);
    let mut v = Restartable::new(t.v.clone());

    // First invocation: entry 0, then 256 copies of entry 1, which is
    // rewritten with the grant-table continuation; the multicall continues
    // at entry 1.
    assert_eq!(t.d.hypercall(&mut v, MC, [list, 3, 0, 0, 0]), MC as i64);
    let (nr, regs) = v.cont.take().unwrap();
    assert_eq!((nr, regs), (MC, vec![list + 64, 2]));
    let e: MulticallEntry = t.mem.get(list + 64);
    assert_eq!(e.op, HYPERVISOR_GRANT_TABLE_OP);
    assert_eq!(
        e.result, HYPERVISOR_GRANT_TABLE_OP,
        "Xen's continuation value"
    );
    assert_eq!(
        e.args,
        [GNTTABOP_COPY, uop + 40 * 256, n - 256, 7, 8, 9],
        "continuation arguments, the rest untouched"
    );
    assert_eq!(*t.plat.console.lock().unwrap(), b"A");
    assert_eq!(
        t.mem.get::<GnttabCopy>(uop + 40 * 256).status,
        99,
        "not yet"
    );

    let (r, conts) = run_multicall(&t.d, &mut v, [list + 64, 2]);
    assert_eq!(r, 0);
    assert_eq!(conts, vec![vec![list + 64, 2]]);
    assert_eq!(*t.plat.console.lock().unwrap(), b"AB", "no entry ran twice");
    let e: MulticallEntry = t.mem.get(list + 64);
    assert_eq!(e.result, 0, "the copy's final result");
    for i in 0..n {
        assert_eq!(t.mem.get::<GnttabCopy>(uop + 40 * i).status, GNTST_OKAY);
        assert_eq!(
            t.mem.get::<u64>((FIRST + 0x1000 + i) << 12),
            0x1111_0000 + i
        );
    }
}

#[test]
fn a_32_bit_entry_continuation_is_written_in_the_compat_layout() {
    let mut t = big(GuestMode::Long64);
    t.v.mode = GuestMode::Protected32;
    let n = 300u64;
    let uop = 0x20000;
    // The compat gnttab_copy: 24 bytes, 32-bit frame numbers.
    for i in 0..n {
        t.mem.put((FIRST + i) << 12, &(0x2222_0000 + i));
        let mut raw = [0u8; 24];
        raw[0..4].copy_from_slice(&((FIRST + i) as u32).to_le_bytes());
        raw[4..6].copy_from_slice(&DOMID_SELF.to_le_bytes());
        raw[8..12].copy_from_slice(&((FIRST + 0x1000 + i) as u32).to_le_bytes());
        raw[12..14].copy_from_slice(&DOMID_SELF.to_le_bytes());
        raw[16..18].copy_from_slice(&8u16.to_le_bytes());
        raw[20..22].copy_from_slice(&99i16.to_le_bytes());
        t.mem.put(uop + 24 * i, &raw);
    }
    let list = 0x10000u64;
    t.mem.put(
        list,
        &e32(
            HYPERVISOR_GRANT_TABLE_OP as u32,
            &[GNTTABOP_COPY as u32, uop as u32, n as u32, 7, 8, 9],
        ),
    );
    let mut v = Restartable::new(t.v.clone());
    assert_eq!(t.d.hypercall(&mut v, MC, [list, 1, 0, 0, 0]), MC as i64);
    let e: MulticallEntryCompat = t.mem.get(list);
    assert_eq!(e.result as u64, HYPERVISOR_GRANT_TABLE_OP);
    assert_eq!(
        e.args,
        [
            GNTTABOP_COPY as u32,
            (uop + 24 * 256) as u32,
            (n - 256) as u32,
            7,
            8,
            9
        ]
    );
    let (_, regs) = v.cont.take().unwrap();
    let (r, _) = run_multicall(&t.d, &mut v, [regs[0], regs[1]]);
    assert_eq!(r, 0);
    assert_eq!(t.mem.get::<MulticallEntryCompat>(list).result, 0);
    for i in 0..n {
        let raw: [u8; 24] = t.mem.get(uop + 24 * i);
        assert_eq!(i16::from_le_bytes([raw[20], raw[21]]), GNTST_OKAY);
        assert_eq!(
            t.mem.get::<u64>((FIRST + 0x1000 + i) << 12),
            0x2222_0000 + i
        );
    }
}

#[test]
fn user_mode_multicall_is_eperm_and_touches_nothing() {
    let mut t = h();
    t.mem.put(LIST, &e64(HYPERVISOR_XEN_VERSION, &[0, 0]));
    t.v.cpl = 3;
    assert_eq!(t.call(MC, &[LIST, 1]), -EPERM);
    assert_eq!(t.mem.get::<MulticallEntry>(LIST).result, 0x5a5a);
}
