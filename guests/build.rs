//! Builds every test guest with gcc into OUT_DIR and writes `guests.rs`, the
//! table `src/lib.rs` exposes. The guests are freestanding PVH kernels (see
//! `rt/entry.S`); the flags keep them to general registers because the
//! software KVM our tests run on cannot emulate SSE/x87 at CPL0.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One guest image: its name, the C file with `guest_main`, and 32 or 64 bit.
struct Guest {
    name: &'static str,
    source: &'static str,
    bits: u32,
}

const GUESTS: &[Guest] = &[
    Guest {
        name: "demo",
        source: "c/demo.c",
        bits: 64,
    },
    Guest {
        name: "demo32",
        source: "c/demo.c",
        bits: 32,
    },
    Guest {
        name: "startinfo",
        source: "c/startinfo.c",
        bits: 64,
    },
    Guest {
        name: "cpuid",
        source: "c/cpuid.c",
        bits: 64,
    },
    Guest {
        name: "hypercalls",
        source: "c/hypercalls.c",
        bits: 64,
    },
    Guest {
        name: "hypercalls32",
        source: "c/hypercalls.c",
        bits: 32,
    },
    Guest {
        name: "shutdown",
        source: "c/shutdown.c",
        bits: 64,
    },
    Guest {
        name: "console",
        source: "c/console.c",
        bits: 64,
    },
    Guest {
        name: "fault",
        source: "c/fault.c",
        bits: 64,
    },
    Guest {
        name: "xsshutdown",
        source: "c/xsshutdown.c",
        bits: 64,
    },
    Guest {
        name: "idle",
        source: "c/idle.c",
        bits: 64,
    },
    Guest {
        name: "blkfront",
        source: "c/blkfront.c",
        bits: 64,
    },
    Guest {
        name: "blkfront32",
        source: "c/blkfront.c",
        bits: 32,
    },
    Guest {
        name: "netfront",
        source: "c/netfront.c",
        bits: 64,
    },
    Guest {
        name: "evtchn",
        source: "c/evtchn.c",
        bits: 64,
    },
    Guest {
        name: "timers",
        source: "c/timers.c",
        bits: 64,
    },
    Guest {
        name: "smp",
        source: "c/smp.c",
        bits: 64,
    },
    Guest {
        name: "services",
        source: "c/services.c",
        bits: 64,
    },
    Guest {
        name: "gsicb",
        source: "c/gsicb.c",
        bits: 64,
    },
    Guest {
        name: "evtbench",
        source: "c/evtbench.c",
        bits: 64,
    },
    Guest {
        name: "hotplug",
        source: "c/hotplug.c",
        bits: 64,
    },
    Guest {
        name: "pirq",
        source: "c/pirq.c",
        bits: 64,
    },
    Guest {
        name: "gntmap",
        source: "c/gntmap.c",
        bits: 64,
    },
    Guest {
        name: "balloon",
        source: "c/balloon.c",
        bits: 64,
    },
    Guest {
        name: "preempt",
        source: "c/preempt.c",
        bits: 64,
    },
    Guest {
        name: "preempt32",
        source: "c/preempt.c",
        bits: 32,
    },
    Guest {
        name: "multicall",
        source: "c/multicall.c",
        bits: 64,
    },
    Guest {
        name: "multicall32",
        source: "c/multicall.c",
        bits: 32,
    },
];

const CFLAGS: &[&str] = &[
    "-ffreestanding",
    "-nostdlib",
    "-static",
    "-fno-pic",
    "-no-pie",
    "-mgeneral-regs-only",
    "-mno-red-zone",
    "-fno-stack-protector",
    // Keeps gcc from turning our own memset/memcpy loops into calls to themselves.
    "-fno-tree-loop-distribute-patterns",
    "-fno-asynchronous-unwind-tables",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Wl,--build-id=none",
    "-Wl,--no-warn-rwx-segments",
];

fn main() {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cc = env::var("XKVM_GUEST_CC").unwrap_or_else(|_| "gcc".to_owned());
    println!("cargo:rerun-if-changed=rt");
    println!("cargo:rerun-if-changed=c");
    println!("cargo:rerun-if-env-changed=XKVM_GUEST_CC");

    let mut table =
        String::from("/// Every guest this crate builds: (name, path of the ELF image).\n");
    table.push_str("pub const GUESTS: &[(&str, &str)] = &[\n");
    for guest in GUESTS {
        let image = out.join(guest.name);
        build(&cc, &manifest, guest, &image);
        let _ = writeln!(
            table,
            "    ({:?}, {:?}),",
            guest.name,
            image.display().to_string()
        );
    }
    table.push_str("];\n");
    std::fs::write(out.join("guests.rs"), table).expect("write guests.rs into OUT_DIR");
}

fn build(cc: &str, manifest: &Path, guest: &Guest, image: &Path) {
    let rt = manifest.join("rt");
    let mut cmd = Command::new(cc);
    cmd.args(CFLAGS)
        .arg(format!("-m{}", guest.bits))
        .arg(format!("-DGUEST_NAME=\"{}\"", guest.name))
        .arg("-I")
        .arg(&rt)
        .arg(format!("-Wl,-T,{}", rt.join("guest.ld").display()))
        .arg("-o")
        .arg(image)
        .arg(rt.join("entry.S"))
        .arg(rt.join("rt.c"))
        .arg(manifest.join(guest.source));
    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) => panic!(
            "cannot run `{cc}` to build the test guests ({e}); install gcc \
             (Debian: apt-get install gcc) or point XKVM_GUEST_CC at one"
        ),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "building test guest `{}` failed: {cmd:?}\n{stderr}",
        guest.name
    );
    // Compiler warnings are not fatal (a newer gcc may add some), but shown.
    for line in stderr.lines() {
        println!("cargo:warning={}: {line}", guest.name);
    }
}
