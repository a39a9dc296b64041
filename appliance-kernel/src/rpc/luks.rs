//! LUKS requests: open (unlock and map as `/dev/mapper/<name>`), close, and the list of
//! LUKS devices with their keyslots. The key never appears in an error or a log.

use super::{Appliance, err};
use crate::block::{SharedDevice, shared};
use crate::volume::luks::{self, Limits, LuksDevice, LuksHeader};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use wire::{Error, ErrorKind, LuksVolume};

/// Where opened devices appear.
pub const MAPPER: &str = "/dev/mapper/";
/// Most LUKS devices open at once.
pub const MAX_MAPPINGS: usize = 64;

/// One opened LUKS device.
struct Mapping {
    /// Without the `/dev/mapper/` prefix.
    name: String,
    /// The device it decrypts (`/dev/sda2`, `/dev/VG/LV`, another mapping).
    source: String,
    /// The disk it ultimately lives on (`/dev/sda`), for LVM on it.
    disk: String,
    dev: SharedDevice,
}

/// The appliance's LUKS state: open mappings and the unlock limits.
#[derive(Default)]
pub struct LuksState {
    maps: Vec<Mapping>,
    limits: Limits,
}

/// A device-mapper name: 1-127 characters, no `/`, no control characters, not `.`/`..`.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() < 128
        && n != "."
        && n != ".."
        && n.bytes().all(|c| c.is_ascii_graphic() && c != b'/')
}

impl Appliance {
    /// Tightens (or loosens, up to the hard bounds) how much KDF work an unlock may do.
    pub fn set_luks_limits(&mut self, limits: Limits) {
        self.luks.limits = limits;
    }

    /// The opened device `/dev/mapper/<name>`, if `name` is one.
    pub(super) fn luks_device(&self, name: &str) -> Option<SharedDevice> {
        let n = name.strip_prefix(MAPPER)?;
        self.luks
            .maps
            .iter()
            .find(|m| m.name == n)
            .map(|m| m.dev.clone())
    }

    /// `(/dev/mapper/<name>, device)` for every opened device, in opening order.
    pub(super) fn luks_mapped(&self) -> Vec<(String, SharedDevice)> {
        self.luks
            .maps
            .iter()
            .map(|m| (format!("{MAPPER}{}", m.name), m.dev.clone()))
            .collect()
    }

    /// `(/dev/mapper/<name>, disk, device)` for every opened device: PV candidates.
    pub(super) fn luks_sources(&self) -> Vec<(String, String, SharedDevice)> {
        self.luks
            .maps
            .iter()
            .map(|m| (format!("{MAPPER}{}", m.name), m.disk.clone(), m.dev.clone()))
            .collect()
    }

    /// Drops the mappings over disk `disk` (its partitions, its LVs, and mappings stacked
    /// on those), forgetting their mounts unsynced.
    pub(super) fn luks_forget_disk(&mut self, disk: &str) {
        let on_disk = |m: &Mapping| {
            m.disk == disk
                || m.source
                    .strip_prefix(disk)
                    .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_digit()))
        };
        let mut gone: Vec<String> = Vec::new();
        while let Some(i) = self
            .luks
            .maps
            .iter()
            .position(|m| on_disk(m) || gone.contains(&m.source))
        {
            let m = self.luks.maps.remove(i);
            gone.push(format!("{MAPPER}{}", m.name));
        }
        if !gone.is_empty() {
            self.mounts.forget(|dev| gone.iter().any(|g| g == dev));
        }
    }

    /// Unlocks `device` with `key` and maps it; returns `/dev/mapper/<name>`.
    pub fn luks_open(
        &mut self,
        device: &str,
        key: &[u8],
        name: Option<&str>,
    ) -> Result<String, Error> {
        let ctx = |e: Error| err(e.kind, format!("{device}: {}", e.message));
        let dev = self.device(device)?;
        if let Some(m) = self.luks.maps.iter().find(|m| m.source == device) {
            return Err(err(
                ErrorKind::Busy,
                format!("{device} is already open as {MAPPER}{}", m.name),
            ));
        }
        if self.luks.maps.len() >= MAX_MAPPINGS {
            return Err(err(
                ErrorKind::TooLarge,
                format!("{MAX_MAPPINGS} LUKS devices are already open"),
            ));
        }
        let h = LuksHeader::read(&dev).map_err(ctx)?;
        let name = match name {
            Some(n) => String::from(n.strip_prefix(MAPPER).unwrap_or(n)),
            None => format!("luks-{}", h.uuid),
        };
        if !valid_name(&name) {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("{device}: {name:?} is not a valid device-mapper name"),
            ));
        }
        if self.luks.maps.iter().any(|m| m.name == name) {
            return Err(err(
                ErrorKind::AlreadyExists,
                format!("{MAPPER}{name} already exists"),
            ));
        }
        let vk = h.unlock(&dev, key, None, &self.luks.limits).map_err(ctx)?;
        let d = LuksDevice::new(dev, &h, &vk).map_err(ctx)?;
        let disk = self.disk_under(device);
        self.luks.maps.push(Mapping {
            name: name.clone(),
            source: String::from(device),
            disk,
            dev: shared(d),
        });
        // The new device may hold LVM physical volumes.
        self.invalidate_lvm();
        Ok(format!("{MAPPER}{name}"))
    }

    /// Closes `/dev/mapper/<name>` (or `<name>`). Refused while it is mounted or another
    /// mapping sits on it.
    pub fn luks_close(&mut self, name: &str) -> Result<(), Error> {
        let n = name.strip_prefix(MAPPER).unwrap_or(name);
        let full = format!("{MAPPER}{n}");
        let i = self
            .luks
            .maps
            .iter()
            .position(|m| m.name == n)
            .ok_or_else(|| err(ErrorKind::NotFound, format!("{full} is not open")))?;
        if let Some(m) = self.mounts.entries().find(|m| m.device == full) {
            return Err(err(
                ErrorKind::Busy,
                format!("{full} is mounted on {}", m.mountpoint),
            ));
        }
        if let Some(m) = self.luks.maps.iter().find(|m| m.source == full) {
            return Err(err(
                ErrorKind::Busy,
                format!("{full} is in use by {MAPPER}{}", m.name),
            ));
        }
        // An LV of a volume group with a PV on this mapping, mounted (LVM on LUKS).
        for pv in self.lvm().pv_report().iter().filter(|p| p.name == full) {
            let prefix = format!("/dev/{}/", pv.vg);
            if let Some(m) = self
                .mounts
                .entries()
                .find(|m| !pv.vg.is_empty() && m.device.starts_with(&prefix))
            {
                return Err(err(
                    ErrorKind::Busy,
                    format!("{full} holds {}, mounted on {}", m.device, m.mountpoint),
                ));
            }
        }
        let m = self.luks.maps.remove(i);
        self.invalidate_lvm();
        m.dev.borrow_mut().flush()
    }

    /// The disk a device lives on: a disk or partition's own disk, a mapping's disk, or
    /// the first disk of an LV's volume group.
    fn disk_under(&self, device: &str) -> String {
        if let Some(m) = device
            .strip_prefix(MAPPER)
            .and_then(|n| self.luks.maps.iter().find(|m| m.name == n))
        {
            return m.disk.clone();
        }
        if let Some((_, disk, _)) = self
            .plain_devices()
            .into_iter()
            .find(|(name, _, _)| name == device)
        {
            return disk;
        }
        let scan = self.lvm();
        scan.find(device)
            .and_then(|(v, _)| scan.vg_disks(v).into_iter().next())
            .unwrap_or_else(|| String::from(device))
    }

    /// Where LUKS headers are looked for: whole disks without a partition table, every
    /// partition, LVM logical volumes (LUKS on LVM) and opened mappings (stacked LUKS).
    fn luks_candidates(&self) -> Vec<(String, SharedDevice)> {
        let mut out: Vec<(String, SharedDevice)> = self
            .plain_devices()
            .into_iter()
            .map(|(name, _, dev)| (name, dev))
            .collect();
        for (name, dev, _) in self.lvm().listed_lvs() {
            if let Ok(dev) = dev {
                out.push((name, dev));
            }
        }
        for (name, _, dev) in self.luks_sources() {
            out.push((name, dev));
        }
        out
    }

    /// Every LUKS device on the disks and partitions, with its keyslots; a header that
    /// cannot be read is listed with the reason.
    pub fn luks_info(&self) -> Vec<LuksVolume> {
        let mut out = Vec::new();
        for (name, dev) in self.luks_candidates() {
            if !luks::is_luks(&dev) {
                continue;
            }
            let mut v = match LuksHeader::read(&dev) {
                Ok(h) => h.info(&name),
                Err(e) => LuksVolume {
                    device: name.clone(),
                    uuid: String::new(),
                    version: 0,
                    label: None,
                    cipher: String::new(),
                    key_bits: 0,
                    sector_size: 0,
                    payload_offset: 0,
                    keyslots: Vec::new(),
                    required_memory: 0,
                    mapped: None,
                    error: Some(e.message),
                },
            };
            v.mapped = self
                .luks
                .maps
                .iter()
                .find(|m| m.source == name)
                .map(|m| format!("{MAPPER}{}", m.name));
            out.push(v);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("luks-0a1b"));
        for bad in ["", ".", "..", "a/b", "a b", "x\n", &"x".repeat(128)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
