//! The Unix socket front end: many clients, malformed traffic and clients
//! that never read affect only themselves.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;
use xenstore::socket::{Backend, SocketServer};
use xenstore::wire::{self, Header, MsgType};
use xenstore::Engine;

/// A server on the given event loop; None (after saying why) when this
/// kernel has no io_uring for the io_uring variant.
fn server(b: Backend) -> Option<(tempfile::TempDir, SocketServer, Engine)> {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::default();
    match SocketServer::start_with(engine.clone(), &dir.path().join("xs.sock"), b) {
        Ok(s) => Some((dir, s, engine)),
        Err(e) if b == Backend::Uring => {
            eprintln!("skipped: no io_uring here ({e})");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Every test runs on both event loops.
macro_rules! on_both_loops {
    ($($name:ident),* $(,)?) => {
        mod epoll {
            $(#[test] fn $name() { super::$name(super::Backend::Epoll) })*
        }
        mod uring {
            $(#[test] fn $name() { super::$name(super::Backend::Uring) })*
        }
    };
}

on_both_loops!(
    many_clients_share_one_store,
    oversized_length_closes_only_that_connection,
    garbage_requests_get_errors_and_the_connection_lives,
    a_client_that_never_reads_does_not_block_others,
    watch_events_reach_other_clients,
    pipelined_requests_are_all_answered,
    shutdown_removes_the_socket,
);

fn connect(s: &SocketServer) -> UnixStream {
    let c = UnixStream::connect(s.path()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

fn call(c: &mut UnixStream, ty: MsgType, payload: &[u8]) -> (u32, Vec<u8>) {
    let mut m = Vec::new();
    wire::push_msg(&mut m, ty as u32, 77, 0, &[payload]);
    c.write_all(&m).unwrap();
    let mut h = [0u8; 16];
    c.read_exact(&mut h).unwrap();
    let h = Header::decode(&h);
    let mut body = vec![0; h.len as usize];
    c.read_exact(&mut body).unwrap();
    assert_eq!(h.req_id, 77);
    (h.ty, body)
}

fn closed(c: &mut UnixStream) -> bool {
    let mut b = [0u8; 64];
    loop {
        match c.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

fn many_clients_share_one_store(b: Backend) {
    let Some((_d, s, engine)) = server(b) else {
        return;
    };
    let mut clients: Vec<UnixStream> = (0..20).map(|_| connect(&s)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let mut p = format!("/s/{i}\0").into_bytes();
        p.extend_from_slice(b"v");
        assert_eq!(call(c, MsgType::Write, &p).1, b"OK\0");
    }
    assert_eq!(engine.directory("/s").unwrap().len(), 20);
}

fn oversized_length_closes_only_that_connection(b: Backend) {
    let Some((_d, s, _e)) = server(b) else {
        return;
    };
    let mut bad = connect(&s);
    let mut good = connect(&s);
    let h = Header {
        ty: MsgType::Read as u32,
        req_id: 1,
        tx_id: 0,
        len: 100_000,
    };
    bad.write_all(&h.encode()).unwrap();
    assert!(closed(&mut bad));
    assert_eq!(
        call(&mut good, MsgType::Read, b"/\0").0,
        MsgType::Read as u32
    );
}

fn garbage_requests_get_errors_and_the_connection_lives(b: Backend) {
    let Some((_d, s, _e)) = server(b) else {
        return;
    };
    let mut c = connect(&s);
    assert_eq!(
        call(&mut c, MsgType::Read, b"/\xc3\x28\0"),
        (MsgType::Error as u32, b"EINVAL\0".to_vec())
    );
    assert_eq!(
        call(&mut c, MsgType::Read, b"/no-nul"),
        (MsgType::Error as u32, b"EINVAL\0".to_vec())
    );
    let mut m = Vec::new();
    wire::push_msg(&mut m, 999, 77, 0, &[b"x\0"]);
    c.write_all(&m).unwrap();
    let mut h = [0u8; 16];
    c.read_exact(&mut h).unwrap();
    assert_eq!(Header::decode(&h).ty, MsgType::Error as u32);
    let mut body = vec![0; Header::decode(&h).len as usize];
    c.read_exact(&mut body).unwrap();
    assert_eq!(body, b"EINVAL\0");
    assert_eq!(
        call(&mut c, MsgType::GetDomainPath, b"3\0").1,
        b"/local/domain/3\0"
    );
}

fn a_client_that_never_reads_does_not_block_others(b: Backend) {
    let Some((_d, s, engine)) = server(b) else {
        return;
    };
    engine.write("/big", &vec![b'x'; 4000]).unwrap();
    let mut hog = connect(&s);
    hog.set_nonblocking(true).unwrap();
    let mut m = Vec::new();
    wire::push_msg(&mut m, MsgType::Read as u32, 1, 0, &[b"/big\0"]);
    // Queue far more replies than any socket buffer holds, never reading.
    let mut sent = 0usize;
    for _ in 0..5000 {
        match hog.write(&m) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent > 0);
    let mut good = connect(&s);
    for _ in 0..50 {
        assert_eq!(call(&mut good, MsgType::Read, b"/big\0").1.len(), 4000);
    }
    // A half-sent message followed by a hang-up is harmless too.
    let mut half = connect(&s);
    half.write_all(&m[..10]).unwrap();
    drop(half);
    assert_eq!(
        call(&mut good, MsgType::Read, b"/big\0").0,
        MsgType::Read as u32
    );
}

fn shutdown_removes_the_socket(b: Backend) {
    let Some((_d, s, _e)) = server(b) else {
        return;
    };
    let p = s.path().to_owned();
    assert!(p.exists());
    s.shutdown();
    assert!(!p.exists());
}

fn watch_events_reach_other_clients(b: Backend) {
    let Some((_d, s, _e)) = server(b) else {
        return;
    };
    let mut watcher = connect(&s);
    let mut writer = connect(&s);
    assert_eq!(call(&mut watcher, MsgType::Watch, b"/w\0tok\0").1, b"OK\0");
    // The registration fires once.
    let event = |c: &mut UnixStream| {
        let mut h = [0u8; 16];
        c.read_exact(&mut h).unwrap();
        let h = Header::decode(&h);
        let mut body = vec![0; h.len as usize];
        c.read_exact(&mut body).unwrap();
        assert_eq!(h.ty, MsgType::WatchEvent as u32);
        body
    };
    assert_eq!(event(&mut watcher), b"/w\0tok\0");
    assert_eq!(call(&mut writer, MsgType::Write, b"/w/x\0v").1, b"OK\0");
    assert_eq!(event(&mut watcher), b"/w/x\0tok\0");
}

fn pipelined_requests_are_all_answered(b: Backend) {
    let Some((_d, s, _e)) = server(b) else {
        return;
    };
    let mut c = connect(&s);
    // Many requests in one write, the last one split across two writes.
    let mut m = Vec::new();
    for i in 0..300u32 {
        let p = format!("/p/{i}\0{i}");
        wire::push_msg(&mut m, MsgType::Write as u32, i, 0, &[p.as_bytes()]);
    }
    let (a, z) = m.split_at(m.len() - 5);
    c.write_all(a).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    c.write_all(z).unwrap();
    for i in 0..300u32 {
        let mut h = [0u8; 16];
        c.read_exact(&mut h).unwrap();
        let h = Header::decode(&h);
        let mut body = vec![0; h.len as usize];
        c.read_exact(&mut body).unwrap();
        assert_eq!(
            (h.ty, h.req_id, body.as_slice()),
            (MsgType::Write as u32, i, &b"OK\0"[..])
        );
    }
    assert_eq!(call(&mut c, MsgType::Read, b"/p/299\0").1, b"299");
}
