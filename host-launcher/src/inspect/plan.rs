//! Which filesystems to mount, and where: the mounts a caller names, or, when it names
//! none, the guest mounted the way it mounts itself. This is what the `skiff` command
//! does without `-m`, and what `skiff mount` and the Python bindings do too.
//!
//! ```no_run
//! use skiff::{Appliance, DriveOptions};
//! let mut s = Appliance::builder()
//!     .add_drive("guest.qcow2", DriveOptions::readonly())
//!     .launch()?;
//! let m = skiff::inspect::mount_guest(&mut s, &[], true)?;
//! for w in &m.warnings {
//!     eprintln!("warning: {w}");
//! }
//! let hostname = s.read_file("/etc/hostname")?;
//! # Ok::<(), skiff::Error>(())
//! ```

use super::{inspect_os, mount_plan};
use crate::error::{Error, Result};
use crate::session::Session;
use crate::session::fs::MountOptions;
use wire::Filesystem;

/// One mount: the filesystem on `device` (`/dev/sda2`) at `mountpoint` (`/`, `/boot`),
/// with guestfish's optional mount options and filesystem type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub device: String,
    pub mountpoint: String,
    /// Mount options as given (`subvol=home`, `ro`, ...): see [`apply_options`].
    pub options: Option<String>,
    pub fstype: Option<String>,
}

impl MountSpec {
    /// `device` at `mountpoint`, no options.
    pub fn new(device: impl Into<String>, mountpoint: impl Into<String>) -> MountSpec {
        MountSpec {
            device: device.into(),
            mountpoint: mountpoint.into(),
            options: None,
            fstype: None,
        }
    }

    /// `DEV` (mounted at `/`), `DEV:MOUNTPOINT`, `DEV:MOUNTPOINT:OPTIONS` or
    /// `DEV:MOUNTPOINT:OPTIONS:FSTYPE`, as guestfish's `-m` takes it. A `btrfsvol:` device
    /// keeps its own colon.
    pub fn parse(s: &str) -> Result<MountSpec> {
        let bad = |why: &str| Error::InvalidArgument(format!("{s:?}: {why}"));
        let (prefix, rest) = match s.strip_prefix(crate::session::fs::BTRFSVOL) {
            Some(r) => (crate::session::fs::BTRFSVOL, r),
            None => ("", s),
        };
        let mut parts = rest.splitn(4, ':');
        let device = format!("{prefix}{}", parts.next().unwrap_or(""));
        let mountpoint = parts.next().unwrap_or("/");
        let options = parts.next().filter(|o| !o.is_empty()).map(String::from);
        let fstype = parts.next().filter(|t| !t.is_empty()).map(String::from);
        if device.is_empty() || device == prefix {
            return Err(bad("empty device"));
        }
        if !mountpoint.starts_with('/') {
            return Err(bad("the mountpoint must be an absolute path"));
        }
        Ok(MountSpec {
            device,
            mountpoint: mountpoint.into(),
            options,
            fstype,
        })
    }
}

/// What mount options do here: `subvol=NAME` (or `subvolume=`) names a btrfs
/// subvolume (the device becomes `btrfsvol:DEV/NAME`), `ro` mounts read-only, `rw` and
/// `defaults` change nothing. Returns the device to mount, whether `ro` was given, and
/// the options ignored.
pub fn apply_options(device: &str, options: Option<&str>) -> (String, bool, Vec<String>) {
    let mut dev = device.to_string();
    let mut ro = false;
    let mut ignored = Vec::new();
    for o in options.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        if let Some(sub) = o
            .strip_prefix("subvol=")
            .or_else(|| o.strip_prefix("subvolume="))
        {
            let sub = sub.trim_matches('/');
            if !sub.is_empty() && !device.starts_with(crate::session::fs::BTRFSVOL) {
                dev = crate::session::fs::btrfs_subvolume(device, sub);
            }
        } else if o == "ro" {
            ro = true;
        } else if !matches!(o, "rw" | "defaults") {
            ignored.push(o.to_string());
        }
    }
    (dev, ro, ignored)
}

/// What [`mount_guest`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestMounts {
    /// The mounts made, in order.
    pub mounted: Vec<MountSpec>,
    /// One line per optional mount (a guest's fstab entry other than its root) that
    /// failed and was skipped.
    pub warnings: Vec<String>,
}

/// A filesystem skiff could be asked to mount (not a partition it cannot read, swap,
/// or a container like LUKS/LVM).
pub fn is_mountable(f: &Filesystem) -> bool {
    !matches!(
        f.fstype.as_str(),
        "unknown" | "swap" | "crypto_LUKS" | "LVM2_member"
    )
}

/// Which mounts to make, in order: `given` as it is, or, when it is empty, the one
/// filesystem on the disks at `/`, or with several, the operating system found by
/// inspection mounted the way it mounts itself ([`mount_plan`]: its root at `/`, then
/// its fstab entries, shallowest first). [`Error::NoMountPlan`] when there is nothing
/// to mount, or several filesystems and no operating system among them.
pub fn plan_mounts(session: &mut Session, given: &[MountSpec]) -> Result<Vec<MountSpec>> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    let all = session.filesystems()?;
    let found: Vec<&Filesystem> = all.iter().filter(|f| is_mountable(f)).collect();
    let listed = |fs: &[&Filesystem]| -> Vec<String> {
        fs.iter()
            .map(|f| format!("{} ({})", f.device, f.fstype))
            .collect()
    };
    match found.as_slice() {
        [one] => Ok(vec![MountSpec::new(one.device.clone(), "/")]),
        [] => {
            let all: Vec<&Filesystem> = all.iter().collect();
            let listed = listed(&all);
            Err(Error::NoMountPlan(format!(
                "no filesystem found to mount (devices: {}); use -m DEV[:MOUNTPOINT]",
                if listed.is_empty() {
                    "none".to_string()
                } else {
                    listed.join(", ")
                }
            )))
        }
        many => {
            if let Some(os) = inspect_os(session)?.first() {
                return Ok(mount_plan(os)
                    .into_iter()
                    .map(|(device, mountpoint)| MountSpec::new(device, mountpoint))
                    .collect());
            }
            Err(Error::NoMountPlan(format!(
                "the disks hold {} filesystems: {}; choose with -m DEV[:MOUNTPOINT] \
                 (e.g. -m {})",
                many.len(),
                listed(many).join(", "),
                many[0].device
            )))
        }
    }
}

/// Makes the mounts [`plan_mounts`] decides, read-only or not. The mounts in `given`,
/// and the root of an inspected guest, must succeed ([`Error::Mount`] says which one
/// failed). The guest's other fstab entries are forgiving, as with `virt-cat` and
/// `guestfish -i`: one that fails (missing mountpoint directory, unreadable or
/// unsupported filesystem, absent device) is a warning in the result, and the rest are
/// mounted.
pub fn mount_guest(
    session: &mut Session,
    given: &[MountSpec],
    readonly: bool,
) -> Result<GuestMounts> {
    let from_inspection = given.is_empty();
    let mut done = GuestMounts::default();
    for (i, m) in plan_mounts(session, given)?.into_iter().enumerate() {
        let (device, ro, ignored) = apply_options(&m.device, m.options.as_deref());
        for o in ignored {
            done.warnings
                .push(format!("-m {}: mount option {o:?} ignored", m.device));
        }
        let opts = MountOptions {
            readonly: readonly || ro,
            fstype: m.fstype.clone(),
        };
        match session.mount(&device, &m.mountpoint, opts) {
            Ok(()) => done.mounted.push(m),
            Err(e) => {
                let e = Error::Mount {
                    device,
                    mountpoint: m.mountpoint,
                    error: Box::new(e),
                };
                // A refusal of one optional mount; anything else (the appliance is
                // gone) ends the session's usefulness and is returned.
                if from_inspection
                    && i > 0
                    && matches!(&e, Error::Mount { error, .. } if matches!(**error, Error::Remote(_)))
                {
                    done.warnings.push(format!(
                        "some filesystems could not be mounted (ignored): {e}"
                    ));
                } else {
                    return Err(e);
                }
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_specs() {
        assert_eq!(
            MountSpec::parse("/dev/sda2").unwrap(),
            MountSpec::new("/dev/sda2", "/")
        );
        let m = MountSpec::parse("/dev/sda3:/home:subvol=home").unwrap();
        assert_eq!(m.device, "/dev/sda3");
        assert_eq!(m.options.as_deref(), Some("subvol=home"));
        assert_eq!(
            apply_options(&m.device, m.options.as_deref()),
            ("btrfsvol:/dev/sda3/home".to_string(), false, vec![])
        );
        let m = MountSpec::parse("btrfsvol:/dev/sda3/root:/:ro,noatime:btrfs").unwrap();
        assert_eq!(m.device, "btrfsvol:/dev/sda3/root");
        assert_eq!(m.mountpoint, "/");
        assert_eq!(m.fstype.as_deref(), Some("btrfs"));
        assert_eq!(
            apply_options(&m.device, m.options.as_deref()),
            (
                "btrfsvol:/dev/sda3/root".to_string(),
                true,
                vec!["noatime".to_string()]
            )
        );
        assert_eq!(
            MountSpec::parse("/dev/VG/LV:/srv").unwrap().device,
            "/dev/VG/LV"
        );
        assert!(MountSpec::parse("btrfsvol::/x").is_err());
        assert_eq!(
            MountSpec::parse("/dev/sda1:/boot/efi").unwrap().mountpoint,
            "/boot/efi"
        );
        assert!(MountSpec::parse(":/x").is_err());
        assert!(MountSpec::parse("/dev/sda1:boot").is_err());
    }

    #[test]
    fn mountable() {
        let f = |t: &str| Filesystem {
            device: "/dev/sda".into(),
            fstype: t.into(),
            label: None,
            uuid: None,
            size: 0,
        };
        assert!(is_mountable(&f("ext4")));
        assert!(is_mountable(&f("vfat")));
        assert!(!is_mountable(&f("unknown")));
        assert!(!is_mountable(&f("swap")));
    }

    #[test]
    fn mount_error_names_the_mount() {
        let e = Error::Mount {
            device: "/dev/sda1".into(),
            mountpoint: "/boot/efi".into(),
            error: Box::new(Error::Remote(wire::Error::new(
                wire::ErrorKind::NotFound,
                "/boot/efi",
            ))),
        };
        assert_eq!(
            e.to_string(),
            "mounting /dev/sda1 at /boot/efi: not found: /boot/efi"
        );
    }
}
