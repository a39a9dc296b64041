//! ext4 write support through `rsext4`: [`Ext4Writer`] creates, writes, renames and
//! removes files on an ext4 filesystem on a [`SharedDevice`].
//!
//! Every mutating call mounts the filesystem with rsext4, performs the operation and
//! unmounts it again (journal committed and checkpointed, superblock marked clean), so
//! the image on the device is consistent after every call returns: the read side
//! (`ext4-view`) and `e2fsck -fn` both see a clean filesystem. Before rsext4 is ever
//! handed the device, `check` refuses features that have not been shown to come out
//! clean, naming them.

mod check;
mod dev;
mod fixup;
#[cfg(test)]
mod tests;

use super::super::FsResult;
use crate::block::SharedDevice;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use dev::DevIo;
use rsext4::{
    Clock, DirectoryEntryType, Ext4, Ext4Error, Ext4ErrorKind, Ext4Result, Ext4Timestamp,
    FileExtentTarget, FileName, FilePermissions, InodeInfo, InodeMetadataUpdate, InodeNumber,
    MountOptions, MountServices, MountedServices, MutationContext, NoopObserver, RenameOptions,
    XattrName, XattrNamespace, XattrSetMode,
};
use wire::{Error, ErrorKind};

/// Symlinks followed while resolving one path before giving up with `Loop`.
const MAX_SYMLINK_HOPS: u32 = 40;
/// Path components handled for one path (guards against huge crafted paths).
const MAX_COMPONENTS: usize = 4096;
/// Extent records inspected when estimating the space a write needs.
const MAX_EXTENTS_QUERIED: usize = 4096;
/// Blocks always kept in hand for a write: directory growth and extent-tree depth.
const SPACE_MARGIN_BLOCKS: u64 = 8;
/// Longest symlink target skiff writes (Linux PATH_MAX including the NUL).
const MAX_SYMLINK_TARGET: usize = 4095;

type Fs = Ext4<DevIo, MountedServices<(), NoopObserver, ()>>;

/// The time stamped on changed inodes. The appliance has no wall clock of its own.
struct FixedClock(i64);

impl Clock for FixedClock {
    fn now(&self) -> Ext4Result<Ext4Timestamp> {
        Ok(Ext4Timestamp::new(self.0, 0))
    }
}

/// Checks, without writing, that `dev` holds an ext4 filesystem skiff can write:
/// `Unsupported` naming the feature otherwise, `ReadOnly` for a read-only device,
/// `Corrupt` for a bad superblock.
pub fn mount_rw_supported(dev: &SharedDevice) -> FsResult<()> {
    check::check_superblock(dev).map(|_| ())
}

/// Writes to one ext4 filesystem. See the module documentation for the consistency model.
pub struct Ext4Writer {
    dev: SharedDevice,
    /// Seconds since the epoch stamped on changed inodes.
    now: i64,
    sb: check::SuperInfo,
    last_error: Rc<RefCell<Option<Error>>>,
    /// A mount kept across calls ([`Ext4Writer::begin_batch`]), with the groups whose
    /// inode bitmaps were uninitialised when it was made.
    batch: Option<(Fs, Vec<bool>)>,
}

/// The root directory's inode number (ext4 fixes it at 2).
fn root() -> InodeNumber {
    // OK to unwrap: 2 is a valid inode number.
    InodeNumber::new(2).unwrap()
}

fn kind_of(e: Ext4ErrorKind) -> ErrorKind {
    use Ext4ErrorKind as K;
    match e {
        K::NotFound => ErrorKind::NotFound,
        K::AlreadyExists => ErrorKind::AlreadyExists,
        K::NotDirectory => ErrorKind::NotADirectory,
        K::IsDirectory => ErrorKind::IsADirectory,
        K::NotEmpty => ErrorKind::NotEmpty,
        K::ReadOnly => ErrorKind::ReadOnly,
        K::NoSpace | K::QuotaExceeded => ErrorKind::NoSpace,
        K::UnsupportedFeature | K::UnsupportedCapability | K::Unsupported => ErrorKind::Unsupported,
        K::Corrupted | K::ChecksumMismatch | K::BadSuperblock | K::InvalidMagic => {
            ErrorKind::Corrupt
        }
        K::InvalidInput | K::Overflow | K::BadFileDescriptor | K::PermissionDenied => {
            ErrorKind::InvalidArgument
        }
        K::TooManyLinks => ErrorKind::InvalidArgument,
        K::FileTooLarge => ErrorKind::TooLarge,
        K::Busy => ErrorKind::Busy,
        K::Io | K::Timeout | K::JournalAborted | K::NoMemory => ErrorKind::Io,
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidArgument, msg)
}

/// Splits an absolute path into its components (empty ones and `.` dropped).
fn components(path: &str) -> FsResult<Vec<&str>> {
    if !path.starts_with('/') {
        return Err(invalid(format!("path {path:?} is not absolute")));
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.len() > MAX_COMPONENTS {
        return Err(invalid("path has too many components"));
    }
    Ok(parts)
}

/// Splits `path` into its parent directory path and final name, refusing `/`, `.`, `..`.
fn split_parent(path: &str) -> FsResult<(String, &str)> {
    let parts = components(path)?;
    let (&name, dirs) = parts
        .split_last()
        .ok_or_else(|| invalid(format!("{path:?} names the root directory")))?;
    if name == ".." {
        return Err(invalid(format!("{path:?} ends in \"..\"")));
    }
    let mut parent = String::from("/");
    parent.push_str(&dirs.join("/"));
    Ok((parent, name))
}

fn file_name(name: &str) -> FsResult<FileName<'_>> {
    FileName::new(name.as_bytes()).map_err(|_| invalid(format!("bad file name {name:?}")))
}

fn permissions(mode: u32) -> FsResult<FilePermissions> {
    // Masked to 0o7777: always valid.
    FilePermissions::new((mode & 0o7777) as u16).map_err(|_| invalid(format!("bad mode {mode:#o}")))
}

const ROOT_CTX: MutationContext = MutationContext::new(0, 0, 0, 0);

impl Ext4Writer {
    /// Opens `dev` for writing after checking (without writing) that its features are
    /// supported and that rsext4 can mount it.
    pub fn open(dev: SharedDevice) -> FsResult<Self> {
        let info = check::check_superblock(&dev)?;
        let w = Ext4Writer {
            dev,
            now: i64::from(info.wtime),
            sb: info,
            last_error: Rc::new(RefCell::new(None)),
            batch: None,
        };
        // A read-only trial mount: validates descriptors, checksums, the journal
        // superblock and the root directory without writing anything.
        let trial = Ext4::mount(
            DevIo::new(w.dev.clone(), w.last_error.clone()),
            MountServices::new(FixedClock(w.now), (), NoopObserver),
            MountOptions::read_only_no_journal_replay(),
        );
        match trial {
            Ok(mut fs) => {
                let _ = fs.unmount();
            }
            Err(e) => return Err(w.err("mount", e)),
        }
        Ok(w)
    }

    /// Sets the time (seconds since the epoch) stamped on inodes changed from now on.
    /// Until called, the superblock's last write time is used.
    pub fn set_time(&mut self, unix_seconds: i64) {
        self.now = unix_seconds;
    }

    /// The filesystem block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.sb.block_size
    }

    fn err(&self, what: &str, e: Ext4Error) -> Error {
        if let Some(dev) = self.last_error.borrow_mut().take() {
            return Error::new(dev.kind, format!("ext4 {what}: {}", dev.message));
        }
        Error::new(kind_of(e.kind()), format!("ext4 {what}: {e}"))
    }

    /// Mounts read-write, runs `op`, unmounts, then repairs inode-bitmap padding (see
    /// `fixup`). The unmount runs even when `op` fails, so the image is left consistent
    /// either way.
    fn with_fs<T>(&mut self, what: &str, op: impl FnOnce(&mut Fs) -> FsResult<T>) -> FsResult<T> {
        *self.last_error.borrow_mut() = None;
        if let Some((fs, _)) = self.batch.as_mut() {
            return op(fs);
        }
        let uninit = fixup::inode_uninit(&self.dev, &self.sb)?;
        let mut fs = Ext4::mount(
            DevIo::new(self.dev.clone(), self.last_error.clone()),
            MountServices::new(FixedClock(self.now), (), NoopObserver),
            MountOptions::read_write(),
        )
        .map_err(|e| self.err(what, e))?;
        let result = op(&mut fs);
        let unmounted = fs.unmount();
        drop(fs);
        let padded = match unmounted {
            Ok(()) => fixup::pad_new_inode_bitmaps(&self.dev, &self.sb, &uninit).map(|_| ()),
            Err(_) => Ok(()),
        };
        let unmounted = unmounted.map_err(|e| self.err(what, e)).and(padded);
        match (result, unmounted) {
            (Ok(v), Ok(())) => Ok(v),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
        }
    }

    pub fn write(
        &mut self,
        path: &str,
        offset: u64,
        data: &[u8],
        truncate: bool,
        mode: u32,
    ) -> FsResult<u64> {
        let (parent, name) = split_parent(path)?;
        let perms = permissions(mode)?;
        let len = data.len() as u64;
        offset
            .checked_add(len)
            .ok_or_else(|| Error::new(ErrorKind::TooLarge, "offset + length overflows"))?;
        self.with_fs("write", |fs| {
            let dir = resolve_dir(fs, &parent)?;
            let ino = match lookup(fs, dir, name)? {
                Some(info) => {
                    let info = if info.file_type() == DirectoryEntryType::Symlink {
                        resolve(fs, path, true)?
                    } else {
                        info
                    };
                    match info.file_type() {
                        DirectoryEntryType::RegularFile => info.number,
                        DirectoryEntryType::Directory => {
                            return Err(Error::new(
                                ErrorKind::IsADirectory,
                                format!("{path} is a directory"),
                            ));
                        }
                        _ => return Err(invalid(format!("{path} is not a regular file"))),
                    }
                }
                None => {
                    fs.create_regular_file(ROOT_CTX, dir, file_name(name)?, perms)
                        .map_err(|e| map(e, "create"))?
                        .number
                }
            };
            ensure_space(fs, ino, offset, len, truncate)?;
            if truncate {
                fs.truncate_inode(ino, 0).map_err(|e| map(e, "truncate"))?;
            }
            fs.write_inode(ino, offset, data)
                .map_err(|e| map(e, "write"))?;
            Ok(len)
        })
    }

    pub fn mkdir(&mut self, path: &str, mode: u32) -> FsResult<()> {
        let (parent, name) = split_parent(path)?;
        let perms = permissions(mode)?;
        self.with_fs("mkdir", |fs| {
            let dir = resolve_dir(fs, &parent)?;
            if lookup(fs, dir, name)?.is_some() {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{path} already exists"),
                ));
            }
            fs.create_directory(ROOT_CTX, dir, file_name(name)?, perms)
                .map_err(|e| map(e, "mkdir"))?;
            Ok(())
        })
    }

    pub fn unlink(&mut self, path: &str) -> FsResult<()> {
        let (parent, name) = split_parent(path)?;
        self.with_fs("unlink", |fs| {
            let dir = resolve_dir(fs, &parent)?;
            let info = lookup(fs, dir, name)?.ok_or_else(|| not_found(path))?;
            if info.is_directory() {
                return Err(Error::new(
                    ErrorKind::IsADirectory,
                    format!("{path} is a directory"),
                ));
            }
            let out = fs
                .unlink(dir, file_name(name)?)
                .map_err(|e| map(e, "unlink"))?;
            if out.requires_reap() {
                fs.reap_unlinked_inode(out.inode)
                    .map_err(|e| map(e, "free inode"))?;
            }
            Ok(())
        })
    }

    pub fn rmdir(&mut self, path: &str) -> FsResult<()> {
        let (parent, name) = split_parent(path)?;
        self.with_fs("rmdir", |fs| {
            let dir = resolve_dir(fs, &parent)?;
            let info = lookup(fs, dir, name)?.ok_or_else(|| not_found(path))?;
            if !info.is_directory() {
                return Err(Error::new(
                    ErrorKind::NotADirectory,
                    format!("{path} is not a directory"),
                ));
            }
            let out = fs
                .remove_empty_directory(dir, file_name(name)?)
                .map_err(|e| map(e, "rmdir"))?;
            if out.requires_reap() {
                fs.reap_unlinked_inode(out.inode)
                    .map_err(|e| map(e, "free inode"))?;
            }
            Ok(())
        })
    }

    pub fn rename(&mut self, from: &str, to: &str) -> FsResult<()> {
        let (from_parent, from_name) = split_parent(from)?;
        let (to_parent, to_name) = split_parent(to)?;
        self.with_fs("rename", |fs| {
            let src_dir = resolve_dir(fs, &from_parent)?;
            let (dst_info, dst_ancestors) = resolve_walk_stack(fs, &to_parent, true)?;
            if !dst_info.is_directory() {
                return Err(Error::new(
                    ErrorKind::NotADirectory,
                    format!("{to_parent} is not a directory"),
                ));
            }
            let dst_dir = dst_info.number;
            let src = lookup(fs, src_dir, from_name)?.ok_or_else(|| not_found(from))?;
            if src_dir == dst_dir && from_name == to_name {
                return Ok(());
            }
            if let Some(dst) = lookup(fs, dst_dir, to_name)? {
                if dst.number == src.number {
                    return Ok(());
                }
                match (src.is_directory(), dst.is_directory()) {
                    (true, false) => {
                        return Err(Error::new(
                            ErrorKind::NotADirectory,
                            format!("{to} is not a directory"),
                        ));
                    }
                    (false, true) => {
                        return Err(Error::new(
                            ErrorKind::IsADirectory,
                            format!("{to} is a directory"),
                        ));
                    }
                    _ => {}
                }
            }
            // Moving a directory below itself would detach a loop from the tree.
            if src.is_directory() && dst_ancestors.contains(&src.number) {
                return Err(invalid(format!("cannot move {from} inside itself ({to})")));
            }
            let out = fs
                .rename(
                    src_dir,
                    file_name(from_name)?,
                    dst_dir,
                    file_name(to_name)?,
                    RenameOptions::REPLACE,
                )
                .map_err(|e| map(e, "rename"))?;
            if let Some(replaced) = out.replaced
                && replaced.requires_reap()
            {
                fs.reap_unlinked_inode(replaced.inode)
                    .map_err(|e| map(e, "free replaced inode"))?;
            }
            Ok(())
        })
    }

    pub fn chmod(&mut self, path: &str, mode: u32) -> FsResult<()> {
        let perms = permissions(mode)?;
        self.with_fs("chmod", |fs| {
            let info = resolve(fs, path, true)?;
            let update = InodeMetadataUpdate {
                permissions: Some(perms),
                ..InodeMetadataUpdate::default()
            };
            fs.update_inode_metadata(info.number, update)
                .map_err(|e| map(e, "chmod"))?;
            Ok(())
        })
    }

    pub fn symlink(&mut self, target: &str, linkpath: &str) -> FsResult<()> {
        let (parent, name) = split_parent(linkpath)?;
        if target.is_empty() || target.len() > MAX_SYMLINK_TARGET || target.contains('\0') {
            return Err(invalid(format!(
                "symlink target must be 1 to {MAX_SYMLINK_TARGET} bytes without NUL"
            )));
        }
        self.with_fs("symlink", |fs| {
            let dir = resolve_dir(fs, &parent)?;
            if lookup(fs, dir, name)?.is_some() {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{linkpath} already exists"),
                ));
            }
            fs.create_symlink(ROOT_CTX, dir, file_name(name)?, target.as_bytes())
                .map_err(|e| map(e, "symlink"))?;
            Ok(())
        })
    }

    pub fn truncate(&mut self, path: &str, size: u64) -> FsResult<()> {
        self.with_fs("truncate", |fs| {
            let info = resolve(fs, path, true)?;
            match info.file_type() {
                DirectoryEntryType::RegularFile => {}
                DirectoryEntryType::Directory => {
                    return Err(Error::new(
                        ErrorKind::IsADirectory,
                        format!("{path} is a directory"),
                    ));
                }
                _ => return Err(invalid(format!("{path} is not a regular file"))),
            }
            fs.truncate_inode(info.number, size)
                .map_err(|e| map(e, "truncate"))?;
            Ok(())
        })
    }

    pub fn get_xattr(&mut self, path: &str, name: &str) -> FsResult<Vec<u8>> {
        let (ns, n) = xattr_namespace(name)?;
        self.with_fs("getxattr", |fs| {
            let info = resolve(fs, path, true)?;
            fs.get_xattr(info.number, ns, n.as_bytes())
                .map_err(|e| map(e, "getxattr"))
        })
    }

    pub fn list_xattrs(&mut self, path: &str) -> FsResult<Vec<String>> {
        self.with_fs("listxattr", |fs| {
            let info = resolve(fs, path, true)?;
            let names = fs
                .list_xattrs(info.number)
                .map_err(|e| map(e, "listxattr"))?;
            Ok(names.iter().filter_map(xattr_full_name).collect())
        })
    }

    pub fn set_xattr(&mut self, path: &str, name: &str, value: &[u8]) -> FsResult<()> {
        let (ns, n) = xattr_namespace(name)?;
        self.with_fs("setxattr", |fs| {
            let info = resolve(fs, path, true)?;
            fs.set_xattr(info.number, ns, n.as_bytes(), value, XattrSetMode::Upsert)
                .map_err(|e| map(e, "setxattr"))
        })
    }

    pub fn remove_xattr(&mut self, path: &str, name: &str) -> FsResult<()> {
        let (ns, n) = xattr_namespace(name)?;
        self.with_fs("removexattr", |fs| {
            let info = resolve(fs, path, true)?;
            fs.remove_xattr(info.number, ns, n.as_bytes())
                .map_err(|e| map(e, "removexattr"))
        })
    }

    /// Every call already leaves the filesystem written back (a batch is ended first);
    /// this flushes the device.
    pub fn sync(&mut self) -> FsResult<()> {
        self.end_batch()?;
        self.dev.borrow_mut().flush()
    }

    /// Keeps the filesystem mounted across the calls that follow, until
    /// [`Ext4Writer::end_batch`]: many small changes (a tree copied in) then cost one
    /// mount and one journal commit instead of one each. Between the two the image is
    /// mid-transaction, as under a running kernel; `end_batch` leaves it clean.
    pub fn begin_batch(&mut self) -> FsResult<()> {
        if self.batch.is_some() {
            return Ok(());
        }
        *self.last_error.borrow_mut() = None;
        let uninit = fixup::inode_uninit(&self.dev, &self.sb)?;
        let fs = Ext4::mount(
            DevIo::new(self.dev.clone(), self.last_error.clone()),
            MountServices::new(FixedClock(self.now), (), NoopObserver),
            MountOptions::read_write(),
        )
        .map_err(|e| self.err("mount", e))?;
        self.batch = Some((fs, uninit));
        Ok(())
    }

    /// Unmounts a batch mount (journal committed and checkpointed, superblock clean) and
    /// repairs the inode-bitmap padding; nothing when no batch is open.
    pub fn end_batch(&mut self) -> FsResult<()> {
        let Some((mut fs, uninit)) = self.batch.take() else {
            return Ok(());
        };
        let unmounted = fs.unmount();
        drop(fs);
        unmounted.map_err(|e| self.err("unmount", e))?;
        fixup::pad_new_inode_bitmaps(&self.dev, &self.sb, &uninit).map(|_| ())
    }

    /// Is a batch mount open?
    pub fn in_batch(&self) -> bool {
        self.batch.is_some()
    }

    /// Attributes through rsext4 (what a batch sees before it is written out).
    pub fn stat(&mut self, path: &str, follow: bool) -> FsResult<wire::Stat> {
        self.with_fs("stat", |fs| {
            let i = resolve(fs, path, follow)?;
            let file_type = match i.file_type() {
                DirectoryEntryType::RegularFile => wire::FileType::Regular,
                DirectoryEntryType::Directory => wire::FileType::Directory,
                DirectoryEntryType::Symlink => wire::FileType::Symlink,
                DirectoryEntryType::CharacterDevice => wire::FileType::CharDevice,
                DirectoryEntryType::BlockDevice => wire::FileType::BlockDevice,
                DirectoryEntryType::Fifo => wire::FileType::Fifo,
                DirectoryEntryType::Socket => wire::FileType::Socket,
                _ => wire::FileType::Unknown,
            };
            Ok(wire::Stat {
                file_type,
                mode: u32::from(i.mode & 0o7777),
                uid: i.uid,
                gid: i.gid,
                size: i.size,
                nlink: u32::from(i.links),
                ino: i.number.as_u64(),
                mtime: i64::from(i.mtime),
                atime: i64::from(i.atime),
                ctime: i64::from(i.ctime),
            })
        })
    }

    /// Sets the owner of `path` (not following a final symlink).
    pub fn chown(&mut self, path: &str, uid: u32, gid: u32) -> FsResult<()> {
        self.with_fs("chown", |fs| {
            let info = resolve(fs, path, false)?;
            let update = InodeMetadataUpdate {
                owner: Some((uid, gid)),
                ..InodeMetadataUpdate::default()
            };
            fs.update_inode_metadata(info.number, update)
                .map_err(|e| map(e, "chown"))?;
            Ok(())
        })
    }

    /// Sets the access and modification times of `path` (not following a final
    /// symlink).
    pub fn set_times(&mut self, path: &str, atime: i64, mtime: i64) -> FsResult<()> {
        self.with_fs("utimes", |fs| {
            let info = resolve(fs, path, false)?;
            let update = InodeMetadataUpdate {
                atime: Some(Ext4Timestamp::new(atime, 0)),
                mtime: Some(Ext4Timestamp::new(mtime, 0)),
                ..InodeMetadataUpdate::default()
            };
            fs.update_inode_metadata(info.number, update)
                .map_err(|e| map(e, "utimes"))?;
            Ok(())
        })
    }
}

/// Refuses, before anything is allocated, a write that might not fit.
///
/// rsext4 0.9.2 does not give back the blocks it allocated for a write that then fails
/// with `NoSpace` (e2fsck: "Block bitmap differences"), so running out of space in the
/// middle of a write must not happen. This bounds the blocks the write can allocate
/// (unmapped blocks in the range, extent-tree blocks, a margin for the directory
/// entry of a new file) and compares it with the free count.
fn ensure_space(
    fs: &mut Fs,
    ino: InodeNumber,
    offset: u64,
    len: u64,
    truncate: bool,
) -> FsResult<()> {
    if len == 0 {
        return Ok(());
    }
    let st = fs.statfs();
    let bs = st.block_size.max(1024);
    let first = offset / bs;
    let last = (offset + len - 1) / bs; // offset + len checked by the caller
    let range = last - first + 1;
    let info = fs.inode(ino).map_err(|e| map(e, "stat"))?;
    let (mapped, freed) = if truncate {
        // Truncation frees the file's blocks first (i_blocks counts 512-byte units).
        (0, info.blocks.saturating_mul(512) / bs)
    } else {
        let map_result = fs.inode_extents(
            ino,
            first * bs,
            range * bs,
            FileExtentTarget::Data,
            MAX_EXTENTS_QUERIED,
        );
        let extents = map_result.map_err(|e| map(e, "extent map"))?;
        let start = first * bs;
        let end = (last + 1) * bs;
        let bytes: u64 = extents
            .extents
            .iter()
            .map(|x| {
                let a = x.logical_start.max(start);
                let b = x.logical_start.saturating_add(x.length).min(end);
                b.saturating_sub(a)
            })
            .sum();
        (bytes / bs, 0)
    };
    let data = range.saturating_sub(mapped);
    // Each extent-tree block holds (bs - 12) / 12 entries; every new block could in the
    // worst case start a new extent. Plus tree growth and the new directory entry.
    let per_index = (bs - 12) / 12;
    let need = data + data.div_ceil(per_index) * 2 + SPACE_MARGIN_BLOCKS;
    let free = st.free_blocks.saturating_add(freed);
    if need > free {
        return Err(Error::new(
            ErrorKind::NoSpace,
            format!("ext4 write: needs up to {need} blocks of {bs} bytes, {free} free"),
        ));
    }
    Ok(())
}

fn map(e: Ext4Error, what: &str) -> Error {
    Error::new(kind_of(e.kind()), format!("ext4 {what}: {e}"))
}

fn not_found(path: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("{path} does not exist"))
}

/// The entry `name` in directory `dir`, if any. `..` is looked up on disk.
fn lookup(fs: &mut Fs, dir: InodeNumber, name: &str) -> FsResult<Option<InodeInfo>> {
    fs.lookup_child(dir, file_name(name)?)
        .map_err(|e| map(e, "lookup"))
}

/// Reads a symlink's target (bounded).
fn read_link(fs: &mut Fs, info: &InodeInfo) -> FsResult<String> {
    let len = usize::try_from(info.size)
        .ok()
        .filter(|&l| l > 0 && l <= MAX_SYMLINK_TARGET)
        .ok_or_else(|| Error::new(ErrorKind::Corrupt, "bad symlink length"))?;
    let mut buf = alloc::vec![0u8; len];
    let n = fs
        .read_inode(info.number, 0, &mut buf)
        .map_err(|e| map(e, "readlink"))?;
    buf.truncate(n);
    String::from_utf8(buf).map_err(|_| invalid("symlink target is not UTF-8"))
}

/// Resolves an absolute path to its inode; `follow_last` follows a final symlink.
/// Linux's `namespace.name` as ext4 stores it: the namespace index and the rest.
fn xattr_namespace(name: &str) -> FsResult<(XattrNamespace, &str)> {
    let bad = || invalid(format!("{name:?}: unknown extended attribute namespace"));
    let (ns, rest) = name.split_once('.').ok_or_else(bad)?;
    Ok(match (ns, rest) {
        ("user", n) => (XattrNamespace::User, n),
        ("trusted", n) => (XattrNamespace::Trusted, n),
        ("security", n) => (XattrNamespace::Security, n),
        ("system", "posix_acl_access") => (XattrNamespace::PosixAclAccess, ""),
        ("system", "posix_acl_default") => (XattrNamespace::PosixAclDefault, ""),
        ("system", n) => (XattrNamespace::System, n),
        _ => return Err(bad()),
    })
}

/// The Linux name of a stored attribute; `None` for namespaces Linux does not show.
fn xattr_full_name(x: &XattrName) -> Option<String> {
    let n = core::str::from_utf8(&x.name).ok()?;
    Some(match x.namespace {
        XattrNamespace::User => format!("user.{n}"),
        XattrNamespace::Trusted => format!("trusted.{n}"),
        XattrNamespace::Security => format!("security.{n}"),
        XattrNamespace::PosixAclAccess => String::from("system.posix_acl_access"),
        XattrNamespace::PosixAclDefault => String::from("system.posix_acl_default"),
        XattrNamespace::System => format!("system.{n}"),
        _ => return None,
    })
}

fn resolve(fs: &mut Fs, path: &str, follow_last: bool) -> FsResult<InodeInfo> {
    components(path)?;
    resolve_walk(fs, path, follow_last)
}

/// Walks `path` from the root, following intermediate symlinks (and the last one
/// when `follow_last`), within a bounded number of hops and components.
fn resolve_walk(fs: &mut Fs, path: &str, follow_last: bool) -> FsResult<InodeInfo> {
    resolve_walk_stack(fs, path, follow_last).map(|(info, _)| info)
}

/// [`resolve_walk`], also returning the directories from the root down to the result
/// (the physical path, symlinks resolved; the result itself included when a directory).
fn resolve_walk_stack(
    fs: &mut Fs,
    path: &str,
    follow_last: bool,
) -> FsResult<(InodeInfo, Vec<InodeNumber>)> {
    let mut hops = MAX_SYMLINK_HOPS;
    // Remaining components, next one last (so pop() yields it).
    let mut queue: Vec<String> = path
        .rsplit('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(String::from)
        .collect();
    // The directories walked through, for `..`.
    let mut stack: Vec<InodeNumber> = alloc::vec![root()];
    let mut steps = 0usize;
    let mut current = fs
        .inode(*stack.last().ok_or_else(|| invalid("empty"))?)
        .map_err(|e| map(e, "lookup"))?;
    while let Some(name) = queue.pop() {
        steps += 1;
        if steps > MAX_COMPONENTS {
            return Err(invalid("path has too many components"));
        }
        if !current.is_directory() {
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("{path}: a component is not a directory"),
            ));
        }
        let dir = current.number;
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            let top = *stack.last().ok_or_else(|| invalid("empty"))?;
            current = fs.inode(top).map_err(|e| map(e, "lookup"))?;
            continue;
        }
        let info = lookup(fs, dir, &name)?
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("{path} does not exist")))?;
        let last = queue.is_empty();
        if info.file_type() == DirectoryEntryType::Symlink && (!last || follow_last) {
            hops = hops
                .checked_sub(1)
                .ok_or_else(|| Error::new(ErrorKind::Loop, format!("{path}: symlink loop")))?;
            let target = read_link(fs, &info)?;
            if target.starts_with('/') {
                stack.clear();
                stack.push(root());
            }
            for c in target.rsplit('/') {
                if !c.is_empty() && c != "." {
                    queue.push(String::from(c));
                }
            }
            if queue.len() > MAX_COMPONENTS {
                return Err(invalid("path has too many components"));
            }
            let top = *stack.last().ok_or_else(|| invalid("empty"))?;
            current = fs.inode(top).map_err(|e| map(e, "lookup"))?;
            continue;
        }
        if info.is_directory() {
            stack.push(info.number);
        }
        current = info;
    }
    Ok((current, stack))
}

/// Resolves a path that must name a directory (following symlinks).
fn resolve_dir(fs: &mut Fs, path: &str) -> FsResult<InodeNumber> {
    let info = resolve(fs, path, true)?;
    if !info.is_directory() {
        return Err(Error::new(
            ErrorKind::NotADirectory,
            format!("{path} is not a directory"),
        ));
    }
    Ok(info.number)
}
