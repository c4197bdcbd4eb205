//! The VMM's control socket: what xl reaches through libxl and Xen's
//! domctls (domain info, pause, unpause, destroy, forced shutdown, the
//! hypervisor log, device hot-plug, rename, and through `crate::domctl`
//! the memory limit and target, vCPU availability and state, NMIs). One
//! JSON request line per connection, one JSON reply line back:
//! `{"op": "pause"}` → `{"ok": true}` or `{"ok": false, "error": "..."}`.
//! Each connection is served on its own thread, so a slow request (an
//! unplug waiting for the guest) does not hold up `list` or `destroy`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::rundir::DomainDir;

/// How long a command waits for the VMM to answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `request` to the domain's VMM and returns its reply (errors
/// reported by the VMM become `Err`).
pub fn request(dir: &DomainDir, request: Value) -> anyhow::Result<Value> {
    request_within(dir, request, REPLY_TIMEOUT)
}

/// [`request`] for requests that may take up to `timeout` (hot-plug).
pub fn request_within(dir: &DomainDir, request: Value, timeout: Duration) -> anyhow::Result<Value> {
    let path = dir.control_socket();
    let mut s = UnixStream::connect(&path).with_context(|| {
        format!(
            "domain {}: cannot reach its VMM at {}",
            dir.name,
            path.display()
        )
    })?;
    s.set_read_timeout(Some(timeout))?;
    let mut line = request.to_string();
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(s)
        .read_line(&mut reply)
        .with_context(|| format!("domain {}: no reply from its VMM", dir.name))?;
    let v: Value = serde_json::from_str(&reply)
        .with_context(|| format!("domain {}: bad reply from its VMM: {reply:?}", dir.name))?;
    if v["ok"] == json!(true) {
        Ok(v)
    } else {
        bail!(
            "{}",
            v["error"].as_str().unwrap_or("the VMM refused the request")
        )
    }
}

/// Serves the control socket at `path` on its own thread; `handle` turns a
/// request into a reply. The thread ends when `stop` is set.
pub fn serve(
    path: &Path,
    stop: Arc<AtomicBool>,
    handle: impl Fn(&Value) -> Result<Value, String> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let handle = Arc::new(handle);
    // Bound (and listening) under a temporary name, then renamed into
    // place: other commands take a socket file that refuses connections
    // for a dead VMM's (`DomainDir::is_alive`), and a bind() seen before
    // its listen() would make a starting VMM look dead and its directory
    // be cleaned away as stale.
    let tmp = path.with_extension("sock-new");
    let _ = std::fs::remove_file(&tmp);
    let listener =
        UnixListener::bind(&tmp).with_context(|| format!("binding {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("moving {} to {}", tmp.display(), path.display()))?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let handle = handle.clone();
                        let spawned = std::thread::Builder::new()
                            .name("control-req".into())
                            .spawn(move || {
                                if let Err(e) = one(s, &*handle) {
                                    tracing::debug!("control connection: {e}");
                                }
                            });
                        if let Err(e) = spawned {
                            tracing::warn!("control socket: no thread for a request: {e}");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => {
                        tracing::warn!("control socket: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(())
}

fn one(s: UnixStream, handle: &impl Fn(&Value) -> Result<Value, String>) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    let reply = match serde_json::from_str::<Value>(&line) {
        Ok(req) => match handle(&req) {
            Ok(mut v) => {
                if let Some(o) = v.as_object_mut() {
                    o.insert("ok".into(), json!(true));
                    v
                } else {
                    json!({"ok": true, "value": v})
                }
            }
            Err(e) => json!({"ok": false, "error": e}),
        },
        Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
    };
    let mut out = reply.to_string();
    out.push('\n');
    (&s).write_all(out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The socket appears only once it listens (no temporary file left),
    /// and it answers requests.
    #[test]
    fn the_socket_is_in_place_and_listening_when_serve_returns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("control.sock");
        let stop = Arc::new(AtomicBool::new(false));
        serve(&path, stop.clone(), |v| {
            Ok(json!({"ok": true, "echo": v["op"]}))
        })
        .expect("serve");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("control.sock")]);
        let mut s = UnixStream::connect(&path).expect("listening at once");
        s.write_all(b"{\"op\":\"ping\"}\n").expect("write");
        let mut reply = String::new();
        BufReader::new(s).read_line(&mut reply).expect("reply");
        assert!(reply.contains("\"echo\":\"ping\""), "{reply}");
        stop.store(true, Ordering::SeqCst);
    }
}
