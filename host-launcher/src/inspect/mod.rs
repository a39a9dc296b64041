//! Operating-system inspection (libguestfs `inspect_os`): finds the OS root filesystem(s)
//! of the attached disks and reads what the guest says about itself — type, distro and
//! version (`/etc/os-release`, then `/etc/*-release`), hostname, architecture (the ELF
//! header of `/bin/sh`), package format, and `/etc/fstab` resolved to skiff's devices.
//!
//! Everything read from the guest is untrusted: every file read is bounded
//! ([`MAX_GUEST_FILE`]), every string kept is stripped of control characters and
//! bounded ([`clean`]), nothing is executed or interpreted beyond these parsers, and
//! paths are only ever resolved by the appliance inside the guest's own filesystem.

pub mod calls;
pub mod plan;

pub use plan::{GuestMounts, MountSpec, is_mountable, mount_guest, plan_mounts};

use crate::error::{Error, Result};
use crate::session::Session;
use crate::session::fs::MountOptions;
use serde::Serialize;
use wire::{Filesystem, Partition};

/// The most bytes read from any one guest file.
pub const MAX_GUEST_FILE: u64 = 64 * 1024;
/// The longest guest string kept (in characters).
pub const MAX_GUEST_STRING: usize = 256;

/// Filesystem types the appliance can mount (candidates for an OS root).
const MOUNTABLE: &[&str] = &["ext2", "ext3", "ext4", "vfat", "fat12", "fat16", "fat32"];

/// What kind of operating system a root holds.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OsType {
    Linux,
    Windows,
    Unknown,
}

impl OsType {
    pub fn as_str(self) -> &'static str {
        match self {
            OsType::Linux => "linux",
            OsType::Windows => "windows",
            OsType::Unknown => "unknown",
        }
    }
}

/// One operating system found by [`inspect_os`]. JSON field names are stable.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct OsInfo {
    /// The root filesystem's device, `/dev/sda2`.
    pub root: String,
    /// `linux`, `windows` or `unknown`.
    #[serde(rename = "type")]
    pub os_type: OsType,
    /// os-release `ID` (`debian`, `fedora`, `ubuntu`, `alpine`, ...), else derived from
    /// `/etc/*-release`.
    pub distro: Option<String>,
    /// os-release `VERSION_ID` (`12`, `22.04`), or the version in `/etc/*-release`.
    pub version: Option<String>,
    pub major_version: Option<u32>,
    pub minor_version: Option<u32>,
    /// os-release `PRETTY_NAME` (`Debian GNU/Linux 12 (bookworm)`), or the release line.
    pub product_name: Option<String>,
    /// `/etc/hostname`, else `HOSTNAME=` in `/etc/sysconfig/network`.
    pub hostname: Option<String>,
    /// From the ELF header of `/bin/sh` (or `/bin/ls`, ...): `x86_64`, `i386`, `aarch64`, ...
    pub arch: Option<String>,
    /// `deb`, `rpm`, `apk` or `pacman`.
    pub package_format: Option<String>,
    /// `/etc/fstab` entries with a mountpoint, in file order.
    pub fstab: Vec<FstabEntry>,
}

/// One `/etc/fstab` line, resolved to a skiff device where possible.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct FstabEntry {
    /// The first field as written (`UUID=...`, `/dev/vda1`, ...), cleaned.
    pub spec: String,
    pub mountpoint: String,
    pub fstype: String,
    /// The skiff device (`/dev/sda1`) the spec names, `None` when it names none here
    /// (LVM, network filesystems, `tmpfs`, a disk that is not attached, ...).
    pub device: Option<String>,
}

/// Strips control characters and bounds the length: guest strings are safe to print.
pub fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_GUEST_STRING)
        .collect::<String>()
        .trim()
        .to_string()
}

fn nonempty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// A failed call the appliance answered (missing file, not a directory, ...) is "no
/// answer" (`None`); anything else (the appliance died, a timeout) is an error.
fn soft<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::Remote(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The first [`MAX_GUEST_FILE`] bytes of a guest file as (lossy) text; `None` if it
/// cannot be read.
fn read_text(s: &mut Session, path: &str) -> Result<Option<String>> {
    if !soft(s.is_file(path))?.unwrap_or(false) {
        return Ok(None);
    }
    let data = soft(s.pread(path, 0, MAX_GUEST_FILE))?;
    Ok(data.map(|d| String::from_utf8_lossy(&d).into_owned()))
}

fn is_dir(s: &mut Session, path: &str) -> Result<bool> {
    Ok(soft(s.is_dir(path))?.unwrap_or(false))
}

fn exists(s: &mut Session, path: &str) -> Result<bool> {
    Ok(soft(s.exists(path))?.unwrap_or(false))
}

/// Finds every operating system on the session's disks. Each mountable filesystem is
/// mounted read-only at `/` in turn and unmounted again, so the session must have
/// nothing mounted. Roots come in device order.
///
/// ```no_run
/// let mut s = skiff::Appliance::builder()
///     .add_drive("guest.qcow2", skiff::DriveOptions::readonly())
///     .launch()?;
/// for os in skiff::inspect::inspect_os(&mut s)? {
///     println!("{} {:?} {:?} {:?}", os.root, os.distro, os.version, os.hostname);
/// }
/// # Ok::<(), skiff::Error>(())
/// ```
pub fn inspect_os(s: &mut Session) -> Result<Vec<OsInfo>> {
    if !s.mounts()?.is_empty() {
        return Err(Error::InvalidArgument(
            "inspection needs a session with nothing mounted".into(),
        ));
    }
    let filesystems = s.filesystems()?;
    let partitions = s.partitions()?;
    let disks: Vec<String> = s.devices().iter().map(|d| d.name.clone()).collect();
    let mut found = Vec::new();
    for fs in &filesystems {
        if !MOUNTABLE.contains(&fs.fstype.as_str()) {
            continue;
        }
        if soft(s.mount(&fs.device, "/", MountOptions::readonly()))?.is_none() {
            continue;
        }
        let r = inspect_mounted(s, &fs.device, &filesystems, &partitions, &disks);
        let u = s.umount("/");
        if let Some(os) = r? {
            found.push(os);
        }
        u?;
    }
    Ok(found)
}

/// Inspects the filesystem mounted at `/`: `None` when it is not an OS root.
fn inspect_mounted(
    s: &mut Session,
    device: &str,
    filesystems: &[Filesystem],
    partitions: &[Partition],
    disks: &[String],
) -> Result<Option<OsInfo>> {
    let mut os = OsInfo {
        root: device.to_string(),
        os_type: OsType::Unknown,
        distro: None,
        version: None,
        major_version: None,
        minor_version: None,
        product_name: None,
        hostname: None,
        arch: None,
        package_format: None,
        fstab: Vec::new(),
    };
    if is_dir(s, "/etc")? && (is_dir(s, "/bin")? || is_dir(s, "/usr")?) {
        os.os_type = OsType::Linux;
    } else if is_dir(s, "/Windows/System32")? || is_dir(s, "/WINDOWS/system32")? {
        os.os_type = OsType::Windows;
        os.product_name = Some("Windows".into());
        return Ok(Some(os));
    } else {
        return Ok(None);
    }

    // Distro and version.
    let mut rel = None;
    for p in ["/etc/os-release", "/usr/lib/os-release"] {
        if let Some(t) = read_text(s, p)? {
            rel = Some(parse_os_release(&t));
            break;
        }
    }
    let rel = match rel {
        Some(r) if r.id.is_some() || r.pretty_name.is_some() => r,
        _ => {
            let mut r = Release::default();
            for (path, distro) in RELEASE_FILES {
                if let Some(t) = read_text(s, path)? {
                    r = parse_release_file(*distro, &t);
                    break;
                }
            }
            r
        }
    };
    os.distro = rel.id;
    os.version = rel.version;
    os.product_name = rel.pretty_name;
    if let Some(v) = &os.version {
        (os.major_version, os.minor_version) = split_version(v);
    }

    // Hostname.
    if let Some(t) = read_text(s, "/etc/hostname")? {
        os.hostname = t.lines().next().map(clean).and_then(nonempty);
    }
    if os.hostname.is_none()
        && let Some(t) = read_text(s, "/etc/sysconfig/network")?
    {
        os.hostname = t.lines().find_map(|l| {
            let v = l.trim().strip_prefix("HOSTNAME=")?;
            nonempty(clean(unquote(v)))
        });
    }

    // Architecture: the appliance follows symlinks (/bin -> usr/bin) inside this
    // filesystem only.
    for p in [
        "/bin/sh",
        "/usr/bin/sh",
        "/bin/ls",
        "/usr/bin/ls",
        "/bin/busybox",
        "/sbin/init",
    ] {
        if !soft(s.is_file(p))?.unwrap_or(false) {
            continue;
        }
        if let Some(head) = soft(s.pread(p, 0, 64))?
            && let Some(a) = elf_arch(&head)
        {
            os.arch = Some(a.to_string());
            break;
        }
    }

    // Package format.
    os.package_format = if exists(s, "/var/lib/dpkg/status")? {
        Some("deb".into())
    } else if is_dir(s, "/var/lib/rpm")? || is_dir(s, "/usr/lib/sysimage/rpm")? {
        Some("rpm".into())
    } else if exists(s, "/lib/apk/db/installed")? {
        Some("apk".into())
    } else if is_dir(s, "/var/lib/pacman")? {
        Some("pacman".into())
    } else {
        None
    };

    // fstab.
    if let Some(t) = read_text(s, "/etc/fstab")? {
        os.fstab = parse_fstab(&t)
            .into_iter()
            .map(|(spec, mountpoint, fstype)| {
                let mut device = resolve_spec(&spec, filesystems, partitions, disks);
                if device.is_none() && mountpoint == "/" {
                    device = Some(os.root.clone());
                }
                FstabEntry {
                    spec: clean(&spec),
                    mountpoint: clean(&mountpoint),
                    fstype: clean(&fstype),
                    device,
                }
            })
            .collect();
    }
    Ok(Some(os))
}

/// What a release file says.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Release {
    pub id: Option<String>,
    pub version: Option<String>,
    pub pretty_name: Option<String>,
}

/// Fallback release files, in the order tried, with the distro each implies
/// (`None`: derived from the text).
const RELEASE_FILES: &[(&str, Option<&str>)] = &[
    ("/etc/lsb-release", None),
    ("/etc/redhat-release", None),
    ("/etc/fedora-release", Some("fedora")),
    ("/etc/centos-release", Some("centos")),
    ("/etc/SuSE-release", Some("opensuse")),
    ("/etc/alpine-release", Some("alpine")),
    ("/etc/arch-release", Some("archlinux")),
    ("/etc/gentoo-release", Some("gentoo")),
    ("/etc/debian_version", Some("debian")),
];

/// Removes one level of matching quotes and shell escapes of an os-release value.
fn unquote(v: &str) -> &str {
    let v = v.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|x| x.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

/// Parses `/etc/os-release` (`KEY=value` lines, values optionally quoted).
pub fn parse_os_release(text: &str) -> Release {
    let mut r = Release::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = nonempty(clean(
            &unquote(v).replace("\\\"", "\"").replace("\\\\", "\\"),
        ));
        match k.trim() {
            "ID" => r.id = v.map(|s| s.to_ascii_lowercase()),
            "VERSION_ID" => r.version = v,
            "PRETTY_NAME" => r.pretty_name = v,
            _ => {}
        }
    }
    r
}

/// Parses a `/etc/*-release` file: `lsb-release` style `DISTRIB_*=` lines, or one line
/// like `Fedora release 39 (Thirty Nine)`, `CentOS Linux release 7.9.2009 (Core)`,
/// `3.19.1` (alpine), `12.5` / `bookworm/sid` (debian_version).
pub fn parse_release_file(distro: Option<&str>, text: &str) -> Release {
    let mut r = Release::default();
    if text.contains("DISTRIB_ID=") {
        for line in text.lines() {
            let Some((k, v)) = line.trim().split_once('=') else {
                continue;
            };
            let v = nonempty(clean(unquote(v)));
            match k {
                "DISTRIB_ID" => r.id = v.map(|s| s.to_ascii_lowercase()),
                "DISTRIB_RELEASE" => r.version = v,
                "DISTRIB_DESCRIPTION" => r.pretty_name = v,
                _ => {}
            }
        }
        return r;
    }
    let line = clean(text.lines().next().unwrap_or(""));
    let lower = line.to_ascii_lowercase();
    r.id = distro.map(str::to_string).or_else(|| {
        let d = if lower.starts_with("fedora") {
            "fedora"
        } else if lower.starts_with("centos") {
            "centos"
        } else if lower.starts_with("red hat") {
            "rhel"
        } else if lower.starts_with("rocky") {
            "rocky"
        } else if lower.starts_with("almalinux") {
            "almalinux"
        } else {
            return None;
        };
        Some(d.to_string())
    });
    r.version = line
        .split(|c: char| c.is_whitespace() || c == '/')
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_digit())
                .to_string()
        });
    let plain_version = r.version.as_deref() == Some(line.as_str());
    r.pretty_name = if plain_version {
        match distro {
            Some("debian") => Some(format!("Debian {line}")),
            Some("alpine") => Some(format!("Alpine Linux {line}")),
            _ => nonempty(line),
        }
    } else {
        nonempty(line)
    };
    r
}

/// `22.04` → (22, 4); `12` → (12, 0); `rolling` → (None, None).
fn split_version(v: &str) -> (Option<u32>, Option<u32>) {
    let mut it = v.split('.');
    let major = it.next().and_then(|m| m.parse().ok());
    let minor = major.map(|_| it.next().and_then(|m| m.parse().ok()).unwrap_or(0));
    (major, minor)
}

/// The architecture an ELF header is built for (`e_machine`, honouring `EI_CLASS` and
/// `EI_DATA`), `None` if `head` is not an ELF header.
pub fn elf_arch(head: &[u8]) -> Option<&'static str> {
    if head.get(..4)? != b"\x7fELF" {
        return None;
    }
    let class64 = match head.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match head.get(5)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    let m = [*head.get(18)?, *head.get(19)?];
    let machine = if little {
        u16::from_le_bytes(m)
    } else {
        u16::from_be_bytes(m)
    };
    Some(match (machine, class64) {
        (3, _) => "i386",
        (62, _) => "x86_64",
        (183, _) => "aarch64",
        (40, _) => "arm",
        (243, true) => "riscv64",
        (243, false) => "riscv32",
        (20, _) => "ppc",
        (21, _) if little => "ppc64le",
        (21, _) => "ppc64",
        (22, true) => "s390x",
        (22, false) => "s390",
        (8, true) => "mips64",
        (8, false) => "mips",
        (2, _) => "sparc",
        (43, _) => "sparc64",
        (258, _) => "loongarch64",
        _ => "unknown",
    })
}

/// Undoes fstab's octal escapes (`\040` for a space).
fn fstab_unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(oct) = b.get(i + 1..i + 4)
            && oct.iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = oct.iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `(spec, mountpoint, fstype)` of every fstab line whose mountpoint is an absolute
/// path (swap, `none` and malformed lines are left out).
pub fn parse_fstab(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for line in text.lines().take(1024) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(spec), Some(mp)) = (f.next(), f.next()) else {
            continue;
        };
        let fstype = f.next().unwrap_or("auto");
        let mp = fstab_unescape(mp);
        if !mp.starts_with('/') || fstype == "swap" {
            continue;
        }
        out.push((fstab_unescape(spec), mp, fstype.to_string()));
    }
    out
}

/// The skiff device an fstab spec names: `UUID=`, `LABEL=`, `PARTUUID=`, `PARTLABEL=`,
/// `/dev/disk/by-*/...`, or a guest device path (`/dev/vda2`, `/dev/sda2`, `/dev/xvda1`,
/// `/dev/nvme0n1p2`) mapped by disk position to `/dev/sdX`. Only devices that exist
/// here are returned.
pub fn resolve_spec(
    spec: &str,
    filesystems: &[Filesystem],
    partitions: &[Partition],
    disks: &[String],
) -> Option<String> {
    let eq = |a: &Option<String>, b: &str| a.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(b));
    let by_uuid = |u: &str| {
        filesystems
            .iter()
            .find(|f| eq(&f.uuid, u))
            .map(|f| f.device.clone())
    };
    let by_label = |l: &str| {
        filesystems
            .iter()
            .find(|f| f.label.as_deref() == Some(l))
            .map(|f| f.device.clone())
    };
    let by_partuuid = |u: &str| {
        partitions
            .iter()
            .find(|p| eq(&p.uuid, u))
            .map(|p| p.name.clone())
    };
    let by_partlabel = |l: &str| {
        partitions
            .iter()
            .find(|p| p.label.as_deref() == Some(l))
            .map(|p| p.name.clone())
    };
    let spec = unquote(spec);
    if let Some(v) = spec.strip_prefix("UUID=") {
        return by_uuid(unquote(v));
    }
    if let Some(v) = spec.strip_prefix("LABEL=") {
        return by_label(unquote(v));
    }
    if let Some(v) = spec.strip_prefix("PARTUUID=") {
        return by_partuuid(unquote(v));
    }
    if let Some(v) = spec.strip_prefix("PARTLABEL=") {
        return by_partlabel(unquote(v));
    }
    if let Some(rest) = spec.strip_prefix("/dev/disk/") {
        let (kind, name) = rest.split_once('/')?;
        // udev escapes '/' and other bytes as \x2f in by-label names.
        let name = name.replace("\\x2f", "/").replace("\\x20", " ");
        return match kind {
            "by-uuid" => by_uuid(&name),
            "by-label" => by_label(&name),
            "by-partuuid" => by_partuuid(&name),
            "by-partlabel" => by_partlabel(&name),
            _ => None,
        };
    }
    let (index, part) = guest_device(spec)?;
    let disk = disks.get(index)?;
    let name = match part {
        Some(n) => format!("{disk}{n}"),
        None => disk.clone(),
    };
    let known =
        filesystems.iter().any(|f| f.device == name) || partitions.iter().any(|p| p.name == name);
    known.then_some(name)
}

/// `/dev/vdb3` → (1, Some(3)); `/dev/sda` → (0, None); `/dev/nvme0n1p2` → (0, Some(2)).
fn guest_device(path: &str) -> Option<(usize, Option<u32>)> {
    let d = path.strip_prefix("/dev/")?;
    if let Some(rest) = d.strip_prefix("nvme") {
        let (ctrl, rest) = rest.split_once('n')?;
        let index: usize = ctrl.parse().ok()?;
        let part = match rest.split_once('p') {
            Some((ns, p)) => {
                ns.parse::<u32>().ok()?;
                Some(p.parse().ok()?)
            }
            None => {
                rest.parse::<u32>().ok()?;
                None
            }
        };
        return Some((index, part));
    }
    let letters_and_num = ["xvd", "sd", "vd", "hd"]
        .iter()
        .find_map(|p| d.strip_prefix(p))?;
    let letters: &str = letters_and_num
        .split(|c: char| c.is_ascii_digit())
        .next()
        .unwrap_or("");
    if letters.is_empty() || !letters.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let num = &letters_and_num[letters.len()..];
    let mut n: usize = 0;
    for b in letters.bytes() {
        n = n.checked_mul(26)?.checked_add(usize::from(b - b'a') + 1)?;
    }
    let part = if num.is_empty() {
        None
    } else {
        Some(num.parse().ok()?)
    };
    Some((n - 1, part))
}

/// How to mount `os` the way it mounts itself: `(device, mountpoint)` pairs, the root at
/// `/` first, then the fstab entries resolved to a device here, shallowest mountpoint
/// first (so `/boot` comes before `/boot/efi`). Entries with no device, a second mount
/// of a device or mountpoint, or a mountpoint with `..`, are left out.
pub fn mount_plan(os: &OsInfo) -> Vec<(String, String)> {
    let mut plan = vec![(os.root.clone(), "/".to_string())];
    let mut rest: Vec<(String, String)> = os
        .fstab
        .iter()
        .filter(|e| e.mountpoint != "/" && e.fstype != "swap")
        .filter(|e| !e.mountpoint.split('/').any(|c| c == ".."))
        .filter_map(|e| {
            let mp = e.mountpoint.trim_end_matches('/');
            Some((e.device.clone()?, mp.to_string()))
        })
        .filter(|(_, mp)| !mp.is_empty())
        .collect();
    rest.sort_by(|a, b| {
        let depth = |m: &str| m.split('/').filter(|c| !c.is_empty()).count();
        depth(&a.1).cmp(&depth(&b.1)).then_with(|| a.1.cmp(&b.1))
    });
    for (dev, mp) in rest {
        if plan.iter().any(|(d, m)| *d == dev || *m == mp) {
            continue;
        }
        plan.push((dev, mp));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::TableKind;

    fn fs(device: &str, fstype: &str, label: Option<&str>, uuid: Option<&str>) -> Filesystem {
        Filesystem {
            device: device.into(),
            fstype: fstype.into(),
            label: label.map(Into::into),
            uuid: uuid.map(Into::into),
            size: 1 << 20,
        }
    }

    fn part(name: &str, label: Option<&str>, uuid: Option<&str>) -> Partition {
        Partition {
            name: name.into(),
            disk: "/dev/sda".into(),
            table: TableKind::Gpt,
            number: 1,
            start: 0,
            size: 0,
            part_type: String::new(),
            label: label.map(Into::into),
            uuid: uuid.map(Into::into),
        }
    }

    #[test]
    fn os_release() {
        let r = parse_os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=x\nVERSION_ID='12'\nID=Debian\n# c\n",
        );
        assert_eq!(r.id.as_deref(), Some("debian"));
        assert_eq!(r.version.as_deref(), Some("12"));
        assert_eq!(
            r.pretty_name.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        // Control characters never survive.
        let r = parse_os_release("PRETTY_NAME=\"a\x1b[31mb\x07\"\n");
        assert_eq!(r.pretty_name.as_deref(), Some("a[31mb"));
        let long = format!("ID={}", "x".repeat(10_000));
        assert_eq!(parse_os_release(&long).id.unwrap().len(), MAX_GUEST_STRING);
    }

    #[test]
    fn release_files() {
        let r = parse_release_file(None, "Fedora release 39 (Thirty Nine)\n");
        assert_eq!(r.id.as_deref(), Some("fedora"));
        assert_eq!(r.version.as_deref(), Some("39"));
        let r = parse_release_file(None, "CentOS Linux release 7.9.2009 (Core)\n");
        assert_eq!(r.id.as_deref(), Some("centos"));
        assert_eq!(r.version.as_deref(), Some("7.9.2009"));
        assert_eq!(split_version("7.9.2009"), (Some(7), Some(9)));
        let r = parse_release_file(Some("debian"), "12.5\n");
        assert_eq!(r.id.as_deref(), Some("debian"));
        assert_eq!(r.version.as_deref(), Some("12.5"));
        assert_eq!(r.pretty_name.as_deref(), Some("Debian 12.5"));
        let r = parse_release_file(
            None,
            "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\nDISTRIB_DESCRIPTION=\"Ubuntu 22.04.3 LTS\"\n",
        );
        assert_eq!(r.id.as_deref(), Some("ubuntu"));
        assert_eq!(
            split_version(r.version.as_deref().unwrap()),
            (Some(22), Some(4))
        );
        assert_eq!(split_version("rolling"), (None, None));
    }

    #[test]
    fn elf_headers() {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[18] = 62;
        assert_eq!(elf_arch(&h), Some("x86_64"));
        h[18] = 183;
        assert_eq!(elf_arch(&h), Some("aarch64"));
        h[4] = 1;
        h[18] = 3;
        assert_eq!(elf_arch(&h), Some("i386"));
        h[5] = 2;
        h[18] = 0;
        h[19] = 21;
        assert_eq!(elf_arch(&h), Some("ppc64"));
        assert_eq!(elf_arch(&h[..10]), None);
        assert_eq!(elf_arch(b"#!/bin/sh\n"), None);
        // The host's own shell, when there is one.
        if let Ok(b) = std::fs::read("/bin/sh") {
            assert!(elf_arch(&b).is_some());
        }
    }

    #[test]
    fn fstab_and_resolution() {
        let t = "# /etc/fstab\nUUID=AAAA-1 / ext4 errors=remount-ro 0 1\n\
                 UUID=ab12-CD34 /boot/efi vfat umask=0077 0 1\n\
                 /dev/vda3 none swap sw 0 0\n\
                 LABEL=data /srv/my\\040data ext4 defaults 0 2\n\
                 PARTUUID=1111-P /boot ext4 defaults 0 2\n\
                 proc /proc proc defaults 0 0\n\
                 /dev/disk/by-uuid/aaaa-1 /again ext4 defaults 0 0\n\
                 /dev/vdb1 /b ext4 defaults 0 0\n\
                 /dev/mapper/vg-lv /lv ext4 defaults 0 0\n";
        let e = parse_fstab(t);
        assert_eq!(e.len(), 8);
        assert_eq!(e[2].1, "/srv/my data");
        let fss = [
            fs("/dev/sda1", "vfat", None, Some("AB12-CD34")),
            fs("/dev/sda2", "ext4", Some("data"), Some("aaaa-1")),
            fs("/dev/sdb1", "ext4", None, None),
        ];
        let parts = [part("/dev/sda3", Some("boot"), Some("1111-p"))];
        let disks = ["/dev/sda".to_string(), "/dev/sdb".to_string()];
        let r = |s: &str| resolve_spec(s, &fss, &parts, &disks);
        assert_eq!(r("UUID=AAAA-1").as_deref(), Some("/dev/sda2"));
        assert_eq!(r("UUID=ab12-cd34").as_deref(), Some("/dev/sda1"));
        assert_eq!(r("LABEL=data").as_deref(), Some("/dev/sda2"));
        assert_eq!(r("PARTUUID=1111-P").as_deref(), Some("/dev/sda3"));
        assert_eq!(r("PARTLABEL=boot").as_deref(), Some("/dev/sda3"));
        assert_eq!(r("/dev/disk/by-uuid/aaaa-1").as_deref(), Some("/dev/sda2"));
        assert_eq!(r("/dev/vdb1").as_deref(), Some("/dev/sdb1"));
        assert_eq!(r("/dev/xvda1").as_deref(), Some("/dev/sda1"));
        assert_eq!(r("/dev/nvme0n1p2").as_deref(), Some("/dev/sda2"));
        assert_eq!(r("/dev/vdc1"), None);
        assert_eq!(r("/dev/sda9"), None);
        assert_eq!(r("/dev/mapper/vg-lv"), None);
        assert_eq!(r("proc"), None);
        assert_eq!(guest_device("/dev/sdaa1"), Some((26, Some(1))));
        assert_eq!(guest_device("/dev/sd"), None);
    }

    #[test]
    fn plan_orders_by_depth() {
        let entry = |spec: &str, mp: &str, dev: Option<&str>| FstabEntry {
            spec: spec.into(),
            mountpoint: mp.into(),
            fstype: "ext4".into(),
            device: dev.map(Into::into),
        };
        let os = OsInfo {
            root: "/dev/sda2".into(),
            os_type: OsType::Linux,
            distro: None,
            version: None,
            major_version: None,
            minor_version: None,
            product_name: None,
            hostname: None,
            arch: None,
            package_format: None,
            fstab: vec![
                entry("UUID=e", "/boot/efi", Some("/dev/sda1")),
                entry("UUID=r", "/", Some("/dev/sda2")),
                entry("UUID=b", "/boot/", Some("/dev/sda3")),
                entry("tmpfs", "/tmp", None),
                entry("UUID=x", "/x/../etc", Some("/dev/sda4")),
                entry("UUID=b", "/boot2", Some("/dev/sda3")),
            ],
        };
        assert_eq!(
            mount_plan(&os),
            vec![
                ("/dev/sda2".to_string(), "/".to_string()),
                ("/dev/sda3".to_string(), "/boot".to_string()),
                ("/dev/sda1".to_string(), "/boot/efi".to_string()),
            ]
        );
    }
}
