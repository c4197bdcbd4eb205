//! Errors that stop xl (and us) from accepting a configuration. Each names
//! the file and, where xl knows it, the line and the key.

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{file}: cannot read configuration file: {err}")]
    Read { file: String, err: std::io::Error },
    /// The text does not follow the xl.cfg grammar.
    #[error("{file}:{line}: syntax error near '{near}' ({message})")]
    Syntax {
        file: String,
        line: u32,
        near: String,
        message: String,
    },
    /// A key has a value outside its set of names.
    #[error("{file}: {key}: invalid value \"{value}\" (expected {expected})")]
    InvalidValue {
        file: String,
        key: String,
        line: Option<u32>,
        value: String,
        expected: String,
    },
    /// A key's value is unusable for another reason.
    #[error("{file}: {key}: {message}")]
    Key {
        file: String,
        key: String,
        line: Option<u32>,
        message: String,
    },
    /// The configuration as a whole is unusable.
    #[error("{file}: {message}")]
    Config { file: String, message: String },
}

impl Error {
    /// The line the error is about, when known.
    pub fn line(&self) -> Option<u32> {
        match self {
            Error::Syntax { line, .. } => Some(*line),
            Error::InvalidValue { line, .. } | Error::Key { line, .. } => *line,
            Error::Read { .. } | Error::Config { .. } => None,
        }
    }
}
