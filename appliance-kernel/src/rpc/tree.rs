//! Whole-tree requests: `FindStat` (find with attributes, paged), `Checksum` and
//! `ChecksumsOut` (digests computed in the appliance), `Du`, `Copy` (`cp`/`cp -r` inside
//! the guest), and `WriteStream` (a streamed file written in large pieces).
//!
//! Every walk is the same bounded, iterative depth-first [`TreeWalk`] (each directory's
//! entries sorted by name, symlinks never followed, mounted filesystems walked into),
//! resumable after any relative path so a huge tree is served in pages.

use super::files::{MAX_DEPTH, MAX_DIR_VISITS};
use super::{Appliance, err};
use crate::fs::FsResult;
use crate::fs::vfs::{join, normalize, split_parent};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use wire::{ErrorKind, FileChecksum, FileType, MAX_CHUNK, Stat, TreeEntry};

/// Reply bytes one page of `FindStat`/`ChecksumsOut` may fill (a frame holds 2 MiB).
const PAGE_BYTES: usize = 1 << 20;
/// File bytes one `ChecksumsOut` page hashes at most before it ends the page (keeps
/// each call well inside the host's call timeout under TCG).
const PAGE_HASH_BYTES: u64 = 256 << 20;
/// Bytes a `WriteStream` holds before writing them (one metadata update per this many).
pub const STREAM_HOLD: usize = 32 << 20;
/// Largest buffer a copy reads and writes at once.
const COPY_CHUNK: usize = 16 << 20;
/// Directories whose completion (mode, owner, times) a copy defers at once: its depth.
const MAX_COPY_DEPTH: usize = MAX_DEPTH;

/// The digests guestfish's `checksum` knows (but `crc`).
pub enum Hasher {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(algo: &str) -> FsResult<Self> {
        use sha2::Digest;
        Ok(match algo {
            "md5" => Hasher::Md5(md5::Md5::new()),
            "sha1" => Hasher::Sha1(sha1::Sha1::new()),
            "sha224" => Hasher::Sha224(sha2::Sha224::new()),
            "sha256" => Hasher::Sha256(sha2::Sha256::new()),
            "sha384" => Hasher::Sha384(sha2::Sha384::new()),
            "sha512" => Hasher::Sha512(sha2::Sha512::new()),
            other => {
                return Err(err(
                    ErrorKind::InvalidArgument,
                    format!(
                        "unknown checksum {other:?} (md5, sha1, sha224, sha256, sha384, sha512)"
                    ),
                ));
            }
        })
    }

    pub fn update(&mut self, data: &[u8]) {
        use sha2::Digest;
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha224(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest in lowercase hex.
    pub fn hex(self) -> String {
        use sha2::Digest;
        match self {
            Hasher::Md5(h) => hex(&h.finalize()),
            Hasher::Sha1(h) => hex(&h.finalize()),
            Hasher::Sha224(h) => hex(&h.finalize()),
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::Sha384(h) => hex(&h.finalize()),
            Hasher::Sha512(h) => hex(&h.finalize()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        for nibble in [b >> 4, b & 15] {
            s.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    s
}

/// One path a [`TreeWalk`] reached.
pub struct Node {
    /// Relative to the walk's root.
    pub rel: String,
    /// Absolute guest path.
    pub full: String,
    /// A mountpoint counts as a directory.
    pub file_type: FileType,
    /// Its `lstat` when the walk was asked for attributes.
    pub stat: Option<Stat>,
}

/// One directory being walked: its remaining entries, sorted.
struct Frame {
    dir: String,
    rel: String,
    entries: vec::IntoIter<(String, FileType, Option<Stat>)>,
    key: Option<(usize, u64)>,
    /// Depth (in components of `after`) while the walk still skips what `after`
    /// already covered.
    skip: Option<usize>,
}

/// A bounded iterative depth-first walk below a directory (the directory itself is not
/// reported): each directory's entries sorted by name, symlinks never followed,
/// mounted filesystems walked into, directory cycles refused.
pub struct TreeWalk {
    root: String,
    stack: Vec<Frame>,
    with_stat: bool,
    after: Vec<String>,
    visits: usize,
    ancestors: BTreeSet<(usize, u64)>,
}

impl TreeWalk {
    /// Starts below the directory `root` (normalized); `with_stat`: every node carries
    /// its attributes; `after`: skip every path up to and including this relative one.
    pub fn new(
        app: &mut Appliance,
        root: &str,
        with_stat: bool,
        after: Option<&str>,
    ) -> FsResult<Self> {
        let root = normalize(root)?;
        let st = app.stat(&root, true)?;
        if st.file_type != FileType::Directory {
            return Err(err(
                ErrorKind::NotADirectory,
                format!("{root} is not a directory"),
            ));
        }
        let after: Vec<String> = after
            .unwrap_or("")
            .split('/')
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        let mut w = TreeWalk {
            root: root.clone(),
            stack: Vec::new(),
            with_stat,
            visits: 0,
            ancestors: BTreeSet::new(),
            after,
        };
        let skip = (!w.after.is_empty()).then_some(0);
        let frame = w.open(app, root, String::new(), skip)?;
        w.stack.push(frame);
        Ok(w)
    }

    fn open(
        &mut self,
        app: &mut Appliance,
        dir: String,
        rel: String,
        skip: Option<usize>,
    ) -> FsResult<Frame> {
        self.visits += 1;
        if self.visits > MAX_DIR_VISITS {
            return Err(err(
                ErrorKind::TooLarge,
                format!("more than {MAX_DIR_VISITS} directories below {}", self.root),
            ));
        }
        if self.stack.len() > MAX_DEPTH {
            return Err(err(
                ErrorKind::Loop,
                format!("directory tree deeper than {MAX_DEPTH} levels at {dir}"),
            ));
        }
        let mi = app.mounts.mount_index(&dir)?;
        let (fs, inner) = app.mounts.resolve(&dir)?;
        let st = fs.stat(&inner, false)?;
        // Inode 0: the filesystem has no stable number for it; no cycle check.
        let key = (st.ino != 0).then_some((mi, st.ino));
        if let Some(k) = key
            && !self.ancestors.insert(k)
        {
            return Err(err(
                ErrorKind::Loop,
                format!("directory cycle: {dir} is its own ancestor"),
            ));
        }
        let mut entries: Vec<(String, FileType, Option<Stat>)> = if self.with_stat {
            fs.read_dir(&inner)?
                .into_iter()
                .map(|e| (e.name, e.stat.file_type, Some(e.stat)))
                .collect()
        } else {
            fs.read_dir_names(&inner)?
                .into_iter()
                .map(|(n, t)| (n, t, None))
                .collect()
        };
        entries.retain(|e| e.0 != "." && e.0 != "..");
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(Frame {
            dir,
            rel,
            entries: entries.into_iter(),
            key,
            skip,
        })
    }

    /// The next path, or `None` when the walk is done.
    pub fn next(&mut self, app: &mut Appliance) -> FsResult<Option<Node>> {
        loop {
            let Some(top) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some((name, mut ft, mut stat)) = top.entries.next() else {
                if let Some(done) = self.stack.pop()
                    && let Some(k) = done.key
                {
                    self.ancestors.remove(&k);
                }
                continue;
            };
            if name.is_empty() || name.contains('/') || name.contains('\0') {
                return Err(err(
                    ErrorKind::Corrupt,
                    format!("directory {} holds an invalid name {name:?}", top.dir),
                ));
            }
            // Where this entry stands against `after`: before it (skip it and all
            // below), on its path (descend without reporting), or past it.
            let mut descend_skip = None;
            if let Some(depth) = top.skip {
                let comp = self.after.get(depth).map(String::as_str).unwrap_or("");
                match name.as_str().cmp(comp) {
                    core::cmp::Ordering::Less => continue,
                    core::cmp::Ordering::Equal => {
                        if depth + 1 < self.after.len() {
                            descend_skip = Some(depth + 1);
                        }
                    }
                    core::cmp::Ordering::Greater => top.skip = None,
                }
            }
            let on_path = top.skip.is_some();
            let full = join(&top.dir, &name);
            let rel = if top.rel.is_empty() {
                name
            } else {
                format!("{}/{}", top.rel, name)
            };
            // A mountpoint shows the root of what is mounted on it.
            if app.mounts.is_mountpoint(&full) {
                ft = FileType::Directory;
                if self.with_stat {
                    stat = Some(app.stat(&full, false)?);
                }
            }
            if ft == FileType::Directory {
                let frame = self.open(app, full.clone(), rel.clone(), descend_skip)?;
                self.stack.push(frame);
            }
            if on_path {
                // `after` itself or one of its ancestors: already reported.
                continue;
            }
            return Ok(Some(Node {
                rel,
                full,
                file_type: ft,
                stat,
            }));
        }
    }
}

/// A file being streamed in ([`wire::Request::WriteStream`]).
pub struct Stream {
    path: String,
    /// File offset of `held[0]`.
    start: u64,
    /// Where the next piece must start.
    next: u64,
    /// The pieces held, in order (kept as received: no copy into one buffer).
    held: Vec<Vec<u8>>,
    /// Their total length.
    held_len: usize,
    truncate: bool,
    mode: u32,
    /// Nothing was written yet (an empty stream still creates the file).
    fresh: bool,
}

impl Appliance {
    /// A buffer of `len` bytes for a read, reusing the last one handed back.
    pub fn take_buffer(&mut self, len: usize) -> Vec<u8> {
        let mut b = core::mem::take(&mut self.spare);
        if b.capacity() < len || b.capacity() > 2 * MAX_CHUNK as usize {
            b = Vec::new();
        }
        // Only bytes past the previous length are zeroed: a recycled full-size buffer
        // costs nothing here.
        b.resize(len, 0);
        b
    }

    /// Hands a reply's data buffer back for the next read (the kernel calls this once
    /// the bytes are sent).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if buf.capacity() <= 2 * MAX_CHUNK as usize && buf.capacity() > self.spare.capacity() {
            self.spare = buf;
        }
    }

    /// `Checksum`: the digest of one regular file.
    pub fn checksum(&mut self, algo: &str, path: &str) -> FsResult<String> {
        let mut h = Hasher::new(algo)?;
        let p = normalize(path)?;
        let st = self.stat(&p, true)?;
        match st.file_type {
            FileType::Regular => {}
            FileType::Directory => {
                return Err(err(ErrorKind::IsADirectory, format!("{p} is a directory")));
            }
            _ => {
                return Err(err(
                    ErrorKind::InvalidArgument,
                    format!("{p} is not a regular file"),
                ));
            }
        }
        self.hash_file(&p, &mut h)?;
        Ok(h.hex())
    }

    /// Feeds the whole file at `path` to `h`, in chunks read straight into one buffer;
    /// returns its size.
    fn hash_file(&mut self, path: &str, h: &mut Hasher) -> FsResult<u64> {
        let mut buf = self.take_buffer(MAX_CHUNK as usize);
        let mut off = 0u64;
        let r = loop {
            let (fs, inner) = match self.mounts.resolve(path) {
                Ok(x) => x,
                Err(e) => break Err(e),
            };
            match fs.read_into(&inner, off, &mut buf) {
                Ok(0) => break Ok(off),
                Ok(n) => {
                    h.update(buf.get(..n).unwrap_or_default());
                    off += n as u64;
                }
                Err(e) => break Err(e),
            }
        };
        self.recycle(buf);
        r
    }

    /// `ChecksumsOut`: one page of digests of the regular files below `dir`.
    pub fn checksums_out(
        &mut self,
        algo: &str,
        dir: &str,
        after: Option<&str>,
    ) -> FsResult<(Vec<FileChecksum>, Option<String>)> {
        Hasher::new(algo)?;
        let mut walk = TreeWalk::new(self, dir, false, after)?;
        let mut sums = Vec::new();
        let (mut bytes, mut hashed) = (0usize, 0u64);
        while let Some(n) = walk.next(self)? {
            if n.file_type != FileType::Regular {
                continue;
            }
            let mut h = Hasher::new(algo)?;
            hashed = hashed.saturating_add(self.hash_file(&n.full, &mut h)?);
            bytes += n.rel.len() + 160;
            sums.push(FileChecksum {
                hash: h.hex(),
                path: n.rel.clone(),
            });
            if bytes >= PAGE_BYTES || hashed >= PAGE_HASH_BYTES {
                return Ok((sums, Some(n.rel)));
            }
        }
        Ok((sums, None))
    }

    /// `FindStat`: one page of paths below `path` with their attributes.
    pub fn find_stat(
        &mut self,
        path: &str,
        after: Option<&str>,
    ) -> FsResult<(Vec<TreeEntry>, Option<String>)> {
        let mut walk = TreeWalk::new(self, path, true, after)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(n) = walk.next(self)? {
            let stat = match n.stat {
                Some(s) => s,
                None => self.stat(&n.full, false)?,
            };
            let link = if stat.file_type == FileType::Symlink {
                let (fs, inner) = self.mounts.resolve(&n.full)?;
                Some(fs.read_link(&inner)?)
            } else {
                None
            };
            bytes += n.rel.len() + link.as_ref().map_or(0, String::len) + 64;
            out.push(TreeEntry {
                path: n.rel.clone(),
                stat,
                link,
            });
            if bytes >= PAGE_BYTES {
                return Ok((out, Some(n.rel)));
            }
        }
        Ok((out, None))
    }

    /// `Du`: KiB used by `path` and everything below it, each inode counted once.
    pub fn du(&mut self, path: &str) -> FsResult<u64> {
        let p = normalize(path)?;
        let st = self.stat(&p, false)?;
        // Block sizes of the mounts met, for filesystems that cannot tell their usage.
        let mut block_sizes: BTreeMap<usize, u64> = BTreeMap::new();
        let mut seen: BTreeSet<(usize, u64)> = BTreeSet::new();
        let mut total = self.usage(&p, &st, &mut block_sizes, &mut seen)?;
        if st.file_type == FileType::Directory {
            let mut walk = TreeWalk::new(self, &p, true, None)?;
            while let Some(n) = walk.next(self)? {
                let st = match n.stat {
                    Some(s) => s,
                    None => self.stat(&n.full, false)?,
                };
                total =
                    total.saturating_add(self.usage(&n.full, &st, &mut block_sizes, &mut seen)?);
            }
        }
        Ok(total.div_ceil(1024))
    }

    /// Bytes one node uses on disk (0 for a hard link already counted).
    fn usage(
        &mut self,
        full: &str,
        st: &Stat,
        block_sizes: &mut BTreeMap<usize, u64>,
        seen: &mut BTreeSet<(usize, u64)>,
    ) -> FsResult<u64> {
        let mi = self.mounts.mount_index(full)?;
        if st.ino != 0
            && st.file_type != FileType::Directory
            && st.nlink > 1
            && !seen.insert((mi, st.ino))
        {
            return Ok(0);
        }
        let (fs, inner) = self.mounts.resolve(full)?;
        if let Some(n) = fs.allocated(&inner, st)? {
            return Ok(n);
        }
        let bs = match block_sizes.get(&mi) {
            Some(&b) => b,
            None => {
                let b = fs.statvfs().map(|v| v.block_size).unwrap_or(512).max(512);
                block_sizes.insert(mi, b);
                b
            }
        };
        Ok(st.size.div_ceil(bs).saturating_mul(bs))
    }

    /// `Copy`: `cp` / `cp -r` inside the guest.
    pub fn copy(&mut self, from: &str, to: &str, recursive: bool) -> FsResult<()> {
        let f = normalize(from)?;
        let t = normalize(to)?;
        // Like cp: a symlink named on the command line is followed unless copying
        // recursively, where it is copied as a symlink.
        let src = self.stat(&f, !recursive)?;
        let name = split_parent(&f).map(|(_, n)| n).unwrap_or("");
        let dest = match self.stat(&t, true) {
            Ok(d) if d.file_type == FileType::Directory => {
                if name.is_empty() {
                    return Err(err(
                        ErrorKind::InvalidArgument,
                        "cannot copy / into a directory",
                    ));
                }
                join(&t, name)
            }
            Ok(_) if src.file_type == FileType::Directory => {
                return Err(err(
                    ErrorKind::NotADirectory,
                    format!("cannot overwrite non-directory {t} with directory {f}"),
                ));
            }
            Ok(_) => t,
            Err(e) if e.kind == ErrorKind::NotFound => t,
            Err(e) => return Err(e),
        };
        if dest == f {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("{f} and {dest} are the same file"),
            ));
        }
        if src.file_type != FileType::Directory {
            return self.copy_node(&f, &dest, &src);
        }
        if !recursive {
            return Err(err(
                ErrorKind::IsADirectory,
                format!("{f} is a directory (copy it recursively)"),
            ));
        }
        if f == "/" || dest.starts_with(&format!("{f}/")) {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("cannot copy {f} into itself ({dest})"),
            ));
        }
        // One write state for the whole tree (ext4: one mount, one journal commit).
        let (fs, _) = self.mounts.resolve(&dest)?;
        fs.begin_batch()?;
        let r = self.copy_tree(&f, &dest, &src);
        let (fs, _) = self.mounts.resolve(&dest)?;
        let ended = fs.end_batch();
        r.and(ended)
    }

    fn copy_tree(&mut self, from: &str, dest: &str, src: &Stat) -> FsResult<()> {
        self.make_dir(dest)?;
        // Directories whose attributes are set once their contents are copied (writing
        // into a directory changes its times): (relative path, stat), innermost last.
        let mut pending: Vec<(String, Stat)> = vec![(String::new(), src.clone())];
        let mut walk = TreeWalk::new(self, from, true, None)?;
        while let Some(n) = walk.next(self)? {
            let st = match n.stat {
                Some(s) => s,
                None => self.stat(&n.full, false)?,
            };
            // Finish the directories this entry is not below.
            while let Some((rel, _)) = pending.last() {
                if rel.is_empty() || n.rel.starts_with(&format!("{rel}/")) {
                    break;
                }
                if let Some((rel, st)) = pending.pop() {
                    self.set_attrs(&join_rel(dest, &rel), &st)?;
                }
            }
            let target = join_rel(dest, &n.rel);
            if st.file_type == FileType::Directory {
                self.make_dir(&target)?;
                if pending.len() > MAX_COPY_DEPTH {
                    return Err(err(ErrorKind::Loop, format!("{from}: tree too deep")));
                }
                pending.push((n.rel, st));
            } else {
                self.copy_node(&n.full, &target, &st)?;
            }
        }
        while let Some((rel, st)) = pending.pop() {
            self.set_attrs(&join_rel(dest, &rel), &st)?;
        }
        Ok(())
    }

    /// Creates the directory `path` for a copy, or reuses an existing one.
    fn make_dir(&mut self, path: &str) -> FsResult<()> {
        match self.stat(path, false) {
            Ok(st) if st.file_type == FileType::Directory => Ok(()),
            Ok(_) => Err(err(
                ErrorKind::AlreadyExists,
                format!("{path} exists and is not a directory"),
            )),
            Err(e) if e.kind == ErrorKind::NotFound => {
                let (fs, inner) = self.mounts.resolve(path)?;
                fs.mkdir(&inner, 0o700)
            }
            Err(e) => Err(e),
        }
    }

    /// Copies one non-directory `from` (with attributes `st`) to `to`.
    fn copy_node(&mut self, from: &str, to: &str, st: &Stat) -> FsResult<()> {
        match st.file_type {
            FileType::Regular => {
                self.replace_with(to, FileType::Regular)?;
                let cap = usize::try_from(st.size)
                    .unwrap_or(COPY_CHUNK)
                    .clamp(1, COPY_CHUNK);
                let mut buf = vec![0u8; cap];
                let mut off = 0u64;
                loop {
                    let (fs, inner) = self.mounts.resolve(from)?;
                    let mut n = 0;
                    // Fill the buffer (read_into may stop at its own chunk size).
                    while n < buf.len() {
                        let got = fs.read_into(
                            &inner,
                            off + n as u64,
                            buf.get_mut(n..).unwrap_or_default(),
                        )?;
                        if got == 0 {
                            break;
                        }
                        n += got;
                    }
                    let (fs, inner) = self.mounts.resolve(to)?;
                    if n > 0 || off == 0 {
                        fs.write(
                            &inner,
                            off,
                            buf.get(..n).unwrap_or_default(),
                            off == 0,
                            st.mode & 0o7777,
                        )?;
                    }
                    off += n as u64;
                    if n < buf.len() {
                        break;
                    }
                }
            }
            FileType::Symlink => {
                let (fs, inner) = self.mounts.resolve(from)?;
                let target = fs.read_link(&inner)?;
                self.replace_with(to, FileType::Symlink)?;
                let (fs, inner) = self.mounts.resolve(to)?;
                fs.symlink(&target, &inner)?;
            }
            other => {
                return Err(err(
                    ErrorKind::Unsupported,
                    format!("{from}: cannot copy a {other:?} (special files are not created)"),
                ));
            }
        }
        self.set_attrs(to, st)
    }

    /// Makes room for a new `kind` at `path`: an existing file or symlink is replaced
    /// (a regular file by a regular file is overwritten in place), a directory refused.
    fn replace_with(&mut self, path: &str, kind: FileType) -> FsResult<()> {
        match self.stat(path, false) {
            Ok(st) if st.file_type == FileType::Directory => Err(err(
                ErrorKind::IsADirectory,
                format!("cannot overwrite directory {path}"),
            )),
            Ok(st) if st.file_type == FileType::Regular && kind == FileType::Regular => Ok(()),
            Ok(_) => {
                let (fs, inner) = self.mounts.resolve(path)?;
                fs.unlink(&inner)
            }
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Mode, owner and times of a copy, as far as its filesystem can hold them.
    fn set_attrs(&mut self, path: &str, st: &Stat) -> FsResult<()> {
        let (fs, inner) = self.mounts.resolve(path)?;
        let tolerate = |r: FsResult<()>| match r {
            Err(e) if e.kind == ErrorKind::Unsupported => Ok(()),
            r => r,
        };
        tolerate(fs.chown(&inner, st.uid, st.gid))?;
        if st.file_type != FileType::Symlink {
            tolerate(fs.chmod(&inner, st.mode & 0o7777))?;
        }
        tolerate(fs.set_times(&inner, st.atime, st.mtime))
    }

    /// `WriteStream`: takes one piece; see the request's documentation. `flags`:
    /// (first, truncate, last).
    pub fn write_stream(
        &mut self,
        path: &str,
        offset: u64,
        data: Vec<u8>,
        flags: (bool, bool, bool),
        mode: u32,
    ) -> FsResult<u64> {
        let (first, truncate, last) = flags;
        let p = normalize(path)?;
        let len = data.len() as u64;
        offset
            .checked_add(len)
            .ok_or_else(|| err(ErrorKind::TooLarge, "offset + length overflows"))?;
        if first {
            self.end_stream()?;
            self.stream = Some(Stream {
                path: p,
                start: offset,
                next: offset,
                held: Vec::new(),
                held_len: 0,
                truncate,
                mode: mode & 0o7777,
                fresh: true,
            });
        } else if !self
            .stream
            .as_ref()
            .is_some_and(|s| s.path == p && s.next == offset)
        {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("{p}: piece at {offset} does not continue an open stream"),
            ));
        }
        let Some(s) = self.stream.as_mut() else {
            return Err(err(ErrorKind::Internal, "stream vanished"));
        };
        s.held_len += data.len();
        if !data.is_empty() {
            s.held.push(data);
        }
        s.next += len;
        if last {
            self.end_stream()?;
        } else if s.held_len >= STREAM_HOLD
            && let Err(e) = self.flush_stream()
        {
            self.stream = None;
            return Err(e);
        }
        Ok(len)
    }

    /// Writes what the open stream holds (it stays open): one write state (ext4: one
    /// mount and journal commit) for all the pieces held.
    fn flush_stream(&mut self) -> FsResult<()> {
        let Some(s) = self.stream.as_mut() else {
            return Ok(());
        };
        if s.held.is_empty() && !s.fresh {
            return Ok(());
        }
        let (fs, inner) = self.mounts.resolve(&s.path)?;
        if inner == "/" {
            return Err(err(
                ErrorKind::IsADirectory,
                format!("{} is a directory", s.path),
            ));
        }
        let pieces = core::mem::take(&mut s.held);
        s.held_len = 0;
        let batch = pieces.len() > 1;
        if batch {
            fs.begin_batch()?;
        }
        let mut r = Ok(());
        if pieces.is_empty() {
            // An empty stream still creates (or truncates) the file.
            r = fs
                .write(&inner, s.start, &[], s.truncate, s.mode)
                .map(|_| ());
        }
        for p in &pieces {
            if r.is_err() {
                break;
            }
            r = fs.write(&inner, s.start, p, s.truncate, s.mode).map(|_| ());
            s.start += p.len() as u64;
            s.truncate = false;
        }
        if batch {
            let ended = fs.end_batch();
            r = r.and(ended);
        }
        s.truncate = false;
        s.fresh = false;
        r
    }

    /// Writes what the open stream holds and closes it.
    pub fn end_stream(&mut self) -> FsResult<()> {
        let r = self.flush_stream();
        self.stream = None;
        r
    }
}

fn join_rel(base: &str, rel: &str) -> String {
    if rel.is_empty() {
        String::from(base)
    } else {
        join(base, rel)
    }
}
