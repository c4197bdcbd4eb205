//! Test doubles for the traits in [`crate::guest`] and [`crate::platform`]:
//! a bounds-checked RAM that records every access, an identity-mapped vCPU
//! and a platform that records what xen-emu asked of it. Used by this
//! crate's unit tests, property tests, fuzz target and benchmarks, and
//! usable by the VMM's own tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crate::guest::{Gpa, GuestMemory, GuestMode, Gva, MemError, VcpuContext};
use crate::platform::{MapError, Platform, ShutdownReason, SpecialPage, Upcall};

const PAGE: u64 = 4096;
type Page = [AtomicU64; 512];

fn new_page() -> Page {
    std::array::from_fn(|_| AtomicU64::new(0))
}

/// Guest RAM at `[0, size)` plus special pages placed at any frame, each
/// access bounds checked and recorded.
pub struct FakeMemory {
    ram: Box<[AtomicU64]>,
    size: u64,
    /// Host pages for special pages (allocated up front so references to
    /// them live as long as `self`): index 0 shared_info, 1.. grant frames.
    specials: Box<[Page]>,
    /// gfn → index into `specials`.
    placed: std::sync::RwLock<HashMap<u64, usize>>,
    /// Every access that succeeded: (gpa, len, write).
    log: Mutex<Vec<(Gpa, u64, bool)>>,
    /// Count of refused accesses.
    pub refused: AtomicU64,
    /// Whether to keep the access log (benchmarks turn it off).
    pub logging: std::sync::atomic::AtomicBool,
}

impl FakeMemory {
    /// `size` bytes of RAM (rounded up to a page) and room for shared_info
    /// and `grant_frames` grant frames.
    pub fn new(size: u64, grant_frames: u32) -> Self {
        let size = size.div_ceil(PAGE) * PAGE;
        Self {
            ram: (0..size / 8).map(|_| AtomicU64::new(0)).collect(),
            size,
            specials: (0..1 + grant_frames as usize).map(|_| new_page()).collect(),
            placed: std::sync::RwLock::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            refused: AtomicU64::new(0),
            logging: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// RAM size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn special_index(page: SpecialPage) -> usize {
        match page {
            SpecialPage::SharedInfo => 0,
            SpecialPage::GrantFrame(i) => 1 + i as usize,
        }
    }

    /// Places `page` at `gfn` (moving it if it was elsewhere).
    pub fn place(&self, page: SpecialPage, gfn: u64) -> Result<(), MapError> {
        let idx = Self::special_index(page);
        if idx >= self.specials.len() {
            return Err(MapError::BadGfn(gfn));
        }
        let mut p = self.placed.write().unwrap_or_else(|e| e.into_inner());
        p.retain(|_, v| *v != idx);
        p.insert(gfn, idx);
        Ok(())
    }

    /// Where `page` is, if placed.
    pub fn placed_at(&self, page: SpecialPage) -> Option<u64> {
        let idx = Self::special_index(page);
        let p = self.placed.read().unwrap_or_else(|e| e.into_inner());
        p.iter().find(|(_, v)| **v == idx).map(|(g, _)| *g)
    }

    /// The successful accesses so far.
    pub fn accesses(&self) -> Vec<(Gpa, u64, bool)> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// True if `[gpa, gpa+len)` lies in RAM or in one placed special page.
    pub fn backed(&self, gpa: Gpa, len: u64) -> bool {
        self.word(gpa, len).is_ok()
    }

    /// The 512 words of guest frame `gfn`: a placed special page, or RAM.
    /// One lookup per page, so multi-byte accesses stay cheap.
    fn page(&self, gfn: u64) -> Option<&[AtomicU64]> {
        let placed = self.placed.read().unwrap_or_else(|e| e.into_inner());
        if !placed.is_empty() {
            if let Some(idx) = placed.get(&gfn) {
                return Some(&self.specials[*idx][..]);
            }
        }
        let start = gfn.checked_mul(PAGE)?;
        if start.checked_add(PAGE)? <= self.size {
            let w = (start / 8) as usize;
            return Some(&self.ram[w..w + 512]);
        }
        None
    }

    /// The 8-byte word holding `[gpa, gpa+len)` (which must not cross it).
    fn word(&self, gpa: Gpa, len: u64) -> Result<&AtomicU64, MemError> {
        let end = gpa.checked_add(len).ok_or(MemError::Unbacked(gpa))?;
        if len == 0 || (gpa / 8) != ((end - 1) / 8) {
            return Err(MemError::Misaligned(gpa));
        }
        let page = self.page(gpa / PAGE).ok_or(MemError::Unbacked(gpa))?;
        Ok(&page[((gpa % PAGE) / 8) as usize])
    }

    /// Calls `f(byte_ref, index)` for each byte of `[gpa, gpa+len)`, after
    /// checking the whole range is backed.
    fn bytes(
        &self,
        gpa: Gpa,
        len: usize,
        mut f: impl FnMut(&AtomicU8, usize),
    ) -> Result<(), MemError> {
        let end = gpa.checked_add(len as u64).ok_or(MemError::Unbacked(gpa))?;
        let mut pages = Vec::new();
        let mut at = gpa;
        while at < end {
            let page = self
                .page(at / PAGE)
                .ok_or_else(|| self.refuse(MemError::Unbacked(at)))?;
            let n = (PAGE - at % PAGE).min(end - at);
            pages.push((at, n, page));
            at += n;
        }
        let mut i = 0usize;
        for (start, n, page) in pages {
            for a in start..start + n {
                let w = &page[((a % PAGE) / 8) as usize];
                let p = (w.as_ptr() as *mut u8).wrapping_add((a % 8) as usize);
                // SAFETY: `p` is byte `a % 8` of the live `AtomicU64` `w`,
                // which lives as long as `self`; a byte is always aligned
                // and all accesses to this memory are atomic.
                f(unsafe { &*(p as *const AtomicU8) }, i);
                i += 1;
            }
        }
        Ok(())
    }

    fn record(&self, gpa: Gpa, len: u64, write: bool) {
        if !self.logging.load(Ordering::Relaxed) {
            return;
        }
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((gpa, len, write));
    }

    fn refuse(&self, e: MemError) -> MemError {
        self.refused.fetch_add(1, Ordering::Relaxed);
        e
    }

    fn atomic_at<T>(&self, gpa: Gpa, size: u64) -> Result<&T, MemError> {
        if gpa % size != 0 {
            return Err(self.refuse(MemError::Misaligned(gpa)));
        }
        let w = self.word(gpa, size).map_err(|e| self.refuse(e))?;
        let p = (w.as_ptr() as *mut u8).wrapping_add((gpa % 8) as usize);
        // SAFETY: `p` points into the `AtomicU64` `w` (offset `gpa % 8`, with
        // `size` bytes left in it since the access does not cross the
        // word), is aligned to `size` (as `gpa` is and the word is 8-byte
        // aligned), and lives as long as `self`. `T` is an atomic integer
        // of `size` bytes; all accesses to this memory are atomic.
        Ok(unsafe { &*(p as *const T) })
    }

    /// Reads a little-endian u32 at `gpa` (test helper).
    pub fn read_u32(&self, gpa: Gpa) -> u32 {
        let mut b = [0u8; 4];
        let _ = GuestMemory::read(self, gpa, &mut b);
        u32::from_le_bytes(b)
    }

    /// Writes a value at `gpa` (test helper).
    pub fn put<T: zerocopy::IntoBytes + zerocopy::Immutable + ?Sized>(&self, gpa: Gpa, v: &T) {
        let _ = GuestMemory::write(self, gpa, v.as_bytes());
    }

    /// Reads a value at `gpa` (test helper).
    pub fn get<T: zerocopy::FromBytes + zerocopy::IntoBytes>(&self, gpa: Gpa) -> T {
        let mut v = T::new_zeroed();
        let _ = GuestMemory::read(self, gpa, v.as_mut_bytes());
        v
    }
}

impl GuestMemory for FakeMemory {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        self.bytes(gpa, buf.len(), |b, i| buf[i] = b.load(Ordering::SeqCst))?;
        self.record(gpa, buf.len() as u64, false);
        Ok(())
    }

    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), MemError> {
        // `bytes` checks the whole range first: a refused write changes nothing.
        self.bytes(gpa, data.len(), |b, i| b.store(data[i], Ordering::SeqCst))?;
        self.record(gpa, data.len() as u64, true);
        Ok(())
    }

    fn atomic_u8(&self, gpa: Gpa) -> Result<&AtomicU8, MemError> {
        let r = self.atomic_at(gpa, 1)?;
        self.record(gpa, 1, true);
        Ok(r)
    }
    fn atomic_u16(&self, gpa: Gpa) -> Result<&AtomicU16, MemError> {
        let r = self.atomic_at(gpa, 2)?;
        self.record(gpa, 2, true);
        Ok(r)
    }
    fn atomic_u32(&self, gpa: Gpa) -> Result<&AtomicU32, MemError> {
        let r = self.atomic_at(gpa, 4)?;
        self.record(gpa, 4, true);
        Ok(r)
    }
    fn atomic_u64(&self, gpa: Gpa) -> Result<&AtomicU64, MemError> {
        let r = self.atomic_at(gpa, 8)?;
        self.record(gpa, 8, true);
        Ok(r)
    }
}

/// A vCPU with paging off: GVA = GPA, except addresses at or above
/// `unmapped_from`, which have no translation.
#[derive(Debug, Clone)]
pub struct FakeVcpu {
    pub id: u32,
    pub mode: GuestMode,
    pub cpl: u8,
    pub unmapped_from: u64,
    /// `RFLAGS.IF` at the call.
    pub interrupts: bool,
    /// Accept [`VcpuContext::block_in_platform`].
    pub halts: bool,
    /// Set when a `SCHEDOP_block` was handed to the platform.
    pub halted: bool,
}

impl FakeVcpu {
    /// vCPU `id` in 64-bit mode, everything mapped.
    pub fn long64(id: u32) -> Self {
        Self {
            id,
            mode: GuestMode::Long64,
            cpl: 0,
            unmapped_from: u64::MAX,
            interrupts: true,
            halts: false,
            halted: false,
        }
    }
    /// vCPU `id` in 32-bit protected mode.
    pub fn prot32(id: u32) -> Self {
        Self {
            id,
            mode: GuestMode::Protected32,
            cpl: 0,
            unmapped_from: u64::MAX,
            interrupts: true,
            halts: false,
            halted: false,
        }
    }
}

impl VcpuContext for FakeVcpu {
    fn vcpu_id(&self) -> u32 {
        self.id
    }
    fn mode(&self) -> GuestMode {
        self.mode
    }
    fn translate(&mut self, gva: Gva) -> Result<Gpa, MemError> {
        if gva >= self.unmapped_from {
            Err(MemError::NotMapped(gva))
        } else {
            Ok(gva)
        }
    }
    fn cpl(&self) -> u8 {
        self.cpl
    }
    fn interrupts_enabled(&self) -> bool {
        self.interrupts
    }
    fn block_in_platform(&mut self) -> bool {
        self.halted = self.halts;
        self.halts
    }
}

/// What [`FakePlatform`] was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Upcall(u32, Upcall),
    Map(SpecialPage, u64),
    Pvclock(u32, Gpa),
    Shutdown(ShutdownReason),
    Kick(u32),
    VcpuUp(u32, Option<crate::platform::VcpuStart>),
    VcpuDown(u32),
    /// [`Platform::map_grant_page`]: (gfn, frame).
    GrantMap(u64, Gpa),
    /// [`Platform::unmap_grant_page`]: gfn.
    GrantUnmap(u64),
}

/// Run once from inside a [`Platform`] call (to interleave another vCPU).
pub type Hook = Box<dyn FnOnce() + Send>;

/// A platform that records every request; special pages go to a
/// [`FakeMemory`].
pub struct FakePlatform {
    pub mem: Arc<FakeMemory>,
    pub events: Mutex<Vec<Event>>,
    pub console: Mutex<Vec<u8>>,
    pub now_ns: AtomicU64,
    /// Frames at or above this cannot hold a special page.
    pub max_gfn: u64,
    /// Whether [`Platform::vcpu_up`] succeeds.
    pub can_start_vcpus: bool,
    /// Whether [`Platform::map_grant_page`] succeeds (else it refuses, as
    /// the trait's default does).
    pub can_map_grants: bool,
    /// Run (once) inside the next [`Platform::unmap_grant_page`].
    pub on_unmap_grant: Mutex<Option<Hook>>,
}

impl FakePlatform {
    pub fn new(mem: Arc<FakeMemory>) -> Self {
        Self {
            mem,
            events: Mutex::new(Vec::new()),
            console: Mutex::new(Vec::new()),
            now_ns: AtomicU64::new(1_000_000),
            max_gfn: 1 << 36,
            can_start_vcpus: true,
            can_map_grants: false,
            on_unmap_grant: Mutex::new(None),
        }
    }

    /// The recorded events so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Upcalls delivered so far.
    pub fn upcalls(&self) -> Vec<(u32, Upcall)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Upcall(v, u) => Some((v, u)),
                _ => None,
            })
            .collect()
    }

    fn push(&self, e: Event) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(e);
    }
}

impl Platform for FakePlatform {
    fn upcall(&self, vcpu: u32, upcall: Upcall) {
        self.push(Event::Upcall(vcpu, upcall));
    }
    fn map_special_page(&self, page: SpecialPage, gfn: u64) -> Result<(), MapError> {
        if gfn >= self.max_gfn {
            return Err(MapError::BadGfn(gfn));
        }
        self.mem.place(page, gfn)?;
        self.push(Event::Map(page, gfn));
        Ok(())
    }
    fn set_pvclock_area(&self, vcpu: u32, gpa: Gpa) {
        self.push(Event::Pvclock(vcpu, gpa));
    }
    fn shutdown(&self, reason: ShutdownReason) {
        self.push(Event::Shutdown(reason));
    }
    fn console_io_write(&self, bytes: &[u8]) {
        self.console
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
    }
    fn kick(&self, vcpu: u32) {
        self.push(Event::Kick(vcpu));
    }
    fn system_time_ns(&self) -> u64 {
        self.now_ns.load(Ordering::SeqCst)
    }
    fn vcpu_up(&self, vcpu: u32, start: Option<crate::platform::VcpuStart>) -> bool {
        if self.can_start_vcpus {
            self.push(Event::VcpuUp(vcpu, start));
        }
        self.can_start_vcpus
    }
    fn vcpu_down(&self, vcpu: u32) {
        self.push(Event::VcpuDown(vcpu));
    }
    fn map_grant_page(&self, gfn: u64, frame: Gpa) -> Result<(), MapError> {
        if !self.can_map_grants {
            return Err(MapError::BadGfn(gfn));
        }
        self.push(Event::GrantMap(gfn, frame));
        Ok(())
    }
    fn unmap_grant_page(&self, gfn: u64) {
        self.push(Event::GrantUnmap(gfn));
        let hook = self
            .on_unmap_grant
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(hook) = hook {
            hook();
        }
    }
}

/// Flat guest RAM from address 0 that, like the VMM's memory, hands out
/// host pointers (`host_range`, within one 4 KiB page) unless built
/// without them, so the host-pointer paths (cached 2-level event words,
/// direct backend I/O) are what runs. No access log, no locks.
pub struct DirectMemory {
    words: Box<[AtomicU64]>,
    direct: bool,
}

impl DirectMemory {
    /// `bytes` of zeroed RAM with host pointers.
    pub fn new(bytes: usize) -> Self {
        Self::with_direct(bytes, true)
    }

    /// `bytes` of zeroed RAM; `direct`: whether `host_range` answers.
    pub fn with_direct(bytes: usize, direct: bool) -> Self {
        Self {
            words: (0..bytes.div_ceil(8)).map(|_| AtomicU64::new(0)).collect(),
            direct,
        }
    }

    /// Every word of RAM, for comparing two memories.
    pub fn dump(&self) -> Vec<u64> {
        self.words
            .iter()
            .map(|w| w.load(Ordering::SeqCst))
            .collect()
    }

    fn ptr(&self, gpa: Gpa, len: usize) -> Result<*mut u8, MemError> {
        let end = gpa.checked_add(len as u64).ok_or(MemError::Unbacked(gpa))?;
        if len == 0 || end > self.words.len() as u64 * 8 {
            return Err(MemError::Unbacked(gpa));
        }
        Ok((self.words.as_ptr() as *mut u8).wrapping_add(gpa as usize))
    }

    fn atomic<T>(&self, gpa: Gpa) -> Result<&T, MemError> {
        let size = std::mem::size_of::<T>();
        if gpa % size as u64 != 0 {
            return Err(MemError::Misaligned(gpa));
        }
        let p = self.ptr(gpa, size)?;
        // SAFETY: `size` aligned bytes inside `words`, which live as long
        // as `self`; every access to them is atomic.
        Ok(unsafe { &*(p as *const T) })
    }
}

impl GuestMemory for DirectMemory {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self
                .atomic::<AtomicU8>(gpa + i as u64)?
                .load(Ordering::SeqCst);
        }
        Ok(())
    }
    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), MemError> {
        for (i, b) in data.iter().enumerate() {
            self.atomic::<AtomicU8>(gpa + i as u64)?
                .store(*b, Ordering::SeqCst);
        }
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
        if !self.direct || gpa / 4096 != (gpa + len.max(1) as u64 - 1) / 4096 {
            return None;
        }
        std::ptr::NonNull::new(self.ptr(gpa, len).ok()?)
    }
}

/// A platform for benchmarks: special pages are the RAM frames the guest
/// names (enough for shared_info on [`DirectMemory`]), upcalls cost
/// nothing and nothing is recorded.
pub struct DirectPlatform;

impl Platform for DirectPlatform {
    fn upcall(&self, vcpu: u32, upcall: Upcall) {
        std::hint::black_box((vcpu, upcall));
    }
    fn map_special_page(&self, _: SpecialPage, _: u64) -> Result<(), MapError> {
        Ok(())
    }
    fn set_pvclock_area(&self, _: u32, _: Gpa) {}
    fn shutdown(&self, _: ShutdownReason) {}
    fn console_io_write(&self, _: &[u8]) {}
    fn kick(&self, _: u32) {}
    fn system_time_ns(&self) -> u64 {
        1_000_000
    }
}
