//! `xkvm create -F [-c]`: the domain runs in this process until it ends.
//!
//! The guest's primary console is this terminal when `-c` is given (raw
//! mode, Ctrl-] detaches as in `xl console`). When the guest stops, the
//! matching `on_*` action decides between ending and booting it again.

use std::io::{self, IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use xl_config::DomainConfig;

/// Ctrl-], xl's console escape character.
const ESCAPE: u8 = 0x1d;

/// Runs `config` (defaults applied) in this process until an `on_*`
/// action ends it (see [`crate::vmm_process::run_foreground`]). Exit
/// status: 0 when the guest powered off (or rebooted into `destroy`), 1
/// when it crashed or tripped its watchdog.
pub fn run(
    config: DomainConfig,
    rest: &[String],
    attach_console: bool,
) -> anyhow::Result<ExitCode> {
    let _raw = attach_console.then(RawTerminal::enter).transpose()?;
    crate::vmm_process::run_foreground(config, rest, attach_console)
}

/// The guest's console on this process's terminal: keystrokes until
/// Ctrl-], output to stdout.
pub fn terminal_console() -> vmm::ConsoleIo {
    vmm::ConsoleIo {
        input: Some(Box::new(EscapableStdin)),
        output: Box::new(io::stdout()),
    }
}

/// Standard input that ends at xl's escape character.
struct EscapableStdin;

impl Read for EscapableStdin {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = io::stdin().read(buf)?;
        match buf[..n].iter().position(|&b| b == ESCAPE) {
            Some(0) => Ok(0),
            Some(i) => Ok(i),
            None => Ok(n),
        }
    }
}

/// The terminal in raw mode for as long as this lives (only when stdin is
/// a terminal; pipes are left alone).
pub(crate) struct RawTerminal {
    saved: Option<libc::termios>,
}

impl RawTerminal {
    pub(crate) fn enter() -> anyhow::Result<Self> {
        let stdin = io::stdin();
        if !stdin.is_terminal() {
            return Ok(Self { saved: None });
        }
        // SAFETY: termios is plain data; tcgetattr fills it for fd 0, which
        // is open for the life of the process.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 is valid and `saved` is a valid termios to write.
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            return Err(io::Error::last_os_error()).context("reading terminal settings");
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw only edits the struct it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // Keep output post-processing so the guest's "\n" still returns the
        // carriage on the host terminal.
        raw.c_oflag |= libc::OPOST;
        // SAFETY: fd 0 is valid; `raw` is a fully initialised termios.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) } != 0 {
            return Err(io::Error::last_os_error()).context("setting the terminal to raw mode");
        }
        Ok(Self { saved: Some(saved) })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = io::stdout().flush();
        if let Some(saved) = &self.saved {
            // SAFETY: restores the settings read from fd 0 in `enter`.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, saved) };
        }
    }
}
