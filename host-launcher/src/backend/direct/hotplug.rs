//! Disk hotplug over QMP, the direct backend's part of [`Hotplug`]: `add-fd` of the
//! image's files (skiff opened them; qemu gets fds, never a path), `blockdev-add` with
//! the same options as a cold-plugged disk, and `device_add virtio-blk-pci` on a free
//! PCIe root port; then the appliance's `Rescan` (the session's). Back: `device_del`,
//! rescans until the appliance dropped the disk (it syncs and powers the slot off), the
//! `DEVICE_DELETED` event, `blockdev-del` and `remove-fd`.
//!
//! Only launches with `Builder::hotplug(true)` have the ports and the monitor. A
//! hot-added disk in slot N has node `d<N>`, device `vd<N>` and serial `skiff<N>`.

use super::DirectHandle;
use super::qemu::{self, DriveArg};
use super::qmp::{Qmp, QmpError};
use crate::appliance::DriveOptions;
use crate::backend::{Attached, Failure, Hotplug};
use crate::confine::process::Qemu;
use crate::error::{Error, Result};
use crate::images::raw_fd;
use crate::volumes::KeySet;
use qapi::qmp::{BlockdevOptions, Event, blockdev_del, device_add, device_del, remove_fd};
use std::path::Path;
use std::time::{Duration, Instant};
use wire::Device;

/// How long one QMP command may take.
const QMP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long qemu may take to finish an unplug once the appliance powered the slot off.
const UNPLUG_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the appliance rescans while an unplug is pending.
const UNPLUG_RESCAN: Duration = Duration::from_millis(500);
/// How long qemu may take to exit once its monitor closed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// The QMP monitor and the root ports of a hotplug launch.
pub(crate) struct QmpHotplug {
    qmp: Qmp,
    /// Root port ids (`rp0`, ...), and which hot-added slot each holds.
    ports: Vec<(String, Option<usize>)>,
    /// The attached disks' slots and the fd sets their files were handed over in.
    plugged: Vec<(usize, Vec<u32>)>,
    /// The key objects (`secret`) of hot-added encrypted disks, by slot.
    secrets: Vec<(usize, Vec<String>)>,
    /// Disks on their way out (see [`Session::remove_drive_deferred`]): their port stays
    /// taken until qemu's `DEVICE_DELETED`.
    ///
    /// [`Session::remove_drive_deferred`]: crate::Session::remove_drive_deferred
    unplugging: Vec<Unplugging>,
    next_slot: usize,
}

/// A hot-added disk on its way out: asked to go, not yet gone from qemu.
struct Unplugging {
    device: String,
    slot: usize,
    /// The fd sets its files were handed over in (`remove-fd` once the node is gone).
    fdsets: Vec<u32>,
    /// Until when the appliance may take to drop it.
    deadline: Instant,
    /// The wait before the next rescan while it has not.
    nap: Duration,
}

impl QmpHotplug {
    /// The monitor `qmp`, root ports `ports`, the first hot-added disk after `cold`
    /// cold-plugged ones.
    pub(crate) fn new(qmp: Qmp, ports: Vec<String>, cold: usize) -> QmpHotplug {
        QmpHotplug {
            qmp,
            ports: ports.into_iter().map(|p| (p, None)).collect(),
            plugged: Vec::new(),
            secrets: Vec::new(),
            unplugging: Vec::new(),
            next_slot: cold,
        }
    }
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

/// `object-add` of a `secret` holding an encrypted image's key, base64 over the QMP
/// socket (a hot-added disk's key cannot be a file: qemu may be chrooted by now). The
/// command is never logged.
#[derive(serde::Serialize)]
struct SecretAdd {
    #[serde(rename = "qom-type")]
    qom_type: &'static str,
    id: String,
    data: String,
    format: &'static str,
}

impl std::fmt::Debug for SecretAdd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretAdd {{ id: {:?}, data: <redacted> }}", self.id)
    }
}

impl qapi::Command for SecretAdd {
    type Ok = qapi::Empty;
    const NAME: &'static str = "object-add";
    const ALLOW_OOB: bool = false;
}

impl qapi::qmp::QmpCommand for SecretAdd {}

/// `object-del`.
#[derive(serde::Serialize, Debug)]
struct ObjectDel {
    id: String,
}

impl qapi::Command for ObjectDel {
    type Ok = qapi::Empty;
    const NAME: &'static str = "object-del";
    const ALLOW_OOB: bool = false;
}

impl qapi::qmp::QmpCommand for ObjectDel {}

/// Standard base64 (RFC 4648, padded).
fn base64(data: &[u8]) -> zeroize::Zeroizing<String> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = zeroize::Zeroizing::new(String::with_capacity(data.len().div_ceil(3) * 4));
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(char::from(A[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Drops the key objects of a disk (best effort).
fn remove_secrets(qmp: &mut Qmp, ids: &[String]) {
    for id in ids {
        let _ = qmp.execute(&ObjectDel { id: id.clone() }, Instant::now() + QMP_TIMEOUT);
    }
}

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

impl DirectHandle {
    /// The qemu child and the hotplug state (the handle hands out [`Hotplug`] only when
    /// it has the latter).
    fn parts(&mut self) -> Result<(&mut Qemu, &mut QmpHotplug), Failure> {
        match self.hot.as_mut() {
            Some(hp) => Ok((&mut self.qemu, hp)),
            None => Err(Failure::from(Error::NotHotpluggable(
                "this session was launched without hotplug (Builder::hotplug(true))".into(),
            ))),
        }
    }

    /// Finishes the unplugs qemu has completed: `blockdev-del`, `remove-fd`, the port
    /// freed, the slot pushed to `gone`. With `wait_for: Some(slot)`, first waits (up to
    /// the unplug timeout) for that slot's `DEVICE_DELETED`; with `None`, takes only the
    /// events already received.
    fn reap_unplugs(
        &mut self,
        mut wait_for: Option<usize>,
        gone: &mut Vec<usize>,
    ) -> Result<(), Failure> {
        let (qemu, hp) = self.parts()?;
        loop {
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
                    return Err(Failure::from(Error::UnplugTimeout {
                        device,
                        timeout: UNPLUG_TIMEOUT,
                    }));
                }
                Err(e) => return Err(qmp_failed(qemu, "device_del", e)),
            };
            let Some(slot) = slot else { continue };
            if let Err(e) = hp.qmp.execute(
                &blockdev_del {
                    node_name: format!("d{slot}"),
                },
                Instant::now() + QMP_TIMEOUT,
            ) {
                return Err(qmp_failed(qemu, "blockdev-del", e));
            }
            let sets: Vec<u32> = hp
                .unplugging
                .iter()
                .filter(|u| u.slot == slot)
                .flat_map(|u| u.fdsets.iter().copied())
                .collect();
            remove_fdsets(&mut hp.qmp, &sets);
            if let Some(i) = hp.secrets.iter().position(|(s, _)| *s == slot) {
                let (_, ids) = hp.secrets.remove(i);
                remove_secrets(&mut hp.qmp, &ids);
            }
            hp.unplugging.retain(|u| u.slot != slot);
            if let Some(p) = hp.ports.iter_mut().find(|(_, s)| *s == Some(slot)) {
                p.1 = None;
            }
            // qemu has let go of the image: the session checks what it names and closes it.
            gone.push(slot);
            if wait_for == Some(slot) {
                wait_for = None;
            }
        }
    }
}

/// Per layer of `img` (slot `slot`), the id of its key object if it has one.
fn layer_secret_ids(
    ids: &[String],
    slot: usize,
    img: &crate::images::OpenedImage,
) -> Vec<Option<String>> {
    (0..img.layers.len())
        .map(|k| {
            let id = qemu::secret_id(slot, k);
            ids.contains(&id).then_some(id)
        })
        .collect()
}

impl Hotplug for DirectHandle {
    fn free_ports(&self) -> usize {
        self.hot
            .as_ref()
            .map_or(0, |h| h.ports.iter().filter(|(_, s)| s.is_none()).count())
    }

    /// Ports of disks removed earlier come back as their unplug completes in qemu.
    fn make_room(&mut self, gone: &mut Vec<usize>) -> Result<(), Failure> {
        self.reap_unplugs(None, gone)?;
        let (_, hp) = self.parts()?;
        if !hp.ports.iter().any(|(_, s)| s.is_none())
            && let Some(oldest) = hp.unplugging.first()
        {
            let slot = oldest.slot;
            self.reap_unplugs(Some(slot), gone)?;
        }
        Ok(())
    }

    fn attach(
        &mut self,
        path: &Path,
        options: DriveOptions,
        keys: &KeySet,
    ) -> Result<Attached, Failure> {
        let (qemu, hp) = self.parts()?;
        let Some(port) = hp.ports.iter().position(|(_, s)| s.is_none()) else {
            return Err(Failure::from(Error::NoFreePort {
                ports: hp.ports.len(),
            }));
        };
        let slot = hp.next_slot;
        // Opened and checked here; qemu gets the files as fds (`add-fd`), never a path.
        let mut img = options.open_keyed(path, keys, Some(&wire::disk_name(slot)))?;
        let format = img.format();
        // Keys first, as `secret` objects the blockdev names.
        let mut secret_ids = Vec::new();
        for (k, l) in img.layers.iter().enumerate() {
            let Some(sec) = &l.secret else { continue };
            let id = qemu::secret_id(slot, k);
            let add = SecretAdd {
                qom_type: "secret",
                id: id.clone(),
                data: base64(sec.key().expose()).to_string(),
                format: "base64",
            };
            if let Err(e) = hp.qmp.execute(&add, Instant::now() + QMP_TIMEOUT) {
                remove_secrets(&mut hp.qmp, &secret_ids);
                return Err(qmp_failed(qemu, "object-add", e));
            }
            secret_ids.push(id);
        }
        img.forget_secrets();
        let mut fdsets = Vec::new();
        for f in img.files() {
            match hp.qmp.add_fd(raw_fd(f), Instant::now() + QMP_TIMEOUT) {
                Ok(set) => fdsets.push(set),
                Err(e) => {
                    remove_fdsets(&mut hp.qmp, &fdsets);
                    return Err(qmp_failed(qemu, "add-fd", e));
                }
            }
        }
        let mut sets = fdsets.iter().copied();
        let mut drive = DriveArg::for_image(slot, &img, |_| sets.next().unwrap_or(u32::MAX));
        for (l, id) in drive
            .layers
            .iter_mut()
            .zip(layer_secret_ids(&secret_ids, slot, &img))
        {
            l.key_secret = id;
        }
        // The same blockdev JSON as a cold-plugged disk, checked against QEMU's schema.
        let opts = qemu::blockdev_json(slot, &drive).and_then(BlockdevAdd::checked);
        let opts = match opts {
            Ok(o) => o,
            Err(e) => {
                remove_fdsets(&mut hp.qmp, &fdsets);
                remove_secrets(&mut hp.qmp, &secret_ids);
                return Err(Failure::from(e));
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
                remove_secrets(&mut hp.qmp, &secret_ids);
                if !secret_ids.is_empty()
                    && let QmpError::Refused { desc, .. } = &e
                    && desc.contains("unlock")
                {
                    return Err(Failure::from(Error::WrongKey {
                        device: path.display().to_string(),
                        detail: "qemu cannot unlock the image with the key given".into(),
                    }));
                }
            }
            return Err(qmp_failed(qemu, "blockdev-add", e));
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
        if let Err(e) = hp.qmp.execute(&add, Instant::now() + QMP_TIMEOUT) {
            if matches!(e, QmpError::Refused { .. }) {
                let _ = hp.qmp.execute(
                    &blockdev_del {
                        node_name: node.clone(),
                    },
                    Instant::now() + QMP_TIMEOUT,
                );
                remove_fdsets(&mut hp.qmp, &fdsets);
                remove_secrets(&mut hp.qmp, &secret_ids);
            }
            return Err(qmp_failed(qemu, "device_add", e));
        }
        hp.ports[port].1 = Some(slot);
        hp.plugged.push((slot, fdsets));
        if !secret_ids.is_empty() {
            hp.secrets.push((slot, secret_ids));
        }
        Ok(Attached {
            slot,
            format,
            image: Some(img),
        })
    }

    fn detach(&mut self, slot: usize, device: &str) -> Result<(), Failure> {
        let (qemu, hp) = self.parts()?;
        let id = format!("vd{slot}");
        if let Err(e) = hp
            .qmp
            .execute(&device_del { id: id.clone() }, Instant::now() + QMP_TIMEOUT)
        {
            return Err(qmp_failed(qemu, "device_del", e));
        }
        let fdsets = match hp.plugged.iter().position(|(s, _)| *s == slot) {
            Some(i) => hp.plugged.remove(i).1,
            None => Vec::new(),
        };
        // qemu presses the slot's attention button; on its next rescan the appliance
        // sees it, syncs, drops the disk and powers the slot off.
        hp.unplugging.push(Unplugging {
            device: device.to_string(),
            slot,
            fdsets,
            deadline: Instant::now() + UNPLUG_TIMEOUT,
            nap: Duration::from_millis(1),
        });
        Ok(())
    }

    /// Done once the appliance no longer lists the disk; rescans back off from 1 ms to
    /// [`UNPLUG_RESCAN`] (in case one came before qemu had pressed the button).
    fn unplug_progress(
        &mut self,
        slot: usize,
        device: &str,
        listed: &[Device],
    ) -> Result<bool, Failure> {
        if !listed.iter().any(|d| d.name == device) {
            return Ok(true);
        }
        let (_, hp) = self.parts()?;
        let Some(u) = hp.unplugging.iter_mut().find(|u| u.slot == slot) else {
            return Ok(true);
        };
        if Instant::now() >= u.deadline {
            return Err(Failure::from(Error::UnplugTimeout {
                device: device.to_string(),
                timeout: UNPLUG_TIMEOUT,
            }));
        }
        std::thread::sleep(u.nap);
        u.nap = (u.nap * 2).min(UNPLUG_RESCAN);
        Ok(false)
    }

    /// With `wait`, waits for qemu's `DEVICE_DELETED`; without, leaves the disk in
    /// `unplugging` for [`Hotplug::make_room`] to collect.
    fn finish_unplug(
        &mut self,
        slot: usize,
        wait: bool,
        gone: &mut Vec<usize>,
    ) -> Result<bool, Failure> {
        if !wait {
            return Ok(false);
        }
        self.reap_unplugs(Some(slot), gone)?;
        Ok(true)
    }
}

/// The failure for a QMP exchange that went wrong. A refusal leaves the session usable;
/// a closed monitor means qemu died (the error tells qemu's status); a timeout or a
/// garbled monitor is fatal too (the monitor is out of step).
pub(crate) fn qmp_failed(qemu: &mut Qemu, command: &str, e: QmpError) -> Failure {
    match e {
        QmpError::Refused { desc, .. } => Failure::from(Error::Qmp {
            command: command.to_string(),
            message: desc,
        }),
        QmpError::Eof => Failure::fatal(match qemu.wait_timeout(EXIT_GRACE) {
            Some(s) => super::exit_error(qemu, s),
            None => Error::ApplianceExited {
                status: format!("qemu closed its QMP monitor during {command}"),
                log: qemu.log(),
            },
        }),
        QmpError::Timeout => Failure::fatal(Error::Qmp {
            command: command.to_string(),
            message: format!("no answer within {QMP_TIMEOUT:?} (qemu killed)"),
        }),
        QmpError::Io(e) => Failure::fatal(Error::Qmp {
            command: command.to_string(),
            message: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod base64_tests {
    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(i.as_bytes()).as_str(), o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::direct::qemu::{Profile, Vars};
    use crate::images::format::Format;

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
            key_secret: None,
        };
        for (layers, readonly) in [
            (vec![layer(Format::Raw, 1, true)], true),
            (vec![layer(Format::Qcow2, 1, false)], false),
            // An encrypted qcow2: its key in a `secret` object.
            (
                vec![LayerArg {
                    key_secret: Some("key4l0".into()),
                    ..layer(Format::Qcow2, 1, true)
                }],
                true,
            ),
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
