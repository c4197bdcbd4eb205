//! `xkvm xenstore-read|write|ls|rm|watch -d DOM PATH...`: Debian's
//! xenstore-utils against one domain's store (which is also at the socket
//! `xkvm list -l` prints, for `XENSTORED_PATH=... xenstore-read`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;

use crate::resolve;
use crate::rundir::RunDir;
use crate::xs_client::XsClient;

#[derive(clap::Args)]
pub struct Args {
    /// The domain whose store to use (name or id).
    #[arg(short = 'd', long = "domain")]
    pub domain: String,
    /// Paths (write: PATH VALUE pairs).
    pub args: Vec<String>,
    /// watch: stop after this many events.
    #[arg(short = 'n')]
    pub count: Option<u32>,
}

fn connect(dom: &str) -> anyhow::Result<XsClient> {
    let rd = RunDir::open()?;
    let f = resolve::find(&rd, dom)?;
    XsClient::connect(&f.dir.xenstore_socket())
}

pub fn read(a: Args) -> anyhow::Result<ExitCode> {
    if a.args.is_empty() {
        bail!("usage: xkvm xenstore-read -d DOM PATH...");
    }
    let mut xs = connect(&a.domain)?;
    for p in &a.args {
        match xs.read(p) {
            Ok(v) => println!("{}", String::from_utf8_lossy(&v)),
            Err(e) => bail!("couldn't read path {p}: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn write(a: Args) -> anyhow::Result<ExitCode> {
    if a.args.is_empty() || a.args.len() % 2 != 0 {
        bail!("usage: xkvm xenstore-write -d DOM PATH VALUE [PATH VALUE...]");
    }
    let mut xs = connect(&a.domain)?;
    for pair in a.args.chunks(2) {
        if let Err(e) = xs.write(&pair[0], pair[1].as_bytes()) {
            bail!("couldn't write path {}: {e}", pair[0]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rm(a: Args) -> anyhow::Result<ExitCode> {
    if a.args.is_empty() {
        bail!("usage: xkvm xenstore-rm -d DOM PATH...");
    }
    let mut xs = connect(&a.domain)?;
    for p in &a.args {
        if let Err(e) = xs.rm(p) {
            bail!("couldn't remove path {p}: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Like `xenstore-ls`: the tree under each path, `name = "value"`,
/// indented one space per level.
pub fn ls(a: Args) -> anyhow::Result<ExitCode> {
    let mut xs = connect(&a.domain)?;
    let paths = if a.args.is_empty() {
        vec!["/".to_owned()]
    } else {
        a.args.clone()
    };
    for p in &paths {
        walk(&mut xs, p, 0)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn walk(xs: &mut XsClient, path: &str, depth: usize) -> anyhow::Result<()> {
    let children = match xs.directory(path) {
        Ok(c) => c,
        Err(e) => bail!("couldn't list path {path}: {e}"),
    };
    for c in children {
        let child = if path.ends_with('/') {
            format!("{path}{c}")
        } else {
            format!("{path}/{c}")
        };
        let value = xs.read(&child).unwrap_or_default();
        println!(
            "{:depth$}{c} = \"{}\"",
            "",
            String::from_utf8_lossy(&value).escape_default()
        );
        walk(xs, &child, depth + 1)?;
    }
    Ok(())
}

/// Like `xenstore-watch`: prints each event's path until `-n` events.
pub fn watch(a: Args) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    if a.args.is_empty() {
        bail!("usage: xkvm xenstore-watch -d DOM [-n COUNT] PATH...");
    }
    let mut xs = connect(&a.domain)?;
    for p in &a.args {
        xs.watch(p, p)?;
    }
    let mut left = a.count;
    loop {
        if left == Some(0) {
            return Ok(ExitCode::SUCCESS);
        }
        if let Some((path, _token)) = xs.next_event(Some(Duration::from_secs(3600)))? {
            println!("{path}");
            let _ = std::io::stdout().flush();
            left = left.map(|n| n - 1);
        }
    }
}
