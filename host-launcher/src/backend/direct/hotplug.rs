//! Disks added to and removed from a running appliance: QMP `blockdev-add` +
//! `device_add virtio-blk-pci` on a free PCIe root port, then the appliance's `Rescan`;
//! and back: `Umount` of the disk's mounts, `device_del`, `Rescan` (the appliance syncs,
//! drops the disk and powers the slot off), the `DEVICE_DELETED` event, `blockdev-del`.
//!
//! Only sessions launched with `Builder::hotplug(true)` have the ports and the monitor.
//! A hot-added disk gets a fresh slot N (never reused within a session): node `d<N>`,
//! device `vd<N>`, serial `skiff<N>`, which the appliance names `/dev/sd<a+N>`.

use crate::appliance::DriveOptions;
use crate::backend::direct::qemu::{self, DriveArg};
use crate::backend::direct::qmp::{Qmp, QmpError};
use crate::error::{Error, Result};
use crate::images::format::Format;
use crate::images::raw_fd;
use crate::session::{Session, unexpected};
use qapi::qmp::{BlockdevOptions, Event, blockdev_del, device_add, device_del, remove_fd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wire::disk_slot;
use wire::{Reply, Request};

/// How long one QMP command may take.
const QMP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long qemu may take to finish an unplug once the appliance powered the slot off.
const UNPLUG_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the appliance rescans while an unplug is pending.
const UNPLUG_RESCAN: Duration = Duration::from_millis(500);
/// How long a hot-added disk may take to show up in the appliance's rescans.
const APPEAR_TIMEOUT: Duration = Duration::from_secs(10);
/// How long qemu may take to exit once its monitor closed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// The hotplug state of a session.
pub(crate) struct Hotplug {
    qmp: Qmp,
    /// Root port ids (`rp0`, ...), and which hot-added slot each holds.
    ports: Vec<(String, Option<usize>)>,
    attached: Vec<HotDrive>,
    /// Disks the appliance has dropped whose `DEVICE_DELETED` has not come yet (see
    /// [`Session::remove_drive_deferred`]): their port stays taken until it does.
    unplugging: Vec<Unplugging>,
    next_slot: usize,
    readonly_only: bool,
}

/// A hot-added disk on its way out: gone from the appliance, not yet from qemu.
struct Unplugging {
    device: String,
    slot: usize,
    /// The fd sets its files were handed over in (`remove-fd` once the node is gone).
    fdsets: Vec<u32>,
}

/// One hot-added disk.
#[derive(Debug, Clone)]
pub struct HotDrive {
    /// `/dev/sdX` in the appliance.
    pub device: String,
    pub path: PathBuf,
    pub format: Format,
    pub readonly: bool,
    pub(crate) slot: usize,
    /// The fd sets qemu got the image's files in.
    pub(crate) fdsets: Vec<u32>,
}

/// The ids of the hotplug root ports in a qemu command line (`pcie-root-port,id=rpK`).
pub(crate) fn root_ports(args: &[String]) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == "-device" && w[1].starts_with("pcie-root-port,"))
        .filter_map(|w| {
            w[1].split(',')
                .find_map(|kv| kv.strip_prefix("id="))
                .map(String::from)
        })
        .collect()
}

/// `blockdev-add` with the options exactly as the cold-plug command line has them. qapi's
/// typed `BlockdevOptions` would drop `"backing": null` (an `Option` of `null`), and with
/// it the guarantee that qemu follows no name from the image header.
#[derive(serde::Serialize, Debug)]
#[serde(transparent)]
struct BlockdevAdd(serde_json::Value);

impl BlockdevAdd {
    /// The options, after checking that they fit QEMU's schema.
    fn checked(json: serde_json::Value) -> Result<BlockdevAdd> {
        serde_json::from_value::<BlockdevOptions>(json.clone())
            .map_err(|e| Error::Config(format!("blockdev options {json}: {e}")))?;
        Ok(BlockdevAdd(json))
    }
}

impl qapi::Command for BlockdevAdd {
    type Ok = qapi::Empty;
    const NAME: &'static str = "blockdev-add";
    const ALLOW_OOB: bool = false;
}

impl qapi::qmp::QmpCommand for BlockdevAdd {}

/// Drops fd sets handed to qemu (best effort: qemu closes its copies once no node uses
/// them).
fn remove_fdsets(qmp: &mut Qmp, sets: &[u32]) {
    for &set in sets {
        let _ = qmp.execute(
            &remove_fd {
                fdset_id: i64::from(set),
                fd: None,
            },
            Instant::now() + QMP_TIMEOUT,
        );
    }
}

/// `/dev/sda` for slot 0, ...: the appliance's naming ([`wire::disk_name`]).
pub use wire::disk_name as slot_name;

/// Connects the QMP monitor of a freshly launched hotplug session.
pub(crate) fn attach(
    session: &mut Session,
    stream: UnixStream,
    ports: Vec<String>,
    deadline: Instant,
) -> Result<()> {
    let deadline = deadline.max(Instant::now() + Duration::from_secs(2));
    match Qmp::connect(stream, deadline) {
        Ok(qmp) => {
            session.hotplug = Some(Hotplug {
                qmp,
                ports: ports.into_iter().map(|p| (p, None)).collect(),
                attached: Vec::new(),
                unplugging: Vec::new(),
                next_slot: session.readonly.len(),
                readonly_only: false,
            });
            Ok(())
        }
        Err(e) => Err(qmp_failed(session, "qmp_capabilities", e)),
    }
}

impl Session {
    /// Adds a disk to the running appliance and returns its device name (`/dev/sdX`),
    /// usable through every call at once. The format is found on the host unless given;
    /// the drive is read-only unless `options` say otherwise. Needs a session launched
    /// with `Builder::hotplug(true)` and a free root port.
    pub fn add_drive(&mut self, path: impl AsRef<Path>, options: DriveOptions) -> Result<String> {
        let path = path.as_ref();
        if self.hotplug.is_none() && crate::backend::libvirt::has_hotplug(self) {
            return crate::backend::libvirt::add_drive(self, path, options);
        }
        let hp = self.hotplug_state()?;
        if !options.readonly && hp.readonly_only {
            return Err(Error::ReadOnlySession {
                path: path.to_path_buf(),
            });
        }
        // Ports of disks removed earlier come back as their unplug completes in qemu.
        self.reap_unplugs(None)?;
        let hp = self.hotplug_state()?;
        if !hp.ports.iter().any(|(_, s)| s.is_none())
            && let Some(oldest) = hp.unplugging.first()
        {
            let slot = oldest.slot;
            self.reap_unplugs(Some(slot))?;
        }
        let hp = self.hotplug_state()?;
        let Some(port) = hp.ports.iter().position(|(_, s)| s.is_none()) else {
            return Err(Error::NoFreePort {
                ports: hp.ports.len(),
            });
        };
        // Opened and checked here; qemu gets the files as fds (`add-fd`), never a path.
        let img = options.open(path)?;
        let format = img.format();
        let slot = hp.next_slot;
        let mut fdsets = Vec::new();
        for f in img.files() {
            match hp.qmp.add_fd(raw_fd(f), Instant::now() + QMP_TIMEOUT) {
                Ok(set) => fdsets.push(set),
                Err(e) => {
                    remove_fdsets(&mut hp.qmp, &fdsets);
                    return Err(qmp_failed(self, "add-fd", e));
                }
            }
        }
        let mut sets = fdsets.iter().copied();
        let drive = DriveArg::for_image(&img, |_| sets.next().unwrap_or(u32::MAX));
        // The same blockdev JSON as a cold-plugged disk, checked against QEMU's schema.
        let opts = qemu::blockdev_json(slot, &drive).and_then(BlockdevAdd::checked);
        let opts = match opts {
            Ok(o) => o,
            Err(e) => {
                remove_fdsets(&mut hp.qmp, &fdsets);
                return Err(e);
            }
        };
        let node = format!("d{slot}");
        let id = format!("vd{slot}");
        let bus = hp.ports[port].0.clone();
        hp.next_slot += 1;

        let r = hp.qmp.execute(&opts, Instant::now() + QMP_TIMEOUT);
        if let Err(e) = r {
            if matches!(e, QmpError::Refused { .. }) {
                remove_fdsets(&mut hp.qmp, &fdsets);
            }
            return Err(qmp_failed(self, "blockdev-add", e));
        }
        let mut arguments = qapi::Dictionary::new();
        arguments.insert("drive".into(), node.clone().into());
        arguments.insert("serial".into(), format!("skiff{slot}").into());
        let add = device_add {
            driver: "virtio-blk-pci".into(),
            id: Some(id.clone()),
            bus: Some(bus),
            arguments,
        };
        let hp = self.hotplug_state()?;
        if let Err(e) = hp.qmp.execute(&add, Instant::now() + QMP_TIMEOUT) {
            if matches!(e, QmpError::Refused { .. }) {
                let _ = hp.qmp.execute(
                    &blockdev_del {
                        node_name: node.clone(),
                    },
                    Instant::now() + QMP_TIMEOUT,
                );
                remove_fdsets(&mut hp.qmp, &fdsets);
            }
            return Err(qmp_failed(self, "device_add", e));
        }
        let device = slot_name(slot);
        let hp = self.hotplug_state()?;
        hp.ports[port].1 = Some(slot);
        hp.attached.push(HotDrive {
            device: device.clone(),
            path: path.to_path_buf(),
            format,
            readonly: options.readonly,
            slot,
            fdsets,
        });
        self.set_slot_readonly(slot, options.readonly);
        self.set_slot_image(slot, Some(img));

        self.wait_listed(device)
    }

    /// Records whether the disk now in `slot` was attached read-only.
    pub(crate) fn set_slot_readonly(&mut self, slot: usize, readonly: bool) {
        if self.readonly.len() <= slot {
            self.readonly.resize(slot + 1, true);
        }
        self.readonly[slot] = readonly;
    }

    /// After a disk was hot-added as `device`: rescans until the appliance lists it.
    pub(crate) fn wait_listed(&mut self, device: String) -> Result<String> {
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

    /// Removes a hot-added disk: unmounts its filesystems in the appliance, asks qemu to
    /// unplug it (the appliance syncs and powers the slot off on its rescan), waits for
    /// qemu's `DEVICE_DELETED` and drops the block node. Calls naming the device fail
    /// with a `NotFound` error afterwards.
    pub fn remove_drive(&mut self, device: &str) -> Result<()> {
        if self.hotplug.is_none() && crate::backend::libvirt::has_hotplug(self) {
            return crate::backend::libvirt::remove_drive(self, device);
        }
        let slot = self.start_unplug(device)?;
        self.reap_unplugs(Some(slot))?;
        // Let the appliance forget the vanished device (and refresh our list).
        self.rescan()?;
        Ok(())
    }

    /// Like [`Session::remove_drive`], but returns as soon as the appliance has synced and
    /// dropped the disk (calls naming it fail from then on), without waiting for qemu to
    /// finish the unplug: qemu reports `DEVICE_DELETED` some 60 ms after the slot is
    /// powered off. The disk's root port is taken until then; the next `add_drive`
    /// collects finished unplugs (waiting only when no other port is free), and
    /// [`Session::hot_drives`] no longer lists the disk. For sessions that hot-add many
    /// disks one after another, e.g. [`crate::SharedReader`].
    pub fn remove_drive_deferred(&mut self, device: &str) -> Result<()> {
        if self.hotplug.is_none() && crate::backend::libvirt::has_hotplug(self) {
            return crate::backend::libvirt::remove_drive(self, device);
        }
        self.start_unplug(device).map(|_| ())
    }

    /// Unmounts `device`, `device_del`s it and rescans until the appliance has dropped it;
    /// leaves it in `unplugging` and returns its slot.
    fn start_unplug(&mut self, device: &str) -> Result<usize> {
        let hp = self.hotplug_state()?;
        let Some(i) = hp.attached.iter().position(|d| d.device == device) else {
            return Err(Error::NotHotpluggable(format!(
                "{device} is not a hot-added disk of this session"
            )));
        };
        let slot = hp.attached[i].slot;
        self.umount_disk(device)?;

        let id = format!("vd{slot}");
        let hp = self.hotplug_state()?;
        if let Err(e) = hp
            .qmp
            .execute(&device_del { id: id.clone() }, Instant::now() + QMP_TIMEOUT)
        {
            return Err(qmp_failed(self, "device_del", e));
        }
        let hp = self.hotplug_state()?;
        let gone = hp.attached.remove(i);
        hp.unplugging.push(Unplugging {
            device: device.to_string(),
            slot,
            fdsets: gone.fdsets,
        });
        // qemu presses the slot's attention button; on its next rescan the appliance sees
        // it, syncs, drops the disk and powers the slot off. Rescans repeat until the disk
        // is gone from its list (in case one came before qemu had pressed the button).
        let deadline = Instant::now() + UNPLUG_TIMEOUT;
        let mut nap = Duration::from_millis(1);
        loop {
            let devices = self.rescan()?;
            if !devices.iter().any(|d| d.name == device) {
                return Ok(slot);
            }
            if Instant::now() >= deadline {
                return Err(Error::UnplugTimeout {
                    device: device.to_string(),
                    timeout: UNPLUG_TIMEOUT,
                });
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(UNPLUG_RESCAN);
        }
    }

    /// Finishes the unplugs qemu has completed: `blockdev-del` and the port freed. With
    /// `wait_for: Some(slot)`, first waits (up to the unplug timeout) for that slot's
    /// `DEVICE_DELETED`; with `None`, takes only the events already received.
    fn reap_unplugs(&mut self, mut wait_for: Option<usize>) -> Result<()> {
        loop {
            let hp = self.hotplug_state()?;
            if hp.unplugging.is_empty() {
                // The other events (the virtio backend has a DEVICE_DELETED of its own)
                // are of no use: drop them, so that a long-lived reader does not collect
                // them.
                drop(hp.qmp.pending_events());
                return Ok(());
            }
            let ids: Vec<String> = hp
                .unplugging
                .iter()
                .map(|u| format!("vd{}", u.slot))
                .collect();
            let ours = |e: &Event| matches!(e, Event::DEVICE_DELETED { data, .. } if data.device.as_deref().is_some_and(|d| ids.iter().any(|i| i == d)));
            let deadline = match wait_for {
                Some(_) => Instant::now() + UNPLUG_TIMEOUT,
                None => Instant::now(),
            };
            let slot = match hp.qmp.wait_event(ours, deadline) {
                Ok(Event::DEVICE_DELETED { data, .. }) => data
                    .device
                    .as_deref()
                    .and_then(|d| d.strip_prefix("vd"))
                    .and_then(|n| n.parse::<usize>().ok()),
                Ok(_) => None,
                Err(QmpError::Timeout) if wait_for.is_none() => return Ok(()),
                Err(QmpError::Timeout) => {
                    let device = hp
                        .unplugging
                        .iter()
                        .find(|u| Some(u.slot) == wait_for)
                        .map_or_else(String::new, |u| u.device.clone());
                    return Err(Error::UnplugTimeout {
                        device,
                        timeout: UNPLUG_TIMEOUT,
                    });
                }
                Err(e) => return Err(qmp_failed(self, "device_del", e)),
            };
            let Some(slot) = slot else { continue };
            if let Err(e) = hp.qmp.execute(
                &blockdev_del {
                    node_name: format!("d{slot}"),
                },
                Instant::now() + QMP_TIMEOUT,
            ) {
                return Err(qmp_failed(self, "blockdev-del", e));
            }
            let hp = self.hotplug_state()?;
            let sets: Vec<u32> = hp
                .unplugging
                .iter()
                .filter(|u| u.slot == slot)
                .flat_map(|u| u.fdsets.iter().copied())
                .collect();
            remove_fdsets(&mut hp.qmp, &sets);
            hp.unplugging.retain(|u| u.slot != slot);
            if let Some(p) = hp.ports.iter_mut().find(|(_, s)| *s == Some(slot)) {
                p.1 = None;
            }
            // qemu has let go of the image: check what it names and close it.
            if let Some(img) = self.set_slot_image(slot, None)
                && img.top().writable
            {
                img.verify_unchanged()?;
            }
            if wait_for == Some(slot) {
                wait_for = None;
            }
        }
    }

    /// Before a disk goes: unmounts what lives on `device` or its partitions in the
    /// appliance, deepest mountpoint first.
    pub(crate) fn umount_disk(&mut self, device: &str) -> Result<()> {
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

    /// Asks the appliance to rescan its PCIe slots; returns (and keeps) the device list.
    pub fn rescan(&mut self) -> Result<Vec<wire::Device>> {
        match self.call(Request::Rescan)? {
            Reply::Devices(d) => {
                self.devices = d.clone();
                Ok(d)
            }
            other => Err(unexpected(&other)),
        }
    }

    /// The disks hot-added to this session and still attached.
    pub fn hot_drives(&self) -> Vec<HotDrive> {
        if let Some((attached, _)) = crate::backend::libvirt::hotplug_status(self) {
            return attached;
        }
        self.hotplug
            .as_ref()
            .map(|h| h.attached.clone())
            .unwrap_or_default()
    }

    /// How many more disks can be hot-added now (0 without hotplug).
    pub fn free_ports(&self) -> usize {
        if let Some((_, free)) = crate::backend::libvirt::hotplug_status(self) {
            return free;
        }
        self.hotplug
            .as_ref()
            .map_or(0, |h| h.ports.iter().filter(|(_, s)| s.is_none()).count())
    }

    /// From now on this session takes read-only drives only ([`Session::add_drive`] with
    /// a writable drive fails with [`Error::ReadOnlySession`]). Irrevocable.
    pub fn restrict_to_readonly_drives(&mut self) {
        if let Some(h) = self.hotplug.as_mut() {
            h.readonly_only = true;
        }
    }

    /// Does this session take only read-only drives?
    pub fn readonly_drives_only(&self) -> bool {
        self.hotplug.as_ref().is_some_and(|h| h.readonly_only)
    }

    fn hotplug_state(&mut self) -> Result<&mut Hotplug> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.hotplug.as_mut().ok_or_else(|| {
            Error::NotHotpluggable(
                "this session was launched without hotplug (Builder::hotplug(true))".into(),
            )
        })
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

/// The error for a failed QMP exchange. A refusal leaves the session usable; a closed
/// monitor means qemu died (the session is closed with qemu's status); a timeout or a
/// garbled monitor closes the session too (it is out of step).
fn qmp_failed(session: &mut Session, command: &str, e: QmpError) -> Error {
    match e {
        QmpError::Refused { desc, .. } => Error::Qmp {
            command: command.to_string(),
            message: desc,
        },
        QmpError::Eof => {
            let status = session
                .qemu
                .as_mut()
                .and_then(|q| q.wait_timeout(EXIT_GRACE));
            let err = match status {
                Some(s) => session.exited(s),
                None => Error::ApplianceExited {
                    status: format!("qemu closed its QMP monitor during {command}"),
                    log: session.log(),
                },
            };
            session.fail(err)
        }
        QmpError::Timeout => session.fail(Error::Qmp {
            command: command.to_string(),
            message: format!("no answer within {QMP_TIMEOUT:?} (qemu killed)"),
        }),
        QmpError::Io(e) => session.fail(Error::Qmp {
            command: command.to_string(),
            message: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::direct::qemu::{Profile, Vars};

    #[test]
    fn names_and_ports() {
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

    #[test]
    fn hotplug_launch_has_ports_and_qmp() {
        let p = Profile::hotplug();
        assert!(p.uses_qmp());
        assert!(!Profile::default().uses_qmp());
        let mut vars = Vars {
            accel: "tcg".into(),
            cpu: "qemu64".into(),
            memory_mib: 128,
            kernel: "/proc/self/fd/5".into(),
            rpc_fd: 7,
            bios: None,
            cmdline: None,
            qmp_fd: None,
        };
        assert!(matches!(p.expand(&vars), Err(Error::Config(_))));
        vars.qmp_fd = Some(9);
        let args = p.expand(&vars).unwrap();
        assert!(args.contains(&"socket,id=qmp,fd=9".to_string()));
        assert_eq!(
            args[args.iter().position(|a| a == "-machine").unwrap() + 1],
            "microvm,accel=tcg,pcie=on,acpi=on,rtc=off,pit=off,pic=off,isa-serial=off,ioapic2=off"
        );
        // The ports come from the builder, not the profile.
        assert!(root_ports(&args).is_empty());
        let b = crate::Builder::default()
            .hotplug(true)
            .accel(crate::Accel::Tcg);
        let ports = root_ports(&b.command_line().unwrap().1);
        assert_eq!(ports.len(), 8);
        assert_eq!(ports[0], "rp0");
        assert_eq!(ports[7], "rp7");
        let one = root_ports(&b.clone().hotplug_ports(1).command_line().unwrap().1);
        assert_eq!(one, ["rp0"]);
        assert!(b.clone().hotplug_ports(0).command_line().is_err());
        assert!(b.clone().hotplug_ports(29).command_line().is_err());
        let max = b.hotplug_ports(crate::appliance::MAX_HOTPLUG_PORTS);
        assert_eq!(root_ports(&max.command_line().unwrap().1).len(), 28);
        // The default profile's arguments are all in the hotplug one (same machine).
        let mut v0 = vars.clone();
        v0.qmp_fd = None;
        for a in Profile::default().expand(&v0).unwrap() {
            assert!(args.contains(&a), "{a}");
        }
    }

    #[test]
    fn blockdev_json_fits_the_qmp_schema() {
        use crate::backend::direct::qemu::{FileArg, LayerArg};
        let layer = |format, fdset, readonly| LayerArg {
            format,
            file: FileArg {
                fdset,
                readonly,
                block: false,
            },
            data_file: None,
        };
        for (layers, readonly) in [
            (vec![layer(Format::Raw, 1, true)], true),
            (vec![layer(Format::Qcow2, 1, false)], false),
            (
                vec![
                    LayerArg {
                        data_file: Some(FileArg {
                            fdset: 2,
                            readonly: false,
                            block: false,
                        }),
                        ..layer(Format::Qcow2, 1, false)
                    },
                    layer(Format::Qcow2, 3, true),
                    layer(Format::Raw, 4, true),
                ],
                false,
            ),
        ] {
            let d = DriveArg { layers, readonly };
            let json = &qemu::drive_args(4, &d).unwrap()[1];
            let want: serde_json::Value = serde_json::from_str(json).unwrap();
            let opts = BlockdevAdd::checked(want.clone()).unwrap();
            // What goes to qemu is the command line's JSON, `"backing": null` included.
            let back = serde_json::to_value(&opts).unwrap();
            assert_eq!(back, want);
        }
    }
}
