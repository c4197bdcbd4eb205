//! The backing file of a qcow2 image: what unallocated clusters read as.
//! Opened read-only; its format comes from the image's backing format
//! extension and is never guessed from the backing file's content (a raw
//! backing file was once a guest's disk and may hold a qcow2 header).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::header::Qcow2Error;
use super::Qcow2;

/// How many images a backing chain may hold (stops loops).
pub const MAX_CHAIN: u32 = 16;

pub(super) enum Backing {
    Raw { file: File, size: u64 },
    Qcow2(Box<Qcow2>),
}

impl Backing {
    /// Opens `name` (relative to the directory of `image`) as `format`.
    pub fn open(
        image: &Path,
        name: &str,
        format: Option<&str>,
        depth: u32,
    ) -> Result<Self, Qcow2Error> {
        let err = |reason: String| Qcow2Error::Backing {
            name: name.to_owned(),
            reason,
        };
        if depth >= MAX_CHAIN {
            return Err(err(format!(
                "backing chain is longer than {MAX_CHAIN} images"
            )));
        }
        let path = match Path::new(name) {
            p if p.is_absolute() => p.to_owned(),
            p => image.parent().unwrap_or(Path::new(".")).join(p),
        };
        match format {
            Some("raw") => {
                let file = File::open(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
                let size = super::file_size(&file).map_err(|e| err(e.to_string()))?;
                Ok(Backing::Raw { file, size })
            }
            Some("qcow2") => Qcow2::open_chain(&path, true, depth + 1)
                .map(|q| Backing::Qcow2(Box::new(q)))
                .map_err(|e| err(e.to_string())),
            Some(f) => Err(err(format!("backing format {f} is not supported (raw and qcow2 are)"))),
            None => Err(err(
                "the image records no backing format and it is not guessed; record it with `qemu-img rebase -u -F raw|qcow2 -b NAME IMAGE`".to_owned(),
            )),
        }
    }

    /// Fills `buf` with the backing data at `off`; zeros past its end.
    pub fn read(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let size = match self {
            Backing::Raw { size, .. } => *size,
            Backing::Qcow2(q) => q.size(),
        };
        let have = size.saturating_sub(off).min(buf.len() as u64) as usize;
        let (data, past) = buf.split_at_mut(have);
        past.fill(0);
        if data.is_empty() {
            return Ok(());
        }
        match self {
            Backing::Raw { file, .. } => file.read_exact_at(data, off),
            Backing::Qcow2(q) => q.read_at(data, off),
        }
    }
}
