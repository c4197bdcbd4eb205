//! The host-wide run directory (`$XKVM_RUN_DIR`, default `/run/xkvm`): what
//! Xen's hypervisor and xenstored keep for xl — which domains exist, their
//! ids and names — kept as files so that one VMM process per domain and
//! every `xkvm` command agree without a daemon.
//!
//! ```text
//! $XKVM_RUN_DIR/
//!   lock                 flock(2) held while allocating ids or cleaning up
//!   next-domid           where the next id search starts (ids grow as Xen's)
//!   ids/<domid>          created O_EXCL: the id is in use; holds the name
//!   domains/<name>/      created by mkdir: the name is in use
//!     pid                the VMM process
//!     info.json          name, domid, sockets (written by the VMM)
//!     control.sock       the VMM's control socket (see `ctl`)
//!     console.sock       the guest's primary console (one client at a time)
//!     xenstore.sock      the domain's XenStore (XENSTORED_PATH for xenstore-*)
//!     vmm.log            the VMM's own log
//! ```
//!
//! A domain whose VMM died (`kill -9`) leaves its directory behind; every
//! command that looks at domains first removes directories whose VMM is
//! gone (pid not alive, or its control socket refuses connections).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Xen's `DOMID_FIRST_RESERVED`: ids at or above it are special.
pub const DOMID_FIRST_RESERVED: u32 = 0x7ff0;

/// The run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

/// One domain's directory.
#[derive(Debug, Clone)]
pub struct DomainDir {
    pub name: String,
    pub path: PathBuf,
}

impl DomainDir {
    pub fn control_socket(&self) -> PathBuf {
        self.path.join("control.sock")
    }
    pub fn console_socket(&self) -> PathBuf {
        self.path.join("console.sock")
    }
    pub fn xenstore_socket(&self) -> PathBuf {
        self.path.join("xenstore.sock")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.path.join("pid")
    }
    pub fn log_file(&self) -> PathBuf {
        self.path.join("vmm.log")
    }

    /// The VMM's pid, if it wrote one.
    pub fn pid(&self) -> Option<i32> {
        fs::read_to_string(self.pid_file())
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Whether a VMM serves this directory: its pid is alive and its
    /// control socket accepts connections.
    pub fn is_alive(&self) -> bool {
        let Some(pid) = self.pid() else {
            return false;
        };
        if !pid_alive(pid) {
            return false;
        }
        match std::os::unix::net::UnixStream::connect(self.control_socket()) {
            Ok(_) => true,
            // Still starting: the pid file comes before the socket.
            Err(e) if e.kind() == ErrorKind::NotFound => true,
            Err(_) => false,
        }
    }
}

/// `kill(pid, 0)`: the process exists (zombies of ours count as gone).
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    // A zombie (killed but not yet reaped) is not a running VMM.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => r == 0,
    }
}

/// An flock(2) on `lock`, released on drop.
pub struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: the fd is open for the life of self.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl RunDir {
    /// `$XKVM_RUN_DIR` or `/run/xkvm`, created if missing.
    pub fn open() -> anyhow::Result<Self> {
        let root = std::env::var_os("XKVM_RUN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/run/xkvm"));
        Self::at(root)
    }

    pub fn at(root: PathBuf) -> anyhow::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        for d in [root.clone(), root.join("ids"), root.join("domains")] {
            // Owner only: the sockets inside control the domains.
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .with_context(|| {
                    format!(
                        "cannot create the run directory {} (set XKVM_RUN_DIR to a writable place)",
                        d.display()
                    )
                })?;
        }
        Ok(Self { root })
    }

    fn lock(&self) -> anyhow::Result<Lock> {
        let path = self.root.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: `f` is an open file.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("locking {}", path.display()));
        }
        Ok(Lock(f))
    }

    fn domain_path(&self, name: &str) -> PathBuf {
        self.root.join("domains").join(name)
    }

    fn id_path(&self, domid: u32) -> PathBuf {
        self.root.join("ids").join(domid.to_string())
    }

    /// Claims `name` for a new domain: its directory is created, or the
    /// name is taken (after stale entries were cleaned).
    pub fn claim_name(&self, name: &str) -> anyhow::Result<DomainDir> {
        check_name(name)?;
        let path = self.domain_path(name);
        let dir = DomainDir {
            name: name.to_owned(),
            path: path.clone(),
        };
        let _lock = self.lock()?;
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if dir.is_alive() || !self.remove_stale(&dir) {
                    bail!("domain with name \"{name}\" already exists");
                }
                fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
        // The pid comes first so that a half-made directory is never taken
        // for a stale one while this process lives.
        write_atomic(&dir.pid_file(), std::process::id().to_string().as_bytes())?;
        Ok(dir)
    }

    /// Allocates a domain id that no live domain uses, searching upwards
    /// from the last one handed out as Xen does (so a restarted domain gets
    /// a new id), and records it for `name`.
    pub fn alloc_domid(&self, name: &str) -> anyhow::Result<u32> {
        let _lock = self.lock()?;
        let next_path = self.root.join("next-domid");
        let start = fs::read_to_string(&next_path)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|&d| (1..DOMID_FIRST_RESERVED).contains(&d))
            .unwrap_or(1);
        let mut domid = start;
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(self.id_path(domid))
            {
                Ok(mut f) => {
                    f.write_all(name.as_bytes())?;
                    let next = if domid + 1 >= DOMID_FIRST_RESERVED {
                        1
                    } else {
                        domid + 1
                    };
                    write_atomic(&next_path, next.to_string().as_bytes())?;
                    return Ok(domid);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    // Free it if its owner is gone.
                    let owner = fs::read_to_string(self.id_path(domid)).unwrap_or_default();
                    let owner_dir = DomainDir {
                        path: self.domain_path(&owner),
                        name: owner,
                    };
                    if owner_dir.name.is_empty() || !owner_dir.path.exists() {
                        let _ = fs::remove_file(self.id_path(domid));
                        continue;
                    }
                }
                Err(e) => return Err(e).context("allocating a domain id"),
            }
            domid = if domid + 1 >= DOMID_FIRST_RESERVED {
                1
            } else {
                domid + 1
            };
            if domid == start {
                bail!("no free domain id");
            }
        }
    }

    /// Gives `domid` back (its domain ended or restarted with a new id).
    pub fn release_domid(&self, domid: u32) {
        let _ = fs::remove_file(self.id_path(domid));
    }

    /// Moves a domain to a new name (rename-restart keeps the old domain
    /// under another name). Fails if `new` is taken.
    pub fn rename(&self, dir: &DomainDir, new: &str, domid: u32) -> anyhow::Result<DomainDir> {
        check_name(new)?;
        let _lock = self.lock()?;
        let to = self.domain_path(new);
        if to.exists() {
            bail!("domain with name \"{new}\" already exists");
        }
        fs::rename(&dir.path, &to)
            .with_context(|| format!("renaming {} to {}", dir.path.display(), to.display()))?;
        let _ = write_atomic(&self.id_path(domid), new.as_bytes());
        Ok(DomainDir {
            name: new.to_owned(),
            path: to,
        })
    }

    /// Removes this VMM's domain directory and frees its id when it ends.
    /// A directory that is no longer ours (a later command found it stale
    /// and a new domain took the name) is left alone, and so is an id that
    /// now names another domain.
    pub fn remove(&self, dir: &DomainDir, domid: Option<u32>) {
        let Ok(_lock) = self.lock() else {
            return;
        };
        if let Some(d) = domid {
            if fs::read_to_string(self.id_path(d)).is_ok_and(|n| n == dir.name) {
                self.release_domid(d);
            }
        }
        if dir.pid() == Some(std::process::id() as i32) {
            let _ = fs::remove_dir_all(&dir.path);
        }
    }

    /// Removes `dir` if its VMM is gone; returns whether it did.
    fn remove_stale(&self, dir: &DomainDir) -> bool {
        if dir.is_alive() {
            return false;
        }
        if dir.pid().is_none() {
            // Being created right now (mkdir done, pid not yet written)
            // unless it has been like that for a while.
            let young = fs::metadata(&dir.path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() < 10);
            if young {
                return false;
            }
        }
        tracing::warn!(
            "removing stale run directory {} (its VMM is gone)",
            dir.path.display()
        );
        // Free the ids that name this domain.
        if let Ok(ids) = fs::read_dir(self.root.join("ids")) {
            for id in ids.flatten() {
                if fs::read_to_string(id.path()).is_ok_and(|n| n == dir.name) {
                    let _ = fs::remove_file(id.path());
                }
            }
        }
        let _ = fs::remove_dir_all(&dir.path);
        true
    }

    /// Every domain with a live VMM, stale ones cleaned up on the way.
    pub fn domains(&self) -> anyhow::Result<Vec<DomainDir>> {
        let entries = fs::read_dir(self.root.join("domains"))
            .with_context(|| format!("reading {}", self.root.display()))?;
        let mut out = Vec::new();
        let mut stale = Vec::new();
        for e in entries.flatten() {
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let dir = DomainDir {
                name,
                path: e.path(),
            };
            if dir.is_alive() {
                out.push(dir);
            } else {
                stale.push(dir);
            }
        }
        if !stale.is_empty() {
            let _lock = self.lock()?;
            for dir in stale {
                if !self.remove_stale(&dir) {
                    out.push(dir);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// xl's rule for names: not empty, not all digits (that would read as an
/// id), no '/' (it becomes a path here and in XenStore).
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.starts_with('.') || name.contains('/') || name.contains('\0') {
        bail!("invalid domain name {name:?}");
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        bail!("invalid domain name {name:?}: a name cannot be all digits (it would read as an id)");
    }
    Ok(())
}

/// Writes `path` through a temporary file and a rename, so readers never
/// see half a file.
pub fn write_atomic(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_ids_grow() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let rd = RunDir::at(tmp.path().to_owned()).expect("run dir");
        let a = rd.claim_name("a").expect("first claim");
        let err = rd.claim_name("a").expect_err("duplicate");
        assert!(err.to_string().contains("already exists"), "{err}");
        let d1 = rd.alloc_domid("a").expect("id");
        let d2 = rd.alloc_domid("a").expect("id");
        assert!(d2 > d1, "{d1} {d2}");
        rd.release_domid(d1);
        let d3 = rd.alloc_domid("a").expect("id");
        assert!(d3 > d2, "ids are not reused at once: {d3}");
        rd.remove(&a, Some(d2));
    }

    #[test]
    fn a_dead_vmm_leaves_a_stale_dir_that_is_reclaimed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let rd = RunDir::at(tmp.path().to_owned()).expect("run dir");
        let dir = rd.claim_name("gone").expect("claim");
        // A pid that cannot exist.
        fs::write(dir.pid_file(), "2147483646").expect("pid");
        assert!(rd.domains().expect("list").is_empty());
        assert!(!dir.path.exists());
        rd.claim_name("gone").expect("name free again");
    }

    #[test]
    fn numeric_names_are_refused() {
        assert!(check_name("123").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name("web-1").is_ok());
    }
}
