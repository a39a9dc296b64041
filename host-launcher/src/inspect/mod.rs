//! Operating-system inspection (libguestfs `inspect_os`, at `virt-inspector`'s depth):
//! finds the OS roots on the attached disks and reports, typed, every fact
//! `virt-inspector` does — type, distro, product name and variant, version, arch,
//! hostname, package format and manager, the libosinfo short id, mountpoints and
//! filesystems, Windows facts (system root, current control set, drive letters) and the
//! installed applications.
//!
//! How, in two passes:
//!
//! 1. **Roles.** Every mountable filesystem (ext2/3/4, FAT, XFS, btrfs and each of its
//!    subvolumes, NTFS, on partitions, LVs or LUKS mappings) is mounted read-only at
//!    `/` alone and sorted as libguestfs sorts it: a Grub `/boot`, a Linux root (`/etc`,
//!    `/bin` or `/bin -> usr/bin`, and `/etc/fstab` or `/etc/hosts`), a CoreOS root, a
//!    Linux or CoreOS `/usr`, a `/var`, a Windows system root (decided by the appliance,
//!    [`Session::windows_facts`]), or nothing in particular.
//! 2. **Facts.** Each root is mounted the way it mounts itself — its fstab's filesystems
//!    (a CoreOS root, which has no fstab: its `/usr` partition) — and only then read,
//!    with symlinks followed across those mounts ([`files::Mounted`]): an
//!    `/etc/os-release` pointing into a separately mounted `/usr` is found. The release
//!    files are tried in libguestfs' order ([`release`]); package databases and
//!    registry hives are parsed in the appliance ([`calls`]).
//!
//! Everything read from the guest is untrusted: every file read is bounded
//! ([`MAX_GUEST_FILE`]), every string kept is stripped of control characters and
//! bounded ([`clean`]), nothing is executed, and paths are resolved inside the guest's
//! own mounts only, with bounded symlink walks.

pub mod calls;
pub mod files;
pub mod fstab;
pub mod icon;
pub mod plan;
pub mod release;

pub use plan::{GuestMounts, MountSpec, is_mountable, mount_guest, plan_mounts};

use crate::error::{Error, Result};
use crate::session::Session;
use crate::session::fs::MountOptions;
use files::{GuestFiles, Mounted};
use fstab::Devices;
use release::OsData;
use serde::Serialize;
#[cfg(test)]
use wire::Filesystem;
use wire::{Application, ErrorKind, PackageDatabase, WindowsFacts};

pub use fstab::{parse_fstab, resolve_spec};

/// The most bytes read from any one guest file.
pub const MAX_GUEST_FILE: u64 = 64 * 1024;
/// The longest guest string kept (in characters).
pub const MAX_GUEST_STRING: usize = 256;

/// Filesystem types the appliance can mount (candidates for an OS root).
const MOUNTABLE: &[&str] = &[
    "ext2", "ext3", "ext4", "vfat", "fat12", "fat16", "fat32", "xfs", "btrfs", "ntfs",
];

/// What kind of operating system a root holds.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OsType {
    Linux,
    Windows,
    Hurd,
    Unknown,
}

impl OsType {
    pub fn as_str(self) -> &'static str {
        match self {
            OsType::Linux => "linux",
            OsType::Windows => "windows",
            OsType::Hurd => "hurd",
            OsType::Unknown => "unknown",
        }
    }
}

/// One operating system found by [`inspect_os`]: `virt-inspector`'s facts, typed. JSON
/// field names are stable; `None` is what libguestfs calls "unknown".
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct OsInfo {
    /// The root filesystem: `/dev/sda2`, `/dev/rhel/root`, `btrfsvol:/dev/sda3/root`.
    pub root: String,
    /// `linux`, `windows`, `hurd` or `unknown`.
    #[serde(rename = "type")]
    pub os_type: OsType,
    /// libguestfs' distro name: `debian`, `ubuntu`, `fedora`, `rhel`, `centos`, `rocky`,
    /// `archlinux`, `alpinelinux`, `opensuse`, `sles`, `coreos`, `redhat-based`,
    /// `windows`, ...
    pub distro: Option<String>,
    /// os-release `PRETTY_NAME`, the first line of a release file, Windows
    /// `ProductName`.
    pub product_name: Option<String>,
    /// Windows `InstallationType` (`Client`, `Server`, `Server Core`).
    pub product_variant: Option<String>,
    /// The text the version was read from (`12.7`, `9.4`, `22.04`, `40`).
    pub version: Option<String>,
    pub major_version: Option<u32>,
    pub minor_version: Option<u32>,
    /// Windows `CurrentBuildNumber` (`19045`).
    pub build_id: Option<String>,
    /// `x86_64`, `i386`, `aarch64`, ... (the first ELF of libguestfs' binaries;
    /// Windows: `cmd.exe`).
    pub arch: Option<String>,
    pub hostname: Option<String>,
    /// `deb`, `rpm`, `pacman`, `apk`, `ebuild`, `xbps`, `pisi` (from the distro, as
    /// libguestfs decides it).
    pub package_format: Option<String>,
    /// `apt`, `dnf`, `yum`, `zypper`, `pacman`, `apk`, `urpmi`, `portage`, `up2date`, ...
    pub package_management: Option<String>,
    /// The libosinfo short id libguestfs computes: `debian12`, `fedora40`, `rhel9.4`,
    /// `rocky9`, `ubuntu22.04`, `win10`, `win2k22`, ...
    pub osinfo: Option<String>,
    /// Windows: the system root with the guest's spelling, `/Windows`.
    pub windows_systemroot: Option<String>,
    /// Windows: `ControlSet001`.
    pub windows_current_control_set: Option<String>,
    /// Windows: drive letters mapped to partitions here (`MountedDevices`), by letter.
    pub drive_mappings: Vec<DriveMapping>,
    /// How the guest mounts its filesystems (libguestfs' `inspect_get_mountpoints`):
    /// shortest mountpoint first, then by name.
    pub mountpoints: Vec<Mountpoint>,
    /// The filesystems the guest uses (fstab order resolved, sorted by device), with
    /// their type, label and UUID.
    pub filesystems: Vec<GuestFilesystem>,
    /// `/etc/fstab` entries with a mountpoint, in file order.
    pub fstab: Vec<FstabEntry>,
    /// The distro's logo (a PNG, base64), virt-inspector's `<icon>`.
    pub icon: Option<String>,
    /// Installed applications sorted by name (`None` when not asked for).
    pub applications: Option<Vec<Application>>,
    /// The package databases (and registry hive) the applications came from, with what
    /// went wrong reading each.
    pub package_databases: Vec<PackageDatabase>,
    /// Facts that could not be read and why (a corrupt hive, a database the appliance
    /// could not read, a filesystem of the fstab that did not mount).
    pub warnings: Vec<String>,
}

/// One `/etc/fstab` line, resolved to a skiff device where possible.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct FstabEntry {
    /// The first field as written (`UUID=...`, `/dev/vda1`, ...), cleaned.
    pub spec: String,
    pub mountpoint: String,
    pub fstype: String,
    /// The skiff device (`/dev/sda1`, `/dev/VG/LV`, `btrfsvol:/dev/sda3/home`) the spec
    /// names, `None` when it names none here (network filesystems, `tmpfs`, a disk that
    /// is not attached, ...).
    pub device: Option<String>,
}

/// A mountpoint of the guest and the device mounted there.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Mountpoint {
    pub mountpoint: String,
    /// As libguestfs names it (a spec that names nothing here stays as written, with
    /// `/dev/vd*` spelled `/dev/sd*`).
    pub device: String,
}

/// A filesystem the guest uses.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct GuestFilesystem {
    pub device: String,
    /// `ext4`, `xfs`, `btrfs`, `vfat`, `ntfs`, `swap`, ... (`None`: nothing here).
    pub fstype: Option<String>,
    pub label: Option<String>,
    pub uuid: Option<String>,
}

/// A Windows drive letter and the partition it names.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct DriveMapping {
    /// `C`.
    pub name: String,
    pub device: String,
}

/// What [`inspect_os_with`] gathers.
#[derive(Debug, Clone, Copy)]
pub struct InspectOptions {
    /// List the installed applications (the package databases and, for Windows, the
    /// SOFTWARE hive's Uninstall keys); the rest of inspection is much cheaper.
    pub applications: bool,
}

impl Default for InspectOptions {
    fn default() -> Self {
        InspectOptions { applications: true }
    }
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

/// Removes one level of matching quotes.
fn unquote(v: &str) -> &str {
    let v = v.trim();
    for q in ['"', '\''] {
        if v.len() >= 2
            && let Some(inner) = v.strip_prefix(q).and_then(|x| x.strip_suffix(q))
        {
            return inner;
        }
    }
    v
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

/// What the first pass found a filesystem to be.
enum Role {
    /// A Linux or Hurd root, with its fstab's and crypttab's text (read on the root
    /// alone).
    Unix {
        hurd: bool,
        fstab: Option<String>,
        crypttab: Option<String>,
    },
    CoreOsRoot,
    Windows(Box<WindowsFacts>),
    /// A `/usr` (CoreOS or other), with what its os-release says.
    Usr {
        coreos: bool,
        data: OsData,
    },
    Other,
}

/// libguestfs' `check_filesystem`: the role of the filesystem mounted alone at `/`.
fn classify(s: &mut Session) -> Result<Role> {
    let mut f = Mounted::new(s);
    let dir = |f: &mut Mounted, p: &str| f.is_dir(p, false);
    let file = |f: &mut Mounted, p: &str| f.is_file(p, false);
    if file(&mut f, "/grub/menu.lst")?
        || file(&mut f, "/grub/grub.conf")?
        || file(&mut f, "/grub2/grub.cfg")?
    {
        return Ok(Role::Other);
    }
    if file(&mut f, "/hurd/console")? && file(&mut f, "/hurd/hello")? && file(&mut f, "/hurd/null")?
    {
        let fstab = f.read("/etc/fstab")?;
        let crypttab = f.read("/etc/crypttab")?;
        return Ok(Role::Unix {
            hurd: true,
            fstab,
            crypttab,
        });
    }
    let etc = dir(&mut f, "/etc")?;
    if etc
        && (dir(&mut f, "/bin")? || f.readlink("/bin")?.as_deref() == Some("usr/bin"))
        && (file(&mut f, "/etc/fstab")? || file(&mut f, "/etc/hosts")?)
    {
        let fstab = f.read("/etc/fstab")?;
        let crypttab = f.read("/etc/crypttab")?;
        return Ok(Role::Unix {
            hurd: false,
            fstab,
            crypttab,
        });
    }
    if etc
        && dir(&mut f, "/root")?
        && dir(&mut f, "/home")?
        && dir(&mut f, "/usr")?
        && file(&mut f, "/etc/coreos/update.conf")?
    {
        return Ok(Role::CoreOsRoot);
    }
    let (bin, share, local) = (
        dir(&mut f, "/bin")?,
        dir(&mut f, "/share")?,
        dir(&mut f, "/local")?,
    );
    let fstab = file(&mut f, "/etc/fstab")?;
    if etc && bin && share && !local && !fstab {
        return Ok(Role::Other); // a /usr/local
    }
    let linux_usr = etc && bin && share && local && !fstab;
    let coreos_usr = !linux_usr && bin && share && local && dir(&mut f, "/share/coreos")?;
    if linux_usr || coreos_usr {
        let mut data = OsData::default();
        if f.is_file("/lib/os-release", true)? {
            let t = f.read("/lib/os-release")?.unwrap_or_default();
            release::parse_os_release(&t, &mut data);
        }
        let coreos = coreos_usr || data.distro == Some("coreos");
        return Ok(Role::Usr { coreos, data });
    }
    if dir(&mut f, "/log")? && dir(&mut f, "/run")? && dir(&mut f, "/spool")? {
        return Ok(Role::Other); // a /var
    }
    drop(f);
    match s.windows_facts("/") {
        Ok(w) => Ok(Role::Windows(Box::new(w))),
        Err(Error::Remote(e)) if e.kind == ErrorKind::NotFound => Ok(Role::Other),
        Err(Error::Remote(e)) => {
            // A system root whose facts could not be read is still a Windows root.
            Ok(Role::Windows(Box::new(WindowsFacts {
                warnings: vec![clean(&e.message)],
                ..WindowsFacts::default()
            })))
        }
        Err(e) => Err(e),
    }
}

/// Finds every operating system on the session's disks and reads what virt-inspector
/// reports about each, applications included. The session must have nothing mounted;
/// nothing is left mounted. Roots come in the appliance's filesystem order.
///
/// ```no_run
/// let mut s = skiff::Appliance::builder()
///     .add_drive("guest.qcow2", skiff::DriveOptions::readonly())
///     .launch()?;
/// for os in skiff::inspect::inspect_os(&mut s)? {
///     println!("{} {:?} {:?} {:?}", os.root, os.distro, os.osinfo, os.hostname);
///     for a in os.applications.iter().flatten() {
///         println!("  {} {}-{}", a.name, a.version, a.release);
///     }
/// }
/// # Ok::<(), skiff::Error>(())
/// ```
pub fn inspect_os(s: &mut Session) -> Result<Vec<OsInfo>> {
    inspect_os_with(s, &InspectOptions::default())
}

/// [`inspect_os`] with options (applications or not).
pub fn inspect_os_with(s: &mut Session, opts: &InspectOptions) -> Result<Vec<OsInfo>> {
    if !s.mounts()?.is_empty() {
        return Err(Error::InvalidArgument(
            "inspection needs a session with nothing mounted".into(),
        ));
    }
    let filesystems = s.filesystems()?;
    let partitions = s.partitions()?;
    let disks: Vec<String> = s.devices().iter().map(|d| d.name.clone()).collect();
    // Opened LUKS devices by header UUID, for /etc/crypttab's names.
    let luks: Vec<(String, String)> = soft(s.luks_info())?
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| Some((v.uuid, v.mapped?)))
        .collect();
    let devs = Devices {
        filesystems: &filesystems,
        partitions: &partitions,
        disks: &disks,
        luks: &luks,
        crypttab: &[],
    };

    // Pass 1: the role of every filesystem.
    let mut roles = Vec::new();
    for fs in &filesystems {
        if !MOUNTABLE.contains(&fs.fstype.as_str()) {
            continue;
        }
        if soft(s.mount(&fs.device, "/", MountOptions::readonly()))?.is_none() {
            continue;
        }
        let r = classify(s);
        let u = s.umount("/");
        let role = r?;
        u?;
        roles.push((fs, role));
    }

    // A CoreOS root takes the CoreOS /usr with the highest version (A/B partitions).
    let coreos_usr = roles
        .iter()
        .filter_map(|(fs, r)| match r {
            Role::Usr { coreos: true, data } => Some((data.version.unwrap_or((0, 0)), *fs)),
            _ => None,
        })
        .max_by_key(|(v, _)| *v)
        .map(|(_, fs)| fs.device.clone());

    // Pass 2: each root mounted as it mounts itself, then read.
    let mut found = Vec::new();
    for (fs, role) in roles {
        let os = match role {
            Role::Unix {
                hurd,
                fstab,
                crypttab,
            } => {
                let crypttab = crypttab
                    .as_deref()
                    .map(fstab::parse_crypttab)
                    .unwrap_or_default();
                let devs = Devices {
                    crypttab: &crypttab,
                    ..devs
                };
                inspect_unix(s, &fs.device, hurd, fstab.as_deref(), &devs, opts)?
            }
            Role::CoreOsRoot => inspect_coreos(s, &fs.device, coreos_usr.as_deref(), &devs, opts)?,
            Role::Windows(w) => inspect_windows(s, &fs.device, *w, &devs, opts)?,
            Role::Usr { .. } | Role::Other => continue,
        };
        found.push(os);
    }
    Ok(found)
}

fn new_os(root: &str, os_type: OsType) -> OsInfo {
    OsInfo {
        root: root.to_string(),
        os_type,
        distro: None,
        product_name: None,
        product_variant: None,
        version: None,
        major_version: None,
        minor_version: None,
        build_id: None,
        arch: None,
        hostname: None,
        package_format: None,
        package_management: None,
        osinfo: None,
        windows_systemroot: None,
        windows_current_control_set: None,
        drive_mappings: Vec::new(),
        mountpoints: Vec::new(),
        filesystems: Vec::new(),
        fstab: Vec::new(),
        icon: None,
        applications: None,
        package_databases: Vec::new(),
        warnings: Vec::new(),
    }
}

/// Fills `os` from libguestfs-style data, and the derived package facts and osinfo.
fn apply(os: &mut OsInfo, d: OsData, has_dnf: bool) {
    let major = d.version.map_or(0, |v| v.0);
    os.package_format = release::package_format(d.distro).map(str::to_string);
    os.package_management =
        release::package_management(d.distro, major, has_dnf).map(str::to_string);
    os.distro = d.distro.map(str::to_string);
    os.product_name = d.product_name;
    os.product_variant = d.product_variant;
    os.major_version = d.version.map(|v| v.0);
    os.minor_version = d.version.map(|v| v.1);
    os.version = d.version_text;
    os.arch = d.arch;
    os.hostname = d.hostname;
    set_osinfo(os);
}

fn set_osinfo(os: &mut OsInfo) {
    os.osinfo = release::osinfo(&release::OsinfoInput {
        os_type: os.os_type.as_str(),
        distro: os.distro.as_deref(),
        major: os.major_version.unwrap_or(0),
        minor: os.minor_version.unwrap_or(0),
        product_name: os.product_name.as_deref(),
        product_variant: os.product_variant.as_deref(),
        build: os.build_id.as_deref(),
    });
}

/// `mountpoints` and `filesystems` from libguestfs' `(device, mountpoint)` list, in
/// virt-inspector's order; just the root when the list is empty.
fn set_mount_lists(os: &mut OsInfo, mut entries: Vec<(String, String)>, devs: &Devices) {
    if entries.is_empty() {
        entries.push((os.root.clone(), "/".to_string()));
    }
    let mut mps: Vec<Mountpoint> = entries
        .iter()
        .filter(|(_, mp)| mp.starts_with('/'))
        .map(|(d, mp)| Mountpoint {
            mountpoint: mp.clone(),
            device: fstab::canonical_device(d),
        })
        .collect();
    mps.sort_by(|a, b| {
        (a.mountpoint.len(), &a.mountpoint).cmp(&(b.mountpoint.len(), &b.mountpoint))
    });
    os.mountpoints = mps;
    let mut fss: Vec<&String> = entries.iter().map(|(d, _)| d).collect();
    fss.sort();
    os.filesystems = fss
        .into_iter()
        .map(|d| {
            let f = devs.filesystems.iter().find(|f| &f.device == d);
            GuestFilesystem {
                device: fstab::canonical_device(d),
                fstype: f
                    .map(|f| f.fstype.clone())
                    .filter(|t| !t.is_empty() && t != "unknown"),
                label: f.and_then(|f| f.label.clone()).filter(|l| !l.is_empty()),
                uuid: f.and_then(|f| f.uuid.clone()).filter(|u| !u.is_empty()),
            }
        })
        .collect();
}

/// Mounts `os` as [`mount_plan`] says (read-only; a filesystem that does not mount is
/// a warning), runs `f`, and unmounts everything again.
fn with_guest_mounted<T>(
    s: &mut Session,
    os: &mut OsInfo,
    f: impl FnOnce(&mut Session, &mut OsInfo) -> Result<T>,
) -> Result<T> {
    let plan = mount_plan(os);
    let mut mounted: Vec<String> = Vec::new();
    let mut outcome = Ok(());
    for (i, (dev, mp)) in plan.iter().enumerate() {
        match s.mount(dev, mp, MountOptions::readonly()) {
            Ok(()) => mounted.push(mp.clone()),
            Err(Error::Remote(e)) if i > 0 => os
                .warnings
                .push(clean(&format!("{dev} on {mp} not mounted: {}", e.message))),
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    let r = outcome.and_then(|()| f(s, os));
    let mut u = Ok(());
    for mp in mounted.iter().rev() {
        if let Err(e) = s.umount(mp) {
            u = u.and(Err(e));
        }
    }
    let v = r?;
    u?;
    Ok(v)
}

/// The applications of the guest mounted at `/`, into `os`.
fn list_applications(s: &mut Session, os: &mut OsInfo) -> Result<()> {
    match soft(s.applications("/"))? {
        Some(a) => {
            for db in &a.databases {
                if let Some(e) = &db.error {
                    os.warnings.push(clean(&format!("{}: {e}", db.path)));
                }
            }
            if a.truncated {
                os.warnings
                    .push("the application list was cut at the appliance's bounds".into());
            }
            os.applications = Some(a.applications);
            os.package_databases = a.databases;
        }
        None => os.applications = Some(Vec::new()),
    }
    Ok(())
}

fn inspect_unix(
    s: &mut Session,
    root: &str,
    hurd: bool,
    fstab_text: Option<&str>,
    devs: &Devices,
    opts: &InspectOptions,
) -> Result<OsInfo> {
    let mut os = new_os(root, if hurd { OsType::Hurd } else { OsType::Linux });
    if let Some(t) = fstab_text {
        os.fstab = fstab::lines(t)
            .into_iter()
            .filter(|l| l.mountpoint.starts_with('/') && l.fstype != "swap")
            .map(|l| {
                let mut device = devs.resolve(&l.spec);
                if l.mountpoint == "/" && (device.is_none() || l.fstype == "btrfs") {
                    device = Some(root.to_string());
                }
                let device = device.map(|d| fstab::with_subvolume(d, &l));
                FstabEntry {
                    spec: clean(&l.spec),
                    mountpoint: clean(&l.mountpoint),
                    fstype: clean(&l.fstype),
                    device,
                }
            })
            .collect();
        set_mount_lists(&mut os, fstab::inspected_entries(t, root, devs), devs);
    } else {
        set_mount_lists(&mut os, Vec::new(), devs);
    }
    with_guest_mounted(s, &mut os, |s, os| {
        let mut f = Mounted::new(s);
        let data = release::check_unix_root(&mut f, hurd)?;
        let has_dnf = f.is_file("/usr/bin/dnf", true)?;
        apply(os, data, has_dnf);
        os.icon = icon::find_icon(&mut f, os.distro.as_deref())?;
        if opts.applications {
            list_applications(s, os)?;
        }
        Ok(())
    })?;
    Ok(os)
}

fn inspect_coreos(
    s: &mut Session,
    root: &str,
    usr: Option<&str>,
    devs: &Devices,
    opts: &InspectOptions,
) -> Result<OsInfo> {
    let mut os = new_os(root, OsType::Linux);
    let mut entries = Vec::new();
    if let Some(u) = usr {
        entries.push((u.to_string(), "/usr".to_string()));
    }
    entries.push((root.to_string(), "/".to_string()));
    set_mount_lists(&mut os, entries, devs);
    with_guest_mounted(s, &mut os, |s, os| {
        let mut f = Mounted::new(s);
        let data = release::check_coreos_root(&mut f)?;
        apply(os, data, false);
        if opts.applications {
            list_applications(s, os)?;
        }
        Ok(())
    })?;
    Ok(os)
}

fn inspect_windows(
    s: &mut Session,
    root: &str,
    w: WindowsFacts,
    devs: &Devices,
    opts: &InspectOptions,
) -> Result<OsInfo> {
    let mut os = new_os(root, OsType::Windows);
    os.distro = Some("windows".into());
    os.windows_systemroot = nonempty(w.systemroot.clone());
    os.arch = w.arch.clone();
    os.product_name = w.product_name.clone();
    os.product_variant = w.product_variant.clone();
    os.major_version = w.major_version;
    os.minor_version = w.minor_version;
    os.version = w
        .major_version
        .zip(w.minor_version)
        .map(|(a, b)| format!("{a}.{b}"));
    os.build_id = w.build.clone();
    os.windows_current_control_set = w.current_control_set.clone();
    os.hostname = w.hostname.clone();
    let mut dm: Vec<DriveMapping> = w
        .drive_mappings
        .iter()
        .filter_map(|d| {
            Some(DriveMapping {
                name: d.letter.to_string(),
                device: fstab::canonical_device(d.device.as_deref()?),
            })
        })
        .collect();
    dm.sort_by_key(|d| d.name.to_ascii_lowercase());
    os.drive_mappings = dm;
    for h in &w.dirty_hives {
        os.warnings.push(clean(&format!(
            "{h}: dirty hive (its logs were not replayed)"
        )));
    }
    os.warnings.extend(w.warnings.iter().map(|x| clean(x)));
    set_osinfo(&mut os);
    set_mount_lists(&mut os, Vec::new(), devs);
    if opts.applications {
        with_guest_mounted(s, &mut os, list_applications)?;
    }
    Ok(os)
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

/// How to mount `os` the way it mounts itself: `(device, mountpoint)` pairs, the root at
/// `/` first, then its other [`OsInfo::mountpoints`] (those of its fstab that name a
/// device here; a CoreOS `/usr`), shallowest mountpoint first (so `/boot` comes before
/// `/boot/efi`). A second mount of a device or mountpoint, and a mountpoint with `..`,
/// are left out.
pub fn mount_plan(os: &OsInfo) -> Vec<(String, String)> {
    let mut plan = vec![(os.root.clone(), "/".to_string())];
    let mut rest: Vec<(String, String)> = os
        .mountpoints
        .iter()
        .filter(|m| m.mountpoint != "/")
        .filter(|m| !m.mountpoint.split('/').any(|c| c == ".."))
        .map(|m| {
            (
                m.device.clone(),
                m.mountpoint.trim_end_matches('/').to_string(),
            )
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
    fn clean_bounds_and_strips() {
        assert_eq!(clean("a\x1b[31mb\x07"), "a[31mb");
        assert_eq!(clean(&"x".repeat(10_000)).len(), MAX_GUEST_STRING);
    }

    #[test]
    fn plan_orders_by_depth() {
        let mp = |m: &str, d: &str| Mountpoint {
            mountpoint: m.into(),
            device: d.into(),
        };
        let mut os = new_os("/dev/sda2", OsType::Linux);
        os.mountpoints = vec![
            mp("/", "/dev/sda2"),
            mp("/boot/efi", "/dev/sda1"),
            mp("/boot/", "/dev/sda3"),
            mp("/x/../etc", "/dev/sda4"),
            mp("/boot2", "/dev/sda3"),
        ];
        assert_eq!(
            mount_plan(&os),
            vec![
                ("/dev/sda2".to_string(), "/".to_string()),
                ("/dev/sda3".to_string(), "/boot".to_string()),
                ("/dev/sda1".to_string(), "/boot/efi".to_string()),
            ]
        );
    }

    #[test]
    fn mount_lists_in_virt_inspector_order() {
        let fss = [
            Filesystem {
                device: "/dev/sda1".into(),
                fstype: "vfat".into(),
                label: Some("ESP".into()),
                uuid: Some("1A2B-3C4D".into()),
                size: 1,
            },
            Filesystem {
                device: "/dev/sda2".into(),
                fstype: "ext4".into(),
                label: None,
                uuid: Some("u".into()),
                size: 1,
            },
        ];
        let disks = ["/dev/sda".to_string()];
        let devs = Devices {
            filesystems: &fss,
            partitions: &[],
            disks: &disks,
            luks: &[],
            crypttab: &[],
        };
        let mut os = new_os("/dev/sda2", OsType::Linux);
        set_mount_lists(
            &mut os,
            vec![
                ("/dev/sda2".into(), "/".into()),
                ("/dev/sda1".into(), "/boot/efi".into()),
                ("/dev/vdc9".into(), "none".into()),
                ("/dev/sda2".into(), "/srv".into()),
            ],
            &devs,
        );
        let mps: Vec<&str> = os
            .mountpoints
            .iter()
            .map(|m| m.mountpoint.as_str())
            .collect();
        assert_eq!(mps, ["/", "/srv", "/boot/efi"]);
        let fs: Vec<(&str, Option<&str>)> = os
            .filesystems
            .iter()
            .map(|f| (f.device.as_str(), f.fstype.as_deref()))
            .collect();
        assert_eq!(
            fs,
            [
                ("/dev/sda1", Some("vfat")),
                ("/dev/sda2", Some("ext4")),
                ("/dev/sda2", Some("ext4")),
                ("/dev/sdc9", None)
            ]
        );
    }
}
