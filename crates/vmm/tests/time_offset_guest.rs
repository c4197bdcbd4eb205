//! `VmConfig::time_offset_seconds` (xl.cfg `rtc_timeoffset`/`localtime`)
//! on `/dev/kvm`: the `hypercalls` test guest prints the wallclock it reads
//! from shared_info, which must be the host's time plus the offset.
//! Skips without `/dev/kvm` (fails under `CI=true`), like `guests.rs`.

use vmm::{DomainExit, VmConfig};

mod common;
use common::guest_run::boot;
use common::kvm_usable;

fn guest_wallclock(offset: i32) -> (i64, i64) {
    let mut cfg = VmConfig::new("xkvm-test-time-offset", xkvm_guests::path("hypercalls"));
    cfg.memory_mib = 64;
    cfg.max_memory_mib = 80;
    cfg.max_grant_frames = 32;
    cfg.time_offset_seconds = offset;
    let run = boot("hypercalls", cfg, None);
    run.assert_exit(DomainExit::Poweroff);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // "wallclock version <v> sec <s>"
    let sec = run
        .value("wallclock version")
        .rsplit(' ')
        .next()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or_else(|| panic!("no wallclock seconds\n{}", run.report()));
    (sec, now)
}

#[test]
fn the_guest_reads_the_wallclock_shifted_by_the_time_offset() {
    if !kvm_usable("time_offset") {
        return;
    }
    let (sec, now) = guest_wallclock(86_400);
    assert!(
        (sec - (now + 86_400)).abs() < 30,
        "guest wallclock {sec}, host now {now}: not one day ahead"
    );
    let (sec, now) = guest_wallclock(0);
    assert!(
        (sec - now).abs() < 30,
        "guest wallclock {sec}, host now {now}"
    );
}
