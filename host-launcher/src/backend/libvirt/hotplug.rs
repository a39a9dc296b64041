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
use crate::backend::direct::hotplug::{HotDrive, slot_name};
use crate::error::{Error, Result};
use crate::session::Session;
use std::path::Path;
use std::time::{Duration, Instant};
use virt::sys;

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
    attached: Vec<HotDrive>,
    /// The next disk slot (never reused within a session).
    next_slot: usize,
}

impl VirtHotplug {
    /// `ports` root ports, the first hot-added disk after `cold` cold-plugged ones.
    pub(crate) fn new(ports: usize, cold: usize) -> VirtHotplug {
        VirtHotplug {
            ports: vec![None; ports],
            attached: Vec::new(),
            next_slot: cold,
        }
    }
}

fn guest(s: &mut Session) -> Result<&mut VirtGuest> {
    if s.closed {
        return Err(Error::Closed);
    }
    s.guest
        .as_mut()
        .and_then(|g| g.as_any_mut())
        .and_then(|a| a.downcast_mut::<VirtGuest>())
        .filter(|g| g.hot.is_some())
        .ok_or_else(|| {
            Error::NotHotpluggable(
                "this session was launched without hotplug (Builder::hotplug(true))".into(),
            )
        })
}

fn virt_guest(s: &Session) -> Option<&VirtGuest> {
    s.guest
        .as_ref()
        .and_then(|g| g.as_any())
        .and_then(|a| a.downcast_ref::<VirtGuest>())
}

/// Is `s` a libvirt session launched with hotplug?
pub(crate) fn has_hotplug(s: &Session) -> bool {
    virt_guest(s).is_some_and(|g| g.hot.is_some())
}

/// The hot-added disks and the number of free ports, for a libvirt hotplug session.
pub(crate) fn status(s: &Session) -> Option<(Vec<HotDrive>, usize)> {
    let h = virt_guest(s)?.hot.as_ref()?;
    Some((
        h.attached.clone(),
        h.ports.iter().filter(|p| p.is_none()).count(),
    ))
}

pub(crate) fn add_drive(s: &mut Session, path: &Path, options: DriveOptions) -> Result<String> {
    let g = guest(s)?;
    let hot = g.hot.as_mut().expect("checked by guest()");
    let Some(port) = hot.ports.iter().position(Option::is_none) else {
        return Err(Error::NoFreePort {
            ports: hot.ports.len(),
        });
    };
    let disk = super::launch::disk(&g.conn, g.local, path, options)?;
    let hot = g.hot.as_mut().expect("checked by guest()");
    let slot = hot.next_slot;
    hot.next_slot += 1;
    // Controller index (= bus number) port + 1: index 0 is pcie-root.
    let dxml = xml::hot_disk_xml(slot, &disk, port + 1);
    if let Err(e) = g
        .dom
        .attach_device_flags(&dxml, sys::VIR_DOMAIN_AFFECT_LIVE)
    {
        // A file removed since the check above is still "not found".
        if g.local && !path.exists() {
            return Err(Error::DiskNotFound {
                path: path.to_path_buf(),
            });
        }
        return Err(verr(format_args!("cannot attach {}", path.display()), e));
    }
    let device = slot_name(slot);
    let hot = g.hot.as_mut().expect("checked by guest()");
    hot.ports[port] = Some(slot);
    hot.attached.push(HotDrive {
        device: device.clone(),
        path: path.to_path_buf(),
        format: disk.format,
        readonly: disk.readonly,
        slot,
        fdsets: Vec::new(),
    });
    s.set_slot_readonly(slot, disk.readonly);
    s.wait_listed(device)
}

pub(crate) fn remove_drive(s: &mut Session, device: &str) -> Result<()> {
    let g = guest(s)?;
    let hot = g.hot.as_mut().expect("checked by guest()");
    let Some(i) = hot.attached.iter().position(|d| d.device == device) else {
        return Err(Error::NotHotpluggable(format!(
            "{device} is not a hot-added disk of this session"
        )));
    };
    let slot = hot.attached[i].slot;
    s.umount_disk(device)?;

    let alias = xml::disk_alias(slot);
    let g = guest(s)?;
    g.detach_alias(&alias)
        .map_err(|e| verr(format_args!("cannot detach {device}"), e))?;
    // The appliance sees the attention button on its rescan, syncs, drops the disk and
    // powers the slot off; qemu then detaches the device and libvirt drops it from the
    // live XML. Rescans repeat, in case one came before qemu had pressed the button.
    let deadline = Instant::now() + UNPLUG_TIMEOUT;
    'outer: loop {
        s.rescan()?;
        let next_rescan = (Instant::now() + UNPLUG_RESCAN).min(deadline);
        loop {
            let g = guest(s)?;
            let live = g
                .dom
                .xml_desc(0)
                .map_err(|e| verr("cannot read the appliance domain's XML", e))?;
            if !xml::has_alias(&live, &alias).map_err(Error::Libvirt)? {
                break 'outer;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::UnplugTimeout {
                    device: device.to_string(),
                    timeout: UNPLUG_TIMEOUT,
                });
            }
            if now >= next_rescan {
                break;
            }
            std::thread::sleep(UNPLUG_POLL);
        }
    }
    let g = guest(s)?;
    let hot = g.hot.as_mut().expect("checked by guest()");
    hot.attached.remove(i);
    if let Some(p) = hot.ports.iter_mut().find(|p| **p == Some(slot)) {
        *p = None;
    }
    // Let the appliance forget the vanished device (and refresh our list).
    s.rescan()?;
    Ok(())
}
