//! The block backend driven by an in-process frontend
//! ([`xen_backends::testing::BlkHarness`]): every request type in both
//! ABIs, grants, the xenbus handshake, and a hostile frontend.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use xen_backends::blkback::BlockSpec;
use xen_backends::blkif::{
    encode, Abi, Segment, OP_DISCARD, OP_FLUSH_DISKCACHE, OP_READ, OP_WRITE, OP_WRITE_BARRIER,
    RSP_EOPNOTSUPP, RSP_ERROR, RSP_OKAY,
};
use xen_backends::testing::BlkHarness;
use xen_backends::xenbus::{self, XenbusState};
use xen_emu::guest::GuestMemory;

const T: Duration = Duration::from_secs(10);
const MEM: u64 = 16 << 20;

fn image(tag: &str, sectors: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{tag}.img"));
    let mut f = std::fs::File::create(&path).unwrap();
    let data: Vec<u8> = (0..sectors * 512).map(|i| (i / 512) as u8).collect();
    f.write_all(&data).unwrap();
    (dir, path)
}

fn spec(path: &std::path::Path) -> BlockSpec {
    BlockSpec {
        path: path.to_owned(),
        vdev: "xvda".into(),
        readonly: false,
        cdrom: false,
        discard: true,
        format: Default::default(),
    }
}

fn seg(gref: u32, first: u8, last: u8) -> Segment {
    Segment {
        gref,
        first_sect: first,
        last_sect: last,
    }
}

fn page(h: &BlkHarness, gfn: u64) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    h.guest.mem.read(gfn * 4096, &mut b).unwrap();
    b
}

fn one(h: &mut BlkHarness, req: &[u8]) -> (u64, u8, i16) {
    h.submit(req);
    let r = h.wait_responses(1, T);
    assert_eq!(r.len(), 1, "one response expected, got {r:?}");
    r[0]
}

fn read_write_round_trip(abi: Abi, order: u32, persistent: bool) {
    let (_d, path) = image("rw", 64);
    let mut h = BlkHarness::connect(spec(&path), abi, order, persistent, MEM).unwrap();
    let (g1, p1) = h.data_page(false);
    let (g2, p2) = h.data_page(false);
    h.guest.mem.write(p1 * 4096, &[0xa5u8; 4096]).unwrap();
    // Write sectors 8..=15 from page 1, then read 7..=14 into page 2.
    let w = encode::rw(abi, OP_WRITE, 11, 8, &[seg(g1, 0, 7)]);
    assert_eq!(one(&mut h, &w), (11, OP_WRITE, RSP_OKAY));
    let r = encode::rw(abi, OP_READ, 12, 7, &[seg(g2, 0, 7)]);
    assert_eq!(one(&mut h, &r), (12, OP_READ, RSP_OKAY));
    let got = page(&h, p2);
    assert!(got[..512].iter().all(|&b| b == 7), "sector 7 untouched");
    assert!(
        got[512..].iter().all(|&b| b == 0xa5),
        "written data read back"
    );
    let mut file = std::fs::read(&path).unwrap();
    assert!(file[8 * 512..16 * 512].iter().all(|&b| b == 0xa5));
    file.truncate(0);
    if !persistent {
        assert_eq!(
            h.guest.grant_flags(g1) & 0x18,
            0,
            "GTF_reading/writing cleared"
        );
        assert_eq!(h.guest.grant_flags(g2) & 0x18, 0);
    } else {
        assert_ne!(
            h.guest.grant_flags(g2) & 0x08,
            0,
            "persistent grant stays pinned"
        );
    }
}

#[test]
fn read_write_x86_64_single_page_ring() {
    read_write_round_trip(Abi::X86_64, 0, false);
}

#[test]
fn read_write_x86_32_single_page_ring() {
    read_write_round_trip(Abi::X86_32, 0, false);
}

#[test]
fn read_write_multi_page_ring_with_persistent_grants() {
    read_write_round_trip(Abi::X86_64, 2, true);
    read_write_round_trip(Abi::X86_32, 4, true);
}

#[test]
fn persistent_grants_are_released_on_disconnect() {
    let (_d, path) = image("pers", 16);
    let mut h = BlkHarness::connect(spec(&path), Abi::X86_64, 0, true, MEM).unwrap();
    let (g, _) = h.data_page(false);
    let r = encode::rw(Abi::X86_64, OP_READ, 1, 0, &[seg(g, 0, 7)]);
    assert_eq!(one(&mut h, &r).2, RSP_OKAY);
    assert_ne!(h.guest.grant_flags(g) & 0x18, 0);
    let paths = h.dev.as_ref().unwrap().paths().clone();
    h.store.write(&paths.frontend_key("state"), b"5").unwrap();
    h.poke();
    assert_eq!(h.backend_state(), Some(XenbusState::Closing));
    assert_eq!(h.guest.grant_flags(g) & 0x18, 0, "unpinned at disconnect");
    assert_eq!(h.guest.grant_flags(8) & 0x18, 0, "ring page unmapped");
}

#[test]
fn segments_scatter_across_pages_and_offsets() {
    let (_d, path) = image("sg", 64);
    let mut h = BlkHarness::connect(spec(&path), Abi::X86_64, 0, false, MEM).unwrap();
    let (g1, p1) = h.data_page(false);
    let (g2, p2) = h.data_page(false);
    // Sectors 20..=22 land in page 1 sectors 5..=7 then page 2 sector 0.
    let r = encode::rw(Abi::X86_64, OP_READ, 3, 20, &[seg(g1, 5, 7), seg(g2, 0, 0)]);
    assert_eq!(one(&mut h, &r).2, RSP_OKAY);
    let a = page(&h, p1);
    let b = page(&h, p2);
    assert!(a[..5 * 512].iter().all(|&x| x == 0));
    assert!(a[5 * 512..6 * 512].iter().all(|&x| x == 20));
    assert!(a[7 * 512..].iter().all(|&x| x == 22));
    assert!(b[..512].iter().all(|&x| x == 23));
}

#[test]
fn indirect_requests_carry_many_segments() {
    let (_d, path) = image("ind", 1024);
    let mut h = BlkHarness::connect(spec(&path), Abi::X86_64, 0, false, MEM).unwrap();
    let (ig, ip) = h.data_page(false);
    let mut desc = Vec::new();
    let mut pages = Vec::new();
    for _ in 0..64 {
        let (g, p) = h.data_page(false);
        desc.extend_from_slice(&g.to_le_bytes());
        desc.extend_from_slice(&[0, 7, 0, 0]);
        pages.push(p);
    }
    h.guest.mem.write(ip * 4096, &desc).unwrap();
    let r = encode::indirect(Abi::X86_64, OP_READ, 9, 512, 64, &[ig]);
    assert_eq!(one(&mut h, &r), (9, OP_READ, RSP_OKAY));
    for (i, p) in pages.iter().enumerate() {
        let got = page(&h, *p);
        assert!(
            got.chunks(512)
                .enumerate()
                .all(|(s, c)| c.iter().all(|&x| x == (512 + i * 8 + s) as u8)),
            "segment {i}"
        );
    }
}

#[test]
fn flush_barrier_and_discard() {
    let (_d, path) = image("fl", 64);
    let mut h = BlkHarness::connect(spec(&path), Abi::X86_32, 0, false, MEM).unwrap();
    let (g, p) = h.data_page(false);
    h.guest.mem.write(p * 4096, &[0x5au8; 4096]).unwrap();
    let f = encode::rw(Abi::X86_32, OP_FLUSH_DISKCACHE, 1, 0, &[]);
    assert_eq!(one(&mut h, &f), (1, OP_FLUSH_DISKCACHE, RSP_OKAY));
    let b = encode::rw(Abi::X86_32, OP_WRITE_BARRIER, 2, 16, &[seg(g, 0, 7)]);
    assert_eq!(one(&mut h, &b), (2, OP_WRITE_BARRIER, RSP_OKAY));
    assert!(std::fs::read(&path).unwrap()[16 * 512..24 * 512]
        .iter()
        .all(|&x| x == 0x5a));
    let d = encode::discard(Abi::X86_32, 3, 32, 8);
    assert_eq!(one(&mut h, &d), (3, OP_DISCARD, RSP_OKAY));
    assert!(std::fs::read(&path).unwrap()[32 * 512..40 * 512]
        .iter()
        .all(|&x| x == 0));
}

#[test]
fn read_only_cdrom_refuses_writes_and_discard() {
    let (_d, path) = image("ro", 16);
    let mut s = spec(&path);
    s.readonly = true;
    s.cdrom = true;
    s.vdev = "hdc".into();
    let mut h = BlkHarness::connect(s, Abi::X86_64, 0, false, MEM).unwrap();
    let paths = h.dev.as_ref().unwrap().paths().clone();
    assert_eq!(paths.devid, 5632);
    let r = |k: &str| xenbus::read_str(&h.store, &paths.backend_key(k));
    assert_eq!(r("mode").as_deref(), Some("r"));
    assert_eq!(r("info").as_deref(), Some("7"));
    assert_eq!(r("sectors").as_deref(), Some("16"));
    assert_eq!(r("device-type").as_deref(), Some("cdrom"));
    assert_eq!(r("feature-discard"), None);
    let (g, _) = h.data_page(false);
    let w = encode::rw(Abi::X86_64, OP_WRITE, 1, 0, &[seg(g, 0, 7)]);
    assert_eq!(one(&mut h, &w).2, RSP_ERROR);
    let d = encode::discard(Abi::X86_64, 2, 0, 8);
    assert_eq!(one(&mut h, &d).2, RSP_EOPNOTSUPP);
    let mut f = std::fs::File::open(&path).unwrap();
    let mut first = [0u8; 512];
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_exact(&mut first).unwrap();
    assert!(first.iter().all(|&x| x == 0), "image unchanged");
}

#[test]
fn backend_nodes_are_written_as_libxl_and_blkback_do() {
    let (_d, path) = image("nodes", 2048);
    let h = BlkHarness::connect(spec(&path), Abi::X86_64, 0, false, MEM).unwrap();
    let paths = h.dev.as_ref().unwrap().paths().clone();
    assert_eq!(paths.backend, "/local/domain/0/backend/vbd/1/51712");
    assert_eq!(paths.frontend, "/local/domain/1/device/vbd/51712");
    let r = |k: &str| xenbus::read_str(&h.store, &paths.backend_key(k)).unwrap_or_default();
    for (k, v) in [
        ("state", "4"),
        ("sectors", "2048"),
        ("sector-size", "512"),
        ("info", "0"),
        ("mode", "w"),
        ("dev", "xvda"),
        ("frontend-id", "1"),
        ("feature-flush-cache", "1"),
        ("feature-barrier", "1"),
        ("feature-discard", "1"),
        ("feature-persistent", "1"),
        ("feature-max-indirect-segments", "256"),
        ("max-ring-page-order", "4"),
        ("multi-queue-max-queues", "4"),
    ] {
        assert_eq!(r(k), v, "backend key {k}");
    }
    let f = |k: &str| xenbus::read_str(&h.store, &paths.frontend_key(k)).unwrap_or_default();
    assert_eq!(f("backend-id"), "0");
    assert_eq!(f("virtual-device"), "51712");
}

#[test]
fn frontend_reset_reconnects() {
    let (_d, path) = image("reset", 16);
    let mut h = BlkHarness::connect(spec(&path), Abi::X86_32, 0, false, MEM).unwrap();
    let paths = h.dev.as_ref().unwrap().paths().clone();
    // GRUB's hand-over: Closed, then Initialising for the next frontend.
    h.store.write(&paths.frontend_key("state"), b"6").unwrap();
    h.poke();
    assert_eq!(h.backend_state(), Some(XenbusState::Closed));
    h.store.write(&paths.frontend_key("state"), b"1").unwrap();
    h.poke();
    assert_eq!(h.backend_state(), Some(XenbusState::InitWait));
    // The new frontend starts a fresh ring.
    h.ring = xen_backends::sring::FrontRing::init(
        h.guest.mem.clone(),
        xen_backends::testing::TestGuest::FIRST_FREE_PAGE * 4096,
        1,
        Abi::X86_64.entry_size(),
    );
    h.abi = Abi::X86_64;
    h.store
        .write(&paths.frontend_key("protocol"), b"x86_64-abi")
        .unwrap();
    h.store.write(&paths.frontend_key("state"), b"3").unwrap();
    h.poke();
    assert_eq!(h.backend_state(), Some(XenbusState::Connected));
    let (g, p) = h.data_page(false);
    let r = encode::rw(Abi::X86_64, OP_READ, 4, 3, &[seg(g, 0, 0)]);
    assert_eq!(one(&mut h, &r).2, RSP_OKAY);
    assert!(page(&h, p)[..512].iter().all(|&x| x == 3));
}

// ---- a hostile frontend ----

#[test]
fn bad_requests_get_errors_and_the_ring_keeps_working() {
    let (_d, path) = image("bad", 32);
    let mut h = BlkHarness::connect(spec(&path), Abi::X86_64, 0, false, MEM).unwrap();
    let (g, _) = h.data_page(false);
    let (ro, _) = h.data_page(true);
    let abi = Abi::X86_64;
    let mut zero = encode::rw(abi, OP_READ, 1, 0, &[]);
    zero[1] = 0;
    let mut oversized = encode::rw(abi, OP_READ, 2, 0, &[seg(g, 0, 0)]);
    oversized[1] = 200;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("zero segments", zero),
        ("oversized segment count", oversized),
        (
            "grant ref beyond the table",
            encode::rw(abi, OP_READ, 3, 0, &[seg(1 << 30, 0, 7)]),
        ),
        (
            "ungranted ref",
            encode::rw(abi, OP_READ, 4, 0, &[seg(5000, 0, 7)]),
        ),
        (
            "last_sect past the page",
            encode::rw(abi, OP_READ, 5, 0, &[seg(g, 0, 8)]),
        ),
        (
            "first after last",
            encode::rw(abi, OP_READ, 6, 0, &[seg(g, 5, 4)]),
        ),
        (
            "past end of disk",
            encode::rw(abi, OP_READ, 7, 31, &[seg(g, 0, 1)]),
        ),
        (
            "sector overflow",
            encode::rw(abi, OP_READ, 8, u64::MAX, &[seg(g, 0, 0)]),
        ),
        (
            "read into a read-only grant",
            encode::rw(abi, OP_READ, 9, 0, &[seg(ro, 0, 0)]),
        ),
        ("discard past the end", encode::discard(abi, 10, 30, 8)),
        (
            "indirect with zero segments",
            encode::indirect(abi, OP_READ, 11, 0, 0, &[g]),
        ),
        (
            "indirect with too many",
            encode::indirect(abi, OP_READ, 12, 0, 4000, &[g]),
        ),
    ];
    for (what, req) in &cases {
        let r = one(&mut h, req);
        assert_eq!(r.2, RSP_ERROR, "{what}: {r:?}");
        // Refused or not, an INDIRECT request is answered with its inner
        // operation (Linux's blkfront disables the disk otherwise).
        let op = if req[0] == 6 { req[1] } else { req[0] };
        assert_eq!(r.1, op, "{what}: {r:?}");
    }
    let mut unknown = encode::rw(abi, OP_READ, 13, 0, &[seg(g, 0, 0)]);
    unknown[0] = 0x42;
    assert_eq!(one(&mut h, &unknown), (13, 0x42, RSP_ERROR));
    let good = encode::rw(abi, OP_READ, 14, 0, &[seg(g, 0, 0)]);
    assert_eq!(one(&mut h, &good).2, RSP_OKAY, "ring still serves");
    assert_eq!(h.guest.grant_flags(g) & 0x18, 0);
    assert_eq!(h.guest.grant_flags(ro) & 0x18, 0);
}

#[test]
fn indices_far_ahead_disconnect_only_that_device() {
    let (_d, path) = image("ahead", 32);
    let (_d2, path2) = image("other", 32);
    let mut bad = BlkHarness::connect(spec(&path), Abi::X86_64, 0, false, MEM).unwrap();
    let mut good = BlkHarness::connect(spec(&path2), Abi::X86_64, 0, false, MEM).unwrap();
    bad.ring.set_req_prod(0x4000_0000);
    bad.guest.evtchn.kick(bad.port);
    // The ring thread stops; the device goes to Closing on the next event.
    let deadline = std::time::Instant::now() + T;
    while bad.backend_state() != Some(XenbusState::Closing) && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
        bad.poke();
    }
    assert_eq!(bad.backend_state(), Some(XenbusState::Closing));
    let paths = bad.dev.as_ref().unwrap().paths().clone();
    let err = format!("/local/domain/0/error{}/error", paths.backend);
    assert!(xenbus::read_str(&bad.store, &err)
        .unwrap_or_default()
        .contains("ahead"));
    let (g, _) = good.data_page(false);
    let r = encode::rw(Abi::X86_64, OP_READ, 1, 0, &[seg(g, 0, 7)]);
    assert_eq!(one(&mut good, &r).2, RSP_OKAY);
}

#[test]
fn a_bad_ring_ref_fails_the_connection_cleanly() {
    let (_d, path) = image("badring", 32);
    let mut h = BlkHarness::connect(spec(&path), Abi::X86_64, 0, false, MEM).unwrap();
    let paths = h.dev.as_ref().unwrap().paths().clone();
    h.store.write(&paths.frontend_key("state"), b"6").unwrap();
    h.poke();
    h.store.write(&paths.frontend_key("state"), b"1").unwrap();
    h.poke();
    h.store
        .write(&paths.frontend_key("ring-ref"), b"999999")
        .unwrap();
    h.store.write(&paths.frontend_key("state"), b"3").unwrap();
    h.poke();
    assert_eq!(h.backend_state(), Some(XenbusState::Closing));
    h.store
        .write(&paths.frontend_key("ring-page-order"), b"9")
        .unwrap();
    h.poke();
}

#[test]
fn queue_depth_32_completes_every_request() {
    let (_d, path) = image("qd", 4096);
    let mut h = BlkHarness::connect(spec(&path), Abi::X86_64, 1, true, MEM).unwrap();
    let pages: Vec<(u32, u64)> = (0..32).map(|_| h.data_page(false)).collect();
    for round in 0..8u64 {
        for (i, (g, _)) in pages.iter().enumerate() {
            let sector = (round * 32 + i as u64) * 8;
            h.ring.put_request(&encode::rw(
                Abi::X86_64,
                OP_READ,
                sector,
                sector,
                &[seg(*g, 0, 7)],
            ));
        }
        if h.ring.push_requests() {
            h.guest.evtchn.kick(h.port);
        }
        let mut r = h.wait_responses(32, T);
        assert_eq!(r.len(), 32);
        r.sort_unstable();
        for (i, (id, _, st)) in r.iter().enumerate() {
            assert_eq!((*id, *st), ((round * 32 + i as u64) * 8, RSP_OKAY));
        }
        for (i, (_, p)) in pages.iter().enumerate() {
            let want = ((round * 32 + i as u64) * 8) as u8;
            assert_eq!(page(&h, *p)[0], want);
        }
    }
}

#[test]
fn multiple_queues_each_get_a_ring_and_a_port() {
    use xen_backends::blkback::{conn::RingEnv, BlockDevice};
    use xen_backends::sring::FrontRing;
    use xen_backends::testing::TestGuest;
    let (_d, path) = image("mq", 64);
    let guest = TestGuest::new(MEM);
    let store = xenstore::Engine::default();
    store.introduce_domain(1);
    let env = RingEnv {
        mem: guest.mem.clone(),
        grants: guest.grants.clone(),
        evtchn: guest.evtchn.clone(),
        backend_domid: 0,
        on_fatal: std::sync::Arc::new(|| {}),
    };
    let mut dev = BlockDevice::create(&store, env, 1, spec(&path)).unwrap();
    let p = dev.paths().clone();
    let base = TestGuest::FIRST_FREE_PAGE;
    let mut rings = Vec::new();
    let w = |k: &str, v: String| store.write(&p.frontend_key(k), v.as_bytes()).unwrap();
    w("multi-queue-num-queues", "2".into());
    w("protocol", "x86_64-abi".into());
    for q in 0..2u32 {
        guest.grant(8 + q, 0, base + u64::from(q), false);
        w(&format!("queue-{q}/ring-ref"), (8 + q).to_string());
        w(&format!("queue-{q}/event-channel"), (20 + q).to_string());
        rings.push(FrontRing::init(
            guest.mem.clone(),
            (base + u64::from(q)) * 4096,
            1,
            Abi::X86_64.entry_size(),
        ));
    }
    w("state", "3".into());
    dev.frontend_changed();
    assert_eq!(dev.state(), XenbusState::Connected);
    for (q, ring) in rings.iter_mut().enumerate() {
        let page = base + 2 + q as u64;
        guest.grant(30 + q as u32, 0, page, false);
        let sector = 8 * (q as u64 + 1);
        ring.put_request(&encode::rw(
            Abi::X86_64,
            OP_READ,
            q as u64,
            sector,
            &[seg(30 + q as u32, 0, 0)],
        ));
        ring.push_requests();
        assert!(
            guest.evtchn.kick(20 + q as u32),
            "queue {q}'s port is bound"
        );
        let end = std::time::Instant::now() + T;
        let mut got = Vec::new();
        while got.is_empty() && std::time::Instant::now() < end {
            got = ring.take_responses();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(got, vec![(q as u64, OP_READ, RSP_OKAY)]);
        let mut b = [0u8; 512];
        guest.mem.read(page * 4096, &mut b).unwrap();
        assert!(
            b.iter().all(|&x| x == sector as u8),
            "queue {q} read its sector"
        );
    }
    w("multi-queue-num-queues", "9".into());
    w("state", "6".into());
    dev.frontend_changed();
    w("state", "1".into());
    dev.frontend_changed();
    w("state", "3".into());
    dev.frontend_changed();
    assert_eq!(
        dev.state(),
        XenbusState::Closing,
        "too many queues is fatal"
    );
    dev.destroy();
}

#[test]
fn a_flush_in_one_batch_orders_earlier_writes_before_later_reads() {
    // 32 writes, a FLUSH and 32 reads of the same sectors pushed at once:
    // the writes go to the workers in jobs, the reads may run on the ring
    // thread; the flush must wait for every write, be answered after all
    // of them, and the reads after it must see the written data.
    let (_d, path) = image("batch", 4096);
    let mut h = BlkHarness::connect(spec(&path), Abi::X86_64, 2, true, MEM).unwrap();
    let src: Vec<(u32, u64)> = (0..32).map(|_| h.data_page(false)).collect();
    let dst: Vec<(u32, u64)> = (0..32).map(|_| h.data_page(false)).collect();
    for (i, (g, p)) in src.iter().enumerate() {
        h.guest
            .mem
            .write(p * 4096, &[0xa0 + i as u8; 4096])
            .unwrap();
        let sector = i as u64 * 8;
        h.ring.put_request(&encode::rw(
            Abi::X86_64,
            OP_WRITE,
            i as u64,
            sector,
            &[seg(*g, 0, 7)],
        ));
    }
    h.ring
        .put_request(&encode::rw(Abi::X86_64, OP_FLUSH_DISKCACHE, 1000, 0, &[]));
    for (i, (g, _)) in dst.iter().enumerate() {
        let sector = i as u64 * 8;
        h.ring.put_request(&encode::rw(
            Abi::X86_64,
            OP_READ,
            2000 + i as u64,
            sector,
            &[seg(*g, 0, 7)],
        ));
    }
    if h.ring.push_requests() {
        h.guest.evtchn.kick(h.port);
    }
    let r = h.wait_responses(65, T);
    assert_eq!(r.len(), 65);
    assert!(r.iter().all(|&(_, _, st)| st == RSP_OKAY), "{r:?}");
    let flush_at = r.iter().position(|&(id, _, _)| id == 1000).unwrap();
    let writes_before = r[..flush_at].iter().filter(|&&(id, _, _)| id < 32).count();
    assert_eq!(writes_before, 32, "flush answered before its writes: {r:?}");
    for (i, (_, p)) in dst.iter().enumerate() {
        assert_eq!(page(&h, *p), vec![0xa0 + i as u8; 4096], "read {i}");
    }
}

/// The frontend ends foreign access to `gref` (`gnttab_end_foreign_access`
/// on an unused entry: its flags go to 0).
fn revoke(h: &BlkHarness, gref: u32) {
    h.guest
        .mem
        .atomic_u16(u64::from(gref) * 8)
        .unwrap()
        .store(0, std::sync::atomic::Ordering::Release);
}

/// Reads and writes touch exactly the sectors the segments name, in the
/// granted pages and in the file, with direct I/O into guest memory and
/// with the copy fallback, with and without persistent grants.
fn exact_ranges(persistent: bool, direct: bool) {
    let (_d, path) = image("exact", 64);
    let mut h = BlkHarness::connect(spec(&path), Abi::X86_64, 0, persistent, MEM).unwrap();
    h.guest.mem.set_direct(direct);
    let pages: Vec<(u32, u64)> = (0..5).map(|_| h.data_page(false)).collect();
    for &(_, p) in &pages {
        h.guest.mem.write(p * 4096, &[0xee; 4096]).unwrap();
    }
    let g = |i: usize| pages[i].0;
    // Sectors 30..=40 into page 1 sectors 2..=3, all of page 2, page 3
    // sector 7; pages 0 and 4 are granted but not named.
    let r = encode::rw(
        Abi::X86_64,
        OP_READ,
        1,
        30,
        &[seg(g(1), 2, 3), seg(g(2), 0, 7), seg(g(3), 7, 7)],
    );
    assert_eq!(one(&mut h, &r), (1, OP_READ, RSP_OKAY));
    let sectors =
        |p: usize| -> Vec<u8> { page(&h, pages[p].1).chunks(512).map(|c| c[0]).collect() };
    let e = 0xee;
    assert_eq!(sectors(1), [e, e, 30, 31, e, e, e, e]);
    assert_eq!(sectors(2), (32..40).collect::<Vec<u8>>());
    assert_eq!(sectors(3), [e, e, e, e, e, e, e, 40]);
    for p in [0, 4] {
        assert!(page(&h, pages[p].1).iter().all(|&b| b == e), "page {p}");
    }
    for (p, &(_, gfn)) in pages.iter().enumerate().take(4).skip(1) {
        let got = page(&h, gfn);
        assert!(
            got.chunks(512).all(|c| c.iter().all(|&b| b == c[0])),
            "page {p}: whole sectors only"
        );
    }
    // Page 1 sectors 6..=7 and page 2 sector 0 to disk sectors 50..=52.
    h.guest
        .mem
        .write(pages[1].1 * 4096 + 3072, &[0xa1; 1024])
        .unwrap();
    h.guest.mem.write(pages[2].1 * 4096, &[0xa2; 512]).unwrap();
    let w = encode::rw(
        Abi::X86_64,
        OP_WRITE,
        2,
        50,
        &[seg(g(1), 6, 7), seg(g(2), 0, 0)],
    );
    assert_eq!(one(&mut h, &w), (2, OP_WRITE, RSP_OKAY));
    let file = std::fs::read(&path).unwrap();
    let on_disk: Vec<u8> = file.chunks(512).map(|c| c[0]).collect();
    assert_eq!(on_disk[48..54], [48, 49, 0xa1, 0xa1, 0xa2, 53]);
    assert!(file[50 * 512..52 * 512].iter().all(|&b| b == 0xa1));
    assert!(file[52 * 512..53 * 512].iter().all(|&b| b == 0xa2));
    let state = |g: u32| h.guest.grant_flags(g) & 0x18;
    if !persistent {
        assert!((0..5).all(|i| state(g(i)) == 0), "no pin left behind");
    }
}

#[test]
fn direct_io_touches_exactly_the_granted_sectors() {
    exact_ranges(false, true);
    exact_ranges(true, true);
}

#[test]
fn copy_fallback_touches_exactly_the_granted_sectors() {
    exact_ranges(false, false);
    exact_ranges(true, false);
}

#[test]
fn a_read_into_a_revoked_grant_fails_and_writes_no_page() {
    for persistent in [false, true] {
        let (_d, path) = image("revoked", 64);
        let mut h = BlkHarness::connect(spec(&path), Abi::X86_64, 0, persistent, MEM).unwrap();
        let (g1, p1) = h.data_page(false);
        let (g2, p2) = h.data_page(false);
        for p in [p1, p2] {
            h.guest.mem.write(p * 4096, &[0xee; 4096]).unwrap();
        }
        revoke(&h, g2);
        // The valid first segment is not written either: every grant is
        // taken before the read starts.
        let r = encode::rw(Abi::X86_64, OP_READ, 5, 8, &[seg(g1, 0, 7), seg(g2, 0, 7)]);
        assert_eq!(one(&mut h, &r), (5, OP_READ, RSP_ERROR));
        assert!(
            page(&h, p1).iter().all(|&b| b == 0xee),
            "page 1 ({persistent})"
        );
        assert!(
            page(&h, p2).iter().all(|&b| b == 0xee),
            "page 2 ({persistent})"
        );
        // A write from the revoked grant does not reach the disk.
        let w = encode::rw(Abi::X86_64, OP_WRITE, 6, 8, &[seg(g2, 0, 7)]);
        assert_eq!(one(&mut h, &w), (6, OP_WRITE, RSP_ERROR));
        let file = std::fs::read(&path).unwrap();
        assert!((8..16).all(|s| file[s * 512..(s + 1) * 512].iter().all(|&b| b == s as u8)));
        if !persistent {
            assert_eq!(
                h.guest.grant_flags(g1) & 0x18,
                0,
                "unpinned after the error"
            );
        }
        // The ring keeps working with the grant that is still there.
        let ok = encode::rw(Abi::X86_64, OP_READ, 7, 9, &[seg(g1, 0, 0)]);
        assert_eq!(one(&mut h, &ok), (7, OP_READ, RSP_OKAY));
        assert!(page(&h, p1)[..512].iter().all(|&b| b == 9));
    }
}

/// One indirect READ of `n` segments from `sector` into fresh pages
/// filled with 0xee; segment `i` names sectors `i % 3 ..= 7 - i % 2`, so
/// the segments are uneven and the parts of a READ shared with a helper
/// start at sectors that are not a multiple of 8. Returns the request,
/// the segments and their pages.
fn big_read(
    h: &mut BlkHarness,
    id: u64,
    sector: u64,
    n: usize,
) -> (Vec<u8>, Vec<Segment>, Vec<u64>) {
    let (ig, ip) = h.data_page(false);
    let mut desc = Vec::new();
    let mut segs = Vec::new();
    let mut pages = Vec::new();
    for i in 0..n {
        let (g, p) = h.data_page(false);
        h.guest.mem.write(p * 4096, &[0xee; 4096]).unwrap();
        let s = seg(g, (i % 3) as u8, 7 - (i % 2) as u8);
        desc.extend_from_slice(&g.to_le_bytes());
        desc.extend_from_slice(&[s.first_sect, s.last_sect, 0, 0]);
        segs.push(s);
        pages.push(p);
    }
    h.guest.mem.write(ip * 4096, &desc).unwrap();
    let r = encode::indirect(Abi::X86_64, OP_READ, id, sector, n as u16, &[ig]);
    (r, segs, pages)
}

/// Every segment of `big_read` holds exactly its disk sectors (sector
/// `s` is bytes `s as u8`), the rest of its page untouched.
fn assert_big_read(h: &BlkHarness, sector: u64, segs: &[Segment], pages: &[u64]) {
    let mut at = sector;
    for (i, (s, &p)) in segs.iter().zip(pages).enumerate() {
        let got = page(h, p);
        for (k, chunk) in got.chunks(512).enumerate() {
            let k = k as u8;
            let want = if (s.first_sect..=s.last_sect).contains(&k) {
                (at + u64::from(k - s.first_sect)) as u8
            } else {
                0xee
            };
            assert!(chunk.iter().all(|&b| b == want), "segment {i} sector {k}");
        }
        at += u64::from(s.last_sect - s.first_sect) + 1;
    }
}

/// A lone 1 MiB-class READ is read in two parts (the ring thread and a
/// helper, where there are two CPUs): every segment gets exactly its
/// bytes, with direct I/O and the copy fallback, with and without
/// persistent grants.
#[test]
fn a_large_read_shared_with_a_helper_lands_in_every_segment() {
    for (persistent, direct) in [(false, true), (true, true), (false, false), (true, false)] {
        let (_d, path) = image("shared", 4096);
        let mut h = BlkHarness::connect(spec(&path), Abi::X86_64, 0, persistent, MEM).unwrap();
        h.guest.mem.set_direct(direct);
        for (id, sector, n) in [(1, 3, 256), (2, 1000, 255), (3, 77, 64)] {
            let (r, segs, pages) = big_read(&mut h, id, sector, n);
            assert_eq!(one(&mut h, &r), (id, OP_READ, RSP_OKAY));
            assert_big_read(&h, sector, &segs, &pages);
            if !persistent {
                let pinned = |s: &Segment| h.guest.grant_flags(s.gref) & 0x18 != 0;
                assert!(!segs.iter().any(pinned), "no pin left behind");
            }
        }
    }
}

/// A bad grant in either part of a shared READ, or a tail part past the
/// end of the disk, fails the whole request with one response, and the
/// ring keeps working.
#[test]
fn a_failing_part_fails_the_shared_read() {
    let (_d, path) = image("shared-bad", 4096);
    let mut h = BlkHarness::connect(spec(&path), Abi::X86_64, 0, false, MEM).unwrap();
    for (id, bad) in [(1u64, 10usize), (2, 250)] {
        let (r, segs, _) = big_read(&mut h, id, 8, 256);
        revoke(&h, segs[bad].gref);
        assert_eq!(one(&mut h, &r), (id, OP_READ, RSP_ERROR), "segment {bad}");
    }
    // 256 segments of 6-8 sectors from sector 3000 run past sector 4096:
    // only the tail is out of range.
    let (r, _, _) = big_read(&mut h, 3, 3000, 256);
    assert_eq!(one(&mut h, &r), (3, OP_READ, RSP_ERROR));
    let (r, segs, pages) = big_read(&mut h, 4, 16, 256);
    assert_eq!(one(&mut h, &r), (4, OP_READ, RSP_OKAY));
    assert_big_read(&h, 16, &segs, &pages);
}

/// Drops all of `path` from the page cache (written back first; a
/// partial range could leave a large folio that straddles it), then reads
/// sectors `[from, to)` back in: a read elsewhere has to wait for the
/// disk (`RWF_NOWAIT` fails).
fn cache_only(path: &std::path::Path, from: u64, to: u64) {
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    f.sync_all().unwrap();
    // SAFETY: plain advice on an open descriptor; no memory is passed.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
    let mut buf = vec![0u8; ((to - from) * 512) as usize];
    f.read_exact_at(&mut buf, from * 512).unwrap();
}

/// A shared READ whose head, tail or whole range is not in the page
/// cache still completes with the right bytes (the parts that would wait
/// go to the workers' blocking path).
#[test]
fn uncached_parts_of_a_shared_read_still_complete() {
    let (_d, path) = image("shared-cold", 8192);
    let mut h = BlkHarness::connect(spec(&path), Abi::X86_64, 0, false, MEM).unwrap();
    // 256 segments of 6-8 sectors from sector 8 span sectors 8..1672; the
    // head (128 segments) ends at sector 840.
    for (id, from, to) in [(1u64, 840, 8192), (2, 0, 840), (3, 0, 0)] {
        cache_only(&path, from, to);
        let (r, segs, pages) = big_read(&mut h, id, 8, 256);
        assert_eq!(one(&mut h, &r), (id, OP_READ, RSP_OKAY));
        assert_big_read(&h, 8, &segs, &pages);
    }
}
