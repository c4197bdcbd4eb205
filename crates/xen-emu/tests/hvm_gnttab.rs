//! `hvm_op` params and upcall vector; `grant_table_op`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod common;
use common::*;
use xen_abi::errno::*;
use xen_abi::grant_table::*;
use xen_abi::hvm::hvm_op::*;
use xen_abi::hvm::params::*;
use xen_abi::xen::{HYPERVISOR_GRANT_TABLE_OP as GT, HYPERVISOR_HVM_OP as HO};
use xen_abi::DOMID_SELF;
use xen_emu::DomainConfig;

fn get(t: &mut H, index: u32) -> (i64, u64) {
    t.mem.put(
        ARG,
        &XenHvmParam {
            domid: DOMID_SELF,
            pad: 0,
            index,
            value: 0xdead,
        },
    );
    let r = t.call(HO, &[HVMOP_GET_PARAM, ARG]);
    (r, t.mem.get::<XenHvmParam>(ARG).value)
}

fn set(t: &mut H, index: u32, value: u64) -> i64 {
    t.mem.put(
        ARG,
        &XenHvmParam {
            domid: DOMID_SELF,
            pad: 0,
            index,
            value,
        },
    );
    t.call(HO, &[HVMOP_SET_PARAM, ARG])
}

#[test]
fn guest_reads_store_and_console_params_preset_by_vmm() {
    let mut t = h();
    t.d.set_hvm_param(HVM_PARAM_STORE_PFN, 0xfeffc).unwrap();
    t.d.set_hvm_param(HVM_PARAM_STORE_EVTCHN, 2).unwrap();
    t.d.set_hvm_param(HVM_PARAM_CONSOLE_PFN, 0xfeffb).unwrap();
    t.d.set_hvm_param(HVM_PARAM_CONSOLE_EVTCHN, 1).unwrap();
    assert_eq!(get(&mut t, HVM_PARAM_STORE_PFN), (0, 0xfeffc));
    assert_eq!(get(&mut t, HVM_PARAM_STORE_EVTCHN), (0, 2));
    assert_eq!(get(&mut t, HVM_PARAM_CONSOLE_PFN), (0, 0xfeffb));
    assert_eq!(get(&mut t, HVM_PARAM_CONSOLE_EVTCHN), (0, 1));
    assert!(t.d.set_hvm_param(HVM_NR_PARAMS, 1).is_err());
}

#[test]
fn timer_mode_comes_from_config_and_is_toolstack_only() {
    let t = h_with(
        DomainConfig {
            timer_mode: HVMPTM_ONE_MISSED_TICK_PENDING,
            ..config()
        },
        xen_emu::guest::GuestMode::Long64,
    );
    assert_eq!(t.d.hvm_param(HVM_PARAM_TIMER_MODE), Some(3));
    let mut t = t;
    assert_eq!(get(&mut t, HVM_PARAM_TIMER_MODE).0, -EPERM);
    assert_eq!(set(&mut t, HVM_PARAM_TIMER_MODE, 0), -EPERM);
}

#[test]
fn guest_may_not_write_pfn_params_but_may_write_callback() {
    let mut t = h();
    assert_eq!(set(&mut t, HVM_PARAM_STORE_PFN, 5), -EPERM);
    assert_eq!(set(&mut t, HVM_PARAM_CONSOLE_PFN, 5), -EPERM);
    let via = (HVM_PARAM_CALLBACK_TYPE_VECTOR << 56) | 0xf3;
    assert_eq!(set(&mut t, HVM_PARAM_CALLBACK_IRQ, via), 0);
    assert_eq!(get(&mut t, HVM_PARAM_CALLBACK_IRQ), (0, via));
    assert_eq!(set(&mut t, HVM_PARAM_STORE_EVTCHN, 9), 0);
}

#[test]
fn param_errors() {
    let mut t = h();
    assert_eq!(get(&mut t, HVM_NR_PARAMS).0, -EINVAL);
    assert_eq!(set(&mut t, 1000, 0), -EINVAL);
    assert_eq!(get(&mut t, HVM_PARAM_PAE_ENABLED).0, -EOPNOTSUPP);
    assert_eq!(set(&mut t, HVM_PARAM_X87_FIP_WIDTH, 3), -EINVAL);
    assert_eq!(set(&mut t, HVM_PARAM_X87_FIP_WIDTH, 4), 0);
    t.mem.put(
        ARG,
        &XenHvmParam {
            domid: 0,
            pad: 0,
            index: 1,
            value: 0,
        },
    );
    assert_eq!(t.call(HO, &[HVMOP_GET_PARAM, ARG]), -EPERM);
    t.mem.put(
        ARG,
        &XenHvmParam {
            domid: 42,
            pad: 0,
            index: 1,
            value: 0,
        },
    );
    assert_eq!(t.call(HO, &[HVMOP_GET_PARAM, ARG]), -ESRCH);
    assert_eq!(t.call(HO, &[HVMOP_GET_PARAM, UNMAPPED]), -EFAULT);
    assert_eq!(t.call(HO, &[99, ARG]), -ENOSYS);
}

#[test]
fn upcall_vector_checks_vector_and_vcpu() {
    let mut t = h();
    t.mem.put(
        ARG,
        &XenHvmEvtchnUpcallVector {
            vcpu: 0,
            vector: 0x0f,
            pad: [0; 3],
        },
    );
    assert_eq!(t.call(HO, &[HVMOP_SET_EVTCHN_UPCALL_VECTOR, ARG]), -EINVAL);
    t.mem.put(
        ARG,
        &XenHvmEvtchnUpcallVector {
            vcpu: 7,
            vector: 0xf3,
            pad: [0; 3],
        },
    );
    assert_eq!(t.call(HO, &[HVMOP_SET_EVTCHN_UPCALL_VECTOR, ARG]), -ENOENT);
    t.mem.put(
        ARG,
        &XenHvmEvtchnUpcallVector {
            vcpu: 1,
            vector: 0xf3,
            pad: [0; 3],
        },
    );
    assert_eq!(t.call(HO, &[HVMOP_SET_EVTCHN_UPCALL_VECTOR, ARG]), 0);
}

#[test]
fn get_time_is_platform_system_time() {
    let mut t = h();
    t.plat
        .now_ns
        .store(123_456_789, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(t.call(HO, &[HVMOP_GET_TIME, ARG]), 0);
    assert_eq!(t.mem.get::<u64>(ARG), 123_456_789);
}

#[test]
fn query_size_reports_one_of_max_frames() {
    let mut t = h();
    t.mem.put(
        ARG,
        &GnttabQuerySize {
            dom: DOMID_SELF,
            ..Default::default()
        },
    );
    assert_eq!(t.call(GT, &[GNTTABOP_QUERY_SIZE, ARG, 1]), 0);
    let q: GnttabQuerySize = t.mem.get(ARG);
    assert_eq!(
        (q.nr_frames, q.max_nr_frames, q.status),
        (1, 64, GNTST_OKAY)
    );
    t.mem.put(
        ARG,
        &GnttabQuerySize {
            dom: 33,
            ..Default::default()
        },
    );
    assert_eq!(t.call(GT, &[GNTTABOP_QUERY_SIZE, ARG, 1]), 0);
    assert_eq!(t.mem.get::<GnttabQuerySize>(ARG).status, GNTST_BAD_DOMAIN);
    assert_eq!(t.call(GT, &[GNTTABOP_QUERY_SIZE, ARG, 2]), -EINVAL);
    assert_eq!(t.call(GT, &[GNTTABOP_QUERY_SIZE, UNMAPPED, 1]), -EFAULT);
}

#[test]
fn setup_table_grows_and_lists_frames() {
    let mut t = h();
    t.mem.put(
        ARG,
        &xen_abi::memory::XenAddToPhysmap {
            domid: DOMID_SELF,
            size: 0,
            space: 1,
            idx: 0,
            gpfn: 0x900,
        },
    );
    assert_eq!(t.call(xen_abi::xen::HYPERVISOR_MEMORY_OP, &[7, ARG]), 0);
    t.mem.put(
        ARG,
        &GnttabSetupTable {
            dom: DOMID_SELF,
            nr_frames: 4,
            frame_list: BUF,
            ..Default::default()
        },
    );
    assert_eq!(t.call(GT, &[GNTTABOP_SETUP_TABLE, ARG, 1]), 0);
    assert_eq!(t.mem.get::<GnttabSetupTable>(ARG).status, GNTST_OKAY);
    let frames: [u64; 4] = t.mem.get(BUF);
    assert_eq!(frames, [0x900, u64::MAX, u64::MAX, u64::MAX]);
    t.mem.put(
        ARG,
        &GnttabQuerySize {
            dom: DOMID_SELF,
            ..Default::default()
        },
    );
    assert_eq!(t.call(GT, &[GNTTABOP_QUERY_SIZE, ARG, 1]), 0);
    assert_eq!(t.mem.get::<GnttabQuerySize>(ARG).nr_frames, 4);
}

#[test]
fn setup_table_errors_use_status() {
    let mut t = h();
    t.mem.put(
        ARG,
        &GnttabSetupTable {
            dom: DOMID_SELF,
            nr_frames: 65,
            frame_list: BUF,
            ..Default::default()
        },
    );
    assert_eq!(t.call(GT, &[GNTTABOP_SETUP_TABLE, ARG, 1]), 0);
    assert_eq!(
        t.mem.get::<GnttabSetupTable>(ARG).status,
        GNTST_GENERAL_ERROR
    );
    t.mem.put(
        ARG,
        &GnttabSetupTable {
            dom: DOMID_SELF,
            nr_frames: 1,
            frame_list: UNMAPPED,
            ..Default::default()
        },
    );
    assert_eq!(t.call(GT, &[GNTTABOP_SETUP_TABLE, ARG, 1]), 0);
    assert_eq!(
        t.mem.get::<GnttabSetupTable>(ARG).status,
        GNTST_BAD_VIRT_ADDR
    );
    t.mem.put(
        ARG,
        &GnttabSetupTable {
            dom: 0,
            nr_frames: 1,
            frame_list: BUF,
            ..Default::default()
        },
    );
    assert_eq!(t.call(GT, &[GNTTABOP_SETUP_TABLE, ARG, 1]), 0);
    assert_eq!(
        t.mem.get::<GnttabSetupTable>(ARG).status,
        GNTST_PERMISSION_DENIED
    );
    assert_eq!(t.call(GT, &[GNTTABOP_SETUP_TABLE, ARG, 0]), -EINVAL);
    assert_eq!(
        t.call(GT, &[GNTTABOP_SETUP_TABLE, ARG, u32::MAX as u64]),
        -EINVAL
    );
}

#[test]
fn setup_table_compat_writes_32bit_frames() {
    let mut t = h32();
    t.mem.put(BUF, &[0xffu8; 16]);
    t.mem.put(
        ARG,
        &GnttabSetupTableCompat {
            dom: DOMID_SELF,
            nr_frames: 2,
            frame_list: BUF as u32,
            ..Default::default()
        },
    );
    assert_eq!(t.call(GT, &[GNTTABOP_SETUP_TABLE, ARG, 1]), 0);
    assert_eq!(t.mem.get::<GnttabSetupTableCompat>(ARG).status, GNTST_OKAY);
    assert_eq!(t.mem.get::<[u32; 2]>(BUF), [u32::MAX, u32::MAX]);
    assert_eq!(t.mem.get::<u64>(BUF + 8), u64::MAX, "nothing past 2 x u32");
}

#[test]
fn versions() {
    let mut t = h();
    t.mem.put(
        ARG,
        &GnttabGetVersion {
            dom: DOMID_SELF,
            pad: 0,
            version: 0,
        },
    );
    assert_eq!(t.call(GT, &[GNTTABOP_GET_VERSION, ARG, 1]), 0);
    assert_eq!(t.mem.get::<GnttabGetVersion>(ARG).version, 1);
    t.mem.put(ARG, &GnttabSetVersion { version: 2 });
    assert_eq!(t.call(GT, &[GNTTABOP_SET_VERSION, ARG, 1]), -ENOSYS);
    assert_eq!(
        t.mem.get::<GnttabSetVersion>(ARG).version,
        1,
        "reports version in force"
    );
    t.mem.put(ARG, &GnttabSetVersion { version: 3 });
    assert_eq!(t.call(GT, &[GNTTABOP_SET_VERSION, ARG, 1]), -EINVAL);
    t.mem.put(ARG, &GnttabSetVersion { version: 1 });
    assert_eq!(t.call(GT, &[GNTTABOP_SET_VERSION, ARG, 1]), 0);
    t.mem.put(
        ARG,
        &GnttabGetVersion {
            dom: 99,
            pad: 0,
            version: 0,
        },
    );
    assert_eq!(t.call(GT, &[GNTTABOP_GET_VERSION, ARG, 1]), -ESRCH);
    // The guest's own map_grant_ref answers per op (flags 0: bad_gntref).
    t.mem.put(ARG, &[0u8; 32]);
    assert_eq!(t.call(GT, &[GNTTABOP_MAP_GRANT_REF, ARG, 1]), 0);
    assert_eq!(
        t.mem.get::<[u8; 2]>(ARG + 18),
        GNTST_BAD_GNTREF.to_le_bytes()
    );
    assert_eq!(t.call(GT, &[77, ARG, 1]), -ENOSYS);
}
