//! Domain management and daemon requests: INTRODUCE, RELEASE,
//! IS_DOMAIN_INTRODUCED, RESUME, SET_TARGET, CONTROL, GET/SET_FEATURE and
//! GET/SET_QUOTA (all dom0-only, as in Xen).

use crate::engine::{ack, Domain, State, SUPPORTED_FEATURES};
use crate::watch::Event;
use crate::wire::{self, MsgType, XsError};
use crate::DomId;

impl State {
    pub(crate) fn introduce(&mut self, domid: DomId) {
        let d = self.domains.entry(domid).or_insert_with(Domain::new);
        d.introduced = true;
        d.shutdown_reported = false;
        self.fire_special("@introduceDomain");
    }

    pub(crate) fn release(&mut self, domid: DomId) -> Result<(), XsError> {
        match self.domains.get_mut(&domid) {
            Some(d) if d.introduced => d.introduced = false,
            _ => return Err(XsError::NoEnt),
        }
        let mut dropped = 0;
        for c in self.conns.values_mut().filter(|c| c.domid == domid) {
            dropped += c.watches.len();
            c.watches.clear();
            c.txns.clear();
            c.closed = true;
        }
        self.nwatches -= dropped;
        self.fire_special("@releaseDomain");
        Ok(())
    }

    pub(crate) fn fire_special(&mut self, name: &str) {
        let mut ev = vec![Event {
            path: name.to_owned(),
            exact: false,
            perms: None,
        }];
        self.deliver(&mut ev, None);
    }

    fn domain_exists(&self, d: DomId) -> bool {
        self.domains.contains_key(&d)
    }

    pub(crate) fn control_request(
        &mut self,
        ty: MsgType,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), XsError> {
        let args = wire::split_strings(payload);
        match ty {
            MsgType::Introduce => {
                if args.len() < 3 {
                    return Err(XsError::Inval);
                }
                let d = parse_domid(args[0])?;
                if d == 0 || d >= 0x7ff0 {
                    return Err(XsError::Inval);
                }
                self.introduce(d);
                ack(out)
            }
            MsgType::Release => {
                let d = parse_domid(args.first().ok_or(XsError::Inval)?)?;
                if d == 0 {
                    return Err(XsError::Inval);
                }
                self.release(d)?;
                ack(out)
            }
            MsgType::IsDomainIntroduced => {
                let d = parse_domid(args.first().ok_or(XsError::Inval)?)?;
                let yes = self.domains.get(&d).is_some_and(|x| x.introduced);
                out.extend_from_slice(if yes { b"T\0" } else { b"F\0" });
                Ok(())
            }
            MsgType::Resume => {
                let d = parse_domid(args.first().ok_or(XsError::Inval)?)?;
                let dom = self.domains.get_mut(&d).ok_or(XsError::NoEnt)?;
                dom.shutdown_reported = false;
                ack(out)
            }
            MsgType::SetTarget => {
                if args.len() < 2 {
                    return Err(XsError::Inval);
                }
                let (d, t) = (parse_domid(args[0])?, parse_domid(args[1])?);
                if !self.domain_exists(t) {
                    return Err(XsError::NoEnt);
                }
                self.domains.get_mut(&d).ok_or(XsError::NoEnt)?.target = Some(t);
                ack(out)
            }
            MsgType::Control => self.control(&args, out),
            MsgType::GetFeature => {
                let f = match args.as_slice() {
                    [] => SUPPORTED_FEATURES,
                    [d] => {
                        self.domains
                            .get(&parse_domid(d)?)
                            .ok_or(XsError::NoEnt)?
                            .features
                    }
                    _ => return Err(XsError::Inval),
                };
                out.extend_from_slice(f.to_string().as_bytes());
                out.push(0);
                Ok(())
            }
            MsgType::SetFeature => {
                let [d, v] = args.as_slice() else {
                    return Err(XsError::Inval);
                };
                let v = parse_u32(v)?;
                if v & !SUPPORTED_FEATURES != 0 {
                    return Err(XsError::Inval);
                }
                self.domains
                    .get_mut(&parse_domid(d)?)
                    .ok_or(XsError::NoEnt)?
                    .features = v;
                ack(out)
            }
            MsgType::GetQuota => {
                let v = match args.as_slice() {
                    [] => {
                        out.extend_from_slice(crate::quota::NAMES.join(" ").as_bytes());
                        out.push(0);
                        return Ok(());
                    }
                    [name] => self.quota.get(utf8(name)?)?,
                    [d, name] => {
                        let dom = self.domains.get(&parse_domid(d)?).ok_or(XsError::NoEnt)?;
                        dom.quota.as_ref().unwrap_or(&self.quota).get(utf8(name)?)?
                    }
                    _ => return Err(XsError::Inval),
                };
                out.extend_from_slice(v.to_string().as_bytes());
                out.push(0);
                Ok(())
            }
            MsgType::SetQuota => {
                match args.as_slice() {
                    [name, v] => self.quota.set(utf8(name)?, parse_u32(v)?)?,
                    [d, name, v] => {
                        let global = self.quota.clone();
                        let dom = self
                            .domains
                            .get_mut(&parse_domid(d)?)
                            .ok_or(XsError::NoEnt)?;
                        dom.quota
                            .get_or_insert(global)
                            .set(utf8(name)?, parse_u32(v)?)?;
                    }
                    _ => return Err(XsError::Inval),
                }
                ack(out)
            }
            // WATCH_EVENT and ERROR are replies, never requests.
            _ => Err(XsError::Inval),
        }
    }

    fn control(&mut self, args: &[&[u8]], out: &mut Vec<u8>) -> Result<(), XsError> {
        let (cmd, rest) = args.split_first().ok_or(XsError::Inval)?;
        match *cmd {
            b"print" => {
                let [msg] = rest else {
                    return Err(XsError::Inval);
                };
                tracing::info!(target: "xenstored", "{}", String::from_utf8_lossy(msg));
                ack(out)
            }
            b"log" => match rest {
                [] => {
                    out.extend_from_slice(
                        b"Log switch settings:\nxenstored: on (RUST_LOG picks the level)\n\0",
                    );
                    Ok(())
                }
                [b"on"] | [b"off"] => ack(out),
                _ => Err(XsError::Inval),
            },
            b"check" => ack(out),
            b"help" => {
                out.extend_from_slice(
                    b"Available commands:\ncheck\nhelp\nlog [on|off]\nprint <string>\n\0",
                );
                Ok(())
            }
            _ => Err(XsError::Inval),
        }
    }
}

pub(crate) fn parse_domid(b: &[u8]) -> Result<DomId, XsError> {
    let s = std::str::from_utf8(b).map_err(|_| XsError::Inval)?;
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(XsError::Inval);
    }
    s.parse().map_err(|_| XsError::Inval)
}

pub(crate) fn parse_u32(b: &[u8]) -> Result<u32, XsError> {
    let s = std::str::from_utf8(b).map_err(|_| XsError::Inval)?;
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(XsError::Inval);
    }
    s.parse().map_err(|_| XsError::Inval)
}

fn utf8(b: &[u8]) -> Result<&str, XsError> {
    std::str::from_utf8(b).map_err(|_| XsError::Inval)
}
