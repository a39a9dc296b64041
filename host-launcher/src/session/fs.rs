//! Filesystem operations on a [`Session`]: partitions, probing, mounts, and typed path
//! calls (read, list, stat, find, write, mkdir, remove, ...) over the wire requests.
//! Bulk data moves in calls of at most [`MAX_CHUNK`] bytes in both directions, so a file
//! of any size streams without one huge frame.
//!
//! Guest paths are absolute paths in the appliance's mount tree (`/etc/passwd`, with a
//! filesystem mounted at `/` first). An error the appliance reports for one call is
//! [`Error::Remote`] and leaves the session usable.

use crate::error::{Error, Result};
use crate::session::{Session, unexpected};
use std::collections::VecDeque;
use std::io::{Read, Write};
use wire::{
    Bytes, DirEntry, ErrorKind, FileType, Filesystem, MAX_CHUNK, Mount, Partition, Reply, Request,
    Stat, StatVfs,
};

/// How [`Session::mount`] mounts a filesystem.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// Mount read-only (writes fail with `ReadOnly`). A read-only drive is always
    /// mounted read-only, whatever this says.
    pub readonly: bool,
    /// `ext4`, `vfat`, ...; `None` detects the type.
    pub fstype: Option<String>,
}

impl MountOptions {
    /// Read-only, type detected.
    pub fn readonly() -> Self {
        MountOptions {
            readonly: true,
            fstype: None,
        }
    }

    /// Read-write, type detected.
    pub fn writable() -> Self {
        MountOptions {
            readonly: false,
            fstype: None,
        }
    }
}

/// libguestfs' prefix for a btrfs subvolume as a mountable device:
/// `btrfsvol:/dev/sda3/home` (listed by [`Session::filesystems`], taken by
/// [`Session::mount`]).
pub const BTRFSVOL: &str = "btrfsvol:";

/// The mountable name of subvolume `subvol` (a path below the top level, `home`,
/// `root`, `@/var`) of the btrfs on `device`: `btrfsvol:/dev/sda3/home`.
pub fn btrfs_subvolume(device: &str, subvol: &str) -> String {
    format!("{BTRFSVOL}{device}/{}", subvol.trim_matches('/'))
}

/// Mode of files created by [`Session::write_file`] and [`Session::upload`].
pub const FILE_MODE: u32 = 0o644;
/// Mode of directories created by [`Session::mkdir`] and [`Session::mkdir_p`].
pub const DIR_MODE: u32 = 0o755;

/// True when `e` is the appliance saying "no such file or directory".
pub fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Remote(r) if r.kind == ErrorKind::NotFound)
}

impl Session {
    fn unit(&mut self, request: Request) -> Result<()> {
        match self.call(request)? {
            Reply::Unit => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn stat_reply(&mut self, request: Request) -> Result<Stat> {
        match self.call(request)? {
            Reply::Stat(s) => Ok(s),
            other => Err(unexpected(&other)),
        }
    }

    /// The partitions of every disk (MBR and GPT), `/dev/sda1`, ... in libguestfs
    /// numbering.
    ///
    /// ```no_run
    /// # let mut s = skiff::Appliance::builder().add_drive("disk.img", skiff::DriveOptions::readonly()).launch()?;
    /// for p in s.partitions()? {
    ///     println!("{} start={} size={} type={}", p.name, p.start, p.size, p.part_type);
    /// }
    /// # Ok::<(), skiff::Error>(())
    /// ```
    pub fn partitions(&mut self) -> Result<Vec<Partition>> {
        match self.call(Request::Partitions)? {
            Reply::Partitions(p) => Ok(p),
            other => Err(unexpected(&other)),
        }
    }

    /// One entry per disk and partition with its filesystem type (`ext4`, `vfat`, ...,
    /// or `unknown`), label, UUID and size: `virt-filesystems --all --long`.
    ///
    /// ```no_run
    /// # let mut s = skiff::Appliance::builder().add_drive("disk.img", skiff::DriveOptions::readonly()).launch()?;
    /// for f in s.filesystems()? {
    ///     println!("{} {} {:?}", f.device, f.fstype, f.label);
    /// }
    /// # Ok::<(), skiff::Error>(())
    /// ```
    pub fn filesystems(&mut self) -> Result<Vec<Filesystem>> {
        match self.call(Request::Filesystems)? {
            Reply::Filesystems(f) => Ok(f),
            other => Err(unexpected(&other)),
        }
    }

    /// Mounts the filesystem on `device` (`/dev/sda`, `/dev/sda2`) at `mountpoint`
    /// (`/` first; others must be existing directories below a mount).
    ///
    /// ```no_run
    /// use skiff::{Appliance, DriveOptions, MountOptions};
    /// let mut s = Appliance::builder().add_drive("disk.img", DriveOptions::readonly()).launch()?;
    /// s.mount("/dev/sda2", "/", MountOptions::readonly())?;
    /// s.mount("/dev/sda1", "/boot/efi", MountOptions::readonly())?;
    /// # Ok::<(), skiff::Error>(())
    /// ```
    pub fn mount(&mut self, device: &str, mountpoint: &str, opts: MountOptions) -> Result<()> {
        self.unit(Request::Mount {
            device: device.into(),
            mountpoint: mountpoint.into(),
            readonly: opts.readonly,
            fstype: opts.fstype,
        })
    }

    /// Syncs and unmounts the filesystem mounted at `mountpoint`.
    pub fn umount(&mut self, mountpoint: &str) -> Result<()> {
        self.unit(Request::Umount {
            mountpoint: mountpoint.into(),
        })
    }

    /// The current mounts.
    pub fn mounts(&mut self) -> Result<Vec<Mount>> {
        match self.call(Request::Mounts)? {
            Reply::Mounts(m) => Ok(m),
            other => Err(unexpected(&other)),
        }
    }

    /// The entries of one directory (without `.` and `..`), sorted by name, each with
    /// its attributes (not following symlinks).
    ///
    /// ```no_run
    /// # let mut s = skiff::Appliance::builder().add_drive("disk.img", skiff::DriveOptions::readonly()).launch()?;
    /// # s.mount("/dev/sda", "/", skiff::MountOptions::readonly())?;
    /// for e in s.read_dir("/etc")? {
    ///     println!("{:o} {} {}", e.stat.mode, e.stat.size, e.name);
    /// }
    /// # Ok::<(), skiff::Error>(())
    /// ```
    pub fn read_dir(&mut self, path: &str) -> Result<Vec<DirEntry>> {
        match self.call(Request::ReadDir { path: path.into() })? {
            Reply::DirEntries(d) => Ok(d),
            other => Err(unexpected(&other)),
        }
    }

    /// The names in one directory, sorted.
    pub fn ls(&mut self, path: &str) -> Result<Vec<String>> {
        Ok(self.read_dir(path)?.into_iter().map(|e| e.name).collect())
    }

    /// Attributes of `path`, following a final symlink.
    pub fn stat(&mut self, path: &str) -> Result<Stat> {
        self.stat_reply(Request::Stat { path: path.into() })
    }

    /// Attributes of `path` itself (a symlink is not followed).
    pub fn lstat(&mut self, path: &str) -> Result<Stat> {
        self.stat_reply(Request::Lstat { path: path.into() })
    }

    /// The target of the symlink at `path`.
    pub fn readlink(&mut self, path: &str) -> Result<String> {
        match self.call(Request::Readlink { path: path.into() })? {
            Reply::Text(t) => Ok(t),
            other => Err(unexpected(&other)),
        }
    }

    /// Up to `len` bytes of the file at `offset`, in calls of at most [`MAX_CHUNK`];
    /// short only at the end of the file.
    pub fn pread(&mut self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        offset
            .checked_add(len)
            .ok_or_else(|| Error::InvalidArgument("offset + length overflows".into()))?;
        let mut out = Vec::with_capacity(len.min(64 << 20) as usize);
        self.pread_to(path, offset, len, &mut out)?;
        Ok(out)
    }

    /// Streams up to `len` bytes at `offset` into `w`; returns the bytes copied.
    pub(crate) fn pread_to(
        &mut self,
        path: &str,
        offset: u64,
        len: u64,
        w: &mut impl Write,
    ) -> Result<u64> {
        // Two reads in flight: the appliance reads chunk n+1 while the host receives and
        // writes chunk n (measured: 64 MiB copy-out 172 -> see bench/fs.sh).
        const DEPTH: usize = 2;
        let mut inflight: VecDeque<(u64, u32)> = VecDeque::with_capacity(DEPTH);
        let mut asked = 0u64;
        let mut done = 0u64;
        let mut outcome: Result<()> = Ok(());
        let mut more = true;
        loop {
            while more && outcome.is_ok() && inflight.len() < DEPTH && asked < len {
                let want = (len - asked).min(u64::from(MAX_CHUNK)) as u32;
                let Some(at) = offset.checked_add(asked) else {
                    outcome = Err(Error::InvalidArgument("offset + length overflows".into()));
                    break;
                };
                match self.submit(Request::Pread {
                    path: path.into(),
                    offset: at,
                    len: want,
                }) {
                    Ok(id) => inflight.push_back((id, want)),
                    // The session is closed: nothing in flight can be read any more.
                    Err(e) => return Err(e),
                }
                asked += u64::from(want);
            }
            // Every submitted call is completed, even after an error or a short read, so
            // the channel stays in step.
            let Some((id, want)) = inflight.pop_front() else {
                break;
            };
            let reply = match self.complete(id) {
                Ok(r) => r,
                Err(e @ Error::Remote(_)) => {
                    if outcome.is_ok() {
                        outcome = Err(e);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            if outcome.is_err() || !more {
                continue;
            }
            let Reply::Data(Bytes(data)) = reply else {
                outcome = Err(unexpected(&reply));
                continue;
            };
            if data.len() > want as usize {
                outcome = Err(Error::BadFrame(format!(
                    "asked for {want} bytes, got {}",
                    data.len()
                )));
                continue;
            }
            if let Err(e) = w.write_all(&data) {
                outcome = Err(e.into());
                continue;
            }
            done += data.len() as u64;
            if data.len() < want as usize {
                more = false;
            }
        }
        outcome.map(|()| done)
    }

    /// The whole file, read in [`MAX_CHUNK`] calls until a short one.
    ///
    /// ```no_run
    /// # let mut s = skiff::Appliance::builder().add_drive("disk.img", skiff::DriveOptions::readonly()).launch()?;
    /// # s.mount("/dev/sda", "/", skiff::MountOptions::readonly())?;
    /// let passwd = String::from_utf8_lossy(&s.read_file("/etc/passwd")?).into_owned();
    /// # Ok::<(), skiff::Error>(())
    /// ```
    pub fn read_file(&mut self, path: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.download(path, &mut out)?;
        Ok(out)
    }

    /// Streams the whole file into `w` (never holding more than one chunk); returns
    /// its size. A directory is an `IsADirectory` error.
    ///
    /// ```no_run
    /// # let mut s = skiff::Appliance::builder().add_drive("disk.img", skiff::DriveOptions::readonly()).launch()?;
    /// # s.mount("/dev/sda", "/", skiff::MountOptions::readonly())?;
    /// let mut f = std::fs::File::create("initrd.img")?;
    /// s.download("/boot/initrd.img", &mut f)?;
    /// # Ok::<(), skiff::Error>(())
    /// ```
    pub fn download(&mut self, path: &str, w: &mut impl Write) -> Result<u64> {
        let st = self.stat(path)?;
        if st.file_type == FileType::Directory {
            return Err(Error::Remote(wire::Error::new(
                ErrorKind::IsADirectory,
                format!("{path} is a directory"),
            )));
        }
        // Read until a short chunk (the size may be stale for a growing file; a
        // device file reports 0).
        self.pread_to(path, 0, u64::MAX, w)
    }

    /// Filesystem statistics (block size, total/free blocks and inodes) for the
    /// filesystem holding `path`.
    pub fn statvfs(&mut self, path: &str) -> Result<StatVfs> {
        match self.call(Request::StatVfs { path: path.into() })? {
            Reply::StatVfs(s) => Ok(s),
            other => Err(unexpected(&other)),
        }
    }

    /// Every path below the directory `path`, relative to it, depth first with each
    /// directory's entries sorted (symlinks listed, not followed).
    ///
    /// ```no_run
    /// # let mut s = skiff::Appliance::builder().add_drive("disk.img", skiff::DriveOptions::readonly()).launch()?;
    /// # s.mount("/dev/sda", "/", skiff::MountOptions::readonly())?;
    /// for rel in s.find("/etc")? {
    ///     println!("/etc/{rel}");
    /// }
    /// # Ok::<(), skiff::Error>(())
    /// ```
    pub fn find(&mut self, path: &str) -> Result<Vec<String>> {
        match self.call(Request::Find { path: path.into() })? {
            Reply::Names(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    /// Does `path` exist (a dangling symlink exists)?
    pub fn exists(&mut self, path: &str) -> Result<bool> {
        match self.lstat(path) {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Is `path` a regular file (following symlinks)?
    pub fn is_file(&mut self, path: &str) -> Result<bool> {
        self.is_type(path, FileType::Regular)
    }

    /// Is `path` a directory (following symlinks)?
    pub fn is_dir(&mut self, path: &str) -> Result<bool> {
        self.is_type(path, FileType::Directory)
    }

    fn is_type(&mut self, path: &str, t: FileType) -> Result<bool> {
        match self.stat(path) {
            Ok(s) => Ok(s.file_type == t),
            Err(Error::Remote(r))
                if matches!(
                    r.kind,
                    ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::Loop
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates or replaces the file at `path` with `data` (mode 0644 when created),
    /// streamed in [`MAX_CHUNK`] pieces ([`Session::write_stream`]).
    ///
    /// ```no_run
    /// use skiff::{Appliance, DriveOptions, MountOptions};
    /// let mut s = Appliance::builder().add_drive("disk.img", DriveOptions::writable()).launch()?;
    /// s.mount("/dev/sda", "/", MountOptions::writable())?;
    /// s.write_file("/etc/hostname", b"skiffy\n")?;
    /// s.shutdown()?; // unmounts, syncs and flushes: the data is in disk.img
    /// # Ok::<(), skiff::Error>(())
    /// ```
    pub fn write_file(&mut self, path: &str, data: &[u8]) -> Result<()> {
        self.write_stream(&mut &data[..], path, 0, true, FILE_MODE)
            .map(|_| ())
    }

    /// Writes `data` at `offset` of an existing or new file, without truncating.
    pub fn pwrite(&mut self, path: &str, offset: u64, data: &[u8]) -> Result<()> {
        offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| Error::InvalidArgument("offset + length overflows".into()))?;
        self.write_stream(&mut &data[..], path, offset, false, FILE_MODE)
            .map(|_| ())
    }

    /// Appends `data` to the file at `path`, creating it (mode 0644) if missing.
    pub fn append(&mut self, path: &str, data: &[u8]) -> Result<()> {
        let mut done = 0usize;
        while done < data.len() || (done == 0 && data.is_empty()) {
            let end = data.len().min(done + MAX_CHUNK as usize);
            let chunk = &data[done..end];
            match self.call(Request::Append {
                path: path.into(),
                data: Bytes(chunk.to_vec()),
            })? {
                Reply::Written(n) if n == chunk.len() as u64 => {}
                Reply::Written(n) => {
                    return Err(Error::BadFrame(format!(
                        "appended {n} of {} bytes",
                        chunk.len()
                    )));
                }
                other => return Err(unexpected(&other)),
            }
            if data.is_empty() {
                break;
            }
            done = end;
        }
        Ok(())
    }

    /// Creates or replaces the file at `path` with everything `r` yields, streamed in
    /// [`MAX_CHUNK`] pieces, several in flight, which the appliance writes in large runs
    /// ([`Session::write_stream`]); returns the size.
    ///
    /// ```no_run
    /// # let mut s = skiff::Appliance::builder().add_drive("disk.img", skiff::DriveOptions::writable()).launch()?;
    /// # s.mount("/dev/sda", "/", skiff::MountOptions::writable())?;
    /// let mut f = std::fs::File::open("vmlinuz")?;
    /// s.upload(&mut f, "/boot/vmlinuz")?;
    /// s.shutdown()?;
    /// # Ok::<(), skiff::Error>(())
    /// ```
    pub fn upload(&mut self, r: &mut impl Read, path: &str) -> Result<u64> {
        self.write_stream(r, path, 0, true, FILE_MODE)
    }

    /// Creates the directory `path` (mode 0755); its parent must exist.
    pub fn mkdir(&mut self, path: &str) -> Result<()> {
        self.unit(Request::Mkdir {
            path: path.into(),
            parents: false,
            mode: DIR_MODE,
        })
    }

    /// Creates `path` and any missing parents (mode 0755); fine if it already is a
    /// directory.
    pub fn mkdir_p(&mut self, path: &str) -> Result<()> {
        self.unit(Request::Mkdir {
            path: path.into(),
            parents: true,
            mode: DIR_MODE,
        })
    }

    /// Removes a file or symlink (`rm`); a directory is an `IsADirectory` error.
    pub fn rm(&mut self, path: &str) -> Result<()> {
        self.unit(Request::Remove {
            path: path.into(),
            recursive: false,
        })
    }

    /// Removes `path` and, for a directory, everything below it (`rm -r`). Refuses `/`
    /// and mountpoints.
    pub fn rm_rf(&mut self, path: &str) -> Result<()> {
        self.unit(Request::Remove {
            path: path.into(),
            recursive: true,
        })
    }

    /// Removes an empty directory.
    pub fn rmdir(&mut self, path: &str) -> Result<()> {
        self.unit(Request::Rmdir { path: path.into() })
    }

    /// Renames (moves) `from` to `to` within one filesystem, replacing a file at `to`.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        self.unit(Request::Rename {
            from: from.into(),
            to: to.into(),
        })
    }

    /// Sets the permission bits (`0o7777` part of `mode`).
    pub fn chmod(&mut self, path: &str, mode: u32) -> Result<()> {
        self.unit(Request::Chmod {
            path: path.into(),
            mode,
        })
    }

    /// Creates the symlink `linkpath` pointing at `target` (`ln -s target linkpath`).
    pub fn ln_s(&mut self, target: &str, linkpath: &str) -> Result<()> {
        self.unit(Request::Symlink {
            target: target.into(),
            linkpath: linkpath.into(),
        })
    }

    /// Sets the size of the file at `path` (shrinks, or extends with zeros).
    pub fn truncate(&mut self, path: &str, size: u64) -> Result<()> {
        self.unit(Request::Truncate {
            path: path.into(),
            size,
        })
    }
}

/// Fills `buf` from `r` until it is full or `r` ends; returns the bytes read.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

/// `ls -l` style mode string: `drwxr-xr-x`, `-rw-r--r--`, `lrwxrwxrwx`, with set-id and
/// sticky bits as `s`/`S`/`t`/`T`.
pub fn mode_string(file_type: FileType, mode: u32) -> String {
    let t = match file_type {
        FileType::Regular => '-',
        FileType::Directory => 'd',
        FileType::Symlink => 'l',
        FileType::CharDevice => 'c',
        FileType::BlockDevice => 'b',
        FileType::Fifo => 'p',
        FileType::Socket => 's',
        FileType::Unknown => '?',
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    let bit = |b: u32, c: char| if mode & b != 0 { c } else { '-' };
    let special =
        |x: u32, special: u32, lower: char, upper: char| match (mode & x != 0, mode & special != 0)
        {
            (true, true) => lower,
            (false, true) => upper,
            (true, false) => 'x',
            (false, false) => '-',
        };
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(special(0o100, 0o4000, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(special(0o010, 0o2000, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(special(0o001, 0o1000, 't', 'T'));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_strings() {
        assert_eq!(mode_string(FileType::Directory, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(FileType::Regular, 0o644), "-rw-r--r--");
        assert_eq!(mode_string(FileType::Symlink, 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(FileType::Regular, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(FileType::Directory, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(FileType::Regular, 0o2644), "-rw-r-Sr--");
        assert_eq!(mode_string(FileType::Directory, 0o1770), "drwxrwx--T");
    }

    #[test]
    fn read_full_collects_short_reads() {
        struct Dribble(Vec<u8>);
        impl Read for Dribble {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(3).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0.drain(..n);
                Ok(n)
            }
        }
        let mut r = Dribble((0..10).collect());
        let mut buf = [0u8; 8];
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), 8);
        assert_eq!(buf, [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), 2);
    }
}
