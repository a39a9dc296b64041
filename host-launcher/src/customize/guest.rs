//! [`Guest`]: the mounted guest as customize and sysprep change it. Every change goes
//! through here, so that
//!
//! - a replaced file is replaced whole or not at all: the new bytes go to a temporary
//!   file in the same directory, get the old file's mode, owner and extended attributes
//!   (its `security.selinux` label among them), and are renamed over it;
//! - a new file or directory gets the mode and owner asked for and, on an SELinux guest,
//!   the label the policy gives it ([`super::selinux`]) or, when that cannot be derived,
//!   `/.autorelabel` at the end;
//! - symlinks are never followed when writing: a symlink where a file is to be replaced
//!   (a hostile `/etc/shadow -> ...`, `~/.ssh -> /etc`) is refused;
//! - `--dry-run` records what would change instead of changing it;
//! - every change is recorded ([`Change`]) for the report.

use super::selinux::Labeler;
use super::{Action, Change};
use crate::error::{Error, Result};
use crate::session::Session;
use crate::session::calls::unexpected;
use crate::session::fs::is_not_found;
use std::collections::BTreeMap;
use wire::{Bytes, DirEntry, ErrorKind, FileType, Reply, Request, Stat};

/// Owner and mode of something new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewAttrs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl NewAttrs {
    pub const fn root(mode: u32) -> Self {
        NewAttrs {
            mode,
            uid: 0,
            gid: 0,
        }
    }
}

/// The guest, mounted in the session (its root at `/`), being changed.
pub struct Guest<'s> {
    s: &'s mut Session,
    dry_run: bool,
    /// The operation being run, as given (secrets redacted), for the change log.
    pub(crate) op: String,
    changes: Vec<Change>,
    notes: Vec<String>,
    /// Dry run: paths created (`Some(type)`) or removed (`None`) so far.
    overlay: BTreeMap<String, Option<FileType>>,
    /// Dry run: the bytes of files written so far (small ones), for later operations
    /// that read them (a second password change reads the first one's shadow).
    dry_data: BTreeMap<String, Vec<u8>>,
    /// Dry run: bytes the writes so far would take, per filesystem (its block size and
    /// block count standing for its identity).
    dry_space: BTreeMap<(u64, u64), u64>,
    /// SELinux labelling, when the guest uses SELinux.
    labeler: Option<Labeler>,
    /// A new file could not be labelled: `/.autorelabel` at the end.
    relabel: bool,
    tmp_counter: u32,
}

/// A failed call answered by the appliance with `kind`?
fn is_kind(e: &Error, kind: ErrorKind) -> bool {
    matches!(e, Error::Remote(r) if r.kind == kind)
}

fn remote(kind: ErrorKind, message: String) -> Error {
    Error::Remote(wire::Error::new(kind, message))
}

/// `path`'s parent directory and final name (`/` has none).
pub fn split(path: &str) -> Result<(&str, &str)> {
    let p = path.trim_end_matches('/');
    let i = p
        .rfind('/')
        .ok_or_else(|| Error::InvalidArgument(format!("{path:?} is not an absolute path")))?;
    let name = &p[i + 1..];
    if name.is_empty() || name == "." || name == ".." {
        return Err(Error::InvalidArgument(format!("{path:?} names no file")));
    }
    Ok((if i == 0 { "/" } else { &p[..i] }, name))
}

/// Checks an absolute guest path given by the user.
pub fn check_path(path: &str) -> Result<()> {
    if !path.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "{path:?}: guest paths must be absolute"
        )));
    }
    if path.contains('\0') || path.len() > 4096 {
        return Err(Error::InvalidArgument(format!("{path:?}: invalid path")));
    }
    Ok(())
}

impl<'s> Guest<'s> {
    /// Starts changing the guest mounted at `/` of `s`: sends the host's clock (the
    /// appliance has none) and looks at the guest's SELinux configuration.
    pub fn new(s: &'s mut Session, dry_run: bool) -> Result<Guest<'s>> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        match s.call(Request::SetClock { now })? {
            Reply::Unit => {}
            other => return Err(unexpected(&other)),
        }
        let mut g = Guest {
            s,
            dry_run,
            op: String::new(),
            changes: Vec::new(),
            notes: Vec::new(),
            overlay: BTreeMap::new(),
            dry_data: BTreeMap::new(),
            dry_space: BTreeMap::new(),
            labeler: None,
            relabel: false,
            tmp_counter: 0,
        };
        g.labeler = Labeler::load(&mut g)?;
        Ok(g)
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// The session (for reads the helpers here do not cover).
    pub fn session(&mut self) -> &mut Session {
        self.s
    }

    /// Does the guest use SELinux (enforcing or permissive)?
    pub fn selinux(&self) -> bool {
        self.labeler.is_some()
    }

    /// Records a change of the current operation.
    fn record(&mut self, action: Action, path: &str, detail: Option<String>) {
        self.changes.push(Change {
            operation: self.op.clone(),
            action,
            path: path.to_string(),
            detail,
        });
    }

    /// A note for the report (e.g. a random password chosen).
    pub fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    /// Ends the run: `/.autorelabel` when some new file could not be labelled (or
    /// `force_relabel`). Returns the changes and notes.
    pub fn finish(mut self, force_relabel: bool) -> Result<(Vec<Change>, Vec<String>)> {
        if (self.relabel && self.labeler.is_some()) || force_relabel {
            self.op = "selinux".into();
            if !self.exists("/.autorelabel")? {
                self.replace("/.autorelabel", b"", NewAttrs::root(0o644))?;
            }
        }
        Ok((self.changes, self.notes))
    }

    // ---- reads ----

    /// Attributes of `path` itself; `None` when it does not exist (as the dry run has it).
    pub fn lstat(&mut self, path: &str) -> Result<Option<Stat>> {
        if let Some(o) = self.overlaid(path) {
            return Ok(o.map(fake_stat));
        }
        match self.s.lstat(path) {
            Ok(st) => Ok(Some(st)),
            Err(e) if is_not_found(&e) || is_kind(&e, ErrorKind::NotADirectory) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Attributes of `path`, following symlinks; `None` when it does not exist.
    pub fn stat(&mut self, path: &str) -> Result<Option<Stat>> {
        if let Some(o) = self.overlaid(path) {
            return Ok(o.map(fake_stat));
        }
        match self.s.stat(path) {
            Ok(st) => Ok(Some(st)),
            Err(e)
                if is_not_found(&e)
                    || is_kind(&e, ErrorKind::NotADirectory)
                    || is_kind(&e, ErrorKind::Loop) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The dry run's view of `path`: `Some(None)` removed, `Some(Some(t))` created, or
    /// `None` (as on the disk). A path below a removed directory is removed.
    fn overlaid(&self, path: &str) -> Option<Option<FileType>> {
        if !self.dry_run {
            return None;
        }
        let mut p = path.trim_end_matches('/').to_string();
        if p.is_empty() {
            p.push('/');
        }
        if let Some(o) = self.overlay.get(&p) {
            return Some(*o);
        }
        let mut cur = p.as_str();
        while let Some(i) = cur.rfind('/') {
            cur = &cur[..i];
            if let Some(None) = self.overlay.get(if cur.is_empty() { "/" } else { cur }) {
                return Some(None);
            }
            if cur.is_empty() {
                break;
            }
        }
        None
    }

    pub fn exists(&mut self, path: &str) -> Result<bool> {
        Ok(self.lstat(path)?.is_some())
    }

    /// Is `path` a directory itself (not a symlink to one)?
    pub fn is_real_dir(&mut self, path: &str) -> Result<bool> {
        Ok(self
            .lstat(path)?
            .is_some_and(|s| s.file_type == FileType::Directory))
    }

    /// Is `path` a directory (following symlinks)?
    pub fn is_dir(&mut self, path: &str) -> Result<bool> {
        Ok(self
            .stat(path)?
            .is_some_and(|s| s.file_type == FileType::Directory))
    }

    /// The entries of a directory (as on the disk).
    pub fn read_dir(&mut self, path: &str) -> Result<Vec<DirEntry>> {
        if !self.dry_run {
            return self.s.read_dir(path);
        }
        // Dry run: the disk's entries, less those removed, plus those created.
        let created_here = self.overlaid(path) == Some(Some(FileType::Directory));
        let mut v = match self.s.read_dir(path) {
            Ok(v) => v,
            Err(e)
                if created_here && (is_not_found(&e) || is_kind(&e, ErrorKind::NotADirectory)) =>
            {
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        v.retain(|e| {
            let p = super::glob::join(path, &e.name);
            self.overlaid(&p) != Some(None)
        });
        let prefix = super::glob::join(path, "");
        for (p, t) in &self.overlay {
            let Some(name) = p.strip_prefix(&prefix) else {
                continue;
            };
            if let Some(t) = t
                && !name.is_empty()
                && !name.contains('/')
                && !v.iter().any(|e| e.name == name)
            {
                v.push(DirEntry {
                    name: name.to_string(),
                    stat: fake_stat(*t),
                });
            }
        }
        Ok(v)
    }

    /// The whole file at `path` (following symlinks: reading is harmless), refused when
    /// larger than `max` bytes; `None` when it does not exist.
    pub fn read_optional(&mut self, path: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let Some(st) = self.stat(path)? else {
            return Ok(None);
        };
        if self.dry_run {
            if let Some(d) = self.dry_data.get(path) {
                if d.len() as u64 > max {
                    return Err(remote(
                        ErrorKind::TooLarge,
                        format!("{path} is larger than {max} bytes (refused)"),
                    ));
                }
                return Ok(Some(d.clone()));
            }
            if self.overlay.contains_key(path) {
                // Written earlier in this dry run from a host file: not read back.
                return Ok(Some(Vec::new()));
            }
        }
        if st.file_type != FileType::Regular {
            return Err(remote(
                ErrorKind::InvalidArgument,
                format!("{path} is not a regular file"),
            ));
        }
        if st.size > max {
            return Err(remote(
                ErrorKind::TooLarge,
                format!("{path} is larger than {max} bytes (refused)"),
            ));
        }
        let data = self.s.pread(path, 0, max + 1)?;
        if data.len() as u64 > max {
            return Err(remote(
                ErrorKind::TooLarge,
                format!("{path} is larger than {max} bytes (refused)"),
            ));
        }
        Ok(Some(data))
    }

    /// Like [`Guest::read_optional`], a missing file being an error.
    pub fn read(&mut self, path: &str, max: u64) -> Result<Vec<u8>> {
        self.read_optional(path, max)?
            .ok_or_else(|| remote(ErrorKind::NotFound, format!("{path} does not exist")))
    }

    /// A regular file that may be replaced: `Some(stat)` for an existing regular file,
    /// `None` when missing; a symlink, directory or other type is refused.
    fn replaceable(&mut self, path: &str) -> Result<Option<Stat>> {
        match self.lstat(path)? {
            None => Ok(None),
            Some(st) if st.file_type == FileType::Regular => Ok(Some(st)),
            Some(st) if st.file_type == FileType::Symlink => Err(remote(
                ErrorKind::InvalidArgument,
                format!("{path} is a symlink (refused: skiff does not write through symlinks)"),
            )),
            Some(st) if st.file_type == FileType::Directory => Err(remote(
                ErrorKind::IsADirectory,
                format!("{path} is a directory"),
            )),
            Some(_) => Err(remote(
                ErrorKind::InvalidArgument,
                format!("{path} is not a regular file"),
            )),
        }
    }

    /// The parent of `path` must be an existing directory.
    fn parent_dir(&mut self, path: &str) -> Result<String> {
        let (parent, _) = split(path)?;
        if !self.is_dir(parent)? {
            return Err(remote(
                ErrorKind::NotFound,
                format!("{parent} is not a directory (the parent of {path})"),
            ));
        }
        Ok(parent.to_string())
    }

    // ---- changes ----

    /// Creates or replaces the regular file `path` with `data`. An existing file keeps
    /// its mode, owner and extended attributes; a new one gets `new`. Whole or nothing:
    /// written to a temporary file beside it and renamed over it.
    pub fn replace(&mut self, path: &str, data: &[u8], new: NewAttrs) -> Result<()> {
        self.replace_with(path, new, data.len() as u64, |s, tmp| {
            s.write_file(tmp, data)
        })?;
        if self.dry_run {
            self.remember(path, data.to_vec());
        }
        Ok(())
    }

    /// Dry run: keeps what `path` now holds (when small enough to keep).
    fn remember(&mut self, path: &str, data: Vec<u8>) {
        const MAX_KEPT: usize = 1 << 20;
        const MAX_KEPT_TOTAL: usize = 32 << 20;
        let total: usize = self.dry_data.values().map(Vec::len).sum();
        if data.len() <= MAX_KEPT && total.saturating_add(data.len()) <= MAX_KEPT_TOTAL {
            self.dry_data.insert(path.to_string(), data);
        } else {
            self.dry_data.remove(path);
        }
    }

    /// Like [`Guest::replace`], the bytes streamed from a host reader.
    pub fn replace_from(
        &mut self,
        path: &str,
        r: &mut impl std::io::Read,
        size: u64,
        new: NewAttrs,
    ) -> Result<()> {
        self.replace_with(path, new, size, |s, tmp| s.upload(r, tmp).map(|_| ()))
    }

    /// Replaces `path` as [`Guest::replace`] does but keeps `new`'s mode and owner even
    /// for an existing file (`--upload` keeps the host file's).
    pub fn replace_from_with_attrs(
        &mut self,
        path: &str,
        r: &mut impl std::io::Read,
        size: u64,
        attrs: NewAttrs,
    ) -> Result<()> {
        let old = self.replaceable(path)?;
        self.replace_with(path, attrs, size, |s, tmp| s.upload(r, tmp).map(|_| ()))?;
        if let Some(st) = old
            && !self.dry_run
        {
            if st.mode & 0o7777 != attrs.mode & 0o7777 {
                self.s.chmod(path, attrs.mode & 0o7777)?;
            }
            if (st.uid, st.gid) != (attrs.uid, attrs.gid) {
                self.chown_raw(path, attrs.uid, attrs.gid)?;
            }
        }
        Ok(())
    }

    fn replace_with(
        &mut self,
        path: &str,
        new: NewAttrs,
        size: u64,
        fill: impl FnOnce(&mut Session, &str) -> Result<()>,
    ) -> Result<()> {
        check_path(path)?;
        let old = self.replaceable(path)?;
        let parent = self.parent_dir(path)?;
        let action = if old.is_some() {
            Action::Replace
        } else {
            Action::Create
        };
        self.check_space(&parent, path, size)?;
        if self.dry_run {
            self.overlay
                .insert(path.to_string(), Some(FileType::Regular));
            self.record(action, path, Some(format!("{size} bytes")));
            return Ok(());
        }
        let tmp = self.temp_name(&parent)?;
        let r = self.fill_temp(&tmp, path, old.as_ref(), new, fill);
        if let Err(e) = r {
            let _ = self.s.rm(&tmp);
            return Err(e);
        }
        self.record(action, path, Some(format!("{size} bytes")));
        Ok(())
    }

    fn fill_temp(
        &mut self,
        tmp: &str,
        path: &str,
        old: Option<&Stat>,
        new: NewAttrs,
        fill: impl FnOnce(&mut Session, &str) -> Result<()>,
    ) -> Result<()> {
        fill(self.s, tmp)?;
        match old {
            Some(st) => {
                soft(self.s.chmod(tmp, st.mode & 0o7777))?;
                if (st.uid, st.gid) != (0, 0) {
                    soft(self.chown_raw(tmp, st.uid, st.gid))?;
                }
                self.copy_xattrs(path, tmp)?;
            }
            None => {
                soft(self.s.chmod(tmp, new.mode & 0o7777))?;
                if (new.uid, new.gid) != (0, 0) {
                    soft(self.chown_raw(tmp, new.uid, new.gid))?;
                }
                self.label_new(tmp, path, FileType::Regular)?;
            }
        }
        self.s.rename(tmp, path)
    }

    /// Refuses a write of `size` bytes into `dir` that its filesystem has no room for
    /// (the replaced file is only freed after the rename), counting, in the dry run, what
    /// the earlier writes would take: a full filesystem is found before the first write.
    fn check_space(&mut self, dir: &str, path: &str, size: u64) -> Result<()> {
        let st = match self.s.statvfs(dir) {
            Ok(st) => st,
            Err(e) if is_kind(&e, ErrorKind::Unsupported) || is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        let bs = st.block_size.max(512);
        // The data, rounded up to blocks, plus room for an extent/indirect block or two.
        let needed = size
            .div_ceil(bs)
            .saturating_add(size / bs / 256)
            .saturating_add(2)
            .saturating_mul(bs);
        let free = st.blocks_free.saturating_mul(bs);
        let before = if self.dry_run {
            *self.dry_space.get(&(bs, st.blocks)).unwrap_or(&0)
        } else {
            0
        };
        let total = before.saturating_add(needed);
        if total > free {
            return Err(remote(
                ErrorKind::NoSpace,
                format!("{path}: needs about {total} bytes, {free} free on its filesystem"),
            ));
        }
        if self.dry_run {
            self.dry_space.insert((bs, st.blocks), total);
        }
        Ok(())
    }

    /// A name for a temporary file in `dir` that does not exist (anything there under
    /// that name, a hostile symlink included, is removed first).
    fn temp_name(&mut self, dir: &str) -> Result<String> {
        self.tmp_counter += 1;
        let tmp = super::glob::join(dir, &format!(".skiff-{}.tmp", self.tmp_counter));
        if let Some(st) = self.lstat(&tmp)? {
            if st.file_type == FileType::Directory {
                self.s.rm_rf(&tmp)?;
            } else {
                self.s.rm(&tmp)?;
            }
        }
        Ok(tmp)
    }

    /// Copies every extended attribute of `from` (the file being replaced) to `to`.
    fn copy_xattrs(&mut self, from: &str, to: &str) -> Result<()> {
        let names = match self.s.call(Request::Listxattrs { path: from.into() }) {
            Ok(Reply::Names(n)) => n,
            Ok(other) => return Err(unexpected(&other)),
            // FAT and friends: no extended attributes to keep.
            Err(e) if is_kind(&e, ErrorKind::Unsupported) => return Ok(()),
            Err(e) => return Err(e),
        };
        for name in names.into_iter().take(1024) {
            let value = match self.s.call(Request::Getxattr {
                path: from.into(),
                name: name.clone(),
            })? {
                Reply::Data(Bytes(v)) => v,
                other => return Err(unexpected(&other)),
            };
            self.setxattr_raw(to, &name, value)?;
        }
        Ok(())
    }

    fn setxattr_raw(&mut self, path: &str, name: &str, value: Vec<u8>) -> Result<()> {
        match self.s.call(Request::Setxattr {
            path: path.into(),
            name: name.into(),
            value: Bytes(value),
        })? {
            Reply::Unit => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn chown_raw(&mut self, path: &str, uid: u32, gid: u32) -> Result<()> {
        match self.s.call(Request::Chown {
            path: path.into(),
            uid,
            gid,
        })? {
            Reply::Unit => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Labels something new at `at` (which will be, or is, `final_path`) for SELinux.
    fn label_new(&mut self, at: &str, final_path: &str, t: FileType) -> Result<()> {
        let Some(l) = self.labeler.as_mut() else {
            return Ok(());
        };
        match l.label_for(final_path, t) {
            Some(ctx) => {
                let mut v = ctx.into_bytes();
                v.push(0);
                self.setxattr_raw(at, "security.selinux", v)
            }
            None => {
                self.relabel = true;
                Ok(())
            }
        }
    }

    /// Appends `data` to the file `path` (created, with `new`, when missing).
    pub fn append(&mut self, path: &str, data: &[u8], new: NewAttrs) -> Result<()> {
        match self.replaceable(path)? {
            None => self.replace(path, data, new),
            Some(st) => {
                if !self.dry_run {
                    self.s.append(path, data)?;
                } else {
                    let mut now = match self.dry_data.remove(path) {
                        Some(d) => Some(d),
                        None if st.size <= 1 << 20 && !self.overlay.contains_key(path) => {
                            Some(self.s.pread(path, 0, st.size)?)
                        }
                        None => None,
                    };
                    if let Some(d) = now.as_mut() {
                        d.extend_from_slice(data);
                    }
                    if let Some(d) = now {
                        self.remember(path, d);
                    }
                }
                self.record(Action::Append, path, Some(format!("{} bytes", data.len())));
                Ok(())
            }
        }
    }

    /// `mkdir -p`: creates `path` and its missing parents (each with `new`, labelled);
    /// an existing directory (or symlink to one) is fine.
    pub fn mkdir_p(&mut self, path: &str, new: NewAttrs) -> Result<()> {
        check_path(path)?;
        let mut cur = String::new();
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            cur.push('/');
            cur.push_str(comp);
            match self.stat(&cur)? {
                Some(st) if st.file_type == FileType::Directory => continue,
                Some(_) => {
                    return Err(remote(
                        ErrorKind::NotADirectory,
                        format!("{cur} exists and is not a directory"),
                    ));
                }
                None => self.mkdir(&cur, new)?,
            }
        }
        Ok(())
    }

    /// Creates the directory `path` (its parent must exist) with `new`, labelled.
    pub fn mkdir(&mut self, path: &str, new: NewAttrs) -> Result<()> {
        if self.exists(path)? {
            return Err(remote(
                ErrorKind::AlreadyExists,
                format!("{path} already exists"),
            ));
        }
        if self.dry_run {
            self.overlay
                .insert(path.to_string(), Some(FileType::Directory));
        } else {
            match self.s.call(Request::Mkdir {
                path: path.into(),
                parents: false,
                mode: new.mode & 0o7777,
            })? {
                Reply::Unit => {}
                other => return Err(unexpected(&other)),
            }
            // Linux masks the mode at mkdir (umask); set it as asked.
            soft(self.s.chmod(path, new.mode & 0o7777))?;
            if (new.uid, new.gid) != (0, 0) {
                soft(self.chown_raw(path, new.uid, new.gid))?;
            }
            self.label_new(path, path, FileType::Directory)?;
        }
        self.record(Action::Mkdir, path, Some(format!("{:04o}", new.mode)));
        Ok(())
    }

    /// `rm -rf path` (nothing to do when it does not exist).
    pub fn remove(&mut self, path: &str) -> Result<bool> {
        let Some(st) = self.lstat(path)? else {
            return Ok(false);
        };
        if !self.dry_run {
            if st.file_type == FileType::Directory {
                self.s.rm_rf(path)?;
            } else {
                self.s.rm(path)?;
            }
        } else {
            self.overlay.insert(path.to_string(), None);
            let prefix = format!("{}/", path.trim_end_matches('/'));
            self.dry_data
                .retain(|k, _| k != path && !k.starts_with(&prefix));
        }
        let detail = (st.file_type == FileType::Directory).then(|| "recursively".to_string());
        self.record(Action::Remove, path, detail);
        Ok(true)
    }

    /// Empties the regular file `path` (kept, with its attributes); false when missing.
    pub fn empty(&mut self, path: &str) -> Result<bool> {
        match self.lstat(path)? {
            Some(st) if st.file_type == FileType::Regular => {
                if st.size == 0 {
                    return Ok(false);
                }
                if !self.dry_run {
                    self.s.truncate(path, 0)?;
                } else {
                    self.dry_data.insert(path.to_string(), Vec::new());
                }
                self.record(Action::Empty, path, None);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// `truncate -s 0` of an existing file (following symlinks, like virt-customize).
    pub fn truncate(&mut self, path: &str) -> Result<()> {
        match self.stat(path)? {
            Some(st) if st.file_type == FileType::Regular => {}
            Some(_) => {
                return Err(remote(
                    ErrorKind::InvalidArgument,
                    format!("{path} is not a regular file"),
                ));
            }
            None => {
                return Err(remote(
                    ErrorKind::NotFound,
                    format!("{path} does not exist"),
                ));
            }
        }
        if !self.dry_run {
            self.s.truncate(path, 0)?;
        } else {
            self.dry_data.insert(path.to_string(), Vec::new());
        }
        self.record(Action::Truncate, path, None);
        Ok(())
    }

    /// `touch`: creates an empty file (0644, labelled) or updates the times.
    pub fn touch(&mut self, path: &str) -> Result<()> {
        check_path(path)?;
        if !self.exists(path)? {
            self.parent_dir(path)?;
            return self.replace(path, b"", NewAttrs::root(0o644));
        }
        if !self.dry_run {
            match self.s.call(Request::Touch { path: path.into() })? {
                Reply::Unit => {}
                other => return Err(unexpected(&other)),
            }
        }
        self.record(Action::Touch, path, None);
        Ok(())
    }

    pub fn chmod(&mut self, path: &str, mode: u32) -> Result<()> {
        if self.stat(path)?.is_none() {
            return Err(remote(
                ErrorKind::NotFound,
                format!("{path} does not exist"),
            ));
        }
        if !self.dry_run {
            self.s.chmod(path, mode & 0o7777)?;
        }
        self.record(Action::Chmod, path, Some(format!("{:04o}", mode & 0o7777)));
        Ok(())
    }

    pub fn chown(&mut self, path: &str, uid: u32, gid: u32) -> Result<()> {
        if !self.dry_run {
            self.chown_raw(path, uid, gid)?;
        }
        self.record(Action::Chown, path, Some(format!("{uid}:{gid}")));
        Ok(())
    }

    /// `ln -sf target link`: an existing non-directory `link` is replaced (atomically,
    /// through a temporary symlink renamed over it).
    pub fn symlink(&mut self, target: &str, link: &str) -> Result<()> {
        check_path(link)?;
        if target.is_empty() || target.contains('\0') || target.len() > 4095 {
            return Err(Error::InvalidArgument(format!(
                "{target:?}: invalid symlink target"
            )));
        }
        let parent = self.parent_dir(link)?;
        let old = self.lstat(link)?;
        if old
            .as_ref()
            .is_some_and(|s| s.file_type == FileType::Directory)
        {
            return Err(remote(
                ErrorKind::IsADirectory,
                format!("{link} is a directory"),
            ));
        }
        if self.dry_run {
            self.overlay
                .insert(link.to_string(), Some(FileType::Symlink));
        } else {
            let tmp = self.temp_name(&parent)?;
            let r = (|| {
                self.s.ln_s(target, &tmp)?;
                self.label_new(&tmp, link, FileType::Symlink).or_else(|e| {
                    // Labelling a symlink needs xattrs on symlinks; fall back to relabel.
                    if is_kind(&e, ErrorKind::Unsupported) {
                        self.relabel = true;
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
                self.s.rename(&tmp, link)
            })();
            if let Err(e) = r {
                let _ = self.s.rm(&tmp);
                return Err(e);
            }
        }
        self.record(Action::Symlink, link, Some(format!("-> {target}")));
        Ok(())
    }

    /// `mv from to` within one filesystem; `to` an existing directory: into it.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        check_path(from)?;
        check_path(to)?;
        if !self.exists(from)? {
            return Err(remote(
                ErrorKind::NotFound,
                format!("{from} does not exist"),
            ));
        }
        let dest = if self.is_dir(to)? {
            let (_, name) = split(from)?;
            super::glob::join(to, name)
        } else {
            to.to_string()
        };
        if self.dry_run {
            let t = self.lstat(from)?.map(|s| s.file_type);
            self.overlay.insert(from.to_string(), None);
            self.overlay.insert(dest.clone(), t);
            if let Some(d) = self.dry_data.remove(from) {
                self.dry_data.insert(dest.clone(), d);
            }
        } else {
            self.s.rename(from, &dest)?;
        }
        self.record(Action::Move, from, Some(format!("-> {dest}")));
        Ok(())
    }

    /// Records a change made by other means (e.g. a file upload into a new directory).
    pub fn recorded(&mut self, action: Action, path: &str, detail: Option<String>) {
        self.record(action, path, detail);
    }
}

/// A permission or owner change that the filesystem cannot hold (FAT: no Unix
/// permissions or owners) is skipped: the file is made all the same.
fn soft(r: Result<()>) -> Result<()> {
    match r {
        Err(e) if is_kind(&e, ErrorKind::Unsupported) => Ok(()),
        r => r,
    }
}

/// What the dry run knows of something it created.
fn fake_stat(t: FileType) -> Stat {
    Stat {
        file_type: t,
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: 0,
        nlink: 1,
        ino: 0,
        mtime: 0,
        atime: 0,
        ctime: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits() {
        assert_eq!(split("/etc/hostname").unwrap(), ("/etc", "hostname"));
        assert_eq!(split("/x").unwrap(), ("/", "x"));
        assert_eq!(split("/a/b/").unwrap(), ("/a", "b"));
        assert!(split("/").is_err());
        assert!(split("rel").is_err());
        assert!(split("/a/..").is_err());
        assert!(check_path("etc").is_err());
        assert!(check_path("/etc").is_ok());
    }
}
