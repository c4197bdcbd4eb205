//! `io/blkif.h`: the block ring's request and response layouts in both
//! ABIs a frontend may name in its `protocol` key (`x86_32-abi`,
//! `x86_64-abi`; absent means the backend's native, x86_64), parsed from
//! raw ring bytes into a checked [`Request`].

/// `BLKIF_OP_*`.
pub const OP_READ: u8 = 0;
pub const OP_WRITE: u8 = 1;
pub const OP_WRITE_BARRIER: u8 = 2;
pub const OP_FLUSH_DISKCACHE: u8 = 3;
pub const OP_DISCARD: u8 = 5;
pub const OP_INDIRECT: u8 = 6;

/// `BLKIF_RSP_*`.
pub const RSP_OKAY: i16 = 0;
pub const RSP_ERROR: i16 = -1;
pub const RSP_EOPNOTSUPP: i16 = -2;

/// `BLKIF_MAX_SEGMENTS_PER_REQUEST`.
pub const MAX_SEGMENTS: usize = 11;
/// `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`.
pub const MAX_INDIRECT_PAGES: usize = 8;
/// Segment descriptors per indirect page (`struct blkif_request_segment`).
pub const SEGS_PER_INDIRECT_PAGE: usize = 4096 / 8;
/// What we advertise as `feature-max-indirect-segments` (Linux blkback's
/// `MAX_INDIRECT_SEGMENTS`).
pub const MAX_INDIRECT_SEGMENTS: usize = 256;
/// Sectors in blkif are always 512 bytes.
pub const SECTOR: u64 = 512;
/// `BLKIF_DISCARD_SECURE`.
pub const DISCARD_SECURE: u8 = 1;

/// The request/response layout the frontend uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abi {
    X86_32,
    X86_64,
}

impl Abi {
    /// From the frontend's `protocol` node (missing: native).
    pub fn from_protocol(p: Option<&str>) -> Option<Self> {
        match p {
            None | Some("") | Some("x86_64-abi") => Some(Self::X86_64),
            Some("x86_32-abi") => Some(Self::X86_32),
            Some(_) => None,
        }
    }

    /// Size of one ring slot (the request/response union).
    pub fn entry_size(self) -> u64 {
        match self {
            Self::X86_32 => 108,
            Self::X86_64 => 112,
        }
    }

    /// Offsets of id, sector_number and the first segment in a plain
    /// request (the 64-bit ABI pads `handle` to 8).
    fn plain(self) -> (usize, usize, usize) {
        match self {
            Self::X86_32 => (4, 12, 20),
            Self::X86_64 => (8, 16, 24),
        }
    }
}

/// One data segment: a granted page and the 512-byte sectors in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub gref: u32,
    pub first_sect: u8,
    pub last_sect: u8,
}

impl Segment {
    fn parse(b: &[u8]) -> Self {
        Self {
            gref: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            first_sect: b[4],
            last_sect: b[5],
        }
    }

    /// Byte offset in the page and length, if the sector range is valid.
    pub fn range(&self) -> Option<(u64, u64)> {
        if self.first_sect > self.last_sect || u64::from(self.last_sect) >= 4096 / SECTOR {
            return None;
        }
        let off = u64::from(self.first_sect) * SECTOR;
        Some((off, (u64::from(self.last_sect) + 1) * SECTOR - off))
    }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// READ / WRITE / WRITE_BARRIER with segments inline.
    Rw { segs: Segments },
    /// INDIRECT: the segments are in granted pages.
    Indirect {
        op: u8,
        nr_segments: u16,
        pages: Vec<u32>,
    },
    /// DISCARD of `nr_sectors` from `sector`.
    Discard { nr_sectors: u64, secure: bool },
    /// FLUSH_DISKCACHE (segments, if any, are ignored as by blkback).
    Flush,
}

/// The inline segments of a READ/WRITE/WRITE_BARRIER (at most
/// [`MAX_SEGMENTS`]), kept in the request itself: parsing a request costs
/// no allocation on the data path.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    len: u8,
    items: [Segment; MAX_SEGMENTS],
}

impl Segments {
    /// The first [`MAX_SEGMENTS`] of `segs` (callers pass at most that many).
    pub fn new(segs: &[Segment]) -> Self {
        let mut out = Self {
            len: 0,
            items: [Segment {
                gref: 0,
                first_sect: 0,
                last_sect: 0,
            }; MAX_SEGMENTS],
        };
        for (slot, seg) in out.items.iter_mut().zip(segs) {
            *slot = *seg;
            out.len += 1;
        }
        out
    }
}

impl std::ops::Deref for Segments {
    type Target = [Segment];
    fn deref(&self) -> &[Segment] {
        &self.items[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for Segments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A request as read from the ring (not yet checked against the disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The operation, and what the response carries: for an INDIRECT
    /// request its inner `indirect_op` (READ or WRITE), as Linux's blkback
    /// answers (`pending_req->operation`) and Linux's blkfront checks
    /// (a response with operation INDIRECT disables the disk).
    pub op: u8,
    pub id: u64,
    pub sector: u64,
    pub body: Body,
}

/// Why a ring slot is not a valid request (answered with an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("request {id:#x}: unknown operation {op}")]
    UnknownOp { id: u64, op: u8 },
    #[error("request {id:#x}: {n} segments (1..={max} allowed)")]
    Segments { id: u64, n: usize, max: usize },
}

impl ParseError {
    pub fn id(&self) -> u64 {
        match self {
            Self::UnknownOp { id, .. } | Self::Segments { id, .. } => *id,
        }
    }
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Parses one ring slot (`abi.entry_size()` bytes).
pub fn parse_request(abi: Abi, b: &[u8]) -> Result<Request, ParseError> {
    let op = b[0];
    let (id_off, sect_off, seg_off) = abi.plain();
    match op {
        OP_READ | OP_WRITE | OP_WRITE_BARRIER | OP_FLUSH_DISKCACHE => {
            let id = u64_at(b, id_off);
            let sector = u64_at(b, sect_off);
            let n = usize::from(b[1]);
            let body = if op == OP_FLUSH_DISKCACHE {
                Body::Flush
            } else {
                // A barrier may carry no data; reads and writes must.
                let min = usize::from(op != OP_WRITE_BARRIER);
                if n < min || n > MAX_SEGMENTS {
                    return Err(ParseError::Segments {
                        id,
                        n,
                        max: MAX_SEGMENTS,
                    });
                }
                let mut segs = [Segment {
                    gref: 0,
                    first_sect: 0,
                    last_sect: 0,
                }; MAX_SEGMENTS];
                for (i, seg) in segs.iter_mut().take(n).enumerate() {
                    *seg = Segment::parse(&b[seg_off + i * 8..seg_off + i * 8 + 8]);
                }
                Body::Rw {
                    segs: Segments::new(&segs[..n]),
                }
            };
            Ok(Request {
                op,
                id,
                sector,
                body,
            })
        }
        OP_DISCARD => {
            let (id, sector, nr) = match abi {
                Abi::X86_32 => (u64_at(b, 4), u64_at(b, 12), u64_at(b, 20)),
                Abi::X86_64 => (u64_at(b, 8), u64_at(b, 16), u64_at(b, 24)),
            };
            Ok(Request {
                op,
                id,
                sector,
                body: Body::Discard {
                    nr_sectors: nr,
                    secure: b[1] & DISCARD_SECURE != 0,
                },
            })
        }
        OP_INDIRECT => {
            let inner = b[1];
            let nr = u16::from_le_bytes([b[2], b[3]]);
            let (id, sector, grefs) = match abi {
                Abi::X86_32 => (u64_at(b, 4), u64_at(b, 12), 24),
                Abi::X86_64 => (u64_at(b, 8), u64_at(b, 16), 28),
            };
            if !matches!(inner, OP_READ | OP_WRITE) {
                return Err(ParseError::UnknownOp { id, op: inner });
            }
            let n = usize::from(nr);
            if n == 0 || n > MAX_INDIRECT_SEGMENTS {
                return Err(ParseError::Segments {
                    id,
                    n,
                    max: MAX_INDIRECT_SEGMENTS,
                });
            }
            let npages = n.div_ceil(SEGS_PER_INDIRECT_PAGE);
            let pages = (0..npages).map(|i| u32_at(b, grefs + i * 4)).collect();
            Ok(Request {
                op: inner,
                id,
                sector,
                body: Body::Indirect {
                    op: inner,
                    nr_segments: nr,
                    pages,
                },
            })
        }
        _ => {
            let id = u64_at(b, id_off);
            Err(ParseError::UnknownOp { id, op })
        }
    }
}

/// The operation a response to the raw ring slot `b` carries, also when
/// the slot is refused: an INDIRECT request's inner operation (see
/// [`Request::op`]).
pub fn response_op(b: &[u8]) -> u8 {
    match b {
        [OP_INDIRECT, inner, ..] => *inner,
        [op, ..] => *op,
        [] => 0,
    }
}

/// Encodes a response into a ring slot's first bytes (the same offsets in
/// both ABIs: id at 0, operation at 8, status at 10).
pub fn encode_response(id: u64, op: u8, status: i16) -> [u8; 12] {
    let mut r = [0u8; 12];
    r[0..8].copy_from_slice(&id.to_le_bytes());
    r[8] = op;
    r[10..12].copy_from_slice(&status.to_le_bytes());
    r
}

/// Test/bench helpers that encode requests the way a frontend does.
pub mod encode {
    use super::*;

    /// A plain READ/WRITE/BARRIER/FLUSH request.
    pub fn rw(abi: Abi, op: u8, id: u64, sector: u64, segs: &[Segment]) -> Vec<u8> {
        let mut b = vec![0u8; abi.entry_size() as usize];
        let (id_off, sect_off, seg_off) = abi.plain();
        b[0] = op;
        b[1] = segs.len() as u8;
        b[id_off..id_off + 8].copy_from_slice(&id.to_le_bytes());
        b[sect_off..sect_off + 8].copy_from_slice(&sector.to_le_bytes());
        for (i, s) in segs.iter().take(MAX_SEGMENTS).enumerate() {
            let o = seg_off + i * 8;
            b[o..o + 4].copy_from_slice(&s.gref.to_le_bytes());
            b[o + 4] = s.first_sect;
            b[o + 5] = s.last_sect;
        }
        b
    }

    /// An INDIRECT request whose segment lists are in `pages`.
    pub fn indirect(abi: Abi, op: u8, id: u64, sector: u64, nr: u16, pages: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; abi.entry_size() as usize];
        b[0] = OP_INDIRECT;
        b[1] = op;
        b[2..4].copy_from_slice(&nr.to_le_bytes());
        let (id_off, sect_off, grefs) = match abi {
            Abi::X86_32 => (4, 12, 24),
            Abi::X86_64 => (8, 16, 28),
        };
        b[id_off..id_off + 8].copy_from_slice(&id.to_le_bytes());
        b[sect_off..sect_off + 8].copy_from_slice(&sector.to_le_bytes());
        for (i, g) in pages.iter().take(MAX_INDIRECT_PAGES).enumerate() {
            b[grefs + i * 4..grefs + i * 4 + 4].copy_from_slice(&g.to_le_bytes());
        }
        b
    }

    /// A DISCARD request.
    pub fn discard(abi: Abi, id: u64, sector: u64, nr_sectors: u64) -> Vec<u8> {
        let mut b = vec![0u8; abi.entry_size() as usize];
        b[0] = OP_DISCARD;
        let o = match abi {
            Abi::X86_32 => 4,
            Abi::X86_64 => 8,
        };
        b[o..o + 8].copy_from_slice(&id.to_le_bytes());
        b[o + 8..o + 16].copy_from_slice(&sector.to_le_bytes());
        b[o + 16..o + 24].copy_from_slice(&nr_sectors.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_abis_round_trip_a_write() {
        let segs = [Segment {
            gref: 9,
            first_sect: 1,
            last_sect: 7,
        }];
        for abi in [Abi::X86_32, Abi::X86_64] {
            let b = encode::rw(abi, OP_WRITE, 0xdead_beef_0000_0001, 77, &segs);
            let r = parse_request(abi, &b).expect("parse");
            assert_eq!(r.id, 0xdead_beef_0000_0001);
            assert_eq!(r.sector, 77);
            assert_eq!(
                r.body,
                Body::Rw {
                    segs: Segments::new(&segs)
                }
            );
        }
    }

    #[test]
    fn an_indirect_request_is_answered_with_its_inner_operation() {
        for abi in [Abi::X86_32, Abi::X86_64] {
            for inner in [OP_READ, OP_WRITE] {
                let b = encode::indirect(abi, inner, 5, 8, 64, &[3]);
                let r = parse_request(abi, &b).expect("parse");
                assert_eq!(r.op, inner, "{abi:?}");
                assert_eq!(response_op(&b), inner);
                assert!(matches!(r.body, Body::Indirect { op, .. } if op == inner));
            }
        }
    }

    #[test]
    fn x86_32_layout_has_no_padding_before_id() {
        let b = encode::rw(Abi::X86_32, OP_READ, 0x0102_0304_0506_0708, 0, &[]);
        assert_eq!(&b[4..12], &0x0102_0304_0506_0708u64.to_le_bytes());
    }

    #[test]
    fn zero_and_too_many_segments_are_refused() {
        let mut b = encode::rw(Abi::X86_64, OP_READ, 1, 0, &[]);
        assert!(matches!(
            parse_request(Abi::X86_64, &b),
            Err(ParseError::Segments { n: 0, .. })
        ));
        b[1] = 12;
        assert!(matches!(
            parse_request(Abi::X86_64, &b),
            Err(ParseError::Segments { n: 12, .. })
        ));
    }

    #[test]
    fn segment_sector_ranges_are_checked() {
        let s = |f, l| Segment {
            gref: 0,
            first_sect: f,
            last_sect: l,
        };
        assert_eq!(s(0, 7).range(), Some((0, 4096)));
        assert_eq!(s(2, 2).range(), Some((1024, 512)));
        assert_eq!(s(3, 2).range(), None);
        assert_eq!(s(0, 8).range(), None);
    }

    #[test]
    fn indirect_and_discard_parse_in_both_abis() {
        for abi in [Abi::X86_32, Abi::X86_64] {
            let b = encode::indirect(abi, OP_WRITE, 5, 100, 200, &[4, 5]);
            let r = parse_request(abi, &b).expect("indirect");
            assert_eq!((r.id, r.sector), (5, 100));
            assert_eq!(
                r.body,
                Body::Indirect {
                    op: OP_WRITE,
                    nr_segments: 200,
                    pages: vec![4]
                }
            );
            let too_many = encode::indirect(abi, OP_WRITE, 5, 100, 300, &[4, 5]);
            assert!(parse_request(abi, &too_many).is_err());
            let d = parse_request(abi, &encode::discard(abi, 6, 8, 16)).expect("discard");
            assert_eq!(d.id, 6);
            assert_eq!(
                d.body,
                Body::Discard {
                    nr_sectors: 16,
                    secure: false
                }
            );
        }
    }
}
