//! LVM tests against the real tools: images are built on loop devices with
//! `pvcreate`/`vgcreate`/`lvcreate -an -Zn` (device-mapper is not needed with
//! `global/activation=0`), layouts read back with `lvs --segments`/`pvs --reportformat
//! json`, filesystems made with `mkfs.ext4 -d`/`mkfs.vfat`/`mkswap` and scattered into
//! the LVs' extents by the layout LVM reports. What skiff reports (`pvs`/`vgs`/`lvs`,
//! `filesystems`, file contents through the LV) is compared with the tools' own
//! reports and the source trees. Types LVM cannot create without device-mapper (raid1,
//! mirror, thin, snapshot) are written with `vgcfgrestore`, which validates and writes
//! the metadata itself.

use super::*;
use crate::block::MemDisk;
use crate::part::testutil::{TempDir, TempImage, run};
use crate::rpc::Appliance;
use serde_json::Value as J;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::process::Command;
use std::string::ToString;
use wire::{Bytes, Reply, Request};

const NOACT: &str = "global/activation=0";

fn lvm_out(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(["--config", NOACT])
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// Runs an LVM tool without device-mapper; panics with its stderr when it fails.
pub(crate) fn lvm(cmd: &str, args: &[&str]) -> String {
    let out = lvm_out(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn tag() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{}x{n}", std::process::id())
}

/// Loop devices and VGs made by a test; detached and removed on drop, even on failure.
#[derive(Default)]
pub(crate) struct Lab {
    vgs: Vec<String>,
    loops: Vec<String>,
}

impl Lab {
    /// Attaches `img` (or the byte range `off`+`size` of it) to a loop device.
    pub(crate) fn attach(&mut self, img: &str, range: Option<(u64, u64)>) -> String {
        let mut args = vec!["-f".to_string(), "--show".to_string()];
        if let Some((o, s)) = range {
            args.extend([
                "-o".into(),
                o.to_string(),
                "--sizelimit".into(),
                s.to_string(),
            ]);
        }
        args.push(img.to_string());
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let dev = run("losetup", &a, None).trim().to_string();
        self.loops.push(dev.clone());
        dev
    }

    pub(crate) fn vg(&mut self, name: &str, pvs: &[&str], extra: &[&str]) {
        for p in pvs {
            lvm("pvcreate", &["-ff", "-y", p]);
        }
        let mut a = extra.to_vec();
        a.push(name);
        a.extend_from_slice(pvs);
        lvm("vgcreate", &a);
        self.vgs.push(name.to_string());
    }

    /// Detaches every loop device (the LVM metadata stays in the image files).
    pub(crate) fn detach(&mut self) {
        for l in self.loops.drain(..) {
            let _ = Command::new("losetup").args(["-d", &l]).status();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.loops.is_empty() {
            for vg in &self.vgs {
                let _ = lvm_out("vgremove", &["-f", "-y", vg]);
            }
        }
        self.detach();
        for vg in &self.vgs {
            let _ = std::fs::remove_file(format!("/etc/lvm/backup/{vg}"));
            if let Ok(rd) = std::fs::read_dir("/etc/lvm/archive") {
                for e in rd.flatten() {
                    if e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{vg}_"))
                    {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
    }
}

/// Rows of an LVM report (`pvs`/`vgs`/`lvs` with `--reportformat json`), sizes in bytes.
fn report(cmd: &str, fields: &str, args: &[&str]) -> Vec<HashMap<String, String>> {
    let mut a = vec![
        "--reportformat",
        "json",
        "--units",
        "b",
        "--nosuffix",
        "-o",
        fields,
    ];
    a.extend_from_slice(args);
    let out = lvm(cmd, &a);
    let j: J = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let rows = j["report"][0]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_array()
        .unwrap();
    rows.iter()
        .map(|r| {
            r.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .collect()
}

fn num(r: &HashMap<String, String>, k: &str) -> u64 {
    r[k].trim()
        .parse()
        .unwrap_or_else(|_| panic!("{k}={:?}", r[k]))
}

/// Where a loop device's bytes are: image file and byte offset in it.
type Files = HashMap<String, (String, u64)>;

/// One segment of an LV as LVM reports it, in bytes.
#[derive(Debug, Clone)]
struct Seg {
    start: u64,
    len: u64,
    stripe: u64,
    /// (loop device, byte offset on it).
    areas: Vec<(String, u64)>,
}

/// Every segment of every LV of `vg` (hidden ones included, by bare name).
fn layout(vg: &str) -> HashMap<String, Vec<Seg>> {
    let ext = num(&report("vgs", "vg_extent_size", &[vg])[0], "vg_extent_size");
    let pe_start: HashMap<String, u64> =
        report("pvs", "pv_name,pe_start", &["-S", &format!("vg_name={vg}")])
            .iter()
            .map(|r| (r["pv_name"].clone(), num(r, "pe_start")))
            .collect();
    let mut out: HashMap<String, Vec<Seg>> = HashMap::new();
    for r in report(
        "lvs",
        "lv_name,seg_start_pe,seg_size_pe,stripes,stripe_size,seg_pe_ranges,segtype",
        &["-a", "--segments", vg],
    ) {
        let name = r["lv_name"].trim_matches(['[', ']']).to_string();
        let mut areas = Vec::new();
        if r["segtype"] == "linear" || r["segtype"] == "striped" {
            for range in r["seg_pe_ranges"].split_whitespace() {
                let (dev, pes) = range.rsplit_once(':').unwrap();
                let first: u64 = pes.split('-').next().unwrap().parse().unwrap();
                areas.push((dev.to_string(), pe_start[dev] + first * ext));
            }
            assert_eq!(areas.len() as u64, num(&r, "stripes"));
        }
        out.entry(name).or_default().push(Seg {
            start: num(&r, "seg_start_pe") * ext,
            len: num(&r, "seg_size_pe") * ext,
            stripe: num(&r, "stripe_size"),
            areas,
        });
    }
    out
}

/// Calls `f(loop device, byte offset on it, range of the LV's bytes)` for every run of
/// `[0, len)` of an LV laid out as `segs`, by the striping rule LVM documents.
fn walk(segs: &[Seg], len: u64, mut f: impl FnMut(&str, u64, std::ops::Range<usize>)) {
    for s in segs {
        let n = s.areas.len() as u64;
        let mut o = 0;
        while o < s.len && s.start + o < len {
            let (dev, at, run) = if n == 1 {
                (&s.areas[0].0, s.areas[0].1 + o, s.len - o)
            } else {
                let c = o / s.stripe;
                let a = &s.areas[(c % n) as usize];
                (
                    &a.0,
                    a.1 + (c / n) * s.stripe + o % s.stripe,
                    s.stripe - o % s.stripe,
                )
            };
            let run = run.min(len - (s.start + o));
            let lo = (s.start + o) as usize;
            f(dev, at, lo..lo + run as usize);
            o += run;
        }
    }
}

/// Writes `data` as the first bytes of an LV, into the image files.
fn scatter(segs: &[Seg], files: &Files, data: &[u8]) {
    walk(segs, data.len() as u64, |dev, at, r| {
        let (path, base) = &files[dev];
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.seek(SeekFrom::Start(base + at)).unwrap();
        f.write_all(&data[r]).unwrap();
    });
}

/// Reads the first `len` bytes of an LV from the image files.
fn gather(segs: &[Seg], files: &Files, len: u64) -> Vec<u8> {
    let mut out = vec![0u8; len as usize];
    walk(segs, len, |dev, at, r| {
        let (path, base) = &files[dev];
        let mut f = std::fs::File::open(path).unwrap();
        f.seek(SeekFrom::Start(base + at)).unwrap();
        f.read_exact(&mut out[r]).unwrap();
    });
    out
}

fn pseudo(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A source tree with files that cross stripe chunks.
pub(crate) fn tree(seed: u64) -> TempDir {
    let t = TempDir::new("lvm-src");
    let p = &t.0;
    std::fs::create_dir_all(p.join("etc/deep/er")).unwrap();
    std::fs::create_dir_all(p.join("boot")).unwrap();
    std::fs::write(p.join("etc/hostname"), format!("guest{seed}\n")).unwrap();
    std::fs::write(p.join("etc/deep/er/big.bin"), pseudo(700_000, seed)).unwrap();
    std::fs::write(p.join("medium.dat"), pseudo(150_000, seed + 7)).unwrap();
    std::fs::write(p.join("empty"), b"").unwrap();
    t
}

/// An ext4 image of `size` bytes holding `src`.
pub(crate) fn ext4(src: &TempDir, size: u64) -> TempImage {
    let img = TempImage::new("lvm-fs", size);
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-b",
            "4096",
            "-E",
            "root_owner=0:0",
            "-d",
            src.path(),
            img.path(),
        ],
        None,
    );
    img
}

/// The appliance over the image files, as disks in order (`/dev/sda`, ...).
fn appliance(imgs: &[&str], writable: bool) -> (Appliance, Vec<SharedDevice>) {
    let mut a = Appliance::new();
    let mut devs = Vec::new();
    for (i, p) in imgs.iter().enumerate() {
        let d = shared(MemDisk::new(std::fs::read(p).unwrap(), !writable));
        a.set_disk(i, d.clone());
        devs.push(d);
    }
    (a, devs)
}

/// Writes the appliance's (written) disks back to their files.
fn save(imgs: &[&str], devs: &[SharedDevice]) {
    for (p, d) in imgs.iter().zip(devs) {
        let size = d.borrow().size() as usize;
        let mut v = vec![0u8; size];
        d.borrow_mut().read_at(0, &mut v).unwrap();
        std::fs::write(p, v).unwrap();
    }
}

/// Every file under `src` read through the appliance at `mnt` equals the source.
pub(crate) fn check_tree(a: &mut Appliance, src: &TempDir, mnt: &str) -> usize {
    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                files(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    let mut list = Vec::new();
    files(&src.0, &mut list);
    for f in &list {
        let rel = f.strip_prefix(&src.0).unwrap().to_str().unwrap();
        let want = std::fs::read(f).unwrap();
        let mut got = Vec::new();
        loop {
            let Reply::Data(Bytes(d)) = a
                .handle(Request::Pread {
                    path: format!("{}/{rel}", mnt.trim_end_matches('/')),
                    offset: got.len() as u64,
                    len: 1 << 18,
                })
                .unwrap()
            else {
                panic!()
            };
            if d.is_empty() {
                break;
            }
            got.extend_from_slice(&d);
        }
        assert!(got == want, "{rel}: contents differ through the LV");
    }
    list.len()
}

pub(crate) fn mount(a: &mut Appliance, dev: &str, mnt: &str, readonly: bool) {
    a.handle(Request::Mount {
        device: dev.to_string(),
        mountpoint: mnt.to_string(),
        readonly,
        fstype: None,
    })
    .unwrap_or_else(|e| panic!("mount {dev}: {e}"));
}

fn umount(a: &mut Appliance, mnt: &str) {
    a.handle(Request::Umount {
        mountpoint: mnt.to_string(),
    })
    .unwrap();
}

/// `lv_attr` without the positions that depend on activation (state, open, health) and
/// with sync-state capitals folded.
fn attr_mask(a: &str) -> String {
    a.chars()
        .enumerate()
        .map(|(i, c)| match i {
            4 | 5 | 8 => '.',
            0 => match c {
                'I' => 'i',
                'R' => 'r',
                'M' => 'm',
                c => c,
            },
            _ => c,
        })
        .collect()
}

/// skiff's `pvs`/`vgs`/`lvs` for `vg` equal the tools' (`names` maps loop devices to
/// the appliance's device names).
fn compare_reports(a: &mut Appliance, vg: &str, names: &HashMap<String, String>) {
    let Reply::Pvs(pvs) = a.handle(Request::Pvs).unwrap() else {
        panic!()
    };
    let want = report(
        "pvs",
        "pv_name,pv_uuid,vg_name,pv_size,dev_size,pv_free,pv_used,pv_attr,pv_pe_count,pv_pe_alloc_count,pe_start,pv_mda_count",
        &["-S", &format!("vg_name={vg}")],
    );
    let mine: Vec<_> = pvs.iter().filter(|p| p.vg == vg).collect();
    assert_eq!(mine.len(), want.len(), "pvs: {mine:?} vs {want:?}");
    for w in &want {
        let p = mine
            .iter()
            .find(|p| p.uuid == w["pv_uuid"])
            .unwrap_or_else(|| panic!("PV {} not reported", w["pv_uuid"]));
        assert_eq!(p.name, names[&w["pv_name"]]);
        assert_eq!(p.size, num(w, "pv_size"), "pv_size of {}", p.name);
        assert_eq!(p.dev_size, num(w, "dev_size"), "dev_size of {}", p.name);
        assert_eq!(p.free, num(w, "pv_free"));
        assert_eq!(p.used, num(w, "pv_used"));
        assert_eq!(p.attr, w["pv_attr"]);
        assert_eq!(p.pe_count, num(w, "pv_pe_count"));
        assert_eq!(p.pe_alloc_count, num(w, "pv_pe_alloc_count"));
        assert_eq!(p.pe_start, num(w, "pe_start"));
        assert_eq!(p.mda_count as u64, num(w, "pv_mda_count"));
    }
    let Reply::Vgs(vgs) = a.handle(Request::Vgs).unwrap() else {
        panic!()
    };
    let w = &report(
        "vgs",
        "vg_name,vg_uuid,vg_attr,vg_size,vg_free,vg_extent_size,vg_extent_count,vg_free_count,max_lv,max_pv,pv_count,lv_count,snap_count,vg_seqno",
        &[vg],
    )[0];
    let v = vgs.iter().find(|v| v.name == vg).expect("VG reported");
    assert_eq!(v.uuid, w["vg_uuid"]);
    assert_eq!(v.attr, w["vg_attr"]);
    for (mine, k) in [
        (v.size, "vg_size"),
        (v.free, "vg_free"),
        (v.extent_size, "vg_extent_size"),
        (v.extent_count, "vg_extent_count"),
        (v.free_count, "vg_free_count"),
        (v.max_lv, "max_lv"),
        (v.max_pv, "max_pv"),
        (v.pv_count, "pv_count"),
        (v.lv_count, "lv_count"),
        (v.snap_count, "snap_count"),
        (v.seqno, "vg_seqno"),
    ] {
        assert_eq!(mine, num(w, k), "vgs {k}");
    }
    let Reply::Lvs(lvs) = a.handle(Request::Lvs).unwrap() else {
        panic!()
    };
    let want = report(
        "lvs",
        "lv_name,vg_name,lv_uuid,lv_attr,lv_size,seg_count,origin,pool_lv,mirror_log",
        &["-a", vg],
    );
    // Segment fields come per segment: the first one's type, every one's devices.
    let mut segs: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for r in report("lvs", "lv_name,segtype,devices", &["-a", "--segments", vg]) {
        let e = segs
            .entry(r["lv_name"].clone())
            .or_insert_with(|| (r["segtype"].clone(), Vec::new()));
        e.1.extend(
            r["devices"]
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }
    let mine: Vec<_> = lvs.iter().filter(|l| l.vg == vg).collect();
    assert_eq!(mine.len(), want.len(), "lvs: {mine:#?} vs {want:#?}");
    for w in &want {
        let bare = w["lv_name"].trim_matches(['[', ']']);
        let l = mine
            .iter()
            .find(|l| l.lv_name == bare)
            .unwrap_or_else(|| panic!("LV {bare} not reported"));
        assert_eq!(l.name, format!("/dev/{vg}/{bare}"));
        assert_eq!(l.uuid, w["lv_uuid"], "{bare}");
        assert_eq!(l.hidden, w["lv_name"].starts_with('['), "{bare} hidden");
        assert_eq!(attr_mask(&l.attr), attr_mask(&w["lv_attr"]), "{bare} attr");
        assert_eq!(l.size, num(w, "lv_size"), "{bare} size");
        let (segtype, devs) = &segs[&w["lv_name"]];
        assert_eq!(&l.segtype, segtype, "{bare} segtype");
        assert_eq!(l.seg_count, num(w, "seg_count"), "{bare} seg_count");
        assert_eq!(
            l.origin.as_deref().unwrap_or(""),
            w["origin"],
            "{bare} origin"
        );
        assert_eq!(l.pool.as_deref().unwrap_or(""), w["pool_lv"], "{bare} pool");
        let log = w["mirror_log"].trim_matches(['[', ']']);
        assert_eq!(l.mirror_log.as_deref().unwrap_or(""), log, "{bare} log");
        let devices: Vec<String> = devs
            .iter()
            .map(|d| {
                let (dev, pe) = d.split_once('(').unwrap();
                let dev = dev.trim_matches(['[', ']']);
                format!("{}({pe}", names.get(dev).map_or(dev, String::as_str))
            })
            .collect();
        assert_eq!(l.devices, devices, "{bare} devices");
    }
}

pub(crate) fn filesystems(a: &mut Appliance) -> Vec<wire::Filesystem> {
    let Reply::Filesystems(f) = a.handle(Request::Filesystems).unwrap() else {
        panic!()
    };
    f
}

fn blkid_uuid(path: &str) -> String {
    crate::part::testutil::blkid(path)["UUID"].clone()
}

/// Debian's default layout: MBR, `/boot` on partition 1, a PV on partition 2 holding the
/// root and swap LVs.
#[test]
fn debian_layout() {
    let t = tag();
    let vg = format!("skdeb{t}");
    let img = TempImage::new("lvm-deb", 128 << 20);
    run(
        "sfdisk",
        &["-q", img.path()],
        Some("label: dos\nstart=2048, size=32768, type=83\nstart=34816, type=8e\n"),
    );
    let (p2_off, p2_size) = (34816u64 * 512, (128u64 << 20) - 34816 * 512);
    let mut lab = Lab::default();
    let l = lab.attach(img.path(), Some((p2_off, p2_size)));
    lab.vg(&vg, &[&l], &[]);
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-n", "root", "-L", "72M", &vg],
    );
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-n", "swap_1", "-L", "16M", &vg],
    );
    let lay = layout(&vg);
    let names: HashMap<String, String> = [(l.clone(), "/dev/sda2".to_string())].into();
    let files: Files = [(l.clone(), (img.path().to_string(), p2_off))].into();

    // /boot, root and swap filesystems made by the real tools.
    let boot_src = tree(1);
    let boot = ext4(&boot_src, 16 << 20);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(img.path())
        .unwrap();
    f.seek(SeekFrom::Start(2048 * 512)).unwrap();
    f.write_all(&std::fs::read(boot.path()).unwrap()).unwrap();
    drop(f);
    let root_src = tree(2);
    let root = ext4(&root_src, 72 << 20);
    scatter(&lay["root"], &files, &std::fs::read(root.path()).unwrap());
    let swap = TempImage::new("lvm-swap", 16 << 20);
    run("mkswap", &["-q", swap.path()], None);
    scatter(&lay["swap_1"], &files, &std::fs::read(swap.path()).unwrap());

    let (mut a, _) = appliance(&[img.path()], false);
    compare_reports(&mut a, &vg, &names);
    lab.detach();

    let fss = filesystems(&mut a);
    let got: Vec<(&str, &str)> = fss
        .iter()
        .map(|f| (f.device.as_str(), f.fstype.as_str()))
        .collect();
    let root_name = format!("/dev/{vg}/root");
    let swap_name = format!("/dev/{vg}/swap_1");
    assert_eq!(
        got,
        [
            ("/dev/sda1", "ext4"),
            ("/dev/sda2", "LVM2_member"),
            (root_name.as_str(), "ext4"),
            (swap_name.as_str(), "swap"),
        ]
    );
    assert_eq!(
        fss[2].uuid.as_deref(),
        Some(blkid_uuid(root.path()).as_str())
    );
    assert_eq!(fss[2].size, 72 << 20);
    assert_eq!(
        fss[3].uuid.as_deref(),
        Some(blkid_uuid(swap.path()).as_str())
    );

    mount(&mut a, &root_name, "/", true);
    mount(&mut a, "/dev/sda1", "/boot", true);
    assert_eq!(check_tree(&mut a, &root_src, "/"), 4);
    assert_eq!(check_tree(&mut a, &boot_src, "/boot"), 4);
    // The mapper name is the same LV: already mounted.
    let e = a
        .handle(Request::Mount {
            device: format!("/dev/mapper/{vg}-root"),
            mountpoint: "/mnt".into(),
            readonly: true,
            fstype: None,
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Busy, "{e}");
    // Raw reads of the LV are the filesystem's bytes.
    let Reply::Data(Bytes(d)) = a
        .handle(Request::PreadDevice {
            device: format!("/dev/mapper/{vg}-swap_1"),
            offset: 0,
            len: 8192,
        })
        .unwrap()
    else {
        panic!()
    };
    assert!(d == std::fs::read(swap.path()).unwrap()[..8192]);
    // Writes to a read-only disk are refused through the LV too.
    let e = a
        .handle(Request::PwriteDevice {
            device: swap_name.clone(),
            offset: 0,
            data: Bytes(vec![1]),
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ReadOnly);
    assert!(a.device(&format!("/dev/{vg}/nope")).is_err());
    // Removing the disk drops the mounts of the LVs on it.
    a.remove_disk(0);
    let Reply::Mounts(m) = a.handle(Request::Mounts).unwrap() else {
        panic!()
    };
    assert!(m.is_empty(), "{m:?}");
    assert!(a.device(&root_name).is_err());
    assert!(a.device(&format!("/dev/{vg}x/root")).is_err());
}

fn write_file(a: &mut Appliance, path: &str, data: &[u8]) {
    for (i, c) in data.chunks(1 << 20).enumerate() {
        a.handle(Request::WriteFile {
            path: path.to_string(),
            offset: (i << 20) as u64,
            data: Bytes(c.to_vec()),
            truncate: i == 0,
            mode: 0o644,
        })
        .unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
}

fn debugfs_cat(img: &str, path: &str) -> Vec<u8> {
    let out = Command::new("debugfs")
        .args(["-R", &format!("cat {path}"), img])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// A VG over two whole-disk PVs: a striped LV (`-i2`, 64 KiB chunks), a FAT LV, and a
/// linear LV spanning both disks. Read through all, then write through all (`--rw`)
/// and check the bytes landed where LVM says with the filesystems' own checkers.
#[test]
fn two_disks_striped_spanning_and_writes() {
    let t = tag();
    let vg = format!("skst{t}");
    let (ia, ib) = (
        TempImage::new("lvm-a", 64 << 20),
        TempImage::new("lvm-b", 64 << 20),
    );
    let mut lab = Lab::default();
    let (la, lb) = (lab.attach(ia.path(), None), lab.attach(ib.path(), None));
    lab.vg(&vg, &[&la, &lb], &["-s", "1M"]);
    lvm(
        "lvcreate",
        &[
            "-an", "-Zn", "-y", "-i2", "-I64k", "-n", "st", "-L", "24M", &vg,
        ],
    );
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-n", "fat", "-L", "16M", &vg],
    );
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-n", "span", "-L", "60M", &vg],
    );
    let lay = layout(&vg);
    assert_eq!(lay["st"][0].areas.len(), 2);
    assert_eq!(
        lay["span"].len(),
        2,
        "span should cross the disks: {:?}",
        lay["span"]
    );
    assert_ne!(lay["span"][0].areas[0].0, lay["span"][1].areas[0].0);
    let names: HashMap<String, String> = [
        (la.clone(), "/dev/sda".to_string()),
        (lb.clone(), "/dev/sdb".to_string()),
    ]
    .into();
    let files: Files = [
        (la.clone(), (ia.path().to_string(), 0)),
        (lb.clone(), (ib.path().to_string(), 0)),
    ]
    .into();
    {
        let (mut a, _) = appliance(&[ia.path(), ib.path()], false);
        compare_reports(&mut a, &vg, &names);
    }
    lab.detach();

    let (st_src, span_src) = (tree(3), tree(4));
    let st_fs = ext4(&st_src, 24 << 20);
    scatter(&lay["st"], &files, &std::fs::read(st_fs.path()).unwrap());
    let span_fs = ext4(&span_src, 60 << 20);
    scatter(
        &lay["span"],
        &files,
        &std::fs::read(span_fs.path()).unwrap(),
    );
    let fat_fs = TempImage::new("lvm-fat", 16 << 20);
    run("mkfs.vfat", &["-F", "16", fat_fs.path()], None);
    run(
        "mcopy",
        &[
            "-i",
            fat_fs.path(),
            &format!("{}/medium.dat", span_src.path()),
            "::/MEDIUM.DAT",
        ],
        None,
    );
    scatter(&lay["fat"], &files, &std::fs::read(fat_fs.path()).unwrap());

    let imgs = [ia.path(), ib.path()];
    let (mut a, devs) = appliance(&imgs, true);
    let fss = filesystems(&mut a);
    let lv_fs: Vec<(&str, &str)> = fss
        .iter()
        .skip(2)
        .map(|f| (f.device.as_str(), f.fstype.as_str()))
        .collect();
    let n = |lv: &str| format!("/dev/{vg}/{lv}");
    let (st, fat, span) = (n("st"), n("fat"), n("span"));
    assert_eq!(
        lv_fs,
        [
            (fat.as_str(), "vfat"),
            (span.as_str(), "ext4"),
            (st.as_str(), "ext4")
        ]
    );
    assert_eq!(fss[0].fstype, "LVM2_member");
    mount(&mut a, &st, "/", false);
    mount(&mut a, &format!("/dev/mapper/{vg}-span"), "/boot", false);
    assert_eq!(check_tree(&mut a, &st_src, "/"), 4);
    assert_eq!(check_tree(&mut a, &span_src, "/boot"), 4);

    // Writes through the striped and the spanning LV.
    let big = pseudo(900_000, 99);
    write_file(&mut a, "/new.bin", &big);
    write_file(&mut a, "/etc/hostname", b"renamed\n");
    write_file(&mut a, "/boot/across.bin", &pseudo(3 << 20, 5));
    umount(&mut a, "/boot");
    mount(&mut a, &fat, "/boot", false);
    assert_eq!(
        a.handle(Request::Pread {
            path: "/boot/MEDIUM.DAT".into(),
            offset: 0,
            len: 200_000
        })
        .unwrap(),
        Reply::Data(Bytes(std::fs::read(span_src.0.join("medium.dat")).unwrap()))
    );
    write_file(&mut a, "/boot/HELLO.TXT", b"fat through lvm\n");
    a.handle(Request::Shutdown).unwrap();
    save(&imgs, &devs);

    let check = |lv: &str, len: u64| {
        let out = TempImage::new("lvm-out", len);
        std::fs::write(out.path(), gather(&lay[lv], &files, len)).unwrap();
        out
    };
    let st_out = check("st", 24 << 20);
    run("e2fsck", &["-fn", st_out.path()], None);
    assert!(debugfs_cat(st_out.path(), "/new.bin") == big);
    assert_eq!(debugfs_cat(st_out.path(), "/etc/hostname"), b"renamed\n");
    let span_out = check("span", 60 << 20);
    run("e2fsck", &["-fn", span_out.path()], None);
    assert!(debugfs_cat(span_out.path(), "/across.bin") == pseudo(3 << 20, 5));
    let fat_out = check("fat", 16 << 20);
    run("fsck.vfat", &["-n", fat_out.path()], None);
    let got = run("mtype", &["-i", fat_out.path(), "::/HELLO.TXT"], None);
    assert_eq!(got, "fat through lvm\n");

    // Raw writes through the striped LV land on both disks by the stripe layout, and
    // raw reads give them back.
    let (mut a, devs) = appliance(&imgs, true);
    let pattern = pseudo(300_000, 3);
    let off = (1 << 20) + 12_345;
    a.handle(Request::PwriteDevice {
        device: st.clone(),
        offset: off,
        data: Bytes(pattern.clone()),
    })
    .unwrap();
    let Reply::Data(Bytes(back)) = a
        .handle(Request::PreadDevice {
            device: st.clone(),
            offset: off,
            len: 300_000,
        })
        .unwrap()
    else {
        panic!()
    };
    assert!(back == pattern);
    save(&imgs, &devs);
    let whole = gather(&lay["st"], &files, 24 << 20);
    assert!(whole[off as usize..off as usize + pattern.len()] == pattern[..]);
    // Out of range is refused.
    assert!(
        a.handle(Request::PreadDevice {
            device: st,
            offset: 24 << 20,
            len: 1
        })
        .is_err()
    );
}

/// PVs of one VG disagree (one holds older metadata): the highest seqno wins.
#[test]
fn highest_seqno_wins() {
    let t = tag();
    let vg = format!("sksq{t}");
    let (ia, ib) = (
        TempImage::new("lvm-a", 16 << 20),
        TempImage::new("lvm-b", 16 << 20),
    );
    let mut lab = Lab::default();
    let (la, lb) = (lab.attach(ia.path(), None), lab.attach(ib.path(), None));
    lab.vg(&vg, &[&la, &lb], &["-s", "1M"]);
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-n", "old", "-L", "4M", &vg],
    );
    let stale = std::fs::read(ia.path()).unwrap();
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-n", "new", "-L", "4M", &vg],
    );
    let names: HashMap<String, String> = [
        (la.clone(), "/dev/sdb".to_string()),
        (lb.clone(), "/dev/sda".to_string()),
    ]
    .into();
    let seqno = num(&report("vgs", "vg_seqno", &[&vg])[0], "vg_seqno");
    {
        // The stale disk second, then first: the same answer.
        let (mut a, _) = appliance(&[ib.path(), ia.path()], false);
        compare_reports(&mut a, &vg, &names);
    }
    lab.detach();
    std::fs::write(ia.path(), &stale).unwrap();
    for order in [[ia.path(), ib.path()], [ib.path(), ia.path()]] {
        let (mut a, _) = appliance(&order, false);
        let Reply::Vgs(v) = a.handle(Request::Vgs).unwrap() else {
            panic!()
        };
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].seqno, seqno);
        let Reply::Lvs(l) = a.handle(Request::Lvs).unwrap() else {
            panic!()
        };
        let mut names: Vec<_> = l.iter().map(|l| l.lv_name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["new", "old"]);
        assert!(a.device(&format!("/dev/{vg}/new")).is_ok());
    }
}

/// Dashes in VG and LV names (the `/dev/mapper` form doubles them) and LVs fragmented by
/// create, remove and extend.
#[test]
fn fragmented_lvs_and_dashed_names() {
    let t = tag();
    let vg = format!("sk-dash-{t}");
    let img = TempImage::new("lvm-frag", 48 << 20);
    let mut lab = Lab::default();
    let l = lab.attach(img.path(), None);
    lab.vg(&vg, &[&l], &["-s", "1M"]);
    for (n, s) in [("lv-a", "6M"), ("lv-b", "5M"), ("lv-c", "4M"), ("x", "3M")] {
        lvm("lvcreate", &["-an", "-Zn", "-y", "-n", n, "-L", s, &vg]);
    }
    lvm("lvremove", &["-f", &format!("{vg}/lv-b")]);
    lvm("lvextend", &["-L", "+9M", &format!("{vg}/lv-a")]);
    lvm("lvextend", &["-L", "+2M", &format!("{vg}/lv-c")]);
    lvm("lvextend", &["-L", "+3M", &format!("{vg}/lv-a")]);
    let lay = layout(&vg);
    assert!(
        lay["lv-a"].len() >= 3,
        "lv-a not fragmented: {:?}",
        lay["lv-a"]
    );
    assert!(
        lay["lv-c"].len() >= 2,
        "lv-c not fragmented: {:?}",
        lay["lv-c"]
    );
    let names: HashMap<String, String> = [(l.clone(), "/dev/sda".to_string())].into();
    let files: Files = [(l.clone(), (img.path().to_string(), 0))].into();
    {
        let (mut a, _) = appliance(&[img.path()], false);
        compare_reports(&mut a, &vg, &names);
    }
    lab.detach();
    let src = tree(6);
    let fs = ext4(&src, 18 << 20);
    scatter(&lay["lv-a"], &files, &std::fs::read(fs.path()).unwrap());
    let c_bytes = pseudo(6 << 20, 8);
    scatter(&lay["lv-c"], &files, &c_bytes);

    let (mut a, _) = appliance(&[img.path()], false);
    let dashed = |lv: &str| {
        format!(
            "/dev/mapper/{}-{}",
            vg.replace('-', "--"),
            lv.replace('-', "--")
        )
    };
    let fss = filesystems(&mut a);
    let devs: Vec<&str> = fss.iter().map(|f| f.device.as_str()).collect();
    let (la, lc, lx) = (
        format!("/dev/{vg}/lv-a"),
        format!("/dev/{vg}/lv-c"),
        format!("/dev/{vg}/x"),
    );
    assert_eq!(devs, ["/dev/sda", la.as_str(), lc.as_str(), lx.as_str()]);
    assert_eq!(fss[1].fstype, "ext4");
    mount(&mut a, &dashed("lv-a"), "/", true);
    assert_eq!(check_tree(&mut a, &src, "/"), 4);
    // The mounts list the canonical name.
    let Reply::Mounts(m) = a.handle(Request::Mounts).unwrap() else {
        panic!()
    };
    assert_eq!(m[0].device, la);
    // Raw bytes across lv-c's segment boundary, by both names.
    for name in [lc.clone(), dashed("lv-c")] {
        let Reply::Data(Bytes(d)) = a
            .handle(Request::PreadDevice {
                device: name,
                offset: (4 << 20) - 1000,
                len: 5000,
            })
            .unwrap()
        else {
            panic!()
        };
        assert!(d == c_bytes[(4 << 20) - 1000..(4 << 20) + 4000]);
    }
    // Single-dash spellings of the mapper name do not resolve.
    assert!(a.device(&format!("/dev/mapper/{vg}-lv-a")).is_err());
    assert!(a.device(&dashed("x")).is_ok());
}

/// The metadata text lies across the end of the circular metadata area (many metadata
/// changes in a small area).
#[test]
fn wrapped_metadata_area() {
    let t = tag();
    let vg = format!("skwr{t}");
    let img = TempImage::new("lvm-wrap", 32 << 20);
    let mut lab = Lab::default();
    let l = lab.attach(img.path(), None);
    lvm(
        "pvcreate",
        &[
            "-ff",
            "-y",
            "--metadatasize",
            "16k",
            "--dataalignment",
            "64k",
            &l,
        ],
    );
    lvm("vgcreate", &["-s", "1M", &vg, &l]);
    lab.vgs.push(vg.clone());
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-n", "keep", "-L", "8M", &vg],
    );
    // (mda offset, mda size, text offset, text size) from the PV's own headers.
    let locn = || {
        let b = std::fs::read(img.path()).unwrap();
        let s = &b[512..1024];
        assert_eq!(&s[..8], b"LABELONE");
        let h = 512 + u32::from_le_bytes(s[20..24].try_into().unwrap()) as usize;
        let le = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let mut o = h + 40;
        while le(o) != 0 {
            o += 16;
        }
        let (mo, ms) = (le(o + 16), le(o + 24));
        let m = mo as usize;
        (mo, ms, le(m + 40), le(m + 48))
    };
    let mut wrapped = false;
    for i in 0..400 {
        let n = format!("tmp{i}");
        lvm("lvcreate", &["-an", "-Zn", "-y", "-n", &n, "-L", "1M", &vg]);
        let (_, ms, off, size) = locn();
        if off + size > ms {
            wrapped = true;
            break;
        }
        lvm("lvremove", &["-f", &format!("{vg}/{n}")]);
    }
    assert!(wrapped, "the metadata never wrapped");
    let lay = layout(&vg);
    let names: HashMap<String, String> = [(l.clone(), "/dev/sda".to_string())].into();
    let files: Files = [(l.clone(), (img.path().to_string(), 0))].into();
    let (mut a, _) = appliance(&[img.path()], false);
    compare_reports(&mut a, &vg, &names);
    lab.detach();
    let src = tree(7);
    let fs = ext4(&src, 8 << 20);
    scatter(&lay["keep"], &files, &std::fs::read(fs.path()).unwrap());
    let (mut a, _) = appliance(&[img.path()], false);
    mount(&mut a, &format!("/dev/{vg}/keep"), "/", true);
    assert_eq!(check_tree(&mut a, &src, "/"), 4);
}

/// A VG with one of its two PVs missing: LVs entirely on the present PV work, the others
/// fail naming the missing PV's UUID.
#[test]
fn missing_pv() {
    let t = tag();
    let vg = format!("skmi{t}");
    let (ia, ib) = (
        TempImage::new("lvm-a", 24 << 20),
        TempImage::new("lvm-b", 24 << 20),
    );
    let mut lab = Lab::default();
    let (la, lb) = (lab.attach(ia.path(), None), lab.attach(ib.path(), None));
    lab.vg(&vg, &[&la, &lb], &["-s", "1M"]);
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-n", "ona", "-L", "8M", &vg, &la],
    );
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-n", "onb", "-L", "4M", &vg, &lb],
    );
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-n", "both", "-L", "30M", &vg],
    );
    let lay = layout(&vg);
    let uuid_b = report("pvs", "pv_name,pv_uuid", &[&lb])[0]["pv_uuid"].clone();
    let files: Files = [(la.clone(), (ia.path().to_string(), 0))].into();
    lab.detach();
    let src = tree(8);
    let fs = ext4(&src, 8 << 20);
    scatter(&lay["ona"], &files, &std::fs::read(fs.path()).unwrap());

    let (mut a, _) = appliance(&[ia.path()], false);
    let Reply::Vgs(v) = a.handle(Request::Vgs).unwrap() else {
        panic!()
    };
    assert_eq!(v[0].missing_pvs, std::slice::from_ref(&uuid_b));
    assert_eq!(&v[0].attr[3..4], "p");
    let Reply::Pvs(p) = a.handle(Request::Pvs).unwrap() else {
        panic!()
    };
    assert!(
        p.iter()
            .any(|p| p.uuid == uuid_b && p.name == "[unknown]" && p.attr == "a-m")
    );
    mount(&mut a, &format!("/dev/{vg}/ona"), "/", true);
    assert_eq!(check_tree(&mut a, &src, "/"), 4);
    for lv in ["onb", "both"] {
        let e = a.device(&format!("/dev/{vg}/{lv}")).err().unwrap();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.message.contains(&uuid_b), "{e}");
    }
    let fss = filesystems(&mut a);
    let unknown: Vec<(&str, u64)> = fss
        .iter()
        .filter(|f| f.fstype == "unknown")
        .map(|f| (f.device.as_str(), f.size))
        .collect();
    let (b, o) = (format!("/dev/{vg}/both"), format!("/dev/{vg}/onb"));
    assert_eq!(unknown, [(b.as_str(), 30 << 20), (o.as_str(), 4 << 20)]);
    let Reply::Lvs(l) = a.handle(Request::Lvs).unwrap() else {
        panic!()
    };
    assert!(l.iter().all(|l| (l.lv_name == "ona") == l.error.is_none()));
    assert!(
        l.iter()
            .any(|l| l.lv_name == "both" && &l.attr[8..9] == "p")
    );
}

/// An LV section for `vgcfgrestore`: one segment, `seg` its body.
fn lv_text(name: &str, id: u32, visible: bool, count: u64, seg: &str) -> String {
    format!(
        "{name} {{\nid = \"skiffL-{id:04}-aaaa-aaaa-aaaa-aaaa-aaaaaa\"\nstatus = [\"READ\", \"WRITE\"{}]\nflags = []\nsegment_count = 1\nsegment1 {{\nstart_extent = 0\nextent_count = {count}\n{seg}\n}}\n}}\n",
        if visible { ", \"VISIBLE\"" } else { "" }
    )
}

fn linear(pv: &str, pe: u64) -> String {
    format!("type = \"striped\"\nstripe_count = 1\nstripes = [\"{pv}\", {pe}]")
}

/// raid1, mirror, thin pool and thin volume, snapshot: LVM cannot create them without
/// device-mapper, so their metadata is written by `vgcfgrestore` (which validates it)
/// from the VG's own backup plus the new LVs. raid1 and mirror read from the first
/// healthy leg and write to every leg; the others are listed and refused by type.
#[test]
fn raid1_mirror_thin_snapshot() {
    let t = tag();
    let vg = format!("skrd{t}");
    let (ia, ib) = (
        TempImage::new("lvm-a", 40 << 20),
        TempImage::new("lvm-b", 40 << 20),
    );
    let mut lab = Lab::default();
    let (la, lb) = (lab.attach(ia.path(), None), lab.attach(ib.path(), None));
    lab.vg(&vg, &[&la, &lb], &["-s", "1M"]);
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-n", "base", "-L", "4M", &vg, &la],
    );
    let backup = TempImage::new("lvm-backup", 0);
    lvm("vgcfgbackup", &["-f", backup.path(), &vg]);
    let text = std::fs::read_to_string(backup.path()).unwrap();
    let (pv_a, pv_b) = {
        let pvs = report("pvs", "pv_name,pv_uuid", &["-S", &format!("vg_name={vg}")]);
        let u = |l: &str| pvs.iter().find(|r| r["pv_name"] == l).unwrap()["pv_uuid"].clone();
        (u(&la), u(&lb))
    };
    // pv0/pv1 in the text are whichever PV has that id.
    let key = |uuid: &str| {
        let at = text.find(&format!("id = \"{uuid}\"")).unwrap();
        let head = &text[..at];
        let open = head.rfind('{').unwrap();
        head[..open].split_whitespace().last().unwrap().to_string()
    };
    let (ka, kb) = (key(&pv_a), key(&pv_b));
    let mut lvs = String::new();
    // raid1: leg 0 on disk b, leg 1 on disk a.
    lvs += &lv_text(
        "r1",
        1,
        true,
        8,
        "type = \"raid1\"\ndevice_count = 2\nregion_size = 1024\nraids = [\"r1_rmeta_0\", \"r1_rimage_0\", \"r1_rmeta_1\", \"r1_rimage_1\"]",
    );
    lvs += &lv_text("r1_rmeta_0", 2, false, 1, &linear(&kb, 0));
    lvs += &lv_text("r1_rimage_0", 3, false, 8, &linear(&kb, 1));
    lvs += &lv_text("r1_rmeta_1", 4, false, 1, &linear(&ka, 4));
    lvs += &lv_text("r1_rimage_1", 5, false, 8, &linear(&ka, 5));
    // mirror with a log.
    lvs += &lv_text(
        "m1",
        6,
        true,
        4,
        "type = \"mirror\"\nmirror_count = 2\nmirror_log = \"m1_mlog\"\nregion_size = 1024\nmirrors = [\"m1_mimage_0\", 0, \"m1_mimage_1\", 0]",
    );
    lvs += &lv_text("m1_mlog", 7, false, 1, &linear(&ka, 13));
    lvs += &lv_text("m1_mimage_0", 8, false, 4, &linear(&ka, 14));
    lvs += &lv_text("m1_mimage_1", 9, false, 4, &linear(&kb, 9));
    // A thin pool and a thin volume.
    lvs += &lv_text(
        "tp",
        10,
        true,
        4,
        "type = \"thin-pool\"\nmetadata = \"tp_tmeta\"\npool = \"tp_tdata\"\ntransaction_id = 1\nchunk_size = 128\ndiscards = \"passdown\"\nzero_new_blocks = 1",
    );
    lvs += &lv_text("tp_tmeta", 11, false, 1, &linear(&kb, 13));
    lvs += &lv_text("tp_tdata", 12, false, 4, &linear(&ka, 18));
    lvs += &lv_text(
        "thin1",
        13,
        true,
        16,
        "type = \"thin\"\nthin_pool = \"tp\"\ntransaction_id = 0\ndevice_id = 1",
    );
    // A snapshot of "base": its COW store and the snapshot segment.
    lvs += &lv_text("snap", 14, true, 2, &linear(&kb, 14));
    lvs += &lv_text(
        "snapshot0",
        15,
        false,
        4,
        "type = \"snapshot\"\nchunk_size = 8\norigin = \"base\"\ncow_store = \"snap\"",
    );
    let at = text.find("logical_volumes {").unwrap() + "logical_volumes {".len();
    let new_text = format!("{}\n{lvs}{}", &text[..at], &text[at..]);
    std::fs::write(backup.path(), new_text).unwrap();
    lvm("vgcfgrestore", &["--force", "-f", backup.path(), &vg]);

    let lay = layout(&vg);
    let names: HashMap<String, String> = [
        (la.clone(), "/dev/sda".to_string()),
        (lb.clone(), "/dev/sdb".to_string()),
    ]
    .into();
    let files: Files = [
        (la.clone(), (ia.path().to_string(), 0)),
        (lb.clone(), (ib.path().to_string(), 0)),
    ]
    .into();
    {
        let (mut a, _) = appliance(&[ia.path(), ib.path()], false);
        compare_reports(&mut a, &vg, &names);
    }
    lab.detach();
    // The same filesystem in every leg, as a synced raid1 or mirror has it.
    let (r_src, m_src) = (tree(9), tree(10));
    let r_fs = std::fs::read(ext4(&r_src, 8 << 20).path()).unwrap();
    let m_fs = std::fs::read(ext4(&m_src, 4 << 20).path()).unwrap();
    for leg in ["r1_rimage_0", "r1_rimage_1"] {
        scatter(&lay[leg], &files, &r_fs);
    }
    for leg in ["m1_mimage_0", "m1_mimage_1"] {
        scatter(&lay[leg], &files, &m_fs);
    }
    let base = pseudo(4 << 20, 11);
    scatter(&lay["base"], &files, &base);

    let imgs = [ia.path(), ib.path()];
    let (mut a, devs) = appliance(&imgs, true);
    let n = |lv: &str| format!("/dev/{vg}/{lv}");
    let fss = filesystems(&mut a);
    let listed: Vec<(&str, &str)> = fss
        .iter()
        .skip(2)
        .map(|f| (f.device.as_str(), f.fstype.as_str()))
        .collect();
    let want = [
        (n("base"), "unknown"),
        (n("m1"), "ext4"),
        (n("r1"), "ext4"),
        (n("snap"), "unknown"),
        (n("thin1"), "unknown"),
    ];
    let want: Vec<(&str, &str)> = want.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    assert_eq!(listed, want, "hidden LVs and thin pools are not listed");
    for (lv, what) in [("thin1", "thin"), ("tp", "thin-pool"), ("snap", "snapshot")] {
        let e = a.device(&n(lv)).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Unsupported, "{lv}: {e}");
        assert!(e.message.contains(what), "{e}");
    }
    // The origin reads, but refuses writes (they would bypass the snapshot).
    let Reply::Data(Bytes(d)) = a
        .handle(Request::PreadDevice {
            device: n("base"),
            offset: 3 << 20,
            len: 1 << 20,
        })
        .unwrap()
    else {
        panic!()
    };
    assert!(d == base[3 << 20..]);
    let e = a
        .handle(Request::PwriteDevice {
            device: n("base"),
            offset: 0,
            data: Bytes(vec![0]),
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ReadOnly);

    mount(&mut a, &n("r1"), "/", false);
    mount(&mut a, &n("m1"), "/boot", false);
    assert_eq!(check_tree(&mut a, &r_src, "/"), 4);
    assert_eq!(check_tree(&mut a, &m_src, "/boot"), 4);
    // Writes go to every leg.
    write_file(&mut a, "/leg.bin", &pseudo(400_000, 12));
    write_file(&mut a, "/boot/leg.bin", &pseudo(100_000, 13));
    a.handle(Request::Shutdown).unwrap();
    save(&imgs, &devs);
    for (legs, len, size) in [
        (["r1_rimage_0", "r1_rimage_1"], 400_000, 8u64 << 20),
        (["m1_mimage_0", "m1_mimage_1"], 100_000, 4 << 20),
    ] {
        let bytes: Vec<Vec<u8>> = legs
            .iter()
            .map(|l| gather(&lay[*l], &files, size))
            .collect();
        assert!(bytes[0] == bytes[1], "{legs:?} differ after writes");
        let out = TempImage::new("lvm-leg", size);
        std::fs::write(out.path(), &bytes[0]).unwrap();
        run("e2fsck", &["-fn", out.path()], None);
        assert_eq!(debugfs_cat(out.path(), "/leg.bin").len(), len);
    }

    // Disk b gone: raid1 reads from its first healthy leg (leg 1, on disk a) and refuses
    // writes; the mirror likewise.
    let (mut a, _) = appliance(&[ia.path()], true);
    for (lv, src, mnt) in [("r1", &r_src, "/"), ("m1", &m_src, "/boot")] {
        let d = a.device(&n(lv)).unwrap();
        assert!(
            d.borrow().readonly(),
            "{lv} with a leg missing must be read-only"
        );
        mount(&mut a, &n(lv), mnt, false);
        assert_eq!(check_tree(&mut a, src, mnt), 4);
        let e = a
            .handle(Request::PwriteDevice {
                device: n(lv),
                offset: 0,
                data: Bytes(vec![0]),
            })
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ReadOnly);
    }
    let e = a
        .handle(Request::WriteFile {
            path: "/x".into(),
            offset: 0,
            data: Bytes(vec![1]),
            truncate: true,
            mode: 0o644,
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ReadOnly);
}

/// (text start, text length, raw_locn offset) of a one-PV image whose label is in
/// sector 1 and whose first metadata area holds an unwrapped text.
fn mda_locn(img: &[u8]) -> (usize, usize, usize) {
    let s = &img[512..1024];
    assert_eq!(&s[..8], b"LABELONE");
    let le = |o: usize| u64::from_le_bytes(img[o..o + 8].try_into().unwrap()) as usize;
    let mut o = 512 + u32::from_le_bytes(s[20..24].try_into().unwrap()) as usize + 40;
    while le(o) != 0 {
        o += 16;
    }
    let mda = le(o + 16);
    let (off, len) = (le(mda + 40), le(mda + 48));
    (mda + off, len, mda + 40)
}

/// Replaces the metadata text of a one-PV image, with valid checksums (or not).
fn set_text(img: &mut [u8], text: &[u8], fix_sum: bool) {
    let (start, _, locn) = mda_locn(img);
    img[start..start + text.len()].copy_from_slice(text);
    img[locn + 8..locn + 16].copy_from_slice(&(text.len() as u64).to_le_bytes());
    if fix_sum {
        img[locn + 16..locn + 20].copy_from_slice(&label::crc(text).to_le_bytes());
    }
    let mda = locn - 40;
    let sum = label::crc(&img[mda + 4..mda + 512]);
    img[mda..mda + 4].copy_from_slice(&sum.to_le_bytes());
}

/// Edits the section of LV `lv` in a metadata text.
fn edit_lv(text: &str, lv: &str, f: impl Fn(&str) -> String) -> String {
    let at = text.find(&format!("\n{lv} {{\n")).unwrap();
    let end = at + text[at..].find("\n}\n}").unwrap() + 2;
    format!("{}{}{}", &text[..at], f(&text[at..end]), &text[end..])
}

fn replace_num(sec: &str, key: &str, new: &str) -> String {
    let at = sec.find(key).unwrap();
    let line_end = at + sec[at..].find('\n').unwrap();
    format!("{}{key} = {new}{}", &sec[..at], &sec[line_end..])
}

/// The first PE of a one-stripe LV section.
fn stripe_pe(sec: &str) -> String {
    let at = sec.find("stripes = [").unwrap();
    let list = &sec[at..at + sec[at..].find(']').unwrap()];
    list.rsplit(',').next().unwrap().trim().to_string()
}

fn set_stripe_pe(sec: &str, pe: &str) -> String {
    let at = sec.find("stripes = [").unwrap();
    let close = at + sec[at..].find(']').unwrap();
    let comma = at + sec[at..close].rfind(',').unwrap();
    format!("{}, {pe}\n{}", &sec[..comma], &sec[close..])
}

/// Lying or broken metadata: clear errors, never a panic or a hang, and what is sound
/// still works.
#[test]
fn corrupt_metadata() {
    let t = tag();
    let vg = format!("skco{t}");
    let img = TempImage::new("lvm-co", 32 << 20);
    let mut lab = Lab::default();
    let l = lab.attach(img.path(), None);
    lab.vg(&vg, &[&l], &["-s", "1M"]);
    for (n, s) in [("good", "8M"), ("victim", "4M"), ("other", "4M")] {
        lvm("lvcreate", &["-an", "-Zn", "-y", "-n", n, "-L", s, &vg]);
    }
    let lay = layout(&vg);
    let files: Files = [(l.clone(), (img.path().to_string(), 0))].into();
    lab.detach();
    let src = tree(20);
    let fs = ext4(&src, 8 << 20);
    scatter(&lay["good"], &files, &std::fs::read(fs.path()).unwrap());
    let base = std::fs::read(img.path()).unwrap();
    let (start, len, _) = mda_locn(&base);
    let text = String::from_utf8(base[start..start + len].to_vec()).unwrap();
    let text = text.trim_end_matches('\0').to_string();
    let other_pe = stripe_pe(&text[text.find("\nother {").unwrap()..]);

    // (case, new text or None for a raw change, change, LVs that must still work, LV
    // errors expected as (LV, kind, text in the message)).
    type Raw = fn(&mut Vec<u8>);
    type Case<'a> = (
        &'a str,
        Option<String>,
        Option<Raw>,
        Vec<&'a str>,
        Vec<(&'a str, ErrorKind, &'a str)>,
    );
    let cases: Vec<Case> = vec![
        (
            "segment beyond its PV",
            Some(edit_lv(&text, "victim", |s| set_stripe_pe(s, "100000"))),
            None,
            vec!["good", "other"],
            vec![("victim", ErrorKind::Corrupt, "beyond")],
        ),
        (
            "PV claims more extents than its device has",
            Some(edit_lv(
                &text.replacen("pe_count = ", "pe_count = 1000 #", 1),
                "victim",
                |s| set_stripe_pe(s, "500"),
            )),
            None,
            vec!["good", "other"],
            vec![("victim", ErrorKind::Corrupt, "data area")],
        ),
        (
            "overlapping extents",
            Some(edit_lv(&text, "victim", |s| set_stripe_pe(s, &other_pe))),
            None,
            vec!["good"],
            vec![
                ("victim", ErrorKind::Corrupt, "overlap"),
                ("other", ErrorKind::Corrupt, "overlap"),
            ],
        ),
        (
            "extent count that overflows",
            Some(edit_lv(&text, "victim", |s| {
                replace_num(s, "extent_count", "9223372036854775807")
            })),
            None,
            vec!["good", "other"],
            vec![("victim", ErrorKind::Corrupt, "")],
        ),
        (
            "stripe count that lies",
            Some(edit_lv(&text, "victim", |s| {
                replace_num(s, "stripe_count", "3")
            })),
            None,
            vec!["good", "other"],
            vec![("victim", ErrorKind::Corrupt, "stripe")],
        ),
        (
            "segments with a gap",
            Some(edit_lv(&text, "victim", |s| {
                replace_num(s, "start_extent", "1")
            })),
            None,
            vec!["good", "other"],
            vec![("victim", ErrorKind::Corrupt, "tile")],
        ),
        (
            "raid1 whose leg is itself",
            Some(edit_lv(&text, "victim", |s| {
                let seg = s.find("type = ").unwrap();
                let end = s.rfind(']').unwrap();
                format!(
                    "{}type = \"raid1\"\nraids = [\"victim\", \"victim\"{}",
                    &s[..seg],
                    &s[end..]
                )
            })),
            None,
            vec!["good", "other"],
            vec![("victim", ErrorKind::Corrupt, "")],
        ),
        (
            "number too large",
            Some(edit_lv(&text, "victim", |s| {
                replace_num(s, "extent_count", "99999999999999999999")
            })),
            None,
            vec![],
            vec![],
        ),
        (
            "text that never ends",
            Some(text[..text.find("\n}\n# Generated").unwrap()].to_string()),
            None,
            vec![],
            vec![],
        ),
        (
            "unbalanced braces",
            Some(format!("{text}\n}}\n")),
            None,
            vec![],
            vec![],
        ),
        (
            "sections nested too deep",
            Some(text.replacen(
                "seqno",
                &format!("{}{}\nseqno", "x {".repeat(64), "}".repeat(64)),
                1,
            )),
            None,
            vec![],
            vec![],
        ),
        (
            "text checksum wrong",
            None,
            Some(|i: &mut Vec<u8>| {
                let (s, _, _) = mda_locn(i);
                i[s + 5] ^= 1;
            }),
            vec![],
            vec![],
        ),
        (
            "metadata area header checksum wrong",
            None,
            Some(|i: &mut Vec<u8>| {
                let (_, _, locn) = mda_locn(i);
                i[locn + 2] ^= 1;
            }),
            vec![],
            vec![],
        ),
        (
            "text length past the area",
            None,
            Some(|i: &mut Vec<u8>| {
                let (_, _, locn) = mda_locn(i);
                i[locn + 8..locn + 16].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
                let mda = locn - 40;
                let sum = label::crc(&i[mda + 4..mda + 512]);
                i[mda..mda + 4].copy_from_slice(&sum.to_le_bytes());
            }),
            vec![],
            vec![],
        ),
        (
            "label checksum wrong",
            None,
            Some(|i: &mut Vec<u8>| i[512 + 40] ^= 1),
            vec![],
            vec![],
        ),
    ];
    for (what, new_text, raw, working, broken) in cases {
        let mut v = base.clone();
        if let Some(t) = new_text {
            set_text(&mut v, t.as_bytes(), true);
        }
        if let Some(f) = raw {
            f(&mut v);
        }
        let mut a = Appliance::new();
        a.set_disk(0, shared(MemDisk::new(v.clone(), true)));
        let _ = a.handle(Request::Pvs).unwrap();
        let Reply::Vgs(vgs) = a.handle(Request::Vgs).unwrap() else {
            panic!()
        };
        let Reply::Lvs(lvs) = a.handle(Request::Lvs).unwrap() else {
            panic!()
        };
        let _ = filesystems(&mut a);
        if working.is_empty() && broken.is_empty() {
            // The VG is unusable: no VG, and naming its LVs says why.
            assert!(vgs.is_empty(), "{what}: {vgs:?}");
            let e = a.device(&format!("/dev/{vg}/good")).err().unwrap();
            assert_eq!(e.kind, ErrorKind::NotFound, "{what}");
            assert!(e.message.contains("lvm"), "{what}: {e}");
            eprintln!("{what}: {e}");
            continue;
        }
        assert_eq!(vgs.len(), 1, "{what}");
        for lv in working {
            assert!(
                lvs.iter().any(|l| l.lv_name == lv && l.error.is_none()),
                "{what}: {lv}"
            );
            if lv == "good" {
                mount(&mut a, &format!("/dev/{vg}/good"), "/", true);
                assert_eq!(check_tree(&mut a, &src, "/"), 4, "{what}");
                umount(&mut a, "/");
            } else {
                a.device(&format!("/dev/{vg}/{lv}")).unwrap();
            }
        }
        for (lv, kind, msg) in broken {
            let e = a.device(&format!("/dev/{vg}/{lv}")).err().unwrap();
            assert_eq!(e.kind, kind, "{what}: {lv}: {e}");
            assert!(
                e.message.contains(msg) && e.message.contains(lv),
                "{what}: {e}"
            );
            eprintln!("{what}: {e}");
        }
    }
}

/// Hostile stacking: LVs whose raid1 legs are 64 copies of the next LV, 300 deep, plus
/// a cycle, and many LVs on a missing PV. Everything is worked out once per LV: the
/// scan and the reports finish at once, with clear errors.
#[test]
fn hostile_stacking_is_linear() {
    let mut t = String::from(
        "vg {\nid = \"x\"\nseqno = 1\nextent_size = 8\nstatus = [\"READ\", \"WRITE\"]\n\
         physical_volumes {\npv0 {\nid = \"missing\"\npe_start = 2048\npe_count = 100000\n}\n}\n\
         logical_volumes {\n",
    );
    let n = 300;
    for i in 0..n {
        let next = format!("l{}", (i + 1) % n);
        let raids: Vec<String> = (0..64).map(|_| format!("\"m\", \"{next}\"")).collect();
        t += &format!(
            "l{i} {{\nid = \"{i}\"\nstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\nsegment1 {{\n\
             start_extent = 0\nextent_count = 1\ntype = \"raid1\"\nraids = [{}]\n}}\n}}\n",
            raids.join(", ")
        );
    }
    for i in 0..2000 {
        t += &format!(
            "s{i} {{\nid = \"s{i}\"\nstatus = [\"READ\", \"VISIBLE\"]\nsegment1 {{\nstart_extent = 0\n\
             extent_count = 1\ntype = \"striped\"\nstripe_count = 1\nstripes = [\"pv0\", {i}]\n}}\n}}\n"
        );
    }
    t += "}\n}\n";
    let started = std::time::Instant::now();
    let meta = meta::parse_vg(&config::parse(t.as_bytes()).unwrap()).unwrap();
    let mut vg = Vg::new(meta, vec![None], 1);
    vg.layouts = Layouts::new(&[], &vg).all();
    let scan = Scan {
        pvs: Vec::new(),
        vgs: vec![vg],
        errors: Vec::new(),
    };
    let lvs = scan.lv_report();
    let _ = scan.vg_report();
    let _ = scan.pv_report();
    let _ = scan.listed_lvs();
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(lvs.len(), n + 2000);
    assert!(lvs.iter().all(|l| l.error.is_some()));
    let s0 = lvs.iter().find(|l| l.lv_name == "s0").unwrap();
    assert!(s0.error.as_deref().unwrap().contains("missing"), "{s0:?}");
    assert_eq!(&s0.attr[8..9], "p");
    assert_eq!(&s0.attr[1..2], "r");
}
