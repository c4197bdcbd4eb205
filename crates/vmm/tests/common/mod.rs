//! What the hand-assembled-guest tests (`kvm_*.rs`) share: the /dev/kvm
//! gate, a console sink the test can read back, and writing a kernel image.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub mod guest_run;

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Says why `test` cannot run here and skips it, except under CI=true,
/// where that is a failure.
pub fn skip(test: &str, why: &str) {
    if ci() {
        panic!("{test}: {why}, and CI=true: this test must run");
    }
    eprintln!("{test}: skipped: {why}");
}

/// Whether /dev/kvm can be used; otherwise `test` is skipped ([`skip`]).
pub fn kvm_usable(test: &str) -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            skip(test, &format!("/dev/kvm is unusable ({e})"));
            false
        }
    }
}

/// [`kvm_usable`] for the hand-assembled guests.
pub fn kvm_available() -> bool {
    kvm_usable("kvm test")
}

/// A console sink whose bytes the test reads after the domain ends.
#[derive(Clone, Default)]
pub struct Buf(pub Arc<Mutex<Vec<u8>>>);

impl Buf {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::ErrorKind::Other)?
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `elf` as the kernel file in `dir`.
pub fn write_kernel(dir: &tempfile::TempDir, elf: &[u8]) -> PathBuf {
    let p = dir.path().join("kernel");
    std::fs::write(&p, elf).expect("write kernel");
    p
}
