//! Whole-tree calls on a [`Session`]: checksums computed in the appliance, `du`, `cp`
//! inside the guest, `find` with attributes, and streamed writes (what
//! [`Session::upload`] and [`Session::write_file`] use).

use crate::error::{Error, Result};
use crate::session::{Session, unexpected};
use std::collections::VecDeque;
use std::io::Read;
use wire::{Bytes, FileChecksum, MAX_CHUNK, Reply, Request, TreeEntry};

/// Pieces of a streamed write in flight at once.
const STREAM_DEPTH: usize = 4;

impl Session {
    /// The digest of the regular file at `path` in lowercase hex (like guestfish
    /// `checksum`): `algo` is `md5`, `sha1`, `sha224`, `sha256`, `sha384` or `sha512`.
    ///
    /// ```no_run
    /// # let mut s = skiff::Appliance::builder().add_drive("disk.img", skiff::DriveOptions::readonly()).launch()?;
    /// # s.mount("/dev/sda", "/", skiff::MountOptions::readonly())?;
    /// println!("{}", s.checksum("sha256", "/etc/passwd")?);
    /// # Ok::<(), skiff::Error>(())
    /// ```
    pub fn checksum(&mut self, algo: &str, path: &str) -> Result<String> {
        match self.call(Request::Checksum {
            algo: algo.into(),
            path: path.into(),
        })? {
            Reply::Text(t) => Ok(t),
            other => Err(unexpected(&other)),
        }
    }

    /// The digest of every regular file below the directory `dir`, depth first with
    /// each directory's entries sorted, paths relative to `dir` (guestfish
    /// `checksums-out`; symlinks are not followed). Fetched page by page.
    pub fn checksums_out(&mut self, algo: &str, dir: &str) -> Result<Vec<FileChecksum>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            match self.call(Request::ChecksumsOut {
                algo: algo.into(),
                dir: dir.into(),
                after: after.take(),
            })? {
                Reply::Checksums { sums, next } => {
                    out.extend(sums);
                    match next {
                        Some(n) => after = Some(n),
                        None => return Ok(out),
                    }
                }
                other => return Err(unexpected(&other)),
            }
        }
    }

    /// Disk usage of `path` and everything below it in KiB (`du -s`, guestfish `du`).
    pub fn du(&mut self, path: &str) -> Result<u64> {
        match self.call(Request::Du { path: path.into() })? {
            Reply::Count(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    /// Copies a file inside the guest (`cp FROM TO`): onto a file, or into a directory.
    pub fn cp(&mut self, from: &str, to: &str) -> Result<()> {
        self.copy(from, to, false)
    }

    /// Copies a file or a whole directory inside the guest (`cp -r FROM TO`), keeping
    /// modes, owners and times where the target filesystem can hold them.
    pub fn cp_r(&mut self, from: &str, to: &str) -> Result<()> {
        self.copy(from, to, true)
    }

    fn copy(&mut self, from: &str, to: &str, recursive: bool) -> Result<()> {
        match self.call(Request::Copy {
            from: from.into(),
            to: to.into(),
            recursive,
        })? {
            Reply::Unit => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Every path below the directory `path` with its attributes (not following
    /// symlinks) and symlink targets, depth first with each directory's entries sorted.
    /// Fetched page by page.
    pub fn find_stat(&mut self, path: &str) -> Result<Vec<TreeEntry>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            match self.call(Request::FindStat {
                path: path.into(),
                after: after.take(),
            })? {
                Reply::Tree { entries, next } => {
                    out.extend(entries);
                    match next {
                        Some(n) => after = Some(n),
                        None => return Ok(out),
                    }
                }
                other => return Err(unexpected(&other)),
            }
        }
    }

    /// Streams everything `r` yields into the file at `path` from `offset`
    /// (`truncate`: empty it first; created with `mode` when missing), in
    /// [`MAX_CHUNK`] pieces with several in flight, the appliance writing them in large
    /// runs. Returns the bytes written. An empty reader still creates (or truncates)
    /// the file.
    pub fn write_stream(
        &mut self,
        r: &mut impl Read,
        path: &str,
        offset: u64,
        truncate: bool,
        mode: u32,
    ) -> Result<u64> {
        // Pieces go out with `submit`, which does not send the clock itself: the file
        // is stamped with the host's time.
        self.send_clock()?;
        let chunk = MAX_CHUNK as usize;
        let mut cur = vec![0u8; chunk];
        let mut ahead = vec![0u8; chunk];
        let mut n = crate::fs::read_full(r, &mut cur)?;
        let mut inflight: VecDeque<(u64, u64)> = VecDeque::with_capacity(STREAM_DEPTH);
        let mut outcome: Result<()> = Ok(());
        let mut at = offset;
        let mut first = true;
        let mut done = false;
        loop {
            while outcome.is_ok() && !done && inflight.len() < STREAM_DEPTH {
                // Read one piece ahead to know whether this one is the last.
                let m = if n == chunk {
                    match crate::fs::read_full(r, &mut ahead) {
                        Ok(m) => m,
                        Err(e) => {
                            outcome = Err(e);
                            break;
                        }
                    }
                } else {
                    0
                };
                let last = m == 0;
                let piece = cur[..n].to_vec();
                let id = self.submit(Request::WriteStream {
                    path: path.into(),
                    offset: at,
                    data: Bytes(piece),
                    first,
                    truncate: truncate && first,
                    mode,
                    last,
                })?;
                inflight.push_back((id, n as u64));
                at = at
                    .checked_add(n as u64)
                    .ok_or_else(|| Error::InvalidArgument("offset + length overflows".into()))?;
                first = false;
                std::mem::swap(&mut cur, &mut ahead);
                n = m;
                done = last;
            }
            let Some((id, want)) = inflight.pop_front() else {
                break;
            };
            match self.complete(id) {
                Ok(Reply::Written(w)) if w == want => {}
                Ok(Reply::Written(w)) => {
                    if outcome.is_ok() {
                        outcome = Err(Error::BadFrame(format!("wrote {w} of {want} bytes")));
                    }
                }
                Ok(other) => {
                    if outcome.is_ok() {
                        outcome = Err(unexpected(&other));
                    }
                }
                // Later pieces in flight are refused by the appliance (they no longer
                // continue a stream): only the first error is reported.
                Err(e @ Error::Remote(_)) => {
                    if outcome.is_ok() {
                        outcome = Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        outcome.map(|()| at - offset)
    }
}
