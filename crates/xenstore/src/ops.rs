//! The node requests (READ, WRITE, MKDIR, RM, DIRECTORY, DIRECTORY_PART,
//! GET_PERMS, SET_PERMS) with Xen's permission and quota rules, written
//! against [`Access`] so they run the same inside and outside
//! transactions.

use crate::path;
use crate::perms::{access, Perms, PermsRef};
use crate::quota::{exceeds, Quota};
use crate::store::{subtree_postorder, Access, Node};
use crate::watch::Event;
use crate::wire::{XsError, PAYLOAD_MAX};
use crate::DomId;

/// Who is asking.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The connection's domain.
    pub domid: DomId,
    /// Dom0 (and socket connections): all access, no quotas.
    pub privileged: bool,
    /// SET_TARGET: the domain this one acts for.
    pub target: Option<DomId>,
    /// The quotas that apply (ignored when privileged).
    pub quota: Quota,
}

impl Caller {
    /// Dom0 / the toolstack.
    pub fn dom0() -> Caller {
        Caller {
            domid: 0,
            privileged: true,
            target: None,
            quota: Quota::default(),
        }
    }

    fn can(&self, perms: PermsRef<'_>, need: u8) -> bool {
        perms.access_for(self.domid, self.privileged, self.target) & need == need
    }

    fn limited(&self) -> Option<&Quota> {
        (!self.privileged).then_some(&self.quota)
    }
}

/// Xen's `get_node` + `errno_from_parents`: EACCES instead of ENOENT when
/// the caller may not see the nearest existing ancestor.
fn check(v: &mut dyn Access, c: &Caller, p: &str, need: u8) -> Result<(), XsError> {
    match v.get(p) {
        Some(n) if c.can(n.perms, need) => Ok(()),
        Some(_) => Err(XsError::Acces),
        None => {
            let mut cur = p;
            while cur != "/" {
                cur = path::parent(cur);
                if let Some(n) = v.get(cur) {
                    return Err(if c.can(n.perms, need) {
                        XsError::NoEnt
                    } else {
                        XsError::Acces
                    });
                }
            }
            Err(XsError::NoEnt)
        }
    }
}

fn check_txn_size(v: &dyn Access, c: &Caller) -> Result<(), XsError> {
    match c.limited() {
        Some(q) if exceeds(v.touched(), q.transaction_nodes) => Err(XsError::NoSpc),
        _ => Ok(()),
    }
}

fn check_node(c: &Caller, node: &Node) -> Result<(), XsError> {
    match c.limited() {
        Some(q) if exceeds(node.record_size(), q.node_size) => Err(XsError::NoSpc),
        _ => Ok(()),
    }
}

fn check_usage(
    v: &dyn Access,
    c: &Caller,
    new_nodes: usize,
    new_bytes: usize,
) -> Result<(), XsError> {
    let Some(q) = c.limited() else { return Ok(()) };
    let u = v.usage(c.domid);
    if new_nodes > 0 && exceeds(u.nodes.max(0) as usize + new_nodes, q.nodes) {
        return Err(XsError::NoSpc);
    }
    if exceeds(u.memory.max(0) as usize + new_bytes, q.memory) {
        return Err(XsError::NoMem);
    }
    Ok(())
}

/// READ: the value.
pub fn read(v: &mut dyn Access, c: &Caller, p: &str, out: &mut Vec<u8>) -> Result<(), XsError> {
    check(v, c, p, access::READ)?;
    let n = v.get(p).ok_or(XsError::NoEnt)?;
    out.extend_from_slice(n.value);
    Ok(())
}

/// WRITE: set the value, creating the node and missing ancestors.
pub fn write(
    v: &mut dyn Access,
    c: &Caller,
    p: &str,
    value: &[u8],
    ev: &mut Vec<Event>,
) -> Result<(), XsError> {
    match check(v, c, p, access::WRITE) {
        Ok(()) => {
            let node = v.get(p).ok_or(XsError::NoEnt)?;
            let grow = value.len().saturating_sub(node.value.len());
            let new_size = node.record_size() - node.value.len() + value.len();
            if let Some(q) = c.limited() {
                if exceeds(new_size, q.node_size) {
                    return Err(XsError::NoSpc);
                }
            }
            let perms = Some(node.perms.to_perms());
            check_usage(v, c, 0, grow)?;
            v.set_value(p, value);
            check_txn_size(v, c)?;
            ev.push(Event {
                path: p.to_owned(),
                exact: false,
                perms,
            });
            Ok(())
        }
        Err(XsError::NoEnt) => create(v, c, p, value, ev),
        Err(e) => Err(e),
    }
}

/// MKDIR: create an empty node (and ancestors) unless it exists.
pub fn mkdir(v: &mut dyn Access, c: &Caller, p: &str, ev: &mut Vec<Event>) -> Result<(), XsError> {
    match check(v, c, p, access::WRITE) {
        Ok(()) => Ok(()),
        Err(XsError::NoEnt) => create(v, c, p, b"", ev),
        Err(e) => Err(e),
    }
}

/// Xen's `create_node`: the new nodes inherit the nearest existing
/// ancestor's permissions, and domains own what they create.
fn create(
    v: &mut dyn Access,
    c: &Caller,
    p: &str,
    value: &[u8],
    ev: &mut Vec<Event>,
) -> Result<(), XsError> {
    let mut missing = vec![p];
    let mut cur = p;
    let parent_perms = loop {
        cur = path::parent(cur);
        match v.get(cur) {
            Some(n) => break n.perms.to_perms(),
            None if cur == "/" => return Err(XsError::NoEnt),
            None => missing.push(cur),
        }
    };
    let existing_parent = cur.to_owned();
    let mut perms = parent_perms;
    if c.domid != 0 {
        if let Some(first) = perms.0.first_mut() {
            first.domid = c.domid;
        }
    }
    let mut leaf = Node::new(perms.clone());
    leaf.value = value.to_vec();
    check_node(c, &leaf)?;
    let bytes: usize = missing.iter().map(|m| m.len() + 64).sum::<usize>() + value.len();
    check_usage(v, c, missing.len(), bytes)?;
    // Link the topmost new node into the existing parent, then create the
    // chain downwards; each intermediate node links its one child.
    let top = missing.last().copied().unwrap_or(p);
    let top_name = path::basename(top);
    let mut linked = false;
    v.modify(&existing_parent, &mut |n| {
        n.children.push(top_name);
        linked = true;
    });
    if !linked {
        return Err(XsError::NoEnt);
    }
    for (i, m) in missing.iter().enumerate().rev() {
        let mut node = if i == 0 {
            leaf.clone()
        } else {
            Node::new(perms.clone())
        };
        if i > 0 {
            node.children.push(path::basename(missing[i - 1]));
        }
        v.put(m, node);
    }
    check_txn_size(v, c)?;
    ev.push(Event {
        path: p.to_owned(),
        exact: false,
        perms: Some(perms),
    });
    Ok(())
}

/// RM: remove a node and everything below it.
pub fn rm(v: &mut dyn Access, c: &Caller, p: &str, ev: &mut Vec<Event>) -> Result<(), XsError> {
    match check(v, c, p, access::WRITE) {
        Ok(()) => {}
        Err(XsError::NoEnt) => {
            // Already gone is fine, as long as the parent exists.
            return if v.get(path::parent(p)).is_some() {
                Ok(())
            } else {
                Err(XsError::NoEnt)
            };
        }
        Err(e) => return Err(e),
    }
    if p == "/" {
        return Err(XsError::Inval);
    }
    let all = subtree_postorder(v, p);
    let mut top_perms = None;
    for q in &all {
        let perms = v.get(q).map(|n| n.perms.to_perms());
        if q == p {
            top_perms = perms;
        } else {
            ev.push(Event {
                path: q.clone(),
                exact: true,
                perms,
            });
        }
        v.del(q);
    }
    let name = path::basename(p);
    v.modify(path::parent(p), &mut |n| {
        n.children.remove(name);
    });
    check_txn_size(v, c)?;
    ev.push(Event {
        path: p.to_owned(),
        exact: false,
        perms: top_perms,
    });
    Ok(())
}

/// DIRECTORY: the child names, each NUL-terminated.
pub fn directory(
    v: &mut dyn Access,
    c: &Caller,
    p: &str,
    out: &mut Vec<u8>,
) -> Result<(), XsError> {
    check(v, c, p, access::READ)?;
    let n = v.get(p).ok_or(XsError::NoEnt)?;
    if n.children_len() > PAYLOAD_MAX {
        return Err(XsError::TooBig);
    }
    out.extend_from_slice(n.children.as_bytes());
    Ok(())
}

/// DIRECTORY_PART: `<generation>\0` then as many child names from byte
/// offset `off` of the child list as fit; a final empty string marks the
/// end of the list.
pub fn directory_part(
    v: &mut dyn Access,
    c: &Caller,
    p: &str,
    off: usize,
    out: &mut Vec<u8>,
) -> Result<(), XsError> {
    check(v, c, p, access::READ)?;
    let n = v.get(p).ok_or(XsError::NoEnt)?;
    out.extend_from_slice(n.generation.to_string().as_bytes());
    out.push(0);
    let list = n.children.as_bytes();
    if off >= list.len() {
        out.push(0);
        return Ok(());
    }
    let maxlen = PAYLOAD_MAX - out.len() - 1;
    let mut len = 0;
    for name in list[off..].split_inclusive(|&b| b == 0) {
        if len + name.len() > maxlen {
            break;
        }
        len += name.len();
    }
    out.extend_from_slice(&list[off..off + len]);
    if off + len == list.len() {
        out.push(0);
    }
    Ok(())
}

/// GET_PERMS.
pub fn get_perms(
    v: &mut dyn Access,
    c: &Caller,
    p: &str,
    out: &mut Vec<u8>,
) -> Result<(), XsError> {
    check(v, c, p, access::READ)?;
    let n = v.get(p).ok_or(XsError::NoEnt)?;
    out.extend_from_slice(&n.perms.to_wire());
    Ok(())
}

/// SET_PERMS: only the owner (or dom0); only dom0 may change the owner.
pub fn set_perms(
    v: &mut dyn Access,
    c: &Caller,
    p: &str,
    perms: Perms,
    ev: &mut Vec<Event>,
) -> Result<(), XsError> {
    if let Some(q) = c.limited() {
        if exceeds(perms.0.len(), q.permissions) {
            return Err(XsError::NoSpc);
        }
    }
    check(v, c, p, access::WRITE | access::OWNER)?;
    let old = v.get(p).ok_or(XsError::NoEnt)?.perms.to_perms();
    if !c.privileged && old.owner() != perms.owner() {
        return Err(XsError::Perm);
    }
    let mut probe = v.get(p).ok_or(XsError::NoEnt)?.to_node();
    probe.perms = perms.clone();
    check_node(c, &probe)?;
    v.modify(p, &mut |n| n.perms = perms.clone());
    check_txn_size(v, c)?;
    ev.push(Event {
        path: p.to_owned(),
        exact: false,
        perms: Some(old),
    });
    Ok(())
}
