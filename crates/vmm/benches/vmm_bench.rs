//! VMM benchmarks (DESIGN.md testing tier 5; numbers go to
//! docs/performance.md, never into assertions). Run with
//! `cargo bench -p vmm --bench vmm_bench`; needs /dev/kvm.
//!
//! Measures, with hand-assembled 32-bit PVH guests:
//! - time from `run_domain` entry to the boot vCPU's first `KVM_RUN`;
//! - VMM memory overhead: peak RSS growth of this process while a domain
//!   runs (guest RAM is mapped lazily; the guest touches ~10 pages);
//! - the VMM's service time per `xen_version` hypercall (exit decoded to
//!   result written, as the vCPU loop measures it);
//! - the guest-visible round trip of a hypercall next to a bare port-I/O
//!   exit, from the run time of guests looping N times.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmm::elf::build::{image, NoteVia};
use vmm::{ConsoleIo, RunOutcome, VmConfig};

const BASE: u32 = 0x10_0000;
const HCALL_PAGE: u32 = 0x20_0000;
const REASON: u32 = 0x800;

#[derive(Clone, Copy)]
enum Body {
    /// `xen_version(XENVER_version, NULL)` N times.
    Hypercall,
    /// `out %al, $0x99` (no device there) N times.
    PortIo,
}

fn guest(body: Body, n: u32) -> Vec<u8> {
    let mut c: Vec<u8> = Vec::new();
    let imm = |c: &mut Vec<u8>, op: &[u8], v: u32| {
        c.extend_from_slice(op);
        c.extend_from_slice(&v.to_le_bytes());
    };
    let call = |c: &mut Vec<u8>, nr: u32| {
        let next = BASE + c.len() as u32 + 5;
        imm(c, &[0xe8], (HCALL_PAGE + nr * 32).wrapping_sub(next));
    };
    imm(&mut c, &[0xbc], 0x8_0000);
    imm(&mut c, &[0xb9], 0x4000_0000);
    imm(&mut c, &[0xb8], HCALL_PAGE);
    c.extend_from_slice(&[0x31, 0xd2, 0x0f, 0x30]);
    imm(&mut c, &[0xbd], n); // mov ebp, n
    c.extend_from_slice(&[0x85, 0xed]); // test ebp, ebp
    let jz_at = c.len();
    c.extend_from_slice(&[0x74, 0x00]); // jz done
    let top = c.len();
    match body {
        Body::Hypercall => {
            c.extend_from_slice(&[0x31, 0xdb, 0x31, 0xc9]); // xor ebx,ebx; xor ecx,ecx
            call(&mut c, 17);
        }
        Body::PortIo => c.extend_from_slice(&[0xe6, 0x99]),
    }
    c.push(0x4d); // dec ebp
    let rel = (top as i64 - (c.len() as i64 + 6)) as i32;
    c.extend_from_slice(&[0x0f, 0x85]); // jnz top
    c.extend_from_slice(&rel.to_le_bytes());
    let done = c.len();
    c[jz_at + 1] = (done - (jz_at + 2)) as u8;
    imm(&mut c, &[0xbb], 2);
    imm(&mut c, &[0xb9], BASE + REASON);
    call(&mut c, 29);
    c.extend_from_slice(&[0xf4, 0xeb, 0xfd]);
    c.resize(0x900, 0);
    c
}

fn run(kernel: &std::path::Path) -> (RunOutcome, Duration) {
    let t = Instant::now();
    let o = vmm::run_domain(
        VmConfig::new("bench", kernel),
        ConsoleIo::output_only(Box::new(std::io::sink())),
    )
    .expect("run_domain");
    (o, t.elapsed())
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn write_guest(dir: &std::path::Path, name: &str, body: Body, n: u32) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        image(
            false,
            u64::from(BASE),
            &guest(body, n),
            0,
            BASE,
            NoteVia::ProgramHeader,
        ),
    )
    .expect("write guest");
    p
}

fn main() {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        eprintln!("vmm_bench: /dev/kvm is unusable; nothing measured");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let empty = write_guest(d, "empty", Body::Hypercall, 0);
    const N: u32 = 20_000;
    let hcalls = write_guest(d, "hcalls", Body::Hypercall, N);
    let pio = write_guest(d, "pio", Body::PortIo, N);

    // Warm up (page cache, lazy statics).
    let _ = run(&empty);

    // Start-up and RSS.
    let mut first_entry = Vec::new();
    let mut total = Vec::new();
    for _ in 0..30 {
        let (o, t) = run(&empty);
        first_entry.push(o.stats.time_to_first_entry.as_secs_f64() * 1e3);
        total.push(t.as_secs_f64() * 1e3);
    }
    let base_rss = rss_kib();
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let _ = run(&hcalls);
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let rss_growth = peak.load(Ordering::Relaxed).saturating_sub(base_rss);

    // Hypercall service time and round trips.
    let mut service = Vec::new();
    let mut hc_rt = Vec::new();
    let mut pio_rt = Vec::new();
    for _ in 0..5 {
        let (_, t0) = run(&empty);
        let (o, th) = run(&hcalls);
        let (_, tp) = run(&pio);
        service.push(o.stats.hypercall_service_ns as f64 / o.stats.hypercalls.max(1) as f64);
        hc_rt.push((th.as_secs_f64() - t0.as_secs_f64()) * 1e6 / f64::from(N));
        pio_rt.push((tp.as_secs_f64() - t0.as_secs_f64()) * 1e6 / f64::from(N));
    }

    println!(
        "run_domain -> first KVM_RUN:        median {:.3} ms",
        median(first_entry)
    );
    println!(
        "run_domain, empty guest, total:      median {:.3} ms",
        median(total)
    );
    println!(
        "RSS growth while a domain runs:      {} KiB (baseline {} KiB)",
        rss_growth, base_rss
    );
    println!(
        "VMM service time per xen_version:    {:.0} ns (mean per run, median of 5 runs)",
        median(service)
    );
    println!(
        "guest round trip, hypercall:         median {:.2} us",
        median(hc_rt.clone())
    );
    println!(
        "guest round trip, bare port I/O:     median {:.2} us",
        median(pio_rt.clone())
    );
    println!(
        "difference (VMM cost per hypercall): {:.2} us",
        median(hc_rt) - median(pio_rt)
    );
}
