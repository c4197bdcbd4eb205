//! Checksum offload and GSO between netif and the TAP's `virtio_net_hdr`
//! (`IFF_VNET_HDR`): a guest's GSO extra info (`XEN_NETIF_EXTRA_TYPE_GSO`)
//! becomes the header written before the frame, and a large frame the TAP
//! hands us with a GSO header becomes a multi-slot RX frame with a GSO
//! extra-info slot. `TUNSETOFFLOAD` tells the kernel which of these the
//! frontend can take (`feature-gso-tcpv4`/`-tcpv6`, `feature-sg`,
//! `feature-no-csum-offload`), so it never hands us more.

use std::fs::File;
use std::os::fd::AsRawFd;

use crate::netif;

/// `sizeof(struct virtio_net_hdr)` (the TAP's default `TUNSETVNETHDRSZ`).
pub const VNET_HDR_LEN: usize = 10;

pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
pub const TUN_F_CSUM: u32 = 1;
pub const TUN_F_TSO4: u32 = 2;
pub const TUN_F_TSO6: u32 = 4;

/// `struct virtio_net_hdr` (little-endian host, as the TAP's default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b = b.get(..VNET_HDR_LEN)?;
        let u = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    pub fn encode(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// The netif GSO the RX frame carries, if any: `(type, size)`.
    pub fn netif_gso(&self) -> Option<(u8, u16)> {
        match self.gso_type & !VIRTIO_NET_HDR_GSO_ECN {
            VIRTIO_NET_HDR_GSO_TCPV4 => Some((netif::XEN_NETIF_GSO_TYPE_TCPV4, self.gso_size)),
            VIRTIO_NET_HDR_GSO_TCPV6 => Some((netif::XEN_NETIF_GSO_TYPE_TCPV6, self.gso_size)),
            _ => None,
        }
    }
}

/// What the frontend can take on RX, as `TUNSETOFFLOAD` flags: partial
/// checksums unless it said `feature-no-csum-offload`; TSO only with
/// checksum offload and `feature-sg` (a GSO frame spans slots), as netback
/// decides.
pub fn rx_offload_flags(csum: bool, sg: bool, gso4: bool, gso6: bool) -> u32 {
    if !csum {
        return 0;
    }
    let mut f = TUN_F_CSUM;
    if sg && gso4 {
        f |= TUN_F_TSO4;
    }
    if sg && gso6 {
        f |= TUN_F_TSO6;
    }
    f
}

/// `TUNSETOFFLOAD`.
pub fn set_offload(tap: &File, flags: u32) -> std::io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned int
    // of TUN_F_* flags); no memory is passed.
    let r = unsafe { libc::ioctl(tap.as_raw_fd(), TUNSETOFFLOAD, libc::c_ulong::from(flags)) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Where a TCP frame's headers are: `(l4 offset, header length through
/// TCP)`, after checking the frame is IPv4 (`v6 == false`) or IPv6 without
/// extension headers carrying TCP, and filling the TCP checksum field with
/// the pseudo-header sum a partial checksum needs. `head` is the start of a
/// `frame_len`-byte frame and must hold every header through TCP's.
fn tcp_partial(head: &mut [u8], frame_len: usize, v6: bool) -> Option<(usize, usize)> {
    let ethertype = head.get(12..14)?;
    let mut pseudo = [0u8; 40];
    let (l4, l4_len, pseudo) = if v6 {
        if ethertype != [0x86, 0xdd] || head.get(20) != Some(&6) {
            return None;
        }
        let ip = head.get(14..54)?;
        let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        pseudo[..32].copy_from_slice(&ip[8..40]);
        pseudo[32..36].copy_from_slice(&(len as u32).to_be_bytes());
        pseudo[39] = 6;
        (54, len, &pseudo[..40])
    } else {
        if ethertype != [0x08, 0x00] {
            return None;
        }
        let ip = head.get(14..34)?;
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ip[0] >> 4 != 4 || ip[9] != 6 || ihl < 20 || total < ihl {
            return None;
        }
        pseudo[..8].copy_from_slice(&ip[12..20]);
        pseudo[9] = 6;
        pseudo[10..12].copy_from_slice(&((total - ihl) as u16).to_be_bytes());
        (14 + ihl, total - ihl, &pseudo[..12])
    };
    if l4 + l4_len > frame_len {
        return None;
    }
    let thl = usize::from(head.get(l4 + 12)? >> 4) * 4;
    if thl < 20 || thl > l4_len || l4 + thl > head.len() {
        return None;
    }
    // A partial checksum holds the folded, uncomplemented pseudo-header
    // sum; the kernel adds the rest per segment. netback recomputes it
    // for every GSO frame too (frontends are not all careful here).
    let partial = !netif::fold(netif::sum(0, pseudo));
    head[l4 + 16..l4 + 18].copy_from_slice(&partial.to_be_bytes());
    Some((l4, l4 + thl))
}

/// The header to write before a frame the guest sent with GSO extra info
/// (`gso_type`, `gso_size` in netif terms). `None` when the frame does not
/// match its GSO type (the guest gets `NETIF_RSP_ERROR`).
pub fn tx_gso_header(frame: &mut [u8], gso_type: u8, gso_size: u16) -> Option<VnetHdr> {
    let len = frame.len();
    tx_gso_header_in(frame, len, gso_type, gso_size)
}

/// [`tx_gso_header`] for a frame of `frame_len` bytes of which only the
/// start, `head`, is at hand (the rest goes to the TAP straight from the
/// guest's pages): `head` must hold the headers through TCP's, else `None`.
pub fn tx_gso_header_in(
    head: &mut [u8],
    frame_len: usize,
    gso_type: u8,
    gso_size: u16,
) -> Option<VnetHdr> {
    let (v6, vtype) = match gso_type {
        netif::XEN_NETIF_GSO_TYPE_TCPV4 => (false, VIRTIO_NET_HDR_GSO_TCPV4),
        netif::XEN_NETIF_GSO_TYPE_TCPV6 => (true, VIRTIO_NET_HDR_GSO_TCPV6),
        _ => return None,
    };
    if gso_size == 0 || head.len() > frame_len {
        return None;
    }
    let (l4, hdr_len) = tcp_partial(head, frame_len, v6)?;
    Some(VnetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: vtype,
        hdr_len: u16::try_from(hdr_len).ok()?,
        gso_size,
        csum_start: u16::try_from(l4).ok()?,
        csum_offset: 16,
    })
}

/// Finishes a partial checksum in software (the kernel's
/// `skb_checksum_help`): the field at `csum_start + csum_offset` holds the
/// pseudo-header sum, so the checksum is the complement of the sum from
/// `csum_start` to the end. For frontends that cannot take a partial
/// checksum of this kind (IPv6 without `feature-ipv6-csum-offload`).
/// False when the header points outside the frame.
pub fn complete_partial(frame: &mut [u8], hdr: &VnetHdr) -> bool {
    let start = usize::from(hdr.csum_start);
    let at = start + usize::from(hdr.csum_offset);
    if at + 2 > frame.len() {
        return false;
    }
    let c = netif::fold(netif::sum(0, &frame[start..]));
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// An IPv6 frame (by its Ethernet type).
pub fn is_ipv6(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&[0x86, 0xdd][..])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tcp4(payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + 20 + payload) as u16;
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut tcp = vec![0u8; 20];
        tcp[12] = 5 << 4;
        f.extend_from_slice(&tcp);
        f.resize(f.len() + payload, 0x61);
        f
    }

    #[test]
    fn vnet_header_round_trips() {
        let h = VnetHdr {
            flags: 1,
            gso_type: 4,
            hdr_len: 74,
            gso_size: 1440,
            csum_start: 54,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.encode()), Some(h));
        assert_eq!(h.netif_gso(), Some((netif::XEN_NETIF_GSO_TYPE_TCPV6, 1440)));
    }

    #[test]
    fn tcpv4_gso_gets_a_partial_checksum_header() {
        let mut f = tcp4(3000);
        let h = tx_gso_header(&mut f, netif::XEN_NETIF_GSO_TYPE_TCPV4, 1000).unwrap();
        assert_eq!(h.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
        assert_eq!((h.csum_start, h.csum_offset, h.hdr_len), (34, 16, 54));
        assert_eq!(h.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
        // Pseudo header: 10.0.0.1 + 10.0.0.2 + proto 6 + length 3020.
        let want = !netif::fold(netif::sum(0, &[10, 0, 0, 1, 10, 0, 0, 2, 0, 6, 0x0b, 0xcc]));
        assert_eq!(&f[50..52], &want.to_be_bytes());
    }

    #[test]
    fn a_partial_checksum_completes_to_the_full_one() {
        let mut want = tcp4(333);
        netif::complete_checksum(&mut want);
        let mut f = tcp4(333);
        let len = f.len();
        tcp_partial(&mut f, len, false).unwrap();
        let h = VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            ..Default::default()
        };
        assert!(complete_partial(&mut f, &h));
        assert_eq!(f, want);
        let bad = VnetHdr {
            csum_start: 400,
            ..h
        };
        assert!(!complete_partial(&mut f, &bad));
    }

    #[test]
    fn the_headers_alone_give_the_same_gso_header_as_the_whole_frame() {
        let mut whole = tcp4(3000);
        let want = tx_gso_header(&mut whole, netif::XEN_NETIF_GSO_TYPE_TCPV4, 1000).unwrap();
        let mut f = tcp4(3000);
        let len = f.len();
        let got = tx_gso_header_in(&mut f[..64], len, netif::XEN_NETIF_GSO_TYPE_TCPV4, 1000);
        assert_eq!(got, Some(want));
        assert_eq!(f, whole, "the same pseudo-header sum, in the head");
        // Headers cut short, or a frame shorter than its IP length: refused.
        let mut f = tcp4(3000);
        let t = netif::XEN_NETIF_GSO_TYPE_TCPV4;
        assert!(tx_gso_header_in(&mut f[..50], len, t, 1000).is_none());
        assert!(tx_gso_header_in(&mut f[..64], len - 1, t, 1000).is_none());
    }

    #[test]
    fn a_gso_type_that_does_not_match_the_frame_is_refused() {
        let mut f = tcp4(100);
        assert!(tx_gso_header(&mut f, netif::XEN_NETIF_GSO_TYPE_TCPV6, 1000).is_none());
        assert!(tx_gso_header(&mut f, netif::XEN_NETIF_GSO_TYPE_TCPV4, 0).is_none());
        assert!(tx_gso_header(&mut f[..40], netif::XEN_NETIF_GSO_TYPE_TCPV4, 100).is_none());
    }

    #[test]
    fn tso_needs_csum_and_sg() {
        assert_eq!(rx_offload_flags(false, true, true, true), 0);
        assert_eq!(rx_offload_flags(true, false, true, true), TUN_F_CSUM);
        assert_eq!(
            rx_offload_flags(true, true, true, false),
            TUN_F_CSUM | TUN_F_TSO4
        );
    }
}
