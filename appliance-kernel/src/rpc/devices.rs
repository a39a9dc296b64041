//! Device-level requests: partition and filesystem listings, device-name resolution
//! (whole disks and partitions), and mounting/unmounting.

use super::{Appliance, err};
use crate::block::{SharedDevice, Window, shared};
use crate::fs::{FileSystem, FsResult, btrfs, ext4, fat, ntfs, probe, xfs};
use crate::part::{self, PartEntry};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use wire::{Error, ErrorKind, Filesystem, Partition};

/// libguestfs' prefix for a btrfs subvolume as a mountable: `btrfsvol:/dev/sda3/home`.
pub const BTRFSVOL: &str = "btrfsvol:";

/// `/dev/sda` + 1 → `/dev/sda1`.
pub fn partition_name(disk: &str, number: u32) -> String {
    format!("{disk}{number}")
}

impl Appliance {
    /// Splits `/dev/sda12` into (`/dev/sda` disk device, 12); `None` for a whole disk
    /// name or anything that is not a partition of an attached disk.
    fn split_partition_name(&self, name: &str) -> Option<(String, SharedDevice, u32)> {
        self.disks().find_map(|d| {
            let rest = name.strip_prefix(d.name.as_str())?;
            if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) || rest.len() > 9 {
                return None;
            }
            let n: u32 = rest.parse().ok()?;
            Some((d.name.clone(), d.dev.clone(), n))
        })
    }

    /// Every plain block device: the partitions of partitioned disks and the other disks
    /// whole, as `(name, disk, device)`. What volume layers (LVM, LUKS) look for their
    /// headers on, besides each other's devices.
    pub(super) fn plain_devices(&self) -> Vec<(String, String, SharedDevice)> {
        let mut out = Vec::new();
        for d in self.disks() {
            match Self::scan_disk(&d.dev) {
                Ok(parts) if !parts.is_empty() => {
                    for p in parts {
                        if let Ok(w) = Window::new(d.dev.clone(), p.start, p.size) {
                            out.push((
                                partition_name(&d.name, p.number),
                                d.name.clone(),
                                shared(w),
                            ));
                        }
                    }
                }
                _ => out.push((d.name.clone(), d.name.clone(), d.dev.clone())),
            }
        }
        out
    }

    /// The partitions of one disk (empty when it has no table).
    fn scan_disk(dev: &SharedDevice) -> Result<Vec<PartEntry>, Error> {
        part::scan(dev)
    }

    /// Resolves a device name: a whole disk (`/dev/sda`), one of its partitions
    /// (`/dev/sda1`, a [`Window`] over the disk), an opened LUKS mapping
    /// (`/dev/mapper/<name>`), or an LVM logical volume (`/dev/VG/LV`,
    /// `/dev/mapper/VG-LV`).
    pub fn device(&self, name: &str) -> Result<SharedDevice, Error> {
        if let Some(d) = self.luks_device(name) {
            return Ok(d);
        }
        if let Some(d) = self.disks().find(|d| d.name == name) {
            return Ok(d.dev.clone());
        }
        if let Some(lv) = self.lv_device(name) {
            return lv;
        }
        let (_, disk, number) = self
            .split_partition_name(name)
            .ok_or_else(|| err(ErrorKind::NotFound, format!("no such device: {name}")))?;
        let parts = Self::scan_disk(&disk)?;
        let p = parts
            .iter()
            .find(|p| p.number == number)
            .ok_or_else(|| err(ErrorKind::NotFound, format!("no such partition: {name}")))?;
        Ok(shared(Window::new(disk, p.start, p.size)?))
    }

    /// Every partition of every disk, in disk then partition order. A disk whose table
    /// is corrupt fails the whole call with that disk named.
    pub fn partitions(&self) -> Result<Vec<Partition>, Error> {
        let mut out = Vec::new();
        for d in self.disks() {
            let parts = Self::scan_disk(&d.dev)
                .map_err(|e| err(e.kind, format!("{}: {}", d.name, e.message)))?;
            for p in parts {
                out.push(Partition {
                    name: partition_name(&d.name, p.number),
                    disk: d.name.clone(),
                    table: p.table,
                    number: p.number,
                    start: p.start,
                    size: p.size,
                    part_type: p.part_type,
                    label: p.label,
                    uuid: p.uuid,
                });
            }
        }
        Ok(out)
    }

    /// Every whole disk without a partition table and every partition, probed. A disk
    /// whose table cannot be read is probed as a whole (and usually reads `unknown`).
    pub fn filesystems(&self) -> Vec<Filesystem> {
        let mut out = Vec::new();
        let entry = |device: String, dev: &SharedDevice| {
            let p = probe::probe(dev);
            Filesystem {
                device,
                fstype: p.fstype,
                label: p.label,
                uuid: p.uuid,
                size: dev.borrow().size(),
            }
        };
        for d in self.disks() {
            match Self::scan_disk(&d.dev) {
                Ok(parts) if !parts.is_empty() => {
                    for p in parts {
                        let name = partition_name(&d.name, p.number);
                        match Window::new(d.dev.clone(), p.start, p.size) {
                            Ok(w) => out.push(entry(name, &shared(w))),
                            Err(_) => out.push(Filesystem {
                                device: name,
                                fstype: String::from("unknown"),
                                label: None,
                                uuid: None,
                                size: p.size,
                            }),
                        }
                    }
                }
                _ => out.push(entry(d.name.clone(), &d.dev)),
            }
        }
        // LVM logical volumes after the partitions, as libguestfs lists them.
        for (name, dev, size) in self.lvm().listed_lvs() {
            match dev {
                Ok(dev) => out.push(entry(name, &dev)),
                Err(_) => out.push(Filesystem {
                    device: name,
                    fstype: String::from("unknown"),
                    label: None,
                    uuid: None,
                    size,
                }),
            }
        }
        // Opened LUKS mappings last (they may sit on a partition or on an LV).
        for (name, dev) in self.luks_mapped() {
            out.push(entry(name, &dev));
        }
        // The subvolumes of every btrfs, as libguestfs names them: `btrfsvol:DEV/PATH`.
        let mut subvols = Vec::new();
        for f in out.iter().filter(|f| f.fstype == "btrfs") {
            let Ok(dev) = self.device(&f.device) else {
                continue;
            };
            for sv in btrfs::list_subvolumes(dev).unwrap_or_default() {
                subvols.push(Filesystem {
                    device: format!("{BTRFSVOL}{}/{}", f.device, sv.path),
                    ..f.clone()
                });
            }
        }
        out.extend(subvols);
        out
    }

    /// Splits `btrfsvol:DEVICE/SUBVOLUME` into the device (the shortest prefix that names
    /// a device: device names may hold `/` themselves, `/dev/VG/LV`) and the subvolume.
    fn split_btrfsvol(&self, name: &str) -> Result<(String, SharedDevice, String), Error> {
        let rest = name.strip_prefix(BTRFSVOL).unwrap_or(name);
        let bad = || {
            err(
                ErrorKind::NotFound,
                format!("{name}: expected btrfsvol:/dev/DEVICE/SUBVOLUME with an existing device"),
            )
        };
        for (i, _) in rest.match_indices('/').skip(2) {
            let (dev, sub) = rest.split_at(i);
            let sub = sub.trim_start_matches('/');
            if sub.is_empty() {
                break;
            }
            if let Ok(d) = self.device(dev) {
                return Ok((String::from(dev), d, String::from(sub)));
            }
        }
        Err(bad())
    }

    /// Opens the filesystem on `device` with the given or detected type.
    fn open_fs(
        dev: SharedDevice,
        device: &str,
        fstype: Option<&str>,
        readonly: bool,
    ) -> FsResult<Box<dyn FileSystem>> {
        let detected;
        let t = match fstype {
            Some(t) => t,
            None => {
                detected = probe::probe(&dev).fstype;
                detected.as_str()
            }
        };
        match t {
            "ext2" | "ext3" | "ext4" => ext4::mount(dev, readonly),
            "vfat" | "fat" | "msdos" => fat::mount(dev, readonly),
            "ntfs" | "ntfs-3g" => ntfs::mount(dev, readonly),
            "btrfs" => btrfs::mount(dev, readonly),
            "xfs" => xfs::mount(dev, readonly),
            "unknown" => Err(err(
                ErrorKind::Unsupported,
                format!("{device}: no filesystem recognised"),
            )),
            other => Err(err(
                ErrorKind::Unsupported,
                format!("{device}: filesystem type {other:?} is not supported"),
            )),
        }
    }

    /// Mounts `device` at `mountpoint`. Read-only when asked or when the device is.
    pub fn mount(
        &mut self,
        device: &str,
        mountpoint: &str,
        readonly: bool,
        fstype: Option<&str>,
    ) -> Result<(), Error> {
        let canonical = self.canonical_device(device);
        let device = canonical.as_str();
        // The same device, or a disk and one of its partitions, cannot both be mounted.
        let overlaps = |a: &str, b: &str| {
            a.strip_prefix(b)
                .is_some_and(|rest| rest.bytes().all(|c| c.is_ascii_digit()))
        };
        if let Some(m) = self
            .mounts
            .entries()
            .find(|m| overlaps(&m.device, device) || overlaps(device, &m.device))
        {
            return Err(err(
                ErrorKind::Busy,
                format!(
                    "{device} is in use: {} is mounted on {}",
                    m.device, m.mountpoint
                ),
            ));
        }
        if device.starts_with(BTRFSVOL) {
            let (_, dev, subvol) = self.split_btrfsvol(device)?;
            if fstype.is_some_and(|t| t != "btrfs") {
                return Err(err(
                    ErrorKind::InvalidArgument,
                    format!("{device} is a btrfs subvolume, not {fstype:?}"),
                ));
            }
            let fs = btrfs::mount_subvol(dev, true, Some(&subvol))?;
            return self.mount_with_clock(device, mountpoint, fs);
        }
        let dev = self.device(device)?;
        let readonly = readonly || dev.borrow().readonly();
        let fs = Self::open_fs(dev, device, fstype, readonly)?;
        self.mount_with_clock(device, mountpoint, fs)
    }

    /// Mounts an already opened filesystem as if it came from `device` (same checks as
    /// [`Appliance::mount`] for the mountpoint). For embedders and tests.
    pub fn mount_filesystem(
        &mut self,
        device: &str,
        mountpoint: &str,
        fs: Box<dyn FileSystem>,
    ) -> Result<(), Error> {
        self.mount_with_clock(device, mountpoint, fs)
    }

    /// Mounts `fs`, giving it the host's clock first when there is one.
    fn mount_with_clock(
        &mut self,
        device: &str,
        mountpoint: &str,
        mut fs: Box<dyn FileSystem>,
    ) -> Result<(), Error> {
        if let Some(now) = self.clock {
            fs.set_clock(now);
        }
        self.mounts.mount(device, mountpoint, fs)
    }
}
