//! A small XenStore client over a domain's `xenstore.sock` (the socket
//! protocol of `xs.c`, one request at a time), for `xkvm xenstore-*`,
//! `shutdown` and `reboot`: what libxenstore does for xl.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use xenstore::wire::{self, Header, MsgType, HEADER_LEN};

pub struct XsClient {
    sock: UnixStream,
    req_id: u32,
    /// Watch events that arrived while waiting for a reply.
    events: Vec<(String, String)>,
}

impl XsClient {
    pub fn connect(path: &Path) -> anyhow::Result<Self> {
        let sock = UnixStream::connect(path)
            .with_context(|| format!("cannot connect to XenStore at {}", path.display()))?;
        Ok(Self {
            sock,
            req_id: 0,
            events: Vec::new(),
        })
    }

    fn recv(&mut self) -> anyhow::Result<(Header, Vec<u8>)> {
        let mut h = [0u8; HEADER_LEN];
        self.sock
            .read_exact(&mut h)
            .context("reading from XenStore")?;
        let h = Header::decode(&h);
        if h.len as usize > wire::PAYLOAD_MAX {
            bail!("XenStore sent an oversized message ({} bytes)", h.len);
        }
        let mut body = vec![0u8; h.len as usize];
        self.sock
            .read_exact(&mut body)
            .context("reading from XenStore")?;
        Ok((h, body))
    }

    fn event_of(body: &[u8]) -> (String, String) {
        let parts = wire::split_strings(body);
        let s =
            |i: usize| String::from_utf8_lossy(parts.get(i).copied().unwrap_or(b"")).into_owned();
        (s(0), s(1))
    }

    /// Sends one request and returns the reply payload; `XS_ERROR` replies
    /// become errors named as xenstored names them (ENOENT, EACCES, ...).
    pub fn request(&mut self, ty: MsgType, payload: &[&[u8]]) -> anyhow::Result<Vec<u8>> {
        self.req_id += 1;
        let mut msg = Vec::new();
        wire::push_msg(&mut msg, ty as u32, self.req_id, 0, payload);
        self.sock.write_all(&msg).context("writing to XenStore")?;
        loop {
            let (h, body) = self.recv()?;
            if h.ty == MsgType::WatchEvent as u32 {
                self.events.push(Self::event_of(&body));
                continue;
            }
            if h.ty == MsgType::Error as u32 {
                let name =
                    String::from_utf8_lossy(body.strip_suffix(b"\0").unwrap_or(&body)).into_owned();
                bail!("{name}");
            }
            return Ok(body);
        }
    }

    pub fn read(&mut self, path: &str) -> anyhow::Result<Vec<u8>> {
        self.request(MsgType::Read, &[path.as_bytes(), b"\0"])
    }

    pub fn write(&mut self, path: &str, value: &[u8]) -> anyhow::Result<()> {
        self.request(MsgType::Write, &[path.as_bytes(), b"\0", value])
            .map(|_| ())
    }

    pub fn rm(&mut self, path: &str) -> anyhow::Result<()> {
        self.request(MsgType::Rm, &[path.as_bytes(), b"\0"])
            .map(|_| ())
    }

    pub fn directory(&mut self, path: &str) -> anyhow::Result<Vec<String>> {
        let body = self.request(MsgType::Directory, &[path.as_bytes(), b"\0"])?;
        Ok(wire::split_strings(&body)
            .into_iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect())
    }

    pub fn watch(&mut self, path: &str, token: &str) -> anyhow::Result<()> {
        self.request(
            MsgType::Watch,
            &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"],
        )
        .map(|_| ())
    }

    /// The next watch event `(path, token)`; `None` after `timeout`.
    pub fn next_event(
        &mut self,
        timeout: Option<Duration>,
    ) -> anyhow::Result<Option<(String, String)>> {
        if !self.events.is_empty() {
            return Ok(Some(self.events.remove(0)));
        }
        self.sock.set_read_timeout(timeout)?;
        let r = loop {
            match self.recv() {
                Ok((h, body)) if h.ty == MsgType::WatchEvent as u32 => {
                    break Ok(Some(Self::event_of(&body)))
                }
                Ok(_) => continue,
                Err(e) => {
                    let timed_out = e.downcast_ref::<std::io::Error>().is_some_and(|io| {
                        matches!(
                            io.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        )
                    });
                    break if timed_out { Ok(None) } else { Err(e) };
                }
            }
        };
        self.sock.set_read_timeout(None)?;
        r
    }
}
