//! Parse time of a 200-line xl.cfg (lexing, parsing and reading every key
//! into the typed configuration). Numbers go in docs/xl-config.md.

use criterion::{criterion_group, criterion_main, Criterion};

fn config_200_lines() -> String {
    let mut s = String::from(
        "name = \"bench\"\ntype = \"pvh\"\nkernel = \"/boot/vmlinuz\"\nramdisk = \"/boot/initrd\"\n\
         memory = 1024\nmaxmem = 2048\nvcpus = 4\nmaxvcpus = 8\ncpus = \"0-3,^1\"\n\
         extra = \"console=hvc0\"\non_crash = \"preserve\"\ntimer_mode = \"no_delay_for_missed_ticks\"\n",
    );
    s.push_str("disk = [\n");
    for i in 0..60 {
        s.push_str(&format!(
            "    'format=raw, vdev=xvd{}{}, access=rw, target=/dev/vg/disk{i}',\n",
            (b'a' + (i / 26) as u8) as char,
            (b'a' + (i % 26) as u8) as char
        ));
    }
    s.push_str("]\nvif = [\n");
    for i in 0..60 {
        s.push_str(&format!(
            "    'mac=00:16:3e:00:00:{i:02x},bridge=xenbr0,rate=100Mb/s',\n"
        ));
    }
    s.push_str("]\n");
    while s.lines().count() < 200 {
        s.push_str("# a comment line padding the file out\n");
    }
    s
}

fn bench(c: &mut Criterion) {
    let cfg = config_200_lines();
    assert_eq!(cfg.lines().count(), 200);
    assert!(xl_config::parse("bench.cfg", cfg.as_bytes()).is_ok());
    c.bench_function("parse 200-line xl.cfg", |b| {
        b.iter(|| xl_config::parse("bench.cfg", std::hint::black_box(cfg.as_bytes())))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
