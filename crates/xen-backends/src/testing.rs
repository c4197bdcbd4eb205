//! An in-process frontend environment: guest memory, a grant table in it
//! and recorded event channels. Used by the unit tests, the hostile
//! frontend harness, the data-safety test and the benchmarks (guest code
//! is far too slow on the development machines to drive a backend).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use xen_emu::guest::{Gpa, GuestMemory, MemError};

use xen_abi::grant_table::GrantEntryV1;
use xen_abi::memory::{XenAddToPhysmap, XENMAPSPACE_GRANT_TABLE, XENMEM_ADD_TO_PHYSMAP};
use xen_emu::platform::{MapError, Platform, ShutdownReason, SpecialPage, Upcall};
use xen_emu::testing::FakeVcpu;
use xen_emu::{Domain, DomainConfig};
use zerocopy::IntoBytes;

use crate::evtchn::{EventChannels, Notify};

/// Guest RAM backed by host memory (8-byte words so atomics are aligned).
pub struct TestMemory {
    words: Box<[AtomicU64]>,
    /// Whether [`GuestMemory::host_range`] hands out host pointers (on by
    /// default, as the VMM's memory; off to test the copy fallback).
    direct: std::sync::atomic::AtomicBool,
}

impl TestMemory {
    pub fn new(bytes: u64) -> Self {
        let n = bytes.div_ceil(8) as usize;
        Self {
            words: (0..n).map(|_| AtomicU64::new(0)).collect(),
            direct: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Turns direct host access ([`GuestMemory::host_range`]) on or off.
    pub fn set_direct(&self, on: bool) {
        self.direct.store(on, Ordering::Relaxed);
    }

    pub fn len(&self) -> u64 {
        self.words.len() as u64 * 8
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    fn check(&self, gpa: Gpa, len: usize) -> Result<*mut u8, MemError> {
        let end = gpa.checked_add(len as u64).ok_or(MemError::Unbacked(gpa))?;
        if end > self.len() {
            return Err(MemError::Unbacked(gpa));
        }
        // The words are interior-mutable (atomics), so writing through a
        // pointer derived from them is allowed; the offset is in bounds.
        Ok(self
            .words
            .as_ptr()
            .cast::<u8>()
            .cast_mut()
            .wrapping_add(gpa as usize))
    }

    fn atomic<T>(&self, gpa: Gpa) -> Result<&T, MemError> {
        let size = std::mem::size_of::<T>();
        if gpa % size as u64 != 0 {
            return Err(MemError::Misaligned(gpa));
        }
        let p = self.check(gpa, size)?;
        // SAFETY: `p` is in bounds and naturally aligned for T (checked
        // above; the base is 8-aligned), the memory lives as long as
        // `self`, and T is an atomic type whose every bit pattern is valid.
        Ok(unsafe { &*p.cast::<T>() })
    }
}

impl GuestMemory for TestMemory {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        let p = self.check(gpa, buf.len())?;
        // SAFETY: the source range is in bounds (checked) and does not
        // overlap `buf`, which is a separate host allocation.
        unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), MemError> {
        let p = self.check(gpa, data.len())?;
        // SAFETY: as in `read`; the destination is interior-mutable memory.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
        Ok(())
    }

    fn atomic_u8(&self, gpa: Gpa) -> Result<&AtomicU8, MemError> {
        self.atomic(gpa)
    }
    fn atomic_u16(&self, gpa: Gpa) -> Result<&AtomicU16, MemError> {
        self.atomic(gpa)
    }
    fn atomic_u32(&self, gpa: Gpa) -> Result<&AtomicU32, MemError> {
        self.atomic(gpa)
    }
    fn atomic_u64(&self, gpa: Gpa) -> Result<&AtomicU64, MemError> {
        self.atomic(gpa)
    }

    fn host_range(&self, gpa: Gpa, len: usize) -> Option<std::ptr::NonNull<u8>> {
        if !self.direct.load(Ordering::Relaxed) || len > 4096 || gpa % 4096 + len as u64 > 4096 {
            return None;
        }
        std::ptr::NonNull::new(self.check(gpa, len).ok()?)
    }
}

/// The platform under a [`TestGuest`]'s domain: grant frames are the
/// first pages of [`TestMemory`] (so "placing" one needs nothing), and
/// there are no vCPUs to interrupt.
struct RamPlatform;

impl Platform for RamPlatform {
    fn upcall(&self, _vcpu: u32, _upcall: Upcall) {}
    fn map_special_page(&self, page: SpecialPage, gfn: u64) -> Result<(), MapError> {
        match page {
            SpecialPage::GrantFrame(i) if u64::from(i) == gfn => Ok(()),
            _ => Err(MapError::BadGfn(gfn)),
        }
    }
    fn set_pvclock_area(&self, _vcpu: u32, _gpa: Gpa) {}
    fn shutdown(&self, _reason: ShutdownReason) {}
    fn console_io_write(&self, _bytes: &[u8]) {}
    fn kick(&self, _vcpu: u32) {}
    fn system_time_ns(&self) -> u64 {
        0
    }
}

/// Event channels that record the backend's notifications and let the
/// test play the frontend's `EVTCHNOP_send`.
#[derive(Default)]
pub struct TestEvtchn {
    bound: Mutex<HashMap<u32, Notify>>,
    notified: Mutex<u64>,
    cv: Condvar,
    pub sends: AtomicUsize,
}

impl TestEvtchn {
    /// The frontend kicks `port`.
    pub fn kick(&self, port: u32) -> bool {
        let h = self
            .bound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&port)
            .cloned();
        match h {
            Some(h) => {
                h();
                true
            }
            None => false,
        }
    }

    /// How many notifications the backend sent so far.
    pub fn notifications(&self) -> u64 {
        *self.notified.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the backend has notified more than `seen` times.
    pub fn wait_beyond(&self, seen: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut n = self.notified.lock().unwrap_or_else(|e| e.into_inner());
        while *n <= seen {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            n = self
                .cv
                .wait_timeout(n, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *n
    }
}

impl EventChannels for TestEvtchn {
    fn bind(&self, port: u32, on_notify: Notify) -> Result<(), String> {
        self.bound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port, on_notify);
        Ok(())
    }

    fn notify(&self, _port: u32) {
        self.sends.fetch_add(1, Ordering::Relaxed);
        let mut n = self.notified.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        self.cv.notify_all();
    }

    fn unbind(&self, port: u32) {
        self.bound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&port);
    }
}

/// Everything a backend needs: fake memory and event channels, and a real
/// `xen-emu` domain (the frontend) that owns the grant table.
pub struct TestGuest {
    pub mem: Arc<TestMemory>,
    /// The frontend's domain: its grant table, and the backend grant API
    /// the backends use (as in the VMM).
    pub grants: Arc<Domain>,
    pub evtchn: Arc<TestEvtchn>,
}

/// Grant table placement in a [`TestGuest`]: the guest mapped grant
/// frames 0..16 at frames 0..16 (8192 entries); pages from
/// [`TestGuest::FIRST_FREE_PAGE`] on are free for rings and data.
impl TestGuest {
    pub const FIRST_FREE_PAGE: u64 = 16;

    pub fn new(bytes: u64) -> Self {
        let mem = Arc::new(TestMemory::new(bytes));
        let config = DomainConfig {
            domid: u32::from(HARNESS_DOMID),
            max_grant_frames: Self::FIRST_FREE_PAGE as u32,
            ..DomainConfig::default()
        };
        let domain = Domain::new(config, mem.clone(), Arc::new(RamPlatform));
        // The guest maps its grant frames as a PVH Linux does, with
        // XENMEM_add_to_physmap (argument in a scratch free page).
        let arg = Self::FIRST_FREE_PAGE * 4096;
        let mut vcpu = FakeVcpu::long64(0);
        for idx in 0..Self::FIRST_FREE_PAGE {
            let op = XenAddToPhysmap {
                domid: xen_abi::DOMID_SELF,
                size: 0,
                space: XENMAPSPACE_GRANT_TABLE,
                idx,
                gpfn: idx,
            };
            let _ = mem.write(arg, op.as_bytes());
            let args = [XENMEM_ADD_TO_PHYSMAP, arg, 0, 0, 0];
            let rc = domain.hypercall(&mut vcpu, xen_abi::xen::HYPERVISOR_MEMORY_OP, args);
            assert_eq!(rc, 0, "test guest: mapping grant frame {idx} failed");
        }
        let _ = mem.write(arg, &[0u8; std::mem::size_of::<XenAddToPhysmap>()]);
        Self {
            mem,
            grants: domain,
            evtchn: Arc::new(TestEvtchn::default()),
        }
    }

    fn entry_gpa(gref: u32) -> Gpa {
        u64::from(gref) * std::mem::size_of::<GrantEntryV1>() as u64
    }

    /// Grants page `gfn` to `domid` as the frontend's
    /// `gnttab_grant_foreign_access_ref` does.
    pub fn grant(&self, gref: u32, domid: u16, gfn: u64, readonly: bool) {
        let mut flags = xen_abi::grant_table::GTF_PERMIT_ACCESS;
        if readonly {
            flags |= xen_abi::grant_table::GTF_READONLY;
        }
        let at = Self::entry_gpa(gref);
        let _ = self.mem.write(at + 4, &(gfn as u32).to_le_bytes());
        if let Ok(w) = self.mem.atomic_u32(at) {
            w.store(
                u32::from(flags) | (u32::from(domid) << 16),
                Ordering::Release,
            );
        }
    }

    /// The entry's current flags (to check the in-use bits).
    pub fn grant_flags(&self, gref: u32) -> u16 {
        self.mem
            .atomic_u16(Self::entry_gpa(gref))
            .map_or(0, |a| a.load(Ordering::Acquire))
    }
}

/// A frontend for the block backend, played in-process: it owns a
/// [`TestGuest`], a XenStore with the device in it, the ring pages and a
/// data area, and does what blkfront does (grant, write keys, switch
/// state, push requests, kick, collect responses).
pub struct BlkHarness {
    pub guest: TestGuest,
    pub store: xenstore::Engine,
    pub dev: Option<crate::blkback::BlockDevice>,
    pub ring: crate::sring::FrontRing,
    pub abi: crate::blkif::Abi,
    pub port: u32,
    next_gref: u32,
    next_page: u64,
}

/// Frontend domain id in the harness; the backend is domain 0.
pub const HARNESS_DOMID: u16 = 1;

impl BlkHarness {
    /// Creates the device for `spec` and connects a frontend with a ring
    /// of `1 << ring_order` pages.
    pub fn connect(
        spec: crate::blkback::BlockSpec,
        abi: crate::blkif::Abi,
        ring_order: u32,
        persistent: bool,
        mem_bytes: u64,
    ) -> Result<Self, String> {
        use crate::xenbus::{frontend_state, XenbusState};
        let guest = TestGuest::new(mem_bytes);
        let store = xenstore::Engine::default();
        store.introduce_domain(HARNESS_DOMID);
        let env = crate::blkback::conn::RingEnv {
            mem: guest.mem.clone(),
            grants: guest.grants.clone(),
            evtchn: guest.evtchn.clone(),
            backend_domid: 0,
            on_fatal: Arc::new(|| {}),
        };
        let dev = crate::blkback::BlockDevice::create(&store, env, HARNESS_DOMID, spec)
            .map_err(|e| e.to_string())?;
        let paths = dev.paths().clone();
        let pages = 1usize << ring_order;
        let ring_base = TestGuest::FIRST_FREE_PAGE;
        let ring = crate::sring::FrontRing::init(
            guest.mem.clone(),
            ring_base * 4096,
            pages,
            abi.entry_size(),
        );
        let mut h = Self {
            guest,
            store,
            dev: Some(dev),
            ring,
            abi,
            port: 7,
            next_gref: 8,
            next_page: ring_base + pages as u64,
        };
        let w = |k: &str, v: String| {
            h.store
                .write(&paths.frontend_key(k), v.as_bytes())
                .map_err(|e| e.to_string())
        };
        if ring_order == 0 {
            h.guest.grant(8, 0, ring_base, false);
            w("ring-ref", "8".into())?;
        } else {
            w("ring-page-order", ring_order.to_string())?;
            for i in 0..pages {
                h.guest.grant(8 + i as u32, 0, ring_base + i as u64, false);
                w(&format!("ring-ref{i}"), (8 + i).to_string())?;
            }
        }
        h.next_gref = 8 + pages as u32;
        w("event-channel", h.port.to_string())?;
        w(
            "protocol",
            match abi {
                crate::blkif::Abi::X86_32 => "x86_32-abi",
                crate::blkif::Abi::X86_64 => "x86_64-abi",
            }
            .into(),
        )?;
        if persistent {
            w("feature-persistent", "1".into())?;
        }
        w("state", XenbusState::Initialised.as_str().into())?;
        if let Some(d) = h.dev.as_mut() {
            d.frontend_changed();
        }
        let st = h.dev.as_ref().map(|d| d.state());
        if st != Some(XenbusState::Connected) {
            return Err(format!(
                "backend did not connect (state {st:?}, frontend {:?})",
                frontend_state(&h.store, &paths)
            ));
        }
        Ok(h)
    }

    /// A fresh data page granted to the backend; returns `(gref, gfn)`.
    pub fn data_page(&mut self, readonly: bool) -> (u32, u64) {
        let (g, p) = (self.next_gref, self.next_page);
        self.next_gref += 1;
        self.next_page += 1;
        self.guest.grant(g, 0, p, readonly);
        (g, p)
    }

    /// Queues one request and kicks the backend if it asked for it.
    pub fn submit(&mut self, req: &[u8]) {
        self.ring.put_request(req);
        if self.ring.push_requests() {
            self.guest.evtchn.kick(self.port);
        }
    }

    /// Collects responses until `n` arrived or `timeout` passed.
    pub fn wait_responses(&mut self, n: usize, timeout: Duration) -> Vec<(u64, u8, i16)> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let seen = self.guest.evtchn.notifications();
            out.extend(self.ring.take_responses());
            if out.len() >= n || Instant::now() >= deadline {
                return out;
            }
            self.guest
                .evtchn
                .wait_beyond(seen, Duration::from_millis(20));
        }
    }

    /// The backend's XenbusState.
    pub fn backend_state(&self) -> Option<crate::xenbus::XenbusState> {
        self.dev.as_ref().map(|d| d.state())
    }

    /// Lets the backend react to the frontend (what its watch would do).
    pub fn poke(&mut self) {
        if let Some(d) = self.dev.as_mut() {
            d.frontend_changed();
        }
    }
}

impl Drop for BlkHarness {
    fn drop(&mut self) {
        if let Some(d) = self.dev.take() {
            d.destroy();
        }
    }
}
