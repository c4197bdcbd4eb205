//! xl.cfg: the lexer and parser (as libxlu accepts it), libxl's typed domain
//! configuration, libxl's defaulting, and the `xl create -n` JSON document.
//!
//! Entry points: [`parse`] (text to [`Parsed`]), [`load`] (a file plus
//! `KEY=VALUE` overrides, as `xl create CFG KEY=VALUE...`),
//! [`DomainConfig::with_defaults`], and [`json::to_json`].

pub mod cpus;
pub mod defaults;
pub mod disk;
pub mod error;
pub mod json;
pub mod keys;
pub mod model;
pub mod resources;
pub mod syntax;
pub mod uuid;
pub mod vif;

pub use error::Error;
pub use json::Flavour;
pub use model::*;

/// A configuration read from text, with the warnings xl would print.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub config: DomainConfig,
    /// Warning lines, in xl's wording and order (without trailing newline).
    pub warnings: Vec<String>,
}

impl Parsed {
    /// The document `xl create -n` prints (yajl's layout).
    pub fn xl_json(&self) -> String {
        json::pretty(&json::to_json(&self.config, Flavour::Xl))
    }
}

/// Parses xl.cfg text; `source` names it in messages.
pub fn parse(source: &str, data: &[u8]) -> Result<Parsed, Error> {
    let mut store = syntax::parse(data).map_err(|e| Error::Syntax {
        file: source.to_string(),
        line: e.line,
        near: e.near,
        message: if e.likely_python {
            format!(
                "{}; the file looks like Python, which xl.cfg no longer supports",
                e.message
            )
        } else {
            e.message
        },
    })?;
    store.source = source.to_string();
    let (config, warnings) = keys::read(&store)?;
    Ok(Parsed { config, warnings })
}

/// The text xl parses for `xl create FILE KEY=VALUE...`: the file, then each
/// override on a line of its own.
pub fn with_overrides(file: &[u8], overrides: &[String]) -> Vec<u8> {
    let mut data = file.to_vec();
    if !overrides.is_empty() {
        data.push(b'\n');
        for o in overrides {
            data.extend_from_slice(o.as_bytes());
            data.push(b'\n');
        }
    }
    data
}

/// Reads `path` and applies `KEY=VALUE` overrides.
pub fn load(path: &std::path::Path, overrides: &[String]) -> Result<Parsed, Error> {
    let source = path.display().to_string();
    let file = std::fs::read(path).map_err(|err| Error::Read {
        file: source.clone(),
        err,
    })?;
    parse(&source, &with_overrides(&file, overrides))
}
