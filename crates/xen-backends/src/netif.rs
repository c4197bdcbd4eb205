//! `io/netif.h`: the network rings' slot layouts (identical in the 32- and
//! 64-bit ABIs) and flags.

/// `netif_tx_request` / `netif_tx_response` slot size (the union).
pub const TX_SLOT: u64 = 12;
/// `netif_rx_request` / `netif_rx_response` slot size.
pub const RX_SLOT: u64 = 8;

pub const NETTXF_CSUM_BLANK: u16 = 1;
pub const NETTXF_DATA_VALIDATED: u16 = 2;
pub const NETTXF_MORE_DATA: u16 = 4;
pub const NETTXF_EXTRA_INFO: u16 = 8;

pub const NETRXF_DATA_VALIDATED: u16 = 1;
pub const NETRXF_CSUM_BLANK: u16 = 2;
pub const NETRXF_MORE_DATA: u16 = 4;
pub const NETRXF_EXTRA_INFO: u16 = 8;

/// The size of one RX buffer: the frontend grants whole pages.
pub const PAGE_SIZE: usize = 4096;

/// How many RX slots a frame of `len` bytes takes.
pub fn rx_slots_for(len: usize) -> usize {
    len.div_ceil(PAGE_SIZE).max(1)
}

pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1;
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

/// `struct netif_extra_info` (8 bytes: type, flags, then the union; for
/// GSO `size` u16, `type` u8, `pad` u8, `features` u16). On the TX ring it
/// sits in a request slot, on the RX ring in a response slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtraInfo {
    pub kind: u8,
    pub flags: u8,
    pub gso_size: u16,
    pub gso_type: u8,
}

impl ExtraInfo {
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b = b.get(..8)?;
        Some(Self {
            kind: b[0],
            flags: b[1],
            gso_size: u16::from_le_bytes([b[2], b[3]]),
            gso_type: b[4],
        })
    }

    /// A GSO extra for the RX ring.
    pub fn gso(gso_type: u8, gso_size: u16) -> Self {
        Self {
            kind: XEN_NETIF_EXTRA_TYPE_GSO,
            flags: 0,
            gso_size,
            gso_type,
        }
    }

    pub fn encode(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.kind;
        b[1] = self.flags;
        b[2..4].copy_from_slice(&self.gso_size.to_le_bytes());
        b[4] = self.gso_type;
        b
    }
}

pub const NETIF_RSP_DROPPED: i16 = -2;
pub const NETIF_RSP_ERROR: i16 = -1;
pub const NETIF_RSP_OKAY: i16 = 0;
pub const NETIF_RSP_NULL: i16 = 1;

/// Largest frame (a GSO frame included): 64 KiB.
pub const MAX_FRAME: usize = 65535;

/// `struct netif_tx_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxRequest {
    pub gref: u32,
    pub offset: u16,
    pub flags: u16,
    pub id: u16,
    pub size: u16,
}

impl TxRequest {
    pub fn parse(b: &[u8]) -> Self {
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        Self {
            gref: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            offset: u16_at(4),
            flags: u16_at(6),
            id: u16_at(8),
            size: u16_at(10),
        }
    }

    pub fn encode(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&self.gref.to_le_bytes());
        b[4..6].copy_from_slice(&self.offset.to_le_bytes());
        b[6..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..10].copy_from_slice(&self.id.to_le_bytes());
        b[10..12].copy_from_slice(&self.size.to_le_bytes());
        b
    }
}

/// `struct netif_tx_response`.
pub fn tx_response(id: u16, status: i16) -> [u8; 4] {
    let mut b = [0u8; 4];
    b[0..2].copy_from_slice(&id.to_le_bytes());
    b[2..4].copy_from_slice(&status.to_le_bytes());
    b
}

/// `struct netif_rx_request`: `(id, gref)`.
pub fn parse_rx_request(b: &[u8]) -> (u16, u32) {
    (
        u16::from_le_bytes([b[0], b[1]]),
        u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
    )
}

/// `struct netif_rx_response`; `status` is the length on success.
pub fn rx_response(id: u16, offset: u16, flags: u16, status: i16) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0..2].copy_from_slice(&id.to_le_bytes());
    b[2..4].copy_from_slice(&offset.to_le_bytes());
    b[4..6].copy_from_slice(&flags.to_le_bytes());
    b[6..8].copy_from_slice(&status.to_le_bytes());
    b
}

/// One's-complement sum over `data`, folded (RFC 1071).
pub fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

pub fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Fills in the TCP/UDP checksum of an Ethernet + IPv4 frame whose
/// frontend sent it with `NETTXF_csum_blank` (the checksum is left for the
/// backend, as a NIC's offload would). Other frames are left alone.
pub fn complete_checksum(frame: &mut [u8]) {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return;
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip[0] >> 4 != 4 || ihl < 20 || total < ihl || 14 + total > frame.len() {
        return;
    }
    let proto = ip[9];
    let csum_off = match proto {
        6 => 16,
        17 => 6,
        _ => return,
    };
    let l4_len = total - ihl;
    if l4_len < csum_off + 2 {
        return;
    }
    let mut pseudo = [0u8; 12];
    pseudo[0..8].copy_from_slice(&ip[12..20]);
    pseudo[9] = proto;
    pseudo[10..12].copy_from_slice(&(l4_len as u16).to_be_bytes());
    let l4 = 14 + ihl;
    frame[l4 + csum_off] = 0;
    frame[l4 + csum_off + 1] = 0;
    let mut c = fold(sum(sum(0, &pseudo), &frame[l4..l4 + l4_len]));
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    frame[l4 + csum_off..l4 + csum_off + 2].copy_from_slice(&c.to_be_bytes());
}

/// The IPv4 header checksum over `hdr` (for tests and test frames).
pub fn ipv4_header_checksum(hdr: &[u8]) -> u16 {
    fold(sum(0, hdr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_request_round_trips() {
        let r = TxRequest {
            gref: 7,
            offset: 100,
            flags: NETTXF_MORE_DATA,
            id: 3,
            size: 1500,
        };
        assert_eq!(TxRequest::parse(&r.encode()), r);
    }

    #[test]
    fn udp_checksum_is_completed() {
        // IPv4 10.0.0.1 -> 10.0.0.2 UDP 1000 -> 2000, payload "hi".
        let mut f = vec![0u8; 14];
        f[12] = 8;
        let mut ip = vec![
            0x45, 0, 0, 30, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = ipv4_header_checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0x03, 0xe8, 0x07, 0xd0, 0, 10, 0xaa, 0xbb, b'h', b'i']);
        complete_checksum(&mut f);
        // Verifying: the sum over pseudo header + UDP must fold to 0.
        let l4 = &f[34..];
        let mut pseudo = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 10];
        pseudo.extend_from_slice(l4);
        assert_eq!(fold(sum(0, &pseudo)), 0);
        assert_ne!(&f[40..42], &[0xaa, 0xbb]);
    }
}
