//! `skiff each` and `skiff df` over many images: 10 good guests, one corrupt and one
//! missing image; both bad ones reported, the rest succeed, exit status non-zero; text
//! and `--json` output checked (JSON parsed back); `each --pool` gives the same results.

use serde_json::Value;
use skiff_tests::guests;
use std::path::PathBuf;

/// 10 small ext4 guests (`/etc/hostname` = `guestN`), a corrupt image (random bytes)
/// and a missing one, in this order: g0..g9, corrupt, missing.
fn images(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = (0..10)
        .map(|i| guests::small_ext4(dir, &format!("g{i}.img"), &format!("guest{i}")))
        .collect();
    let bad = dir.join("corrupt.img");
    std::fs::write(&bad, skiff_tests::pattern(2 << 20, 99)).unwrap();
    v.push(bad);
    v.push(dir.join("missing.img"));
    v
}

fn strs(v: &[PathBuf]) -> Vec<&str> {
    v.iter().map(|p| p.to_str().unwrap()).collect()
}

#[test]
fn each_runs_every_image_and_reports_failures() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = images(dir.path());
    let names = strs(&imgs);

    let mut args = vec!["each", "-j", "2"];
    args.extend(&names);
    args.extend(["--", "cat", "/etc/hostname"]);
    let o = guests::skiff_cli(&args, b"");
    let out = String::from_utf8(o.stdout).unwrap();
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(!o.status.success(), "one image failed: non-zero exit");
    for (i, name) in names.iter().take(10).enumerate() {
        let line = format!("{name}: guest{i}");
        assert!(out.lines().any(|l| l == line), "{line:?} in {out}");
    }
    assert_eq!(out.lines().count(), 10, "{out}");
    assert!(
        err.lines()
            .any(|l| l.starts_with(&format!("{}: ", names[10]))),
        "corrupt image reported: {err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with(&format!("{}: ", names[11])) && l.contains("not found")),
        "missing image reported: {err}"
    );
    assert!(err.contains("10 ok, 2 failed"), "{err}");

    // --json: one document per image and line, each parsed back.
    let mut args = vec!["each", "--json"];
    args.extend(&names);
    args.extend(["--", "exists", "/etc/hostname"]);
    let o = guests::skiff_cli(&args, b"");
    assert!(!o.status.success());
    let out = String::from_utf8(o.stdout).unwrap();
    let docs: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 12, "{out}");
    for (i, n) in names.iter().enumerate() {
        let d = docs.iter().find(|d| d["image"] == *n).unwrap();
        assert_eq!(d["ok"], i < 10, "{d}");
        if i >= 10 {
            assert!(d["error"].as_str().unwrap().contains("skiff: "), "{d}");
        }
    }
}

#[test]
fn df_over_many_images() {
    let dir = tempfile::tempdir().unwrap();
    let mut imgs = images(dir.path());
    imgs.push(guests::debian_gpt(dir.path(), "debian.img", "d"));
    let names = strs(&imgs);

    let mut args = vec!["df", "--json", "-j", "2"];
    args.extend(&names);
    let o = guests::skiff_cli(&args, b"");
    assert!(!o.status.success(), "the missing image fails df");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let fss = v["filesystems"].as_array().unwrap();
    // 10 bare ext4 images + the GPT guest's ESP and root.
    assert_eq!(fss.len(), 12, "{v}");
    for f in fss {
        let (size, used, avail) = (
            f["size"].as_u64().unwrap(),
            f["used"].as_u64().unwrap(),
            f["available"].as_u64().unwrap(),
        );
        assert!(size > 0 && used > 0 && used + avail <= size, "{f}");
        assert!(f["use_percent"].as_u64().unwrap() <= 100);
    }
    let g0: Vec<&Value> = fss.iter().filter(|f| f["image"] == names[0]).collect();
    assert_eq!(g0.len(), 1);
    assert_eq!(g0[0]["device"], "/dev/sda");
    assert_eq!(g0[0]["fstype"], "ext4");
    // mkfs.ext4 made a 4 MiB filesystem.
    assert_eq!(g0[0]["size"].as_u64().unwrap(), 4 << 20);
    let deb: Vec<&str> = fss
        .iter()
        .filter(|f| f["image"] == names[12])
        .map(|f| f["device"].as_str().unwrap())
        .collect();
    assert_eq!(deb, ["/dev/sda1", "/dev/sda2"]);
    let errors = v["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["image"] == names[11] && e["error"].as_str().unwrap().contains("not found")),
        "{v}"
    );

    // --shared (one reused read-only appliance per job, images hot-added in turn): the
    // same filesystems, sizes and device names, the same per-image errors.
    let mut args = vec!["df", "--json", "--shared", "-j", "2"];
    args.extend(&names);
    let o = guests::skiff_cli(&args, b"");
    assert!(!o.status.success(), "the missing image fails df --shared");
    let shared: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(shared["filesystems"], v["filesystems"], "{shared}");
    assert_eq!(
        shared["errors"].as_array().unwrap().len(),
        errors.len(),
        "{shared}"
    );

    // Text, human sizes: one row per filesystem plus the header.
    let mut args = vec!["df", "-h"];
    args.extend(&names[..3]);
    let o = guests::skiff_cli(&args, b"");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("Filesystem"), "{out}");
    assert!(
        lines[1].starts_with(&format!("{}:/dev/sda ", names[0])),
        "{out}"
    );
    assert!(lines[1].contains("4.0M"), "{out}");
}

#[test]
fn each_pool_gives_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = images(dir.path());
    let names = strs(&imgs);
    let run = |pool: bool, cmd: &[&str]| {
        let mut args = vec!["each", "--json", "-j", "2"];
        if pool {
            args.push("--pool");
        }
        args.extend(&names);
        args.push("--");
        args.extend(cmd);
        let o = guests::skiff_cli(&args, b"");
        assert!(!o.status.success(), "two images fail");
        let out = String::from_utf8(o.stdout).unwrap();
        let mut docs: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        docs.sort_by_key(|d| d["image"].as_str().unwrap().to_string());
        docs
    };
    for cmd in [&["cat", "/etc/hostname"][..], &["ls", "/etc"], &["inspect"]] {
        let plain = run(false, cmd);
        let pooled = run(true, cmd);
        assert_eq!(pooled.len(), 12, "{pooled:?}");
        for (p, q) in plain.iter().zip(&pooled) {
            assert_eq!(p["image"], q["image"]);
            assert_eq!(p["ok"], q["ok"], "{cmd:?}: {p} vs {q}");
            assert_eq!(p["output"], q["output"], "{cmd:?}: {p} vs {q}");
        }
        // The corrupt image has no filesystem: inspect finds no OS there, the rest fail.
        let ok: Vec<&Value> = pooled.iter().filter(|d| d["ok"] == true).collect();
        let want = if cmd[0] == "inspect" { 11 } else { 10 };
        assert_eq!(ok.len(), want, "{cmd:?}: {pooled:?}");
        if cmd[0] == "cat" {
            for (i, n) in names.iter().take(10).enumerate() {
                let d = pooled.iter().find(|d| d["image"] == *n).unwrap();
                assert_eq!(d["output"], format!("guest{i}\n"), "{d}");
            }
        }
        let missing = pooled.iter().find(|d| d["image"] == names[11]).unwrap();
        let plain_missing = plain.iter().find(|d| d["image"] == names[11]).unwrap();
        assert_eq!(missing["error"], plain_missing["error"]);
        assert!(
            missing["error"].as_str().unwrap().contains("not found"),
            "{missing}"
        );
    }
}

#[test]
fn inherit_appliance_rejects_bad_fds() {
    let dir = tempfile::tempdir().unwrap();
    let img = guests::small_ext4(dir.path(), "g.img", "g");
    let img = img.to_str().unwrap();
    for (fd, why) in [("2", "standard stream"), ("987", "not open")] {
        let arg = format!("--inherit-appliance={fd}");
        let o = guests::skiff_cli(&[&arg, "cat", "-a", img, "/etc/hostname"], b"");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(err.contains(why), "{fd}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
