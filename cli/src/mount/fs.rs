//! The FUSE filesystem of `skiff mount`: kernel requests mapped to one appliance
//! session's calls.
//!
//! - **Nodes.** The kernel's node id is the appliance's inode number for files of the
//!   filesystem mounted at the guest's `/` (stable per file, hard links share it), and a
//!   number of our own, stable per path while mounted, for files of other guest mounts
//!   (their inode numbers would collide with the root's) and filesystems that report
//!   none. Either way a node knows its guest path; every call names paths.
//! - **Caches.** Each directory listing (one `ReadDir` call, attributes included) and
//!   each `lstat` is kept: lookups of names a cached listing lacks are answered "no such
//!   file" without a call. The kernel keeps entries and attributes for the TTL (long when
//!   read-only, where nothing can change; short with `--rw`), directory pages and file
//!   pages across opens when read-only. With `--rw`, every change drops what it touches
//!   (skiff is the only writer).
//! - **Reads** are served from a per-handle buffer filled in big pipelined calls
//!   (`Session::pread`: up to [`MAX_WINDOW`] at once, doubling while reading
//!   sequentially), so the kernel's 128 KiB reads cost no round trip each.
//! - **Writes** to one handle at consecutive offsets are coalesced (up to
//!   [`MAX_PENDING`]) and sent when anything else happens, when the file is flushed or
//!   closed, or when the buffer is full; an error of a delayed write is returned by the
//!   file's next `flush`/`fsync` (so `close` reports it). Before a change, the host's
//!   clock is sent (`SetClock`) so that the guest's times are right.

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use skiff::Session;
use skiff::session::meta::unix_now;
use skiff::wire::{self, DirEntry, ErrorKind, Stat};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The most bytes one read call to the appliance asks for.
pub const MAX_WINDOW: u64 = 8 << 20;
/// The first read window, and the one for reads that are not sequential.
const MIN_WINDOW: u64 = 256 << 10;
/// The most written bytes held back to be sent in one call.
pub const MAX_PENDING: usize = 4 << 20;
/// Node ids of our own start here (above any inode number the root filesystem has).
const SYNTHETIC_BASE: u64 = 1 << 60;
/// Cached entries kept before the caches are dropped (memory bound).
const MAX_CACHED: usize = 1 << 20;
/// How stale the appliance's clock may get before a change sends it again.
const CLOCK_REFRESH: Duration = Duration::from_secs(1);

/// How the filesystem behaves.
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// No change is possible (the kernel mount is read-only too).
    pub readonly: bool,
    /// How long the kernel may keep entries and attributes.
    pub ttl: Duration,
    /// Show every file as owned by this user / group.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The guest's mountpoints other than `/` (their files get node ids of our own).
    pub mountpoints: Vec<String>,
}

/// The state shared by the FUSE threads and the code that shuts the session down.
pub struct State {
    session: Option<Session>,
    nodes: Nodes,
    /// lstat results by path.
    attrs: HashMap<String, Stat>,
    /// Directory listings by path.
    dirs: HashMap<String, Arc<Vec<DirEntry>>>,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    pending: Option<Pending>,
    clock_sent: Option<Instant>,
    /// The first failure that closed the session (reported once).
    dead: bool,
}

impl State {
    pub fn new(session: Session) -> State {
        State {
            session: Some(session),
            nodes: Nodes::new(),
            attrs: HashMap::new(),
            dirs: HashMap::new(),
            handles: HashMap::new(),
            next_fh: 1,
            pending: None,
            clock_sent: None,
            dead: false,
        }
    }

    /// Sends held-back writes and hands the session over (to be shut down).
    pub fn finish(&mut self) -> (Option<Session>, Result<(), Errno>) {
        let r = self.flush_pending();
        (self.session.take(), r)
    }
}

/// An open file or directory.
struct Handle {
    path: String,
    /// A directory's listing as of opendir.
    listing: Option<Arc<Vec<DirEntry>>>,
    /// Read buffer: the bytes at `buf_start`.
    buf_start: u64,
    buf: Vec<u8>,
    /// The file ends where the buffer does (the read that filled it came back short).
    buf_eof: bool,
    /// Where the last read ended, and the next window.
    last_end: u64,
    window: u64,
    /// The error of a delayed write, for the next flush/fsync.
    error: Option<Errno>,
}

impl Handle {
    fn new(path: String, listing: Option<Arc<Vec<DirEntry>>>) -> Handle {
        Handle {
            path,
            listing,
            buf_start: 0,
            buf: Vec::new(),
            buf_eof: false,
            last_end: 0,
            window: MIN_WINDOW,
            error: None,
        }
    }
}

impl Handle {
    /// Forgets the read buffer (the file changed).
    fn drop_buffer(&mut self) {
        self.buf = Vec::new();
        self.buf_eof = false;
    }
}

/// Writes held back: `data` goes at `start` of `path`, written through handle `fh`.
struct Pending {
    fh: u64,
    path: String,
    start: u64,
    data: Vec<u8>,
}

/// Node ids and the paths they stand for.
struct Nodes {
    paths: HashMap<u64, String>,
    ids: HashMap<String, u64>,
    next: u64,
}

impl Nodes {
    fn new() -> Nodes {
        let mut n = Nodes {
            paths: HashMap::new(),
            ids: HashMap::new(),
            next: SYNTHETIC_BASE,
        };
        n.paths.insert(1, "/".into());
        n.ids.insert("/".into(), 1);
        n
    }

    fn path(&self, id: u64) -> Option<&str> {
        self.paths.get(&id).map(String::as_str)
    }

    /// The id of `path` (whose attributes are `st`): its inode number when `inode_ok`,
    /// else the one this path had, else a new one.
    fn id(&mut self, path: &str, st: &Stat, inode_ok: bool) -> u64 {
        if path == "/" {
            return 1;
        }
        let id = if inode_ok && st.ino > 1 && st.ino < SYNTHETIC_BASE {
            st.ino
        } else {
            match self.ids.get(path) {
                Some(&id) if id >= SYNTHETIC_BASE => id,
                _ => {
                    let id = self.next;
                    self.next += 1;
                    id
                }
            }
        };
        self.paths.insert(id, path.to_string());
        self.ids.insert(path.to_string(), id);
        id
    }

    /// `path` is gone: a new file there gets a new id.
    fn forget_path(&mut self, path: &str) {
        self.ids.remove(path);
    }

    /// `from` (and everything below it) is now `to`.
    fn rename(&mut self, from: &str, to: &str) {
        let below = format!("{from}/");
        let moved = |p: &str| -> Option<String> {
            if p == from {
                Some(to.to_string())
            } else {
                p.strip_prefix(&below).map(|rest| format!("{to}/{rest}"))
            }
        };
        let mut ids = HashMap::with_capacity(self.ids.len());
        for (p, id) in self.ids.drain() {
            if p == to || p.starts_with(&format!("{to}/")) {
                continue; // replaced
            }
            ids.insert(moved(&p).unwrap_or(p), id);
        }
        self.ids = ids;
        for p in self.paths.values_mut() {
            if let Some(n) = moved(p) {
                *p = n;
            }
        }
    }
}

/// The filesystem handed to fuser.
pub struct SkiffFs {
    state: Arc<Mutex<State>>,
    opts: FsOptions,
}

impl SkiffFs {
    pub fn new(state: Arc<Mutex<State>>, opts: FsOptions) -> SkiffFs {
        SkiffFs { state, opts }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May files at `path` use their inode number as node id (they are on the
    /// filesystem mounted at the guest's `/`)?
    fn inode_ok(&self, path: &str) -> bool {
        !self.opts.mountpoints.iter().any(|m| {
            path == m
                || path
                    .strip_prefix(m.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        })
    }

    fn is_mountpoint(&self, path: &str) -> bool {
        self.opts.mountpoints.iter().any(|m| m == path)
    }

    fn attr(&self, id: u64, st: &Stat) -> FileAttr {
        let kind = match st.file_type {
            wire::FileType::Regular | wire::FileType::Unknown => FileType::RegularFile,
            wire::FileType::Directory => FileType::Directory,
            wire::FileType::Symlink => FileType::Symlink,
            wire::FileType::CharDevice => FileType::CharDevice,
            wire::FileType::BlockDevice => FileType::BlockDevice,
            wire::FileType::Fifo => FileType::NamedPipe,
            wire::FileType::Socket => FileType::Socket,
        };
        FileAttr {
            ino: INodeNo(id),
            size: st.size,
            blocks: st.size.div_ceil(512),
            atime: time(st.atime),
            mtime: time(st.mtime),
            ctime: time(st.ctime),
            crtime: time(st.ctime),
            kind,
            perm: (st.mode & 0o7777) as u16,
            nlink: st.nlink.max(1),
            uid: self.opts.uid.unwrap_or(st.uid),
            gid: self.opts.gid.unwrap_or(st.gid),
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn generation() -> Generation {
        Generation(0)
    }

    /// The node's entry for `path` (looked up afresh or from the caches).
    fn entry(&self, s: &mut State, path: &str) -> Result<(FileAttr, Generation), Errno> {
        let st = self.lstat(s, path)?;
        let id = s.nodes.id(path, &st, self.inode_ok(path));
        Ok((self.attr(id, &st), Self::generation()))
    }

    /// lstat of `path`: from the attribute cache, from the parent's cached listing, or
    /// a call (whose result is cached).
    fn lstat(&self, s: &mut State, path: &str) -> Result<Stat, Errno> {
        if let Some(st) = s.attrs.get(path) {
            return Ok(st.clone());
        }
        // A mountpoint's listing entry is the directory under the mount: ask.
        if !self.is_mountpoint(path)
            && let Some((parent, name)) = split(path)
            && let Some(listing) = s.dirs.get(parent)
        {
            return match listing.binary_search_by(|e| e.name.as_str().cmp(name)) {
                Ok(i) => Ok(listing[i].stat.clone()),
                Err(_) => Err(Errno::ENOENT),
            };
        }
        let st = s.call(|x| x.lstat(path))?;
        s.cache_attr(path, st.clone());
        Ok(st)
    }

    /// The listing of directory `path`, cached.
    fn listing(&self, s: &mut State, path: &str) -> Result<Arc<Vec<DirEntry>>, Errno> {
        if let Some(l) = s.dirs.get(path) {
            return Ok(l.clone());
        }
        let mut entries = s.call(|x| x.read_dir(path))?;
        // Sorted by name (lookups search it); the appliance sorts already.
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let l = Arc::new(entries);
        if s.attrs.len() + s.dirs.len() > MAX_CACHED {
            s.attrs.clear();
            s.dirs.clear();
        }
        s.dirs.insert(path.to_string(), l.clone());
        Ok(l)
    }

    fn node_path(s: &State, ino: INodeNo) -> Result<String, Errno> {
        s.nodes.path(ino.0).map(str::to_string).ok_or(Errno::ESTALE)
    }

    fn child_path(s: &State, parent: INodeNo, name: &OsStr) -> Result<String, Errno> {
        let parent = Self::node_path(s, parent)?;
        let name = name.to_str().ok_or(Errno::EINVAL)?;
        if name.is_empty() || name.contains('/') {
            return Err(Errno::EINVAL);
        }
        Ok(join(&parent, name))
    }

    /// Before a change: refuse on a read-only mount, send held-back writes, and keep the
    /// appliance's clock current.
    fn prepare_change(&self, s: &mut State) -> Result<(), Errno> {
        if self.opts.readonly {
            return Err(Errno::EROFS);
        }
        s.flush_pending()?;
        if s.clock_sent.is_none_or(|t| t.elapsed() >= CLOCK_REFRESH) {
            s.call(|x| x.set_clock_now())?;
            s.clock_sent = Some(Instant::now());
        }
        Ok(())
    }

    /// Caches that a change of `path` makes stale: its attributes and listing, its
    /// parent's, and read buffers of the file.
    fn changed(s: &mut State, path: &str) {
        s.attrs.remove(path);
        s.dirs.remove(path);
        if let Some((parent, _)) = split(path) {
            s.attrs.remove(parent);
            s.dirs.remove(parent);
        }
        for h in s.handles.values_mut() {
            if h.path == path {
                h.drop_buffer();
            }
        }
    }

    fn read_at(&self, s: &mut State, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let size = u64::from(size);
        let h = s.handles.get(&fh).ok_or(Errno::EBADF)?;
        let end = offset.saturating_add(size);
        let buf_end = h.buf_start + h.buf.len() as u64;
        if offset >= h.buf_start && (end <= buf_end || (h.buf_eof && offset <= buf_end)) {
            let from = (offset - h.buf_start) as usize;
            let to = (end.min(buf_end) - h.buf_start) as usize;
            let data = h.buf[from..to].to_vec();
            let h = s.handles.get_mut(&fh).ok_or(Errno::EBADF)?;
            h.last_end = end;
            return Ok(data);
        }
        let path = h.path.clone();
        let sequential = offset == h.last_end || (offset >= h.buf_start && offset < buf_end);
        let window = if sequential { h.window } else { MIN_WINDOW };
        let want = window.max(size);
        let data = s.call(|x| x.pread(&path, offset, want))?;
        let h = s.handles.get_mut(&fh).ok_or(Errno::EBADF)?;
        h.window = if sequential {
            (window * 2).min(MAX_WINDOW)
        } else {
            MIN_WINDOW * 2
        };
        let n = data.len().min(size as usize);
        let out = data[..n].to_vec();
        h.buf_start = offset;
        h.buf_eof = (data.len() as u64) < want;
        h.buf = data;
        h.last_end = offset + n as u64;
        Ok(out)
    }
}

impl State {
    /// Runs one call on the session; an error becomes an errno.
    fn call<T>(&mut self, f: impl FnOnce(&mut Session) -> skiff::Result<T>) -> Result<T, Errno> {
        let Some(session) = self.session.as_mut() else {
            return Err(Errno::EIO);
        };
        f(session).map_err(|e| {
            if !matches!(e, skiff::Error::Remote(_)) && !self.dead {
                self.dead = true;
                eprintln!("skiff mount: {e}");
            }
            errno(&e)
        })
    }

    fn cache_attr(&mut self, path: &str, st: Stat) {
        if self.attrs.len() + self.dirs.len() > MAX_CACHED {
            self.attrs.clear();
            self.dirs.clear();
        }
        self.attrs.insert(path.to_string(), st);
    }

    /// Sends the held-back writes. A failure is also kept for the writing handle's next
    /// flush/fsync (its writes were acknowledged already).
    fn flush_pending(&mut self) -> Result<(), Errno> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        let r = self.call(|x| x.pwrite(&p.path, p.start, &p.data));
        if let Err(e) = r {
            if let Some(h) = self.handles.get_mut(&p.fh) {
                h.error.get_or_insert(e);
            }
            return Err(e);
        }
        Ok(())
    }

    fn new_handle(&mut self, path: String, listing: Option<Arc<Vec<DirEntry>>>) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, Handle::new(path, listing));
        fh
    }
}

impl Filesystem for SkiffFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Directory listings come with attributes (one call per directory for `ls -l`
        // and `find`); big writes (fuser asks for them) up to 1 MiB+.
        let _ = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS);
        let _ = config.add_capabilities(InitFlags::FUSE_CACHE_SYMLINKS);
        let _ = config
            .set_max_write(16 << 20)
            .or_else(|max| config.set_max_write(max));
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut s = self.lock();
        let r = (|| {
            s.flush_pending()?;
            let path = Self::child_path(&s, parent, name)?;
            self.entry(&mut s, &path)
        })();
        match r {
            Ok((attr, generation)) => reply.entry(&self.opts.ttl, &attr, generation),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let mut s = self.lock();
        let r = (|| {
            s.flush_pending()?;
            let path = Self::node_path(&s, ino)?;
            let st = self.lstat(&mut s, &path)?;
            Ok(self.attr(ino.0, &st))
        })();
        match r {
            Ok(attr) => reply.attr(&self.opts.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = self.lock();
        let r = (|| {
            let path = Self::node_path(&s, ino)?;
            self.prepare_change(&mut s)?;
            if let Some(size) = size {
                s.call(|x| x.truncate(&path, size))?;
                Self::changed(&mut s, &path);
            }
            if let Some(mode) = mode {
                s.call(|x| x.chmod(&path, mode & 0o7777))?;
                Self::changed(&mut s, &path);
            }
            if uid.is_some() || gid.is_some() {
                let cur = self.lstat(&mut s, &path)?;
                let (u, g) = (uid.unwrap_or(cur.uid), gid.unwrap_or(cur.gid));
                s.call(|x| x.chown(&path, u, g))?;
                Self::changed(&mut s, &path);
            }
            if atime.is_some() || mtime.is_some() {
                let cur = self.lstat(&mut s, &path)?;
                if cur.file_type == wire::FileType::Symlink {
                    // The appliance's Utimens follows a final symlink and there is no
                    // lutimes: leave the link's times as they are rather than change
                    // the target's (an error would make `cp -a` fail; guestmount's
                    // lutimes is also best effort). The reply shows the real times.
                    let st = s.call(|x| x.lstat(&path))?;
                    return Ok(self.attr(ino.0, &st));
                }
                let t = |v: Option<TimeOrNow>, old: i64| match v {
                    None => old,
                    Some(TimeOrNow::Now) => unix_now(),
                    Some(TimeOrNow::SpecificTime(t)) => unix_secs(t),
                };
                let (a, m) = (t(atime, cur.atime), t(mtime, cur.mtime));
                s.call(|x| x.utimens(&path, a, m))?;
                Self::changed(&mut s, &path);
            }
            let st = s.call(|x| x.lstat(&path))?;
            s.cache_attr(&path, st.clone());
            Ok(self.attr(ino.0, &st))
        })();
        match r {
            Ok(attr) => reply.attr(&self.opts.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let mut s = self.lock();
        let r = (|| {
            let path = Self::node_path(&s, ino)?;
            s.call(|x| x.readlink(&path))
        })();
        match r {
            Ok(t) => reply.data(t.as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        // Only regular files (the appliance makes no device nodes, fifos or sockets).
        if mode & libc::S_IFMT != libc::S_IFREG && mode & libc::S_IFMT != 0 {
            reply.error(Errno::EPERM);
            return;
        }
        let mut s = self.lock();
        let r = self.create_node(&mut s, req, parent, name, mode & !umask);
        match r {
            Ok((attr, generation)) => reply.entry(&self.opts.ttl, &attr, generation),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.lock();
        let r = (|| {
            let path = Self::child_path(&s, parent, name)?;
            self.prepare_change(&mut s)?;
            s.call(|x| x.mkdir_mode(&path, mode & !umask & 0o7777))?;
            Self::changed(&mut s, &path);
            s.nodes.forget_path(&path);
            self.entry(&mut s, &path)
        })();
        match r {
            Ok((attr, generation)) => reply.entry(&self.opts.ttl, &attr, generation),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.lock();
        let r = (|| {
            let path = Self::child_path(&s, parent, name)?;
            self.prepare_change(&mut s)?;
            s.call(|x| x.rm(&path))?;
            Self::changed(&mut s, &path);
            s.nodes.forget_path(&path);
            Ok(())
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.lock();
        let r = (|| {
            let path = Self::child_path(&s, parent, name)?;
            self.prepare_change(&mut s)?;
            s.call(|x| x.rmdir(&path))?;
            Self::changed(&mut s, &path);
            s.nodes.forget_path(&path);
            Ok(())
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let mut s = self.lock();
        let r = (|| {
            let path = Self::child_path(&s, parent, link_name)?;
            let target = target.to_str().ok_or(Errno::EINVAL)?;
            self.prepare_change(&mut s)?;
            s.call(|x| x.ln_s(target, &path))?;
            Self::changed(&mut s, &path);
            s.nodes.forget_path(&path);
            self.entry(&mut s, &path)
        })();
        match r {
            Ok((attr, generation)) => reply.entry(&self.opts.ttl, &attr, generation),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut s = self.lock();
        let r = (|| {
            let from = Self::child_path(&s, parent, name)?;
            let to = Self::child_path(&s, newparent, newname)?;
            if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
                return Err(Errno::EINVAL);
            }
            self.prepare_change(&mut s)?;
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                match s.call(|x| x.lstat(&to)) {
                    Ok(_) => return Err(Errno::EEXIST),
                    Err(e) if e == Errno::ENOENT => {}
                    Err(e) => return Err(e),
                }
            }
            s.call(|x| x.rename(&from, &to))?;
            // Paths below both names changed: start the caches afresh.
            s.attrs.clear();
            s.dirs.clear();
            for h in s.handles.values_mut() {
                h.drop_buffer();
            }
            s.nodes.rename(&from, &to);
            for h in s.handles.values_mut() {
                if h.path == from {
                    h.path = to.clone();
                } else if let Some(rest) = h.path.strip_prefix(&format!("{from}/")) {
                    h.path = format!("{to}/{rest}");
                }
            }
            Ok(())
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // The appliance makes no hard links.
        reply.error(if self.opts.readonly {
            Errno::EROFS
        } else {
            Errno::EPERM
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut s = self.lock();
        let r = (|| {
            let path = Self::node_path(&s, ino)?;
            if self.opts.readonly && flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
                return Err(Errno::EROFS);
            }
            Ok(s.new_handle(path, None))
        })();
        // Read-only: the file cannot change, so the kernel keeps its pages across opens.
        let open_flags = if self.opts.readonly {
            FopenFlags::FOPEN_KEEP_CACHE
        } else {
            FopenFlags::empty()
        };
        match r {
            Ok(fh) => reply.opened(FileHandle(fh), open_flags),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut s = self.lock();
        let r = (|| {
            s.flush_pending()?;
            self.read_at(&mut s, fh.0, offset, size)
        })();
        match r {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut s = self.lock();
        let r = (|| {
            if self.opts.readonly {
                return Err(Errno::EROFS);
            }
            let path = s.handles.get(&fh.0).ok_or(Errno::EBADF)?.path.clone();
            // Consecutive writes to one handle go out together.
            if let Some(p) = s.pending.as_mut()
                && p.fh == fh.0
                && p.start + p.data.len() as u64 == offset
                && p.data.len() + data.len() <= MAX_PENDING
            {
                p.data.extend_from_slice(data);
            } else {
                self.prepare_change(&mut s)?;
                s.pending = Some(Pending {
                    fh: fh.0,
                    path: path.clone(),
                    start: offset,
                    data: data.to_vec(),
                });
            }
            Self::changed(&mut s, &path);
            if s.pending
                .as_ref()
                .is_some_and(|p| p.data.len() >= MAX_PENDING)
            {
                s.flush_pending()?;
            }
            u32::try_from(data.len()).map_err(|_| Errno::EINVAL)
        })();
        match r {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let mut s = self.lock();
        match s.flush_handle(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = self.lock();
        let r = s.flush_handle(fh.0);
        s.handles.remove(&fh.0);
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = self.lock();
        let r = (|| {
            s.flush_handle(fh.0)?;
            if !self.opts.readonly {
                s.call(|x| x.sync())?;
            }
            Ok(())
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut s = self.lock();
        let r = (|| {
            s.flush_pending()?;
            let path = Self::node_path(&s, ino)?;
            let listing = self.listing(&mut s, &path)?;
            Ok(s.new_handle(path, Some(listing)))
        })();
        // Read-only: the kernel may keep the listing in its page cache.
        let open_flags = if self.opts.readonly {
            FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR
        } else {
            FopenFlags::empty()
        };
        match r {
            Ok(fh) => reply.opened(FileHandle(fh), open_flags),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut s = self.lock();
        let Some(h) = s.handles.get(&fh.0) else {
            reply.error(Errno::EBADF);
            return;
        };
        let (path, listing) = (h.path.clone(), h.listing.clone().unwrap_or_default());
        let mut i = offset;
        loop {
            let full = match i {
                0 => reply.add(ino, 1, FileType::Directory, "."),
                1 => reply.add(INodeNo(1), 2, FileType::Directory, ".."),
                _ => {
                    let Some(e) = listing.get((i - 2) as usize) else {
                        break;
                    };
                    let p = join(&path, &e.name);
                    let id = s.nodes.id(&p, &e.stat, self.inode_ok(&p));
                    let kind = self.attr(id, &e.stat).kind;
                    reply.add(INodeNo(id), i + 1, kind, &e.name)
                }
            };
            if full {
                break;
            }
            i += 1;
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let mut s = self.lock();
        let Some(h) = s.handles.get(&fh.0) else {
            reply.error(Errno::EBADF);
            return;
        };
        let (path, listing) = (h.path.clone(), h.listing.clone().unwrap_or_default());
        let ttl = self.opts.ttl;
        let mut i = offset;
        loop {
            let full = match i {
                // The kernel skips "." and ".." entries of readdirplus.
                0 | 1 => {
                    let name = if i == 0 { "." } else { ".." };
                    let st = Stat {
                        file_type: wire::FileType::Directory,
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        size: 0,
                        nlink: 2,
                        ino: 0,
                        mtime: 0,
                        atime: 0,
                        ctime: 0,
                    };
                    let attr = self.attr(ino.0, &st);
                    reply.add(ino, i + 1, name, &Duration::ZERO, &attr, Self::generation())
                }
                _ => {
                    let Some(e) = listing.get((i - 2) as usize) else {
                        break;
                    };
                    let p = join(&path, &e.name);
                    let st = if self.is_mountpoint(&p) {
                        match self.lstat(&mut s, &p) {
                            Ok(st) => st,
                            Err(_) => e.stat.clone(),
                        }
                    } else {
                        e.stat.clone()
                    };
                    let id = s.nodes.id(&p, &st, self.inode_ok(&p));
                    let attr = self.attr(id, &st);
                    reply.add(INodeNo(id), i + 1, &e.name, &ttl, &attr, Self::generation())
                }
            };
            if full {
                break;
            }
            i += 1;
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.lock().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = self.lock();
        let r = (|| {
            s.flush_pending()?;
            if !self.opts.readonly {
                s.call(|x| x.sync())?;
            }
            Ok(())
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let mut s = self.lock();
        let r = (|| {
            s.flush_pending()?;
            s.call(|x| x.statvfs("/"))
        })();
        match r {
            Ok(v) => {
                let bsize = u32::try_from(v.block_size).unwrap_or(4096);
                let namelen = u32::try_from(v.name_max).unwrap_or(255);
                reply.statfs(
                    v.blocks,
                    v.blocks_free,
                    v.blocks_avail,
                    v.files,
                    v.files_free,
                    bsize,
                    namelen,
                    bsize,
                )
            }
            Err(e) => reply.error(e),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let mut s = self.lock();
        let r = (|| {
            let path = Self::node_path(&s, ino)?;
            let name = name.to_str().ok_or(Errno::EINVAL)?;
            if is_acl(name) {
                // The appliance keeps no POSIX ACLs: `cp -a` and `setfacl` then fall
                // back to chmod, which sets the mode.
                return Err(Errno::EOPNOTSUPP);
            }
            self.prepare_change(&mut s)?;
            s.call(|x| x.setxattr(&path, name, value))
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let mut s = self.lock();
        let r = (|| {
            s.flush_pending()?;
            let path = Self::node_path(&s, ino)?;
            let name = name.to_str().ok_or(Errno::EINVAL)?;
            if is_acl(name) {
                return Err(Errno::ENODATA);
            }
            s.call(|x| x.getxattr(&path, name)).map_err(|e| {
                if e == Errno::ENOENT {
                    Errno::ENODATA
                } else {
                    e
                }
            })
        })();
        reply_xattr(reply, r, size);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let mut s = self.lock();
        let r = (|| {
            s.flush_pending()?;
            let path = Self::node_path(&s, ino)?;
            let names = s.call(|x| x.listxattrs(&path))?;
            let mut out = Vec::new();
            for n in names.iter().filter(|n| !is_acl(n)) {
                out.extend_from_slice(n.as_bytes());
                out.push(0);
            }
            Ok(out)
        })();
        reply_xattr(reply, r, size);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.lock();
        let r = (|| {
            let path = Self::node_path(&s, ino)?;
            let name = name.to_str().ok_or(Errno::EINVAL)?;
            self.prepare_change(&mut s)?;
            s.call(|x| x.removexattr(&path, name)).map_err(|e| {
                if e == Errno::ENOENT {
                    Errno::ENODATA
                } else {
                    e
                }
            })
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Permissions are checked by the kernel (default_permissions).
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.lock();
        let r = (|| {
            let (attr, generation) =
                self.create_node_with(&mut s, req, parent, name, mode & !umask, flags)?;
            let path = Self::node_path(&s, attr.ino)?;
            let fh = s.new_handle(path, None);
            Ok((attr, generation, fh))
        })();
        match r {
            Ok((attr, generation, fh)) => reply.created(
                &self.opts.ttl,
                &attr,
                generation,
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }
}

impl SkiffFs {
    fn create_node(
        &self,
        s: &mut State,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
    ) -> Result<(FileAttr, Generation), Errno> {
        self.create_node_with(s, req, parent, name, mode, libc::O_EXCL)
    }

    /// Creates the regular file `name` in `parent` (emptied with `O_TRUNC`).
    fn create_node_with(
        &self,
        s: &mut State,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(FileAttr, Generation), Errno> {
        let path = Self::child_path(s, parent, name)?;
        self.prepare_change(s)?;
        if flags & libc::O_EXCL != 0 {
            match s.call(|x| x.lstat(&path)) {
                Ok(_) => return Err(Errno::EEXIST),
                Err(e) if e == Errno::ENOENT => {}
                Err(e) => return Err(e),
            }
        }
        let truncate = flags & libc::O_TRUNC != 0;
        s.call(|x| x.create_file(&path, mode & 0o7777, truncate))?;
        Self::changed(s, &path);
        s.nodes.forget_path(&path);
        self.entry(s, &path)
    }
}

impl State {
    /// Sends the held-back writes of handle `fh` and returns its delayed error, if any.
    fn flush_handle(&mut self, fh: u64) -> Result<(), Errno> {
        if self.pending.as_ref().is_some_and(|p| p.fh == fh) {
            // The error is also kept on the handle, taken below.
            let _ = self.flush_pending();
        }
        match self.handles.get_mut(&fh).and_then(|h| h.error.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn reply_xattr(reply: ReplyXattr, r: Result<Vec<u8>, Errno>, size: u32) {
    match r {
        Ok(data) if size == 0 => match u32::try_from(data.len()) {
            Ok(n) => reply.size(n),
            Err(_) => reply.error(Errno::E2BIG),
        },
        Ok(data) if data.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(data) => reply.data(&data),
        Err(e) => reply.error(e),
    }
}

/// A POSIX ACL attribute (`system.posix_acl_access`, `..._default`): not kept by the
/// appliance, so the mode bits stay the one place permissions live.
fn is_acl(name: &str) -> bool {
    name.starts_with("system.posix_acl_")
}

/// The errno for a failed call.
pub fn errno(e: &skiff::Error) -> Errno {
    let skiff::Error::Remote(r) = e else {
        return match e {
            skiff::Error::ReadOnly { .. } => Errno::EROFS,
            skiff::Error::InvalidArgument(_) => Errno::EINVAL,
            _ => Errno::EIO,
        };
    };
    match r.kind {
        ErrorKind::NotFound => Errno::ENOENT,
        ErrorKind::NotADirectory => Errno::ENOTDIR,
        ErrorKind::IsADirectory => Errno::EISDIR,
        ErrorKind::ReadOnly => Errno::EROFS,
        ErrorKind::NoSpace => Errno::ENOSPC,
        ErrorKind::Unsupported => Errno::EOPNOTSUPP,
        ErrorKind::InvalidArgument => Errno::EINVAL,
        ErrorKind::AlreadyExists => Errno::EEXIST,
        ErrorKind::NotEmpty => Errno::ENOTEMPTY,
        ErrorKind::Busy => Errno::EBUSY,
        ErrorKind::NotMounted => Errno::EINVAL,
        ErrorKind::TooLarge => Errno::EFBIG,
        ErrorKind::Loop => Errno::ELOOP,
        ErrorKind::PermissionDenied => Errno::EACCES,
        ErrorKind::Corrupt | ErrorKind::Io | ErrorKind::Internal => Errno::EIO,
    }
}

/// `parent/name`.
fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// `/a/b` → (`/a`, `b`); `/a` → (`/`, `a`); `/` → none.
fn split(path: &str) -> Option<(&str, &str)> {
    let i = path.rfind('/')?;
    let name = &path[i + 1..];
    if name.is_empty() {
        return None;
    }
    Some((if i == 0 { "/" } else { &path[..i] }, name))
}

fn time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(ino: u64) -> Stat {
        Stat {
            file_type: wire::FileType::Regular,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            nlink: 1,
            ino,
            mtime: 0,
            atime: 0,
            ctime: 0,
        }
    }

    #[test]
    fn paths() {
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert_eq!(split("/a/b"), Some(("/a", "b")));
        assert_eq!(split("/a"), Some(("/", "a")));
        assert_eq!(split("/"), None);
    }

    #[test]
    fn node_ids() {
        let mut n = Nodes::new();
        // The root filesystem's inode numbers are the ids.
        assert_eq!(n.id("/etc", &st(12), true), 12);
        assert_eq!(n.path(12), Some("/etc"));
        // No inode number, or another filesystem: an id of our own, stable per path.
        let a = n.id("/boot/x", &st(12), false);
        assert!(a >= SYNTHETIC_BASE);
        assert_eq!(n.id("/boot/x", &st(12), false), a);
        let b = n.id("/y", &st(0), true);
        assert!(b >= SYNTHETIC_BASE && b != a);
        // Renamed: the same id, the new path (and below it).
        let c = n.id("/boot/x/z", &st(0), false);
        n.rename("/boot/x", "/boot/w");
        assert_eq!(n.path(a), Some("/boot/w"));
        assert_eq!(n.path(c), Some("/boot/w/z"));
        assert_eq!(n.id("/boot/w", &st(0), false), a);
        // Removed: a new file there is a new node.
        n.forget_path("/y");
        assert_ne!(n.id("/y", &st(0), true), b);
        assert_eq!(n.id("/", &st(2), true), 1);
    }

    #[test]
    fn errnos() {
        let r = |k| skiff::Error::Remote(wire::Error::new(k, "x"));
        assert_eq!(errno(&r(ErrorKind::NotFound)), Errno::ENOENT);
        assert_eq!(errno(&r(ErrorKind::NotEmpty)), Errno::ENOTEMPTY);
        assert_eq!(errno(&r(ErrorKind::ReadOnly)), Errno::EROFS);
        assert_eq!(errno(&skiff::Error::Closed), Errno::EIO);
    }

    #[test]
    fn times() {
        assert_eq!(unix_secs(time(1_700_000_000)), 1_700_000_000);
        assert_eq!(unix_secs(time(-5)), -5);
    }
}
