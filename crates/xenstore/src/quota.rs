//! Per-domain quotas with Xen 4.17's defaults. Dom0 (privileged
//! connections) is exempt, as in Xen. A value of 0 disables a quota.

use crate::wire::XsError;

/// The quota set that applies to an unprivileged domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Nodes a domain may own (`nodes`, Xen `-E`, default 1000).
    pub nodes: u32,
    /// Bytes in one node: value + permissions + child names (`node-size`,
    /// Xen `-S`, default 2048).
    pub node_size: u32,
    /// Watches per domain (`watches`, Xen `-W`, default 128).
    pub watches: u32,
    /// Open transactions per connection (`transactions`, Xen `-t`, 10).
    pub transactions: u32,
    /// Nodes touched by one transaction (`transaction-nodes`, 1024).
    pub transaction_nodes: u32,
    /// Entries in one permission list (`permissions`, Xen `-A`, 5).
    pub permissions: u32,
    /// Requests whose replies the domain has not yet consumed
    /// (`outstanding`, Xen `-Q outstanding`, 20).
    pub outstanding: u32,
    /// Bytes of store memory a domain may use (`memory`, 2.5 MiB hard).
    pub memory: u32,
    /// Soft memory limit: crossing it is logged (`soft-memory`, 2 MiB).
    pub soft_memory: u32,
    /// Path length below the domain's home (`path-length`, 2048).
    pub path_length: u32,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            nodes: 1000,
            node_size: 2048,
            watches: 128,
            transactions: 10,
            transaction_nodes: 1024,
            permissions: 5,
            outstanding: 20,
            memory: 2560 * 1024,
            soft_memory: 2048 * 1024,
            path_length: crate::wire::REL_PATH_MAX as u32,
        }
    }
}

/// Names accepted by GET_QUOTA / SET_QUOTA, in the order GET_QUOTA lists them.
pub const NAMES: &[&str] = &[
    "nodes",
    "node-size",
    "watches",
    "transactions",
    "transaction-nodes",
    "permissions",
    "outstanding",
    "memory",
    "soft-memory",
    "path-length",
];

impl Quota {
    fn slot(&mut self, name: &str) -> Option<&mut u32> {
        Some(match name {
            "nodes" => &mut self.nodes,
            "node-size" => &mut self.node_size,
            "watches" => &mut self.watches,
            "transactions" => &mut self.transactions,
            "transaction-nodes" => &mut self.transaction_nodes,
            "permissions" => &mut self.permissions,
            "outstanding" => &mut self.outstanding,
            "memory" => &mut self.memory,
            "soft-memory" => &mut self.soft_memory,
            "path-length" => &mut self.path_length,
            _ => return None,
        })
    }

    /// Reads a quota by name.
    pub fn get(&self, name: &str) -> Result<u32, XsError> {
        self.clone().slot(name).map(|v| *v).ok_or(XsError::Inval)
    }

    /// Sets a quota by name.
    pub fn set(&mut self, name: &str, value: u32) -> Result<(), XsError> {
        *self.slot(name).ok_or(XsError::Inval)? = value;
        Ok(())
    }

    /// Parses `name=value,name=value` (the `--quota` option of
    /// `xkvm xenstored`).
    pub fn apply_spec(&mut self, spec: &str) -> Result<(), String> {
        for item in spec.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("quota {item:?}: expected NAME=VALUE"))?;
            let v: u32 = v
                .parse()
                .map_err(|_| format!("quota {k}: {v:?} is not a number"))?;
            self.set(k, v)
                .map_err(|_| format!("unknown quota {k:?}; known: {}", NAMES.join(", ")))?;
        }
        Ok(())
    }
}

/// Is `used` over `limit` (0 = unlimited)?
pub fn exceeds(used: usize, limit: u32) -> bool {
    limit != 0 && used > limit as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_xen() {
        let q = Quota::default();
        assert_eq!(
            (
                q.nodes,
                q.watches,
                q.transactions,
                q.permissions,
                q.outstanding
            ),
            (1000, 128, 10, 5, 20)
        );
    }

    #[test]
    fn every_listed_name_is_settable() {
        let mut q = Quota::default();
        for (i, n) in NAMES.iter().enumerate() {
            q.set(n, i as u32 + 1).unwrap();
            assert_eq!(q.get(n).unwrap(), i as u32 + 1);
        }
        assert_eq!(q.get("bogus"), Err(XsError::Inval));
    }

    #[test]
    fn spec_parses() {
        let mut q = Quota::default();
        q.apply_spec("nodes=5,watches=2").unwrap();
        assert_eq!((q.nodes, q.watches), (5, 2));
        assert!(q.apply_spec("nodes").is_err());
        assert!(q.apply_spec("x=1").is_err());
    }
}
