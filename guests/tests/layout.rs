//! The guests' own Xen header (`rt/xen.h`) must lay structs out exactly as
//! Xen's public headers do, for 64- and 32-bit guests: `layout.c` lists the
//! offsets and sizes, compiled once per header set and compared byte for byte.
//! Xen's headers come from Debian's libxen-dev (`scripts/debian-deps.sh`,
//! env `XKVM_DEBS`); without them the test skips, except under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn xen_include_dir() -> Option<PathBuf> {
    let root = match std::env::var_os("XKVM_DEBS") {
        Some(root) => PathBuf::from(root),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debian/root"),
    };
    let inc = root.join("usr/include");
    inc.join("xen/xen.h").is_file().then_some(inc)
}

/// Compiles `layout.c` and returns its `.rodata` bytes.
fn layout_bytes(bits: u32, xen_include: Option<&Path>, out: &Path) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let obj = out.with_extension("o");
    let mut cc = Command::new("gcc");
    cc.arg(format!("-m{bits}"))
        .args(["-ffreestanding", "-c", "-o"])
        .arg(&obj);
    match xen_include {
        Some(inc) => cc
            .arg("-DXEN_PUBLIC_HEADERS")
            .arg("-D__XEN_INTERFACE_VERSION__=0x00040d00")
            .arg("-I")
            .arg(inc),
        None => cc.arg("-I").arg(dir.join("rt")),
    };
    cc.arg(dir.join("tests/layout.c"));
    let status = cc.status().expect("run gcc");
    assert!(status.success(), "{cc:?} failed");
    let status = Command::new("objcopy")
        .args(["-O", "binary", "-j", ".rodata"])
        .arg(&obj)
        .arg(out)
        .status()
        .expect("run objcopy");
    assert!(status.success(), "objcopy {} failed", obj.display());
    std::fs::read(out).expect("read the extracted .rodata")
}

#[test]
fn guest_xen_header_matches_xens_public_headers() {
    let Some(inc) = xen_include_dir() else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "Xen's public headers are missing under CI=true; run scripts/debian-deps.sh"
        );
        eprintln!("skipped: no Xen public headers (run scripts/debian-deps.sh or set XKVM_DEBS)");
        return;
    };
    let out = std::env::temp_dir().join(format!("xkvm-guests-layout-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("create a temp dir");
    for bits in [64, 32] {
        let ours = layout_bytes(bits, None, &out.join(format!("ours{bits}.bin")));
        let xens = layout_bytes(bits, Some(&inc), &out.join(format!("xen{bits}.bin")));
        assert!(!ours.is_empty(), "no layout data");
        let word = if bits == 64 { 8 } else { 4 };
        let differ: Vec<usize> = ours
            .chunks(word)
            .zip(xens.chunks(word))
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i)
            .collect();
        assert!(
            differ.is_empty() && ours.len() == xens.len(),
            "-m{bits}: layout.c entries {differ:?} differ"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
