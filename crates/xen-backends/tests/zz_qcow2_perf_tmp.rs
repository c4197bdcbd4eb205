#![allow(clippy::unwrap_used)]
use std::time::Instant;
use xen_backends::blkback::disk::DiskImage;
use xen_backends::blkback::ImageFormat;
#[test]
fn perf() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let q = dir.path().join("p.qcow2");
    let r = dir.path().join("p.raw");
    let sz = 512u64 << 20;
    std::process::Command::new("qemu-img").args(["create","-q","-f","qcow2",q.to_str().unwrap(),&sz.to_string()]).status().unwrap();
    std::fs::File::create(&r).unwrap().set_len(sz).unwrap();
    for (name, p, f) in [("raw", &r, ImageFormat::Raw), ("qcow2", &q, ImageFormat::Qcow2)] {
        let d = std::sync::Arc::new(DiskImage::open_as(p, false, f).unwrap());
        let buf = vec![0x5au8; 1 << 20];
        let t = Instant::now();
        for i in 0..(sz >> 20) { d.write_at(&buf, i << 20).unwrap(); }
        d.flush().unwrap();
        let w1 = t.elapsed();
        let t = Instant::now();
        for i in 0..(sz >> 20) { d.write_at(&buf, i << 20).unwrap(); }
        d.flush().unwrap();
        let w2 = t.elapsed();
        let mut rb = vec![0u8; 1 << 20];
        let t = Instant::now();
        for i in 0..(sz >> 20) { d.read_at(&mut rb, i << 20).unwrap(); }
        let rd = t.elapsed();
        let t = Instant::now();
        let hs: Vec<_> = (0..4u64).map(|k| { let d = d.clone(); std::thread::spawn(move || {
            let mut x = 12345 + k; let mut b = vec![0u8; 4096];
            for _ in 0..50_000 { x ^= x << 13; x ^= x >> 7; x ^= x << 17; d.read_at(&mut b, (x % (sz / 4096)) * 4096).unwrap(); }
        })}).collect();
        for h in hs { h.join().unwrap(); }
        let rr = t.elapsed();
        let mb = (sz >> 20) as f64;
        eprintln!("PERF {name}: first write {:.0} MB/s, rewrite {:.0} MB/s, seq read {:.0} MB/s, 4K random read 4 threads {:.0} kIOPS",
            mb / w1.as_secs_f64(), mb / w2.as_secs_f64(), mb / rd.as_secs_f64(), 200.0 / rr.as_secs_f64());
    }
}
