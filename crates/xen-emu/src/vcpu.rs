//! Per-vCPU hypervisor state other than event channels: whether the vCPU
//! is up (`_VPF_down`), its runstate accounting and the guest areas Xen
//! keeps updated for it (`VCPUOP_register_runstate_memory_area`,
//! `VCPUOP_register_vcpu_time_memory_area`).

use std::sync::atomic::Ordering;

use xen_abi::vcpu::*;
use xen_abi::xen::vcpu_info_offsets as vio;
use zerocopy::IntoBytes;

use crate::guest::Gpa;
use crate::Domain;

/// Size of `struct vcpu_time_info`.
const TIME_INFO_SIZE: usize = 32;

/// A guest area registered by guest-virtual address, translated when it
/// was registered (Linux and the BSDs register kernel addresses whose
/// mapping never changes). `second` is the page after, if it crosses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    pub first: Gpa,
    /// Bytes in the first page.
    pub first_len: usize,
    pub second: Option<Gpa>,
}

/// Xen's `struct vcpu_runstate_info`, kept in guest system time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runstate {
    pub state: i32,
    pub entry_ns: u64,
    pub time: [u64; 4],
}

/// One vCPU.
#[derive(Debug, Clone)]
pub struct VcpuState {
    /// Running or startable (not `_VPF_down`).
    pub up: bool,
    /// Has a register context (boot vCPU, `VCPUOP_initialise`, SIPI).
    pub initialised: bool,
    pub runstate: Runstate,
    pub runstate_area: Option<(Area, bool)>,
    pub time_area: Option<Area>,
    /// Register state from `VCPUOP_initialise`, applied at `VCPUOP_up`.
    pub pending_start: Option<crate::platform::VcpuStart>,
}

impl VcpuState {
    pub fn new(boot: bool) -> Self {
        Self {
            up: boot,
            initialised: boot,
            runstate: Runstate {
                state: if boot {
                    RUNSTATE_RUNNING
                } else {
                    RUNSTATE_OFFLINE
                },
                entry_ns: 0,
                time: [0; 4],
            },
            runstate_area: None,
            time_area: None,
            pending_start: None,
        }
    }
}

impl Runstate {
    /// Moves to `state` at `now`, accounting the time spent in the old one.
    pub fn enter(&mut self, state: i32, now: u64) {
        if let Some(t) = self.time.get_mut(self.state as usize) {
            *t = t.saturating_add(now.saturating_sub(self.entry_ns));
        }
        self.state = state;
        self.entry_ns = now;
    }

    /// The guest's view (native layout).
    pub fn info(&self) -> VcpuRunstateInfo {
        VcpuRunstateInfo {
            state: self.state,
            pad: 0,
            state_entry_time: self.entry_ns,
            time: self.time,
        }
    }

    /// The guest's view (32-bit layout).
    pub fn info_compat(&self) -> VcpuRunstateInfoCompat {
        let split = |v: u64| [v as u32, (v >> 32) as u32];
        VcpuRunstateInfoCompat {
            state: self.state,
            state_entry_time: split(self.entry_ns),
            time: self.time.map(split),
        }
    }
}

impl Domain {
    pub(crate) fn vcpu_state(&self, vcpu: u32) -> Option<std::sync::MutexGuard<'_, VcpuState>> {
        self.vcpus
            .get(vcpu as usize)
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `vcpu` is executing guest code: mark it up if it was not (started
    /// by INIT/SIPI), and running if it was blocked in the platform (a
    /// `SCHEDOP_block` handed to KVM ends without telling us; its blocked
    /// time runs until the vCPU's next hypercall).
    pub(crate) fn note_running(&self, vcpu: u32) {
        let change = match self.vcpu_state(vcpu) {
            Some(mut v) if !v.up => {
                v.up = true;
                v.initialised = true;
                true
            }
            Some(v) => v.runstate.state != RUNSTATE_RUNNING,
            None => false,
        };
        if change {
            self.set_runstate(vcpu, RUNSTATE_RUNNING);
        }
    }

    /// Moves `vcpu` to runstate `state` and updates its guest area.
    pub(crate) fn set_runstate(&self, vcpu: u32, state: i32) {
        let now = self.platform.system_time_ns();
        let area = {
            let Some(mut v) = self.vcpu_state(vcpu) else {
                return;
            };
            v.runstate.enter(state, now);
            v.runstate_area.map(|(a, compat)| (a, compat, v.runstate))
        };
        if let Some((a, compat, rs)) = area {
            self.write_runstate(a, compat, &rs);
        }
    }

    /// Xen's `update_runstate_area`: with the runstate-update assist on,
    /// `XEN_RUNSTATE_UPDATE` is set in `state_entry_time` (its top byte
    /// first) before the rest is written and cleared after, each step
    /// ordered, so a reader on another vCPU can tell a torn copy.
    pub(crate) fn write_runstate(&self, a: Area, compat: bool, rs: &Runstate) {
        let flagged = self.vm_assist.load(Ordering::SeqCst)
            & (1 << xen_abi::xen::VMASST_TYPE_RUNSTATE_UPDATE_FLAG)
            != 0;
        // Offset of the byte holding bit 63 of `state_entry_time`.
        let top = if compat { 11 } else { 15 };
        let mut shown = *rs;
        if flagged {
            shown.entry_ns |= xen_abi::xen::XEN_RUNSTATE_UPDATE;
            let _ = self.write_area_at(a, top, &[(shown.entry_ns >> 56) as u8]);
            std::sync::atomic::fence(Ordering::Release);
        }
        let r = if compat {
            self.write_area(a, shown.info_compat().as_bytes())
        } else {
            self.write_area(a, shown.info().as_bytes())
        };
        if r.is_err() {
            tracing::debug!("runstate area at {:#x} is not guest memory", a.first);
            return;
        }
        if flagged {
            std::sync::atomic::fence(Ordering::Release);
            let _ = self.write_area_at(a, top, &[(rs.entry_ns >> 56) as u8]);
        }
    }

    /// Writes `bytes` at offset `off` of area `a` (which may cross a page).
    fn write_area_at(
        &self,
        a: Area,
        off: usize,
        bytes: &[u8],
    ) -> Result<(), crate::guest::MemError> {
        for (i, b) in bytes.iter().enumerate() {
            let at = off + i;
            let gpa = if at < a.first_len {
                a.first + at as u64
            } else {
                match a.second {
                    Some(s) => s + (at - a.first_len) as u64,
                    None => return Err(crate::guest::MemError::Unbacked(a.first + at as u64)),
                }
            };
            self.mem.write(gpa, std::slice::from_ref(b))?;
        }
        Ok(())
    }

    pub(crate) fn write_area(&self, a: Area, bytes: &[u8]) -> Result<(), crate::guest::MemError> {
        let n = a.first_len.min(bytes.len());
        self.mem.write(a.first, &bytes[..n])?;
        if let (Some(s), true) = (a.second, bytes.len() > n) {
            self.mem.write(s, &bytes[n..])?;
        }
        Ok(())
    }

    /// Copies `vcpu`'s pvclock (kept by the platform in its `vcpu_info`)
    /// to its secondary time area, if registered and the pvclock is valid.
    pub(crate) fn update_time_area(&self, vcpu: u32) {
        let Some(area) = self.vcpu_state(vcpu).and_then(|v| v.time_area) else {
            return;
        };
        let Some(vi) = self.state().vcpu_info_gpa(vcpu) else {
            return;
        };
        let mut t = [0u8; TIME_INFO_SIZE];
        let src = vi + vio::TIME as u64;
        for _ in 0..4 {
            let v1 = match self.mem.atomic_u32(src) {
                Ok(v) => v.load(Ordering::SeqCst),
                Err(_) => return,
            };
            if v1 == 0 || v1 & 1 != 0 {
                std::thread::yield_now();
                continue;
            }
            if self.mem.read(src, &mut t).is_err() {
                return;
            }
            let v2 = self.mem.atomic_u32(src).map(|v| v.load(Ordering::SeqCst));
            if v2 == Ok(v1) {
                let _ = self.write_area(area, &t);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::guest::{GuestMemory, MemError};
    use crate::testing::{FakeMemory, FakePlatform};
    use crate::DomainConfig;

    /// Guest memory that only records what is written where, in order.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(Gpa, Vec<u8>)>>);

    impl GuestMemory for Recorder {
        fn read(&self, gpa: Gpa, _: &mut [u8]) -> Result<(), MemError> {
            Err(MemError::Unbacked(gpa))
        }
        fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), MemError> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((gpa, data.to_vec()));
            Ok(())
        }
        fn atomic_u8(&self, gpa: Gpa) -> Result<&AtomicU8, MemError> {
            Err(MemError::Unbacked(gpa))
        }
        fn atomic_u16(&self, gpa: Gpa) -> Result<&AtomicU16, MemError> {
            Err(MemError::Unbacked(gpa))
        }
        fn atomic_u32(&self, gpa: Gpa) -> Result<&AtomicU32, MemError> {
            Err(MemError::Unbacked(gpa))
        }
        fn atomic_u64(&self, gpa: Gpa) -> Result<&AtomicU64, MemError> {
            Err(MemError::Unbacked(gpa))
        }
    }

    fn writes_of(assist: bool, compat: bool, area: Area) -> Vec<(Gpa, Vec<u8>)> {
        let rec = Arc::new(Recorder::default());
        let plat = Arc::new(FakePlatform::new(Arc::new(FakeMemory::new(1 << 20, 1))));
        let d = Domain::new(DomainConfig::default(), rec.clone(), plat);
        if assist {
            d.vm_assist.store(1 << 5, Ordering::SeqCst);
        }
        let rs = Runstate {
            state: 1,
            entry_ns: 0x0123_4567_89ab_cdef,
            time: [1, 2, 3, 4],
        };
        d.write_runstate(area, compat, &rs);
        let w = rec.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        w
    }

    #[test]
    fn without_the_assist_the_area_is_written_once() {
        let area = Area {
            first: 0x3000,
            first_len: 4096,
            second: None,
        };
        let w = writes_of(false, false, area);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].0, 0x3000);
        assert_eq!(w[0].1[8..16], 0x0123_4567_89ab_cdefu64.to_le_bytes());
    }

    /// Xen's `update_runstate_area`: top byte with `XEN_RUNSTATE_UPDATE`,
    /// the whole area with it, then the top byte without it.
    #[test]
    fn the_runstate_update_flag_brackets_the_write() {
        let entry = 0x0123_4567_89ab_cdefu64;
        let flagged = entry | xen_abi::xen::XEN_RUNSTATE_UPDATE;
        for (compat, at) in [(false, 8usize), (true, 4)] {
            let area = Area {
                first: 0x3000,
                first_len: 4096,
                second: None,
            };
            let w = writes_of(true, compat, area);
            let top = 0x3000 + at as u64 + 7;
            assert_eq!(w.len(), 3, "compat {compat}");
            assert_eq!(w[0], (top, vec![(flagged >> 56) as u8]));
            assert_eq!(w[1].0, 0x3000);
            assert_eq!(w[1].1[at..at + 8], flagged.to_le_bytes(), "compat {compat}");
            assert_eq!(w[2], (top, vec![(entry >> 56) as u8]));
        }
    }

    #[test]
    fn the_flag_byte_follows_an_area_across_a_page() {
        // 10 bytes in the first page: the top byte (offset 15) is in the
        // second.
        let area = Area {
            first: 0x3ff6,
            first_len: 10,
            second: Some(0x9000),
        };
        let w = writes_of(true, false, area);
        assert_eq!(w[0].0, 0x9000 + 5);
        assert_eq!(w.last().map(|x| x.0), Some(0x9000 + 5));
    }
}
