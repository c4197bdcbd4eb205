//! xl.cfg: the lexer and parser (as libxlu accepts it), libxl's typed domain
//! configuration, libxl's defaulting, and the `xl create -n` JSON document.
//!
//! Entry points: [`parse`] (text to [`Parsed`]), [`load`] (a file plus
//! `KEY=VALUE` overrides, as `xl create CFG KEY=VALUE...`),
//! [`DomainConfig::with_defaults`], and [`json::to_json`].

mod cnum;
pub mod cpuid;
pub mod cpus;
pub mod defaults;
pub mod disk;
pub mod error;
pub mod json;
pub mod keys;
pub mod model;
pub mod pci;
pub mod resources;
pub mod syntax;
pub mod uuid;
pub mod vif;
pub mod vnuma;

pub use error::{Error, XlExit};
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

/// The outcome of reading a configuration: the configuration or the error
/// that refused it, and in both cases the warnings xl would have printed
/// first.
#[derive(Debug)]
pub struct Report {
    pub result: Result<DomainConfig, Error>,
    /// Warning lines, in xl's wording and order.
    pub warnings: Vec<String>,
}

impl Report {
    /// The configuration with its warnings, or the error (warnings dropped).
    pub fn into_result(self) -> Result<Parsed, Error> {
        let warnings = self.warnings;
        self.result.map(|config| Parsed { config, warnings })
    }
}

/// Parses xl.cfg text; `source` names it in messages.
pub fn parse(source: &str, data: &[u8]) -> Result<Parsed, Error> {
    parse_report(source, data).into_result()
}

/// Like [`parse`], but keeps the warnings when the configuration is refused.
pub fn parse_report(source: &str, data: &[u8]) -> Report {
    let store = syntax::parse(data).map_err(|e| Error::Syntax {
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
    });
    let mut store = match store {
        Ok(s) => s,
        Err(e) => {
            return Report {
                result: Err(e),
                warnings: Vec::new(),
            }
        }
    };
    store.source = source.to_string();
    let (result, warnings) = keys::read(&store);
    Report { result, warnings }
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
    load_report(path, overrides).into_result()
}

/// Like [`load`], but keeps the warnings when the configuration is refused.
pub fn load_report(path: &std::path::Path, overrides: &[String]) -> Report {
    let source = path.display().to_string();
    match std::fs::read(path) {
        Ok(file) => parse_report(&source, &with_overrides(&file, overrides)),
        Err(err) => Report {
            result: Err(Error::Read { file: source, err }),
            warnings: Vec::new(),
        },
    }
}
