//! Disks added to and removed from a running appliance, the session's part: the
//! read-only policy, per-slot bookkeeping (read-only flags, opened images, the list of
//! hot-added disks), unmounting, and the appliance's `Rescan`s. The plugging itself
//! (ports, qemu or libvirt) is the backend's ([`crate::backend::Hotplug`]).
//!
//! Adding: the backend attaches the disk in a fresh slot N (never reused within a
//! session), which the appliance names `/dev/sd<a+N>`; rescans until the appliance
//! lists it. Removing: `Umount` of the disk's mounts, the backend's detach, rescans
//! until the backend says the unplug went through (the appliance syncs, drops the disk
//! and powers the slot off on its rescan), then the backend completes it.
//!
//! Only sessions launched with `Builder::hotplug(true)` can do this.

use super::Session;
use crate::appliance::DriveOptions;
use crate::backend::{Failure, Hotplug};
use crate::error::{Error, Result};
use crate::images::format::Format;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wire::disk_slot;

/// How long a hot-added disk may take to show up in the appliance's rescans.
const APPEAR_TIMEOUT: Duration = Duration::from_secs(10);

/// `/dev/sda` for slot 0, ...: the appliance's naming ([`wire::disk_name`]).
pub use wire::disk_name as slot_name;

/// One hot-added disk.
#[derive(Debug, Clone)]
pub struct HotDrive {
    /// `/dev/sdX` in the appliance.
    pub device: String,
    pub path: PathBuf,
    pub format: Format,
    pub readonly: bool,
    pub(crate) slot: usize,
}

impl Session {
    /// Adds a disk to the running appliance and returns its device name (`/dev/sdX`),
    /// usable through every call at once. The format is found on the host unless given;
    /// the drive is read-only unless `options` say otherwise. Needs a session launched
    /// with `Builder::hotplug(true)` and a free root port.
    pub fn add_drive(&mut self, path: impl AsRef<Path>, options: DriveOptions) -> Result<String> {
        let path = path.as_ref();
        self.require_hotplug()?;
        if !options.readonly && self.readonly_only {
            return Err(Error::ReadOnlySession {
                path: path.to_path_buf(),
            });
        }
        // Ports of disks removed earlier come back as their unplug completes.
        let mut gone = Vec::new();
        let made = self.hotplug_op(|h| h.make_room(&mut gone));
        self.forget_slots(&gone)?;
        made?;
        let keys = self.keys.clone();
        let attached = self.hotplug_op(|h| h.attach(path, options, &keys))?;
        let slot = attached.slot;
        let device = slot_name(slot);
        self.hot.push(HotDrive {
            device: device.clone(),
            path: path.to_path_buf(),
            format: attached.format,
            readonly: options.readonly,
            slot,
        });
        self.set_slot_readonly(slot, options.readonly);
        if let Some(img) = attached.image {
            self.set_slot_image(slot, Some(img));
        }
        self.wait_listed(device)
    }

    /// Removes a hot-added disk: unmounts its filesystems in the appliance, has the
    /// backend unplug it (the appliance syncs and powers the slot off on its rescan) and
    /// waits until the unplug is complete. Calls naming the device fail with a
    /// `NotFound` error afterwards.
    pub fn remove_drive(&mut self, device: &str) -> Result<()> {
        let slot = self.start_unplug(device)?;
        self.finish_unplug(slot, true)
    }

    /// Like [`Session::remove_drive`], but returns as soon as the appliance has synced and
    /// dropped the disk (calls naming it fail from then on), without waiting for qemu to
    /// finish the unplug: qemu reports `DEVICE_DELETED` some 60 ms after the slot is
    /// powered off. The disk's root port is taken until then; the next `add_drive`
    /// collects finished unplugs (waiting only when no other port is free), and
    /// [`Session::hot_drives`] no longer lists the disk. For sessions that hot-add many
    /// disks one after another, e.g. [`crate::SharedReader`]. (The libvirt backend
    /// always waits.)
    pub fn remove_drive_deferred(&mut self, device: &str) -> Result<()> {
        let slot = self.start_unplug(device)?;
        self.finish_unplug(slot, false)
    }

    /// Unmounts `device`, has the backend detach it and rescans until the backend says
    /// the unplug went through; returns its slot.
    fn start_unplug(&mut self, device: &str) -> Result<usize> {
        self.require_hotplug()?;
        let Some(i) = self.hot.iter().position(|d| d.device == device) else {
            return Err(Error::NotHotpluggable(format!(
                "{device} is not a hot-added disk of this session"
            )));
        };
        let slot = self.hot[i].slot;
        self.umount_disk(device)?;
        self.hotplug_op(|h| h.detach(slot, device))?;
        self.hot.remove(i);
        // The backend has asked for the unplug; on its next rescan the appliance sees
        // it, syncs, drops the disk and powers the slot off. Rescans repeat until the
        // backend sees the unplug through (in case one came too early).
        loop {
            let devices = self.rescan()?;
            if self.hotplug_op(|h| h.unplug_progress(slot, device, &devices))? {
                return Ok(slot);
            }
        }
    }

    /// Has the backend complete the unplug of `slot` (`wait`), or leave it to finish
    /// in the background; once complete, lets the appliance forget the vanished device
    /// (and refreshes our list).
    fn finish_unplug(&mut self, slot: usize, wait: bool) -> Result<()> {
        let mut gone = Vec::new();
        let finished = self.hotplug_op(|h| h.finish_unplug(slot, wait, &mut gone));
        self.forget_slots(&gone)?;
        if finished? {
            self.rescan()?;
        }
        Ok(())
    }

    /// Disks whose unplug is complete: the backend has let go of their images; check
    /// what each names (a writable one) and close it.
    fn forget_slots(&mut self, gone: &[usize]) -> Result<()> {
        for &slot in gone {
            if let Some(img) = self.set_slot_image(slot, None)
                && img.top().writable
            {
                img.verify_unchanged()?;
            }
        }
        Ok(())
    }

    /// Records whether the disk now in `slot` was attached read-only.
    fn set_slot_readonly(&mut self, slot: usize, readonly: bool) {
        if self.readonly.len() <= slot {
            self.readonly.resize(slot + 1, true);
        }
        self.readonly[slot] = readonly;
    }

    /// After a disk was hot-added as `device`: rescans until the appliance lists it.
    fn wait_listed(&mut self, device: String) -> Result<String> {
        // qemu reports presence at once; the appliance starts the disk on its rescan.
        let deadline = Instant::now() + APPEAR_TIMEOUT;
        loop {
            let devices = self.rescan()?;
            if devices.iter().any(|d| d.name == device) {
                return Ok(device);
            }
            if Instant::now() >= deadline {
                return Err(Error::HotplugNotSeen { device });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Before a disk goes: unmounts what lives on `device` or its partitions in the
    /// appliance, deepest mountpoint first.
    fn umount_disk(&mut self, device: &str) -> Result<()> {
        let mut mine: Vec<String> = self
            .mounts()?
            .into_iter()
            .filter(|m| on_disk(&m.device, device))
            .map(|m| m.mountpoint)
            .collect();
        mine.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mountpoint in mine {
            self.umount(&mountpoint)?;
        }
        Ok(())
    }

    /// The disks hot-added to this session and still attached.
    pub fn hot_drives(&self) -> Vec<HotDrive> {
        self.hot.clone()
    }

    /// How many more disks can be hot-added now (0 without hotplug).
    pub fn free_ports(&self) -> usize {
        self.backend.hotplug_ref().map_or(0, |h| h.free_ports())
    }

    /// From now on this session takes read-only drives only ([`Session::add_drive`] with
    /// a writable drive fails with [`Error::ReadOnlySession`]). Irrevocable. No effect
    /// on a session launched without hotplug.
    pub fn restrict_to_readonly_drives(&mut self) {
        if self.backend.hotplug_ref().is_some() {
            self.readonly_only = true;
        }
    }

    /// Does this session take only read-only drives?
    pub fn readonly_drives_only(&self) -> bool {
        self.readonly_only
    }

    /// [`Error::Closed`] on a closed session, [`Error::NotHotpluggable`] without hotplug.
    fn require_hotplug(&mut self) -> Result<()> {
        self.hotplug_op(|_| Ok(()))
    }

    /// Runs one step of the backend's hotplug: [`Error::Closed`] on a closed session,
    /// [`Error::NotHotpluggable`] without hotplug; a fatal failure closes the session.
    fn hotplug_op<T>(
        &mut self,
        op: impl FnOnce(&mut dyn Hotplug) -> Result<T, Failure>,
    ) -> Result<T> {
        if self.closed {
            return Err(Error::Closed);
        }
        let Some(h) = self.backend.hotplug() else {
            return Err(Error::NotHotpluggable(
                "this session was launched without hotplug (Builder::hotplug(true))".into(),
            ));
        };
        op(h).map_err(|f| self.failed(f))
    }
}

/// Is `dev` (as a mount names it) the disk `disk` or one of its partitions?
fn on_disk(dev: &str, disk: &str) -> bool {
    match dev.strip_prefix(disk) {
        Some("") => true,
        Some(rest) => rest.bytes().all(|b| b.is_ascii_digit()) && disk_slot(disk).is_some(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(slot_name(0), "/dev/sda");
        assert_eq!(slot_name(25), "/dev/sdz");
        assert_eq!(slot_name(26), "/dev/sdaa");
        for i in 0..800 {
            assert_eq!(disk_slot(&slot_name(i)), Some(i));
        }
        assert!(on_disk("/dev/sdb", "/dev/sdb"));
        assert!(on_disk("/dev/sdb1", "/dev/sdb"));
        assert!(on_disk("/dev/sdb12", "/dev/sdb"));
        assert!(!on_disk("/dev/sdba", "/dev/sdb"));
        assert!(!on_disk("/dev/sda1", "/dev/sdb"));
    }
}
