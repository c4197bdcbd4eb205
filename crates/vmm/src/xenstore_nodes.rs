//! The XenStore nodes libxl writes for a new domain (`libxl__domain_make`,
//! `libxl__build_post`, the primary console device), so guests and tools
//! find what they find under Xen.

use xenstore::perms::{access, Perm, Perms};
use xenstore::{Engine, XsError};

use crate::VmConfig;

/// Where the domain's rings are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingInfo {
    pub store_port: u32,
    pub store_gfn: u64,
    pub console_port: u32,
    pub console_gfn: u64,
}

/// `xenconsoled`'s default output limit (`LIBXL_XENCONSOLE_LIMIT`).
const XENCONSOLE_LIMIT: &str = "1048576";

/// The UUID in its canonical text form.
pub fn uuid_string(u: &[u8; 16]) -> String {
    let h: Vec<String> = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// Now as libxl writes `start_time`: `seconds.hundredths`.
fn start_time() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:02}", now.as_secs(), now.subsec_micros() / 10_000)
}

/// Writes the domain's nodes in one transaction (retried on EAGAIN by the
/// engine), then `/libxl/<domid>/type` in another, as libxl does.
pub fn write(engine: &Engine, cfg: &VmConfig, rings: &RingInfo) -> Result<(), XsError> {
    let domid = cfg.domid as u16;
    let dom = format!("/local/domain/{domid}");
    let vm = format!("/vm/{}", uuid_string(&cfg.uuid));
    // Readable by the guest, owned by dom0 / owned (writable) by the guest.
    let ro = Perms(vec![
        Perm {
            domid: 0,
            access: access::NONE,
        },
        Perm {
            domid,
            access: access::READ,
        },
    ]);
    let rw = Perms(vec![Perm {
        domid,
        access: access::NONE,
    }]);
    let max_kb = cfg.max_memory_mib * 1024;
    let target_kb = cfg.memory_mib * 1024;
    engine.transaction(|t| {
        t.rm(&dom).or_else(ignore_missing)?;
        t.mkdir(&dom)?;
        t.set_perms(&dom, &ro)?;
        t.rm(&vm).or_else(ignore_missing)?;
        t.mkdir(&vm)?;
        t.set_perms(&vm, &ro)?;
        t.write(&format!("{dom}/vm"), vm.as_bytes())?;
        t.write(&format!("{dom}/name"), cfg.name.as_bytes())?;
        t.write(
            &format!("{dom}/control/platform-feature-multiprocessor-suspend"),
            b"1",
        )?;
        t.write(
            &format!("{dom}/control/platform-feature-xs_reset_watches"),
            b"1",
        )?;
        for d in ["cpu", "memory", "device", "control"] {
            let p = format!("{dom}/{d}");
            t.mkdir(&p)?;
            t.set_perms(&p, &ro)?;
        }
        for d in [
            "control/shutdown",
            "control/feature-poweroff",
            "control/feature-reboot",
            "control/feature-suspend",
            "control/sysrq",
            "data",
            "drivers",
            "feature",
            "attr",
            "error",
        ] {
            let p = format!("{dom}/{d}");
            t.mkdir(&p)?;
            t.set_perms(&p, &rw)?;
        }
        t.write(&format!("{vm}/uuid"), uuid_string(&cfg.uuid).as_bytes())?;
        t.write(&format!("{vm}/name"), cfg.name.as_bytes())?;
        t.write(&format!("{vm}/image/ostype"), b"hvm")?;
        // libxl__build_post: when the domain was built (`xl uptime`).
        t.write(&format!("{vm}/start_time"), start_time().as_bytes())?;
        // libxl__build_post.
        t.write(
            &format!("{dom}/memory/static-max"),
            max_kb.to_string().as_bytes(),
        )?;
        t.write(
            &format!("{dom}/memory/target"),
            target_kb.to_string().as_bytes(),
        )?;
        t.write(&format!("{dom}/memory/videoram"), b"0")?;
        t.write(&format!("{dom}/domid"), domid.to_string().as_bytes())?;
        t.write(
            &format!("{dom}/store/port"),
            rings.store_port.to_string().as_bytes(),
        )?;
        t.write(
            &format!("{dom}/store/ring-ref"),
            rings.store_gfn.to_string().as_bytes(),
        )?;
        for cpu in 0..cfg.max_vcpus {
            let state: &[u8] = if cpu < cfg.vcpus {
                b"online"
            } else {
                b"offline"
            };
            t.write(&format!("{dom}/cpu/{cpu}/availability"), state)?;
        }
        // The primary console (libxl__device_console_add).
        let con = format!("{dom}/console");
        t.mkdir(&con)?;
        t.set_perms(&con, &ro)?;
        t.write(
            &format!("{con}/port"),
            rings.console_port.to_string().as_bytes(),
        )?;
        t.write(
            &format!("{con}/ring-ref"),
            rings.console_gfn.to_string().as_bytes(),
        )?;
        t.write(&format!("{con}/limit"), XENCONSOLE_LIMIT.as_bytes())?;
        t.write(&format!("{con}/type"), b"xenconsoled")?;
        t.write(&format!("{con}/output"), b"pty")?;
        t.write(&format!("{con}/tty"), b"")?;
        Ok(())
    })?;
    engine.transaction(|t| t.write(&format!("/libxl/{domid}/type"), b"pvh"))?;
    engine.introduce_domain(domid);
    Ok(())
}

/// Removes the domain from XenStore as libxl does when it is destroyed
/// (`libxl__destroy_domid`): fires `@releaseDomain`, then removes its
/// nodes. Failures are logged: the domain is gone either way.
pub fn remove(engine: &Engine, cfg: &VmConfig) {
    let domid = cfg.domid as u16;
    engine.domain_shutdown(domid);
    if let Err(e) = engine.release_domain(domid) {
        tracing::debug!("release_domain({domid}): {e}");
    }
    let paths = [
        format!("/local/domain/{domid}"),
        format!("/vm/{}", uuid_string(&cfg.uuid)),
        format!("/libxl/{domid}"),
    ];
    for p in paths {
        if let Err(e) = engine.rm(&p).or_else(ignore_missing) {
            tracing::warn!("removing {p} from XenStore: {e}");
        }
    }
}

fn ignore_missing(e: XsError) -> Result<(), XsError> {
    if e == XsError::NoEnt {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_canonical() {
        let u = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0, 1, 2, 3, 4, 5, 6, 7,
        ];
        assert_eq!(uuid_string(&u), "12345678-9abc-def0-0001-020304050607");
    }

    #[test]
    fn nodes_are_written_as_libxl_does() {
        let e = Engine::new(xenstore::Config::default());
        let mut cfg = VmConfig::new("guest1", "/k");
        cfg.domid = 5;
        cfg.memory_mib = 64;
        cfg.max_memory_mib = 128;
        cfg.max_vcpus = 2;
        let rings = RingInfo {
            store_port: 1,
            store_gfn: 0xfeffc,
            console_port: 2,
            console_gfn: 0xfefff,
        };
        write(&e, &cfg, &rings).expect("write");
        let r = |p: &str| String::from_utf8(e.read(p).expect(p)).expect("utf8");
        assert_eq!(r("/local/domain/5/name"), "guest1");
        assert_eq!(r("/local/domain/5/domid"), "5");
        assert_eq!(
            r("/local/domain/5/vm"),
            "/vm/00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(r("/vm/00000000-0000-0000-0000-000000000000/name"), "guest1");
        assert_eq!(r("/local/domain/5/memory/target"), "65536");
        assert_eq!(r("/local/domain/5/memory/static-max"), "131072");
        assert_eq!(r("/local/domain/5/store/ring-ref"), format!("{}", 0xfeffc));
        assert_eq!(r("/local/domain/5/console/port"), "2");
        assert_eq!(r("/local/domain/5/cpu/1/availability"), "offline");
        assert_eq!(r("/libxl/5/type"), "pvh");
        assert_eq!(
            e.get_perms("/local/domain/5/control/shutdown")
                .expect("perms")
                .owner(),
            5
        );
        assert_eq!(e.get_perms("/local/domain/5").expect("perms").owner(), 0);
        assert!(e.is_introduced(5));
        remove(&e, &cfg);
        assert_eq!(e.read("/local/domain/5/name"), Err(XsError::NoEnt));
        assert_eq!(e.read("/libxl/5/type"), Err(XsError::NoEnt));
        assert!(!e.is_introduced(5));
    }
}
