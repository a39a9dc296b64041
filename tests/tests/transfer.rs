//! Whole trees in and out through the `skiff` CLI (`copy-out`, `copy-in`, `tar-out`,
//! `tar-in`), checked against the real tools: images made by `mkfs.ext4 -d` from a host
//! tree with odd names, modes, owners, times, symlinks and hard links; archives read
//! by GNU tar (`tar -tvf`, extracted and compared with `diff -r` and `find -printf`);
//! trees copied in checked with `e2fsck -fn` and `debugfs rdump` (an independent
//! reader); `checksums-out` against `sha256sum`; hostile archives (`../x`, `/abs`,
//! through a symlink) refused entry by entry with nothing written outside the target;
//! a full filesystem during `copy-in`.

use skiff_tests::guests::skiff_cli;
use skiff_tests::{assert_e2fsck_clean, debugfs, mkfs_ext4, pattern, run};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Output};

fn ok(args: &[&str]) -> String {
    let o = skiff_cli(args, b"");
    assert!(
        o.status.success(),
        "skiff {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(args: &[&str]) -> Output {
    let o = skiff_cli(args, b"");
    assert!(!o.status.success(), "skiff {args:?} should fail");
    o
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn sh(cmd: &str) -> String {
    run(Command::new("sh").arg("-c").arg(cmd))
}

/// A host tree with odd names, modes, owners, times, symlinks (one dangling, one a
/// loop, one to `/`), a hard link pair, an empty file, a file larger than one chunk,
/// deep and long names.
fn odd_tree(root: &Path) {
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
    };
    w("etc/hostname", b"tree-guest\n");
    w("etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n");
    w("data/with space.txt", b"spaces\n");
    w("data/ünïcødé ✓.txt", "unicode\n".as_bytes());
    w("data/-dash", b"dash\n");
    w("data/'quote\"", b"quotes\n");
    w("data/empty", b"");
    w("data/big.bin", &pattern(3 * (1 << 20) + 12345, 7));
    w("data/medium.bin", &pattern(300_000, 8));
    let long = "n".repeat(200);
    w(&format!("deep/a/b/c/d/e/f/g/{long}"), b"long name\n");
    w("perm/setuid", b"#!/bin/sh\n");
    w("perm/private", b"secret\n");
    w("perm/ro", b"read only\n");
    w("links/first", b"hard linked\n");
    std::fs::hard_link(root.join("links/first"), root.join("links/second")).unwrap();
    symlink("../etc/hostname", root.join("links/rel")).unwrap();
    symlink("/etc/passwd", root.join("links/abs")).unwrap();
    symlink("nowhere/at/all", root.join("links/dangling")).unwrap();
    symlink("loop-b", root.join("links/loop-a")).unwrap();
    symlink("loop-a", root.join("links/loop-b")).unwrap();
    symlink("/", root.join("links/root")).unwrap();
    std::fs::create_dir_all(root.join("emptydir")).unwrap();
    let chmod = |rel: &str, m: u32| {
        std::fs::set_permissions(root.join(rel), std::fs::Permissions::from_mode(m)).unwrap()
    };
    chmod("perm/setuid", 0o4755);
    chmod("perm/private", 0o600);
    chmod("perm/ro", 0o444);
    chmod("emptydir", 0o1777);
    chmod("deep/a", 0o750);
    let r = s(root);
    sh(&format!(
        "cd '{r}' && chown 1234:5678 perm/private && chown -h 42:43 links/rel && \
         chown -R 1000:1000 deep && \
         find . -mindepth 1 -exec touch -h -d '2021-03-04 05:06:07 UTC' {{}} + && \
         touch -d '1999-12-31 23:59:59 UTC' data/big.bin && \
         touch -h -d '2010-01-01 00:00:00 UTC' links/dangling"
    ));
}

/// `find DIR -printf` of everything below DIR, sorted: type, mode, owner, size for
/// regular files, mtime (seconds), symlink target, path.
fn listing(dir: &Path) -> Vec<String> {
    let out = sh(&format!(
        "cd '{}' && find . -mindepth 1 ! -path './lost+found*' -printf '%y %m %U:%G %s %TY-%Tm-%Td_%TH:%TM:%TS %l %p\\n'",
        s(dir)
    ));
    let mut v: Vec<String> = out
        .lines()
        .map(|l| {
            // Sizes only for regular files (directories' sizes differ between
            // filesystems), times to the second.
            let f: Vec<&str> = l.splitn(6, ' ').collect();
            let size = if f[0] == "f" { f[3] } else { "-" };
            let time = f[4].split('.').next().unwrap();
            format!("{} {} {} {} {} {}", f[0], f[1], f[2], size, time, f[5])
        })
        .collect();
    v.sort();
    v
}

/// [`listing`] of a tree written by `debugfs rdump`, which does not restore a symlink's
/// owner and times nor a directory's sticky and set-id bits: those are masked on both
/// sides (and checked in the image with `debugfs stat` instead).
fn rdump_listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = listing(dir)
        .into_iter()
        .map(|l| {
            let f: Vec<&str> = l.splitn(6, ' ').collect();
            match f[0] {
                "l" => format!("l {} - - - {}", f[1], f[5]),
                t => {
                    let m = u32::from_str_radix(f[1], 8).unwrap() & 0o777;
                    format!("{t} {m:o} {} {} {} {}", f[2], f[3], f[4], f[5])
                }
            }
        })
        .collect();
    v.sort();
    v
}

/// `debugfs stat PATH`: ("MODE User: U Group: G", mtime as debugfs shows it in hex).
fn debugfs_stat(img: &Path, path: &str) -> (String, String) {
    let st = debugfs(img, &format!("stat \"{path}\""));
    let mode = st
        .split("Mode:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("")
        .to_string();
    let user = st
        .lines()
        .find(|l| l.starts_with("User:"))
        .unwrap_or("")
        .split_whitespace()
        .take(4)
        .collect::<Vec<_>>()
        .join(" ");
    let mtime = st
        .lines()
        .find(|l| l.trim_start().starts_with("mtime:"))
        .unwrap_or("")
        .split("--")
        .next()
        .unwrap_or("")
        .trim()
        .trim_start_matches("mtime:")
        .trim()
        .to_string();
    (format!("{mode} {user}"), mtime)
}

/// The attributes rdump cannot show, read in the image itself.
fn check_special_attrs(img: &Path, top: &str) {
    assert_eq!(
        debugfs_stat(img, &format!("{top}/perm/setuid")).0,
        "04755 User: 0 Group: 0"
    );
    assert_eq!(
        debugfs_stat(img, &format!("{top}/emptydir")).0,
        "01777 User: 0 Group: 0"
    );
    let (m, t) = debugfs_stat(img, &format!("{top}/links/rel"));
    assert_eq!(m, "0777 User: 42 Group: 43");
    assert_eq!(t, "0x60406abf:00000000");
    let (_, t) = debugfs_stat(img, &format!("{top}/links/dangling"));
    assert_eq!(t, "0x4b3d3b00:00000000");
}

/// Two listings must be equal; the lines only in one of them are shown.
fn assert_same(a: &[String], b: &[String]) {
    let only_a: Vec<&String> = a.iter().filter(|l| !b.contains(l)).collect();
    let only_b: Vec<&String> = b.iter().filter(|l| !a.contains(l)).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "only in the source: {only_a:#?}\nonly in the copy: {only_b:#?}"
    );
}

fn diff_r(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .args(["-r", "--no-dereference", "-x", "lost+found", s(a), s(b)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "diff -r {a:?} {b:?}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// An ext4 image holding `odd_tree`.
fn odd_image(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = dir.join("src");
    odd_tree(&src);
    let img = dir.join("odd.img");
    mkfs_ext4(&img, "64M", &src, &[]);
    (src, img)
}

#[test]
fn tar_out_is_read_by_gnu_tar() {
    let t = tempfile::tempdir().unwrap();
    let (src, img) = odd_image(t.path());
    let d = s(&img);
    for (flags, name, z) in [
        (&[][..], "out.tar", ""),
        (&["-z"][..], "out.tgz", "-z"),
        (&["--compress", "zstd"][..], "out.tar.zst", "--zstd"),
    ] {
        let tarball = t.path().join(name);
        let mut args = vec!["tar-out", "-a", d, "-m", "/dev/sda"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["/", s(&tarball)]);
        ok(&args);
        // GNU tar lists it: every path of the source, with numeric owners and modes.
        let tv = sh(&format!("tar --numeric-owner {z} -tvf '{}'", s(&tarball)));
        assert!(tv.contains("data/with space.txt"), "{tv}");
        assert!(tv.contains("-rwsr-xr-x 0/0"), "setuid kept: {tv}");
        assert!(tv.contains("-rw------- 1234/5678"), "owners kept: {tv}");
        assert!(tv.contains("links/rel -> ../etc/hostname"), "{tv}");
        assert!(tv.contains("links/loop-a -> loop-b"), "{tv}");
        assert!(
            tv.contains("links/second link to links/first")
                || tv.contains("links/first link to links/second"),
            "hard link as a link record: {tv}"
        );
        assert!(tv.contains("1999-12-31 23:59 data/big.bin"), "{tv}");
        // Extracted by GNU tar: the same tree, byte for byte and attribute for attribute.
        let x = t.path().join(format!("x-{name}"));
        std::fs::create_dir(&x).unwrap();
        sh(&format!(
            "tar --numeric-owner -p {z} -xf '{}' -C '{}'",
            s(&tarball),
            s(&x)
        ));
        diff_r(&src, &x);
        assert_same(&listing(&src), &listing(&x));
        // tar-out to stdout gives the same archive.
        if flags.is_empty() {
            let o = skiff_cli(&["tar-out", "-a", d, "-m", "/dev/sda", "/data", "-"], b"");
            assert!(o.status.success());
            let f = t.path().join("stdout.tar");
            std::fs::write(&f, &o.stdout).unwrap();
            let names = sh(&format!("tar -tf '{}' | sort", s(&f)));
            let mut want: Vec<String> = std::fs::read_dir(src.join("data"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_str().unwrap().to_string())
                .collect();
            want.push(".".into());
            want.sort();
            let got: Vec<&str> = names.lines().collect();
            assert_eq!(got, want);
        }
    }
}

#[test]
fn copy_out_keeps_the_tree_and_checksums_match() {
    let t = tempfile::tempdir().unwrap();
    let (src, img) = odd_image(t.path());
    let d = s(&img);
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    ok(&[
        "copy-out",
        "-a",
        d,
        "-m",
        "/dev/sda",
        "/data",
        "/links",
        "/perm",
        "/deep",
        "/etc",
        "/emptydir",
        s(&out),
    ]);
    // Everything but lost+found: compare the source without it.
    diff_r(&src, &out);
    assert_same(&listing(&src), &listing(&out));
    // Hard links stay hard links.
    let ino = |p: &str| std::fs::symlink_metadata(out.join(p)).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(ino("links/first").ino(), ino("links/second").ino());
    // checksums-out agrees with sha256sum of the copied files.
    let sums = ok(&[
        "checksums-out",
        "-a",
        d,
        "-m",
        "/dev/sda",
        "sha256",
        "/data",
    ]);
    let want = sh(&format!(
        "cd '{}' && find . -type f -print0 | sort -z | xargs -0 sha256sum",
        s(&out.join("data"))
    ));
    let norm = |t: &str| {
        let mut v: Vec<String> = t.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(norm(&sums), norm(&want));
    // The whole root: contents straight into the directory.
    let all = t.path().join("all");
    std::fs::create_dir(&all).unwrap();
    ok(&["copy-out", "-a", d, "-m", "/dev/sda", "/", s(&all)]);
    diff_r(&src, &all);
    // A single file and a symlink (copied as a symlink, never followed).
    let one = t.path().join("one");
    std::fs::create_dir(&one).unwrap();
    ok(&[
        "copy-out",
        "-a",
        d,
        "-m",
        "/dev/sda",
        "/etc/passwd",
        "/links/loop-a",
        "/links/root",
        s(&one),
    ]);
    assert_eq!(
        std::fs::read(one.join("passwd")).unwrap(),
        std::fs::read(src.join("etc/passwd")).unwrap()
    );
    assert_eq!(
        std::fs::read_link(one.join("loop-a")).unwrap(),
        Path::new("loop-b")
    );
    assert_eq!(
        std::fs::read_link(one.join("root")).unwrap(),
        Path::new("/")
    );
    // A file as HOSTDIR: a clear error.
    let o = fails(&[
        "copy-out",
        "-a",
        d,
        "-m",
        "/dev/sda",
        "/etc",
        s(&one.join("passwd")),
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a directory"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn copy_in_round_trip_checked_by_debugfs_and_e2fsck() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    odd_tree(&src);
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let img = t.path().join("in.img");
    mkfs_ext4(&img, "64M", &empty, &[]);
    let d = s(&img);
    let o = skiff_cli(
        &[
            "--rw",
            "copy-in",
            "-a",
            d,
            "-m",
            "/dev/sda",
            &format!("{}/data", s(&src)),
            &format!("{}/links", s(&src)),
            &format!("{}/perm", s(&src)),
            &format!("{}/deep", s(&src)),
            &format!("{}/etc", s(&src)),
            &format!("{}/emptydir", s(&src)),
            "/",
        ],
        b"",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("hard link") && err.contains("written as a copy"),
        "the hard link is reported: {err}"
    );
    assert_e2fsck_clean(&img);
    // debugfs (e2fsprogs) reads what skiff wrote: same bytes, modes, owners, times.
    let dump = t.path().join("dump");
    std::fs::create_dir(&dump).unwrap();
    for top in ["data", "links", "perm", "deep", "etc", "emptydir"] {
        debugfs(&img, &format!("rdump /{top} {}", s(&dump)));
    }
    diff_r(&src, &dump);
    assert_same(&rdump_listing(&src), &rdump_listing(&dump));
    check_special_attrs(&img, "");
    let st = debugfs(&img, "stat /perm/private");
    assert!(
        st.contains("User:  1234") && st.contains("Group:  5678"),
        "{st}"
    );
    // copy-in again over the existing tree: files replaced, still clean.
    ok(&[
        "--rw",
        "copy-in",
        "-a",
        d,
        "-m",
        "/dev/sda",
        &format!("{}/data", s(&src)),
        "/",
    ]);
    assert_e2fsck_clean(&img);
    let back = t.path().join("back");
    std::fs::create_dir(&back).unwrap();
    ok(&["copy-out", "-a", d, "-m", "/dev/sda", "/data", s(&back)]);
    diff_r(&src.join("data"), &back.join("data"));
    // Without --rw: refused before launch.
    fails(&["copy-in", "-a", d, "-m", "/dev/sda", s(&src), "/"]);
}

#[test]
fn tar_in_extracts_gnu_tar_and_refuses_escapes() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    odd_tree(&src);
    // The guest: /etc/passwd and a /target directory.
    let groot = t.path().join("groot");
    std::fs::create_dir_all(groot.join("etc")).unwrap();
    std::fs::create_dir_all(groot.join("target")).unwrap();
    std::fs::write(groot.join("etc/passwd"), b"original\n").unwrap();
    let img = t.path().join("tin.img");
    mkfs_ext4(&img, "64M", &groot, &[]);
    let d = s(&img);
    // A GNU tar archive of the odd tree (gzip: recognised by its magic).
    let tgz = t.path().join("src.tgz");
    sh(&format!(
        "tar --numeric-owner -C '{}' -czf '{}' .",
        s(&src),
        s(&tgz)
    ));
    ok(&[
        "--rw",
        "tar-in",
        "-a",
        d,
        "-m",
        "/dev/sda",
        s(&tgz),
        "/target",
    ]);
    assert_e2fsck_clean(&img);
    let dump = t.path().join("dump");
    std::fs::create_dir(&dump).unwrap();
    debugfs(&img, &format!("rdump /target {}", s(&dump)));
    let got = dump.join("target");
    diff_r(&src, &got);
    assert_same(&rdump_listing(&src), &rdump_listing(&got));
    check_special_attrs(&img, "/target");

    // A hostile archive, made with GNU tar -P: `../evil`, an absolute path, and a file
    // through a symlink that points out of the target.
    let w = t.path().join("w");
    std::fs::create_dir_all(w.join("work/real")).unwrap();
    std::fs::write(w.join("evil"), b"evil\n").unwrap();
    std::fs::write(w.join("work/good.txt"), b"good\n").unwrap();
    std::fs::write(w.join("work/real/passwd"), b"pwned\n").unwrap();
    symlink("/etc", w.join("work/lnk")).unwrap();
    let bad = t.path().join("bad.tar");
    let ws = s(&w);
    sh(&format!(
        "cd '{ws}/work' && tar -P -cf '{b}' good.txt ../evil '{ws}/evil' lnk && \
         tar -P -rf '{b}' --transform 's,^real/,lnk/,' real/passwd",
        b = s(&bad)
    ));
    let listed = sh(&format!("tar -P -tf '{}'", s(&bad)));
    assert!(
        listed.contains("../evil") && listed.contains("lnk/passwd"),
        "{listed}"
    );
    let o = fails(&[
        "--rw",
        "tar-in",
        "-a",
        d,
        "-m",
        "/dev/sda",
        s(&bad),
        "/target",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("../evil: refused"), "{err}");
    assert!(err.contains("/evil: refused: absolute path"), "{err}");
    assert!(err.contains("lnk/passwd: refused"), "{err}");
    assert!(err.contains("3 archive entries refused"), "{err}");
    assert_e2fsck_clean(&img);
    // The good entry is in; nothing outside /target changed.
    assert_eq!(
        skiff_tests::debugfs_cat(&img, "/target/good.txt"),
        b"good\n".to_vec()
    );
    assert_eq!(
        skiff_tests::debugfs_cat(&img, "/etc/passwd"),
        b"original\n".to_vec()
    );
    let root = debugfs(&img, "ls -l /");
    assert!(!root.contains("evil"), "{root}");
    let etc = debugfs(&img, "ls -l /etc");
    assert_eq!(etc.matches("passwd").count(), 1, "{etc}");
}

#[test]
fn copy_in_to_a_full_filesystem_is_a_clear_no_space_error() {
    let t = tempfile::tempdir().unwrap();
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let img = t.path().join("small.img");
    mkfs_ext4(&img, "4M", &empty, &[]);
    let src = t.path().join("fill");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a-small"), b"fits\n").unwrap();
    std::fs::write(src.join("b-huge"), pattern(8 << 20, 3)).unwrap();
    let o = fails(&[
        "--rw",
        "copy-in",
        "-a",
        s(&img),
        "-m",
        "/dev/sda",
        s(&src),
        "/",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no space"), "{err}");
    assert!(err.contains("/fill/b-huge"), "names the file: {err}");
    assert_e2fsck_clean(&img);
    // What was copied before is complete; the half-written file is gone.
    assert_eq!(
        skiff_tests::debugfs_cat(&img, "/fill/a-small"),
        b"fits\n".to_vec()
    );
    let ls = debugfs(&img, "ls -l /fill");
    assert!(!ls.contains("b-huge"), "{ls}");
}

#[test]
fn names_that_are_not_utf8_are_clear_errors_and_nothing_is_written() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/ok.txt"), b"ok\n").unwrap();
    let bad = std::ffi::OsStr::from_bytes(b"bad-\xff.bin");
    std::fs::write(src.join("d").join(bad), b"latin1\n").unwrap();
    let img = t.path().join("nu.img");
    mkfs_ext4(&img, "16M", &src, &[]);
    let d = s(&img);
    // copy-out: the guest name cannot cross the wire; refused before anything is made.
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let o = fails(&["copy-out", "-a", d, "-m", "/dev/sda", "/d", s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not UTF-8"), "{err}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    // copy-in of a host tree with such a name: refused before anything is written.
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let img = t.path().join("nu-in.img");
    mkfs_ext4(&img, "16M", &empty, &[]);
    let o = fails(&[
        "--rw",
        "copy-in",
        "-a",
        s(&img),
        "-m",
        "/dev/sda",
        s(&src.join("d")),
        "/",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not UTF-8") && err.contains("bad-"), "{err}");
    let ls = debugfs(&img, "ls -p /");
    assert!(!ls.contains("/d/"), "nothing written: {ls}");
    assert_e2fsck_clean(&img);
}
