//! `HYPERVISOR_vcpu_op` (Xen's `common/domain.c` `do_vcpu_op`, x86's
//! `arch_do_vcpu_op`): vCPU bring-up (`initialise`/`up`/`down`/`is_up`),
//! the guest areas (`vcpu_info`, runstate, secondary time), runstate
//! queries and the singleshot/periodic timers.

use std::sync::atomic::Ordering;
use std::time::Duration;

use xen_abi::vcpu::*;
use xen_abi::xen::{vcpu_info_offsets as vio, HYPERVISOR_VCPU_OP, VCPU_INFO_SIZE};

use super::Call;
use crate::guest::Gva;
use crate::platform::{Segments32, VcpuStart};
use crate::types::{Errno, Gfn, HcResult};
use crate::vcpu::Area;

/// Xen's `STIME_DELTA_MAX`.
const STIME_DELTA_MAX: u64 = u64::MAX >> 2;
/// Xen refuses periodic timers faster than 1 ms.
const MIN_PERIOD_NS: u64 = 1_000_000;

pub fn vcpu_op(c: &mut Call<'_>) -> HcResult {
    let cmd = c.args[0];
    let vcpuid = c.args[1] as u32;
    let arg = c.args[2];
    if vcpuid >= c.d.config.max_vcpus.max(1) {
        return Err(Errno::ENOENT);
    }
    let me = c.vcpu_id;
    match cmd {
        VCPUOP_REGISTER_VCPU_INFO => register_vcpu_info(c, vcpuid, arg),
        VCPUOP_INITIALISE => initialise(c, vcpuid, arg),
        VCPUOP_UP => up(c, vcpuid),
        VCPUOP_DOWN => down(c, vcpuid),
        VCPUOP_IS_UP => Ok(i64::from(c.d.vcpu_state(vcpuid).is_some_and(|v| v.up))),
        VCPUOP_GET_RUNSTATE_INFO => {
            let now = c.d.platform.system_time_ns();
            let mut rs =
                c.d.vcpu_state(vcpuid)
                    .map(|v| v.runstate)
                    .ok_or(Errno::ENOENT)?;
            // vcpu_runstate_get: the current state's time runs to now.
            let entry = rs.entry_ns;
            if let Some(t) = rs.time.get_mut(rs.state as usize) {
                *t = t.saturating_add(now.saturating_sub(entry));
            }
            if c.compat() {
                c.g.write(arg, &rs.info_compat())?;
            } else {
                c.g.write(arg, &rs.info())?;
            }
            Ok(0)
        }
        VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => {
            let gva = read_area_handle(c, arg)?;
            let size = if c.compat() { 44 } else { 48 };
            // Xen accepts any address (a bad one is simply not updated).
            let area = if gva == 0 {
                None
            } else {
                translate_area(c, gva, size)
            };
            let compat = c.compat();
            let rs = {
                let mut v = c.d.vcpu_state(vcpuid).ok_or(Errno::ENOENT)?;
                v.runstate_area = area.map(|a| (a, compat));
                v.runstate
            };
            if let (Some(a), true) = (area, vcpuid == me) {
                c.d.write_runstate(a, compat, &rs);
            }
            Ok(0)
        }
        VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA => {
            let gva = read_area_handle(c, arg)?;
            let area = if gva == 0 {
                None
            } else {
                translate_area(c, gva, 32)
            };
            if let Some(mut v) = c.d.vcpu_state(vcpuid) {
                v.time_area = area;
            }
            c.d.update_time_area(vcpuid);
            Ok(0)
        }
        VCPUOP_SET_SINGLESHOT_TIMER => {
            if vcpuid != me {
                return Err(Errno::EINVAL);
            }
            let (timeout, flags) = if c.compat() {
                let s: VcpuSetSingleshotTimerCompat = c.g.read(arg)?;
                (
                    u64::from(s.timeout_abs_ns[0]) | (u64::from(s.timeout_abs_ns[1]) << 32),
                    s.flags,
                )
            } else {
                let s: VcpuSetSingleshotTimer = c.g.read(arg)?;
                (s.timeout_abs_ns, s.flags)
            };
            let now = c.d.platform.system_time_ns();
            if flags & VCPU_SSHOTTMR_FUTURE != 0 && (timeout as i64) < (now as i64) {
                return Err(Errno(xen_abi::errno::ETIME));
            }
            // A deadline in the past fires at once (set_timer).
            c.d.arm_singleshot(me, timeout, now);
            Ok(0)
        }
        VCPUOP_STOP_SINGLESHOT_TIMER => {
            if vcpuid != me {
                return Err(Errno::EINVAL);
            }
            c.d.timers.set_singleshot(&c.d.me, me, None);
            Ok(0)
        }
        VCPUOP_SET_PERIODIC_TIMER => {
            let s: VcpuSetPeriodicTimer = c.g.read(arg)?;
            if s.period_ns < MIN_PERIOD_NS || s.period_ns > STIME_DELTA_MAX {
                return Err(Errno::EINVAL);
            }
            c.d.timers
                .set_periodic(&c.d.me, vcpuid, Some(Duration::from_nanos(s.period_ns)));
            Ok(0)
        }
        VCPUOP_STOP_PERIODIC_TIMER => {
            c.d.timers.set_periodic(&c.d.me, vcpuid, None);
            Ok(0)
        }
        // Only for the hardware domain's pinned vCPUs (arch_do_vcpu_op).
        VCPUOP_GET_PHYSID => Err(Errno::EINVAL),
        _ => {
            c.d.warn_once(HYPERVISOR_VCPU_OP, cmd, "vcpu_op");
            Err(Errno::ENOSYS)
        }
    }
}

/// The `addr` handle of `vcpu_register_{runstate,time}_memory_area`.
fn read_area_handle(c: &mut Call<'_>, arg: u64) -> Result<Gva, Errno> {
    if c.compat() {
        let a: u32 = c.g.read(arg)?;
        Ok(u64::from(a))
    } else {
        let a: u64 = c.g.read(arg)?;
        Ok(a)
    }
}

/// Translates a guest area of `size` bytes at `gva` (may cross a page).
fn translate_area(c: &mut Call<'_>, gva: Gva, size: usize) -> Option<Area> {
    let page = xen_abi::PAGE_SIZE as u64;
    let first = c.g.vcpu.translate(gva).ok()?;
    let first_len = ((page - gva % page) as usize).min(size);
    let second = if first_len < size {
        Some(
            c.g.vcpu
                .translate(gva.checked_add(first_len as u64)?)
                .ok()?,
        )
    } else {
        None
    };
    Some(Area {
        first,
        first_len,
        second,
    })
}

/// `VCPUOP_initialise` for an HVM vCPU (`arch_set_info_hvm_guest`).
fn initialise(c: &mut Call<'_>, vcpu: u32, arg: u64) -> HcResult {
    let mut raw = [0u8; 128];
    c.g.read_bytes(arg, &mut raw)?;
    let start = parse_hvm_context(&raw)?;
    let mut v = c.d.vcpu_state(vcpu).ok_or(Errno::ENOENT)?;
    if v.initialised {
        return Err(Errno::EEXIST);
    }
    v.initialised = true;
    v.pending_start = Some(start);
    Ok(0)
}

fn up(c: &mut Call<'_>, vcpu: u32) -> HcResult {
    let start = {
        let mut v = c.d.vcpu_state(vcpu).ok_or(Errno::ENOENT)?;
        if !v.initialised {
            return Err(Errno::EINVAL);
        }
        if v.up {
            return Ok(0);
        }
        v.up = true;
        v.pending_start.take()
    };
    if !c.d.platform.vcpu_up(vcpu, start) {
        let mut v = c.d.vcpu_state(vcpu).ok_or(Errno::ENOENT)?;
        v.up = false;
        v.pending_start = start;
        return Err(Errno::EINVAL);
    }
    c.d.set_runstate(vcpu, RUNSTATE_RUNNABLE);
    Ok(0)
}

fn down(c: &mut Call<'_>, vcpu: u32) -> HcResult {
    let others_up = (0..c.d.config.max_vcpus.max(1))
        .filter(|i| *i != vcpu)
        .any(|i| c.d.vcpu_state(i).is_some_and(|v| v.up));
    if !others_up {
        // The last vCPU going down powers the domain off.
        c.d.platform
            .shutdown(crate::platform::ShutdownReason::Poweroff);
        return Ok(0);
    }
    let was_up = {
        let mut v = c.d.vcpu_state(vcpu).ok_or(Errno::ENOENT)?;
        std::mem::replace(&mut v.up, false)
    };
    if was_up {
        c.d.timers.stop_all(&c.d.me, vcpu);
        c.d.set_runstate(vcpu, RUNSTATE_OFFLINE);
        c.d.platform.vcpu_down(vcpu);
        c.d.wake_vcpu(vcpu);
    }
    Ok(0)
}

fn u32_at(raw: &[u8], off: usize) -> u32 {
    raw.get(off..off + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0)
}

fn u64_at(raw: &[u8], off: usize) -> u64 {
    raw.get(off..off + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

fn u16_at(raw: &[u8], off: usize) -> u16 {
    raw.get(off..off + 2)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_le_bytes)
        .unwrap_or(0)
}

const CR0_PE: u64 = 1;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Parses and checks `struct vcpu_hvm_context` (same layout in both ABIs).
pub fn parse_hvm_context(raw: &[u8; 128]) -> Result<VcpuStart, Errno> {
    let mode = u32_at(raw, 0);
    if u32_at(raw, 4) != 0 {
        return Err(Errno::EINVAL);
    }
    let r = &raw[8..];
    match mode {
        // VCPU_HVM_MODE_32B
        0 => {
            if u32_at(r, 52) != 0 || r[114..120].iter().any(|b| *b != 0) {
                return Err(Errno::EINVAL);
            }
            let mut s = VcpuStart {
                long_mode: false,
                ..Default::default()
            };
            for i in 0..8 {
                s.gprs[i] = u64::from(u32_at(r, 4 * i));
            }
            s.rip = u64::from(u32_at(r, 32));
            s.rflags = u64::from(u32_at(r, 36));
            s.cr0 = u64::from(u32_at(r, 40));
            s.cr3 = u64::from(u32_at(r, 44));
            s.cr4 = u64::from(u32_at(r, 48));
            s.efer = u64_at(r, 56);
            let mut seg = Segments32::default();
            for i in 0..5 {
                seg.base[i] = u32_at(r, 64 + 4 * i);
                seg.limit[i] = u32_at(r, 84 + 4 * i);
                seg.ar[i] = u16_at(r, 104 + 2 * i);
            }
            // check_segment: CS must be a present code segment, SS a
            // present writable data segment, TR a present busy TSS.
            let present = |ar: u16| ar & 0x80 != 0;
            let (cs, ss, tr) = (seg.ar[0], seg.ar[2], seg.ar[4]);
            if !present(cs) || cs & 0x18 != 0x18 {
                return Err(Errno::EINVAL);
            }
            if !present(ss) || ss & 0x1a != 0x12 {
                return Err(Errno::EINVAL);
            }
            if !present(tr) || tr & 0x1f != 0x0b {
                return Err(Errno::EINVAL);
            }
            if s.cr0 & CR0_PE == 0 || s.efer & EFER_LME != 0 {
                return Err(Errno::EINVAL);
            }
            s.segments = Some(seg);
            Ok(s)
        }
        // VCPU_HVM_MODE_64B
        1 => {
            let mut s = VcpuStart {
                long_mode: true,
                ..Default::default()
            };
            for i in 0..8 {
                s.gprs[i] = u64_at(r, 8 * i);
            }
            s.rip = u64_at(r, 64);
            s.rflags = u64_at(r, 72);
            s.cr0 = u64_at(r, 80);
            s.cr3 = u64_at(r, 88);
            s.cr4 = u64_at(r, 96);
            s.efer = u64_at(r, 104);
            let canonical = ((s.rip as i64) << 16 >> 16) as u64 == s.rip;
            if !canonical
                || s.cr0 & (CR0_PG | CR0_PE) != (CR0_PG | CR0_PE)
                || s.cr4 & CR4_PAE == 0
                || s.efer & EFER_LME == 0
            {
                return Err(Errno::EINVAL);
            }
            s.efer |= EFER_LMA;
            Ok(s)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// Moves `vcpu`'s `vcpu_info` into guest RAM (Xen's `map_vcpu_info`):
/// copies the current contents, then forces a full rescan (all selector
/// bits and `evtchn_upcall_pending` set) so no event is lost in the move.
fn register_vcpu_info(c: &mut Call<'_>, vcpu: u32, arg: u64) -> HcResult {
    let info: VcpuRegisterVcpuInfo = c.g.read(arg)?;
    if u64::from(info.offset) > (xen_abi::PAGE_SIZE - VCPU_INFO_SIZE) as u64 {
        return Err(Errno::EINVAL);
    }
    // Event bits are updated with atomics, which need natural alignment
    // (newer Xen refuses a misaligned vcpu_info too).
    if info.offset % 8 != 0 {
        return Err(Errno::EINVAL);
    }
    let base = Gfn::parse(info.mfn)?.gpa().ok_or(Errno::EINVAL)?;
    let new = base + u64::from(info.offset);
    let mem = &*c.d.mem;
    let (old, compat) = {
        let st = c.d.state();
        if st.vcpu_info.get(vcpu as usize).is_some_and(|v| v.is_some()) {
            return Err(Errno::EINVAL);
        }
        (st.vcpu_info_gpa(vcpu), st.compat)
    };
    let mut contents = [0u8; VCPU_INFO_SIZE];
    if let Some(old) = old {
        mem.read(old, &mut contents).map_err(|_| Errno::EINVAL)?;
    }
    // The target must be guest memory (Xen: get_page_from_gfn fails → -EINVAL).
    mem.write(new, &contents).map_err(|_| Errno::EINVAL)?;
    let sel = if compat {
        vio::PENDING_SEL_COMPAT
    } else {
        vio::PENDING_SEL
    };
    let sel_words = if compat { 1 } else { 2 };
    for w in 0..sel_words {
        mem.atomic_u32(new + sel as u64 + 4 * w)
            .map_err(|_| Errno::EINVAL)?
            .store(u32::MAX, Ordering::SeqCst);
    }
    mem.atomic_u8(new + vio::UPCALL_PENDING as u64)
        .map_err(|_| Errno::EINVAL)?
        .store(1, Ordering::SeqCst);
    if let Some(slot) = c.d.state().vcpu_info.get_mut(vcpu as usize) {
        *slot = Some(new);
    }
    c.d.platform.set_pvclock_area(vcpu, new + vio::TIME as u64);
    c.d.raise_upcall(vcpu);
    Ok(0)
}
