//! Request semantics through the wire protocol: watches, permissions,
//! quotas, transactions, domain management, errors.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use xenstore::wire::MsgType;
use xenstore::{Config, Engine, Quota};

#[test]
fn watch_fires_once_on_registration_then_on_changes_below() {
    let e = Engine::default();
    let mut a = Client::new(&e, 0);
    let mut b = Client::new(&e, 0);
    a.watch("/w", "tok").unwrap();
    assert_eq!(
        std::mem::take(&mut a.events),
        vec![("/w".into(), "tok".into())]
    );
    b.write("/w/x", "1").unwrap();
    b.write("/other", "1").unwrap();
    b.rm("/w").unwrap();
    let ev: Vec<String> = a.poll().into_iter().map(|x| x.0).collect();
    assert_eq!(ev, vec!["/w/x", "/w"]);
}

#[test]
fn removing_a_parent_fires_watches_on_removed_children() {
    let e = Engine::default();
    let mut a = Client::new(&e, 0);
    a.write("/p/c/d", "1").unwrap();
    a.watch("/p/c/d", "t").unwrap();
    a.events.clear();
    a.rm("/p").unwrap();
    assert_eq!(a.events, vec![("/p/c/d".to_string(), "t".to_string())]);
}

#[test]
fn relative_watch_reports_relative_paths_and_duplicates_are_eexist() {
    let e = Engine::default();
    let mut a = Client::new(&e, 0);
    a.watch("dev", "t").unwrap();
    assert_eq!(a.events.pop().unwrap().0, "dev");
    a.write("/local/domain/0/dev/vbd", "x").unwrap();
    assert_eq!(a.events.pop().unwrap().0, "dev/vbd");
    assert_eq!(a.watch("dev", "t"), Err("EEXIST".into()));
    a.unwatch("dev", "t").unwrap();
    assert_eq!(a.unwatch("dev", "t"), Err("ENOENT".into()));
    a.write("/local/domain/0/dev/x", "x").unwrap();
    assert!(a.events.is_empty());
}

#[test]
fn unprivileged_domain_sees_only_what_permissions_allow() {
    let e = Engine::default();
    let mut d0 = Client::new(&e, 0);
    let mut d5 = Client::new(&e, 5);
    d0.write("/secret/x", "s").unwrap();
    assert_eq!(d5.read("/secret/x"), Err("EACCES".into()));
    // ENOENT would leak existence information below an unreadable parent.
    assert_eq!(d5.read("/secret/nope"), Err("EACCES".into()));
    d0.set_perms("/secret/x", &["n0", "r5"]).unwrap();
    assert_eq!(d5.read("/secret/x").unwrap(), b"s");
    assert_eq!(d5.write("/secret/x", "w"), Err("EACCES".into()));
    d0.mkdir("/local/domain/5").unwrap();
    d0.set_perms("/local/domain/5", &["n5"]).unwrap();
    // Relative paths land in the domain's home, which it owns.
    d5.write("data/k", "v").unwrap();
    assert_eq!(d0.read("/local/domain/5/data/k").unwrap(), b"v");
    let perms = d0
        .call(MsgType::GetPerms, 0, &z("/local/domain/5/data/k"))
        .unwrap();
    assert_eq!(perms, b"n5\0");
    // Domains may not give nodes away, nor touch privileged requests.
    assert_eq!(d5.set_perms("data/k", &["n0"]), Err("EPERM".into()));
    assert_eq!(
        d5.call(MsgType::Introduce, 0, b"7\x000\x001\0"),
        Err("EACCES".into())
    );
}

#[test]
fn watch_events_respect_read_permission() {
    let e = Engine::default();
    let mut d0 = Client::new(&e, 0);
    let mut d5 = Client::new(&e, 5);
    d0.write("/pub", "").unwrap();
    d0.set_perms("/pub", &["n0", "r5"]).unwrap();
    d5.watch("/pub", "t").unwrap();
    d5.events.clear();
    d0.write("/pub/seen", "1").unwrap();
    d0.write("/pub/hidden", "1").unwrap();
    d0.set_perms("/pub/hidden", &["n0"]).unwrap();
    d0.write("/pub/hidden", "2").unwrap();
    let ev: Vec<String> = d5.poll().into_iter().map(|x| x.0).collect();
    // The SET_PERMS event is judged by the permissions before the change;
    // the write after it is not visible to domain 5 any more.
    assert_eq!(ev, vec!["/pub/seen", "/pub/hidden", "/pub/hidden"]);
}

fn quota_engine(q: &str) -> (Engine, Client, Client) {
    let mut quota = Quota::default();
    quota.apply_spec(q).unwrap();
    let e = Engine::new(Config { quota });
    let mut d0 = Client::new(&e, 0);
    d0.mkdir("/local/domain/5").unwrap();
    d0.set_perms("/local/domain/5", &["n5"]).unwrap();
    let d5 = Client::new(&e, 5);
    (e, d0, d5)
}

#[test]
fn node_quota_is_enforced_for_domains_not_dom0() {
    let (_e, mut d0, mut d5) = quota_engine("nodes=3");
    // The home directory itself counts: it is owned by domain 5.
    d5.write("a", "1").unwrap();
    d5.write("b", "1").unwrap();
    assert_eq!(d5.write("c", "1"), Err("ENOSPC".into()));
    d5.rm("a").unwrap();
    d5.write("c", "1").unwrap();
    for i in 0..10 {
        d0.write(&format!("/local/domain/0/n{i}"), "x").unwrap();
    }
}

#[test]
fn size_watch_transaction_and_permission_quotas() {
    let (_e, _d0, mut d5) = quota_engine("node-size=100,watches=2,transactions=1,permissions=2");
    assert_eq!(d5.write("big", &"x".repeat(200)), Err("ENOSPC".into()));
    d5.write("small", "x").unwrap();
    d5.watch("a", "1").unwrap();
    d5.watch("b", "1").unwrap();
    assert_eq!(d5.watch("c", "1"), Err("E2BIG".into()));
    let t = d5.start().unwrap();
    assert_eq!(d5.start(), Err("ENOSPC".into()));
    d5.end(t, false).unwrap();
    assert_eq!(
        d5.set_perms("small", &["n5", "r1", "r2"]),
        Err("ENOSPC".into())
    );
    d5.set_perms("small", &["n5", "r1"]).unwrap();
}

#[test]
fn get_and_set_quota() {
    let e = Engine::default();
    let mut d0 = Client::new(&e, 0);
    let names = d0.call(MsgType::GetQuota, 0, b"").unwrap();
    assert!(names.starts_with(b"nodes node-size watches"));
    assert_eq!(
        d0.call(MsgType::GetQuota, 0, &z("nodes")).unwrap(),
        b"1000\0"
    );
    d0.call(MsgType::SetQuota, 0, b"nodes\x0042\0").unwrap();
    assert_eq!(d0.call(MsgType::GetQuota, 0, &z("nodes")).unwrap(), b"42\0");
    let _d7 = Client::new(&e, 7);
    d0.call(MsgType::SetQuota, 0, b"7\0watches\x001\0").unwrap();
    assert_eq!(
        d0.call(MsgType::GetQuota, 0, b"7\0watches\0").unwrap(),
        b"1\0"
    );
    assert_eq!(
        d0.call(MsgType::GetQuota, 0, b"7\0bogus\0"),
        Err("EINVAL".into())
    );
    assert_eq!(
        d0.call(MsgType::GetQuota, 0, b"99\0nodes\0"),
        Err("ENOENT".into())
    );
}

#[test]
fn features_control_and_unknown_types() {
    let e = Engine::default();
    let mut d0 = Client::new(&e, 0);
    assert_eq!(d0.call(MsgType::GetFeature, 0, b"").unwrap(), b"3\0");
    d0.call(MsgType::SetFeature, 0, b"0\x001\0").unwrap();
    assert_eq!(d0.call(MsgType::GetFeature, 0, b"0\0").unwrap(), b"1\0");
    assert_eq!(
        d0.call(MsgType::SetFeature, 0, b"0\x008\0"),
        Err("EINVAL".into())
    );
    assert_eq!(
        d0.call(MsgType::Control, 0, b"print\0hello\0").unwrap(),
        b"OK\0"
    );
    assert_eq!(d0.call(MsgType::Control, 0, b"log\0on\0").unwrap(), b"OK\0");
    assert_eq!(
        d0.call(MsgType::Control, 0, b"nonsense\0"),
        Err("EINVAL".into())
    );
    for ty in [20, 27, 0xffff, 12345] {
        assert_eq!(d0.call_raw(ty, 0, b"x\0"), Err("EINVAL".into()));
    }
    // The connection survives all of that.
    d0.write("/still", "here").unwrap();
}

#[test]
fn malformed_payloads_get_einval() {
    let e = Engine::default();
    let mut d0 = Client::new(&e, 0);
    assert_eq!(
        d0.call(MsgType::Read, 0, b"/a"),
        Err("EINVAL".into()),
        "missing NUL"
    );
    assert_eq!(
        d0.call(MsgType::Read, 0, b"/\xff\xfe\0"),
        Err("EINVAL".into()),
        "bad UTF-8"
    );
    assert_eq!(d0.call(MsgType::Write, 0, b"/a"), Err("EINVAL".into()));
    assert_eq!(d0.call(MsgType::Watch, 0, b"/a\0"), Err("EINVAL".into()));
    assert_eq!(
        d0.call(MsgType::SetPerms, 0, b"/a\0q5\0"),
        Err("EINVAL".into())
    );
    assert_eq!(d0.call(MsgType::Read, 0, b"/a//b\0"), Err("EINVAL".into()));
    // Values are binary and may hold anything.
    d0.call(MsgType::Write, 0, b"/bin\0\xff\0\x01").unwrap();
    assert_eq!(d0.read("/bin").unwrap(), b"\xff\0\x01");
}

#[test]
fn transaction_conflict_gives_eagain_and_abort_discards() {
    let e = Engine::default();
    let mut a = Client::new(&e, 0);
    let mut b = Client::new(&e, 0);
    a.write("/t/x", "0").unwrap();
    let t = a.start().unwrap();
    assert_eq!(a.read_tx(t, "/t/x").unwrap(), b"0");
    b.write("/t/x", "1").unwrap();
    // The transaction keeps seeing its own copy.
    assert_eq!(a.read_tx(t, "/t/x").unwrap(), b"0");
    a.write_tx(t, "/t/y", "new").unwrap();
    assert_eq!(a.read("/t/y"), Err("ENOENT".into()));
    assert_eq!(a.end(t, true), Err("EAGAIN".into()));
    assert_eq!(a.read("/t/y"), Err("ENOENT".into()));
    // Unknown transaction ids are ENOENT.
    assert_eq!(a.read_tx(t, "/t/x"), Err("ENOENT".into()));
    let t = a.start().unwrap();
    a.write_tx(t, "/t/z", "1").unwrap();
    a.end(t, false).unwrap();
    assert_eq!(a.read("/t/z"), Err("ENOENT".into()));
    assert_eq!(
        a.call(MsgType::TransactionStart, 5, b"\0"),
        Err("EBUSY".into())
    );
}

#[test]
fn committed_transaction_fires_watches_at_commit() {
    let e = Engine::default();
    let mut a = Client::new(&e, 0);
    let mut w = Client::new(&e, 0);
    w.watch("/tc", "t").unwrap();
    w.events.clear();
    let t = a.start().unwrap();
    a.write_tx(t, "/tc/a", "1").unwrap();
    assert!(w.poll().is_empty());
    a.end(t, true).unwrap();
    assert_eq!(w.poll(), vec![("/tc/a".to_string(), "t".to_string())]);
}

#[test]
fn directory_part_pages_through_children() {
    let e = Engine::default();
    let mut a = Client::new(&e, 0);
    let names: Vec<String> = (0..300)
        .map(|i| format!("child-with-a-long-name-{i:04}"))
        .collect();
    for n in &names {
        a.write(&format!("/big/{n}"), "").unwrap();
    }
    assert_eq!(a.dir("/big").unwrap_err(), "E2BIG");
    let mut got = Vec::new();
    let mut off = 0;
    loop {
        let mut req = z("/big");
        req.extend_from_slice(&z(&off.to_string()));
        let body = a.call(MsgType::DirectoryPart, 0, &req).unwrap();
        assert!(body.len() <= 4096);
        let parts = xenstore::wire::split_strings(&body);
        let chunk: Vec<String> = parts[1..]
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        let done = body.ends_with(b"\0\0");
        for c in chunk.iter().filter(|c| !c.is_empty()) {
            off += c.len() + 1;
            got.push(c.clone());
        }
        if done {
            break;
        }
    }
    assert_eq!(got, names);
}

#[test]
fn domain_introduction_and_release_fire_special_watches() {
    let e = Engine::default();
    let mut d0 = Client::new(&e, 0);
    d0.watch("@introduceDomain", "i").unwrap();
    d0.watch("@releaseDomain", "r").unwrap();
    d0.events.clear();
    assert_eq!(
        d0.call(MsgType::IsDomainIntroduced, 0, b"4\0").unwrap(),
        b"F\0"
    );
    d0.call(MsgType::Introduce, 0, b"4\x00123\x005\0").unwrap();
    assert_eq!(
        d0.call(MsgType::IsDomainIntroduced, 0, b"4\0").unwrap(),
        b"T\0"
    );
    e.introduce_domain(6);
    let mut d6 = Client::new(&e, 6);
    d6.write("/local/domain/6/x", "1").unwrap_err();
    d0.call(MsgType::Release, 0, b"4\0").unwrap();
    e.release_domain(6).unwrap();
    assert_eq!(d0.call(MsgType::Release, 0, b"4\0"), Err("ENOENT".into()));
    let ev: Vec<String> = d0.poll().into_iter().map(|x| x.1).collect();
    assert_eq!(ev, vec!["i", "i", "r", "r"]);
    assert!(e.is_closed(d6.conn));
    assert_eq!(
        d0.call(MsgType::GetDomainPath, 0, b"6\0").unwrap(),
        b"/local/domain/6\0"
    );
}

#[test]
fn rust_api_transaction_helper_writes_atomically() {
    let e = Engine::default();
    let mut w = Client::new(&e, 0);
    w.watch("/libxl", "t").unwrap();
    w.events.clear();
    e.transaction(|t| {
        t.write("/libxl/5/type", b"pvh")?;
        t.mkdir("/local/domain/5")?;
        t.set_perms("/local/domain/5", &xenstore::perms::Perms::owned_by(5))
    })
    .unwrap();
    assert_eq!(e.read("/libxl/5/type").unwrap(), b"pvh");
    assert_eq!(e.get_perms("/local/domain/5").unwrap().owner(), 5);
    assert_eq!(e.directory("/local/domain").unwrap(), vec!["5"]);
    assert_eq!(w.poll().len(), 1);
    e.rm("/libxl").unwrap();
    assert_eq!(e.read("/libxl/5/type"), Err(xenstore::XsError::NoEnt));
}

#[test]
fn rm_semantics_match_xen() {
    let e = Engine::default();
    let mut a = Client::new(&e, 0);
    a.write("/r/x", "1").unwrap();
    a.rm("/r/missing").unwrap();
    assert_eq!(a.rm("/nope/missing"), Err("ENOENT".into()));
    assert_eq!(a.rm("/"), Err("EINVAL".into()));
    a.rm("/r").unwrap();
    assert_eq!(a.dir("/").unwrap(), vec!["tool"]);
}

#[test]
fn memory_quota_gives_enomem() {
    let (_e, _d0, mut d5) = quota_engine("memory=4000,node-size=0");
    d5.write("a", &"x".repeat(1500)).unwrap();
    d5.write("b", &"x".repeat(1500)).unwrap();
    assert_eq!(d5.write("c", &"x".repeat(1500)), Err("ENOMEM".into()));
    assert_eq!(d5.write("a", &"x".repeat(3000)), Err("ENOMEM".into()));
}

#[test]
fn transaction_node_quota() {
    let (_e, _d0, mut d5) = quota_engine("transaction-nodes=3");
    let t = d5.start().unwrap();
    for k in ["a", "b"] {
        d5.write_tx(t, k, "1").unwrap();
    }
    assert_eq!(d5.write_tx(t, "c", "1"), Err("ENOSPC".into()));
}
