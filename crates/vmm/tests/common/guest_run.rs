//! Booting one guest with [`vmm::run_domain`] on a thread, bounded in
//! time, and reading back what it printed: the harness of the guest tests
//! (`guests.rs`, `guests_core.rs`, `devices.rs`).

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use vmm::{ConsoleIo, DomainExit, RunOutcome, VmConfig, VmmError};

use super::Buf;

/// Generous: the guests run in KVM's instruction emulator at ~1M instr/s.
pub const TIMEOUT: Duration = Duration::from_secs(300);

/// What one guest run produced.
pub struct Run {
    pub guest: String,
    /// How the domain ended, or why it did not end properly.
    pub exit: Result<DomainExit, String>,
    /// `HYPERVISOR_console_io` output (where the test guests print).
    pub log: String,
    /// The primary console ring's output.
    pub console: String,
}

/// Boots `config` with `input` on its console and waits (bounded) for it.
pub fn boot(guest: &str, config: VmConfig, input: Option<Vec<u8>>) -> Run {
    let console = Buf::default();
    let io = ConsoleIo {
        input: input.map(|b| Box::new(std::io::Cursor::new(b)) as Box<dyn Read + Send>),
        output: Box::new(console.clone()),
    };
    let (tx, rx) = mpsc::channel::<Result<RunOutcome, VmmError>>();
    std::thread::spawn(move || {
        let _ = tx.send(vmm::run_domain(config, io));
    });
    let (exit, log) = match rx.recv_timeout(TIMEOUT) {
        Ok(Ok(outcome)) => (
            Ok(outcome.exit),
            String::from_utf8_lossy(&outcome.hypervisor_log).into_owned(),
        ),
        Ok(Err(e)) => (Err(format!("run_domain failed: {e}")), String::new()),
        Err(_) => (
            Err(format!("still running after {TIMEOUT:?}")),
            String::new(),
        ),
    };
    Run {
        guest: guest.to_owned(),
        exit,
        log,
        console: console.text(),
    }
}

impl Run {
    /// Everything a human needs to see when an assertion fails.
    pub fn report(&self) -> String {
        format!(
            "guest `{}` ended with {:?}\n--- console_io log ---\n{}\n--- console ring ---\n{}\n---",
            self.guest, self.exit, self.log, self.console
        )
    }

    pub fn assert_exit(&self, want: DomainExit) {
        assert_eq!(
            self.exit,
            Ok(want),
            "unexpected end of domain\n{}",
            self.report()
        );
    }

    /// Asserts the guest's verdict line in the log is `XKVM-TEST <name>: PASS`.
    pub fn assert_pass(&self, name: &str) {
        let pass = format!("XKVM-TEST {name}: PASS");
        let verdict = self
            .log
            .lines()
            .find(|l| l.starts_with(&format!("XKVM-TEST {name}:")));
        assert!(
            verdict.is_some_and(|l| l.starts_with(&pass)),
            "guest verdict is {verdict:?}, want {pass:?}\n{}",
            self.report()
        );
    }

    /// The guest named itself PASS and powered off.
    pub fn assert_passed_and_powered_off(&self) {
        self.assert_pass(&self.guest);
        self.assert_exit(DomainExit::Poweroff);
    }

    /// The rest of the first log line starting with `prefix`.
    pub fn value(&self, prefix: &str) -> &str {
        match self.log.lines().find_map(|l| l.strip_prefix(prefix)) {
            Some(v) => v.trim(),
            None => panic!(
                "the guest printed no line starting {prefix:?}\n{}",
                self.report()
            ),
        }
    }

    /// All log lines starting with `prefix`, without it.
    pub fn values<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.log
            .lines()
            .filter_map(move |l| l.strip_prefix(prefix))
            .map(str::trim)
    }

    /// The decimal number after `prefix` on the first line starting with it.
    pub fn number(&self, prefix: &str) -> u64 {
        let v = self.value(prefix);
        v.split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no number after {prefix:?}\n{}", self.report()))
    }

    /// A hex number printed after `prefix` ("0x..." or bare hex).
    pub fn hex(&self, prefix: &str) -> u64 {
        let v = self.value(prefix);
        let word = v.split_whitespace().next().unwrap_or("");
        parse_hex(word).unwrap_or_else(|| {
            panic!(
                "{prefix:?} is followed by {v:?}, not hex\n{}",
                self.report()
            )
        })
    }
}

/// "0x1f" or "1f".
pub fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}
