//! Transactions against a model: two clients run random transactions in
//! random interleavings (plus plain writes from a third); every committed
//! transaction must be explainable by running it alone at its commit
//! point, and the final store must equal that serial history.
#![allow(clippy::unwrap_used)]

mod common;
use common::Client;
use proptest::prelude::*;
use std::collections::HashMap;
use xenstore::Engine;

const KEYS: [&str; 3] = ["/m/a", "/m/b", "/m/c"];

#[derive(Clone, Debug)]
enum Op {
    Read(usize),
    Write(usize, u8),
    Rm(usize),
}

#[derive(Clone, Debug)]
enum Step {
    /// Advance client 0 or 1 by one action.
    Client(usize),
    /// A non-transactional write from a third client.
    Plain(usize, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize).prop_map(Op::Read),
        (0..3usize, any::<u8>()).prop_map(|(k, v)| Op::Write(k, v)),
        (0..3usize).prop_map(Op::Rm),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..2usize).prop_map(Step::Client),
        1 => (0..3usize, any::<u8>()).prop_map(|(k, v)| Step::Plain(k, v)),
    ]
}

type Model = HashMap<usize, String>;

struct Runner {
    client: Client,
    txns: Vec<Vec<Op>>,
    /// Which transaction, and which action in it (0 = start, 1..=n ops,
    /// n+1 = commit).
    txn: usize,
    pos: usize,
    tx: u32,
    /// What this transaction observed (first reads not preceded by its own
    /// write) and what it wrote.
    seen: Vec<(usize, Option<String>)>,
    local: HashMap<usize, Option<String>>,
}

impl Runner {
    fn act(&mut self, model: &mut Model) -> Result<(), TestCaseError> {
        let Some(ops) = self.txns.get(self.txn).cloned() else {
            return Ok(());
        };
        if self.pos == 0 {
            self.tx = self.client.start().map_err(TestCaseError::fail)?;
            self.seen.clear();
            self.local.clear();
        } else if self.pos <= ops.len() {
            match &ops[self.pos - 1] {
                Op::Read(k) => {
                    let got = self
                        .client
                        .read_tx(self.tx, KEYS[*k])
                        .ok()
                        .map(|v| String::from_utf8(v).unwrap());
                    match self.local.get(k) {
                        Some(mine) => prop_assert_eq!(&got, mine, "read-your-writes"),
                        None => self.seen.push((*k, got)),
                    }
                }
                Op::Write(k, v) => {
                    self.client
                        .write_tx(self.tx, KEYS[*k], &v.to_string())
                        .map_err(TestCaseError::fail)?;
                    self.local.insert(*k, Some(v.to_string()));
                }
                Op::Rm(k) => {
                    self.client
                        .call(xenstore::wire::MsgType::Rm, self.tx, &common::z(KEYS[*k]))
                        .map_err(TestCaseError::fail)?;
                    self.local.insert(*k, None);
                }
            }
        } else {
            match self.client.end(self.tx, true) {
                Ok(()) => {
                    // Serial check at the commit point.
                    for (k, v) in &self.seen {
                        prop_assert_eq!(
                            v.as_ref(),
                            model.get(k),
                            "transaction read a value that no serial order explains"
                        );
                    }
                    for (k, v) in self.local.drain() {
                        match v {
                            Some(v) => model.insert(k, v),
                            None => model.remove(&k),
                        };
                    }
                }
                Err(e) => prop_assert_eq!(e, "EAGAIN"),
            }
            self.txn += 1;
            self.pos = 0;
            return Ok(());
        }
        self.pos += 1;
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn committed_transactions_are_serializable(
        txns0 in prop::collection::vec(prop::collection::vec(op(), 1..5), 1..5),
        txns1 in prop::collection::vec(prop::collection::vec(op(), 1..5), 1..5),
        steps in prop::collection::vec(step(), 1..80),
    ) {
        let e = Engine::default();
        let mut plain = Client::new(&e, 0);
        plain.write("/m", "").unwrap();
        let mut model = Model::new();
        let mut runners = [txns0, txns1].map(|txns| Runner {
            client: Client::new(&e, 0), txns, txn: 0, pos: 0, tx: 0, seen: Vec::new(), local: HashMap::new(),
        });
        for s in steps {
            match s {
                Step::Client(i) => runners[i].act(&mut model)?,
                Step::Plain(k, v) => {
                    plain.write(KEYS[k], &v.to_string()).unwrap();
                    model.insert(k, v.to_string());
                }
            }
        }
        for (k, key) in KEYS.iter().enumerate() {
            let got = e.read(key).ok().map(|v| String::from_utf8(v).unwrap());
            prop_assert_eq!(got.as_ref(), model.get(&k));
        }
    }
}
