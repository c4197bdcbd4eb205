//! Path rules: relative paths resolve against `/local/domain/<domid>`,
//! the allowed characters, no empty components, and length limits.

use crate::wire::{XsError, ABS_PATH_MAX};
use crate::DomId;

/// The home directory of a domain (`GET_DOMAIN_PATH`).
pub fn domain_path(domid: DomId) -> String {
    format!("/local/domain/{domid}")
}

/// Is this a special watch path (`@introduceDomain`, `@releaseDomain`)?
pub fn is_special(path: &str) -> bool {
    path.starts_with('@')
}

fn valid_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'/' | b'_' | b'@')
}

/// Length of the `/local/domain/<id>/` prefix that does not count against
/// the path-length quota (Xen's `sscanf("/local/domain/%5u/%n")`).
fn local_prefix_len(path: &str) -> usize {
    let Some(rest) = path.strip_prefix("/local/domain/") else {
        return 0;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 5 || rest.as_bytes().get(digits) != Some(&b'/') {
        return 0;
    }
    "/local/domain/".len() + digits + 1
}

/// Resolves `raw` (as sent by domain `domid`) to an absolute path and
/// validates it. `allow_special` admits `@...` names (watches only).
/// `max_rel_len` is the path-length quota (`None`: unlimited, for dom0).
pub fn canonicalize(
    domid: DomId,
    raw: &[u8],
    allow_special: bool,
    max_rel_len: Option<usize>,
) -> Result<String, XsError> {
    let raw = std::str::from_utf8(raw).map_err(|_| XsError::Inval)?;
    let path = if raw.starts_with('/') || (allow_special && raw.starts_with('@')) {
        raw.to_owned()
    } else {
        format!("/local/domain/{domid}/{raw}")
    };
    if is_valid(&path, allow_special, max_rel_len) {
        Ok(path)
    } else {
        Err(XsError::Inval)
    }
}

/// Xen's `is_valid_nodename`.
pub fn is_valid(path: &str, allow_special: bool, max_rel_len: Option<usize>) -> bool {
    let b = path.as_bytes();
    let starts_ok = b.first() == Some(&b'/') || (allow_special && b.first() == Some(&b'@'));
    if !starts_ok || path.len() > ABS_PATH_MAX {
        return false;
    }
    if path.len() > 1 && path.ends_with('/') {
        return false;
    }
    if path.contains("//") {
        return false;
    }
    if let Some(max) = max_rel_len {
        if path.len() - local_prefix_len(path) > max {
            return false;
        }
    }
    b.iter().all(|&c| valid_char(c))
}

/// The parent of an absolute path (`/` is its own parent).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last component of an absolute path.
pub fn basename(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// Joins a parent path and a child name.
pub fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// Is `child` equal to `parent` or below it? (Xen's `is_child`.)
pub fn is_child(child: &str, parent: &str) -> bool {
    if parent == "/" {
        return child.starts_with('/');
    }
    match child.strip_prefix(parent) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn relative_paths_resolve_against_the_domain_home() {
        assert_eq!(
            canonicalize(3, b"device/vbd", false, None).unwrap(),
            "/local/domain/3/device/vbd"
        );
        assert_eq!(canonicalize(3, b"/abs", false, None).unwrap(), "/abs");
    }

    #[test]
    fn bad_paths_are_einval() {
        for p in [&b"/a/"[..], b"/a//b", b"/a b", b"/\xff", b"/a.b", b""] {
            assert_eq!(
                canonicalize(0, p, false, None),
                Err(XsError::Inval),
                "{p:?}"
            );
        }
        assert_eq!(canonicalize(0, b"/", false, None).unwrap(), "/");
        assert_eq!(
            canonicalize(0, b"@releaseDomain", true, None).unwrap(),
            "@releaseDomain"
        );
    }

    #[test]
    fn path_length_quota_excludes_the_domain_prefix() {
        let long = format!("/local/domain/5/{}", "a".repeat(10));
        assert!(is_valid(&long, false, Some(10)));
        assert!(!is_valid(&long, false, Some(9)));
        assert!(!is_valid(&"/a".repeat(2000), false, None));
    }

    #[test]
    fn parent_and_child() {
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert!(is_child("/a/b", "/a"));
        assert!(is_child("/a", "/a"));
        assert!(!is_child("/ab", "/a"));
        assert!(is_child("/x", "/"));
    }

    proptest! {
        #[test]
        fn canonical_paths_are_valid_and_stable(s in "[a-z0-9/_@-]{0,40}") {
            if let Ok(p) = canonicalize(7, s.as_bytes(), false, None) {
                prop_assert!(p.starts_with('/'));
                prop_assert!(!p.contains("//"));
                prop_assert_eq!(canonicalize(7, p.as_bytes(), false, None), Ok(p.clone()));
                if p != "/" {
                    prop_assert!(is_child(&p, parent(&p)));
                    prop_assert_eq!(join(parent(&p), basename(&p)), p.clone());
                }
            }
        }
    }
}
