//! Node permissions: an owner with the default access for everybody else,
//! then per-domain entries (`n`/`r`/`w`/`b`), as `xenstore-chmod` writes
//! them.

use crate::wire::XsError;
use crate::DomId;

/// Access bits (Xen's `XS_PERM_*`).
pub mod access {
    /// No access.
    pub const NONE: u8 = 0;
    /// May read.
    pub const READ: u8 = 1;
    /// May write.
    pub const WRITE: u8 = 2;
    /// Owner rights (set permissions).
    pub const OWNER: u8 = 8;
    /// Everything.
    pub const ALL: u8 = READ | WRITE | OWNER;
}

/// One entry of a permission list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    /// The domain this entry is about.
    pub domid: DomId,
    /// `access::READ` / `access::WRITE` bits.
    pub access: u8,
}

impl Perm {
    /// Parses `r5`, `n0`, `b12`, `w3`.
    pub fn parse(s: &[u8]) -> Result<Perm, XsError> {
        let (&letter, num) = s.split_first().ok_or(XsError::Inval)?;
        let access = match letter {
            b'n' => access::NONE,
            b'r' => access::READ,
            b'w' => access::WRITE,
            b'b' => access::READ | access::WRITE,
            _ => return Err(XsError::Inval),
        };
        let num = std::str::from_utf8(num).map_err(|_| XsError::Inval)?;
        if num.is_empty() || !num.bytes().all(|c| c.is_ascii_digit()) {
            return Err(XsError::Inval);
        }
        let domid: DomId = num.parse().map_err(|_| XsError::Inval)?;
        Ok(Perm { domid, access })
    }

    /// Appends the textual form (`b5`) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let letter = match self.access & (access::READ | access::WRITE) {
            0 => b'n',
            access::READ => b'r',
            access::WRITE => b'w',
            _ => b'b',
        };
        out.push(letter);
        out.extend_from_slice(self.domid.to_string().as_bytes());
    }
}

/// A node's permission list; the first entry names the owner and the
/// default access of domains not listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Perms(pub Vec<Perm>);

impl Perms {
    /// Owned by `owner`, nobody else has access.
    pub fn owned_by(owner: DomId) -> Perms {
        Perms(vec![Perm {
            domid: owner,
            access: access::NONE,
        }])
    }

    /// The owning domain.
    pub fn owner(&self) -> DomId {
        self.0.first().map_or(0, |p| p.domid)
    }

    /// Parses the NUL-separated strings of a SET_PERMS payload.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Result<Perms, XsError> {
        let v = items
            .into_iter()
            .map(Perm::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if v.is_empty() {
            return Err(XsError::Inval);
        }
        Ok(Perms(v))
    }

    /// The GET_PERMS reply body: each entry NUL-terminated.
    pub fn to_wire(&self) -> Vec<u8> {
        self.as_ref().to_wire()
    }

    /// The access a connection of `domid` (acting for `target`, if
    /// SET_TARGET made it a device model) has: Xen's `perm_for_conn`.
    pub fn access_for(&self, domid: DomId, privileged: bool, target: Option<DomId>) -> u8 {
        self.as_ref().access_for(domid, privileged, target)
    }

    /// A borrowed view of the list.
    pub fn as_ref(&self) -> PermsRef<'_> {
        PermsRef::List(&self.0)
    }
}

/// Bytes one entry takes in a packed list: the domid (little-endian) and
/// the access bits.
pub const PACKED_PERM_LEN: usize = 3;

/// A borrowed permission list: a slice of entries, or the packed form the
/// store keeps inside its node records (`PACKED_PERM_LEN` bytes each).
#[derive(Clone, Copy, Debug)]
pub enum PermsRef<'a> {
    /// Unpacked entries.
    List(&'a [Perm]),
    /// Packed entries (see [`PermsRef::pack`]).
    Packed(&'a [u8]),
}

impl<'a> PermsRef<'a> {
    /// Appends the packed form of `perms` to `out`.
    pub fn pack(perms: &[Perm], out: &mut Vec<u8>) {
        for p in perms {
            out.extend_from_slice(&p.domid.to_le_bytes());
            out.push(p.access);
        }
    }

    /// Number of entries.
    pub fn len(self) -> usize {
        match self {
            PermsRef::List(l) => l.len(),
            PermsRef::Packed(b) => b.len() / PACKED_PERM_LEN,
        }
    }

    /// No entries (never the case for a stored node)?
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Entry `i`.
    pub fn get(self, i: usize) -> Option<Perm> {
        match self {
            PermsRef::List(l) => l.get(i).copied(),
            PermsRef::Packed(b) => {
                let e = b.get(i * PACKED_PERM_LEN..(i + 1) * PACKED_PERM_LEN)?;
                Some(Perm {
                    domid: DomId::from_le_bytes([e[0], e[1]]),
                    access: e[2],
                })
            }
        }
    }

    /// The entries in order.
    pub fn iter(self) -> impl Iterator<Item = Perm> + 'a {
        (0..self.len()).filter_map(move |i| self.get(i))
    }

    /// The owning domain.
    pub fn owner(self) -> DomId {
        self.get(0).map_or(0, |p| p.domid)
    }

    /// An owned copy.
    pub fn to_perms(self) -> Perms {
        Perms(self.iter().collect())
    }

    /// The GET_PERMS reply body: each entry NUL-terminated.
    pub fn to_wire(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() * 4);
        for p in self.iter() {
            p.write_to(&mut out);
            out.push(0);
        }
        out
    }

    /// See [`Perms::access_for`].
    pub fn access_for(self, domid: DomId, privileged: bool, target: Option<DomId>) -> u8 {
        let owner = self.owner();
        if privileged || owner == domid || target == Some(owner) {
            return access::ALL;
        }
        for p in self.iter().skip(1) {
            if p.domid == domid || target == Some(p.domid) {
                return p.access;
            }
        }
        self.get(0).map_or(access::NONE, |p| p.access)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(s: &[&str]) -> Perms {
        Perms::parse(s.iter().map(|x| x.as_bytes())).unwrap()
    }

    #[test]
    fn owner_gets_everything_others_get_the_default() {
        let p = perms(&["n1", "r2"]);
        assert_eq!(p.access_for(1, false, None), access::ALL);
        assert_eq!(p.access_for(2, false, None), access::READ);
        assert_eq!(p.access_for(3, false, None), access::NONE);
        assert_eq!(p.access_for(3, true, None), access::ALL);
    }

    #[test]
    fn target_inherits_owner_and_entries() {
        let p = perms(&["n5", "b7"]);
        assert_eq!(p.access_for(9, false, Some(5)), access::ALL);
        assert_eq!(
            p.access_for(9, false, Some(7)),
            access::READ | access::WRITE
        );
    }

    #[test]
    fn parse_rejects_garbage_and_round_trips() {
        for bad in ["x1", "r", "r-1", "r99999999", "r1a"] {
            assert!(Perm::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        assert_eq!(
            perms(&["w3", "b0", "n4", "r5"]).to_wire(),
            b"w3\0b0\0n4\0r5\0"
        );
    }

    #[test]
    fn packed_lists_behave_like_unpacked_ones() {
        let p = perms(&["n5", "b7", "r65535"]);
        let mut buf = Vec::new();
        PermsRef::pack(&p.0, &mut buf);
        assert_eq!(buf.len(), 3 * PACKED_PERM_LEN);
        let packed = PermsRef::Packed(&buf);
        assert_eq!(packed.to_perms(), p);
        assert_eq!(packed.to_wire(), p.to_wire());
        assert_eq!(packed.owner(), 5);
        for (d, t) in [(5, None), (7, None), (65535, None), (9, Some(7)), (1, None)] {
            assert_eq!(packed.access_for(d, false, t), p.access_for(d, false, t));
        }
    }
}
