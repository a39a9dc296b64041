//! `skiff inspect --xml` against virt-inspector, guest by guest: the guests are built
//! with the real tools by `tests/oracles/guests.py` (debootstrapped Debian on GPT with an
//! ESP and swap; RHEL-style XFS on LVM with an rpm sqlite database; Fedora-style btrfs
//! subvolumes; Arch (pacman); Alpine (apk, a whole-disk filesystem); a Container Linux
//! root whose `/etc/os-release` points into its separate `/usr` partition; Windows 10 on
//! MBR and Windows Server 2022 on GPT with hivexregedit-made hives; Ubuntu with a dpkg
//! status holding a `Source:` and a removed package; Rocky on ext4; a data disk with no
//! OS), cached under the
//! target directory, and what virt-inspector said about each was recorded once in
//! `tests/oracles/NAME.xml` (`tests/oracles/record.sh`). The XML must be equal, byte for
//! byte, after the differences the README lists (each undone by [`documented`]).
//!
//! The Debian guest is the one input from outside (the Debian archive): when its
//! package list no longer is the one recorded (a point release), its applications,
//! product name and minor version are compared with `dpkg-query` on the guest tree
//! instead, and the rest with the recording.

use skiff_tests::guests::skiff_cli;
use std::path::{Path, PathBuf};
use std::process::Command;

fn oracles() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oracles")
}

fn cache() -> PathBuf {
    let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oracle-guests");
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn guests_py(args: &[&str]) -> Result<String, String> {
    let out = Command::new("python3")
        .arg(oracles().join("guests.py"))
        .args(args)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "guests.py {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8(out.stdout).unwrap().trim().to_string())
}

/// The guest's image, built (or rebuilt when the recipes changed) in the cache; its
/// fingerprint (`RECIPE PACKAGES`).
fn guest(name: &str) -> Result<(PathBuf, String), String> {
    let dir = cache();
    let d = dir.to_str().unwrap();
    let img = dir.join(format!("{name}.img"));
    let built = dir.join(format!("{name}.built"));
    if img.exists()
        && let Ok(b) = std::fs::read_to_string(&built)
        && let Ok(now) = guests_py(&["fingerprint", name, d])
        && now.split(' ').next() == b.split(' ').next()
    {
        return Ok((img, b.trim().to_string()));
    }
    let _ = std::fs::remove_file(&built);
    guests_py(&["build", name, d])?;
    let fp = guests_py(&["fingerprint", name, d])?;
    std::fs::write(&built, &fp).unwrap();
    Ok((img, fp))
}

/// The recorded XML with the README's documented differences applied.
fn documented(xml: &str) -> String {
    // skiff drops carriage returns (control characters) from guest strings; libxml2
    // writes them as `&#13;`.
    xml.replace("&#13;", "")
}

/// `xml` without the elements that follow the Debian archive's point releases.
fn without_point_release(xml: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for l in xml.lines() {
        let t = l.trim();
        if t == "<applications>" {
            skipping = true;
        }
        let drop = skipping
            || t.starts_with("<product_name>")
            || t.starts_with("<minor_version>")
            || t == "<applications/>";
        if t == "</applications>" {
            skipping = false;
        }
        if !drop {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// `(name, version, arch)` of the installed packages per `dpkg-query` on the tree.
fn dpkg_query(tree: &Path) -> Vec<(String, String, String)> {
    let out = Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            tree.join("var/lib/dpkg").display()
        ))
        .args([
            "-W",
            "-f",
            "${db:Status-Status} ${Package} ${Version} ${Architecture}\n",
        ])
        .output()
        .expect("dpkg-query");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() == 4 && f[0] == "installed")
                .then(|| (f[1].to_string(), f[2].to_string(), f[3].to_string()))
        })
        .collect()
}

/// Applications in skiff's JSON as `(name, [epoch:]version[-release], arch)`.
fn json_apps(img: &Path) -> Vec<(String, String, String)> {
    let o = skiff_cli(&["inspect", "--json", "-a", img.to_str().unwrap()], b"");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut out: Vec<_> = v["operating_systems"][0]["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let mut ver = String::new();
            if a["epoch"].as_u64().unwrap() != 0 {
                ver.push_str(&format!("{}:", a["epoch"]));
            }
            ver.push_str(a["version"].as_str().unwrap());
            let rel = a["release"].as_str().unwrap();
            if !rel.is_empty() {
                ver.push('-');
                ver.push_str(rel);
            }
            (
                a["name"].as_str().unwrap().to_string(),
                ver,
                a["arch"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A line diff for the failure message.
fn diff(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let mut out = String::new();
    for i in 0..w.len().max(g.len()) {
        let (a, b) = (w.get(i).copied(), g.get(i).copied());
        if a != b {
            out.push_str(&format!(
                "line {}:\n  virt-inspector: {}\n  skiff:          {}\n",
                i + 1,
                a.unwrap_or("<none>"),
                b.unwrap_or("<none>")
            ));
            if out.len() > 4000 {
                break;
            }
        }
    }
    out
}

fn check(name: &str) {
    let (img, fp) = match guest(name) {
        Ok(x) => x,
        Err(e) if name == "debian" && std::env::var_os("SKIFF_TEST_NEED_DEBIAN").is_none() => {
            // debootstrap needs the network the first time; say so loudly, do not fail.
            eprintln!("NOTE: the debian oracle guest could not be built (no network?): {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let recorded = std::fs::read_to_string(oracles().join(format!("{name}.xml")))
        .unwrap_or_else(|e| panic!("tests/oracles/{name}.xml: {e} (tests/oracles/record.sh)"));
    let recorded_fp =
        std::fs::read_to_string(oracles().join(format!("{name}.fingerprint"))).unwrap_or_default();
    let o = skiff_cli(&["inspect", "--xml", "-a", img.to_str().unwrap()], b"");
    assert!(
        o.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got = String::from_utf8(o.stdout).unwrap();
    let mut want = documented(&recorded);
    let mut got_cmp = got.clone();
    let packages = |f: &str| f.split_whitespace().nth(1).unwrap_or("-").to_string();
    if name == "debian" && packages(&fp) != packages(&recorded_fp) {
        eprintln!(
            "NOTE: the Debian archive moved on since debian.xml was recorded (package list \
             {} now, {} then): applications compared with dpkg-query; re-record with \
             tests/oracles/record.sh debian",
            packages(&fp),
            packages(&recorded_fp)
        );
        want = without_point_release(&want);
        got_cmp = without_point_release(&got_cmp);
        let tree = cache().join("debian-tree");
        assert_eq!(json_apps(&img), {
            let mut d = dpkg_query(&tree);
            d.sort();
            d
        });
    }
    assert!(
        want == got_cmp,
        "{name}: skiff inspect --xml differs from virt-inspector (tests/oracles/{name}.xml):\n{}",
        diff(&want, &got_cmp)
    );
}

#[test]
fn alpine_apk_whole_disk() {
    check("alpine");
}

#[test]
fn arch_pacman() {
    check("arch");
}

#[test]
fn coreos_usr_on_its_own_partition() {
    check("coreos");
}

#[test]
fn debian_debootstrap_gpt_esp_swap() {
    check("debian");
}

#[test]
fn fedora_btrfs_subvolumes() {
    check("fedora");
}

#[test]
fn rhel_xfs_on_lvm_rpm_sqlite() {
    check("rhel");
}

#[test]
fn windows10_mbr() {
    check("windows");
}

#[test]
fn windows_server_2022_gpt() {
    check("win2k22");
}

// ---- corrupt package databases and hives: facts lost one by one, never a crash ----

/// Offsets of `magic` in the file at `p` (scanned in 1 MiB chunks).
fn find_all(p: &Path, magic: &[u8]) -> Vec<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(p).unwrap();
    let (mut out, mut buf, mut base) = (Vec::new(), vec![0u8; 1 << 20], 0u64);
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return out;
        }
        let mut hay = std::mem::take(&mut carry);
        let start = base - hay.len() as u64;
        hay.extend_from_slice(&buf[..n]);
        for i in 0..hay.len().saturating_sub(magic.len() - 1) {
            if hay[i..].starts_with(magic) {
                out.push(start + i as u64);
            }
        }
        carry = hay[hay.len().saturating_sub(magic.len() - 1)..].to_vec();
        base += n as u64;
    }
}

fn overwrite(p: &Path, at: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(bytes).unwrap();
}

fn read_at(p: &Path, at: u64, len: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(p).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    let mut b = vec![0u8; len];
    f.read_exact(&mut b).unwrap();
    b
}

/// `skiff inspect --json` of `img`: the first OS.
fn json_os(img: &Path) -> serde_json::Value {
    let o = skiff_cli(&["inspect", "--json", "-a", img.to_str().unwrap()], b"");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["operating_systems"][0].clone()
}

/// A sparse copy of the oracle guest `name` in a temporary directory.
fn copy_of(name: &str, dir: &Path) -> PathBuf {
    let (img, _) = guest(name).unwrap();
    let out = dir.join(format!("{name}.img"));
    let st = Command::new("cp")
        .args(["--sparse=always"])
        .arg(&img)
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    out
}

#[test]
fn corrupt_rpm_database_loses_only_the_applications() {
    let dir = tempfile::tempdir().unwrap();
    let img = copy_of("rhel", dir.path());
    let clean = json_os(&img);
    let at = find_all(&img, b"SQLite format 3\0");
    assert_eq!(at.len(), 1, "one rpmdb.sqlite in the rhel guest");
    let head = read_at(&img, at[0], 100);
    let page = u64::from(u16::from_be_bytes([head[16], head[17]]));
    let pages = u64::from(u32::from_be_bytes([head[28], head[29], head[30], head[31]]));
    assert!(page >= 512 && pages > 2, "page size {page}, {pages} pages");
    // Every page but the first (the schema) becomes garbage.
    let garbage: Vec<u8> = (0..page * (pages - 1))
        .map(|i| (i * 131 % 251) as u8)
        .collect();
    overwrite(&img, at[0] + page, &garbage);
    let bad = json_os(&img);
    for k in [
        "root",
        "type",
        "distro",
        "product_name",
        "version",
        "arch",
        "hostname",
        "package_format",
        "package_management",
        "osinfo",
        "mountpoints",
        "filesystems",
    ] {
        assert_eq!(bad[k], clean[k], "{k}");
    }
    assert_eq!(clean["applications"].as_array().unwrap().len(), 5);
    let dbs = bad["package_databases"].as_array().unwrap();
    let apps = bad["applications"].as_array().map_or(0, Vec::len);
    assert!(
        apps < 5
            && dbs
                .iter()
                .any(|d| !d["error"].is_null() || d["skipped"] != 0),
        "a corrupt rpmdb.sqlite must be reported: {} applications, databases {dbs:?}",
        apps
    );
}

#[test]
fn corrupt_software_hive_keeps_the_system_hive_facts() {
    let dir = tempfile::tempdir().unwrap();
    let img = copy_of("windows", dir.path());
    let clean = json_os(&img);
    // The SOFTWARE hive: the regf whose first 64 KiB name the Uninstall key.
    let software: Vec<u64> = find_all(&img, b"regf")
        .into_iter()
        .filter(|&o| {
            let b = read_at(&img, o, 64 * 1024);
            b.windows(9).any(|w| w == b"Uninstall")
        })
        .collect();
    assert!(!software.is_empty(), "the SOFTWARE hive is in the image");
    for o in software {
        // Garbage over the hive's cells (keys, values, Uninstall), its header and the
        // start of its first hbin kept: the hive's bins span the size at 0x28.
        let h = read_at(&img, o, 0x30);
        let size = u64::from(u32::from_le_bytes([h[0x28], h[0x29], h[0x2a], h[0x2b]]));
        assert!((0x1000..=16 << 20).contains(&size), "hive bins size {size}");
        let garbage: Vec<u8> = (0..size - 0x100).map(|i| (i * 197 % 253) as u8).collect();
        overwrite(&img, o + 0x1000 + 0x100, &garbage);
    }
    let bad = json_os(&img);
    for k in [
        "root",
        "type",
        "distro",
        "hostname",
        "windows_systemroot",
        "windows_current_control_set",
        "drive_mappings",
        "mountpoints",
        "filesystems",
    ] {
        assert_eq!(bad[k], clean[k], "{k}");
    }
    let clean_apps = clean["applications"].as_array().unwrap().len();
    let apps = bad["applications"].as_array().map_or(0, Vec::len);
    let said = !bad["warnings"].as_array().unwrap().is_empty()
        || bad["package_databases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| !d["error"].is_null() || d["skipped"] != 0);
    assert!(
        apps < clean_apps && said,
        "a corrupt SOFTWARE hive must be reported: {apps} of {clean_apps} applications, {bad}"
    );
}

#[test]
fn ubuntu_lsb_and_os_release_dpkg_source_and_removed_package() {
    check("ubuntu");
}

#[test]
fn rocky_rpm_ext4() {
    check("rocky");
}

#[test]
fn data_disk_without_an_os() {
    check("noos");
}
