//! The backend grant API: map/read/write/unmap and copy with Xen's
//! `GTF_reading`/`GTF_writing` protocol and `GNTST_*` codes.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use xen_abi::grant_table::*;
use xen_abi::DOMID_SELF;
use xen_emu::{CopyEnd, GrantError};

/// A data page the guest grants.
const DATA_GFN: u64 = 0x100;

/// A domain with grant frame 0 mapped at [`GT_GFN`].
fn setup() -> H {
    let mut t = h();
    map_grant_frame(&mut t);
    t
}

#[test]
fn map_sets_reading_and_writing_and_unmap_clears_them() {
    let t = setup();
    grant(&t, 8, GTF_PERMIT_ACCESS, 0, DATA_GFN);
    let m = t.d.grant_map(8, true).unwrap();
    assert_eq!(m.frame, DATA_GFN << 12);
    assert_eq!(
        grant_flags(&t, 8),
        GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
    );
    t.d.grant_write(m.handle, 16, b"hello").unwrap();
    let mut buf = [0u8; 5];
    t.d.grant_read(m.handle, 16, &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    let mut direct = [0u8; 5];
    xen_emu::guest::GuestMemory::read(&*t.mem, (DATA_GFN << 12) + 16, &mut direct).unwrap();
    assert_eq!(&direct, b"hello");
    t.d.grant_unmap(m.handle).unwrap();
    assert_eq!(grant_flags(&t, 8), GTF_PERMIT_ACCESS);
    assert_eq!(
        t.d.grant_unmap(m.handle).unwrap_err().status(),
        GNTST_BAD_HANDLE
    );
}

#[test]
fn two_mappings_keep_flags_until_the_last_unmap() {
    let t = setup();
    grant(&t, 9, GTF_PERMIT_ACCESS, 0, DATA_GFN);
    let r = t.d.grant_map(9, false).unwrap();
    assert_eq!(grant_flags(&t, 9), GTF_PERMIT_ACCESS | GTF_READING);
    let w = t.d.grant_map(9, true).unwrap();
    assert_eq!(
        grant_flags(&t, 9),
        GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
    );
    t.d.grant_unmap(w.handle).unwrap();
    assert_eq!(grant_flags(&t, 9), GTF_PERMIT_ACCESS | GTF_READING);
    t.d.grant_unmap(r.handle).unwrap();
    assert_eq!(grant_flags(&t, 9), GTF_PERMIT_ACCESS);
}

#[test]
fn readonly_grant_refuses_write_map_and_write() {
    let t = setup();
    grant(&t, 10, GTF_PERMIT_ACCESS | GTF_READONLY, 0, DATA_GFN);
    let e = t.d.grant_map(10, true).unwrap_err();
    assert_eq!(e.status(), GNTST_GENERAL_ERROR);
    assert_eq!(grant_flags(&t, 10), GTF_PERMIT_ACCESS | GTF_READONLY);
    let m = t.d.grant_map(10, false).unwrap();
    assert_eq!(
        t.d.grant_write(m.handle, 0, b"x").unwrap_err().status(),
        GNTST_PERMISSION_DENIED
    );
    // Copy into a read-only grant fails the same way as a write map.
    assert_eq!(
        t.d.grant_copy_to_guest(
            CopyEnd::Grant {
                gref: 10,
                offset: 0
            },
            b"x"
        )
        .unwrap_err()
        .status(),
        GNTST_GENERAL_ERROR
    );
    t.d.grant_unmap(m.handle).unwrap();
}

#[test]
fn bad_entries_get_xen_status_codes() {
    let t = setup();
    // Past the table (one frame = 512 entries).
    assert_eq!(
        t.d.grant_map(512, false).unwrap_err(),
        GrantError::BadGntref(512)
    );
    assert_eq!(GrantError::BadGntref(512).status(), GNTST_BAD_GNTREF);
    // Invalid entry, wrong domid, transfer type.
    grant(&t, 11, GTF_INVALID, 0, DATA_GFN);
    grant(&t, 12, GTF_PERMIT_ACCESS, 7, DATA_GFN);
    grant(&t, 13, GTF_ACCEPT_TRANSFER, 0, DATA_GFN);
    for gref in 11..=13 {
        assert_eq!(
            t.d.grant_map(gref, false).unwrap_err().status(),
            GNTST_GENERAL_ERROR
        );
        assert_eq!(grant_flags(&t, gref) & (GTF_READING | GTF_WRITING), 0);
    }
    // Frame outside guest memory.
    grant(&t, 14, GTF_PERMIT_ACCESS, 0, 0x0008_0000);
    assert_eq!(
        t.d.grant_map(14, false).unwrap_err().status(),
        GNTST_BAD_PAGE
    );
    assert_eq!(grant_flags(&t, 14), GTF_PERMIT_ACCESS);
    // Access past the page.
    grant(&t, 15, GTF_PERMIT_ACCESS, 0, DATA_GFN);
    let m = t.d.grant_map(15, false).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(
        t.d.grant_read(m.handle, 4092, &mut buf)
            .unwrap_err()
            .status(),
        GNTST_BAD_COPY_ARG
    );
    assert_eq!(
        t.d.grant_read(9999, 0, &mut buf).unwrap_err().status(),
        GNTST_BAD_HANDLE
    );
}

#[test]
fn entries_of_a_frame_the_guest_never_mapped_are_not_granted() {
    let mut t = setup();
    // Grow the table to 2 frames without mapping frame 1.
    let mut list = [0u64; 2];
    let _ = &mut list;
    t.mem.put(
        ARG,
        &GnttabSetupTable {
            dom: DOMID_SELF,
            nr_frames: 2,
            frame_list: BUF,
            ..Default::default()
        },
    );
    assert_eq!(
        t.call(
            xen_abi::xen::HYPERVISOR_GRANT_TABLE_OP,
            &[GNTTABOP_SETUP_TABLE, ARG, 1]
        ),
        0
    );
    assert_eq!(
        t.d.grant_map(600, false).unwrap_err().status(),
        GNTST_GENERAL_ERROR
    );
    assert_eq!(
        t.d.grant_map(1024, false).unwrap_err().status(),
        GNTST_BAD_GNTREF
    );
}

#[test]
fn copy_both_directions_pins_only_during_the_copy() {
    let t = setup();
    grant(&t, 20, GTF_PERMIT_ACCESS, 0, DATA_GFN);
    grant(&t, 21, GTF_PERMIT_ACCESS, 0, DATA_GFN + 1);
    t.d.grant_copy_to_guest(
        CopyEnd::Grant {
            gref: 20,
            offset: 100,
        },
        b"abcdef",
    )
    .unwrap();
    assert_eq!(grant_flags(&t, 20), GTF_PERMIT_ACCESS);
    let mut buf = [0u8; 6];
    t.d.grant_copy_from_guest(
        CopyEnd::Grant {
            gref: 20,
            offset: 100,
        },
        &mut buf,
    )
    .unwrap();
    assert_eq!(&buf, b"abcdef");
    t.d.grant_copy(
        CopyEnd::Grant {
            gref: 20,
            offset: 100,
        },
        CopyEnd::Grant {
            gref: 21,
            offset: 0,
        },
        6,
    )
    .unwrap();
    t.d.grant_copy_from_guest(
        CopyEnd::Gfn {
            gfn: DATA_GFN + 1,
            offset: 0,
        },
        &mut buf,
    )
    .unwrap();
    assert_eq!(&buf, b"abcdef");
    assert_eq!(grant_flags(&t, 21), GTF_PERMIT_ACCESS);
    // A copy while a mapping is held leaves the mapping's flags alone.
    let m = t.d.grant_map(20, false).unwrap();
    t.d.grant_copy_from_guest(
        CopyEnd::Grant {
            gref: 20,
            offset: 0,
        },
        &mut buf,
    )
    .unwrap();
    assert_eq!(grant_flags(&t, 20), GTF_PERMIT_ACCESS | GTF_READING);
    t.d.grant_unmap(m.handle).unwrap();
    // Bad arguments.
    assert_eq!(
        t.d.grant_copy_from_guest(
            CopyEnd::Grant {
                gref: 20,
                offset: 4093
            },
            &mut buf
        )
        .unwrap_err()
        .status(),
        GNTST_BAD_COPY_ARG
    );
    assert_eq!(
        t.d.grant_copy_from_guest(
            CopyEnd::Gfn {
                gfn: 1 << 30,
                offset: 0
            },
            &mut buf
        )
        .unwrap_err()
        .status(),
        GNTST_BAD_PAGE
    );
}

#[test]
fn guest_ending_access_is_refused_while_mapped() {
    // The guest's gnttab_end_foreign_access: cmpxchg flags → 0 only if
    // neither GTF_reading nor GTF_writing is set.
    let t = setup();
    grant(&t, 30, GTF_PERMIT_ACCESS, 0, DATA_GFN);
    let m = t.d.grant_map(30, false).unwrap();
    let word = xen_emu::guest::GuestMemory::atomic_u16(&*t.mem, (GT_GFN << 12) + 8 * 30).unwrap();
    let cur = word.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        cur & (GTF_READING | GTF_WRITING) != 0,
        "guest sees it in use"
    );
    t.d.grant_unmap(m.handle).unwrap();
    let cur = word.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(cur & (GTF_READING | GTF_WRITING), 0);
    assert!(word
        .compare_exchange(
            cur,
            0,
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst
        )
        .is_ok());
    // Now the entry is gone: a new map fails.
    assert_eq!(
        t.d.grant_map(30, false).unwrap_err().status(),
        GNTST_GENERAL_ERROR
    );
}

#[test]
fn grant_entry_gpa_points_into_the_mapped_frame() {
    let t = setup();
    assert_eq!(t.d.grant_entry_gpa(3), Some((GT_GFN << 12) + 24));
    assert_eq!(t.d.grant_entry_gpa(512), None);
}
