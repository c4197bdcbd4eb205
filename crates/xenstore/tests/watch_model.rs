//! Watch delivery against a model: random writes and removals in a small
//! tree, watches on random paths; every change must produce exactly the
//! events Xen's rules give (a change fires watches on the path and its
//! ancestors; a removal also fires watches on each removed descendant).
#![allow(clippy::unwrap_used)]

mod common;
use common::Client;
use proptest::prelude::*;
use std::collections::BTreeSet;
use xenstore::path::{is_child, parent};
use xenstore::Engine;

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..4)
        .prop_map(|v| format!("/w/{}", v.join("/")))
}

#[derive(Clone, Debug)]
enum Op {
    Write(String),
    Rm(String),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![3 => path().prop_map(Op::Write), 1 => path().prop_map(Op::Rm)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn events_match_the_model(
        watches in prop::collection::btree_set(path(), 1..5),
        ops in prop::collection::vec(op(), 1..30),
    ) {
        let e = Engine::default();
        let mut actor = Client::new(&e, 0);
        let mut watcher = Client::new(&e, 0);
        actor.write("/w", "").unwrap();
        let watches: Vec<String> = watches.into_iter().collect();
        for (i, w) in watches.iter().enumerate() {
            watcher.watch(w, &i.to_string()).unwrap();
        }
        watcher.events.clear();
        let mut tree: BTreeSet<String> = BTreeSet::from(["/w".to_string()]);
        for op in ops {
            let mut want: Vec<(String, String)> = Vec::new();
            let fire = |p: &str, exact: bool, want: &mut Vec<(String, String)>| {
                for (i, w) in watches.iter().enumerate() {
                    if (exact && w == p) || (!exact && is_child(p, w)) {
                        want.push((p.to_string(), i.to_string()));
                    }
                }
            };
            match op {
                Op::Write(p) => {
                    actor.write(&p, "v").unwrap();
                    let mut q = p.as_str();
                    while q != "/" {
                        tree.insert(q.to_string());
                        q = parent(q);
                    }
                    fire(&p, false, &mut want);
                }
                Op::Rm(p) => {
                    let r = actor.rm(&p);
                    if tree.contains(&p) {
                        r.unwrap();
                        let gone: Vec<String> = tree.iter().filter(|q| is_child(q, &p)).cloned().collect();
                        for q in &gone {
                            tree.remove(q);
                        }
                        // Descendants go first, deepest first, as Xen walks them.
                        let mut below: Vec<&String> = gone.iter().filter(|q| **q != p).collect();
                        below.sort_by_key(|q| std::cmp::Reverse(q.len()));
                        let mut exact = Vec::new();
                        for q in below {
                            fire(q, true, &mut exact);
                        }
                        let mut got_exact: Vec<_> = watcher.poll();
                        let tail = got_exact.split_off(got_exact.len().saturating_sub(want_len(&watches, &p)));
                        got_exact.sort();
                        exact.sort();
                        prop_assert_eq!(got_exact, exact);
                        fire(&p, false, &mut want);
                        prop_assert_eq!(tail, want);
                        continue;
                    } else if tree.contains(parent(&p)) {
                        r.unwrap();
                    } else {
                        prop_assert_eq!(r, Err("ENOENT".to_string()));
                    }
                }
            }
            prop_assert_eq!(watcher.poll(), want);
        }
    }
}

/// How many watches a change of `p` fires non-exactly.
fn want_len(watches: &[String], p: &str) -> usize {
    watches.iter().filter(|w| is_child(p, w)).count()
}
