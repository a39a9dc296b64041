//! `/etc/fstab`: its lines, the devices they name here, and the two lists libguestfs
//! derives from it for `virt-inspector` (mountpoints and filesystems).
//!
//! A spec is resolved against the disks as the appliance lists them: `UUID=`, `LABEL=`,
//! `PARTUUID=`, `PARTLABEL=`, `/dev/disk/by-*/...`, guest device paths (`/dev/vda2`,
//! `/dev/xvda1`, `/dev/nvme0n1p2`, mapped by disk position), `/dev/mapper/VG-LV` and
//! `/dev/VG/LV` (the LV), `/dev/mapper/NAME` of an open LUKS mapping, `/dev/root` (the
//! root itself). A btrfs line with `subvol=` names that subvolume,
//! `btrfsvol:/dev/sda3/root`.

use super::{clean, unquote};
use wire::{Filesystem, Partition};

/// What the disks hold, for resolving specs.
#[derive(Clone, Copy)]
pub struct Devices<'a> {
    pub filesystems: &'a [Filesystem],
    pub partitions: &'a [Partition],
    /// Whole disks in order: `/dev/sda`, `/dev/sdb`, ...
    pub disks: &'a [String],
    /// `(LUKS UUID, /dev/mapper/luks-UUID)` of the opened LUKS devices.
    pub luks: &'a [(String, String)],
    /// The guest's `/etc/crypttab` (`(name, source)`, [`parse_crypttab`]): the names it
    /// gives LUKS devices (`/dev/mapper/sda3_crypt`).
    pub crypttab: &'a [(String, String)],
}

/// `(name, source)` of every `/etc/crypttab` line: the mapping name the guest gives a
/// LUKS device (`sda3_crypt`) and the device it names (`UUID=...`, `/dev/sda3`).
pub fn parse_crypttab(text: &str) -> Vec<(String, String)> {
    text.lines()
        .take(1024)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((unescape(f.next()?), unescape(f.next()?)))
        })
        .collect()
}

/// One fstab line, its fields as written (octal escapes undone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub spec: String,
    pub mountpoint: String,
    pub fstype: String,
    pub options: Vec<String>,
}

/// Undoes fstab's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
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

/// Every line with at least a spec, a mountpoint and a type (at most 1024 lines).
pub fn lines(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    for line in text.lines().take(1024) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(spec), Some(mp), Some(fstype)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let options = f
            .next()
            .map(|o| o.split(',').take(64).map(str::to_string).collect())
            .unwrap_or_default();
        out.push(Line {
            spec: unescape(spec),
            mountpoint: unescape(mp),
            fstype: fstype.to_string(),
            options,
        });
    }
    out
}

/// `(spec, mountpoint, fstype)` of every line whose mountpoint is an absolute path
/// (swap, `none` and malformed lines are left out).
pub fn parse_fstab(text: &str) -> Vec<(String, String, String)> {
    lines(text)
        .into_iter()
        .filter(|l| l.mountpoint.starts_with('/') && l.fstype != "swap")
        .map(|l| (l.spec, l.mountpoint, l.fstype))
        .collect()
}

/// `/dev/vdb3` → (1, Some(3)); `/dev/sda` → (0, None); `/dev/nvme0n1p2` → (0, Some(2)).
pub fn guest_device(path: &str) -> Option<(usize, Option<u32>)> {
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

/// The `/dev/mapper` name of an LV `/dev/VG/LV` (`-` doubled in each part).
fn mapper_name(device: &str) -> Option<String> {
    let rest = device.strip_prefix("/dev/")?;
    let (vg, lv) = rest.split_once('/')?;
    if vg == "mapper" || lv.contains('/') {
        return None;
    }
    Some(format!(
        "{}-{}",
        vg.replace('-', "--"),
        lv.replace('-', "--")
    ))
}

impl Devices<'_> {
    fn plain(&self) -> impl Iterator<Item = &Filesystem> {
        self.filesystems
            .iter()
            .filter(|f| !f.device.starts_with("btrfsvol:"))
    }

    fn exists(&self, device: &str) -> bool {
        self.filesystems.iter().any(|f| f.device == device)
            || self.partitions.iter().any(|p| p.name == device)
    }

    fn by_uuid(&self, u: &str) -> Option<String> {
        self.plain()
            .find(|f| f.uuid.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(u)))
            .map(|f| f.device.clone())
    }

    fn by_label(&self, l: &str) -> Option<String> {
        self.plain()
            .find(|f| f.label.as_deref() == Some(l))
            .map(|f| f.device.clone())
    }

    fn by_partuuid(&self, u: &str) -> Option<String> {
        self.partitions
            .iter()
            .find(|p| p.uuid.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(u)))
            .map(|p| p.name.clone())
    }

    fn by_partlabel(&self, l: &str) -> Option<String> {
        self.partitions
            .iter()
            .find(|p| p.label.as_deref() == Some(l))
            .map(|p| p.name.clone())
    }

    /// The opened LUKS device a `/dev/mapper/NAME` names through `/etc/crypttab`:
    /// crypttab `sda3_crypt UUID=<luks uuid> ...` makes `/dev/mapper/sda3_crypt` this
    /// session's `/dev/mapper/luks-<luks uuid>`. The crypttab source may also name the
    /// LUKS device by path (its UUID is then that device's, from `filesystems`).
    fn crypttab_device(&self, name: &str) -> Option<String> {
        let (_, source) = self.crypttab.iter().find(|(n, _)| n == name)?;
        let source = unquote(source);
        let uuid = match source.strip_prefix("UUID=") {
            Some(u) => unquote(u).to_string(),
            None => match source.strip_prefix("/dev/disk/by-uuid/") {
                Some(u) => u.to_string(),
                None => {
                    let dev = self.resolve_plain(source)?;
                    self.filesystems
                        .iter()
                        .find(|f| f.device == dev && f.fstype == "crypto_LUKS")?
                        .uuid
                        .clone()?
                }
            },
        };
        self.luks
            .iter()
            .find(|(u, _)| u.eq_ignore_ascii_case(&uuid))
            .map(|(_, m)| m.clone())
    }

    /// [`Devices::resolve`] without crypttab names (they cannot name each other).
    fn resolve_plain(&self, spec: &str) -> Option<String> {
        Devices {
            crypttab: &[],
            ..*self
        }
        .resolve(spec)
    }

    /// The device a spec names here (see the module docs); `None` when it names none.
    pub fn resolve(&self, spec: &str) -> Option<String> {
        let spec = unquote(spec);
        if let Some(v) = spec.strip_prefix("UUID=") {
            return self.by_uuid(unquote(v));
        }
        if let Some(v) = spec.strip_prefix("LABEL=") {
            return self.by_label(unquote(v));
        }
        if let Some(v) = spec.strip_prefix("PARTUUID=") {
            return self.by_partuuid(unquote(v));
        }
        if let Some(v) = spec.strip_prefix("PARTLABEL=") {
            return self.by_partlabel(unquote(v));
        }
        if let Some(rest) = spec.strip_prefix("/dev/disk/") {
            let (kind, name) = rest.split_once('/')?;
            // udev escapes '/' and other bytes as \x2f in by-label names.
            let name = name.replace("\\x2f", "/").replace("\\x20", " ");
            return match kind {
                "by-uuid" => self.by_uuid(&name),
                "by-label" => self.by_label(&name),
                "by-partuuid" => self.by_partuuid(&name),
                "by-partlabel" => self.by_partlabel(&name),
                // ...-partN on a guest with one disk: that disk's partition N.
                "by-id" | "by-path" => {
                    let n: u32 = name.rsplit_once("-part")?.1.parse().ok()?;
                    let [disk] = self.disks else { return None };
                    let p = format!("{disk}{n}");
                    self.partitions.iter().any(|x| x.name == p).then_some(p)
                }
                _ => None,
            };
        }
        if let Some(name) = spec.strip_prefix("/dev/mapper/") {
            if let Some(d) = self.crypttab_device(name) {
                return Some(d);
            }
            if self.exists(spec) {
                return Some(spec.to_string());
            }
            return self
                .filesystems
                .iter()
                .find(|f| mapper_name(&f.device).as_deref() == Some(name))
                .map(|f| f.device.clone());
        }
        if mapper_name(spec).is_some() && self.exists(spec) {
            return Some(spec.to_string());
        }
        let (index, part) = guest_device(spec)?;
        let disk = self.disks.get(index)?;
        let name = match part {
            Some(n) => format!("{disk}{n}"),
            None => disk.clone(),
        };
        self.exists(&name).then_some(name)
    }
}

/// The skiff device an fstab spec names ([`Devices::resolve`]).
pub fn resolve_spec(
    spec: &str,
    filesystems: &[Filesystem],
    partitions: &[Partition],
    disks: &[String],
) -> Option<String> {
    Devices {
        filesystems,
        partitions,
        disks,
        luks: &[],
        crypttab: &[],
    }
    .resolve(spec)
}

/// `btrfsvol:DEVICE/SUBVOL` for a btrfs line with a `subvol=` option, else `device`.
pub fn with_subvolume(device: String, line: &Line) -> String {
    if line.fstype != "btrfs" || device.starts_with("btrfsvol:") {
        return device;
    }
    match line
        .options
        .iter()
        .find_map(|o| o.strip_prefix("subvol="))
        .map(|s| s.trim_start_matches('/'))
        .filter(|s| !s.is_empty())
    {
        Some(sv) => format!("btrfsvol:{device}/{}", clean(sv)),
        None => device,
    }
}

/// `///usr//local/` → `/usr/local` (libguestfs' `unix_canonical_path`).
fn canonical_path(p: &str) -> String {
    let parts: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
    if p.starts_with('/') {
        format!("/{}", parts.join("/"))
    } else {
        parts.join("/")
    }
}

/// libguestfs' view of the fstab: `(device, mountpoint)` for every line it keeps, in
/// file order. Floppies and CD-ROMs, pseudo mountpoints (`/dev`, `/proc`, `/sys`,
/// `/selinux`, `/media/...`) and pseudo filesystems are left out; a `UUID=`/`LABEL=`
/// that names nothing here is left out, a `/dev/...` path that names nothing here is
/// kept as written; swap stays (its mountpoint is not a path).
pub fn inspected_entries(text: &str, root: &str, devs: &Devices) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for l in lines(text) {
        let spec = unquote(&l.spec);
        let digit_at = |i: usize| spec.as_bytes().get(i).is_some_and(u8::is_ascii_digit);
        if (spec.starts_with("/dev/fd") && digit_at(7))
            || (spec.starts_with("/dev/cd") && digit_at(7))
            || spec == "/dev/floppy"
            || spec == "/dev/cdrom"
            || spec.starts_with("/dev/iso9660/")
        {
            continue;
        }
        let mp = canonical_path(&l.mountpoint);
        let pseudo = |p: &str| mp == p || mp.starts_with(&format!("{p}/"));
        if ["/dev", "/proc", "/selinux", "/sys"]
            .iter()
            .any(|p| pseudo(p))
            || mp.starts_with("/media/")
        {
            continue;
        }
        let by_name = ["UUID=", "LABEL=", "PARTUUID=", "PARTLABEL="]
            .iter()
            .any(|p| spec.starts_with(p));
        let device = if by_name {
            match devs.resolve(spec) {
                Some(d) => d,
                None => continue,
            }
        } else if spec == "/dev/root" {
            root.to_string()
        } else if spec.starts_with("/dev/") {
            devs.resolve(spec).unwrap_or_else(|| clean(spec))
        } else {
            continue;
        };
        out.push((with_subvolume(device, &l), clean(&mp)));
    }
    // Several lines for "/": libguestfs keeps the first.
    let mut seen_root = false;
    out.retain(|(_, mp)| {
        if mp != "/" {
            return true;
        }
        let keep = !seen_root;
        seen_root = true;
        keep
    });
    out
}

/// libguestfs' canonical device name: `/dev/vda1`, `/dev/hda1` → `/dev/sda1`.
pub fn canonical_device(d: &str) -> String {
    for p in ["/dev/vd", "/dev/hd"] {
        if let Some(rest) = d.strip_prefix(p) {
            return format!("/dev/sd{rest}");
        }
    }
    d.to_string()
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
            fs("/dev/my-vg/root-lv", "xfs", None, Some("lv-uuid")),
            fs("btrfsvol:/dev/sda2/x", "ext4", Some("data"), Some("aaaa-1")),
        ];
        let parts = [part("/dev/sda3", Some("boot"), Some("1111-p"))];
        let disks = ["/dev/sda".to_string(), "/dev/sdb".to_string()];
        let devs = Devices {
            filesystems: &fss,
            partitions: &parts,
            disks: &disks,
            luks: &[],
            crypttab: &[],
        };
        let r = |s: &str| devs.resolve(s);
        assert_eq!(r("UUID=AAAA-1").as_deref(), Some("/dev/sda2"));
        assert_eq!(r("UUID=ab12-cd34").as_deref(), Some("/dev/sda1"));
        assert_eq!(r("LABEL=data").as_deref(), Some("/dev/sda2"));
        assert_eq!(r("PARTUUID=1111-P").as_deref(), Some("/dev/sda3"));
        assert_eq!(r("PARTLABEL=boot").as_deref(), Some("/dev/sda3"));
        assert_eq!(r("/dev/disk/by-uuid/aaaa-1").as_deref(), Some("/dev/sda2"));
        assert_eq!(r("/dev/vdb1").as_deref(), Some("/dev/sdb1"));
        assert_eq!(r("/dev/xvda1").as_deref(), Some("/dev/sda1"));
        assert_eq!(r("/dev/nvme0n1p2").as_deref(), Some("/dev/sda2"));
        assert_eq!(
            r("/dev/mapper/my--vg-root--lv").as_deref(),
            Some("/dev/my-vg/root-lv")
        );
        assert_eq!(
            r("/dev/my-vg/root-lv").as_deref(),
            Some("/dev/my-vg/root-lv")
        );
        assert_eq!(r("/dev/vdc1"), None);
        assert_eq!(r("/dev/sda9"), None);
        assert_eq!(r("/dev/mapper/vg-lv"), None);
        assert_eq!(r("proc"), None);
        assert_eq!(guest_device("/dev/sdaa1"), Some((26, Some(1))));
        assert_eq!(guest_device("/dev/sd"), None);

        let ins = inspected_entries(t, "/dev/sda2", &devs);
        assert_eq!(
            ins,
            [
                ("/dev/sda2", "/"),
                ("/dev/sda1", "/boot/efi"),
                ("/dev/sda3", "none"),
                ("/dev/sda2", "/srv/my data"),
                ("/dev/sda3", "/boot"),
                ("/dev/sda2", "/again"),
                ("/dev/sdb1", "/b"),
                ("/dev/mapper/vg-lv", "/lv"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(canonical_device("/dev/vda3"), "/dev/sda3");
    }

    #[test]
    fn btrfs_subvolumes_and_pseudo_entries() {
        let t = "UUID=B / btrfs subvol=root,compress=zstd:1 0 0\n\
                 UUID=B /home btrfs subvol=/home 0 0\n\
                 UUID=B /top btrfs defaults 0 0\n\
                 /dev/cdrom /mnt/cd iso9660 ro 0 0\n\
                 /dev/sr0 /media/cdrom0 udf,iso9660 user,noauto 0 0\n\
                 tmpfs /tmp tmpfs defaults 0 0\n\
                 /dev/root //var//log/ ext4 defaults 0 0\n\
                 UUID=nowhere /gone ext4 defaults 0 0\n";
        let fss = [fs("/dev/sda3", "btrfs", None, Some("B"))];
        let disks = ["/dev/sda".to_string()];
        let devs = Devices {
            filesystems: &fss,
            partitions: &[],
            disks: &disks,
            luks: &[],
            crypttab: &[],
        };
        assert_eq!(
            inspected_entries(t, "btrfsvol:/dev/sda3/root", &devs),
            [
                ("btrfsvol:/dev/sda3/root", "/"),
                ("btrfsvol:/dev/sda3/home", "/home"),
                ("/dev/sda3", "/top"),
                ("btrfsvol:/dev/sda3/root", "/var/log"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }
}

#[cfg(test)]
mod crypttab_tests {
    use super::*;

    fn fs(device: &str, fstype: &str, uuid: &str) -> Filesystem {
        Filesystem {
            device: device.into(),
            fstype: fstype.into(),
            label: None,
            uuid: Some(uuid.into()),
            size: 1,
        }
    }

    #[test]
    fn crypttab_names_resolve_to_opened_luks_devices() {
        let ct = parse_crypttab(
            "# <target> <source> <key> <options>\nsda3_crypt UUID=AbC-1 none luks,discard\n\
             home_crypt /dev/sda4 none luks\nbad\n",
        );
        assert_eq!(
            ct,
            [
                ("sda3_crypt".to_string(), "UUID=AbC-1".to_string()),
                ("home_crypt".to_string(), "/dev/sda4".to_string())
            ]
        );
        let luks = [
            ("abc-1".to_string(), "/dev/mapper/luks-abc-1".to_string()),
            ("def-2".to_string(), "/dev/mapper/luks-def-2".to_string()),
        ];
        let fss = [
            fs("/dev/sda4", "crypto_LUKS", "DEF-2"),
            fs("/dev/mapper/luks-abc-1", "ext4", "r-1"),
            fs("/dev/mapper/luks-def-2", "ext4", "h-1"),
        ];
        let disks = ["/dev/sda".to_string()];
        let devs = Devices {
            filesystems: &fss,
            partitions: &[],
            disks: &disks,
            luks: &luks,
            crypttab: &ct,
        };
        let r = |s: &str| devs.resolve(s);
        assert_eq!(
            r("/dev/mapper/sda3_crypt").as_deref(),
            Some("/dev/mapper/luks-abc-1")
        );
        assert_eq!(
            r("/dev/mapper/home_crypt").as_deref(),
            Some("/dev/mapper/luks-def-2")
        );
        assert_eq!(
            r("/dev/mapper/luks-abc-1").as_deref(),
            Some("/dev/mapper/luks-abc-1")
        );
        assert_eq!(r("/dev/mapper/other"), None);
        assert_eq!(r("UUID=h-1").as_deref(), Some("/dev/mapper/luks-def-2"));
    }
}
