//! `HYPERVISOR_xen_version` (Xen's `common/kernel.c`), answering as the Xen
//! version in the domain's config. Sub-ops XSM reserves for privileged
//! domains answer a domU as Xen does: `"<denied>"` or `-EPERM`.

use xen_abi::features::*;
use xen_abi::version::*;

use super::Call;
use crate::types::{Errno, HcResult};

/// What `xen_deny()` returns.
const DENIED: &[u8] = b"<denied>";
/// `XENVER_compile_info` contents (Debian's build of Xen).
const COMPILER: &str = "gcc (Debian 12.2.0-14) 12.2.0";
const COMPILE_BY: &str = "pkg-xen-devel";
const COMPILE_DOMAIN: &str = "lists.alioth.debian.org";
const COMPILE_DATE: &str = "Mon Jan  1 00:00:00 UTC 2024";
/// `arch_get_xen_caps` on an x86-64 host with HVM and 32-bit PV.
const CAPABILITIES: &str =
    "xen-3.0-x86_64 xen-3.0-x86_32p hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64 ";
const CHANGESET: &str = "unavailable";

/// A zero-padded fixed-size copy of `s` (Xen's `safe_strcpy` into a
/// zeroed buffer: always NUL terminated).
fn fixed<const N: usize>(s: &str) -> [u8; N] {
    let mut b = [0u8; N];
    let n = s.len().min(N - 1);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    b
}

/// The `XENFEAT_*` submap 0 that Xen gives an HVM/PVH domU of `version`.
pub fn features(version: (u16, u16), has_pirq: bool) -> u32 {
    let mut f = (1 << XENFEAT_WRITABLE_PAGE_TABLES)
        | (1 << XENFEAT_AUTO_TRANSLATED_PHYSMAP)
        | (1 << XENFEAT_HVM_CALLBACK_VECTOR)
        | (1 << XENFEAT_HVM_SAFE_PVCLOCK);
    if has_pirq {
        f |= 1 << XENFEAT_HVM_PIRQS;
    }
    if version >= (4, 6) {
        f |= 1 << XENFEAT_MEMORY_OP_VNODE_SUPPORTED;
    }
    if version >= (4, 15) {
        f |= 1 << XENFEAT_NOT_DIRECT_MAPPED;
    }
    f
}

pub fn xen_version(c: &mut Call<'_>) -> HcResult {
    let cmd = c.args[0];
    let arg = c.args[1];
    let cfg = &c.d.config;
    match cmd {
        XENVER_VERSION => Ok((i64::from(cfg.xen_version.0) << 16) | i64::from(cfg.xen_version.1)),
        XENVER_EXTRAVERSION => {
            let b: [u8; XEN_EXTRAVERSION_LEN] = fixed(&cfg.xen_extraversion);
            c.g.write_bytes(arg, &b)?;
            Ok(0)
        }
        XENVER_COMPILE_INFO => {
            let info = XenCompileInfo {
                compiler: fixed(COMPILER),
                compile_by: fixed(COMPILE_BY),
                compile_domain: fixed(COMPILE_DOMAIN),
                compile_date: fixed(COMPILE_DATE),
            };
            c.g.write(arg, &info)?;
            Ok(0)
        }
        XENVER_CAPABILITIES => {
            let b: [u8; XEN_CAPABILITIES_INFO_LEN] = fixed(CAPABILITIES);
            c.g.write_bytes(arg, &b)?;
            Ok(0)
        }
        XENVER_CHANGESET => {
            let b: [u8; XEN_CHANGESET_INFO_LEN] = fixed(CHANGESET);
            c.g.write_bytes(arg, &b)?;
            Ok(0)
        }
        XENVER_PLATFORM_PARAMETERS => {
            if c.compat() {
                c.g.write(
                    arg,
                    &XenPlatformParametersCompat {
                        virt_start: HYPERVISOR_COMPAT_VIRT_START,
                    },
                )?;
            } else {
                c.g.write(
                    arg,
                    &XenPlatformParameters {
                        virt_start: HYPERVISOR_VIRT_START,
                    },
                )?;
            }
            Ok(0)
        }
        XENVER_GET_FEATURES => {
            let mut fi: XenFeatureInfo = c.g.read(arg)?;
            fi.submap = match fi.submap_idx {
                0 => features(cfg.xen_version, cfg.has_pirq),
                _ => return Err(Errno::EINVAL),
            };
            c.g.write(arg, &fi)?;
            Ok(0)
        }
        XENVER_PAGESIZE => {
            if arg != 0 {
                Err(Errno::EINVAL)
            } else {
                Ok(xen_abi::PAGE_SIZE as i64)
            }
        }
        XENVER_GUEST_HANDLE => {
            c.g.write_bytes(arg, &cfg.uuid)?;
            Ok(0)
        }
        // XSM_PRIV for a domU: the denied string (with its NUL).
        XENVER_COMMANDLINE => {
            let mut b = DENIED.to_vec();
            b.push(0);
            c.g.write_bytes(arg, &b)?;
            Ok(0)
        }
        XENVER_BUILD_ID => Err(Errno::EPERM),
        _ => Err(Errno::ENOSYS),
    }
}
