//! Whole trees in and out of the guest, like `virt-copy-out`, `virt-copy-in`,
//! `virt-tar-out` and `virt-tar-in`: [`Session::copy_out`], [`Session::copy_in`],
//! [`Session::tar_out`] and [`Session::tar_in`].
//!
//! - The guest side is walked with one [`Session::find_stat`] (attributes and symlink
//!   targets of a whole tree, page by page); symlinks are never followed.
//! - File bytes stream: a large file moves in [`MAX_CHUNK`] pieces, a few in flight,
//!   never whole in memory; small files are pipelined many at a time (the reads or the
//!   create + chown + utimens of up to [`WINDOW`] files in flight), so a tree of small
//!   files does not cost one round trip per call.
//! - Every name from the guest (or from a tar archive) is checked before it is used on
//!   the host: one path component, not `.` or `..`, no NUL; a guest name that is not
//!   UTF-8 (the appliance shows it with U+FFFD) is a clear error naming it. Nothing is
//!   created outside the target directory on either side: on the host, an entry is only
//!   created inside a directory this call created or checked (never through a symlink);
//!   in the guest, a parent that is not a directory this call made is checked with
//!   `lstat` first, and a symlink there refuses the entry.
//! - What the appliance cannot make or tell (hard links in the guest, device nodes,
//!   FIFOs and sockets in the guest, device numbers) is written as the closest thing or
//!   skipped, each with a note in the [`TransferReport`].

use crate::error::{Error, Result};
use crate::session::{Session, unexpected};
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::CString;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use wire::{Bytes, ErrorKind, FileType, MAX_CHUNK, Reply, Request, Stat, TreeEntry};

/// Calls in flight at once when many small files move (reads, or writes with their
/// chown and utimens).
pub const WINDOW: usize = 32;

/// Bytes of small-file data in flight at once (host memory bound of the pipeline).
const WINDOW_BYTES: u64 = 16 << 20;

/// What a transfer moved, and what it could not move exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TransferReport {
    /// Regular files written (hard links made as links included in `hardlinks`).
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Hard links kept as links (copy-out, tar-out) or written as copies (copy-in,
    /// tar-in: the appliance cannot make hard links; see `notes`).
    pub hardlinks: u64,
    /// Bytes of file data moved.
    pub bytes: u64,
    /// Entries written differently than asked, or skipped, one line each.
    pub notes: Vec<String>,
    /// tar-in: archive entries refused (absolute, `..`, not UTF-8), one line each; the
    /// rest of the archive is extracted (like GNU tar, which then exits non-zero).
    pub refused: Vec<String>,
}

/// Compression of a tar stream on the host side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Compression::None),
            "gzip" | "gz" => Ok(Compression::Gzip),
            "zstd" | "zst" => Ok(Compression::Zstd),
            _ => Err(format!("{s:?}: compression is none, gzip or zstd")),
        }
    }
}

/// Progress of a long transfer (bytes of file data). The CLI draws a bar with it.
pub trait Progress {
    /// The bytes this transfer will move, when known before it starts.
    fn start(&mut self, _total_bytes: Option<u64>) {}
    /// `bytes` more were moved.
    fn advance(&mut self, _bytes: u64) {}
    /// The transfer is over (done or failed).
    fn finish(&mut self) {}
}

/// No progress shown.
pub struct NoProgress;
impl Progress for NoProgress {}

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

fn remote(kind: ErrorKind, msg: String) -> Error {
    Error::Remote(wire::Error::new(kind, msg))
}

/// An appliance error with the guest path (and what was done) in front.
fn at_path(e: Error, what: &str, path: &str) -> Error {
    match e {
        Error::Remote(r) => Error::Remote(wire::Error::new(
            r.kind,
            format!("{what} {path}: {}", r.message),
        )),
        other => other,
    }
}

fn host_err(e: std::io::Error, what: &str, path: &Path) -> Error {
    Error::Io(std::io::Error::new(
        e.kind(),
        format!("{what} {}: {e}", path.display()),
    ))
}

/// `dir/rel` for guest paths.
pub fn guest_join(dir: &str, rel: &str) -> String {
    if rel.is_empty() {
        dir.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{rel}")
    } else {
        format!("{dir}/{rel}")
    }
}

/// The parent of a relative path (`""` for a top-level name).
fn rel_parent(rel: &str) -> &str {
    rel.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

/// Checks a relative path from the guest or an archive: components that are plain
/// names (not empty, `.`, `..`, no NUL). Returns a reason when it is refused.
pub fn check_rel(rel: &str) -> std::result::Result<(), String> {
    if rel.starts_with('/') {
        return Err("absolute path".into());
    }
    for c in rel.split('/') {
        match c {
            "" => return Err("empty path component".into()),
            "." => return Err("`.` component".into()),
            ".." => return Err("`..` component".into()),
            c if c.contains('\0') => return Err("NUL in name".into()),
            _ => {}
        }
    }
    Ok(())
}

/// A guest name the appliance could not show as UTF-8 (it carries U+FFFD instead).
fn not_utf8_guest(path: &str) -> Error {
    invalid(format!(
        "{path}: the name is not UTF-8 (the appliance shows it as {path:?}); \
         skiff's protocol carries names as UTF-8 only, so this entry cannot be copied"
    ))
}

/// Sets atime/mtime of `path` without following a final symlink.
fn set_host_times(path: &Path, atime: i64, mtime: i64) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    let ts = [
        libc::timespec {
            tv_sec: atime as libc::time_t,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: mtime as libc::time_t,
            tv_nsec: 0,
        },
    ];
    // SAFETY: `c` is a valid NUL-terminated path and `ts` two valid timespecs, alive for
    // the call; utimensat does not keep the pointers.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// One call in flight in a [`Pipe`]: what to do with its reply.
enum Pending {
    /// A small file's bytes for entry `idx` (copy-out, tar-out).
    Read { want: u64 },
    /// A write of `len` bytes to `path`.
    Write { path: String, len: u64 },
    /// A change that answers `Unit`; `what` names it for errors.
    Unit { path: String, what: &'static str },
    /// chown: `Unsupported` is a note (FAT has no owners), not an error.
    Owner { path: String },
    /// utimens: `Unsupported` is a note.
    Times { path: String },
}

/// Calls in flight, completed in submission order. The first error is kept; the rest
/// of the calls are still completed so the channel stays in step.
#[derive(Default)]
struct Pipe {
    q: VecDeque<(u64, Pending)>,
    bytes: u64,
    error: Option<Error>,
    no_owners: bool,
    no_times: bool,
    notes: Vec<String>,
    /// The guest file whose write failed (removed by [`cleanup_partial`]).
    failed_write: Option<String>,
}

impl Pipe {
    /// A whole small file in one piece: `path` created (or emptied) with `mode` and
    /// `data` written. Returns its length.
    fn submit_file(
        &mut self,
        s: &mut Session,
        path: &str,
        data: Vec<u8>,
        mode: u32,
    ) -> Result<u64> {
        let n = data.len() as u64;
        self.submit(
            s,
            Request::WriteStream {
                path: path.into(),
                offset: 0,
                data: Bytes(data),
                first: true,
                truncate: true,
                mode,
                last: true,
            },
            Pending::Write {
                path: path.into(),
                len: n,
            },
        )?;
        Ok(n)
    }

    fn submit(&mut self, s: &mut Session, req: Request, p: Pending) -> Result<()> {
        if let Pending::Write { len, .. } | Pending::Read { want: len } = &p {
            self.bytes += len;
        }
        let id = s.submit(req)?;
        self.q.push_back((id, p));
        Ok(())
    }

    fn full(&self) -> bool {
        self.q.len() >= WINDOW || self.bytes >= WINDOW_BYTES
    }

    /// Completes the oldest call. A read's data comes back.
    fn complete_one(&mut self, s: &mut Session) -> Result<Option<Vec<u8>>> {
        let Some((id, p)) = self.q.pop_front() else {
            return Ok(None);
        };
        if let Pending::Write { len, .. } | Pending::Read { want: len } = &p {
            self.bytes -= len;
        }
        let r = s.complete(id);
        let r = match r {
            Ok(r) => r,
            Err(Error::Remote(w)) => {
                match &p {
                    Pending::Owner { path } if w.kind == ErrorKind::Unsupported => {
                        if !self.no_owners {
                            self.notes.push(format!(
                                "{path}: owners not kept: {} (the filesystem has none)",
                                w.message
                            ));
                        }
                        self.no_owners = true;
                    }
                    Pending::Times { path } if w.kind == ErrorKind::Unsupported => {
                        if !self.no_times {
                            self.notes
                                .push(format!("{path}: times not kept: {}", w.message));
                        }
                        self.no_times = true;
                    }
                    Pending::Read { .. } => self.keep(Error::Remote(w)),
                    Pending::Write { path, .. } => {
                        if self.error.is_none() {
                            self.failed_write = Some(path.clone());
                        }
                        self.keep(at_path(Error::Remote(w), "writing", path))
                    }
                    Pending::Owner { path } => self.keep(at_path(Error::Remote(w), "chown", path)),
                    Pending::Times { path } => {
                        self.keep(at_path(Error::Remote(w), "utimens", path))
                    }
                    Pending::Unit { path, what } => {
                        self.keep(at_path(Error::Remote(w), what, path))
                    }
                }
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match (p, r) {
            (Pending::Read { want }, Reply::Data(Bytes(d))) => {
                if d.len() as u64 > want {
                    return Err(Error::BadFrame(format!(
                        "asked for {want} bytes, got {}",
                        d.len()
                    )));
                }
                Ok(Some(d))
            }
            (Pending::Write { path, len }, Reply::Written(n)) => {
                if n != len {
                    self.keep(remote(
                        ErrorKind::Io,
                        format!("writing {path}: wrote {n} of {len} bytes"),
                    ));
                }
                Ok(None)
            }
            (Pending::Unit { .. } | Pending::Owner { .. } | Pending::Times { .. }, Reply::Unit) => {
                Ok(None)
            }
            (_, other) => Err(unexpected(&other)),
        }
    }

    fn keep(&mut self, e: Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Completes everything in flight; the first error of them, if any.
    fn drain(&mut self, s: &mut Session) -> Result<()> {
        while !self.q.is_empty() {
            self.complete_one(s)?;
        }
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Owner and times of a guest path, pipelined. `fresh`: the inode was just made
    /// by the appliance, which makes it owned by 0:0, so root's owner needs no call.
    #[allow(clippy::too_many_arguments)]
    fn attrs(
        &mut self,
        s: &mut Session,
        path: &str,
        uid: u32,
        gid: u32,
        mtime: i64,
        atime: i64,
        fresh: bool,
    ) -> Result<()> {
        let owner_is_default = fresh && uid == 0 && gid == 0;
        if !self.no_owners && !owner_is_default {
            self.submit(
                s,
                Request::Chown {
                    path: path.into(),
                    uid,
                    gid,
                },
                Pending::Owner { path: path.into() },
            )?;
        }
        if !self.no_times {
            self.submit(
                s,
                Request::Utimens {
                    path: path.into(),
                    atime,
                    mtime,
                },
                Pending::Times { path: path.into() },
            )?;
        }
        Ok(())
    }
}

/// Streams one guest file of `size` bytes into `w` in [`MAX_CHUNK`] pieces, two in
/// flight. Returns the bytes copied (short when the file shrank while read).
fn stream_out(s: &mut Session, path: &str, size: u64, w: &mut dyn Write) -> Result<u64> {
    let mut w = w;
    s.pread_to(path, 0, size, &mut w)
        .map_err(|e| at_path(e, "reading", path))
}

// ---------------------------------------------------------------------------------
// copy-out

/// The walk of one guest path: the top entry (`path` = "") and everything below.
fn guest_tree(s: &mut Session, guest: &str) -> Result<Vec<TreeEntry>> {
    let st = s.lstat(guest).map_err(|e| at_path(e, "lstat", guest))?;
    let link = if st.file_type == FileType::Symlink {
        Some(
            s.readlink(guest)
                .map_err(|e| at_path(e, "readlink", guest))?,
        )
    } else {
        None
    };
    let is_dir = st.file_type == FileType::Directory;
    let mut out = vec![TreeEntry {
        path: String::new(),
        stat: st,
        link,
    }];
    if is_dir {
        out.extend(s.find_stat(guest).map_err(|e| at_path(e, "find", guest))?);
    }
    for e in &out {
        if e.path.contains('\u{FFFD}') {
            return Err(not_utf8_guest(&guest_join(guest, &e.path)));
        }
        if !e.path.is_empty() {
            check_rel(&e.path).map_err(|why| {
                remote(
                    ErrorKind::Corrupt,
                    format!(
                        "{}: refused name from the guest: {why}",
                        guest_join(guest, &e.path)
                    ),
                )
            })?;
        }
    }
    Ok(out)
}

/// The last component of a guest path (`None` for `/`).
fn guest_basename(p: &str) -> Option<&str> {
    p.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
}

/// Per entry: the index of the first entry with the same inode (a hard link of it),
/// for regular files with more than one link. Inode, size and mtime must all agree.
fn hard_links(entries: &[TreeEntry]) -> Vec<Option<usize>> {
    let mut first: HashMap<(u64, u64, i64), usize> = HashMap::new();
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let st = &e.stat;
            if st.file_type != FileType::Regular || st.nlink < 2 || st.ino == 0 {
                return None;
            }
            match first.entry((st.ino, st.size, st.mtime)) {
                std::collections::hash_map::Entry::Occupied(o) => Some(*o.get()),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(i);
                    None
                }
            }
        })
        .collect()
}

fn small(st: &Stat) -> bool {
    st.file_type == FileType::Regular && st.size > 0 && st.size <= u64::from(MAX_CHUNK)
}

/// Data of the small files among `entries[from..]`, fetched `WINDOW` at a time: a
/// stateful helper for the walks of copy-out and tar-out.
struct Prefetch {
    /// Entry index of each read in flight, in order.
    idx: VecDeque<usize>,
    next: usize,
    pipe: Pipe,
    /// Per entry: the index of an earlier entry it is a hard link of.
    link_of: Vec<Option<usize>>,
}

impl Prefetch {
    fn new(entries: &[TreeEntry]) -> Self {
        Prefetch {
            idx: VecDeque::new(),
            next: 0,
            pipe: Pipe::default(),
            link_of: hard_links(entries),
        }
    }

    /// Is entry `i` read through [`Prefetch::take`]?
    fn wanted(&self, entries: &[TreeEntry], i: usize) -> bool {
        entries.get(i).is_some_and(|e| small(&e.stat))
            && self.link_of.get(i).is_some_and(|l| l.is_none())
    }

    /// The bytes of small file `i` (whose read may already be in flight), after putting
    /// the reads of the small files that follow in flight. Reads stop before a large
    /// file, which streams on its own.
    fn take(
        &mut self,
        s: &mut Session,
        base: &str,
        entries: &[TreeEntry],
        i: usize,
    ) -> Result<Vec<u8>> {
        if self.next <= i {
            self.next = i;
        }
        while !self.pipe.full() && self.next < entries.len() {
            let e = &entries[self.next];
            if e.stat.file_type == FileType::Regular && !small(&e.stat) && e.stat.size > 0 {
                break;
            }
            if self.wanted(entries, self.next) {
                let path = guest_join(base, &e.path);
                self.pipe.submit(
                    s,
                    Request::Pread {
                        path,
                        offset: 0,
                        len: e.stat.size as u32,
                    },
                    Pending::Read { want: e.stat.size },
                )?;
                self.idx.push_back(self.next);
            }
            self.next += 1;
        }
        match self.idx.pop_front() {
            Some(j) if j == i => {}
            _ => {
                return Err(Error::BadFrame(format!(
                    "prefetch out of step at entry {i}"
                )));
            }
        }
        let data = self.pipe.complete_one(s)?;
        if let Some(e) = self.pipe.error.take() {
            // Complete the rest so the session stays usable.
            let _ = self.pipe.drain(s);
            self.idx.clear();
            return Err(at_path(e, "reading", &guest_join(base, &entries[i].path)));
        }
        data.ok_or_else(|| Error::BadFrame("no data for a read".into()))
    }

    /// Completes whatever is still in flight (after an error elsewhere).
    fn abandon(&mut self, s: &mut Session) {
        let _ = self.pipe.drain(s);
        self.idx.clear();
    }
}

impl Session {
    /// Copies the guest file, symlink or directory tree `guest` into the host directory
    /// `host_dir` (like `virt-copy-out`): `host_dir/NAME` (for `/`, its contents go
    /// straight into `host_dir`). Regular files, directories, symlinks (never followed)
    /// and FIFOs are made; modes and times are kept, owners too when running as root;
    /// hard links within the tree stay hard links. Device nodes and sockets are skipped
    /// with a note (the appliance does not report device numbers). An existing regular
    /// file is replaced; an existing symlink in the way is refused.
    ///
    /// ```no_run
    /// # let mut s = skiff::Appliance::builder().add_drive("disk.img", skiff::DriveOptions::readonly()).launch()?;
    /// # s.mount("/dev/sda", "/", skiff::MountOptions::readonly())?;
    /// let report = s.copy_out("/etc", std::path::Path::new("backup"), &mut skiff::transfer::NoProgress)?;
    /// println!("{} files, {} bytes", report.files, report.bytes);
    /// # Ok::<(), skiff::Error>(())
    /// ```
    pub fn copy_out(
        &mut self,
        guest: &str,
        host_dir: &Path,
        progress: &mut dyn Progress,
    ) -> Result<TransferReport> {
        let md = fs::metadata(host_dir).map_err(|e| host_err(e, "host directory", host_dir))?;
        if !md.is_dir() {
            return Err(invalid(format!("{}: not a directory", host_dir.display())));
        }
        let entries = guest_tree(self, guest)?;
        let total: u64 = entries
            .iter()
            .filter(|e| e.stat.file_type == FileType::Regular)
            .map(|e| e.stat.size)
            .sum();
        progress.start(Some(total));
        let mut pf = Prefetch::new(&entries);
        let r = copy_out_entries(self, guest, host_dir, &entries, &mut pf, progress);
        if r.is_err() {
            pf.abandon(self);
        }
        progress.finish();
        r
    }
}

fn copy_out_entries(
    s: &mut Session,
    guest: &str,
    host_dir: &Path,
    entries: &[TreeEntry],
    pf: &mut Prefetch,
    progress: &mut dyn Progress,
) -> Result<TransferReport> {
    let mut rep = TransferReport::default();
    let owners = is_root();
    // The host root of the copy: host_dir/NAME, or host_dir itself for `/`.
    let top: PathBuf = match guest_basename(guest) {
        Some(n) => host_dir.join(n),
        None => host_dir.to_path_buf(),
    };
    // Relative paths of the directories made (or checked) on the host.
    let mut dirs: HashSet<String> = HashSet::new();
    // Directories whose mode and times are set once their contents are in.
    let mut dir_attrs: Vec<(PathBuf, Stat)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let gpath = guest_join(guest, &e.path);
        let hpath = if e.path.is_empty() {
            top.clone()
        } else {
            if !dirs.contains(rel_parent(&e.path)) {
                return Err(remote(
                    ErrorKind::Corrupt,
                    format!("{gpath}: listed below something that is not a directory"),
                ));
            }
            top.join(&e.path)
        };
        let st = &e.stat;
        match st.file_type {
            FileType::Directory => {
                make_host_dir(&hpath, e.path.is_empty() && guest_basename(guest).is_none())?;
                dirs.insert(e.path.clone());
                // `/` copies into host_dir: host_dir's own attributes are left alone.
                if !(e.path.is_empty() && guest_basename(guest).is_none()) {
                    dir_attrs.push((hpath, st.clone()));
                }
                rep.dirs += 1;
                continue;
            }
            FileType::Regular => {
                clear_host_path(&hpath)?;
                if let Some(Some(j)) = pf.link_of.get(i) {
                    let first = entries
                        .get(*j)
                        .map(|f| top.join(&f.path))
                        .unwrap_or_default();
                    fs::hard_link(&first, &hpath).map_err(|e| host_err(e, "linking", &hpath))?;
                    rep.hardlinks += 1;
                    continue;
                }
                let f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&hpath)
                    .map_err(|e| host_err(e, "creating", &hpath))?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                let n = if pf.wanted(entries, i) {
                    let d = pf.take(s, guest, entries, i)?;
                    w.write_all(&d)
                        .map_err(|e| host_err(e, "writing", &hpath))?;
                    d.len() as u64
                } else if st.size == 0 {
                    0
                } else {
                    stream_out(s, &gpath, st.size, &mut w)?
                };
                w.flush().map_err(|e| host_err(e, "writing", &hpath))?;
                if n != st.size {
                    rep.notes.push(format!(
                        "{gpath}: changed size while read ({} bytes listed, {n} copied)",
                        st.size
                    ));
                }
                rep.files += 1;
                rep.bytes += n;
                progress.advance(n);
            }
            FileType::Symlink => {
                clear_host_path(&hpath)?;
                let target = e.link.as_deref().unwrap_or("");
                std::os::unix::fs::symlink(target, &hpath)
                    .map_err(|e| host_err(e, "creating symlink", &hpath))?;
                rep.symlinks += 1;
            }
            FileType::Fifo => {
                clear_host_path(&hpath)?;
                let c = CString::new(hpath.as_os_str().as_bytes())
                    .map_err(|_| invalid(format!("{}: NUL in path", hpath.display())))?;
                // SAFETY: a valid NUL-terminated path, alive for the call.
                if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                    return Err(host_err(
                        std::io::Error::last_os_error(),
                        "creating FIFO",
                        &hpath,
                    ));
                }
            }
            other => {
                rep.notes.push(format!(
                    "{gpath}: {} skipped (the appliance does not report device numbers)",
                    type_name(other)
                ));
                continue;
            }
        }
        set_host_attrs(&hpath, st, owners)?;
    }
    for (p, st) in dir_attrs.iter().rev() {
        set_host_attrs(p, st, owners)?;
    }
    Ok(rep)
}

fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::Regular => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::CharDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::Unknown => "file of unknown type",
    }
}

/// Makes the host directory `p` (mode 0700 while it is filled), or checks that the
/// existing one is a real directory (not a symlink).
fn make_host_dir(p: &Path, may_exist_as_link: bool) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(m) if may_exist_as_link && m.file_type().is_symlink() && p.is_dir() => Ok(()),
        Ok(_) => Err(host_err(
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a directory",
            ),
            "creating directory",
            p,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::DirBuilder::new()
            .mode(0o700)
            .create(p)
            .map_err(|e| host_err(e, "creating directory", p)),
        Err(e) => Err(host_err(e, "creating directory", p)),
    }
}

/// Removes an existing non-directory at `p` (a file copied earlier is replaced); a
/// directory there is an error.
fn clear_host_path(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => Err(host_err(
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "is a directory"),
            "replacing",
            p,
        )),
        Ok(_) => fs::remove_file(p).map_err(|e| host_err(e, "replacing", p)),
        Err(_) => Ok(()),
    }
}

fn set_host_attrs(p: &Path, st: &Stat, owners: bool) -> Result<()> {
    if owners {
        std::os::unix::fs::lchown(p, Some(st.uid), Some(st.gid))
            .map_err(|e| host_err(e, "chown", p))?;
    }
    if st.file_type != FileType::Symlink {
        fs::set_permissions(p, fs::Permissions::from_mode(st.mode & 0o7777))
            .map_err(|e| host_err(e, "chmod", p))?;
    }
    set_host_times(p, st.atime, st.mtime).map_err(|e| host_err(e, "setting times of", p))
}

// ---------------------------------------------------------------------------------
// copy-in

/// One host path to copy in.
struct HostEntry {
    /// Relative to the top (`""` is the top itself), `/`-separated, UTF-8.
    rel: String,
    path: PathBuf,
    md: fs::Metadata,
    link: Option<String>,
}

/// Walks a host tree (not following symlinks), depth first with sorted names. Every
/// name and symlink target must be UTF-8.
fn host_tree(top: &Path) -> Result<Vec<HostEntry>> {
    let md = fs::symlink_metadata(top).map_err(|e| host_err(e, "reading", top))?;
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), top.to_path_buf(), md)];
    while let Some((rel, path, md)) = stack.pop() {
        let link = if md.file_type().is_symlink() {
            let t = fs::read_link(&path).map_err(|e| host_err(e, "readlink", &path))?;
            Some(
                t.to_str()
                    .ok_or_else(|| {
                        invalid(format!(
                            "{}: symlink target {:?} is not UTF-8 (skiff's protocol carries UTF-8 names only)",
                            path.display(),
                            t
                        ))
                    })?
                    .to_string(),
            )
        } else {
            None
        };
        let is_dir = md.is_dir();
        out.push(HostEntry {
            rel: rel.clone(),
            path: path.clone(),
            md,
            link,
        });
        if is_dir {
            let mut kids = Vec::new();
            for d in fs::read_dir(&path).map_err(|e| host_err(e, "reading directory", &path))? {
                let d = d.map_err(|e| host_err(e, "reading directory", &path))?;
                let name = d.file_name();
                let Some(n) = name.to_str() else {
                    return Err(invalid(format!(
                        "{}: the name is not UTF-8 (skiff's protocol carries UTF-8 names only; nothing was copied)",
                        d.path().display()
                    )));
                };
                let p = d.path();
                let md = fs::symlink_metadata(&p).map_err(|e| host_err(e, "reading", &p))?;
                let r = if rel.is_empty() {
                    n.to_string()
                } else {
                    format!("{rel}/{n}")
                };
                kids.push((r, p, md));
            }
            kids.sort_by(|a, b| a.0.cmp(&b.0));
            // Reversed onto the stack: popped in name order.
            stack.extend(kids.into_iter().rev());
        }
    }
    Ok(out)
}

/// What a guest path held before it was written (a parent not made by this call).
enum Existing {
    Nothing,
    Dir,
    Other,
}

/// Guest-side bookkeeping shared by copy-in and tar-in: which directories this call
/// made (their contents need no check) or checked.
struct GuestDirs {
    /// rel -> made by this call (true) or existing and checked (false).
    dirs: HashMap<String, bool>,
    /// The directory attributes set at the end: (path, mode, uid, gid, atime, mtime).
    attrs: Vec<(String, u32, u32, u32, i64, i64)>,
}

impl GuestDirs {
    /// Is the guest path `path` (whose parent rel is `parent`) free of surprises? A
    /// path inside a directory this call made holds nothing; otherwise `lstat` says
    /// what is there: a symlink or file is removed (like tar's unlink before extract).
    /// Calls go out only with nothing in flight.
    fn prepare(
        &self,
        s: &mut Session,
        pipe: &mut Pipe,
        parent: &str,
        path: &str,
    ) -> Result<Existing> {
        if self.dirs.get(parent).copied().unwrap_or(false) {
            return Ok(Existing::Nothing);
        }
        pipe.drain(s)?;
        match s.lstat(path) {
            Ok(st) if st.file_type == FileType::Directory => Ok(Existing::Dir),
            Ok(_) => {
                s.rm(path).map_err(|e| at_path(e, "replacing", path))?;
                Ok(Existing::Other)
            }
            Err(e) if crate::fs::is_not_found(&e) => Ok(Existing::Nothing),
            Err(e) => Err(at_path(e, "lstat", path)),
        }
    }
}

impl Session {
    /// Copies the host file, symlink or directory tree `host` into the guest directory
    /// `guest_dir` (like `virt-copy-in`): `guest_dir/NAME`. Modes, numeric owners and
    /// times are kept where the guest filesystem can hold them (a note says when not).
    /// Host symlinks are copied as symlinks, never followed. Every name must be UTF-8:
    /// the whole host tree is checked before anything is written. Hard links are
    /// written as copies and device nodes, FIFOs and sockets skipped, each with a note
    /// (the appliance makes neither). A full guest filesystem is a `NoSpace` error
    /// naming the file; a file half written then is removed.
    pub fn copy_in(
        &mut self,
        host: &Path,
        guest_dir: &str,
        progress: &mut dyn Progress,
    ) -> Result<TransferReport> {
        // Changes are pipelined with `submit`: the host's time goes first.
        self.send_clock()?;
        let st = self
            .stat(guest_dir)
            .map_err(|e| at_path(e, "stat", guest_dir))?;
        if st.file_type != FileType::Directory {
            return Err(remote(
                ErrorKind::NotADirectory,
                format!("{guest_dir}: not a directory"),
            ));
        }
        let name = host
            .file_name()
            .ok_or_else(|| invalid(format!("{}: has no file name", host.display())))?;
        let name = name.to_str().ok_or_else(|| {
            invalid(format!(
                "{}: the name is not UTF-8 (skiff's protocol carries UTF-8 names only)",
                host.display()
            ))
        })?;
        let entries = host_tree(host)?;
        let total = entries
            .iter()
            .filter(|e| e.md.is_file())
            .map(|e| e.md.len())
            .sum();
        progress.start(Some(total));
        let top = guest_join(guest_dir, name);
        let mut pipe = Pipe::default();
        let mut gd = GuestDirs {
            dirs: HashMap::new(),
            attrs: Vec::new(),
        };
        let r = begin_batch(self, &mut pipe, guest_dir)
            .and_then(|()| copy_in_entries(self, &top, &entries, &mut pipe, &mut gd, progress));
        let r = r.and_then(|mut rep| {
            pipe.drain(self)?;
            finish_dirs(self, &mut pipe, &gd)?;
            rep.notes.append(&mut pipe.notes);
            Ok(rep)
        });
        if r.is_err() {
            let _ = pipe.drain(self);
        }
        let ended = end_batch(self, guest_dir);
        progress.finish();
        let rep = r?;
        ended.map(|()| rep)
    }
}

/// Asks the filesystem holding `path` to keep one write state for the calls that
/// follow (ext4: one mount and journal commit for a whole tree, not one per call).
fn begin_batch(s: &mut Session, pipe: &mut Pipe, path: &str) -> Result<()> {
    pipe.submit(
        s,
        Request::BeginBatch { path: path.into() },
        Pending::Unit {
            path: path.into(),
            what: "starting a batch on",
        },
    )
}

/// [`end_batch`], pipelined.
fn end_batch_piped(s: &mut Session, pipe: &mut Pipe, path: &str) -> Result<()> {
    pipe.submit(
        s,
        Request::EndBatch { path: path.into() },
        Pending::Unit {
            path: path.into(),
            what: "committing a batch on",
        },
    )
}

/// Commits the batch begun by [`begin_batch`] (also done by the shutdown's sync).
fn end_batch(s: &mut Session, path: &str) -> Result<()> {
    match s.call(Request::EndBatch { path: path.into() }) {
        Ok(Reply::Unit) => Ok(()),
        Ok(other) => Err(unexpected(&other)),
        Err(e) => Err(at_path(e, "committing the changes below", path)),
    }
}

/// Modes, owners and times of the directories made, deepest first.
fn finish_dirs(s: &mut Session, pipe: &mut Pipe, gd: &GuestDirs) -> Result<()> {
    for (path, mode, uid, gid, atime, mtime) in gd.attrs.iter().rev() {
        // Owner first: a chown clears set-id bits, which the chmod then sets.
        pipe.attrs(s, path, *uid, *gid, *mtime, *atime, false)?;
        pipe.submit(
            s,
            Request::Chmod {
                path: path.clone(),
                mode: *mode,
            },
            Pending::Unit {
                path: path.clone(),
                what: "chmod",
            },
        )?;
        if pipe.full() {
            pipe.complete_one(s)?;
        }
    }
    pipe.drain(s)
}

fn copy_in_entries(
    s: &mut Session,
    top: &str,
    entries: &[HostEntry],
    pipe: &mut Pipe,
    gd: &mut GuestDirs,
    progress: &mut dyn Progress,
) -> Result<TransferReport> {
    let mut rep = TransferReport::default();
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    for e in entries {
        let gpath = guest_join(top, &e.rel);
        let parent = rel_parent(&e.rel);
        if !e.rel.is_empty() && !gd.dirs.contains_key(parent) {
            return Err(invalid(format!(
                "{}: its directory was not copied",
                e.path.display()
            )));
        }
        let md = &e.md;
        let ft = md.file_type();
        // The top's parent is the target directory itself: always checked.
        let existing = if e.rel.is_empty() {
            pipe.drain(s)?;
            match s.lstat(&gpath) {
                Ok(st) if st.file_type == FileType::Directory => Existing::Dir,
                Ok(_) => {
                    s.rm(&gpath).map_err(|e| at_path(e, "replacing", &gpath))?;
                    Existing::Other
                }
                Err(err) if crate::fs::is_not_found(&err) => Existing::Nothing,
                Err(err) => return Err(at_path(err, "lstat", &gpath)),
            }
        } else {
            gd.prepare(s, pipe, parent, &gpath)?
        };
        let mode = md.mode() & 0o7777;
        if ft.is_dir() {
            let fresh = !matches!(existing, Existing::Dir);
            if fresh {
                pipe.submit(
                    s,
                    Request::Mkdir {
                        path: gpath.clone(),
                        parents: false,
                        mode: 0o700,
                    },
                    Pending::Unit {
                        path: gpath.clone(),
                        what: "mkdir",
                    },
                )?;
            }
            gd.dirs.insert(e.rel.clone(), fresh);
            gd.attrs
                .push((gpath, mode, md.uid(), md.gid(), md.atime(), md.mtime()));
            rep.dirs += 1;
        } else if ft.is_file() {
            if matches!(existing, Existing::Dir) {
                return Err(remote(
                    ErrorKind::IsADirectory,
                    format!("{gpath}: a directory is in the way of {}", e.path.display()),
                ));
            }
            if md.nlink() > 1 {
                let key = (md.dev(), md.ino());
                if let Some(first) = links.get(&key) {
                    // Copy reads the committed filesystem: out of the batch for it.
                    end_batch_piped(s, pipe, &gpath)?;
                    pipe.submit(
                        s,
                        Request::Copy {
                            from: first.clone(),
                            to: gpath.clone(),
                            recursive: false,
                        },
                        Pending::Unit {
                            path: gpath.clone(),
                            what: "copying (hard link)",
                        },
                    )?;
                    begin_batch(s, pipe, &gpath)?;
                    rep.notes.push(format!(
                        "{gpath}: a hard link of {first} on the host, written as a copy (the appliance cannot make hard links)"
                    ));
                    rep.hardlinks += 1;
                    pipe.attrs(s, &gpath, md.uid(), md.gid(), md.mtime(), md.atime(), true)?;
                    if pipe.full() {
                        pipe.complete_one(s)?;
                    }
                    continue;
                }
                links.insert(key, gpath.clone());
            }
            let mut f = fs::File::open(&e.path).map_err(|err| host_err(err, "opening", &e.path))?;
            let n = if md.len() <= u64::from(MAX_CHUNK) {
                let mut data = Vec::with_capacity(md.len() as usize);
                (&mut f)
                    .take(u64::from(MAX_CHUNK))
                    .read_to_end(&mut data)
                    .map_err(|err| host_err(err, "reading", &e.path))?;
                pipe.submit_file(s, &gpath, data, mode)?
            } else {
                pipe.drain(s)?;
                match s.write_stream(&mut f, &gpath, 0, true, mode) {
                    // A stream of several pieces ends the batch: begin it again.
                    Ok(n) => {
                        begin_batch(s, pipe, &gpath)?;
                        n
                    }
                    Err(err) => {
                        return Err(cleanup_partial(
                            s,
                            Some(gpath.clone()),
                            at_path(err, "writing", &gpath),
                        ));
                    }
                }
            };
            // Owner first: a chown clears set-id bits, which the chmod then sets.
            pipe.attrs(s, &gpath, md.uid(), md.gid(), md.mtime(), md.atime(), true)?;
            if mode & 0o7000 != 0 {
                pipe.submit(
                    s,
                    Request::Chmod {
                        path: gpath.clone(),
                        mode,
                    },
                    Pending::Unit {
                        path: gpath.clone(),
                        what: "chmod",
                    },
                )?;
            }
            rep.files += 1;
            rep.bytes += n;
            progress.advance(n);
        } else if ft.is_symlink() {
            if matches!(existing, Existing::Dir) {
                return Err(remote(
                    ErrorKind::IsADirectory,
                    format!("{gpath}: a directory is in the way of {}", e.path.display()),
                ));
            }
            pipe.submit(
                s,
                Request::Symlink {
                    target: e.link.clone().unwrap_or_default(),
                    linkpath: gpath.clone(),
                },
                Pending::Unit {
                    path: gpath.clone(),
                    what: "symlink",
                },
            )?;
            pipe.attrs(s, &gpath, md.uid(), md.gid(), md.mtime(), md.atime(), true)?;
            rep.symlinks += 1;
        } else {
            rep.notes.push(format!(
                "{}: special file skipped (the appliance cannot make device nodes, FIFOs or sockets)",
                e.path.display()
            ));
            continue;
        }
        while pipe.full() {
            pipe.complete_one(s)?;
        }
        if let Some(err) = pipe.error.take() {
            let _ = pipe.drain(s);
            return Err(cleanup_partial(s, pipe.failed_write.take(), err));
        }
    }
    if let Err(e) = pipe.drain(s) {
        return Err(cleanup_partial(s, pipe.failed_write.take(), e));
    }
    Ok(rep)
}

/// After a failed write (a full filesystem), removes the file it left half written
/// and says so in the error.
fn cleanup_partial(s: &mut Session, failed: Option<String>, e: Error) -> Error {
    if let (Error::Remote(w), Some(path)) = (&e, failed) {
        let removed = s.rm(&path).is_ok();
        return remote(
            w.kind,
            format!(
                "{}{}",
                w.message,
                if removed {
                    format!(
                        " ({path}, half written, was removed; what was copied before it is complete)"
                    )
                } else {
                    String::new()
                }
            ),
        );
    }
    e
}

// ---------------------------------------------------------------------------------
// tar-out

/// A compressing writer, finished explicitly.
enum Encoder<W: Write> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    fn new(w: W, c: Compression) -> Result<Self> {
        Ok(match c {
            Compression::None => Encoder::Plain(w),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::default(),
            )),
            Compression::Zstd => Encoder::Zstd(zstd::Encoder::new(w, 3)?),
        })
    }

    fn finish(self) -> std::io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(g) => g.finish(),
            Encoder::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(b),
            Encoder::Gzip(w) => w.write(b),
            Encoder::Zstd(w) => w.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

/// Reads one large guest file of known size, two chunks in flight; pads with zeros
/// (and notes it) when the file shrank while read, so the tar stream stays valid.
struct GuestReader<'a> {
    s: &'a mut Session,
    path: String,
    size: u64,
    /// Offset of the next read to submit.
    asked: u64,
    /// Bytes handed out.
    done: u64,
    inflight: VecDeque<(u64, u32)>,
    buf: Vec<u8>,
    pos: usize,
    shrank: bool,
    error: Option<Error>,
}

impl GuestReader<'_> {
    fn fill(&mut self) -> std::io::Result<()> {
        while !self.shrank && self.inflight.len() < 2 && self.asked < self.size {
            let want = (self.size - self.asked).min(u64::from(MAX_CHUNK)) as u32;
            let id = self
                .s
                .submit(Request::Pread {
                    path: self.path.clone(),
                    offset: self.asked,
                    len: want,
                })
                .map_err(std::io::Error::other)?;
            self.inflight.push_back((id, want));
            self.asked += u64::from(want);
        }
        let Some((id, want)) = self.inflight.pop_front() else {
            // Shrank: zeros up to the size listed.
            let left = self.size - self.done;
            self.buf.clear();
            self.buf.resize(left.min(1 << 20) as usize, 0);
            self.pos = 0;
            return Ok(());
        };
        match self.s.complete(id) {
            Ok(Reply::Data(Bytes(d))) if d.len() <= want as usize => {
                if d.len() < want as usize {
                    self.shrank = true;
                }
                self.buf = d;
                self.pos = 0;
                if self.shrank && self.buf.is_empty() {
                    // Nothing more will come: drain what is in flight, then pad.
                    self.drain();
                    let left = self.size - self.done;
                    self.buf.resize(left.min(1 << 20) as usize, 0);
                }
                Ok(())
            }
            Ok(other) => Err(std::io::Error::other(unexpected(&other))),
            Err(e) => {
                self.drain();
                let e = at_path(e, "reading", &self.path);
                let msg = e.to_string();
                self.error = Some(e);
                Err(std::io::Error::other(msg))
            }
        }
    }

    fn drain(&mut self) {
        while let Some((id, _)) = self.inflight.pop_front() {
            let _ = self.s.complete(id);
        }
    }
}

impl Read for GuestReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.done >= self.size {
            return Ok(0);
        }
        if self.pos >= self.buf.len() {
            self.fill()?;
        }
        let left = (self.size - self.done) as usize;
        let n = out.len().min(self.buf.len() - self.pos).min(left);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.done += n as u64;
        Ok(n)
    }
}

fn tar_header(st: &Stat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.mode & 0o7777);
    h.set_uid(u64::from(st.uid));
    h.set_gid(u64::from(st.gid));
    h.set_mtime(st.mtime.max(0) as u64);
    h.set_size(0);
    h
}

impl Session {
    /// Writes the guest directory `guest_dir` as a tar archive to `w` (like
    /// `virt-tar-out`): entries `./`, `./etc/`, `./etc/passwd`, ... with numeric
    /// owners, modes and modification times; symlinks and FIFOs as such, hard links as
    /// link records, long names in GNU records. Device nodes and sockets are left out
    /// with a note (the appliance does not report device numbers; tar cannot hold
    /// sockets). `compression` is applied on the host.
    pub fn tar_out(
        &mut self,
        guest_dir: &str,
        w: &mut dyn Write,
        compression: Compression,
        progress: &mut dyn Progress,
    ) -> Result<TransferReport> {
        let st = self
            .stat(guest_dir)
            .map_err(|e| at_path(e, "stat", guest_dir))?;
        if st.file_type != FileType::Directory {
            return Err(remote(
                ErrorKind::NotADirectory,
                format!("{guest_dir}: not a directory"),
            ));
        }
        let mut entries = guest_tree(self, guest_dir)?;
        // The top as a directory (guest_dir may be a symlink to one, followed here).
        if let Some(first) = entries.first_mut() {
            first.stat = st;
            first.link = None;
        }
        if entries.len() == 1 {
            // A symlink to a directory given: walk what it points at.
            entries.extend(
                self.find_stat(guest_dir)
                    .map_err(|e| at_path(e, "find", guest_dir))?,
            );
            for e in &entries[1..] {
                if e.path.contains('\u{FFFD}') {
                    return Err(not_utf8_guest(&guest_join(guest_dir, &e.path)));
                }
                check_rel(&e.path).map_err(|why| {
                    remote(
                        ErrorKind::Corrupt,
                        format!("{}: refused name from the guest: {why}", e.path),
                    )
                })?;
            }
        }
        let total = entries
            .iter()
            .filter(|e| e.stat.file_type == FileType::Regular)
            .map(|e| e.stat.size)
            .sum();
        progress.start(Some(total));
        let mut pf = Prefetch::new(&entries);
        let r = tar_out_entries(self, guest_dir, w, compression, &entries, &mut pf, progress);
        if r.is_err() {
            pf.abandon(self);
        }
        progress.finish();
        r
    }
}

fn tar_out_entries(
    s: &mut Session,
    guest_dir: &str,
    w: &mut dyn Write,
    compression: Compression,
    entries: &[TreeEntry],
    pf: &mut Prefetch,
    progress: &mut dyn Progress,
) -> Result<TransferReport> {
    let mut rep = TransferReport::default();
    let enc = Encoder::new(std::io::BufWriter::with_capacity(1 << 20, w), compression)?;
    let mut b = tar::Builder::new(enc);
    for (i, e) in entries.iter().enumerate() {
        let gpath = guest_join(guest_dir, &e.path);
        // Names as the tar crate stores them: `.` for the top, `etc/passwd` below.
        let name = if e.path.is_empty() {
            ".".to_string()
        } else {
            e.path.clone()
        };
        let st = &e.stat;
        match st.file_type {
            FileType::Directory => {
                let mut h = tar_header(st, tar::EntryType::Directory);
                b.append_data(&mut h, &name, std::io::empty())?;
                rep.dirs += 1;
            }
            FileType::Regular => {
                if let Some(Some(j)) = pf.link_of.get(i) {
                    let first = entries.get(*j).map(|f| f.path.as_str()).unwrap_or("");
                    let mut h = tar_header(st, tar::EntryType::Link);
                    b.append_link(&mut h, &name, first)?;
                    rep.hardlinks += 1;
                    continue;
                }
                let mut h = tar_header(st, tar::EntryType::Regular);
                h.set_size(st.size);
                if pf.wanted(entries, i) {
                    let mut d = pf.take(s, guest_dir, entries, i)?;
                    if (d.len() as u64) < st.size {
                        rep.notes.push(format!(
                            "{gpath}: shrank while read ({} bytes listed, {} read): padded with zeros",
                            st.size,
                            d.len()
                        ));
                        d.resize(st.size as usize, 0);
                    }
                    b.append_data(&mut h, &name, &d[..])?;
                } else {
                    let mut r = GuestReader {
                        s: &mut *s,
                        path: gpath.clone(),
                        size: st.size,
                        asked: 0,
                        done: 0,
                        inflight: VecDeque::new(),
                        buf: Vec::new(),
                        pos: 0,
                        shrank: false,
                        error: None,
                    };
                    let res = b.append_data(&mut h, &name, &mut r);
                    r.drain();
                    if let Some(e) = r.error.take() {
                        return Err(e);
                    }
                    res?;
                    if r.shrank {
                        rep.notes.push(format!(
                            "{gpath}: shrank while read: padded with zeros to the {} bytes listed",
                            st.size
                        ));
                    }
                }
                rep.files += 1;
                rep.bytes += st.size;
                progress.advance(st.size);
            }
            FileType::Symlink => {
                let mut h = tar_header(st, tar::EntryType::Symlink);
                let target = e.link.as_deref().unwrap_or("");
                if target.len() <= 100 {
                    // Byte for byte (append_link would normalise `/` to `//`).
                    h.set_link_name_literal(target)?;
                    b.append_data(&mut h, &name, std::io::empty())?;
                } else {
                    b.append_link(&mut h, &name, target)?;
                }
                rep.symlinks += 1;
            }
            FileType::Fifo => {
                let mut h = tar_header(st, tar::EntryType::Fifo);
                b.append_data(&mut h, &name, std::io::empty())?;
            }
            other => {
                rep.notes.push(format!(
                    "{gpath}: {} left out ({})",
                    type_name(other),
                    if other == FileType::Socket {
                        "tar cannot hold sockets"
                    } else {
                        "the appliance does not report device numbers"
                    }
                ));
            }
        }
    }
    let enc = b.into_inner()?;
    let mut bw = enc.finish()?;
    bw.flush()?;
    Ok(rep)
}

// ---------------------------------------------------------------------------------
// tar-in

/// A decompressing reader chosen by the stream's first bytes (gzip and zstd magic),
/// or by `c` when it is not `None`.
fn decoder<'a>(r: &'a mut dyn Read, c: Compression) -> Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(1 << 20, r);
    let head = br.fill_buf()?;
    let c = match c {
        Compression::None if head.starts_with(&[0x1f, 0x8b]) => Compression::Gzip,
        Compression::None if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) => Compression::Zstd,
        c => c,
    };
    Ok(match c {
        Compression::None => Box::new(br),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(br)),
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(br)?),
    })
}

/// An archive path made relative: `./` prefixes and a trailing `/` dropped. Refused
/// (with the reason) when absolute, with `..`, or not UTF-8, like GNU tar's default.
fn archive_rel(raw: &[u8]) -> std::result::Result<String, String> {
    let p = std::str::from_utf8(raw).map_err(|_| "name is not UTF-8".to_string())?;
    if p.starts_with('/') {
        return Err("absolute path".into());
    }
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        return Err("`..` in the path".into());
    }
    if p.contains('\0') {
        return Err("NUL in name".into());
    }
    Ok(parts.join("/"))
}

impl Session {
    /// Extracts the tar archive read from `r` into the guest directory `guest_dir`
    /// (like `virt-tar-in`); gzip and zstd are recognised by their magic (or forced by
    /// `compression`). Modes, numeric owners and modification times are kept where the
    /// filesystem can hold them. Entries with absolute paths, `..`, or names that are
    /// not UTF-8 are refused one by one ([`TransferReport::refused`]) and the rest
    /// extracted; nothing is written outside `guest_dir` (a symlink in the way of a
    /// later entry's parent refuses that entry). Hard links are written as copies of
    /// their target extracted earlier; device nodes and FIFOs are skipped, with notes.
    /// A full filesystem is a `NoSpace` error naming the entry (its partial file
    /// removed).
    pub fn tar_in(
        &mut self,
        r: &mut dyn Read,
        guest_dir: &str,
        compression: Compression,
        progress: &mut dyn Progress,
    ) -> Result<TransferReport> {
        // Changes are pipelined with `submit`: the host's time goes first.
        self.send_clock()?;
        let st = self
            .stat(guest_dir)
            .map_err(|e| at_path(e, "stat", guest_dir))?;
        if st.file_type != FileType::Directory {
            return Err(remote(
                ErrorKind::NotADirectory,
                format!("{guest_dir}: not a directory"),
            ));
        }
        progress.start(None);
        let mut pipe = Pipe::default();
        let mut gd = GuestDirs {
            dirs: HashMap::new(),
            attrs: Vec::new(),
        };
        // The target itself: existing, checked.
        gd.dirs.insert(String::new(), false);
        let res = (|| {
            begin_batch(self, &mut pipe, guest_dir)?;
            let dec = decoder(r, compression)?;
            let mut ar = tar::Archive::new(dec);
            let rep = tar_in_entries(self, guest_dir, &mut ar, &mut pipe, &mut gd, progress)?;
            Ok::<_, Error>(rep)
        })();
        let res = res.and_then(|mut rep| {
            pipe.drain(self)?;
            finish_dirs(self, &mut pipe, &gd)?;
            rep.notes.append(&mut pipe.notes);
            Ok(rep)
        });
        if res.is_err() {
            let _ = pipe.drain(self);
        }
        let ended = end_batch(self, guest_dir);
        progress.finish();
        res.and_then(|rep| ended.map(|()| rep))
    }
}

/// Makes sure every directory on the way to `rel`'s parent exists and is a real
/// directory (made by this call, or checked with `lstat`); a symlink or file there
/// is an error string (the entry is refused).
fn ensure_parents(
    s: &mut Session,
    pipe: &mut Pipe,
    gd: &mut GuestDirs,
    guest_dir: &str,
    rel: &str,
) -> Result<std::result::Result<(), String>> {
    let parent = rel_parent(rel);
    if gd.dirs.contains_key(parent) {
        return Ok(Ok(()));
    }
    let mut cur = String::new();
    for c in parent.split('/') {
        let next = if cur.is_empty() {
            c.to_string()
        } else {
            format!("{cur}/{c}")
        };
        if !gd.dirs.contains_key(&next) {
            let fresh_parent = gd.dirs.get(&cur).copied().unwrap_or(false);
            let path = guest_join(guest_dir, &next);
            let fresh = if fresh_parent {
                true
            } else {
                pipe.drain(s)?;
                match s.lstat(&path) {
                    Ok(st) if st.file_type == FileType::Directory => false,
                    Ok(st) => {
                        return Ok(Err(format!(
                            "{path} is a {} in the guest, not a directory",
                            type_name(st.file_type)
                        )));
                    }
                    Err(e) if crate::fs::is_not_found(&e) => true,
                    Err(e) => return Err(at_path(e, "lstat", &path)),
                }
            };
            if fresh {
                pipe.submit(
                    s,
                    Request::Mkdir {
                        path: path.clone(),
                        parents: false,
                        mode: 0o755,
                    },
                    Pending::Unit {
                        path,
                        what: "mkdir",
                    },
                )?;
            }
            gd.dirs.insert(next.clone(), fresh);
        }
        cur = next;
    }
    Ok(Ok(()))
}

fn tar_in_entries<R: Read>(
    s: &mut Session,
    guest_dir: &str,
    ar: &mut tar::Archive<R>,
    pipe: &mut Pipe,
    gd: &mut GuestDirs,
    progress: &mut dyn Progress,
) -> Result<TransferReport> {
    let mut rep = TransferReport::default();
    // Regular files extracted by this call (hard-link targets must be among them).
    let mut files: HashSet<String> = HashSet::new();
    for entry in ar.entries()? {
        let mut entry = entry?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let rel = match archive_rel(&raw) {
            Ok(r) => r,
            Err(why) => {
                rep.refused.push(format!("{shown}: refused: {why}"));
                continue;
            }
        };
        let h = entry.header();
        let kind = h.entry_type();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let uid = h.uid().unwrap_or(0).min(u64::from(u32::MAX)) as u32;
        let gid = h.gid().unwrap_or(0).min(u64::from(u32::MAX)) as u32;
        let mtime = h.mtime().unwrap_or(0).min(i64::MAX as u64) as i64;
        if rel.is_empty() {
            // `./`: the target directory itself; its attributes are left alone.
            continue;
        }
        let gpath = guest_join(guest_dir, &rel);
        let link_rel = match kind {
            tar::EntryType::Link => match entry.link_name_bytes() {
                Some(l) => match archive_rel(&l) {
                    Ok(l) if files.contains(&l) => Some(l),
                    Ok(l) => {
                        rep.refused.push(format!(
                            "{shown}: refused: hard link to {l}, which this archive did not extract as a file"
                        ));
                        continue;
                    }
                    Err(why) => {
                        rep.refused
                            .push(format!("{shown}: refused: hard link target: {why}"));
                        continue;
                    }
                },
                None => {
                    rep.refused
                        .push(format!("{shown}: refused: hard link without a target"));
                    continue;
                }
            },
            _ => None,
        };
        match kind {
            tar::EntryType::Directory
            | tar::EntryType::Regular
            | tar::EntryType::Continuous
            | tar::EntryType::Symlink
            | tar::EntryType::Link => {}
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            other => {
                rep.notes.push(format!(
                    "{shown}: {} skipped (the appliance cannot make device nodes or FIFOs)",
                    match other {
                        tar::EntryType::Char => "character device",
                        tar::EntryType::Block => "block device",
                        tar::EntryType::Fifo => "FIFO",
                        _ => "entry of unknown type",
                    }
                ));
                continue;
            }
        }
        if let Err(why) = ensure_parents(s, pipe, gd, guest_dir, &rel)? {
            rep.refused.push(format!("{shown}: refused: {why}"));
            continue;
        }
        let existing = gd.prepare(s, pipe, rel_parent(&rel), &gpath)?;
        if kind == tar::EntryType::Directory {
            let fresh = !matches!(existing, Existing::Dir);
            if !gd.dirs.contains_key(&rel) {
                if fresh {
                    pipe.submit(
                        s,
                        Request::Mkdir {
                            path: gpath.clone(),
                            parents: false,
                            mode: 0o700,
                        },
                        Pending::Unit {
                            path: gpath.clone(),
                            what: "mkdir",
                        },
                    )?;
                }
                gd.dirs.insert(rel.clone(), fresh);
            }
            gd.attrs.push((gpath, mode, uid, gid, mtime, mtime));
            rep.dirs += 1;
        } else {
            if matches!(existing, Existing::Dir) {
                rep.refused.push(format!(
                    "{shown}: refused: a directory is in the way in the guest"
                ));
                continue;
            }
            match kind {
                tar::EntryType::Symlink => {
                    let target = match entry.link_name_bytes() {
                        Some(t) => match String::from_utf8(t.into_owned()) {
                            Ok(t) => t,
                            Err(_) => {
                                rep.refused
                                    .push(format!("{shown}: refused: symlink target is not UTF-8"));
                                continue;
                            }
                        },
                        None => String::new(),
                    };
                    pipe.submit(
                        s,
                        Request::Symlink {
                            target,
                            linkpath: gpath.clone(),
                        },
                        Pending::Unit {
                            path: gpath.clone(),
                            what: "symlink",
                        },
                    )?;
                    rep.symlinks += 1;
                }
                tar::EntryType::Link => {
                    let from = guest_join(guest_dir, link_rel.as_deref().unwrap_or(""));
                    // Copy reads the committed filesystem: out of the batch for it.
                    end_batch_piped(s, pipe, &gpath)?;
                    pipe.submit(
                        s,
                        Request::Copy {
                            from: from.clone(),
                            to: gpath.clone(),
                            recursive: false,
                        },
                        Pending::Unit {
                            path: gpath.clone(),
                            what: "copying (hard link)",
                        },
                    )?;
                    begin_batch(s, pipe, &gpath)?;
                    rep.notes.push(format!(
                        "{gpath}: a hard link of {from} in the archive, written as a copy (the appliance cannot make hard links)"
                    ));
                    rep.hardlinks += 1;
                    files.insert(rel.clone());
                }
                _ => {
                    let size = entry.size();
                    let n = if size <= u64::from(MAX_CHUNK) {
                        let mut data = Vec::with_capacity(size as usize);
                        (&mut entry).take(size).read_to_end(&mut data)?;
                        pipe.submit_file(s, &gpath, data, mode)?
                    } else {
                        if let Err(e) = pipe.drain(s) {
                            return Err(cleanup_partial(s, pipe.failed_write.take(), e));
                        }
                        match s.write_stream(&mut entry, &gpath, 0, true, mode) {
                            // A stream of several pieces ends the batch: again.
                            Ok(n) => {
                                begin_batch(s, pipe, &gpath)?;
                                n
                            }
                            Err(err) => {
                                return Err(cleanup_partial(
                                    s,
                                    Some(gpath.clone()),
                                    at_path(err, "writing", &gpath),
                                ));
                            }
                        }
                    };
                    files.insert(rel.clone());
                    rep.files += 1;
                    rep.bytes += n;
                    progress.advance(n);
                }
            }
            pipe.attrs(s, &gpath, uid, gid, mtime, mtime, true)?;
            // After the chown, which clears set-id bits.
            if mode & 0o7000 != 0 && kind != tar::EntryType::Symlink {
                pipe.submit(
                    s,
                    Request::Chmod {
                        path: gpath.clone(),
                        mode,
                    },
                    Pending::Unit {
                        path: gpath.clone(),
                        what: "chmod",
                    },
                )?;
            }
        }
        while pipe.full() {
            pipe.complete_one(s)?;
        }
        if let Some(err) = pipe.error.take() {
            let _ = pipe.drain(s);
            return Err(cleanup_partial(s, pipe.failed_write.take(), err));
        }
    }
    if let Err(e) = pipe.drain(s) {
        return Err(cleanup_partial(s, pipe.failed_write.take(), e));
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_checked() {
        assert!(check_rel("etc/passwd").is_ok());
        assert!(check_rel("../x").is_err());
        assert!(check_rel("a/../b").is_err());
        assert!(check_rel("/abs").is_err());
        assert!(check_rel("a//b").is_err());
        assert!(check_rel("a/./b").is_err());
        assert!(check_rel("a\0b").is_err());
    }

    #[test]
    fn archive_paths() {
        assert_eq!(archive_rel(b"./etc/passwd").unwrap(), "etc/passwd");
        assert_eq!(archive_rel(b"./").unwrap(), "");
        assert_eq!(archive_rel(b"dir/").unwrap(), "dir");
        assert!(archive_rel(b"../x").is_err());
        assert!(archive_rel(b"a/../../x").is_err());
        assert!(archive_rel(b"/etc/passwd").is_err());
        assert!(archive_rel(b"\xff\xfe").is_err());
    }

    #[test]
    fn joins_and_parents() {
        assert_eq!(guest_join("/", "a"), "/a");
        assert_eq!(guest_join("/x", "a/b"), "/x/a/b");
        assert_eq!(guest_join("/x", ""), "/x");
        assert_eq!(rel_parent("a/b/c"), "a/b");
        assert_eq!(rel_parent("a"), "");
        assert_eq!(guest_basename("/etc/"), Some("etc"));
        assert_eq!(guest_basename("/"), None);
    }

    #[test]
    fn compression_names() {
        assert_eq!("gzip".parse::<Compression>().unwrap(), Compression::Gzip);
        assert_eq!("zstd".parse::<Compression>().unwrap(), Compression::Zstd);
        assert!("lzma".parse::<Compression>().is_err());
    }

    #[test]
    fn decoder_detects_magic() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"hello").unwrap();
        let gz = gz.finish().unwrap();
        let mut src = &gz[..];
        let mut out = Vec::new();
        decoder(&mut src, Compression::None)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"hello");
        let z = zstd::encode_all(&b"world"[..], 1).unwrap();
        let mut src = &z[..];
        let mut out = Vec::new();
        decoder(&mut src, Compression::None)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"world");
    }
}
