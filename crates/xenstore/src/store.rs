//! The tree: nodes keyed by absolute path, each with a value, a
//! permission list, its children's names (in creation order, as Xen
//! lists them) and a generation count; plus per-domain usage for quotas.
//!
//! The committed store keeps each node as one packed record (path, value,
//! permissions, child names and generation in a single allocation) in a
//! hash table of those records, as Xen keeps one TDB record per node: a
//! 100k-node store then costs about a hash-table slot and one small
//! allocation per node. Requests read nodes through [`NodeRef`] views of
//! the packed bytes; writes unpack a [`Node`], change it and pack it again.

use crate::path;
use crate::perms::{Perms, PermsRef, PACKED_PERM_LEN};
use crate::DomId;
use hashbrown::HashTable;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

/// One node of the tree, unpacked (for building and changing nodes, and
/// in transactions).
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
        self.view().record_size()
    }

    /// Bytes of the NUL-terminated child-name list.
    pub fn children_len(&self) -> usize {
        self.children.as_bytes().len()
    }

    /// A borrowed view, as the store hands out.
    pub fn view(&self) -> NodeRef<'_> {
        NodeRef {
            value: &self.value,
            perms: self.perms.as_ref(),
            children: Names(self.children.as_bytes()),
            generation: self.generation,
        }
    }
}

/// A borrowed node: a view of a packed store record or of a [`Node`].
#[derive(Clone, Copy, Debug)]
pub struct NodeRef<'a> {
    /// The value.
    pub value: &'a [u8],
    /// Owner and access list.
    pub perms: PermsRef<'a>,
    /// Child names, in creation order.
    pub children: Names<'a>,
    /// See [`Node::generation`].
    pub generation: u64,
}

impl NodeRef<'_> {
    /// See [`Node::record_size`].
    pub fn record_size(&self) -> usize {
        24 + 8 * self.perms.len() + self.value.len() + self.children_len()
    }

    /// Bytes of the NUL-terminated child-name list.
    pub fn children_len(&self) -> usize {
        self.children.as_bytes().len()
    }

    /// An owned, unpacked copy.
    pub fn to_node(&self) -> Node {
        Node {
            value: self.value.to_vec(),
            perms: self.perms.to_perms(),
            // Child names come from `&str` paths, so the list is UTF-8.
            children: Children(
                std::str::from_utf8(self.children.as_bytes())
                    .unwrap_or_default()
                    .to_owned(),
            ),
            generation: self.generation,
        }
    }

    fn memory(&self, path: &str) -> usize {
        path.len() + self.record_size()
    }
}

/// A borrowed NUL-terminated child-name list.
#[derive(Clone, Copy, Debug)]
pub struct Names<'a>(&'a [u8]);

impl<'a> Names<'a> {
    /// The NUL-terminated list (DIRECTORY's reply body).
    pub fn as_bytes(self) -> &'a [u8] {
        self.0
    }

    /// The names, in order.
    pub fn iter(self) -> impl Iterator<Item = &'a str> {
        // Names come from validated `&str` paths, so they are UTF-8.
        self.0
            .split(|&b| b == 0)
            .take_while(|n| !n.is_empty())
            .filter_map(|n| std::str::from_utf8(n).ok())
    }
}

/// A node's child names as Xen keeps them: one buffer of NUL-terminated
/// names in creation order (DIRECTORY's reply is the buffer itself).
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

/// The packed record of one node:
/// `[path length][path][generation: 8 bytes LE][value length][permission
/// count][value][permissions][NUL-terminated child names]`, lengths and
/// counts as LEB128 (one byte below 128). Only [`pack`] writes records,
/// so [`unpack`] trusts their layout.
mod record {
    use super::*;

    fn put_len(out: &mut Vec<u8>, mut v: usize) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn len_len(mut v: usize) -> usize {
        let mut n = 1;
        while v >= 0x80 {
            v >>= 7;
            n += 1;
        }
        n
    }

    fn get_len(r: &[u8], at: &mut usize) -> usize {
        let (mut v, mut shift) = (0usize, 0);
        while let Some(&b) = r.get(*at) {
            *at += 1;
            v |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        v
    }

    /// Packs `node` at `path` into one exactly sized allocation.
    pub fn pack(path: &str, node: NodeRef<'_>) -> Box<[u8]> {
        let (value, perms, kids) = (node.value, node.perms, node.children.as_bytes());
        let len = len_len(path.len())
            + path.len()
            + 8
            + len_len(value.len())
            + len_len(perms.len())
            + value.len()
            + perms.len() * PACKED_PERM_LEN
            + kids.len();
        let mut out = Vec::with_capacity(len);
        put_len(&mut out, path.len());
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(&node.generation.to_le_bytes());
        put_len(&mut out, value.len());
        put_len(&mut out, perms.len());
        out.extend_from_slice(value);
        match perms {
            PermsRef::Packed(b) => out.extend_from_slice(b),
            PermsRef::List(l) => PermsRef::pack(l, &mut out),
        }
        out.extend_from_slice(kids);
        debug_assert_eq!(out.len(), len);
        out.into_boxed_slice()
    }

    /// Sets the generation and a value of unchanged length in place.
    pub fn overwrite(r: &mut [u8], generation: u64, value: &[u8]) {
        let mut at = 0;
        at += get_len(r, &mut at);
        if let Some(g) = r.get_mut(at..at + 8) {
            g.copy_from_slice(&generation.to_le_bytes());
        }
        at += 8;
        let vlen = get_len(r, &mut at);
        get_len(r, &mut at);
        debug_assert_eq!(vlen, value.len());
        if let Some(v) = r.get_mut(at..at + value.len()) {
            v.copy_from_slice(value);
        }
    }

    /// The path a record is for.
    pub fn path(r: &[u8]) -> &[u8] {
        let mut at = 0;
        let n = get_len(r, &mut at);
        r.get(at..at + n).unwrap_or_default()
    }

    /// A view of a record's node.
    pub fn unpack(r: &[u8]) -> NodeRef<'_> {
        let mut at = 0;
        let plen = get_len(r, &mut at);
        at += plen;
        let mut g = [0u8; 8];
        if let Some(b) = r.get(at..at + 8) {
            g.copy_from_slice(b);
        }
        at += 8;
        let vlen = get_len(r, &mut at);
        let np = get_len(r, &mut at);
        let rest = r.get(at..).unwrap_or_default();
        let (value, rest) = rest.split_at(vlen.min(rest.len()));
        let (perms, kids) = rest.split_at((np * PACKED_PERM_LEN).min(rest.len()));
        NodeRef {
            value,
            perms: PermsRef::Packed(perms),
            children: Names(kids),
            generation: u64::from_le_bytes(g),
        }
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
pub struct Store {
    /// Packed node records, found by the hash of their path.
    nodes: HashTable<Box<[u8]>>,
    /// Keyed per store, so guests cannot aim paths at one bucket.
    hasher: RandomState,
    next_generation: u64,
    usage: HashMap<DomId, Usage>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("nodes", &self.nodes.len())
            .field("next_generation", &self.next_generation)
            .finish()
    }
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
            nodes: HashTable::new(),
            hasher: RandomState::new(),
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

    fn hash(&self, path: &str) -> u64 {
        self.hasher.hash_one(path.as_bytes())
    }

    /// Looks a node up.
    pub fn get(&self, path: &str) -> Option<NodeRef<'_>> {
        let h = self.hash(path);
        self.nodes
            .find(h, |r| record::path(r) == path.as_bytes())
            .map(|r| record::unpack(r))
    }

    /// Current generation of a node, 0 when absent.
    pub fn generation_of(&self, path: &str) -> u64 {
        self.get(path).map_or(0, |n| n.generation)
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

    fn account(usage: &mut HashMap<DomId, Usage>, path: &str, node: NodeRef<'_>, sign: isize) {
        let u = usage.entry(node.perms.owner()).or_default();
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
        Self::account(&mut self.usage, path, node.view(), 1);
        let rec = record::pack(path, node.view());
        let h = self.hash(path);
        let Store {
            nodes,
            hasher,
            usage,
            ..
        } = self;
        if let Some(slot) = nodes.find_mut(h, |r| record::path(r) == path.as_bytes()) {
            let old = std::mem::replace(slot, rec);
            Self::account(usage, path, record::unpack(&old), -1);
        } else {
            nodes.insert_unique(h, rec, |r| hasher.hash_one(record::path(r)));
        }
    }

    /// Removes a node (not its children or its parent's link); false when
    /// absent.
    pub fn remove(&mut self, path: &str) -> bool {
        let h = self.hash(path);
        let Ok(e) = self
            .nodes
            .find_entry(h, |r| record::path(r) == path.as_bytes())
        else {
            return false;
        };
        let (old, _) = e.remove();
        Self::account(&mut self.usage, path, record::unpack(&old), -1);
        true
    }

    /// Replaces an existing node's value (fresh generation): WRITE's
    /// common case, packed straight into the new record. Returns false
    /// when the node does not exist.
    pub fn set_value(&mut self, path: &str, value: &[u8]) -> bool {
        let g = self.bump();
        let h = self.hash(path);
        let Store { nodes, usage, .. } = self;
        let Some(slot) = nodes.find_mut(h, |r| record::path(r) == path.as_bytes()) else {
            return false;
        };
        let old = record::unpack(slot);
        Self::account(usage, path, old, -1);
        let new = NodeRef {
            value,
            generation: g,
            ..old
        };
        Self::account(usage, path, new, 1);
        if old.value.len() == value.len() {
            // Same size (the usual rewrite of a flag or counter): update
            // the record in place rather than allocating a new one.
            record::overwrite(slot, g, value);
        } else {
            *slot = record::pack(path, new);
        }
        true
    }

    /// Changes an existing node in place (fresh generation, usage kept
    /// exact). Returns false when the node does not exist.
    pub fn modify(&mut self, path: &str, f: impl FnOnce(&mut Node)) -> bool {
        let g = self.bump();
        let h = self.hash(path);
        let Store { nodes, usage, .. } = self;
        let Some(slot) = nodes.find_mut(h, |r| record::path(r) == path.as_bytes()) else {
            return false;
        };
        let old = record::unpack(slot);
        Self::account(usage, path, old, -1);
        let mut node = old.to_node();
        f(&mut node);
        node.generation = g;
        Self::account(usage, path, node.view(), 1);
        *slot = record::pack(path, node.view());
        true
    }
}

/// Reads and writes of one request, either straight to the store or into
/// a transaction's overlay.
pub trait Access {
    /// The node at `path` as this view sees it.
    fn get(&mut self, path: &str) -> Option<NodeRef<'_>>;
    /// Inserts or replaces a node.
    fn put(&mut self, path: &str, node: Node);
    /// Removes a node (only that node).
    fn del(&mut self, path: &str);
    /// Changes an existing node; false when absent.
    fn modify(&mut self, path: &str, f: &mut dyn FnMut(&mut Node)) -> bool;
    /// Replaces an existing node's value; false when absent.
    fn set_value(&mut self, path: &str, value: &[u8]) -> bool {
        self.modify(path, &mut |n| {
            n.value.clear();
            n.value.extend_from_slice(value);
        })
    }
    /// The usage of `domid` as this view sees it.
    fn usage(&self, domid: DomId) -> Usage;
    /// Number of distinct nodes this view has touched (transactions only).
    fn touched(&self) -> usize;
}

impl Access for Store {
    fn get(&mut self, path: &str) -> Option<NodeRef<'_>> {
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
    fn set_value(&mut self, path: &str, value: &[u8]) -> bool {
        Store::set_value(self, path, value)
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
            let node = store.get(path).map(|n| n.to_node());
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
            u.memory += sign * n.view().memory(path) as isize;
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
    fn get(&mut self, path: &str) -> Option<NodeRef<'_>> {
        self.txn
            .entry(self.store, path)
            .node
            .as_ref()
            .map(Node::view)
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

    #[test]
    fn records_round_trip_every_field() {
        let mut n = Node::new(Perms::parse([&b"b7"[..], b"r300", b"n65535"]).unwrap());
        n.value = (0..=255u8).cycle().take(1000).collect();
        for c in ["a", "long-child-name", "z"] {
            n.children.push(c);
        }
        n.generation = u64::MAX - 3;
        let path = format!("/{}", "p".repeat(200));
        let r = record::pack(&path, n.view());
        assert_eq!(record::path(&r), path.as_bytes());
        assert_eq!(record::unpack(&r).to_node(), n);
        let mut r = r.into_vec();
        let v2: Vec<u8> = n.value.iter().map(|b| b ^ 0x55).collect();
        record::overwrite(&mut r, 17, &v2);
        let (got, want) = (
            record::unpack(&r).to_node(),
            Node {
                value: v2,
                generation: 17,
                ..n
            },
        );
        assert_eq!(got, want);
        let empty = Node::new(Perms::owned_by(0));
        let r = record::pack("/", empty.view());
        assert_eq!(r.len(), 1 + 1 + 8 + 1 + 1 + PACKED_PERM_LEN);
        assert_eq!(record::unpack(&r).to_node(), empty);
    }

    #[test]
    fn many_nodes_stay_findable_across_table_growth() {
        let mut s = Store::new();
        for i in 0..5000 {
            let mut n = Node::new(Perms::owned_by((i % 7) as DomId));
            n.value = format!("v{i}").into_bytes();
            s.insert(&format!("/n/{i}"), n);
        }
        for i in (0..5000).step_by(2) {
            assert!(s.remove(&format!("/n/{i}")));
        }
        assert!(!s.remove("/n/0"));
        for i in 0..5000 {
            let got = s.get(&format!("/n/{i}")).map(|n| n.value.to_vec());
            assert_eq!(
                got,
                (i % 2 == 1).then(|| format!("v{i}").into_bytes()),
                "{i}"
            );
        }
        assert_eq!(s.len(), 3 + 2500);
        assert_eq!((0..7).map(|d| s.usage(d).nodes).sum::<isize>(), 3 + 2500);
    }
}
