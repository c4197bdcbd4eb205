//! Guest → host: the TX ring's frames to the TAP (slots, extra info,
//! checksum completion, GSO headers, `rate=`).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use super::{offload, Ctx, POLL};
use crate::netif::{self, TxRequest};
use crate::sring::BackRing;

/// Guest → host: frames from the TX ring to the TAP.
pub(super) fn tx_loop(c: &Ctx, mut ring: BackRing) {
    let mut frame = Vec::with_capacity(netif::MAX_FRAME);
    // Slots of a frame whose later slots the frontend has not published
    // yet: they wait for the rest (netback's `xenvif_count_requests`).
    let mut carry: Vec<TxRequest> = Vec::new();
    while !c.stop.load(Ordering::SeqCst) {
        let mut reqs = std::mem::take(&mut carry);
        let had = reqs.len();
        let more = (|| -> Result<(), crate::sring::RingError> {
            loop {
                let n = ring.pending_requests()?;
                if n == 0 && !ring.final_check()? {
                    return Ok(());
                }
                for _ in 0..ring.pending_requests()? {
                    if !ring.can_consume() {
                        return Ok(());
                    }
                    reqs.push(TxRequest::parse(&ring.take_request()?));
                }
            }
        })();
        if let Err(e) = more {
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
            carry = reqs;
            c.bell.wait(POLL);
            continue;
        }
        let mut i = 0;
        while i < reqs.len() {
            // One frame: the first slot, its extra-info slots, then
            // continuation slots while NETTXF_more_data is set.
            let first = reqs[i];
            let mut slots = vec![first];
            let mut extras = Vec::new();
            let mut j = i + 1;
            let mut extras_pending = first.flags & netif::NETTXF_EXTRA_INFO != 0;
            while extras_pending && j < reqs.len() {
                let e = reqs[j];
                extras.push(e);
                j += 1;
                // extra_info: type u8, flags u8 — flags is the 2nd byte
                // of the slot (gref's second byte in TxRequest terms).
                extras_pending = (e.gref >> 8) as u8 & netif::XEN_NETIF_EXTRA_FLAG_MORE != 0;
            }
            let mut last = first;
            while last.flags & netif::NETTXF_MORE_DATA != 0 && j < reqs.len() {
                last = reqs[j];
                slots.push(last);
                j += 1;
            }
            if extras_pending || last.flags & netif::NETTXF_MORE_DATA != 0 {
                carry = reqs[i..].to_vec();
                break;
            }
            let mut ok = gather(c, &slots, &mut frame);
            let gso = extras
                .iter()
                .map(|e| netif::ExtraInfo::parse(&e.encode()))
                .find_map(|x| x.filter(|x| x.kind == netif::XEN_NETIF_EXTRA_TYPE_GSO));
            let mut hdr = offload::VnetHdr::default();
            if ok {
                if let Some(g) = gso {
                    // The kernel segments it and fills each segment's
                    // checksum; the guest left it partial (GSO implies
                    // NETTXF_csum_blank).
                    match offload::tx_gso_header(&mut frame, g.gso_type, g.gso_size) {
                        Some(h) => hdr = h,
                        None => ok = false,
                    }
                } else if first.flags & netif::NETTXF_CSUM_BLANK != 0 {
                    netif::complete_checksum(&mut frame);
                }
            }
            if ok {
                throttle(c, frame.len() as u64);
            }
            let status = if ok {
                // A TAP takes one frame per write; a short write would be
                // a truncated frame.
                match write_frame(&c.tap, &hdr, &frame) {
                    Ok(n) if n == offload::VNET_HDR_LEN + frame.len() => netif::NETIF_RSP_OKAY,
                    Ok(_) => netif::NETIF_RSP_DROPPED,
                    Err(e) => {
                        tracing::debug!("TAP write: {e}");
                        netif::NETIF_RSP_DROPPED
                    }
                }
            } else {
                netif::NETIF_RSP_ERROR
            };
            for s in &slots {
                let _ = ring.put_response(&pad(&netif::tx_response(s.id, status), 12));
            }
            for e in extras {
                let _ =
                    ring.put_response(&pad(&netif::tx_response(e.id, netif::NETIF_RSP_NULL), 12));
            }
            i = j;
        }
        if ring.push_responses().unwrap_or(false) {
            c.env.evtchn.notify(c.tx_port);
        }
    }
}

/// One `writev` of header + frame: a TAP takes one frame per write.
fn write_frame(tap: &File, hdr: &offload::VnetHdr, frame: &[u8]) -> std::io::Result<usize> {
    let h = hdr.encode();
    let iov = [
        libc::iovec {
            iov_base: h.as_ptr() as *mut libc::c_void,
            iov_len: h.len(),
        },
        libc::iovec {
            iov_base: frame.as_ptr() as *mut libc::c_void,
            iov_len: frame.len(),
        },
    ];
    // SAFETY: two iovecs over live buffers (`h`, `frame`) that outlive the
    // call; writev only reads them.
    let r = unsafe { libc::writev(tap.as_raw_fd(), iov.as_ptr(), 2) };
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

fn pad(b: &[u8], n: usize) -> Vec<u8> {
    let mut v = b.to_vec();
    v.resize(n, 0);
    v
}

/// Copies one frame out of the guest's TX slots.
fn gather(c: &Ctx, slots: &[TxRequest], frame: &mut Vec<u8>) -> bool {
    frame.clear();
    let total = usize::from(slots[0].size);
    let mut rest: usize = slots[1..].iter().map(|s| usize::from(s.size)).sum();
    if rest > total {
        return false;
    }
    for (k, s) in slots.iter().enumerate() {
        // The first slot's size is the whole frame; its own share is what
        // the continuation slots do not cover.
        let len = if k == 0 {
            total - rest
        } else {
            usize::from(s.size)
        };
        if k > 0 {
            rest -= len;
        }
        let start = frame.len();
        frame.resize(start + len, 0);
        if c.grants
            .read(s.gref, u64::from(s.offset), &mut frame[start..])
            .is_err()
        {
            return false;
        }
    }
    !frame.is_empty()
}
