//! What the hand-assembled-guest tests (`kvm_*.rs`) share: the /dev/kvm
//! gate, a console sink the test can read back, and writing a kernel image.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Whether /dev/kvm can be used. Without it the test skips with a printed
/// reason, except under CI=true, where that is a failure.
pub fn kvm_available() -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true but /dev/kvm is unusable: {e}");
            }
            eprintln!("skipping: /dev/kvm is unusable ({e})");
            false
        }
    }
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
