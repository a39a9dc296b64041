//! The launch options every subcommand shares (`-a DISK`, `--rw`, `-m`, `--backend`,
//! ...) and what they turn into: a [`Session`] on a launched (or handed-down) appliance,
//! with the guest's filesystems mounted as `-m` or inspection says.

use crate::warnings;
use anyhow::{Result, bail};
use clap::Args;
use skiff::inspect::MountSpec;
use skiff::volumes::{KeyPrompt, KeySet, Secret};
use skiff::{Appliance, BackingPolicy, Builder, DriveOptions, Format, Session};
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

/// One `-m DEV[:MOUNTPOINT]` (the library's [`MountSpec`]).
fn parse_mount(s: &str) -> Result<MountSpec, String> {
    MountSpec::parse(s).map_err(|e| e.to_string())
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

/// Makes the mounts `-m` names, or, without any, mounts the guest the way it mounts
/// itself ([`skiff::inspect::mount_guest`]), read-write with `--rw`. An optional mount
/// (a guest's fstab entry other than its root) that fails is a warning
/// ([`warnings::warn`]) and the command goes on.
pub fn mount_planned(s: &mut Session, a: &LaunchArgs) -> Result<()> {
    let done = skiff::inspect::mount_guest(s, &a.mounts, !a.rw)?;
    for w in done.warnings {
        warnings::warn(w);
    }
    Ok(())
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
}
