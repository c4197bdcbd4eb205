//! Guest → host: the TX ring's frames to the TAP (slots, extra info,
//! checksum completion, GSO headers, `rate=`).
//!
//! GSO frames and frames of at least [`DIRECT_MIN`] bytes go to the TAP
//! in one `writev` whose iovecs point straight into the granted pages
//! (held for the call, as a grant copy would hold them); only what the
//! backend must change is copied: a GSO frame's first [`HEAD`] bytes (for
//! the pseudo-header sum), a `NETTXF_csum_blank` frame (its checksum is
//! computed over the copy), and short frames, for which a copy is cheaper.
//! Responses are pushed every [`PUSH_EVERY`] frames so the frontend can
//! refill the ring while the rest are written.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use super::{offload, Ctx, POLL};
use crate::grant::{GrantRange, HostIoVec};
use crate::netif::{self, TxRequest};
use crate::sring::{BackRing, RingError};

/// Frames answered between pushes of the responses (netback pushes once
/// per NAPI poll of 64).
const PUSH_EVERY: usize = 64;
/// Frames at least this long are written from the granted pages; shorter
/// ones are copied first: mapping and unmapping a grant costs more than
/// the pin of a grant copy, which for an MTU-sized frame outweighs the
/// copy itself (measured: 1514-byte frames take ~6 % less CPU copied).
const DIRECT_MIN: usize = 4096;
/// Bytes at the start of a GSO frame copied to fix its headers up:
/// Ethernet, IPv4 or IPv6 and TCP, each with options, fit.
const HEAD: usize = 256;

/// Buffers reused from frame to frame (no allocation per frame).
#[derive(Default)]
struct Bufs {
    /// A frame's data, slot by slot: `(gref, offset, len)`.
    pieces: Vec<GrantRange>,
    /// The pieces after the copied head.
    rest: Vec<GrantRange>,
    /// A copied frame, or the head of a GSO frame.
    copy: Vec<u8>,
    /// Scratch for [`crate::grant::GrantSession::with_host_pages`].
    scratch: Vec<libc::iovec>,
    /// The `writev` vector.
    iov: Vec<libc::iovec>,
}

/// Guest → host: frames from the TX ring to the TAP.
pub(super) fn tx_loop(c: &Ctx, mut ring: BackRing) {
    // Requests taken from the ring and not answered yet: complete frames,
    // then possibly one whose later slots the frontend has not published
    // yet, which waits for them (netback's `xenvif_count_requests`).
    let mut reqs: Vec<TxRequest> = Vec::with_capacity(ring.size() as usize);
    let mut slots: Vec<TxRequest> = Vec::new();
    let mut b = Bufs {
        copy: Vec::with_capacity(netif::MAX_FRAME),
        ..Bufs::default()
    };
    while !c.stop.load(Ordering::SeqCst) {
        let had = reqs.len();
        if let Err(e) = consume(&mut ring, &mut reqs) {
            tracing::warn!("vif TX ring: {e}; stopped");
            (c.env.on_fatal)();
            return;
        }
        if reqs.len() == had {
            if had > 0 && !ring.can_consume() {
                // The whole ring is one unfinished frame: it can never
                // complete.
                tracing::warn!("vif TX ring: a frame longer than the ring; stopped");
                (c.env.on_fatal)();
                return;
            }
            c.bell.wait(POLL);
            continue;
        }
        let mut i = 0;
        let mut since_push = 0;
        while let Some((extras, end)) = frame_bounds(&reqs[i..]) {
            // One frame: the first slot, its extra-info slots, then
            // continuation slots while NETTXF_more_data is set.
            let first = reqs[i];
            slots.clear();
            slots.push(first);
            slots.extend_from_slice(&reqs[i + 1 + extras..i + end]);
            let extra = &reqs[i + 1..i + 1 + extras];
            let gso = extra
                .iter()
                .map(|e| netif::ExtraInfo::parse(&e.encode()))
                .find_map(|x| x.filter(|x| x.kind == netif::XEN_NETIF_EXTRA_TYPE_GSO));
            let csum_blank = first.flags & netif::NETTXF_CSUM_BLANK != 0;
            let status = send_frame(c, &slots, &mut b, csum_blank, gso);
            for s in &slots {
                let _ = ring.put_response(&tx_response(s.id, status));
            }
            for e in extra {
                let _ = ring.put_response(&tx_response(e.id, netif::NETIF_RSP_NULL));
            }
            i += end;
            since_push += 1;
            if since_push == PUSH_EVERY {
                push(c, &ring);
                since_push = 0;
            }
        }
        reqs.drain(..i);
        push(c, &ring);
    }
}

/// Takes every request the frontend has published. Only when there is
/// none does it re-arm `req_event` (`RING_FINAL_CHECK_FOR_REQUESTS`), so
/// a frontend refilling a ring we are busy with need not notify us.
fn consume(ring: &mut BackRing, reqs: &mut Vec<TxRequest>) -> Result<(), RingError> {
    let had = reqs.len();
    let mut slot = [0u8; netif::TX_SLOT as usize];
    loop {
        let n = ring.pending_requests()?;
        if n == 0 && (reqs.len() > had || !ring.final_check()?) {
            return Ok(());
        }
        for _ in 0..n {
            if !ring.can_consume() {
                return Ok(());
            }
            ring.take_request_into(&mut slot)?;
            reqs.push(TxRequest::parse(&slot));
        }
    }
}

/// The frame at the start of `reqs`: `(extra-info slots, slots in all)`,
/// or `None` while its last slot is not there yet.
fn frame_bounds(reqs: &[TxRequest]) -> Option<(usize, usize)> {
    let first = reqs.first()?;
    let mut j = 1;
    let mut extras_pending = first.flags & netif::NETTXF_EXTRA_INFO != 0;
    while extras_pending && j < reqs.len() {
        // extra_info: type u8, flags u8 — flags is the 2nd byte of the
        // slot (gref's second byte in TxRequest terms).
        extras_pending = (reqs[j].gref >> 8) as u8 & netif::XEN_NETIF_EXTRA_FLAG_MORE != 0;
        j += 1;
    }
    let extras = j - 1;
    let mut more = first.flags & netif::NETTXF_MORE_DATA != 0;
    while more && j < reqs.len() {
        more = reqs[j].flags & netif::NETTXF_MORE_DATA != 0;
        j += 1;
    }
    if extras_pending || more {
        return None;
    }
    Some((extras, j))
}

/// A TX response in its 12-byte slot.
fn tx_response(id: u16, status: i16) -> [u8; netif::TX_SLOT as usize] {
    let mut b = [0u8; netif::TX_SLOT as usize];
    b[..4].copy_from_slice(&netif::tx_response(id, status));
    b
}

/// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`, and the notification if the
/// frontend asked for one.
fn push(c: &Ctx, ring: &BackRing) {
    if ring.push_responses().unwrap_or(false) {
        c.env.evtchn.notify(c.tx_port);
    }
}

/// Sends one frame to the TAP; the status for its slots.
fn send_frame(
    c: &Ctx,
    slots: &[TxRequest],
    b: &mut Bufs,
    csum_blank: bool,
    gso: Option<netif::ExtraInfo>,
) -> i16 {
    let Some(total) = pieces(slots, &mut b.pieces) else {
        return netif::NETIF_RSP_ERROR;
    };
    let written = match gso {
        Some(g) => send_gso(c, b, total, g),
        None if csum_blank || total < DIRECT_MIN => send_copied(c, b, total, csum_blank),
        None => {
            throttle(c, total as u64);
            write_direct(c, b, &offload::VnetHdr::default(), 0)
        }
    };
    match written {
        // A TAP takes one frame per write; a short write would be a
        // truncated frame.
        Some(Ok(n)) if n == offload::VNET_HDR_LEN + total => netif::NETIF_RSP_OKAY,
        Some(Ok(_)) => netif::NETIF_RSP_DROPPED,
        Some(Err(e)) => {
            tracing::debug!("TAP write: {e}");
            netif::NETIF_RSP_DROPPED
        }
        None => netif::NETIF_RSP_ERROR,
    }
}

/// The frame's data as grant ranges, one per slot; its length, or `None`
/// when the slots contradict it (continuation slots longer than the
/// frame) or it is empty.
fn pieces(slots: &[TxRequest], out: &mut Vec<GrantRange>) -> Option<usize> {
    out.clear();
    let total = usize::from(slots[0].size);
    let rest: usize = slots[1..].iter().map(|s| usize::from(s.size)).sum();
    if rest > total || total == 0 {
        return None;
    }
    // The first slot's size is the whole frame; its own share is what the
    // continuation slots do not cover.
    let lens = std::iter::once(total - rest).chain(slots[1..].iter().map(|s| usize::from(s.size)));
    for (s, len) in slots.iter().zip(lens) {
        out.push(GrantRange {
            gref: s.gref,
            offset: u64::from(s.offset),
            len: len as u64,
        });
    }
    Some(total)
}

/// Copies the first `len` bytes of the frame into `b.copy`; false when a
/// grant refuses. Every piece that starts inside those bytes is read
/// (even an empty one), so each slot's grant is checked once.
fn copy_head(c: &Ctx, b: &mut Bufs, len: usize) -> bool {
    b.copy.clear();
    for p in &b.pieces {
        let at = b.copy.len();
        if at >= len {
            break;
        }
        let n = (p.len as usize).min(len - at);
        b.copy.resize(at + n, 0);
        if c.grants.read(p.gref, p.offset, &mut b.copy[at..]).is_err() {
            return false;
        }
    }
    b.copy.len() == len
}

/// A frame the backend copies whole (short, or its checksum to complete).
fn send_copied(
    c: &Ctx,
    b: &mut Bufs,
    total: usize,
    csum_blank: bool,
) -> Option<std::io::Result<usize>> {
    if !copy_all(c, b, total) {
        return None;
    }
    if csum_blank {
        netif::complete_checksum(&mut b.copy);
    }
    throttle(c, total as u64);
    Some(write_copy(c, b, &offload::VnetHdr::default()))
}

/// Copies the whole frame into `b.copy`, checking every slot's grant.
fn copy_all(c: &Ctx, b: &mut Bufs, total: usize) -> bool {
    b.copy.clear();
    b.copy.resize(total, 0);
    let mut at = 0;
    for p in &b.pieces {
        let n = p.len as usize;
        if c.grants
            .read(p.gref, p.offset, &mut b.copy[at..at + n])
            .is_err()
        {
            return false;
        }
        at += n;
    }
    true
}

/// A GSO frame: its headers are copied and fixed up (the kernel segments
/// it and fills each segment's checksum; the guest left it partial, as
/// GSO implies `NETTXF_csum_blank`), the payload goes from the guest's
/// pages.
fn send_gso(
    c: &Ctx,
    b: &mut Bufs,
    total: usize,
    g: netif::ExtraInfo,
) -> Option<std::io::Result<usize>> {
    if total <= HEAD {
        if !copy_all(c, b, total) {
            return None;
        }
        let hdr = offload::tx_gso_header(&mut b.copy, g.gso_type, g.gso_size)?;
        throttle(c, total as u64);
        return Some(write_copy(c, b, &hdr));
    }
    let head = HEAD;
    if !copy_head(c, b, head) {
        return None;
    }
    let hdr = offload::tx_gso_header_in(&mut b.copy, total, g.gso_type, g.gso_size)?;
    throttle(c, total as u64);
    match write_direct(c, b, &hdr, head)? {
        Ok(n) => Some(Ok(n)),
        // No host pointers into guest memory: copy the rest too.
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
            let h = b.copy[..head].to_vec();
            if !copy_all(c, b, total) {
                return None;
            }
            b.copy[..head].copy_from_slice(&h);
            Some(write_copy(c, b, &hdr))
        }
        Err(e) => Some(Err(e)),
    }
}

/// Writes `hdr` and the copied frame `b.copy` in one `writev`.
fn write_copy(c: &Ctx, b: &mut Bufs, hdr: &offload::VnetHdr) -> std::io::Result<usize> {
    let h = hdr.encode();
    b.iov.clear();
    b.iov.push(iovec(&h));
    b.iov.push(iovec(&b.copy));
    writev(c, &b.iov)
}

/// Writes `hdr`, the first `skip` bytes from `b.copy` and the rest of the
/// frame straight from the granted pages (held for the call) in one
/// `writev`. `None` when a grant refuses; an `Unsupported` error when
/// guest memory gives no host pointers (nothing was written). A frame
/// written with `skip` 0 falls back to a copy itself.
fn write_direct(
    c: &Ctx,
    b: &mut Bufs,
    hdr: &offload::VnetHdr,
    skip: usize,
) -> Option<std::io::Result<usize>> {
    b.rest.clear();
    let mut at = 0usize;
    for p in &b.pieces {
        let len = p.len as usize;
        let cut = skip.saturating_sub(at).min(len);
        // Pieces inside the copied head were checked by the copy.
        if cut < len || (len == 0 && at >= skip) {
            b.rest.push(GrantRange {
                gref: p.gref,
                offset: p.offset + cut as u64,
                len: (len - cut) as u64,
            });
        }
        at += len;
    }
    let h = hdr.encode();
    let Bufs {
        rest,
        scratch,
        iov,
        copy,
        ..
    } = b;
    let head = &copy[..skip.min(copy.len())];
    let r = c.grants.with_host_pages(rest, false, scratch, |pages| {
        iov.clear();
        iov.push(iovec(&h));
        if !head.is_empty() {
            iov.push(iovec(head));
        }
        iov.extend_from_slice(HostIoVec::as_iovecs(pages));
        writev(c, iov)
    });
    match r {
        Ok(Some(w)) => Some(w),
        Ok(None) if skip == 0 => {
            let total = at;
            if !copy_all(c, b, total) {
                return None;
            }
            Some(write_copy(c, b, hdr))
        }
        Ok(None) => Some(Err(std::io::ErrorKind::Unsupported.into())),
        Err(e) => {
            tracing::debug!("vif TX: {e}");
            None
        }
    }
}

fn iovec(b: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: b.as_ptr() as *mut libc::c_void,
        iov_len: b.len(),
    }
}

/// One `writev` of a whole frame: a TAP takes one frame per write.
fn writev(c: &Ctx, iov: &[libc::iovec]) -> std::io::Result<usize> {
    // SAFETY: every iovec covers a live buffer of ours or a granted page
    // held for the duration of the call (`with_host_pages`); writev only
    // reads them. At most 1 + 1 + ring size (256) entries, under IOV_MAX.
    let r = unsafe { libc::writev(c.tap.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// Waits until `rate=` allows `len` more bytes.
fn throttle(c: &Ctx, len: u64) {
    let Some(credit) = &c.credit else { return };
    loop {
        let r = credit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(len, std::time::Instant::now());
        match r {
            Ok(()) => return,
            Err(wait) if !c.stop.load(Ordering::SeqCst) => std::thread::sleep(wait),
            Err(_) => return,
        }
    }
}
