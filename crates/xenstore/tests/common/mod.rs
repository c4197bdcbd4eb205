//! A test client speaking xsd_sockmsg to the engine directly.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use xenstore::wire::{self, Header, MsgType, HEADER_LEN};
use xenstore::{ConnId, Engine};

pub struct Client {
    pub engine: Engine,
    pub conn: ConnId,
    pub events: Vec<(String, String)>,
    pending: Vec<u8>,
    req: u32,
}

impl Client {
    pub fn new(engine: &Engine, domid: u16) -> Client {
        let conn = engine.connect(domid, None);
        Client {
            engine: engine.clone(),
            conn,
            events: Vec::new(),
            pending: Vec::new(),
            req: 0,
        }
    }

    /// Sends one request; returns Ok(payload) or Err(error name).
    pub fn call(&mut self, ty: MsgType, tx: u32, payload: &[u8]) -> Result<Vec<u8>, String> {
        self.call_raw(ty as u32, tx, payload)
    }

    pub fn call_raw(&mut self, ty: u32, tx: u32, payload: &[u8]) -> Result<Vec<u8>, String> {
        self.req += 1;
        let mut msg = Vec::new();
        wire::push_msg(&mut msg, ty, self.req, tx, &[payload]);
        let used = self
            .engine
            .feed(self.conn, &msg, usize::MAX)
            .expect("protocol ok");
        assert_eq!(used, msg.len());
        self.engine.take_output(self.conn, &mut self.pending);
        let mut reply = None;
        for (h, body) in parse(&std::mem::take(&mut self.pending)) {
            if h.ty == MsgType::WatchEvent as u32 {
                self.push_event(&body);
            } else {
                assert_eq!(h.req_id, self.req);
                reply = Some((h, body));
            }
        }
        let (h, body) = reply.expect("a reply");
        if h.ty == MsgType::Error as u32 {
            Err(String::from_utf8_lossy(body.strip_suffix(b"\0").unwrap_or(&body)).into_owned())
        } else {
            assert_eq!(h.ty, ty);
            Ok(body)
        }
    }

    fn push_event(&mut self, body: &[u8]) {
        let parts = wire::split_strings(body);
        self.events.push((
            String::from_utf8_lossy(parts[0]).into_owned(),
            String::from_utf8_lossy(parts.get(1).copied().unwrap_or_default()).into_owned(),
        ));
    }

    /// Collects events queued by others.
    pub fn poll(&mut self) -> Vec<(String, String)> {
        let mut buf = Vec::new();
        self.engine.take_output(self.conn, &mut buf);
        for (h, body) in parse(&buf) {
            assert_eq!(h.ty, MsgType::WatchEvent as u32);
            self.push_event(&body);
        }
        std::mem::take(&mut self.events)
    }

    pub fn read(&mut self, p: &str) -> Result<Vec<u8>, String> {
        self.call(MsgType::Read, 0, &z(p))
    }
    pub fn read_tx(&mut self, tx: u32, p: &str) -> Result<Vec<u8>, String> {
        self.call(MsgType::Read, tx, &z(p))
    }
    pub fn write(&mut self, p: &str, v: &str) -> Result<(), String> {
        self.write_tx(0, p, v)
    }
    pub fn write_tx(&mut self, tx: u32, p: &str, v: &str) -> Result<(), String> {
        let mut b = z(p);
        b.extend_from_slice(v.as_bytes());
        self.call(MsgType::Write, tx, &b).map(|_| ())
    }
    pub fn mkdir(&mut self, p: &str) -> Result<(), String> {
        self.call(MsgType::Mkdir, 0, &z(p)).map(|_| ())
    }
    pub fn rm(&mut self, p: &str) -> Result<(), String> {
        self.call(MsgType::Rm, 0, &z(p)).map(|_| ())
    }
    pub fn dir(&mut self, p: &str) -> Result<Vec<String>, String> {
        let b = self.call(MsgType::Directory, 0, &z(p))?;
        Ok(wire::split_strings(&b)
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect())
    }
    pub fn set_perms(&mut self, p: &str, perms: &[&str]) -> Result<(), String> {
        let mut b = z(p);
        for x in perms {
            b.extend_from_slice(&z(x));
        }
        self.call(MsgType::SetPerms, 0, &b).map(|_| ())
    }
    pub fn watch(&mut self, p: &str, tok: &str) -> Result<(), String> {
        let mut b = z(p);
        b.extend_from_slice(&z(tok));
        self.call(MsgType::Watch, 0, &b).map(|_| ())
    }
    pub fn unwatch(&mut self, p: &str, tok: &str) -> Result<(), String> {
        let mut b = z(p);
        b.extend_from_slice(&z(tok));
        self.call(MsgType::Unwatch, 0, &b).map(|_| ())
    }
    pub fn start(&mut self) -> Result<u32, String> {
        let b = self.call(MsgType::TransactionStart, 0, b"\0")?;
        Ok(String::from_utf8_lossy(b.strip_suffix(b"\0").unwrap())
            .parse()
            .unwrap())
    }
    pub fn end(&mut self, tx: u32, commit: bool) -> Result<(), String> {
        self.call(
            MsgType::TransactionEnd,
            tx,
            if commit { b"T\0" } else { b"F\0" },
        )
        .map(|_| ())
    }
}

pub fn z(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

pub fn parse(mut b: &[u8]) -> Vec<(Header, Vec<u8>)> {
    let mut out = Vec::new();
    while b.len() >= HEADER_LEN {
        let h = Header::decode(b[..HEADER_LEN].try_into().unwrap());
        let end = HEADER_LEN + h.len as usize;
        out.push((h, b[HEADER_LEN..end].to_vec()));
        b = &b[end..];
    }
    assert!(b.is_empty(), "trailing partial message");
    out
}
