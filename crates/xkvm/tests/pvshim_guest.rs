//! A PV kernel booted through Xen 4.17's own PV shim (`type = "pvh"`,
//! `pvshim = 1`): `scripts/pvshim-guest.sh` fetches Debian's `xen-shim` and
//! GRUB's 64-bit Xen PV build and boots them with this xkvm binary. The
//! test asks for the script's "shim" stage: the shim comes up on xkvm (its
//! console, memory map, shared info, vcpu_info, upcall vector, HVM params,
//! event channels), builds the PV domain from module 0 and enters the PV
//! kernel. The PV kernel's own output (the "kernel" stage) needs a host
//! with VMX/SVM (docs/pvshim.md). Slow without hardware virtualization
//! (about two minutes: the shim's CPL0 code is emulated), so it is ignored
//! by default:
//!
//! ```sh
//! cargo test --release -p xkvm --test pvshim_guest -- --ignored
//! ```
//!
//! Skips without /dev/kvm unless CI=true.

mod common;

use common::kvm_usable;
use std::path::Path;
use std::process::Command;

#[test]
#[ignore = "boots Xen's PV shim: minutes on hosts without VMX/SVM"]
fn xens_pv_shim_boots_builds_the_pv_domain_and_enters_the_pv_kernel() {
    if !kvm_usable("pvshim_guest") {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(repo.join("scripts/pvshim-guest.sh"))
        .env("XKVM", env!("CARGO_BIN_EXE_xkvm"))
        .env("PVSHIM_GUEST_DIR", dir.path())
        .env("PVSHIM_STAGE", "shim")
        .env_remove("RUST_LOG")
        .output()
        .expect("running scripts/pvshim-guest.sh");
    let console = std::fs::read_to_string(dir.path().join("console.log")).unwrap_or_default();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pvshim-guest.sh failed ({}):\n{log}\nconsole:\n{console}",
        out.status
    );
    // The shim itself, on xkvm's console_io: the PV domain built from
    // module 0, then the hand-over to the PV kernel.
    let built = console.find("Building a PV Dom");
    let entered = console.find("init memory");
    assert!(
        matches!((built, entered), (Some(b), Some(e)) if b < e),
        "console:\n{console}"
    );
    assert!(
        console.contains("Dom0 kernel: 64-bit"),
        "console:\n{console}"
    );
}
