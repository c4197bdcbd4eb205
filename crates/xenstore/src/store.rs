//! The tree: nodes keyed by absolute path, each with a value, a
//! permission list, its children's names (in creation order, as Xen
//! lists them) and a generation count; plus per-domain usage for quotas.

use crate::path;
use crate::perms::Perms;
use crate::DomId;
use std::collections::HashMap;

/// One node of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The value (arbitrary bytes).
    pub value: Vec<u8>,
    /// Owner and access list.
    pub perms: Perms,
    /// Child names, in creation order.
    pub children: Children,
    /// Changes whenever the node is written (store-wide counter).
    pub generation: u64,
}

impl Node {
    /// A new empty node with the given permissions.
    pub fn new(perms: Perms) -> Node {
        Node {
            value: Vec::new(),
            perms,
            children: Children::default(),
            generation: 0,
        }
    }

    /// The size Xen's node-size quota measures: record header, permission
    /// entries, value and the NUL-terminated child names.
    pub fn record_size(&self) -> usize {
        24 + 8 * self.perms.0.len() + self.value.len() + self.children_len()
    }

    /// Bytes of the NUL-terminated child-name list.
    pub fn children_len(&self) -> usize {
        self.children.as_bytes().len()
    }

    fn memory(&self, path: &str) -> usize {
        path.len() + self.record_size()
    }
}

/// A node's child names as Xen keeps them: one buffer of NUL-terminated
/// names in creation order (one allocation per node, and DIRECTORY's reply
/// is the buffer itself).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Children(String);

impl Children {
    /// Appends a name (which never contains NUL: paths are validated).
    pub fn push(&mut self, name: &str) {
        self.0.push_str(name);
        self.0.push('\0');
    }

    /// Removes a name; false if absent.
    pub fn remove(&mut self, name: &str) -> bool {
        let mut at = 0;
        let mut found = None;
        for n in self.iter() {
            if n == name {
                found = Some(at..at + n.len() + 1);
                break;
            }
            at += n.len() + 1;
        }
        match found {
            Some(r) => {
                self.0.replace_range(r, "");
                true
            }
            None => false,
        }
    }

    /// The names, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split_terminator('\0')
    }

    /// The NUL-terminated list (DIRECTORY's reply body).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// No children?
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What one domain uses (for quotas).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Nodes it owns.
    pub nodes: isize,
    /// Bytes its nodes use.
    pub memory: isize,
}

/// The committed tree.
#[derive(Debug)]
pub struct Store {
    nodes: HashMap<Box<str>, Node>,
    next_generation: u64,
    usage: HashMap<DomId, Usage>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// A store with Xen's initial tree: `/`, `/tool` and `/tool/xenstored`,
    /// owned by dom0 with no access for others (the toolstack creates
    /// `/local/domain/...`).
    pub fn new() -> Store {
        let mut s = Store {
            nodes: HashMap::new(),
            next_generation: 1,
            usage: HashMap::new(),
        };
        let mut root = Node::new(Perms::owned_by(0));
        root.children.push("tool");
        s.insert("/", root);
        let mut tool = Node::new(Perms::owned_by(0));
        tool.children.push("xenstored");
        s.insert("/tool", tool);
        s.insert("/tool/xenstored", Node::new(Perms::owned_by(0)));
        s
    }

    /// Looks a node up.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Current generation of a node, 0 when absent.
    pub fn generation_of(&self, path: &str) -> u64 {
        self.nodes.get(path).map_or(0, |n| n.generation)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never empty (the root always exists); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Usage of one domain.
    pub fn usage(&self, domid: DomId) -> Usage {
        self.usage.get(&domid).copied().unwrap_or_default()
    }

    fn account(&mut self, path: &str, node: &Node, sign: isize) {
        let u = self.usage.entry(node.perms.owner()).or_default();
        u.nodes += sign;
        u.memory += sign * node.memory(path) as isize;
    }

    fn bump(&mut self) -> u64 {
        let g = self.next_generation;
        self.next_generation += 1;
        g
    }

    /// Inserts or replaces a node, giving it a fresh generation.
    pub fn insert(&mut self, path: &str, mut node: Node) {
        node.generation = self.bump();
        self.account(path, &node, 1);
        if let Some(old) = self.nodes.get_mut(path) {
            let old = std::mem::replace(old, node);
            self.account(path, &old, -1);
        } else {
            self.nodes.insert(path.into(), node);
        }
    }

    /// Removes a node (not its children or its parent's link).
    pub fn remove(&mut self, path: &str) -> Option<Node> {
        let old = self.nodes.remove(path)?;
        self.account(path, &old, -1);
        Some(old)
    }

    /// Changes an existing node in place (fresh generation, usage kept
    /// exact). Returns false when the node does not exist.
    pub fn modify(&mut self, path: &str, f: impl FnOnce(&mut Node)) -> bool {
        let g = self.bump();
        let Some(node) = self.nodes.get_mut(path) else {
            return false;
        };
        let (owner, mem) = (node.perms.owner(), node.memory(path));
        f(node);
        node.generation = g;
        let (owner2, mem2) = (node.perms.owner(), node.memory(path));
        let u = self.usage.entry(owner).or_default();
        u.nodes -= 1;
        u.memory -= mem as isize;
        let u = self.usage.entry(owner2).or_default();
        u.nodes += 1;
        u.memory += mem2 as isize;
        true
    }
}

/// Reads and writes of one request, either straight to the store or into
/// a transaction's overlay.
pub trait Access {
    /// The node at `path` as this view sees it.
    fn get(&mut self, path: &str) -> Option<&Node>;
    /// Inserts or replaces a node.
    fn put(&mut self, path: &str, node: Node);
    /// Removes a node (only that node).
    fn del(&mut self, path: &str);
    /// Changes an existing node; false when absent.
    fn modify(&mut self, path: &str, f: &mut dyn FnMut(&mut Node)) -> bool;
    /// The usage of `domid` as this view sees it.
    fn usage(&self, domid: DomId) -> Usage;
    /// Number of distinct nodes this view has touched (transactions only).
    fn touched(&self) -> usize;
}

impl Access for Store {
    fn get(&mut self, path: &str) -> Option<&Node> {
        Store::get(self, path)
    }
    fn put(&mut self, path: &str, node: Node) {
        self.insert(path, node)
    }
    fn del(&mut self, path: &str) {
        self.remove(path);
    }
    fn modify(&mut self, path: &str, f: &mut dyn FnMut(&mut Node)) -> bool {
        Store::modify(self, path, f)
    }
    fn usage(&self, domid: DomId) -> Usage {
        Store::usage(self, domid)
    }
    fn touched(&self) -> usize {
        0
    }
}

/// A transaction's private state. Like Xen's, the first access to a node
/// takes a private copy (reads see that copy from then on) and remembers
/// the node's generation; commit succeeds only if no node the transaction
/// accessed has changed in the store since that first access.
#[derive(Debug, Default)]
pub struct Txn {
    nodes: HashMap<Box<str>, TxEntry>,
    delta: HashMap<DomId, Usage>,
    /// Watch events to fire if and when the transaction commits.
    pub events: Vec<crate::watch::Event>,
}

#[derive(Debug)]
struct TxEntry {
    node: Option<Node>,
    base_generation: u64,
    dirty: bool,
}

impl Txn {
    /// Applies the transaction to the store, or gives it back (EAGAIN)
    /// when another writer changed a node this transaction accessed.
    pub fn commit(self, store: &mut Store) -> Result<Vec<crate::watch::Event>, Txn> {
        if self
            .nodes
            .iter()
            .any(|(p, e)| store.generation_of(p) != e.base_generation)
        {
            return Err(self);
        }
        for (p, e) in self.nodes {
            if !e.dirty {
                continue;
            }
            match e.node {
                Some(node) => store.insert(&p, node),
                None => {
                    store.remove(&p);
                }
            }
        }
        Ok(self.events)
    }

    fn entry(&mut self, store: &Store, path: &str) -> &mut TxEntry {
        if !self.nodes.contains_key(path) {
            let node = store.get(path).cloned();
            let base_generation = node.as_ref().map_or(0, |n| n.generation);
            self.nodes.insert(
                path.into(),
                TxEntry {
                    node,
                    base_generation,
                    dirty: false,
                },
            );
        }
        self.nodes.get_mut(path).expect("entry was just inserted")
    }

    fn adjust(&mut self, path: &str, node: Option<&Node>, sign: isize) {
        if let Some(n) = node {
            let u = self.delta.entry(n.perms.owner()).or_default();
            u.nodes += sign;
            u.memory += sign * n.memory(path) as isize;
        }
    }
}

/// A transaction's view: the store underneath its private copies.
pub struct TxView<'a> {
    /// The committed store (read only until commit).
    pub store: &'a Store,
    /// The transaction.
    pub txn: &'a mut Txn,
}

impl Access for TxView<'_> {
    fn get(&mut self, path: &str) -> Option<&Node> {
        self.txn.entry(self.store, path).node.as_ref()
    }

    fn put(&mut self, path: &str, node: Node) {
        let old = self.txn.entry(self.store, path).node.take();
        self.txn.adjust(path, old.as_ref(), -1);
        self.txn.adjust(path, Some(&node), 1);
        let e = self.txn.entry(self.store, path);
        e.node = Some(node);
        e.dirty = true;
    }

    fn del(&mut self, path: &str) {
        let old = self.txn.entry(self.store, path).node.take();
        self.txn.adjust(path, old.as_ref(), -1);
        self.txn.entry(self.store, path).dirty = true;
    }

    fn modify(&mut self, path: &str, f: &mut dyn FnMut(&mut Node)) -> bool {
        let Some(mut node) = self.txn.entry(self.store, path).node.take() else {
            return false;
        };
        let before = node.clone();
        f(&mut node);
        self.txn.adjust(path, Some(&before), -1);
        self.txn.adjust(path, Some(&node), 1);
        let e = self.txn.entry(self.store, path);
        e.node = Some(node);
        e.dirty = true;
        true
    }

    fn usage(&self, domid: DomId) -> Usage {
        let a = self.store.usage(domid);
        let d = self.txn.delta.get(&domid).copied().unwrap_or_default();
        Usage {
            nodes: a.nodes + d.nodes,
            memory: a.memory + d.memory,
        }
    }

    fn touched(&self) -> usize {
        self.txn.nodes.len()
    }
}

/// All paths in the subtree at `root` (including it), children before
/// their parents, as this view sees them.
pub fn subtree_postorder(view: &mut dyn Access, root: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_owned(), false)];
    while let Some((p, expanded)) = stack.pop() {
        if expanded {
            out.push(p);
            continue;
        }
        let kids: Vec<String> = match view.get(&p) {
            Some(n) => n.children.iter().map(|c| path::join(&p, c)).collect(),
            None => continue,
        };
        stack.push((p, true));
        for k in kids.into_iter().rev() {
            stack.push((k, false));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_keep_creation_order_and_remove_exact_names() {
        let mut c = Children::default();
        for n in ["b", "a", "ab", "a-1"] {
            c.push(n);
        }
        assert!(c.remove("a"));
        assert!(!c.remove("x"));
        assert_eq!(c.iter().collect::<Vec<_>>(), ["b", "ab", "a-1"]);
        assert_eq!(c.as_bytes(), b"b\0ab\0a-1\0");
        assert!(c.remove("b") && c.remove("ab") && c.remove("a-1") && c.is_empty());
    }

    #[test]
    fn generations_increase_on_every_write() {
        let mut s = Store::new();
        s.insert("/x", Node::new(Perms::owned_by(0)));
        let g1 = s.generation_of("/x");
        assert!(s.modify("/x", |n| n.value = b"v".to_vec()));
        assert!(s.generation_of("/x") > g1);
        assert_eq!(s.generation_of("/nope"), 0);
    }

    #[test]
    fn usage_follows_the_owner() {
        let mut s = Store::new();
        s.insert("/x", Node::new(Perms::owned_by(3)));
        assert_eq!(s.usage(3).nodes, 1);
        s.modify("/x", |n| n.perms = Perms::owned_by(4));
        assert_eq!((s.usage(3).nodes, s.usage(4).nodes), (0, 1));
        s.remove("/x");
        assert_eq!(s.usage(4), Usage::default());
    }

    #[test]
    fn transaction_conflicts_on_intervening_write() {
        let mut s = Store::new();
        s.insert("/x", Node::new(Perms::owned_by(0)));
        let mut t = Txn::default();
        let mut v = TxView {
            store: &s,
            txn: &mut t,
        };
        assert!(v.get("/x").is_some());
        v.modify("/x", &mut |n| n.value = b"t".to_vec());
        s.modify("/x", |n| n.value = b"other".to_vec());
        assert!(t.commit(&mut s).is_err());
        assert_eq!(s.get("/x").unwrap().value, b"other");
    }
}
