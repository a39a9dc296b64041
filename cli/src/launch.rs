//! The launch options every subcommand shares (`-a DISK`, `--rw`, `-m`, `--backend`,
//! ...) and what they turn into: a [`Session`] on a launched (or handed-down) appliance,
//! with the guest's filesystems mounted as `-m` or inspection says.

use crate::warnings;
use anyhow::{Context, Result, bail};
use clap::Args;
use skiff::volumes::{KeyPrompt, KeySet, Secret};
use skiff::wire::Filesystem;
use skiff::{Appliance, BackingPolicy, Builder, DriveOptions, Format, MountOptions, Session};
use std::path::PathBuf;
use std::time::Duration;

/// Options for booting the appliance (accepted before or after the subcommand).
#[derive(Args, Clone)]
pub struct LaunchArgs {
    /// Add a disk image: PATH[,format=raw|qcow2][,backing=allow] (format found from the
    /// image header if omitted; an image naming a backing or data file is refused unless
    /// backing=allow).
    #[arg(short = 'a', long = "add", value_name = "DISK", global = true, value_parser = parse_drive)]
    pub drives: Vec<Drive>,
    /// Attach the disks writable (default: read-only).
    #[arg(long, global = true)]
    pub rw: bool,
    /// Print qemu's command line and the appliance log on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 128, global = true)]
    pub memory: u32,
    /// Mount DEV at MOUNTPOINT (default `/`) before a filesystem command; repeat for
    /// more, in order. Without -m, the disks' only filesystem is mounted at `/`, or the
    /// guest the way its fstab says. OPTIONS: `subvol=NAME` mounts a btrfs subvolume
    /// (same as DEV `btrfsvol:/dev/sda3/NAME`), `ro`; FSTYPE forces the type.
    #[arg(short = 'm', long = "mount", value_name = "DEV[:MOUNTPOINT[:OPTIONS[:FSTYPE]]]",
          global = true, value_parser = parse_mount)]
    pub mounts: Vec<MountSpec>,
    /// A key for an encrypted device or image, libguestfs' syntax: ID:key:PASSPHRASE or
    /// ID:file:FILE (its first line). ID: a device (/dev/sda2, /dev/VG/LV), a LUKS UUID,
    /// an encrypted qcow2 image's path (or its /dev/sdX), or `all`. Repeat for more.
    /// LUKS devices are unlocked before the command runs (as /dev/mapper/luks-UUID).
    #[arg(long = "key", value_name = "ID:key:PASS|ID:file:FILE", global = true)]
    pub keys: Vec<String>,
    /// Read keys from stdin, one line per LUKS device that has no --key (instead of
    /// asking on the terminal).
    #[arg(long, global = true)]
    pub keys_from_stdin: bool,
    /// Extra appliance kernel command line (development: `skiff.test=...` knobs).
    #[arg(long, value_name = "CMDLINE", global = true, hide = true)]
    pub append: Option<String>,
    /// Seconds the appliance may take to boot.
    #[arg(long, value_name = "SECS", default_value_t = 20.0, global = true)]
    pub timeout: f64,
    /// Print one JSON document (field names in README's CLI reference) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Where the appliance runs: `direct` (qemu child) or `libvirt` (transient domain).
    /// Default: libvirt when --connect, -d or --volume is given, else direct.
    #[arg(long, value_name = "BACKEND", global = true,
          value_parser = ["direct", "libvirt"])]
    pub backend: Option<String>,
    /// libvirt connection URI (e.g. qemu:///system, qemu+ssh://host/system).
    #[arg(short = 'c', long = "connect", value_name = "URI", global = true)]
    pub connect: Option<String>,
    /// Add the disks of libvirt guest DOMAIN (name or UUID); read-only unless --rw, and
    /// --rw is refused while the guest runs.
    #[arg(short = 'd', long = "domain", value_name = "DOMAIN", global = true)]
    pub domain: Option<String>,
    /// Add libvirt storage volume POOL/VOLUME (path and format from libvirt).
    #[arg(long = "volume", value_name = "POOL/VOLUME", global = true)]
    pub volumes: Vec<String>,
    /// Internal (`each --pool`): use the pre-booted appliance whose RPC channel the
    /// parent skiff handed down as this fd, with the -a disks already attached in order,
    /// instead of launching one.
    #[arg(long, value_name = "FD", global = true, hide = true)]
    pub inherit_appliance: Option<i32>,
}

/// One `-a PATH[,format=...][,backing=...]`.
#[derive(Clone)]
pub struct Drive {
    pub path: PathBuf,
    pub format: Option<Format>,
    pub backing: BackingPolicy,
}

/// `PATH[,format=raw|qcow2][,backing=allow|refuse]` (options in any order). A trailing
/// part that is not a known option stays in the path.
fn parse_drive(s: &str) -> Result<Drive, String> {
    let mut d = Drive {
        path: PathBuf::new(),
        format: None,
        backing: BackingPolicy::Refuse,
    };
    let mut rest = s;
    while let Some((head, opt)) = rest.rsplit_once(',') {
        if let Some(f) = opt.strip_prefix("format=") {
            d.format = Some(f.parse()?);
        } else if let Some(b) = opt.strip_prefix("backing=") {
            d.backing = match b {
                "allow" => BackingPolicy::Allow,
                "refuse" => BackingPolicy::Refuse,
                other => return Err(format!("backing={other}: expected allow or refuse")),
            };
        } else {
            break;
        }
        rest = head;
    }
    if rest.is_empty() {
        return Err("empty disk path".into());
    }
    d.path = rest.into();
    Ok(d)
}

/// One `-m DEV[:MOUNTPOINT[:OPTIONS[:FSTYPE]]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub device: String,
    pub mountpoint: String,
    /// Mount options as given (`subvol=home`, `ro`, ...).
    pub options: Option<String>,
    pub fstype: Option<String>,
}

impl MountSpec {
    /// `device` at `mountpoint`, no options.
    pub fn new(device: String, mountpoint: String) -> MountSpec {
        MountSpec {
            device,
            mountpoint,
            options: None,
            fstype: None,
        }
    }
}

/// `DEV` (mounted at `/`), `DEV:MOUNTPOINT`, `DEV:MOUNTPOINT:OPTIONS` or
/// `DEV:MOUNTPOINT:OPTIONS:FSTYPE` (guestfish's `-m`). A `btrfsvol:` device keeps its
/// own colon.
fn parse_mount(s: &str) -> Result<MountSpec, String> {
    let (prefix, rest) = match s.strip_prefix(skiff::fs::BTRFSVOL) {
        Some(r) => (skiff::fs::BTRFSVOL, r),
        None => ("", s),
    };
    let mut parts = rest.splitn(4, ':');
    let device = format!("{prefix}{}", parts.next().unwrap_or(""));
    let mountpoint = parts.next().unwrap_or("/");
    let options = parts.next().filter(|o| !o.is_empty()).map(String::from);
    let fstype = parts.next().filter(|t| !t.is_empty()).map(String::from);
    if device.is_empty() || device == prefix {
        return Err(format!("{s:?}: empty device"));
    }
    if !mountpoint.starts_with('/') {
        return Err(format!("{s:?}: the mountpoint must be an absolute path"));
    }
    Ok(MountSpec {
        device,
        mountpoint: mountpoint.into(),
        options,
        fstype,
    })
}

/// What a `-m` (or fstab) option string asks of a mount: the device to mount (a btrfs
/// `subvol=` makes it `btrfsvol:DEV/SUBVOL`), read-only or not, and the options skiff
/// does not act on (warned about).
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
            if !sub.is_empty() && !device.starts_with(skiff::fs::BTRFSVOL) {
                dev = skiff::fs::btrfs_subvolume(device, sub);
            }
        } else if o == "ro" {
            ro = true;
        } else if !matches!(o, "rw" | "defaults") {
            ignored.push(o.to_string());
        }
    }
    (dev, ro, ignored)
}

/// The `--key`s of `a`.
pub fn key_set(a: &LaunchArgs) -> Result<KeySet> {
    let mut keys = KeySet::new();
    for k in &a.keys {
        keys.add_spec(k)?;
    }
    Ok(keys)
}

/// Asks for a LUKS device's key: a line of stdin (`--keys-from-stdin`), else on the
/// terminal without echo (like virt-cat), else nothing (the device stays locked).
struct CliPrompt {
    from_stdin: bool,
}

impl KeyPrompt for CliPrompt {
    fn ask(&mut self, device: &str, _uuid: &str) -> skiff::Result<Option<Secret>> {
        use std::io::{BufRead, IsTerminal};
        if self.from_stdin {
            let mut line = zeroize::Zeroizing::new(String::new());
            let n = std::io::stdin().lock().read_line(&mut line)?;
            if n == 0 {
                return Ok(None);
            }
            return Ok(Some(skiff::volumes::keys::first_line(line.as_bytes())));
        }
        if !std::io::stdin().is_terminal() {
            return Ok(None);
        }
        let typed = rpassword::prompt_password(format!("Enter key or passphrase (\"{device}\"): "))
            .map(zeroize::Zeroizing::new)?;
        Ok(Some(Secret::new(typed.as_bytes())))
    }
}

/// Launches the appliance `a` describes (or takes over the one handed down with
/// `--inherit-appliance`), then unlocks the LUKS devices its keys open (relaunching
/// with more memory when an Argon2 key derivation needs it). Devices left locked are
/// warnings.
pub fn launch(a: &LaunchArgs) -> Result<Session> {
    let keys = key_set(a)?;
    let mut prompt = CliPrompt {
        from_stdin: a.keys_from_stdin,
    };
    let (s, report) = if let Some(fd) = a.inherit_appliance {
        let mut s = adopt(a, fd)?;
        let r = s.unlock_all(&keys, &mut prompt)?;
        (s, r)
    } else {
        builder(a, &keys)?.launch_unlocked(&keys, &mut prompt)?
    };
    for (device, why) in &report.skipped {
        warnings::warn(format!("{device} (LUKS) is left locked: {why}"));
    }
    Ok(s)
}

/// Launches without unlocking anything (commands on whole disks: `devices`).
pub fn launch_plain(a: &LaunchArgs) -> Result<Session> {
    if let Some(fd) = a.inherit_appliance {
        return adopt(a, fd);
    }
    let keys = key_set(a)?;
    Ok(builder(a, &keys)?.launch()?)
}

/// The builder for `a`: its settings and disks (encrypted qcow2 images get their key
/// from `keys`).
fn builder(a: &LaunchArgs, keys: &KeySet) -> Result<Builder> {
    let mut b = base_builder(a)?.keys(keys.clone());
    for d in &a.drives {
        b = b.add_drive(
            &d.path,
            DriveOptions {
                format: d.format,
                readonly: !a.rw,
                backing: d.backing,
            },
        );
    }
    for (path, options) in libvirt_drives(a)? {
        b = b.add_drive(path, options);
    }
    Ok(b)
}

/// The session on an appliance handed down by `each --pool` (see `--inherit-appliance`).
fn adopt(a: &LaunchArgs, fd: i32) -> Result<Session> {
    if a.domain.is_some() || !a.volumes.is_empty() {
        bail!("--inherit-appliance takes -a disks only");
    }
    let stream = skiff::process::inherited_socket(fd)?;
    let readonly = vec![!a.rw; a.drives.len()];
    let s = Session::adopt(stream, readonly, skiff::appliance::DEFAULT_CALL_TIMEOUT)?;
    if s.devices().len() != a.drives.len() {
        bail!(
            "the inherited appliance has {} disk(s), {} were named with -a",
            s.devices().len(),
            a.drives.len()
        );
    }
    Ok(s)
}

/// The disks named by -d DOMAIN and --volume POOL/VOLUME, looked up through libvirt.
fn libvirt_drives(a: &LaunchArgs) -> Result<Vec<(PathBuf, DriveOptions)>> {
    if a.domain.is_none() && a.volumes.is_empty() {
        return Ok(Vec::new());
    }
    let uri = a.connect.as_deref();
    // A guest's chain is its administrator's definition: followed, still checked by
    // skiff (no protocols, explicit formats, no loops). A volume's header is not.
    let mut found = Vec::new();
    if let Some(d) = &a.domain {
        for g in skiff::libvirt::domain_drives(uri, d, a.rw)? {
            found.push((g, BackingPolicy::Allow));
        }
    }
    for v in &a.volumes {
        found.push((
            skiff::libvirt::volume_drive(uri, v, !a.rw)?,
            BackingPolicy::Refuse,
        ));
    }
    Ok(found
        .into_iter()
        .map(|(g, backing)| {
            let o = DriveOptions {
                format: Some(g.format),
                readonly: g.readonly,
                backing,
            };
            (g.path, o)
        })
        .collect())
}

/// The launch settings of `a` without its disks.
pub fn base_builder(a: &LaunchArgs) -> Result<Builder> {
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    let mut b = Appliance::builder()
        .memory_mib(a.memory)
        .timeout(Duration::from_secs_f64(a.timeout))
        .verbose(a.verbose);
    if let Some(c) = &a.append {
        b = b.kernel_cmdline(c);
    }
    let libvirt_wanted = a.connect.is_some() || a.domain.is_some() || !a.volumes.is_empty();
    let backend = a
        .backend
        .as_deref()
        .unwrap_or(if libvirt_wanted { "libvirt" } else { "direct" });
    b = b.backend(skiff::Backend::parse(backend, a.connect.clone())?);
    Ok(b)
}

/// A filesystem skiff could be asked to mount (not a partition it cannot read, swap,
/// or a container like LUKS/LVM).
fn is_mountable(f: &Filesystem) -> bool {
    !matches!(
        f.fstype.as_str(),
        "unknown" | "swap" | "crypto_LUKS" | "LVM2_member"
    )
}

/// Which mounts to make, in order: the `-m` options as given, or, without any, the one
/// filesystem on the disks at `/`, or with several, the OS found by inspection mounted
/// the way it mounts itself ([`skiff::inspect::mount_plan`]).
pub fn plan_mounts(session: &mut Session, given: &[MountSpec]) -> Result<Vec<MountSpec>> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    let all = session.filesystems().context("listing the filesystems")?;
    let found: Vec<&Filesystem> = all.iter().filter(|f| is_mountable(f)).collect();
    match found.as_slice() {
        [one] => Ok(vec![MountSpec::new(one.device.clone(), "/".into())]),
        [] => {
            let listed: Vec<String> = all
                .iter()
                .map(|f| format!("{} ({})", f.device, f.fstype))
                .collect();
            bail!(
                "no filesystem found to mount (devices: {}); use -m DEV[:MOUNTPOINT]",
                if listed.is_empty() {
                    "none".to_string()
                } else {
                    listed.join(", ")
                }
            )
        }
        many => {
            // Several filesystems: mount the guest the way it mounts itself (inspection:
            // the OS root at /, then its fstab entries, shallowest first).
            let opts = skiff::inspect::InspectOptions {
                applications: false,
            };
            let found =
                skiff::inspect::inspect_os_with(session, &opts).context("inspecting the disks")?;
            if let Some(os) = found.first() {
                let plan = skiff::inspect::mount_plan(os);
                return Ok(plan
                    .into_iter()
                    .map(|(device, mountpoint)| MountSpec::new(device, mountpoint))
                    .collect());
            }
            let listed: Vec<String> = many
                .iter()
                .map(|f| format!("{} ({})", f.device, f.fstype))
                .collect();
            bail!(
                "the disks hold {} filesystems: {}; choose with -m DEV[:MOUNTPOINT] \
                 (e.g. -m {})",
                many.len(),
                listed.join(", "),
                many[0].device
            )
        }
    }
}

/// Makes the mounts [`plan_mounts`] decides (read-write with `--rw`). Mounts named with
/// `-m`, and the root of an inspected guest, must succeed. The guest's other fstab
/// entries are forgiving, as with `virt-cat` and `guestfish -i`: one that fails (missing
/// mountpoint directory, unreadable or unsupported filesystem, absent device) is a
/// warning ([`warnings::warn`]) and the command goes on.
pub fn mount_planned(s: &mut Session, a: &LaunchArgs) -> Result<()> {
    let from_inspection = a.mounts.is_empty();
    for (i, m) in plan_mounts(s, &a.mounts)?.into_iter().enumerate() {
        let (device, ro, ignored) = apply_options(&m.device, m.options.as_deref());
        for o in ignored {
            warnings::warn(format!("-m {}: mount option {o:?} ignored", m.device));
        }
        let opts = MountOptions {
            readonly: !a.rw || ro,
            fstype: m.fstype.clone(),
        };
        let r = s
            .mount(&device, &m.mountpoint, opts)
            .with_context(|| format!("mounting {device} at {}", m.mountpoint));
        match r {
            Err(e) if from_inspection && i > 0 && !is_fatal(&e) => {
                warnings::warn(format!(
                    "some filesystems could not be mounted (ignored): {e:#}"
                ));
            }
            r => r?,
        }
    }
    Ok(())
}

/// Errors after which the session cannot go on (the appliance is gone), as opposed to a
/// refusal of one mount.
fn is_fatal(e: &anyhow::Error) -> bool {
    !matches!(
        e.downcast_ref::<skiff::Error>(),
        Some(skiff::Error::Remote(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_specs() {
        let d = parse_drive("a.img").unwrap();
        assert_eq!(d.path, PathBuf::from("a.img"));
        assert_eq!(d.format, None);
        let d = parse_drive("/x/a,b.qcow2,format=qcow2").unwrap();
        assert_eq!(d.path, PathBuf::from("/x/a,b.qcow2"));
        assert_eq!(d.format, Some(Format::Qcow2));
        let d = parse_drive("weird,name").unwrap();
        assert_eq!(d.path, PathBuf::from("weird,name"));
        assert!(parse_drive("a.img,format=vmdk").is_err());
        assert!(parse_drive(",format=raw").is_err());
        assert_eq!(d.backing, BackingPolicy::Refuse);
        for spec in [
            "t.qcow2,backing=allow,format=qcow2",
            "t.qcow2,format=qcow2,backing=allow",
        ] {
            let d = parse_drive(spec).unwrap();
            assert_eq!(d.path, PathBuf::from("t.qcow2"));
            assert_eq!(d.format, Some(Format::Qcow2));
            assert_eq!(d.backing, BackingPolicy::Allow);
        }
        assert!(parse_drive("t.qcow2,backing=yes").is_err());
    }

    #[test]
    fn mount_specs() {
        assert_eq!(
            parse_mount("/dev/sda2").unwrap(),
            MountSpec::new("/dev/sda2".into(), "/".into())
        );
        let m = parse_mount("/dev/sda3:/home:subvol=home").unwrap();
        assert_eq!(m.device, "/dev/sda3");
        assert_eq!(m.options.as_deref(), Some("subvol=home"));
        assert_eq!(
            apply_options(&m.device, m.options.as_deref()),
            ("btrfsvol:/dev/sda3/home".to_string(), false, vec![])
        );
        let m = parse_mount("btrfsvol:/dev/sda3/root:/:ro,noatime:btrfs").unwrap();
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
        assert_eq!(parse_mount("/dev/VG/LV:/srv").unwrap().device, "/dev/VG/LV");
        assert!(parse_mount("btrfsvol::/x").is_err());
        assert_eq!(
            parse_mount("/dev/sda1:/boot/efi").unwrap().mountpoint,
            "/boot/efi"
        );
        assert!(parse_mount(":/x").is_err());
        assert!(parse_mount("/dev/sda1:boot").is_err());
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
}
