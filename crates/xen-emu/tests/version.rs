//! `xen_version` and `console_io`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod common;
use common::*;
use xen_abi::errno::*;
use xen_abi::features::*;
use xen_abi::version::*;
use xen_abi::xen::{
    CONSOLEIO_READ, CONSOLEIO_WRITE, HYPERVISOR_CONSOLE_IO as CIO, HYPERVISOR_XEN_VERSION as XV,
};
use xen_emu::DomainConfig;

fn cstr(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.iter().position(|c| *c == 0).unwrap_or(b.len())]).into_owned()
}

#[test]
fn version_returns_configured_major_minor() {
    let mut t = h();
    assert_eq!(t.call(XV, &[XENVER_VERSION, 0]), (4 << 16) | 17);
    let mut t = h_with(
        DomainConfig {
            xen_version: (4, 5),
            ..config()
        },
        xen_emu::guest::GuestMode::Long64,
    );
    assert_eq!(t.call(XV, &[XENVER_VERSION, 0]), (4 << 16) | 5);
}

#[test]
fn string_sub_ops_fill_nul_terminated_buffers() {
    let mut t = h();
    assert_eq!(t.call(XV, &[XENVER_EXTRAVERSION, BUF]), 0);
    let b: [u8; 16] = t.mem.get(BUF);
    assert_eq!(cstr(&b), ".0");
    assert_eq!(t.call(XV, &[XENVER_CAPABILITIES, BUF]), 0);
    let b: [u8; 1024] = t.mem.get(BUF);
    assert!(cstr(&b).contains("hvm-3.0-x86_64"));
    assert_eq!(t.call(XV, &[XENVER_CHANGESET, BUF]), 0);
    assert_eq!(t.call(XV, &[XENVER_COMPILE_INFO, BUF]), 0);
    let ci: XenCompileInfo = t.mem.get(BUF);
    assert!(cstr(&ci.compiler).starts_with("gcc"));
    assert_eq!(t.call(XV, &[XENVER_COMMANDLINE, BUF]), 0);
    let b: [u8; 16] = t.mem.get(BUF);
    assert_eq!(cstr(&b), "<denied>");
}

#[test]
fn guest_handle_is_the_uuid() {
    let mut t = h();
    assert_eq!(t.call(XV, &[XENVER_GUEST_HANDLE, BUF]), 0);
    let b: [u8; 16] = t.mem.get(BUF);
    assert_eq!(&b, b"0123456789abcdef");
}

#[test]
fn platform_parameters_follow_guest_width() {
    let mut t = h();
    t.mem.put(BUF, &[0xffu8; 16]);
    assert_eq!(t.call(XV, &[XENVER_PLATFORM_PARAMETERS, BUF]), 0);
    assert_eq!(t.mem.get::<u64>(BUF), HYPERVISOR_VIRT_START);
    let mut t = h32();
    t.mem.put(BUF, &[0xffu8; 16]);
    assert_eq!(t.call(XV, &[XENVER_PLATFORM_PARAMETERS, BUF]), 0);
    assert_eq!(t.mem.get::<u32>(BUF), HYPERVISOR_COMPAT_VIRT_START);
    // Only 4 bytes written for a 32-bit guest.
    assert_eq!(t.mem.get::<u32>(BUF + 4), u32::MAX);
}

#[test]
fn get_features_reports_hvm_domu_bits_for_4_17() {
    let mut t = h();
    t.mem.put(
        ARG,
        &XenFeatureInfo {
            submap_idx: 0,
            submap: 0,
        },
    );
    assert_eq!(t.call(XV, &[XENVER_GET_FEATURES, ARG]), 0);
    let fi: XenFeatureInfo = t.mem.get(ARG);
    for bit in [
        XENFEAT_WRITABLE_PAGE_TABLES,
        XENFEAT_AUTO_TRANSLATED_PHYSMAP,
        XENFEAT_HVM_CALLBACK_VECTOR,
        XENFEAT_HVM_SAFE_PVCLOCK,
        XENFEAT_MEMORY_OP_VNODE_SUPPORTED,
        XENFEAT_NOT_DIRECT_MAPPED,
    ] {
        assert!(fi.submap & (1 << bit) != 0, "bit {bit}");
    }
    assert_eq!(fi.submap & (1 << XENFEAT_HVM_PIRQS), 0, "PVH has no PIRQs");
    assert_eq!(fi.submap & (1 << XENFEAT_DOM0), 0);
}

#[test]
fn get_features_bad_submap_is_einval() {
    let mut t = h();
    t.mem.put(
        ARG,
        &XenFeatureInfo {
            submap_idx: 1,
            submap: 0,
        },
    );
    assert_eq!(t.call(XV, &[XENVER_GET_FEATURES, ARG]), -EINVAL);
}

#[test]
fn pagesize_requires_null_handle() {
    let mut t = h();
    assert_eq!(t.call(XV, &[XENVER_PAGESIZE, 0]), 4096);
    assert_eq!(t.call(XV, &[XENVER_PAGESIZE, BUF]), -EINVAL);
}

#[test]
fn build_id_is_denied_to_domu() {
    let mut t = h();
    assert_eq!(t.call(XV, &[XENVER_BUILD_ID, 0]), -EPERM);
}

#[test]
fn bad_sub_op_is_enosys_and_bad_pointer_is_efault() {
    let mut t = h();
    assert_eq!(t.call(XV, &[11, BUF]), -ENOSYS);
    assert_eq!(t.call(XV, &[XENVER_EXTRAVERSION, UNMAPPED]), -EFAULT);
    assert_eq!(t.call(XV, &[XENVER_CAPABILITIES, BEYOND_RAM]), -EFAULT);
    assert_eq!(t.call(XV, &[XENVER_GET_FEATURES, UNMAPPED]), -EFAULT);
}

#[test]
fn console_write_reaches_platform_log() {
    let mut t = h();
    let msg = b"hello from the guest\n".repeat(20);
    t.mem.put(BUF, &msg[..]);
    assert_eq!(t.call(CIO, &[CONSOLEIO_WRITE, msg.len() as u64, BUF]), 0);
    assert_eq!(*t.plat.console.lock().unwrap(), msg);
}

#[test]
fn console_read_returns_nothing_and_bad_args_fail() {
    let mut t = h();
    assert_eq!(t.call(CIO, &[CONSOLEIO_READ, 16, BUF]), 0);
    assert_eq!(t.call(CIO, &[CONSOLEIO_WRITE, 16, UNMAPPED]), -EFAULT);
    assert_eq!(t.call(CIO, &[7, 16, BUF]), -ENOSYS);
}
