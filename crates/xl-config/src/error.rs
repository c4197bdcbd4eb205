//! Errors that stop xl (and us) from accepting a configuration. Each names
//! the file and, where xl knows it, the line and the key, and carries the
//! status xl exits with at that refusal site ([`XlExit`]).

/// The status `xl create` exits with when it refuses a configuration.
///
/// Most refusal sites in xl's `parse_config_data` call `exit(1)`; a few
/// call `exit(-ERROR_FAIL)` or `exit(-ERROR_INVAL)` (libxl error codes
/// negated), and `create_domain`'s own failures are returned through
/// `main_create` the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XlExit {
    /// `exit(1)` / `exit(EXIT_FAILURE)`: most refusals.
    #[default]
    Failure,
    /// `-ERROR_FAIL` (3): an unreadable file, `timer_mode` for PV, unknown
    /// enum names looked up through libxl (`viridian`, `vendor_device`,
    /// `gic_version`, `tee`, a PCI `rdm_policy`), `mca_caps`,
    /// `device_model_args*` and `serial`/`usbdevice` that do not parse.
    ErrorFail,
    /// `-ERROR_INVAL` (6): a `pci` spec libxlu refuses.
    ErrorInval,
}

impl XlExit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            XlExit::Failure => 1,
            XlExit::ErrorFail => 3,
            XlExit::ErrorInval => 6,
        }
    }
}

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
        exit: XlExit,
    },
    /// A key's value is unusable for another reason.
    #[error("{file}: {key}: {message}")]
    Key {
        file: String,
        key: String,
        line: Option<u32>,
        message: String,
        exit: XlExit,
    },
    /// The configuration as a whole is unusable.
    #[error("{file}: {message}")]
    Config {
        file: String,
        message: String,
        exit: XlExit,
    },
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

    /// The status xl exits with for this refusal (1 for most; see
    /// [`XlExit`]).
    pub fn exit_status(&self) -> u8 {
        match self {
            // create_domain returns ERROR_FAIL when it cannot read the file.
            Error::Read { .. } => XlExit::ErrorFail.code(),
            // libxlu's parser fails and parse_config_data calls exit(1).
            Error::Syntax { .. } => XlExit::Failure.code(),
            Error::InvalidValue { exit, .. }
            | Error::Key { exit, .. }
            | Error::Config { exit, .. } => exit.code(),
        }
    }

    /// The same refusal, made at a site where xl exits with `status`.
    pub fn with_exit(mut self, status: XlExit) -> Self {
        match &mut self {
            Error::InvalidValue { exit, .. }
            | Error::Key { exit, .. }
            | Error::Config { exit, .. } => *exit = status,
            Error::Read { .. } | Error::Syntax { .. } => {}
        }
        self
    }
}
