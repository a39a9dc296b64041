//! Disk hotplug through libvirt, for appliance domains launched with
//! `Builder::hotplug(true)` (their XML has PCIe root ports, see [`xml::DomainSpec`]).
//!
//! Adding: `virDomainAttachDevice` (live) of a `<disk>` with an explicit format,
//! `<readonly/>` unless writing, serial `skiff<N>` and an address on a free root port,
//! then the appliance's `Rescan` until it lists `/dev/sd<a+N>`.
//!
//! Removing: `Umount` in the appliance, then `virDomainDetachDeviceAlias` (live), which
//! returns once qemu was asked (`device_del` presses the slot's attention button;
//! `virDomainDetachDevice` would instead sit in libvirtd for up to 5 s waiting for the
//! unplug that only our next `Rescan` can complete). The appliance rescans, syncs, drops
//! the disk and powers the slot off; qemu finishes the unplug and libvirt drops the disk
//! from the live XML, which we wait for (with a timeout, rescanning now and then).

use super::launch::{VirtGuest, verr};
use super::xml;
use crate::appliance::DriveOptions;
use crate::backend::{Attached, Failure, Hotplug};
use crate::error::{Error, Result};
use crate::volumes::KeySet;
use std::path::Path;
use std::time::{Duration, Instant};
use virt::sys;
use wire::Device;

/// How long libvirt may take to drop an unplugged disk from the live domain.
const UNPLUG_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the appliance rescans while an unplug is pending.
const UNPLUG_RESCAN: Duration = Duration::from_millis(500);
/// How often the live XML is read while an unplug is pending.
const UNPLUG_POLL: Duration = Duration::from_millis(5);

/// The hotplug state of a libvirt appliance domain.
pub(crate) struct VirtHotplug {
    /// Per root port (controller index K = PCI bus K, from 1): which slot it holds.
    ports: Vec<Option<usize>>,
    /// The next disk slot (never reused within a session).
    next_slot: usize,
    /// Until when the disk being unplugged may take to leave the live XML.
    unplug_deadline: Instant,
}

impl VirtHotplug {
    /// `ports` root ports, the first hot-added disk after `cold` cold-plugged ones.
    pub(crate) fn new(ports: usize, cold: usize) -> VirtHotplug {
        VirtHotplug {
            ports: vec![None; ports],
            next_slot: cold,
            unplug_deadline: Instant::now(),
        }
    }
}

impl VirtGuest {
    fn hot(&mut self) -> Result<&mut VirtHotplug> {
        self.hot.as_mut().ok_or_else(|| {
            Error::NotHotpluggable(
                "this session was launched without hotplug (Builder::hotplug(true))".into(),
            )
        })
    }
}

impl Hotplug for VirtGuest {
    fn free_ports(&self) -> usize {
        self.hot
            .as_ref()
            .map_or(0, |h| h.ports.iter().filter(|p| p.is_none()).count())
    }

    fn attach(
        &mut self,
        path: &Path,
        options: DriveOptions,
        keys: &KeySet,
    ) -> Result<Attached, Failure> {
        let hot = self.hot()?;
        let Some(port) = hot.ports.iter().position(Option::is_none) else {
            return Err(Failure::from(Error::NoFreePort {
                ports: hot.ports.len(),
            }));
        };
        let next = hot.next_slot;
        let disk = super::launch::disk(
            &self.conn,
            self.local,
            path,
            options,
            keys,
            Some(&wire::disk_name(next)),
            &mut self.secrets,
        )?;
        let hot = self.hot()?;
        let slot = hot.next_slot;
        hot.next_slot += 1;
        // Controller index (= bus number) port + 1: index 0 is pcie-root.
        let dxml = xml::hot_disk_xml(slot, &disk, port + 1);
        if let Err(e) = self
            .dom
            .attach_device_flags(&dxml, sys::VIR_DOMAIN_AFFECT_LIVE)
        {
            // A file removed since the check above is still "not found".
            if self.local && !path.exists() {
                return Err(Failure::from(Error::DiskNotFound {
                    path: path.to_path_buf(),
                }));
            }
            return Err(Failure::from(verr(
                format_args!("cannot attach {}", path.display()),
                e,
            )));
        }
        self.hot()?.ports[port] = Some(slot);
        Ok(Attached {
            slot,
            format: disk.format,
            image: None,
        })
    }

    fn detach(&mut self, slot: usize, device: &str) -> Result<(), Failure> {
        let alias = xml::disk_alias(slot);
        self.detach_alias(&alias)
            .map_err(|e| verr(format_args!("cannot detach {device}"), e))?;
        // The appliance sees the attention button on its rescan, syncs, drops the disk
        // and powers the slot off; qemu then detaches the device and libvirt drops it
        // from the live XML.
        self.hot()?.unplug_deadline = Instant::now() + UNPLUG_TIMEOUT;
        Ok(())
    }

    /// Done once libvirt has dropped the disk from the live XML, which is read every
    /// [`UNPLUG_POLL`]; the appliance rescans every [`UNPLUG_RESCAN`] meanwhile, in case
    /// one came before qemu had pressed the button.
    fn unplug_progress(
        &mut self,
        slot: usize,
        device: &str,
        _listed: &[Device],
    ) -> Result<bool, Failure> {
        let alias = xml::disk_alias(slot);
        let deadline = self.hot()?.unplug_deadline;
        let next_rescan = (Instant::now() + UNPLUG_RESCAN).min(deadline);
        loop {
            let live = self
                .dom
                .xml_desc(0)
                .map_err(|e| verr("cannot read the appliance domain's XML", e))?;
            if !xml::has_alias(&live, &alias).map_err(Error::Libvirt)? {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Failure::from(Error::UnplugTimeout {
                    device: device.to_string(),
                    timeout: UNPLUG_TIMEOUT,
                }));
            }
            if now >= next_rescan {
                return Ok(false);
            }
            std::thread::sleep(UNPLUG_POLL);
        }
    }

    /// The disk is gone from the domain: its port is free (libvirt always waits).
    fn finish_unplug(
        &mut self,
        slot: usize,
        _wait: bool,
        _gone: &mut Vec<usize>,
    ) -> Result<bool, Failure> {
        let hot = self.hot()?;
        if let Some(p) = hot.ports.iter_mut().find(|p| **p == Some(slot)) {
            *p = None;
        }
        Ok(true)
    }
}
