//! Volumes, keys, btrfs subvolumes and ownership through the `skiff` CLI and library,
//! end to end under qemu, on images built with the real tools:
//!
//! - LVM: `pvcreate`/`vgcreate`/`lvcreate -an -Zn` on loop devices (device-mapper does
//!   not work here), filesystems made by `mkfs.ext4 -d` placed at the extents `lvs
//!   --segments` reports; `pvs`/`vgs`/`lvs`(`-full`) compared with LVM's own reports.
//! - LUKS2: `cryptsetup reencrypt --encrypt --force-offline-reencrypt` (no
//!   device-mapper) of an ext4 or LVM image; keys by device, UUID, file, stdin; wrong
//!   keys; the passphrase absent from qemu's command line and environment, the log and
//!   the errors; the relaunch with more memory for a large Argon2 cost.
//! - encrypted qcow2 (`qemu-img convert -o encrypt.format=luks`).
//! - btrfs: `mkfs.btrfs --rootdir --subvol` as Fedora lays it out, fstab `subvol=`.
//! - ownership, times and xattrs on ext4, checked with `debugfs` and `e2fsck -fn`.

use serde_json::Value;
use skiff_tests::guests::{self, dd_into, mkfs_ext4, sfdisk, write_tree};
use skiff_tests::lvm::{Lab, lvm, unique_tag as tag};
use skiff_tests::skiff::volumes::{KeySet, NoPrompt};
use skiff_tests::skiff::{DriveOptions, Error, MountOptions};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn cli(args: &[&str], stdin: &[u8]) -> Output {
    guests::skiff_cli(args, stdin)
}

/// `skiff ARGS` must succeed; its stdout.
fn ok(args: &[&str]) -> String {
    ok_in(args, b"")
}

fn ok_in(args: &[&str], stdin: &[u8]) -> String {
    let o = cli(args, stdin);
    assert!(
        o.status.success(),
        "skiff {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("UTF-8 output")
}

/// `skiff --json ARGS`, parsed.
fn json(args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = ok(&a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out:?}"))
}

/// `skiff ARGS` must fail; its stderr.
fn fails(args: &[&str], stdin: &[u8]) -> String {
    let o = cli(args, stdin);
    assert!(!o.status.success(), "skiff {args:?} should fail");
    String::from_utf8(o.stderr).expect("UTF-8 stderr")
}

/// Runs a tool (stdin: `input`); panics with its stderr when it fails. Its stdout.
fn tool(prog: &str, args: &[&str], input: Option<&[u8]>) -> String {
    let mut c = Command::new(prog)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{prog}: {e} (tests/install-deps.sh)"));
    let mut i = c.stdin.take().expect("piped");
    if let Some(d) = input {
        i.write_all(d).expect("write stdin");
    }
    drop(i);
    let o = c.wait_with_output().expect("wait");
    assert!(
        o.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sparse(path: &Path, size: u64) {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(size))
        .expect("create image");
}

// ---- LVM on loop devices, without device-mapper ----

/// Rows of an LVM JSON report, sizes in bytes.
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
    let j: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let rows = j["report"][0]
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_array)
        .expect("report rows")
        .clone();
    rows.iter()
        .map(|r| {
            r.as_object()
                .expect("row")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().trim().to_string()))
                .collect()
        })
        .collect()
}

fn num(r: &HashMap<String, String>, k: &str) -> u64 {
    r[k].parse().unwrap_or_else(|_| panic!("{k}={:?}", r[k]))
}

/// A run of an LV's bytes: `len` bytes from LV offset `lv_off` are at byte `file_off`
/// of image `file`.
struct Run {
    lv_off: u64,
    len: u64,
    file: PathBuf,
    file_off: u64,
}

/// Where the first `len` bytes of LV `lv` of `vg` are, by the segments LVM reports
/// (linear and striped); `files` maps each loop device to (image, offset of the loop
/// device in it).
fn lv_runs(vg: &str, lv: &str, len: u64, files: &HashMap<String, (PathBuf, u64)>) -> Vec<Run> {
    let ext = num(&report("vgs", "vg_extent_size", &[vg])[0], "vg_extent_size");
    let pe_start: HashMap<String, u64> =
        report("pvs", "pv_name,pe_start", &["-S", &format!("vg_name={vg}")])
            .iter()
            .map(|r| (r["pv_name"].clone(), num(r, "pe_start")))
            .collect();
    let mut runs = Vec::new();
    for r in report(
        "lvs",
        "lv_name,seg_start_pe,seg_size_pe,stripe_size,seg_pe_ranges",
        &["--segments", &format!("{vg}/{lv}")],
    ) {
        let areas: Vec<(String, u64)> = r["seg_pe_ranges"]
            .split_whitespace()
            .map(|range| {
                let (dev, pes) = range.rsplit_once(':').expect("dev:pe-pe");
                let first: u64 = pes
                    .split('-')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("pe");
                (dev.to_string(), pe_start[dev] + first * ext)
            })
            .collect();
        let (start, size) = (num(&r, "seg_start_pe") * ext, num(&r, "seg_size_pe") * ext);
        let n = areas.len() as u64;
        let stripe = if n > 1 { num(&r, "stripe_size") } else { size };
        let mut o = 0;
        while o < size && start + o < len {
            // Chunk c of the segment is on stripe c % n, row c / n.
            let c = o / stripe;
            let (dev, base) = &areas[(c % n) as usize];
            let at = base + (c / n) * stripe + o % stripe;
            let l = (stripe - o % stripe).min(len - start - o);
            let (file, foff) = &files[dev];
            runs.push(Run {
                lv_off: start + o,
                len: l,
                file: file.clone(),
                file_off: foff + at,
            });
            o += l;
        }
    }
    runs
}

/// Writes `data` as the first bytes of the LV laid out as `runs`.
fn scatter(runs: &[Run], data: &[u8]) {
    for r in runs {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&r.file)
            .expect("open");
        f.seek(SeekFrom::Start(r.file_off)).expect("seek");
        let (a, b) = (r.lv_off as usize, (r.lv_off + r.len) as usize);
        f.write_all(&data[a..b]).expect("write");
    }
}

/// The first `len` bytes of the LV laid out as `runs`.
fn gather(runs: &[Run], len: u64) -> Vec<u8> {
    let mut out = vec![0u8; len as usize];
    for r in runs {
        let mut f = std::fs::File::open(&r.file).expect("open");
        f.seek(SeekFrom::Start(r.file_off)).expect("seek");
        let (a, b) = (r.lv_off as usize, (r.lv_off + r.len) as usize);
        f.read_exact(&mut out[a..b]).expect("read");
    }
    out
}

fn blkid(dev: &Path, tag: &str) -> String {
    tool("blkid", &["-p", "-o", "value", "-s", tag, s(dev)], None)
        .trim()
        .to_string()
}

fn debugfs(img: &Path, req: &str) -> String {
    tool("debugfs", &["-R", req, s(img)], None)
}

fn e2fsck_clean(img: &Path) {
    tool("e2fsck", &["-fn", s(img)], None);
}

// ---- LUKS2 made by cryptsetup without device-mapper ----

/// Cheap Argon2id (32 MiB): fits the default appliance.
const SMALL_ARGON: &[&str] = &[
    "--pbkdf",
    "argon2id",
    "--pbkdf-memory",
    "32768",
    "--pbkdf-force-iterations",
    "4",
    "--pbkdf-parallel",
    "1",
];

/// Encrypts `img` in place as LUKS2 (the last 4 MiB make room for the header: its
/// first `size - 4 MiB` bytes become the payload). `kdf`: cryptsetup's PBKDF options.
fn luks2_encrypt(img: &Path, pass: &str, kdf: &[&str]) -> String {
    let mut a = vec![
        "reencrypt",
        "--encrypt",
        "--batch-mode",
        "--key-file=-",
        "--type",
        "luks2",
        "--reduce-device-size",
        "4M",
        "--force-offline-reencrypt",
        "--luks2-metadata-size",
        "16k",
        "--luks2-keyslots-size",
        "1m",
    ];
    a.extend_from_slice(kdf);
    a.push(s(img));
    tool("cryptsetup", &a, Some(pass.as_bytes()));
    tool("cryptsetup", &["luksUUID", s(img)], None)
        .trim()
        .to_string()
}

/// A unique passphrase (so a grep for it finds nothing else).
fn passphrase(what: &str) -> String {
    format!("sk-{what}-{}-{:x}", std::process::id(), rand_u64())
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("urandom");
    u64::from_le_bytes(b)
}

/// An ext4 filesystem image of `size` holding `files`.
fn ext4_with(dir: &Path, name: &str, size: &str, files: &[(&str, &str)]) -> PathBuf {
    let root = dir.join(format!("{name}.src"));
    write_tree(&root, files);
    let img = dir.join(name);
    mkfs_ext4(&root, &img, size, &["-E", "root_owner=0:0"]);
    img
}

/// A Debian-like root on LVM: `/dev/sda1` ext4 `/boot`, `/dev/sda2` a PV of VG `vg`
/// (a dash in it: device-mapper names double it) with LVs `root` (ext4) and `swap_1`;
/// fstab names the root by its mapper name and /boot by UUID.
#[test]
fn lvm_root_reports_inspect_and_cat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let vg = format!("sk-deb{}", tag());
    let mapper_vg = vg.replace('-', "--");
    let img = d.join("disk.img");
    sparse(&img, 96 << 20);
    sfdisk(
        &img,
        "label: dos\nstart=2048, size=16384, type=83\nstart=18432, type=8e\n",
    );
    let (p2_off, p2_size) = (18432u64 * 512, (96u64 << 20) - 18432 * 512);
    let boot_uuid = "5b0c2d4e-aaaa-bbbb-cccc-0123456789ab";
    let boot = ext4_with(d, "boot.fs", "8M", &[("config-6.1.0", "CONFIG_X=y\n")]);
    tool("tune2fs", &["-U", boot_uuid, s(&boot)], None);
    dd_into(&boot, &img, 2048);
    let fstab = format!(
        "# <file system> <mount point> <type> <options> <dump> <pass>\n\
         /dev/mapper/{mapper_vg}-root / ext4 errors=remount-ro 0 1\n\
         UUID={boot_uuid} /boot ext4 defaults 0 2\n\
         /dev/mapper/{mapper_vg}-swap_1 none swap sw 0 0\n"
    );
    let root = ext4_with(
        d,
        "root.fs",
        "40M",
        &[
            ("etc/hostname", "lvmguest\n"),
            ("etc/fstab", &fstab),
            ("etc/debian_version", "12.5\n"),
            (
                "etc/os-release",
                "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
                 VERSION_ID=\"12\"\nID=debian\n",
            ),
            ("boot/.keep", ""),
            ("usr/bin/.keep", ""),
            // A Linux root to inspection: /etc, /bin and /etc/fstab (libguestfs' rule).
            ("bin/.keep", ""),
        ],
    );

    let mut lab = Lab::default();
    let l = lab.attach_range(&img, Some((p2_off, p2_size)));
    lab.vg(&vg, &[&l]);
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-n", "root", "-L", "40M", &vg],
    );
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-n", "swap_1", "-L", "8M", &vg],
    );
    let files: HashMap<String, (PathBuf, u64)> = [(l.clone(), (img.clone(), p2_off))].into();
    let root_bytes = std::fs::read(&root).expect("read root fs");
    scatter(
        &lv_runs(&vg, "root", root_bytes.len() as u64, &files),
        &root_bytes,
    );
    let lvm_pv = report("pvs", "pv_uuid,pe_start,pv_size,pv_free", &[&l]).remove(0);
    let lvm_vg = report(
        "vgs",
        "vg_uuid,vg_extent_size,vg_extent_count,vg_free_count",
        &[&vg],
    )
    .remove(0);
    let lvm_lvs = report("lvs", "lv_name,lv_uuid,lv_size,segtype", &[&vg]);
    lab.detach();

    let a = ["-a", s(&img)];
    let with = |cmd: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = cmd.iter().map(|c| c.to_string()).collect();
        v.extend(a.iter().map(|c| c.to_string()));
        v
    };
    let run = |cmd: &[&str]| ok(&with(cmd).iter().map(String::as_str).collect::<Vec<_>>());
    let root_lv = format!("/dev/{vg}/root");
    let swap_lv = format!("/dev/{vg}/swap_1");
    assert_eq!(run(&["pvs"]), "/dev/sda2\n");
    assert_eq!(run(&["vgs"]), format!("{vg}\n"));
    assert_eq!(run(&["lvs"]), format!("{root_lv}\n{swap_lv}\n"));

    // -full with --json: LVM's own figures.
    let j = json(
        &with(&["pvs-full"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let pv = &j["pvs"][0];
    assert_eq!(pv["pv_name"], "/dev/sda2");
    assert_eq!(pv["vg_name"], vg.as_str());
    assert_eq!(pv["pv_uuid"], lvm_pv["pv_uuid"].as_str());
    assert_eq!(pv["pe_start"].as_u64(), Some(num(&lvm_pv, "pe_start")));
    assert_eq!(pv["pv_size"].as_u64(), Some(num(&lvm_pv, "pv_size")));
    assert_eq!(pv["pv_free"].as_u64(), Some(num(&lvm_pv, "pv_free")));
    let j = json(
        &with(&["vgs-full"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let v = &j["vgs"][0];
    assert_eq!(v["vg_uuid"], lvm_vg["vg_uuid"].as_str());
    assert_eq!(
        v["vg_extent_size"].as_u64(),
        Some(num(&lvm_vg, "vg_extent_size"))
    );
    assert_eq!(
        v["vg_extent_count"].as_u64(),
        Some(num(&lvm_vg, "vg_extent_count"))
    );
    assert_eq!(
        v["vg_free_count"].as_u64(),
        Some(num(&lvm_vg, "vg_free_count"))
    );
    let j = json(
        &with(&["lvs-full"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let lvs = j["lvs"].as_array().expect("lvs");
    assert_eq!(lvs.len(), lvm_lvs.len());
    for want in &lvm_lvs {
        let got = lvs
            .iter()
            .find(|l| l["lv_name"] == want["lv_name"].as_str())
            .unwrap_or_else(|| panic!("{} missing from {lvs:?}", want["lv_name"]));
        assert_eq!(got["lv_uuid"], want["lv_uuid"].as_str());
        assert_eq!(got["lv_size"].as_u64(), Some(num(want, "lv_size")));
        assert_eq!(got["segtype"], want["segtype"].as_str());
        assert_eq!(got["vg_name"], vg.as_str());
    }

    // filesystems lists the LVs with blkid's UUIDs.
    let j = json(
        &with(&["filesystems"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let fss = j["filesystems"].as_array().expect("filesystems");
    let f = fss
        .iter()
        .find(|f| f["device"] == root_lv.as_str())
        .unwrap_or_else(|| panic!("{root_lv} in {fss:?}"));
    assert_eq!(f["fstype"], "ext4");
    assert_eq!(f["uuid"], blkid(&root, "UUID").as_str());

    // Inspection finds the root on the LV and resolves the mapper name and the UUID.
    let j = json(
        &with(&["inspect"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let os = &j["operating_systems"][0];
    assert_eq!(os["root"], root_lv.as_str(), "{j}");
    assert_eq!(os["hostname"], "lvmguest");
    assert_eq!(os["distro"], "debian");
    let fstab = os["fstab"].as_array().expect("fstab");
    let dev_of = |mp: &str| {
        fstab
            .iter()
            .find(|e| e["mountpoint"] == mp)
            .map(|e| e["device"].clone())
    };
    assert_eq!(dev_of("/"), Some(Value::from(root_lv.as_str())));
    assert_eq!(dev_of("/boot"), Some(Value::from("/dev/sda1")));

    // Automatic mounting: / from the LV, /boot from sda1.
    assert_eq!(run(&["cat", "/etc/hostname"]), "lvmguest\n");
    assert_eq!(run(&["cat", "/boot/config-6.1.0"]), "CONFIG_X=y\n");
    // -m with the mapper name.
    let m = format!("/dev/mapper/{mapper_vg}-root");
    assert_eq!(run(&["-m", &m, "cat", "/etc/debian_version"]), "12.5\n");
}

/// A VG over two disks with a striped LV: read, written with `--rw`, and the gathered
/// LV bytes checked by `debugfs` and `e2fsck -fn`.
#[test]
fn striped_lv_over_two_disks_read_and_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let vg = format!("skstr{}", tag());
    let (d1, d2) = (d.join("d1.img"), d.join("d2.img"));
    sparse(&d1, 40 << 20);
    sparse(&d2, 40 << 20);
    let big: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    let fs = ext4_with(
        d,
        "data.fs",
        "32M",
        &[("etc/hostname", "striped\n"), ("big.txt", &big)],
    );
    let mut lab = Lab::default();
    let (l1, l2) = (lab.attach_range(&d1, None), lab.attach_range(&d2, None));
    lab.vg_with(&vg, &[&l1, &l2], &["-s", "1M"]);
    lvm(
        "lvcreate",
        &[
            "-an", "-Zn", "-y", "-n", "data", "-L", "32M", "-i", "2", "-I", "64k", &vg,
        ],
    );
    let files: HashMap<String, (PathBuf, u64)> =
        [(l1.clone(), (d1.clone(), 0)), (l2.clone(), (d2.clone(), 0))].into();
    let runs = lv_runs(&vg, "data", 32 << 20, &files);
    assert!(
        runs.iter().any(|r| r.file == d1) && runs.iter().any(|r| r.file == d2),
        "striped over both disks"
    );
    scatter(&runs, &std::fs::read(&fs).expect("read fs"));
    lab.detach();

    let lv = format!("/dev/{vg}/data");
    let a = ["-a", s(&d1), "-a", s(&d2)];
    let mut args = a.to_vec();
    args.extend(["cat", "/big.txt"]);
    assert!(ok(&args) == big, "big.txt read across the stripes");
    // Write a file larger than a stripe chunk through the LV.
    let payload: String = (0..30_000).map(|i| format!("new {i}\n")).collect();
    let up = d.join("payload.txt");
    std::fs::write(&up, &payload).expect("write payload");
    let mut args = vec!["--rw"];
    args.extend_from_slice(&a);
    args.extend(["-m", &lv, "upload", s(&up), "/new.txt"]);
    ok(&args);
    let out = d.join("gathered.fs");
    std::fs::write(&out, gather(&runs, 32 << 20)).expect("write gathered");
    e2fsck_clean(&out);
    assert!(debugfs(&out, "cat /new.txt") == payload);
    assert_eq!(debugfs(&out, "cat /etc/hostname"), "striped\n");
}

/// LUKS2 on an LV (LUKS on LVM): keys by device, by the mapper name, by LUKS UUID, from
/// a file, from stdin; a wrong key; no key; `--rw` through the LUKS mapping.
#[test]
fn luks_on_lvm_keys_and_wrong_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let vg = format!("skluks{}", tag());
    let pass = passphrase("lol");
    let img = d.join("disk.img");
    sparse(&img, 48 << 20);
    // The LV's contents: ext4 (20 MiB) then room for the LUKS2 header.
    let inner = ext4_with(d, "inner.fs", "20M", &[("etc/hostname", "inside\n")]);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&inner)
        .expect("open");
    f.set_len(24 << 20).expect("grow");
    drop(f);
    let luks_uuid = luks2_encrypt(&inner, &pass, SMALL_ARGON);
    let mut lab = Lab::default();
    let l = lab.attach_range(&img, None);
    lab.vg(&vg, &[&l]);
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-n", "secret", "-L", "24M", &vg],
    );
    let files: HashMap<String, (PathBuf, u64)> = [(l.clone(), (img.clone(), 0))].into();
    let runs = lv_runs(&vg, "secret", 24 << 20, &files);
    scatter(&runs, &std::fs::read(&inner).expect("read"));
    lab.detach();

    let lv = format!("/dev/{vg}/secret");
    let mapper = format!("/dev/mapper/{vg}-secret");
    let keyfile = d.join("key");
    std::fs::write(&keyfile, format!("{pass}\nignored second line\n")).expect("key file");
    let cat = |key: &str| ok(&["-a", s(&img), "--key", key, "cat", "/etc/hostname"]);
    assert_eq!(cat(&format!("{lv}:key:{pass}")), "inside\n");
    assert_eq!(cat(&format!("{mapper}:key:{pass}")), "inside\n");
    assert_eq!(
        cat(&format!("{}:key:{pass}", luks_uuid.to_uppercase())),
        "inside\n"
    );
    assert_eq!(cat(&format!("all:file:{}", keyfile.display())), "inside\n");
    // One key per line on stdin.
    let out = ok_in(
        &["-a", s(&img), "--keys-from-stdin", "cat", "/etc/hostname"],
        format!("{pass}\n").as_bytes(),
    );
    assert_eq!(out, "inside\n");
    // The filesystem inside is listed once unlocked.
    let j = json(&[
        "-a",
        s(&img),
        "--key",
        &format!("all:key:{pass}"),
        "filesystems",
    ]);
    let fss = j["filesystems"].as_array().expect("filesystems");
    let mapped = format!("/dev/mapper/luks-{luks_uuid}");
    assert!(
        fss.iter()
            .any(|f| f["device"] == mapped.as_str() && f["fstype"] == "ext4"),
        "{fss:?}"
    );
    assert!(
        fss.iter()
            .any(|f| f["device"] == lv.as_str() && f["fstype"] == "crypto_LUKS"),
        "{fss:?}"
    );

    // A wrong key: an error naming the device, never the key.
    let wrong = passphrase("wrong");
    let e = fails(
        &[
            "-a",
            s(&img),
            "--key",
            &format!("{lv}:key:{wrong}"),
            "cat",
            "/etc/hostname",
        ],
        b"",
    );
    assert!(e.contains(&lv) && e.contains("wrong key"), "{e}");
    assert!(!e.contains(&wrong), "the key is in the error: {e}");
    // No key (stdin is not a terminal): left locked with a warning.
    let e = fails(&["-a", s(&img), "cat", "/etc/hostname"], b"");
    assert!(e.contains(&lv) && e.contains("locked"), "{e}");

    // Writes through LUKS on LVM, checked by decrypting with cryptsetup's header dump?
    // No device-mapper: read it back through skiff in a new appliance.
    ok(&[
        "--rw",
        "-a",
        s(&img),
        "--key",
        &format!("{lv}:key:{pass}"),
        "write",
        "/etc/motd",
        "written through LUKS\n",
    ]);
    assert_eq!(
        ok(&[
            "-a",
            s(&img),
            "--key",
            &format!("{lv}:key:{pass}"),
            "cat",
            "/etc/motd"
        ]),
        "written through LUKS\n"
    );
}

/// The passphrase appears nowhere but on the RPC channel: not in qemu's command line or
/// environment, not in the verbose log, not in the errors (a wrong key, a wrong key for
/// an encrypted qcow2).
#[test]
fn keys_never_leak() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pass = passphrase("leak");
    let fs = ext4_with(d, "fs.img", "16M", &[("etc/hostname", "leakcheck\n")]);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&fs)
        .expect("open");
    f.set_len(20 << 20).expect("grow");
    drop(f);
    luks2_encrypt(&fs, &pass, SMALL_ARGON);
    // And an encrypted qcow2 with the same passphrase.
    let plain = ext4_with(d, "plain.img", "8M", &[("etc/hostname", "qcow\n")]);
    let enc = d.join("enc.qcow2");
    qcow2_encrypt(&plain, &enc, &pass);

    let mut keys = KeySet::new();
    keys.add_spec(&format!("/dev/sda:key:{pass}")).expect("key");
    keys.add_spec(&format!("{}:key:{pass}", enc.display()))
        .expect("key");
    let (mut sess, report) = skiff_tests::builder()
        .verbose(true)
        .add_drive(&fs, DriveOptions::readonly())
        .add_drive(&enc, DriveOptions::readonly())
        .keys(keys)
        .launch_unlocked(
            &{
                let mut k = KeySet::new();
                k.add_spec(&format!("/dev/sda:key:{pass}")).expect("key");
                k
            },
            &mut NoPrompt,
        )
        .expect("launch and unlock");
    assert_eq!(report.opened.len(), 1, "{report:?}");
    let pid = sess.qemu_pid().expect("qemu pid");
    for what in ["cmdline", "environ"] {
        let b = std::fs::read(format!("/proc/{pid}/{what}")).expect("read /proc");
        assert!(
            !contains(&b, pass.as_bytes()),
            "the passphrase is in qemu's {what}"
        );
        assert!(!b.is_empty() || what == "environ");
    }
    sess.mount(&report.opened[0].mapped, "/", MountOptions::readonly())
        .expect("mount");
    assert_eq!(
        sess.read_file("/etc/hostname").expect("read"),
        b"leakcheck\n"
    );
    sess.umount("/").expect("umount");
    sess.mount("/dev/sdb", "/", MountOptions::readonly())
        .expect("mount qcow2 fs");
    assert_eq!(sess.read_file("/etc/hostname").expect("read"), b"qcow\n");
    let log = sess.log();
    assert!(!log.is_empty(), "verbose log");
    assert!(!log.contains(&pass), "the passphrase is in the log");
    sess.shutdown().expect("shutdown");

    // The CLI, verbose, with the key from a file: nothing on stderr carries it.
    let keyfile = d.join("k");
    std::fs::write(&keyfile, &pass).expect("key file");
    let o = cli(
        &[
            "-v",
            "-a",
            s(&fs),
            "--key",
            &format!("all:file:{}", keyfile.display()),
            "cat",
            "/etc/hostname",
        ],
        b"",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!contains(&o.stderr, pass.as_bytes()));
    // Wrong keys: errors name the device or image, never a key.
    let wrong = passphrase("nope");
    let e = fails(
        &[
            "-v",
            "-a",
            s(&enc),
            "--key",
            &format!("/dev/sda:key:{wrong}"),
            "cat",
            "/etc/hostname",
        ],
        b"",
    );
    assert!(e.contains("wrong key") && e.contains(s(&enc)), "{e}");
    assert!(!e.contains(&wrong));
    let mut k = KeySet::new();
    k.add_spec(&format!("all:key:{wrong}")).expect("key");
    let err = skiff_tests::builder()
        .add_drive(&fs, DriveOptions::readonly())
        .launch_unlocked(&k, &mut NoPrompt)
        .err()
        .expect("a wrong key fails");
    assert!(matches!(err, Error::WrongKey { .. }), "{err}");
    let msg = format!("{err} {err:?}");
    assert!(msg.contains("/dev/sda") && !msg.contains(&wrong), "{msg}");
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// `qemu-img convert` of a raw image into a LUKS-encrypted qcow2 (the secret from a
/// file, as qemu-img takes it).
fn qcow2_encrypt(raw: &Path, out: &Path, pass: &str) {
    let sec = out.with_extension("secret");
    std::fs::write(&sec, pass).expect("secret file");
    tool(
        "qemu-img",
        &[
            "convert",
            "-q",
            "--object",
            &format!("secret,id=sec0,file={}", sec.display()),
            "-f",
            "raw",
            "-O",
            "qcow2",
            "-o",
            "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
            s(raw),
            s(out),
        ],
        None,
    );
    std::fs::remove_file(&sec).expect("remove secret file");
}

/// An encrypted qcow2 read with `--key /dev/sda:...` and `--key IMAGE:file:...`, written
/// with `--rw`, the result checked by qemu-img's own decryption and debugfs.
#[test]
fn encrypted_qcow2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pass = passphrase("qcow");
    let plain = ext4_with(d, "plain.img", "16M", &[("etc/hostname", "encq\n")]);
    let enc = d.join("enc.qcow2");
    qcow2_encrypt(&plain, &enc, &pass);
    let info = tool("qemu-img", &["info", "--output=json", s(&enc)], None);
    assert!(info.contains("\"encrypted\": true"), "{info}");
    assert_eq!(
        ok(&[
            "-a",
            s(&enc),
            "--key",
            &format!("/dev/sda:key:{pass}"),
            "cat",
            "/etc/hostname"
        ]),
        "encq\n"
    );
    let keyfile = d.join("key");
    std::fs::write(&keyfile, format!("{pass}\n")).expect("key");
    let by_path = format!("{}:file:{}", enc.display(), keyfile.display());
    ok(&[
        "--rw",
        "-a",
        s(&enc),
        "--key",
        &by_path,
        "write",
        "/new",
        "via skiff\n",
    ]);
    // No key: a clear error.
    let e = fails(&["-a", s(&enc), "cat", "/etc/hostname"], b"");
    assert!(e.contains("encrypt") && e.contains("key"), "{e}");
    // qemu-img decrypts what skiff wrote.
    let back = d.join("back.raw");
    let sec = d.join("sec");
    std::fs::write(&sec, &pass).expect("secret");
    tool(
        "qemu-img",
        &[
            "convert",
            "-q",
            "--object",
            &format!("secret,id=sec0,file={}", sec.display()),
            "--image-opts",
            &format!(
                "driver=qcow2,file.filename={},encrypt.key-secret=sec0",
                enc.display()
            ),
            "-O",
            "raw",
            s(&back),
        ],
        None,
    );
    e2fsck_clean(&back);
    assert_eq!(debugfs(&back, "cat /new"), "via skiff\n");
    assert_eq!(debugfs(&back, "cat /etc/hostname"), "encq\n");
}

/// LVM inside LUKS2 whose Argon2 needs 256 MiB: more than the default appliance has,
/// so the library relaunches once with enough; the CLI reads a file on the LV.
#[test]
fn lvm_on_luks_with_relaunch_for_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let vg = format!("sklol{}", tag());
    let pass = passphrase("big");
    let img = d.join("disk.img");
    sparse(&img, 40 << 20);
    let fs = ext4_with(d, "lv.fs", "16M", &[("etc/hostname", "lvm-in-luks\n")]);
    let mut lab = Lab::default();
    // The PV ends 4 MiB before the end: that room takes the LUKS2 header.
    let l = lab.attach_range(&img, Some((0, 36 << 20)));
    lab.vg(&vg, &[&l]);
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-n", "data", "-L", "16M", &vg],
    );
    let files: HashMap<String, (PathBuf, u64)> = [(l.clone(), (img.clone(), 0))].into();
    scatter(
        &lv_runs(&vg, "data", 16 << 20, &files),
        &std::fs::read(&fs).expect("read"),
    );
    lab.detach();
    let kdf = [
        "--pbkdf",
        "argon2id",
        "--pbkdf-memory",
        "262144",
        "--pbkdf-force-iterations",
        "4",
        "--pbkdf-parallel",
        "1",
    ];
    let uuid = luks2_encrypt(&img, &pass, &kdf);

    let mut keys = KeySet::new();
    keys.add_spec(&format!("{uuid}:key:{pass}")).expect("key");
    let b = skiff_tests::builder().add_drive(&img, DriveOptions::readonly());
    // The default appliance is too small: a clear error naming the device and the size.
    let mut small = b.clone().launch().expect("launch");
    let info = small.luks_info().expect("luks_info");
    assert_eq!(info.len(), 1);
    assert!(info[0].required_memory >= 256 << 20, "{info:?}");
    let e = small
        .unlock_all(&keys, &mut NoPrompt)
        .expect_err("needs more memory");
    assert!(matches!(e, Error::NeedsMemory { .. }), "{e}");
    assert!(e.to_string().contains("/dev/sda"), "{e}");
    small.shutdown().expect("shutdown");
    let (mut sess, report) = b.launch_unlocked(&keys, &mut NoPrompt).expect("relaunch");
    assert!(
        sess.memory_mib().is_some_and(|m| m >= 320),
        "{:?}",
        sess.memory_mib()
    );
    assert_eq!(report.opened.len(), 1);
    assert_eq!(report.opened[0].uuid, uuid);
    let lvs = sess.lvs().expect("lvs");
    assert_eq!(lvs.len(), 1);
    assert_eq!(lvs[0].name, format!("/dev/{vg}/data"));
    sess.shutdown().expect("shutdown");

    // The CLI: -m the LV inside.
    let out = ok(&[
        "-a",
        s(&img),
        "--key",
        &format!("/dev/sda:key:{pass}"),
        "-m",
        &format!("/dev/{vg}/data"),
        "cat",
        "/etc/hostname",
    ]);
    assert_eq!(out, "lvm-in-luks\n");
}

/// A Fedora-style btrfs: subvolumes `root` and `home`, fstab by UUID with `subvol=`.
/// Inspection and automatic mounting mount each subvolume where the guest does; `-m
/// DEV:MNT:subvol=NAME` does the same by hand; writes are refused naming btrfs.
#[test]
fn btrfs_subvolumes_mount_like_the_guest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let uuid = "3c1f2e4d-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
    let src = d.join("src");
    let fstab = format!(
        "UUID={uuid} / btrfs subvol=root,compress=zstd:1 0 0\n\
         UUID={uuid} /home btrfs subvol=home,compress=zstd:1 0 0\n"
    );
    write_tree(
        &src,
        &[
            ("root/etc/hostname", "fedorabtrfs\n"),
            ("root/etc/fstab", &fstab),
            (
                "root/etc/os-release",
                "NAME=\"Fedora Linux\"\nVERSION_ID=40\nID=fedora\n",
            ),
            ("root/home/.keep", ""),
            ("root/usr/bin/.keep", ""),
            ("root/bin/.keep", ""),
            ("home/user/notes.txt", "in the home subvolume\n"),
        ],
    );
    let img = d.join("btrfs.img");
    sparse(&img, 128 << 20);
    tool(
        "mkfs.btrfs",
        &[
            "-q",
            "-f",
            "-U",
            uuid,
            "--rootdir",
            s(&src),
            "-u",
            "root",
            "-u",
            "home",
            s(&img),
        ],
        None,
    );
    let j = json(&["-a", s(&img), "inspect"]);
    let os = &j["operating_systems"];
    assert_eq!(os.as_array().map(Vec::len), Some(1), "{j}");
    assert_eq!(os[0]["root"], "btrfsvol:/dev/sda/root");
    assert_eq!(os[0]["hostname"], "fedorabtrfs");
    let home = os[0]["fstab"]
        .as_array()
        .and_then(|f| f.iter().find(|e| e["mountpoint"] == "/home"))
        .expect("/home in fstab")
        .clone();
    assert_eq!(home["device"], "btrfsvol:/dev/sda/home");
    assert_eq!(
        ok(&["-a", s(&img), "cat", "/home/user/notes.txt"]),
        "in the home subvolume\n"
    );
    assert_eq!(
        ok(&[
            "-a",
            s(&img),
            "-m",
            "/dev/sda:/:subvol=root",
            "-m",
            "/dev/sda:/home:subvol=home",
            "cat",
            "/home/user/notes.txt",
        ]),
        "in the home subvolume\n"
    );
    assert_eq!(
        ok(&[
            "-a",
            s(&img),
            "-m",
            "/dev/sda:/:subvol=/root",
            "cat",
            "/etc/hostname"
        ]),
        "fedorabtrfs\n"
    );
    let e = fails(
        &[
            "--rw",
            "-a",
            s(&img),
            "chown",
            "1000",
            "1000",
            "/etc/hostname",
        ],
        b"",
    );
    assert!(
        e.contains("btrfs") && e.to_lowercase().contains("read-only"),
        "{e}"
    );
}

/// `chown`, `mkdir -p --uid/--gid`, `upload --uid/--gid` into `/home/user/.ssh`,
/// `touch` (stamped with the host's clock: `SetClock`), `utimens` and xattrs on ext4,
/// all in one shell session; checked with debugfs and e2fsck.
#[test]
fn ownership_times_and_xattrs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let img = ext4_with(
        d,
        "fs.img",
        "16M",
        &[("etc/hostname", "owners\n"), ("home/user/.profile", "x\n")],
    );
    let pubkey = d.join("id.pub");
    std::fs::write(&pubkey, "ssh-ed25519 AAAAC3Nza test@host\n").expect("pubkey");
    let t0 = now();
    let script = format!(
        "chown 1000 1000 /home/user\n\
         mkdir -p /home/user/.ssh --uid 1000 --gid 1000\n\
         upload {} /home/user/.ssh/authorized_keys --uid 1000 --gid 1001\n\
         chmod 0600 /home/user/.ssh/authorized_keys\n\
         touch /etc/stamp\n\
         utimens /etc/hostname 1000000000 1234567890\n\
         setxattr /etc/hostname user.comment hello-xattr\n\
         getxattr /etc/hostname user.comment\n",
        pubkey.display()
    );
    let out = ok_in(&["--rw", "-a", s(&img), "shell"], script.as_bytes());
    let t1 = now();
    assert!(out.contains("hello-xattr"), "{out:?}");
    e2fsck_clean(&img);
    let owner = |p: &str| -> (u32, u32) {
        let st = debugfs(&img, &format!("stat {p}"));
        let field = |name: &str| -> u32 {
            st.split(name)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} in {st}"))
        };
        (field("User:"), field("Group:"))
    };
    assert_eq!(owner("/home/user"), (1000, 1000));
    assert_eq!(owner("/home/user/.ssh"), (1000, 1000));
    assert_eq!(owner("/home/user/.ssh/authorized_keys"), (1000, 1001));
    assert_eq!(owner("/home"), (0, 0), "an existing parent keeps its owner");
    assert_eq!(owner("/etc/hostname"), (0, 0));
    assert_eq!(
        debugfs(&img, "cat /home/user/.ssh/authorized_keys"),
        "ssh-ed25519 AAAAC3Nza test@host\n"
    );
    let time = |p: &str, which: &str| -> i64 {
        let st = debugfs(&img, &format!("stat {p}"));
        let hex = st
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{which}: 0x")))
            .and_then(|r| r.split(':').next())
            .unwrap_or_else(|| panic!("{which} in {st}"));
        i64::from_str_radix(hex, 16).expect("hex time")
    };
    assert_eq!(time("/etc/hostname", "mtime"), 1234567890);
    assert_eq!(time("/etc/hostname", "atime"), 1000000000);
    let m = time("/etc/stamp", "mtime");
    assert!(
        t0 - 2 <= m && m <= t1 + 2,
        "touch stamped {m}, host clock {t0}..{t1}"
    );
    let ea = debugfs(&img, "ea_get /etc/hostname user.comment");
    assert!(ea.contains("hello-xattr"), "{ea}");
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A root whose fstab mounts `/dev/mapper/sda2_crypt` at `/home`, with `/etc/crypttab`
/// naming that mapping by the LUKS UUID (Debian's style): inspection with the key
/// resolves it to skiff's `/dev/mapper/luks-UUID`, and automatic mounting mounts it.
#[test]
fn crypttab_names_resolve_in_inspection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pass = passphrase("ct");
    let home = ext4_with(
        d,
        "home.fs",
        "12M",
        &[("user/notes.txt", "encrypted home\n")],
    );
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&home)
        .expect("open");
    f.set_len(16 << 20).expect("grow");
    drop(f);
    let luks_uuid = luks2_encrypt(&home, &pass, SMALL_ARGON);
    let root = ext4_with(
        d,
        "root.fs",
        "16M",
        &[
            ("etc/hostname", "ctguest\n"),
            (
                "etc/fstab",
                "/dev/vda1 / ext4 defaults 0 1\n/dev/mapper/sda2_crypt /home ext4 defaults 0 2\n",
            ),
            (
                "etc/crypttab",
                &format!(
                    "# target source key options\nsda2_crypt UUID={luks_uuid} none luks,discard\n"
                ),
            ),
            ("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n"),
            ("usr/bin/.keep", ""),
            // A Linux root to inspection: /etc, /bin and /etc/fstab (libguestfs' rule).
            ("bin/.keep", ""),
            ("home/.keep", ""),
        ],
    );
    let img = d.join("disk.img");
    sparse(&img, 40 << 20);
    sfdisk(
        &img,
        "label: dos\nstart=2048, size=32768, type=83\nstart=34816, size=32768, type=83\n",
    );
    dd_into(&root, &img, 2048);
    dd_into(&home, &img, 34816);
    let key = format!("/dev/sda2:key:{pass}");
    let j = json(&["-a", s(&img), "--key", &key, "inspect"]);
    let os = &j["operating_systems"];
    assert_eq!(os.as_array().map(Vec::len), Some(1), "{j}");
    assert_eq!(os[0]["root"], "/dev/sda1");
    let entry = os[0]["fstab"]
        .as_array()
        .and_then(|f| f.iter().find(|e| e["mountpoint"] == "/home"))
        .expect("/home in fstab")
        .clone();
    assert_eq!(entry["spec"], "/dev/mapper/sda2_crypt");
    assert_eq!(
        entry["device"],
        format!("/dev/mapper/luks-{luks_uuid}").as_str()
    );
    assert_eq!(
        ok(&["-a", s(&img), "--key", &key, "cat", "/home/user/notes.txt"]),
        "encrypted home\n"
    );
}

/// dm-crypt's aes-xts-plain64 with 512-byte sectors, by Python's `cryptography`
/// (OpenSSL): an implementation independent of skiff's.
const XTS_PY: &str = r#"
import sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
key = open(sys.argv[1], 'rb').read(); data = open(sys.argv[2], 'rb').read()
out = bytearray()
for i in range(len(data) // 512):
    e = Cipher(algorithms.AES(key), modes.XTS(i.to_bytes(16, 'little'))).encryptor()
    out += e.update(data[i * 512:(i + 1) * 512]) + e.finalize()
open(sys.argv[3], 'wb').write(out)
"#;

/// LUKS1 made by `cryptsetup luksFormat --type luks1` (PBKDF2), its payload an ext4
/// encrypted with the volume key cryptsetup dumps: read through `--key`.
#[test]
fn luks1_whole_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pass = passphrase("l1");
    let img = d.join("luks1.img");
    sparse(&img, 12 << 20);
    tool(
        "cryptsetup",
        &[
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks1",
            "--key-file=-",
            "--cipher",
            "aes-xts-plain64",
            "--key-size",
            "256",
            "--pbkdf-force-iterations",
            "1000",
            s(&img),
        ],
        Some(pass.as_bytes()),
    );
    let vk = d.join("vk");
    tool(
        "cryptsetup",
        &[
            "luksDump",
            "--batch-mode",
            "--dump-volume-key",
            "--volume-key-file",
            s(&vk),
            "--key-file=-",
            s(&img),
        ],
        Some(pass.as_bytes()),
    );
    let dump = tool("cryptsetup", &["luksDump", s(&img)], None);
    let offset: u64 = dump
        .lines()
        .find_map(|l| l.strip_prefix("Payload offset:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("payload offset in {dump}"));
    let payload_len = (12 << 20) - offset * 512;
    let fs = ext4_with(d, "fs.img", "4M", &[("etc/hostname", "luksone\n")]);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&fs)
        .expect("open");
    f.set_len(payload_len).expect("size");
    drop(f);
    let enc = d.join("enc");
    tool("python3", &["-c", XTS_PY, s(&vk), s(&fs), s(&enc)], None);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .expect("open");
    f.seek(SeekFrom::Start(offset * 512)).expect("seek");
    f.write_all(&std::fs::read(&enc).expect("read"))
        .expect("write payload");
    drop(f);
    let uuid = tool("cryptsetup", &["luksUUID", s(&img)], None)
        .trim()
        .to_string();
    let j = json(&[
        "-a",
        s(&img),
        "--key",
        &format!("all:key:{pass}"),
        "filesystems",
    ]);
    let fss = j["filesystems"].as_array().expect("filesystems");
    assert!(
        fss.iter().any(
            |f| f["device"] == format!("/dev/mapper/luks-{uuid}").as_str()
                && f["fstype"] == "ext4"
                && f["uuid"] == blkid(&fs, "UUID").as_str()
        ),
        "{fss:?}"
    );
    assert_eq!(
        ok(&[
            "-a",
            s(&img),
            "--key",
            &format!("/dev/sda:key:{pass}"),
            "cat",
            "/etc/hostname"
        ]),
        "luksone\n"
    );
}

/// On a terminal, a LUKS device without a `--key` is asked for like virt-cat does
/// (`Enter key or passphrase ("/dev/sda"): `), the passphrase not echoed. The terminal
/// is a pty made by `script` (util-linux); the passphrase is typed once the prompt shows.
#[test]
fn prompt_on_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pass = passphrase("tty");
    let fs = ext4_with(d, "fs.img", "8M", &[("etc/hostname", "typed\n")]);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&fs)
        .expect("open");
    f.set_len(12 << 20).expect("grow");
    drop(f);
    luks2_encrypt(&fs, &pass, SMALL_ARGON);
    let cmd = format!(
        "{} --timeout 120 -a {} cat /etc/hostname",
        guests::skiff_bin().display(),
        fs.display()
    );
    let mut c = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) is installed");
    let mut out = c.stdout.take().expect("piped");
    let mut seen = Vec::new();
    let prompt = b"Enter key or passphrase (\"/dev/sda\"): ";
    let mut buf = [0u8; 4096];
    while !contains(&seen, prompt) {
        let n = out.read(&mut buf).expect("read the pty");
        assert!(n > 0, "no prompt: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    // rpassword prints the prompt, then turns echo off: a reply typed within
    // microseconds of the prompt (no person does) can race it and be echoed.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut input = c.stdin.take().expect("piped");
    input
        .write_all(format!("{pass}\n").as_bytes())
        .expect("type the passphrase");
    out.read_to_end(&mut seen).expect("read the rest");
    let status = c.wait().expect("wait");
    drop(input);
    let text = String::from_utf8_lossy(&seen);
    assert!(status.success(), "{text}");
    assert!(text.contains("typed"), "{text}");
    assert!(!text.contains(&pass), "the passphrase was echoed: {text}");
}

/// Changes to NTFS (read-only in skiff) are refused with an error naming NTFS, and the
/// image is unchanged.
#[test]
fn ntfs_changes_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("ntfs.img");
    sparse(&img, 16 << 20);
    tool("mkntfs", &["-q", "-F", "-Q", "-L", "win", s(&img)], None);
    let before = std::fs::read(&img).expect("read");
    for cmd in [
        &["write", "/x.txt", "hi"][..],
        &["chown", "1000", "1000", "/"][..],
        &["touch", "/y"][..],
    ] {
        let mut a = vec!["--rw", "-a", s(&img)];
        a.extend_from_slice(cmd);
        let e = fails(&a, b"");
        assert!(
            e.to_lowercase().contains("ntfs") && e.to_lowercase().contains("read-only"),
            "{cmd:?}: {e}"
        );
    }
    assert!(
        std::fs::read(&img).expect("read") == before,
        "image unchanged"
    );
}

/// An encrypted qcow2 hot-added to a running appliance: its key goes to qemu over QMP
/// (`object-add` of a `secret`), the disk reads, and a wrong key is a typed error
/// naming the image.
#[test]
fn encrypted_qcow2_hot_added() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pass = passphrase("hot");
    let plain = ext4_with(d, "plain.img", "8M", &[("etc/hostname", "hot\n")]);
    let enc = d.join("hot.qcow2");
    qcow2_encrypt(&plain, &enc, &pass);
    let mut keys = KeySet::new();
    keys.add_spec(&format!("{}:key:{pass}", enc.display()))
        .expect("key");
    let mut sess = skiff_tests::builder()
        .hotplug(true)
        .keys(keys)
        .launch()
        .expect("launch");
    let dev = sess
        .add_drive(&enc, DriveOptions::readonly())
        .expect("hot-add the encrypted image");
    sess.mount(&dev, "/", MountOptions::readonly())
        .expect("mount");
    assert_eq!(sess.read_file("/etc/hostname").expect("read"), b"hot\n");
    let pid = sess.qemu_pid().expect("qemu pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    assert!(!contains(&cmdline, pass.as_bytes()));
    assert!(!sess.log().contains(&pass));
    sess.shutdown().expect("shutdown");

    let wrong = passphrase("hotwrong");
    let mut keys = KeySet::new();
    keys.add_spec(&format!("all:key:{wrong}")).expect("key");
    let mut sess = skiff_tests::builder()
        .hotplug(true)
        .keys(keys)
        .launch()
        .expect("launch");
    let e = sess
        .add_drive(&enc, DriveOptions::readonly())
        .expect_err("a wrong key");
    let msg = format!("{e} {e:?}");
    assert!(matches!(e, Error::WrongKey { .. }), "{msg}");
    assert!(msg.contains("hot.qcow2") && !msg.contains(&wrong), "{msg}");
    sess.shutdown().expect("shutdown");
}
