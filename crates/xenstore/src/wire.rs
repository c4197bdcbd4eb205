//! The `xsd_sockmsg` wire protocol (`xen/include/public/io/xs_wire.h`):
//! the 16-byte header, message types, error names and limits.

/// Largest payload a message may carry.
pub const PAYLOAD_MAX: usize = 4096;
/// Longest absolute path.
pub const ABS_PATH_MAX: usize = 3072;
/// Longest relative path (and the default per-domain path-length quota).
pub const REL_PATH_MAX: usize = 2048;
/// Size of the message header.
pub const HEADER_LEN: usize = 16;

/// Message types (`enum xsd_sockmsg_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MsgType {
    Control = 0,
    Directory = 1,
    Read = 2,
    GetPerms = 3,
    Watch = 4,
    Unwatch = 5,
    TransactionStart = 6,
    TransactionEnd = 7,
    Introduce = 8,
    Release = 9,
    GetDomainPath = 10,
    Write = 11,
    Mkdir = 12,
    Rm = 13,
    SetPerms = 14,
    WatchEvent = 15,
    Error = 16,
    IsDomainIntroduced = 17,
    Resume = 18,
    SetTarget = 19,
    ResetWatches = 21,
    DirectoryPart = 22,
    GetFeature = 23,
    SetFeature = 24,
    GetQuota = 25,
    SetQuota = 26,
}

impl MsgType {
    /// Decodes a type number; `None` for unknown (including the removed
    /// `XS_RESTRICT` = 20 and `XS_INVALID`).
    pub fn from_u32(v: u32) -> Option<Self> {
        use MsgType::*;
        Some(match v {
            0 => Control,
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            8 => Introduce,
            9 => Release,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            14 => SetPerms,
            15 => WatchEvent,
            16 => Error,
            17 => IsDomainIntroduced,
            18 => Resume,
            19 => SetTarget,
            21 => ResetWatches,
            22 => DirectoryPart,
            23 => GetFeature,
            24 => SetFeature,
            25 => GetQuota,
            26 => SetQuota,
            _ => return None,
        })
    }

    /// Xen's name for the type (for logs).
    pub fn name(self) -> &'static str {
        use MsgType::*;
        match self {
            Control => "CONTROL",
            Directory => "DIRECTORY",
            Read => "READ",
            GetPerms => "GET_PERMS",
            Watch => "WATCH",
            Unwatch => "UNWATCH",
            TransactionStart => "TRANSACTION_START",
            TransactionEnd => "TRANSACTION_END",
            Introduce => "INTRODUCE",
            Release => "RELEASE",
            GetDomainPath => "GET_DOMAIN_PATH",
            Write => "WRITE",
            Mkdir => "MKDIR",
            Rm => "RM",
            SetPerms => "SET_PERMS",
            WatchEvent => "WATCH_EVENT",
            Error => "ERROR",
            IsDomainIntroduced => "IS_DOMAIN_INTRODUCED",
            Resume => "RESUME",
            SetTarget => "SET_TARGET",
            ResetWatches => "RESET_WATCHES",
            DirectoryPart => "DIRECTORY_PART",
            GetFeature => "GET_FEATURE",
            SetFeature => "SET_FEATURE",
            GetQuota => "GET_QUOTA",
            SetQuota => "SET_QUOTA",
        }
    }
}

/// The message header (`struct xsd_sockmsg`), little-endian on the wire
/// (native order; every Xen host we serve is little-endian).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Message type number (may be unknown).
    pub ty: u32,
    /// Request id, echoed in the reply.
    pub req_id: u32,
    /// Transaction id, 0 outside transactions.
    pub tx_id: u32,
    /// Payload length.
    pub len: u32,
}

impl Header {
    /// Decodes a header from its 16 bytes.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Self {
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header {
            ty: w(0),
            req_id: w(4),
            tx_id: w(8),
            len: w(12),
        }
    }

    /// Encodes the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.ty.to_le_bytes());
        out[4..8].copy_from_slice(&self.req_id.to_le_bytes());
        out[8..12].copy_from_slice(&self.tx_id.to_le_bytes());
        out[12..16].copy_from_slice(&self.len.to_le_bytes());
        out
    }
}

/// Errors a request can fail with: exactly `xsd_errors[]`, sent as their
/// names in an `XS_ERROR` reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[allow(missing_docs)]
pub enum XsError {
    #[error("EINVAL")]
    Inval,
    #[error("EACCES")]
    Acces,
    #[error("EEXIST")]
    Exist,
    #[error("EISDIR")]
    IsDir,
    #[error("ENOENT")]
    NoEnt,
    #[error("ENOMEM")]
    NoMem,
    #[error("ENOSPC")]
    NoSpc,
    #[error("EIO")]
    Io,
    #[error("ENOTEMPTY")]
    NotEmpty,
    #[error("ENOSYS")]
    NoSys,
    #[error("EROFS")]
    RoFs,
    #[error("EBUSY")]
    Busy,
    #[error("EAGAIN")]
    Again,
    #[error("EISCONN")]
    IsConn,
    #[error("E2BIG")]
    TooBig,
    #[error("EPERM")]
    Perm,
}

impl XsError {
    /// The name sent on the wire (`"ENOENT"`).
    pub fn name(self) -> &'static str {
        use XsError::*;
        match self {
            Inval => "EINVAL",
            Acces => "EACCES",
            Exist => "EEXIST",
            IsDir => "EISDIR",
            NoEnt => "ENOENT",
            NoMem => "ENOMEM",
            NoSpc => "ENOSPC",
            Io => "EIO",
            NotEmpty => "ENOTEMPTY",
            NoSys => "ENOSYS",
            RoFs => "EROFS",
            Busy => "EBUSY",
            Again => "EAGAIN",
            IsConn => "EISCONN",
            TooBig => "E2BIG",
            Perm => "EPERM",
        }
    }

    /// Parses an error name (as a client does).
    pub fn from_name(s: &str) -> Option<Self> {
        use XsError::*;
        [
            Inval, Acces, Exist, IsDir, NoEnt, NoMem, NoSpc, Io, NotEmpty, NoSys, RoFs, Busy,
            Again, IsConn, TooBig, Perm,
        ]
        .into_iter()
        .find(|e| e.name() == s)
    }
}

/// Splits a payload into its NUL-terminated strings. A trailing fragment
/// without a NUL is returned as a last element (Xen's `get_strings` does
/// the same); callers that need termination check for it.
pub fn split_strings(payload: &[u8]) -> Vec<&[u8]> {
    if payload.is_empty() {
        return Vec::new();
    }
    let mut v: Vec<&[u8]> = payload.split(|&b| b == 0).collect();
    if payload.last() == Some(&0) {
        v.pop();
    }
    v
}

/// The single NUL-terminated string a request carries (Xen's `onearg`):
/// the payload must end in its only NUL.
pub fn one_arg(payload: &[u8]) -> Option<&[u8]> {
    match payload.split_last() {
        Some((0, rest)) if !rest.contains(&0) => Some(rest),
        _ => None,
    }
}

/// Appends a complete message (header + payload) to `out`.
pub fn push_msg(out: &mut Vec<u8>, ty: u32, req_id: u32, tx_id: u32, payload: &[&[u8]]) {
    let len: usize = payload.iter().map(|p| p.len()).sum();
    let h = Header {
        ty,
        req_id,
        tx_id,
        len: len as u32,
    };
    out.extend_from_slice(&h.encode());
    for p in payload {
        out.extend_from_slice(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = Header {
            ty: 2,
            req_id: 7,
            tx_id: 9,
            len: 12,
        };
        assert_eq!(Header::decode(&h.encode()), h);
    }

    #[test]
    fn unknown_and_removed_types_do_not_decode() {
        assert_eq!(MsgType::from_u32(20), None);
        assert_eq!(MsgType::from_u32(0xffff), None);
        assert_eq!(MsgType::from_u32(26), Some(MsgType::SetQuota));
    }

    #[test]
    fn one_arg_requires_single_terminated_string() {
        assert_eq!(one_arg(b"/a\0"), Some(&b"/a"[..]));
        assert_eq!(one_arg(b"/a"), None);
        assert_eq!(one_arg(b"/a\0b\0"), None);
        assert_eq!(one_arg(b""), None);
    }

    #[test]
    fn split_keeps_unterminated_tail() {
        assert_eq!(split_strings(b"a\0b\0"), vec![&b"a"[..], &b"b"[..]]);
        assert_eq!(split_strings(b"a\0b"), vec![&b"a"[..], &b"b"[..]]);
        assert!(split_strings(b"").is_empty());
    }

    #[test]
    fn error_names_round_trip() {
        for e in [XsError::Again, XsError::TooBig, XsError::Perm] {
            assert_eq!(XsError::from_name(e.name()), Some(e));
        }
    }
}
