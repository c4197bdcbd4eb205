//! Watches: registrations and the events that changes produce.

use crate::path;
use crate::perms::Perms;

/// A registered watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// Absolute path (or `@special`) watched.
    pub path: Box<str>,
    /// The client's token, echoed in events.
    pub token: Box<[u8]>,
    /// Prefix to strip from event paths when the watch was registered with
    /// a relative path (`/local/domain/<id>/`), else empty.
    pub relative_prefix: Box<str>,
}

impl Watch {
    /// The path to report for a change of `changed`: relative when the
    /// watch was registered relative.
    pub fn event_path<'a>(&self, changed: &'a str) -> &'a str {
        if self.relative_prefix.is_empty() {
            return changed;
        }
        changed
            .strip_prefix(&*self.relative_prefix)
            .unwrap_or(changed)
    }

    /// Does a change of `changed` trigger this watch? With `exact`, only a
    /// watch on that very path matches (used for nodes removed below a
    /// removed node); otherwise any watch on the path or an ancestor.
    pub fn matches(&self, changed: &str, exact: bool) -> bool {
        if exact {
            *self.path == *changed
        } else {
            path::is_child(changed, &self.path) || *self.path == *changed
        }
    }
}

/// One change to be delivered to matching watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The changed path (absolute or `@special`).
    pub path: String,
    /// Match only watches on exactly this path.
    pub exact: bool,
    /// The node's permissions at the time of the change (who may see it);
    /// `None` for special events, which only privileged connections see.
    pub perms: Option<Perms>,
}

/// Appends a WATCH_EVENT payload (`path\0token\0`) to `out`.
pub fn event_payload(out: &mut Vec<u8>, path: &str, token: &[u8]) {
    out.extend_from_slice(path.as_bytes());
    out.push(0);
    out.extend_from_slice(token);
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(path: &str, rel: &str) -> Watch {
        Watch {
            path: path.into(),
            token: Box::new(*b"t"),
            relative_prefix: rel.into(),
        }
    }

    #[test]
    fn ancestors_match_descendant_changes() {
        assert!(w("/a", "").matches("/a/b/c", false));
        assert!(w("/a", "").matches("/a", false));
        assert!(!w("/a", "").matches("/ab", false));
        assert!(!w("/a/b", "").matches("/a", false));
        assert!(!w("/a", "").matches("/a/b", true));
        assert!(w("@releaseDomain", "").matches("@releaseDomain", false));
    }

    #[test]
    fn relative_watches_report_relative_paths() {
        let watch = w("/local/domain/3/dev", "/local/domain/3/");
        assert_eq!(watch.event_path("/local/domain/3/dev/x"), "dev/x");
    }
}
