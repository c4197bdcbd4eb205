//! `DOM` on the command line: a domain name or a numeric id, as in xl.

use anyhow::bail;
use serde_json::Value;

use crate::rundir::{DomainDir, RunDir};

/// A live domain found by name or id.
#[derive(Debug, Clone)]
pub struct Found {
    pub dir: DomainDir,
    pub domid: u32,
}

/// The `info.json` its VMM wrote: (name, domid).
fn recorded_id(dir: &DomainDir) -> Option<u32> {
    let text = std::fs::read_to_string(dir.path.join("info.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["domid"].as_u64().and_then(|d| u32::try_from(d).ok())
}

/// Every live domain with its id, by id (stale run directories removed).
pub fn all(rd: &RunDir) -> anyhow::Result<Vec<Found>> {
    let mut out: Vec<Found> = rd
        .domains()?
        .into_iter()
        .filter_map(|dir| recorded_id(&dir).map(|domid| Found { dir, domid }))
        .collect();
    out.sort_by_key(|f| f.domid);
    Ok(out)
}

/// Looks `dom` up as xl does: all digits is an id, anything else a name.
pub fn find(rd: &RunDir, dom: &str) -> anyhow::Result<Found> {
    let domains = all(rd)?;
    let hit = match dom.parse::<u32>() {
        Ok(id) => domains.into_iter().find(|f| f.domid == id),
        Err(_) => domains.into_iter().find(|f| f.dir.name == dom),
    };
    match hit {
        Some(f) => Ok(f),
        None => bail!("{dom} is an invalid domain identifier (no such domain)"),
    }
}
