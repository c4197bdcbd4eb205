//! Host → guest: the TAP's frames into the buffers the RX ring offers
//! (multi-slot frames, GSO extra info, checksum flags).

use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{offload, Ctx, POLL};
use crate::netif;
use crate::sring::BackRing;

/// Frames delivered between pushes of the responses while the TAP has
/// more to read (netback pushes once per NAPI poll of 64); when it runs
/// dry, whatever was delivered is pushed at once.
const PUSH_EVERY: usize = 64;

/// Host → guest: frames from the TAP into buffers the RX ring offers. A
/// frame larger than a page spans several posted buffers, each answered
/// with its own length and all but the last with `NETRXF_more_data`
/// (netback's rx-copy path); that needs the frontend's `feature-sg`,
/// without which such frames are dropped.
///
/// The TAP descriptor is non-blocking ([`super::NetDevice`] sets it), so
/// a busy TAP costs one `read` per frame and an idle one a `poll`.
pub(super) fn rx_loop(c: &Ctx, mut ring: BackRing) {
    // A GSO frame: up to 64 KiB of IP plus its Ethernet header.
    let mut buf = vec![0u8; offload::VNET_HDR_LEN + 65536 + 1024];
    let fd = c.tap.as_raw_fd();
    // Frames answered but not pushed yet.
    let mut unpushed = 0usize;
    let mut reqs: Vec<(u16, u32)> = Vec::new();
    while !c.stop.load(Ordering::SeqCst) {
        let n = match (&*c.tap).read(&mut buf) {
            Ok(n) => n,
            Err(_) => {
                // Nothing to read (or the TAP is not up): let the
                // frontend see what it has before sleeping.
                push(c, &ring, &mut unpushed);
                wait_readable(fd);
                continue;
            }
        };
        let Some(mut hdr) = offload::VnetHdr::parse(&buf[..n]) else {
            continue;
        };
        let frame = &mut buf[offload::VNET_HDR_LEN..n];
        if hdr.flags & offload::VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
            && hdr.netif_gso().is_none()
            && offload::is_ipv6(frame)
            && !c.rx_ipv6_csum
        {
            if !offload::complete_partial(frame, &hdr) {
                continue;
            }
            hdr.flags = offload::VIRTIO_NET_HDR_F_DATA_VALID;
        }
        let frame = &*frame;
        let gso = hdr.netif_gso();
        let data = netif::rx_slots_for(frame.len());
        let need = data + usize::from(gso.is_some());
        if frame.is_empty() || (data > 1 && !c.rx_sg) || need > ring.size() as usize {
            tracing::trace!(
                "vif RX: {}-byte frame dropped (needs {need} slots)",
                frame.len()
            );
            continue;
        }
        match take_rx_buffers(c, &mut ring, need, &mut unpushed, &mut reqs) {
            Ok(true) => {
                deliver(c, &mut ring, &reqs, &hdr, frame);
                unpushed += 1;
                if unpushed == PUSH_EVERY {
                    push(c, &ring, &mut unpushed);
                }
            }
            Ok(false) => {} // dropped: the frontend posted too few buffers
            Err(e) => {
                tracing::warn!("vif RX ring: {e}; stopped");
                (c.env.on_fatal)();
                return;
            }
        }
    }
    push(c, &ring, &mut unpushed);
}

/// Sleeps until the TAP has a frame, or for [`POLL`].
fn wait_readable(fd: std::os::fd::RawFd) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call.
    let r = unsafe { libc::poll(&mut pfd, 1, POLL.as_millis() as i32) };
    if r > 0 && pfd.revents & libc::POLLIN == 0 {
        // An error condition (e.g. the TAP went away): do not spin.
        std::thread::sleep(POLL);
    }
}

/// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY` for the responses written so
/// far, and the notification if the frontend asked for one.
fn push(c: &Ctx, ring: &BackRing, unpushed: &mut usize) {
    if *unpushed == 0 {
        return;
    }
    *unpushed = 0;
    if ring.push_responses().unwrap_or(false) {
        c.env.evtchn.notify(c.rx_port);
    }
}

/// Waits (briefly) until the frontend has posted `need` RX buffers and takes
/// them into `reqs`; false when it has not (the frame is dropped, as a NIC
/// would). Responses not pushed yet are pushed before waiting: the frontend may
/// be waiting for them to post more.
fn take_rx_buffers(
    c: &Ctx,
    ring: &mut BackRing,
    need: usize,
    unpushed: &mut usize,
    reqs: &mut Vec<(u16, u32)>,
) -> Result<bool, crate::sring::RingError> {
    let mut tries = 0;
    loop {
        let p = ring.pending_requests()? as usize;
        if p >= need {
            reqs.clear();
            let mut slot = [0u8; netif::RX_SLOT as usize];
            // pending_requests() checked prod against the responses owed,
            // so these `need` slots can be consumed.
            for _ in 0..need {
                ring.take_request_into(&mut slot)?;
                reqs.push(netif::parse_rx_request(&slot));
            }
            return Ok(true);
        }
        push(c, ring, unpushed);
        let _ = ring.final_check();
        tries += 1;
        if tries > 4 || c.stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        c.bell.wait(Duration::from_millis(25));
    }
}

/// Copies `frame` into the posted buffers and answers each slot: the first
/// data slot carries the checksum flags (and `NETRXF_extra_info` for GSO,
/// whose extra-info slot follows it, as netback orders them), all but the
/// last data slot `NETRXF_more_data`. The caller pushes the responses.
fn deliver(
    c: &Ctx,
    ring: &mut BackRing,
    reqs: &[(u16, u32)],
    hdr: &offload::VnetHdr,
    frame: &[u8],
) {
    let gso = hdr.netif_gso();
    let mut first_flags = 0;
    if hdr.flags & offload::VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
        first_flags |= netif::NETRXF_CSUM_BLANK | netif::NETRXF_DATA_VALIDATED;
    } else if hdr.flags & offload::VIRTIO_NET_HDR_F_DATA_VALID != 0 {
        first_flags |= netif::NETRXF_DATA_VALIDATED;
    }
    if gso.is_some() {
        first_flags |= netif::NETRXF_EXTRA_INFO;
    }
    let mut bufs = reqs.iter();
    let mut failed = false;
    let chunks = frame.chunks(netif::PAGE_SIZE);
    let last = chunks.len().saturating_sub(1);
    for (k, chunk) in chunks.enumerate() {
        let Some(&(id, gref)) = bufs.next() else {
            break;
        };
        let mut flags = if k == 0 { first_flags } else { 0 };
        if k < last {
            flags |= netif::NETRXF_MORE_DATA;
        }
        failed |= c.grants.write(gref, 0, chunk).is_err();
        // A failed copy poisons the whole frame: every slot says error so
        // the frontend drops it rather than passing on a torn frame.
        let status = if failed {
            netif::NETIF_RSP_ERROR
        } else {
            chunk.len() as i16
        };
        let _ = ring.put_response(&netif::rx_response(id, 0, flags, status));
        if k == 0 {
            if let Some((t, size)) = gso {
                // The extra takes a posted buffer's slot; its response is
                // the extra info itself.
                if bufs.next().is_some() {
                    let _ = ring.put_response(&netif::ExtraInfo::gso(t, size).encode());
                }
            }
        }
    }
}
