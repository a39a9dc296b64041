//! RPC dispatch: turns a decoded [`Request`] into a [`Reply`] against the appliance's
//! devices and mounts. Hardware-specific requests (`Shutdown`, `Rescan`) are finished by
//! the kernel binary around this. Device-level and mount requests live in `devices`,
//! path-level requests in `files`.

mod devices;
mod files;
#[cfg(test)]
mod fs_tests;
mod inspect;
mod luks;
mod lvm;
mod tree;
#[cfg(test)]
mod tree_tests;

pub use devices::partition_name;
pub use files::{MAX_DEPTH, MAX_DIR_VISITS, MAX_FIND_NAMES};
pub use tree::{Hasher, STREAM_HOLD, TreeWalk};

use crate::block::{SharedDevice, check_range, disk_name};
use crate::fs::vfs::MountTable;
use crate::volume::lvm::Scan;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use wire::{Bytes, Device, Error, ErrorKind, MAX_CHUNK, Reply, Request};

/// One attached disk.
pub struct Disk {
    pub name: String,
    pub dev: SharedDevice,
}

/// Everything the appliance serves: the disk table (indexed by the slot the host gave
/// each disk, so names stay stable across hotplug) and the mount table.
#[derive(Default)]
pub struct Appliance {
    disks: Vec<Option<Disk>>,
    mounts: MountTable,
    /// The LVM scan of the disks, made on first use (see `rpc/lvm.rs`).
    lvm: RefCell<Option<Rc<Scan>>>,
    luks: luks::LuksState,
    /// The host's clock as last sent ([`Request::SetClock`]): stamped on changes.
    clock: Option<i64>,
    /// The application list being paged to the host (see `rpc/inspect.rs`).
    inspect: inspect::AppsCache,
    /// A data buffer handed back after its reply was sent, reused by the next read.
    spare: Vec<u8>,
    /// The file being streamed in by `WriteStream`, with the bytes held for it.
    stream: Option<tree::Stream>,
}

fn err(kind: ErrorKind, msg: impl Into<String>) -> Error {
    Error::new(kind, msg)
}

impl Appliance {
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches `dev` as disk number `slot` (`/dev/sda` is slot 0).
    pub fn set_disk(&mut self, slot: usize, dev: SharedDevice) {
        if self.disks.len() <= slot {
            self.disks.resize_with(slot + 1, || None);
        }
        self.disks[slot] = Some(Disk {
            name: disk_name(slot),
            dev,
        });
        self.invalidate_lvm();
    }

    /// Detaches disk `slot`; later calls naming it (or its partitions) fail with
    /// `NotFound`, and filesystems mounted from it are dropped unsynced.
    pub fn remove_disk(&mut self, slot: usize) -> Option<Disk> {
        let name = self.disks.get(slot)?.as_ref()?.name.clone();
        // LVs with a PV on the disk go with it.
        let lvs = self.lv_names_on_disk(&name);
        let disk = self.disks.get_mut(slot).and_then(Option::take)?;
        self.invalidate_lvm();
        self.luks_forget_disk(&disk.name);
        let on_disk = |dev: &str| {
            dev.strip_prefix(disk.name.as_str())
                .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_digit()))
                || lvs.iter().any(|l| l == dev)
        };
        self.mounts.forget(|dev| {
            // A btrfs subvolume goes with the device under it (`btrfsvol:DEV/PATH`).
            match dev.strip_prefix(devices::BTRFSVOL) {
                Some(rest) => rest
                    .match_indices('/')
                    .any(|(i, _)| rest.get(..i).is_some_and(on_disk)),
                None => on_disk(dev),
            }
        });
        Some(disk)
    }

    pub fn disks(&self) -> impl Iterator<Item = &Disk> {
        self.disks.iter().flatten()
    }

    /// The whole-disk device list, in slot order.
    pub fn devices(&self) -> Vec<Device> {
        self.disks()
            .map(|d| {
                let dev = d.dev.borrow();
                Device {
                    name: d.name.clone(),
                    size: dev.size(),
                    readonly: dev.readonly(),
                }
            })
            .collect()
    }

    /// The mount table.
    pub fn mounts(&self) -> &MountTable {
        &self.mounts
    }

    /// Syncs every mounted filesystem, then flushes every disk (even when a sync failed);
    /// returns the first error.
    pub fn sync(&mut self) -> Result<(), Error> {
        let mut first = self.mounts.sync_all().err();
        if let Err(e) = self.flush_disks() {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }

    /// Syncs and unmounts everything, then flushes every disk: the end of a session.
    pub fn shutdown(&mut self) -> Result<(), Error> {
        let mut first = self.mounts.umount_all().err();
        if let Err(e) = self.flush_disks() {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }

    fn flush_disks(&mut self) -> Result<(), Error> {
        let mut first = None;
        for d in self.disks() {
            if let Err(e) = d.dev.borrow_mut().flush() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Serves one request. Never panics on any input.
    pub fn handle(&mut self, req: Request) -> Result<Reply, Error> {
        if !matches!(req, Request::Applications { .. }) {
            self.inspect.clear();
        }
        // Any other request ends a stream first: held pieces are written before it.
        if self.stream.is_some() && !matches!(req, Request::WriteStream { .. }) {
            self.end_stream()?;
        }
        match req {
            Request::Ping => Ok(Reply::Unit),
            Request::Devices => Ok(Reply::Devices(self.devices())),
            Request::PreadDevice {
                device,
                offset,
                len,
            } => {
                if len > MAX_CHUNK {
                    return Err(err(
                        ErrorKind::TooLarge,
                        format!("read of {len} bytes exceeds the {MAX_CHUNK}-byte chunk limit"),
                    ));
                }
                let dev = self.device(&device)?;
                let mut dev = dev.borrow_mut();
                check_range(offset, len as usize, dev.size())?;
                let mut buf = vec![0u8; len as usize];
                dev.read_at(offset, &mut buf)?;
                Ok(Reply::Data(Bytes(buf)))
            }
            Request::PwriteDevice {
                device,
                offset,
                data,
            } => {
                let dev = self.device(&device)?;
                let mut dev = dev.borrow_mut();
                if dev.readonly() {
                    return Err(err(ErrorKind::ReadOnly, format!("{device} is read-only")));
                }
                check_range(offset, data.len(), dev.size())?;
                // A label or the LVM metadata may have changed.
                self.invalidate_lvm();
                dev.write_at(offset, &data)?;
                Ok(Reply::Written(data.len() as u64))
            }
            Request::Sync => {
                self.sync()?;
                Ok(Reply::Unit)
            }
            Request::Shutdown => {
                self.shutdown()?;
                Ok(Reply::Unit)
            }
            Request::Rescan => Err(err(
                ErrorKind::Unsupported,
                "rescan is not available in this appliance",
            )),
            Request::Partitions => Ok(Reply::Partitions(self.partitions()?)),
            Request::Filesystems => Ok(Reply::Filesystems(self.filesystems())),
            Request::Mount {
                device,
                mountpoint,
                readonly,
                fstype,
            } => {
                self.mount(&device, &mountpoint, readonly, fstype.as_deref())?;
                Ok(Reply::Unit)
            }
            Request::Umount { mountpoint } => {
                self.mounts.umount(&mountpoint)?;
                Ok(Reply::Unit)
            }
            Request::Mounts => Ok(Reply::Mounts(self.mounts.list())),
            Request::ReadDir { path } => Ok(Reply::DirEntries(self.read_dir(&path)?)),
            Request::Stat { path } => Ok(Reply::Stat(self.stat(&path, true)?)),
            Request::Lstat { path } => Ok(Reply::Stat(self.stat(&path, false)?)),
            Request::Readlink { path } => {
                let (fs, inner) = self.mounts.resolve(&path)?;
                Ok(Reply::Text(fs.read_link(&inner)?))
            }
            Request::Pread { path, offset, len } => {
                Ok(Reply::Data(Bytes(self.pread(&path, offset, len)?)))
            }
            Request::StatVfs { path } => {
                let (fs, _) = self.mounts.resolve(&path)?;
                Ok(Reply::StatVfs(fs.statvfs()?))
            }
            Request::Find { path } => Ok(Reply::Names(self.find(&path)?)),
            Request::WriteFile {
                path,
                offset,
                data,
                truncate,
                mode,
            } => Ok(Reply::Written(
                self.write_file(&path, offset, &data, truncate, mode)?,
            )),
            Request::Append { path, data } => Ok(Reply::Written(self.append(&path, &data)?)),
            Request::Mkdir {
                path,
                parents,
                mode,
            } => {
                self.mkdir(&path, parents, mode)?;
                Ok(Reply::Unit)
            }
            Request::Remove { path, recursive } => {
                self.remove(&path, recursive)?;
                Ok(Reply::Unit)
            }
            Request::Rmdir { path } => {
                self.rmdir(&path)?;
                Ok(Reply::Unit)
            }
            Request::Rename { from, to } => {
                self.rename(&from, &to)?;
                Ok(Reply::Unit)
            }
            Request::Chmod { path, mode } => {
                self.chmod(&path, mode)?;
                Ok(Reply::Unit)
            }
            Request::Symlink { target, linkpath } => {
                self.symlink(&target, &linkpath)?;
                Ok(Reply::Unit)
            }
            Request::Truncate { path, size } => {
                self.truncate(&path, size)?;
                Ok(Reply::Unit)
            }
            Request::Pvs => Ok(Reply::Pvs(self.pvs())),
            Request::Vgs => Ok(Reply::Vgs(self.vgs())),
            Request::Lvs => Ok(Reply::Lvs(self.lvs())),
            Request::LuksOpen { device, key, name } => {
                let key = zeroize::Zeroizing::new(key.0);
                Ok(Reply::Text(self.luks_open(
                    &device,
                    &key,
                    name.as_deref(),
                )?))
            }
            Request::LuksClose { name } => {
                self.luks_close(&name)?;
                Ok(Reply::Unit)
            }
            Request::LuksInfo => Ok(Reply::LuksInfo(self.luks_info())),
            Request::Chown { path, uid, gid } => {
                self.chown(&path, uid, gid)?;
                Ok(Reply::Unit)
            }
            Request::Utimens { path, atime, mtime } => {
                self.utimens(&path, atime, mtime)?;
                Ok(Reply::Unit)
            }
            Request::Touch { path } => {
                self.touch(&path)?;
                Ok(Reply::Unit)
            }
            Request::Getxattr { path, name } => {
                Ok(Reply::Data(Bytes(self.getxattr(&path, &name)?)))
            }
            Request::Listxattrs { path } => Ok(Reply::Names(self.listxattrs(&path)?)),
            Request::Setxattr { path, name, value } => {
                self.setxattr(&path, &name, &value)?;
                Ok(Reply::Unit)
            }
            Request::Removexattr { path, name } => {
                self.removexattr(&path, &name)?;
                Ok(Reply::Unit)
            }
            Request::SetClock { now } => {
                self.set_clock(now);
                Ok(Reply::Unit)
            }
            Request::BeginBatch { path } => {
                let p = crate::fs::vfs::normalize(&path)?;
                let (fs, _) = self.mounts.resolve(&p)?;
                fs.begin_batch()?;
                Ok(Reply::Unit)
            }
            Request::EndBatch { path } => {
                let p = crate::fs::vfs::normalize(&path)?;
                let (fs, _) = self.mounts.resolve(&p)?;
                fs.end_batch()?;
                Ok(Reply::Unit)
            }
            Request::Applications { root, start } => {
                Ok(Reply::Applications(self.applications(&root, start)?))
            }
            Request::WindowsFacts { root } => Ok(Reply::WindowsFacts(alloc::boxed::Box::new(
                self.windows_facts(&root)?,
            ))),
            Request::Checksum { algo, path } => Ok(Reply::Text(self.checksum(&algo, &path)?)),
            Request::ChecksumsOut { algo, dir, after } => {
                let (sums, next) = self.checksums_out(&algo, &dir, after.as_deref())?;
                Ok(Reply::Checksums { sums, next })
            }
            Request::Du { path } => Ok(Reply::Count(self.du(&path)?)),
            Request::Copy {
                from,
                to,
                recursive,
            } => {
                self.copy(&from, &to, recursive)?;
                Ok(Reply::Unit)
            }
            Request::FindStat { path, after } => {
                let (entries, next) = self.find_stat(&path, after.as_deref())?;
                Ok(Reply::Tree { entries, next })
            }
            Request::WriteStream {
                path,
                offset,
                data,
                first,
                truncate,
                mode,
                last,
            } => Ok(Reply::Written(self.write_stream(
                &path,
                offset,
                data.0,
                (first, truncate, last),
                mode,
            )?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{MemDisk, shared};
    use alloc::string::ToString;

    fn app() -> Appliance {
        let mut a = Appliance::new();
        a.set_disk(
            0,
            shared(MemDisk::new((0..=255u8).cycle().take(8192).collect(), true)),
        );
        a.set_disk(2, shared(MemDisk::new(vec![0; 4096], false)));
        a
    }

    #[test]
    fn devices_by_slot() {
        let a = app();
        let d = a.devices();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "/dev/sda");
        assert!(d[0].readonly);
        assert_eq!(d[1].name, "/dev/sdc");
        assert_eq!(d[1].size, 4096);
    }

    #[test]
    fn pread_and_bounds() {
        let mut a = app();
        let r = a
            .handle(Request::PreadDevice {
                device: "/dev/sda".to_string(),
                offset: 8190,
                len: 2,
            })
            .unwrap();
        assert_eq!(r, Reply::Data(Bytes(vec![254, 255])));
        let e = a
            .handle(Request::PreadDevice {
                device: "/dev/sda".to_string(),
                offset: 8191,
                len: 2,
            })
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        let e = a
            .handle(Request::PreadDevice {
                device: "/dev/sdz".to_string(),
                offset: 0,
                len: 1,
            })
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        let e = a
            .handle(Request::PreadDevice {
                device: "/dev/sda".to_string(),
                offset: 0,
                len: MAX_CHUNK + 1,
            })
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge);
    }

    #[test]
    fn readonly_refuses_writes() {
        let mut a = app();
        let e = a
            .handle(Request::PwriteDevice {
                device: "/dev/sda".to_string(),
                offset: 0,
                data: Bytes(vec![1]),
            })
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ReadOnly);
        let r = a
            .handle(Request::PwriteDevice {
                device: "/dev/sdc".to_string(),
                offset: 4095,
                data: Bytes(vec![9]),
            })
            .unwrap();
        assert_eq!(r, Reply::Written(1));
        a.remove_disk(2);
        assert!(a.device("/dev/sdc").is_err());
    }
}
