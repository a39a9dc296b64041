//! `skiff customize` and `skiff sysprep` end to end on ext4 guests built with
//! `mkfs.ext4 -d` (and the Debian GPT guest with its FAT ESP), every result checked with
//! independent tools: `debugfs` (owner, mode, contents, symlink targets), `openssl passwd
//! -6 -salt` (the sha512-crypt hash in /etc/shadow), `e2fsck -fn` (a clean filesystem),
//! `mtype` (the ESP), and, for sysprep, the tree `virt-sysprep` left on the same guest
//! (recorded in tests/oracles/sysprep-virt-sysprep.txt by tests/oracles/sysprep-record.sh).

use skiff_tests::guests::{self, mkfs_ext4};
use skiff_tests::{assert_e2fsck_clean, debugfs, debugfs_cat, file_hash, run};
use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cli(args: &[&str]) -> Output {
    guests::skiff_cli(args, b"")
}

/// `skiff ARGS` must succeed; its stdout.
fn ok(args: &[&str]) -> String {
    let o = cli(args);
    assert!(
        o.status.success(),
        "skiff {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("UTF-8 output")
}

/// `skiff ARGS` must fail; its stderr (one `skiff: ` line).
fn fails(args: &[&str]) -> String {
    let o = cli(args);
    let err = String::from_utf8(o.stderr).expect("UTF-8");
    assert!(!o.status.success(), "skiff {args:?} should fail");
    assert!(err.starts_with("skiff: "), "{err:?}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    err
}

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// `debugfs stat PATH`: (mode bits, uid, gid, type word) from its first lines.
fn stat(img: &Path, path: &str) -> (u32, u32, u32, String) {
    let out = debugfs(img, &format!("stat {path}"));
    let words: Vec<&str> = out.split_whitespace().collect();
    let after = |key: &str| -> &str {
        let i = words
            .iter()
            .position(|w| *w == key)
            .unwrap_or_else(|| panic!("{key} in debugfs stat {path}: {out}"));
        words[i + 1]
    };
    let mode = u32::from_str_radix(after("Mode:"), 8).expect("octal mode");
    let uid = after("User:").parse().expect("uid");
    let gid = after("Group:").parse().expect("gid");
    (mode, uid, gid, after("Type:").to_string())
}

/// A symlink's target as debugfs shows it (`Fast link dest: "..."`).
fn link_target(img: &Path, path: &str) -> String {
    let out = debugfs(img, &format!("stat {path}"));
    let i = out
        .find("Fast link dest: \"")
        .unwrap_or_else(|| panic!("{path} is a fast symlink: {out}"));
    let rest = &out[i + 17..];
    rest[..rest.find('"').expect("closing quote")].to_string()
}

fn exists(img: &Path, path: &str) -> bool {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("stat {path}"))
        .arg(img)
        .output()
        .expect("debugfs");
    !String::from_utf8_lossy(&out.stderr).contains("not found")
}

const SHADOW: &str = "root:*:19000:0:99999:7:::\n\
# an odd line, kept byte for byte\n\
alice:!:19000:0:99999:7:::\n\
line without colons\n\
bob:$6$old$x:19000:0:99999:7:::";

/// A Debian-like ext4 guest: users root and alice (uid 1000, home owned by her), a
/// shadow file 0640 root:42 with odd lines, zoneinfo, systemd, `/etc/hosts`.
fn guest(dir: &Path, name: &str) -> PathBuf {
    let root = dir.join(format!("{name}.root"));
    guests::write_tree(
        &root,
        &[
            ("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n"),
            ("etc/hostname", "debian\n"),
            (
                "etc/hosts",
                "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n# debian stays\n",
            ),
            (
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice,,,:/home/alice:/bin/sh\n\
                 bob:x:1001:1001::/home/bob:/bin/sh\n",
            ),
            ("etc/shadow", SHADOW),
            ("etc/timezone", "Etc/UTC\n"),
            ("etc/motd", "old motd\n"),
            ("etc/systemd/system/.keep", ""),
            ("lib/systemd/systemd", "not a real systemd\n"),
            ("usr/share/zoneinfo/Europe/Paris", "TZif2 Paris\n"),
            ("usr/share/zoneinfo/Etc/UTC", "TZif2 UTC\n"),
            ("root/.profile", "# profile\n"),
            ("home/alice/.profile", "# alice\n"),
            ("var/log/a.log", "a\n"),
            ("var/log/b.log", "b\n"),
            ("var/log/keep.txt", "k\n"),
            ("srv/data.txt", "some data\n"),
            ("srv/old-name", "moved\n"),
        ],
    );
    std::fs::set_permissions(root.join("etc/shadow"), PermissionsExt::from_mode(0o640))
        .expect("chmod");
    std::os::unix::fs::chown(root.join("etc/shadow"), Some(0), Some(42)).expect("chown");
    std::os::unix::fs::chown(root.join("home/alice"), Some(1000), Some(1000)).expect("chown");
    std::os::unix::fs::chown(root.join("home/alice/.profile"), Some(1000), Some(1000))
        .expect("chown");
    std::os::unix::fs::symlink("/usr/share/zoneinfo/Etc/UTC", root.join("etc/localtime"))
        .expect("symlink");
    let img = dir.join(name);
    mkfs_ext4(&root, &img, "16M", &[]);
    img
}

/// `openssl passwd -6 -salt SALT PW`: the reference sha512-crypt.
fn openssl_sha512(salt: &str, pw: &str) -> String {
    let out = Command::new("openssl")
        .args(["passwd", "-6", "-salt", salt, pw])
        .output()
        .expect("openssl is installed");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn customize_operations_checked_with_debugfs_openssl_and_e2fsck() {
    let dir = tempfile::tempdir().unwrap();
    let img = guest(dir.path(), "g.img");
    let host_file = dir.path().join("tool.sh");
    std::fs::write(&host_file, "#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(&host_file, PermissionsExt::from_mode(0o750)).unwrap();
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests alice@laptop";
    let upload = format!("{}:/usr/local/bin", p(&host_file));
    let inject = format!("alice:string:{key}");
    let out = ok(&[
        "customize",
        "-a",
        p(&img),
        "--hostname",
        "web1.example.com",
        "--ssh-inject",
        &inject,
        "--root-password",
        "password:s3cr3t pw",
        "--password",
        "bob:locked",
        "--timezone",
        "Europe/Paris",
        "--mkdir",
        "/usr/local/bin",
        "--upload",
        &upload,
        "--write",
        "/etc/motd:Welcome: web1",
        "--append-line",
        "/etc/motd:second line",
        "--delete",
        "/var/log/*.log",
        "--move",
        "/srv/old-name:/srv/new-name",
        "--chmod",
        "0600:/srv/data.txt",
        "--link",
        "/srv/data.txt:/srv/l1:/srv/l2",
        "--touch",
        "/srv/touched",
        "--truncate",
        "/srv/new-name",
        "--firstboot-command",
        "echo first boot > /root/fb.txt",
    ]);
    // One line per change, in the order given.
    let first = out.lines().next().unwrap();
    assert_eq!(
        first,
        "--hostname web1.example.com: replace /etc/hostname (17 bytes)"
    );
    assert!(
        out.contains("--root-password password:***: replace /etc/shadow"),
        "{out}"
    );
    assert!(
        !out.contains("s3cr3t"),
        "the password is never printed: {out}"
    );
    assert_e2fsck_clean(&img);

    // Hostname: /etc/hostname, and /etc/hosts with the old name replaced (comment kept).
    assert_eq!(debugfs_cat(&img, "/etc/hostname"), b"web1.example.com\n");
    assert_eq!(
        debugfs_cat(&img, "/etc/hosts"),
        b"127.0.0.1\tlocalhost\n127.0.1.1\tweb1\n# debian stays\n"
    );

    // ssh-inject: .ssh 0700 and authorized_keys 0600, both alice's.
    let (mode, uid, gid, t) = stat(&img, "/home/alice/.ssh");
    assert_eq!(
        (mode, uid, gid, t.as_str()),
        (0o700, 1000, 1000, "directory")
    );
    let (mode, uid, gid, t) = stat(&img, "/home/alice/.ssh/authorized_keys");
    assert_eq!((mode, uid, gid, t.as_str()), (0o600, 1000, 1000, "regular"));
    assert_eq!(
        debugfs_cat(&img, "/home/alice/.ssh/authorized_keys"),
        format!("{key}\n").as_bytes()
    );

    // Passwords: root's a sha512-crypt hash openssl agrees with, bob's locked, every
    // other byte as it was, mode and owner kept.
    let shadow = String::from_utf8(debugfs_cat(&img, "/etc/shadow")).unwrap();
    let lines: Vec<&str> = shadow.split('\n').collect();
    let old: Vec<&str> = SHADOW.split('\n').collect();
    assert_eq!(lines.len(), old.len(), "{shadow}");
    let root_hash = lines[0].split(':').nth(1).unwrap();
    let salt = root_hash.split('$').nth(2).unwrap();
    assert!(
        root_hash.starts_with("$6$") && salt.len() >= 8,
        "{root_hash}"
    );
    assert_eq!(root_hash, openssl_sha512(salt, "s3cr3t pw"));
    assert_eq!(
        lines[0]
            .split_once(':')
            .unwrap()
            .1
            .split_once(':')
            .unwrap()
            .1,
        "19000:0:99999:7:::"
    );
    assert_eq!(&lines[1..4], &old[1..4]);
    assert_eq!(lines[4], "bob:!*:19000:0:99999:7:::", "locked: !*");
    assert!(!shadow.ends_with('\n'), "no newline added at the end");
    assert_eq!(stat(&img, "/etc/shadow").0, 0o640);
    assert_eq!(stat(&img, "/etc/shadow").2, 42);

    // Timezone: the symlink, and /etc/timezone (it existed).
    assert_eq!(
        link_target(&img, "/etc/localtime"),
        "/usr/share/zoneinfo/Europe/Paris"
    );
    assert_eq!(debugfs_cat(&img, "/etc/timezone"), b"Europe/Paris\n");

    // Files.
    let (mode, uid, _, _) = stat(&img, "/usr/local/bin/tool.sh");
    assert_eq!((mode, uid), (0o750, 0), "the host file's mode");
    assert_eq!(
        debugfs_cat(&img, "/usr/local/bin/tool.sh"),
        b"#!/bin/sh\necho tool\n"
    );
    assert_eq!(
        debugfs_cat(&img, "/etc/motd"),
        b"Welcome: web1\nsecond line\n"
    );
    assert!(!exists(&img, "/var/log/a.log") && !exists(&img, "/var/log/b.log"));
    assert_eq!(debugfs_cat(&img, "/var/log/keep.txt"), b"k\n");
    assert!(!exists(&img, "/srv/old-name"));
    assert_eq!(
        debugfs_cat(&img, "/srv/new-name"),
        b"",
        "moved, then truncated"
    );
    assert_eq!(stat(&img, "/srv/data.txt").0, 0o600);
    assert_eq!(link_target(&img, "/srv/l1"), "/srv/data.txt");
    assert_eq!(link_target(&img, "/srv/l2"), "/srv/data.txt");
    let (mode, _, _, t) = stat(&img, "/srv/touched");
    assert_eq!((mode, t.as_str()), (0o644, "regular"));

    // First boot: the systemd unit, enabled, and the script with the command.
    let unit = String::from_utf8(debugfs_cat(
        &img,
        "/etc/systemd/system/guestfs-firstboot.service",
    ))
    .unwrap();
    assert!(
        unit.contains("ExecStart=/usr/lib/virt-sysprep/firstboot.sh"),
        "{unit}"
    );
    assert_eq!(
        link_target(
            &img,
            "/etc/systemd/system/multi-user.target.wants/guestfs-firstboot.service"
        ),
        "/etc/systemd/system/guestfs-firstboot.service"
    );
    let scripts = debugfs(&img, "ls -p /usr/lib/virt-sysprep/scripts");
    let name = scripts
        .lines()
        .filter_map(|l| l.split('/').nth(5))
        .find(|n| !n.is_empty() && *n != "." && *n != "..")
        .unwrap_or_else(|| panic!("a script: {scripts}"));
    let script = debugfs_cat(&img, &format!("/usr/lib/virt-sysprep/scripts/{name}"));
    let script = String::from_utf8(script).unwrap();
    assert!(
        script.contains("echo first boot > /root/fb.txt"),
        "{script}"
    );
    assert_eq!(
        stat(&img, &format!("/usr/lib/virt-sysprep/scripts/{name}")).0 & 0o111,
        0o111
    );
}

#[test]
fn ssh_inject_appends_a_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let img = guest(dir.path(), "g.img");
    let k1 = dir.path().join("k1.pub");
    std::fs::write(&k1, "# comment\nssh-ed25519 AAAAkeyone one@host\n").unwrap();
    let a = format!("root:file:{}", p(&k1));
    ok(&["customize", "-a", p(&img), "--ssh-inject", &a]);
    let out = ok(&[
        "customize",
        "-a",
        p(&img),
        "--ssh-inject",
        &a,
        "--ssh-inject",
        "root:string:ssh-rsa AAAAkeytwo two@host",
    ]);
    assert_eq!(out.matches("authorized_keys").count(), 1, "{out}");
    assert_eq!(
        debugfs_cat(&img, "/root/.ssh/authorized_keys"),
        b"ssh-ed25519 AAAAkeyone one@host\nssh-rsa AAAAkeytwo two@host\n"
    );
    let (mode, uid, _, _) = stat(&img, "/root/.ssh/authorized_keys");
    assert_eq!((mode, uid), (0o600, 0));
    assert_e2fsck_clean(&img);
}

#[test]
fn bad_input_names_image_and_operation_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = guest(dir.path(), "g.img");
    let before = file_hash(&img);
    // An unknown user after a valid write: found in the check pass, nothing written.
    let err = fails(&[
        "customize",
        "-a",
        p(&img),
        "--write",
        "/etc/motd:new",
        "--ssh-inject",
        "nobody:string:ssh-ed25519 AAAA x@y",
    ]);
    assert!(err.contains(p(&img)), "{err}");
    assert!(err.contains("--ssh-inject nobody"), "{err}");
    assert!(err.contains("no user nobody in /etc/passwd"), "{err}");
    assert_eq!(file_hash(&img), before, "image unchanged");
    // A missing host file, a missing timezone, a missing file to truncate.
    let missing = dir.path().join("missing.txt");
    let up = format!("{}:/etc", p(&missing));
    let err = fails(&["customize", "-a", p(&img), "--upload", &up]);
    assert!(
        err.contains("--upload") && err.contains("missing.txt"),
        "{err}"
    );
    let err = fails(&["customize", "-a", p(&img), "--timezone", "Mars/Olympus"]);
    assert!(err.contains("no timezone Mars/Olympus"), "{err}");
    let err = fails(&["customize", "-a", p(&img), "--truncate", "/nope"]);
    assert!(err.contains("--truncate /nope"), "{err}");
    // Not offered.
    let err = fails(&["customize", "-a", p(&img), "--run-command", "apt update"]);
    assert!(err.contains("--firstboot-command"), "{err}");
    // A password is never echoed, even in a bad selector.
    let err = fails(&["customize", "-a", p(&img), "--root-password", "hunter2"]);
    assert!(!err.contains("hunter2"), "{err}");
    assert_eq!(file_hash(&img), before, "image unchanged");
}

#[test]
fn hostile_symlinks_are_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    guests::write_tree(
        &root,
        &[
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
            ("etc/real-shadow", "root:*:1:0:99999:7:::\n"),
            ("root/.keep", ""),
            ("elsewhere/.keep", ""),
        ],
    );
    std::os::unix::fs::symlink("real-shadow", root.join("etc/shadow")).unwrap();
    std::os::unix::fs::symlink("/elsewhere", root.join("root/.ssh")).unwrap();
    let img = dir.path().join("h.img");
    mkfs_ext4(&root, &img, "8M", &[]);
    let before = file_hash(&img);
    let err = fails(&["customize", "-a", p(&img), "--root-password", "password:x"]);
    assert!(err.contains("/etc/shadow is a symlink"), "{err}");
    let err = fails(&[
        "customize",
        "-a",
        p(&img),
        "--ssh-inject",
        "root:string:k k",
    ]);
    assert!(err.contains("/root/.ssh is not a directory"), "{err}");
    assert_eq!(file_hash(&img), before, "image unchanged");
}

#[test]
fn dry_run_reports_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = guest(dir.path(), "g.img");
    let before = file_hash(&img);
    let out = ok(&[
        "customize",
        "-a",
        p(&img),
        "--dry-run",
        "--hostname",
        "web2",
        "--mkdir",
        "/opt/x/y",
        "--write",
        "/opt/x/y/z.conf:a=1",
        "--delete",
        "/var/log",
    ]);
    assert_eq!(
        out,
        "--hostname web2: would replace /etc/hostname (5 bytes)\n\
         --hostname web2: would replace /etc/hosts (50 bytes)\n\
         --mkdir /opt/x/y: would mkdir /opt (0755)\n\
         --mkdir /opt/x/y: would mkdir /opt/x (0755)\n\
         --mkdir /opt/x/y: would mkdir /opt/x/y (0755)\n\
         --write /opt/x/y/z.conf: would create /opt/x/y/z.conf (3 bytes)\n\
         --delete /var/log: would remove /var/log (recursively)\n"
    );
    assert_eq!(file_hash(&img), before);
    // JSON: the same, typed.
    let out = ok(&["--json", "customize", "-a", p(&img), "-n", "--touch", "/x"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["changes"][0]["operation"], "--touch /x");
    assert_eq!(v["changes"][0]["action"], "create");
    assert_eq!(v["changes"][0]["path"], "/x");
    assert_eq!(file_hash(&img), before);
}

#[test]
fn customize_through_inspection_reaches_the_esp() {
    let dir = tempfile::tempdir().unwrap();
    let img = guests::debian_gpt(dir.path(), "d.img", "deb1");
    ok(&[
        "customize",
        "-a",
        p(&img),
        "--hostname",
        "deb2",
        "--write",
        "/boot/efi/skiff.txt:on the ESP",
    ]);
    // The root (sda2) and the ESP (sda1) pulled out and read with debugfs and mtype.
    let root = dir.path().join("root.ext4");
    skiff_tests::extract(&img, 71680 * 512, 32768 * 512, &root);
    assert_eq!(debugfs_cat(&root, "/etc/hostname"), b"deb2\n");
    assert_e2fsck_clean(&root);
    let esp = dir.path().join("esp.vfat");
    skiff_tests::extract(&img, 2048 * 512, 69632 * 512, &esp);
    assert_eq!(skiff_tests::mtype(&esp, "skiff.txt"), b"on the ESP");
    skiff_tests::assert_fsck_vfat_clean(&esp);
}

/// Builds the guest of tests/oracles/sysprep-tree.txt (as sysprep-record.sh does).
fn sysprep_guest(dir: &Path) -> PathBuf {
    let root = dir.join("sysprep.root");
    for line in include_str!("../oracles/sysprep-tree.txt").lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (path, content) = line.split_once('\t').expect("PATH<TAB>CONTENT");
        let full = root.join(path);
        if path.ends_with('/') {
            std::fs::create_dir_all(&full).unwrap();
            continue;
        }
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, content.replace("\\n", "\n")).unwrap();
    }
    std::fs::copy("/bin/dash", root.join("usr/bin/sh")).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    let img = dir.join("sysprep.img");
    mkfs_ext4(&root, &img, "16M", &[]);
    img
}

/// The tree on `img` as sysprep-record.sh lists it: `PATH SIZE` (files, symlinks) and
/// `PATH/` (directories), through `debugfs rdump`.
fn tree(img: &Path, dir: &Path) -> BTreeSet<String> {
    let out = dir.join("rdump");
    std::fs::create_dir(&out).unwrap();
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", p(&out)))
        .arg(img));
    let mut set = BTreeSet::new();
    fn walk(base: &Path, d: &Path, set: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            if rel == "lost+found" {
                continue;
            }
            let m = std::fs::symlink_metadata(&path).unwrap();
            if m.is_dir() {
                set.insert(format!("{rel}/"));
                walk(base, &path, set);
            } else {
                set.insert(format!("{rel} {}", m.len()));
            }
        }
    }
    walk(&out, &out, &mut set);
    set
}

#[test]
fn sysprep_leaves_what_virt_sysprep_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let img = sysprep_guest(dir.path());
    let ops = include_str!("../oracles/sysprep-operations.txt").trim();
    let before = file_hash(&img);
    let dry = ok(&["sysprep", "-a", p(&img), "--dry-run", "--operations", ops]);
    assert!(
        dry.contains("machine-id: would empty /etc/machine-id"),
        "{dry}"
    );
    assert_eq!(file_hash(&img), before);
    ok(&["sysprep", "-a", p(&img), "--operations", ops]);
    assert_e2fsck_clean(&img);
    let got = tree(&img, dir.path());
    let want: BTreeSet<String> = include_str!("../oracles/sysprep-virt-sysprep.txt")
        .lines()
        .map(String::from)
        .collect();
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "virt-sysprep left but skiff did not: {missing:?}\nskiff left but virt-sysprep did not: {extra:?}"
    );
    // The machine id is emptied, not deleted (the oracle says so too: size 0).
    assert!(got.contains("etc/machine-id 0"));
}

#[test]
fn sysprep_lists_and_selects_operations() {
    let out = ok(&["sysprep", "--list-operations"]);
    assert!(
        out.contains("machine-id * Remove the local machine ID\n"),
        "{out}"
    );
    assert!(out.contains("lvm-uuids - "), "{out}");
    let err = fails(&[
        "sysprep",
        "-a",
        "/nonexistent.img",
        "--operations",
        "fs-uuids",
    ]);
    assert!(err.contains("not offered"), "{err}");
}

#[test]
fn each_runs_customize_per_image() {
    let dir = tempfile::tempdir().unwrap();
    let a = guest(dir.path(), "a.img");
    let b = guests::small_ext4(dir.path(), "b.img", "bee");
    let o = cli(&[
        "each",
        "-j",
        "2",
        p(&a),
        p(&b),
        "--",
        "customize",
        "--ssh-inject",
        "alice:string:ssh-ed25519 AAAA e@h",
    ]);
    // a has alice, b has no /etc/passwd: one ok, one failed, exit status non-zero.
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("1 ok, 1 failed"), "{err}");
    assert!(err.contains("no /etc/passwd"), "{err}");
    assert_eq!(
        debugfs_cat(&a, "/home/alice/.ssh/authorized_keys"),
        b"ssh-ed25519 AAAA e@h\n"
    );
}

/// `debugfs ea_get PATH security.selinux` (`None` when the file has no label).
fn label(img: &Path, path: &str) -> Option<String> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("ea_get {path} security.selinux"))
        .arg(img)
        .output()
        .expect("debugfs");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if text.is_empty() || !out.status.success() {
        return None;
    }
    // `security.selinux (30) = "CONTEXT\000"`
    let value = text.split_once(" = ").map_or(text.as_str(), |(_, v)| v);
    Some(
        value
            .trim_matches('"')
            .trim_end_matches("\\000")
            .to_string(),
    )
}

#[test]
fn selinux_labels_kept_derived_or_relabel() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    guests::write_tree(
        &root,
        &[
            (
                "etc/selinux/config",
                "SELINUX=enforcing\nSELINUXTYPE=targeted\n",
            ),
            (
                "etc/selinux/targeted/contexts/files/file_contexts",
                "/etc(/.*)?\tsystem_u:object_r:etc_t:s0\n\
                 /etc/hostname\t--\tsystem_u:object_r:hostname_etc_t:s0\n\
                 /root(/.*)?\tsystem_u:object_r:admin_home_t:s0\n\
                 /root/\\.ssh(/.*)?\tsystem_u:object_r:ssh_home_t:s0\n",
            ),
            ("etc/hostname", "old\n"),
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
            ("root/.profile", ""),
            ("opt/.keep", ""),
        ],
    );
    // The label the guest's hostname carries: something set by hand, not the policy's.
    // (Python's os.setxattr: mkfs.ext4 -d copies the host files' extended attributes.)
    let set = |rel: &str, ctx: &str| {
        run(Command::new("python3").args([
            "-c",
            "import os, sys; os.setxattr(sys.argv[1], 'security.selinux', sys.argv[2].encode() + b'\\0')",
            p(&root.join(rel)),
            ctx,
        ]));
    };
    set("etc/hostname", "system_u:object_r:custom_t:s0");
    let img = dir.path().join("se.img");
    mkfs_ext4(&root, &img, "8M", &[]);
    assert_eq!(
        label(&img, "/etc/hostname").as_deref(),
        Some("system_u:object_r:custom_t:s0")
    );
    ok(&[
        "customize",
        "-a",
        p(&img),
        "--hostname",
        "new",
        "--write",
        "/etc/new.conf:x",
        "--ssh-inject",
        "root:string:ssh-ed25519 AAAA r@h",
    ]);
    assert_e2fsck_clean(&img);
    assert_eq!(debugfs_cat(&img, "/etc/hostname"), b"new\n");
    // Replaced: its own label kept. New: the policy's label for the path.
    assert_eq!(
        label(&img, "/etc/hostname").as_deref(),
        Some("system_u:object_r:custom_t:s0")
    );
    assert_eq!(
        label(&img, "/etc/new.conf").as_deref(),
        Some("system_u:object_r:etc_t:s0")
    );
    assert_eq!(
        label(&img, "/root/.ssh").as_deref(),
        Some("system_u:object_r:ssh_home_t:s0")
    );
    assert_eq!(
        label(&img, "/root/.ssh/authorized_keys").as_deref(),
        Some("system_u:object_r:ssh_home_t:s0")
    );
    assert!(!exists(&img, "/.autorelabel"), "every label was derived");
    // A path the policy does not cover: /.autorelabel instead.
    let out = ok(&["customize", "-a", p(&img), "--write", "/opt/x:y"]);
    assert!(out.contains("create /.autorelabel"), "{out}");
    assert!(exists(&img, "/.autorelabel"));
    assert_eq!(label(&img, "/opt/x"), None);
}

#[test]
fn firstboot_on_a_sysv_guest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    guests::write_tree(
        &root,
        &[
            ("etc/init.d/rc", "#!/bin/sh\n"),
            ("etc/rc2.d/.keep", ""),
            ("etc/rc3.d/.keep", ""),
        ],
    );
    let script = dir.path().join("setup.sh");
    std::fs::write(&script, "#!/bin/sh\ntouch /root/done\n").unwrap();
    let img = dir.path().join("sysv.img");
    mkfs_ext4(&root, &img, "8M", &[]);
    ok(&["customize", "-a", p(&img), "--firstboot", p(&script)]);
    assert_e2fsck_clean(&img);
    let init = String::from_utf8(debugfs_cat(&img, "/etc/init.d/guestfs-firstboot")).unwrap();
    assert!(
        init.contains("/usr/lib/virt-sysprep/firstboot.sh start"),
        "{init}"
    );
    for rl in ["2", "3"] {
        assert_eq!(
            link_target(&img, &format!("/etc/rc{rl}.d/S99guestfs-firstboot")),
            "../init.d/guestfs-firstboot"
        );
    }
    assert_eq!(
        debugfs_cat(&img, "/usr/lib/virt-sysprep/scripts/0001-setup-sh"),
        b"#!/bin/sh\ntouch /root/done\n"
    );
    assert_eq!(
        stat(&img, "/usr/lib/virt-sysprep/scripts/0001-setup-sh").0,
        0o755
    );
}

#[test]
fn copy_in_copies_a_host_tree() {
    let dir = tempfile::tempdir().unwrap();
    let img = guest(dir.path(), "g.img");
    let tree = dir.path().join("site");
    guests::write_tree(
        &tree,
        &[("index.html", "<h1>hi</h1>\n"), ("css/a.css", "a{}\n")],
    );
    std::fs::set_permissions(tree.join("css"), PermissionsExt::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("index.html", tree.join("home.html")).unwrap();
    let arg = format!("{}:/srv", p(&tree));
    ok(&["customize", "-a", p(&img), "--copy-in", &arg]);
    assert_e2fsck_clean(&img);
    assert_eq!(debugfs_cat(&img, "/srv/site/index.html"), b"<h1>hi</h1>\n");
    assert_eq!(debugfs_cat(&img, "/srv/site/css/a.css"), b"a{}\n");
    let (mode, _, _, t) = stat(&img, "/srv/site/css");
    assert_eq!((mode, t.as_str()), (0o750, "directory"));
    assert_eq!(link_target(&img, "/srv/site/home.html"), "index.html");
}

#[test]
fn full_filesystem_found_before_the_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    guests::write_tree(&root, &[("etc/hostname", "old\n")]);
    std::fs::write(root.join("filler"), skiff_tests::pattern(700_000, 1)).unwrap();
    let img = dir.path().join("full.img");
    mkfs_ext4(&root, &img, "1M", &[]);
    let big = dir.path().join("big.bin");
    std::fs::write(&big, skiff_tests::pattern(600_000, 2)).unwrap();
    let before = file_hash(&img);
    let up = format!("{}:/etc/hostname", p(&big));
    let err = fails(&[
        "customize",
        "-a",
        p(&img),
        "--hostname",
        "new",
        "--upload",
        &up,
    ]);
    assert!(
        err.contains("--upload") && err.contains("no space left"),
        "{err}"
    );
    assert_eq!(
        file_hash(&img),
        before,
        "nothing written, the hostname neither"
    );
    assert_e2fsck_clean(&img);
    assert_eq!(debugfs_cat(&img, "/etc/hostname"), b"old\n");
}

#[test]
fn xfs_guests_are_customized_and_stay_clean() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("x.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(300 << 20))
        .unwrap();
    run(Command::new("mkfs.xfs").args(["-q", "-f", p(&img)]));
    ok(&[
        "customize",
        "-a",
        p(&img),
        "--mkdir",
        "/etc",
        "--write",
        "/etc/motd:hello from skiff",
        "--append-line",
        "/etc/motd:second line",
        "--chmod",
        "0600:/etc/motd",
        "--link",
        "/etc/motd:/motd-link",
    ]);
    // A plain streamed write too (its pieces are pipelined: the clock must go first).
    ok(&["--rw", "write", "-a", p(&img), "/etc/issue", "streamed"]);
    // xfs_repair -n: no corruption, the log clean.
    run(Command::new("xfs_repair").args(["-n", p(&img)]));
    // Linux reads what skiff wrote.
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(Command::new("mount").args(["-o", "loop,ro", p(&img), p(&mnt)]));
    let motd = std::fs::read_to_string(mnt.join("etc/motd"));
    let mode = std::fs::metadata(mnt.join("etc/motd")).map(|m| m.permissions());
    let link = std::fs::read_link(mnt.join("motd-link"));
    let mtimes = ["etc/motd", "etc/issue"]
        .map(|f| std::fs::metadata(mnt.join(f)).and_then(|m| m.modified()));
    let issue = std::fs::read_to_string(mnt.join("etc/issue"));
    run(Command::new("umount").arg(p(&mnt)));
    assert_eq!(issue.unwrap(), "streamed");
    // Stamped with the host's clock (the appliance has none), not the epoch.
    for m in mtimes {
        let since = m.unwrap().duration_since(std::time::UNIX_EPOCH).unwrap();
        assert!(since.as_secs() > 1_600_000_000, "mtime {since:?}");
    }
    assert_eq!(motd.unwrap(), "hello from skiff\nsecond line\n");
    assert_eq!(mode.unwrap().mode() & 0o7777, 0o600);
    assert_eq!(link.unwrap(), Path::new("/etc/motd"));
}

#[test]
fn sysprep_defaults_compared_with_virt_sysprep_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let img = sysprep_guest(dir.path());
    ok(&["sysprep", "-a", p(&img)]);
    assert_e2fsck_clean(&img);
    let got = tree(&img, dir.path());
    let want: BTreeSet<String> = include_str!("../oracles/sysprep-virt-sysprep-defaults.txt")
        .lines()
        .map(String::from)
        .collect();
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    // The one known difference: virt-sysprep's default `customize` step writes a new
    // random /etc/machine-id after `machine-id` emptied it; skiff leaves it empty (issue
    // 17: emptied, not deleted; systemd makes one at first boot).
    assert_eq!(missing, [&"etc/machine-id 33".to_string()], "{extra:?}");
    assert_eq!(extra, [&"etc/machine-id 0".to_string()], "{missing:?}");
}

/// Unmounts on drop (a failed assertion leaves no mount behind).
struct Mounted(PathBuf);

impl Mounted {
    fn new(img: &Path, mnt: &Path, opts: &str) -> Mounted {
        std::fs::create_dir_all(mnt).unwrap();
        run(Command::new("mount").args(["-o", opts, p(img), p(mnt)]));
        Mounted(mnt.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The raw `security.selinux` value of `path` on a mounted filesystem, as `getfattr`
/// reads it (`None`: no label).
fn getfattr_label(path: &Path) -> Option<Vec<u8>> {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", "security.selinux"])
        .arg(path)
        .output()
        .expect("getfattr is installed (attr)");
    out.status.success().then_some(out.stdout)
}

/// A label as the kernel stores it: the context and a NUL.
fn label_bytes(ctx: &str) -> Vec<u8> {
    let mut v = ctx.as_bytes().to_vec();
    v.push(0);
    v
}

/// RHEL's /etc/hosts as installed: only the loopback names.
const RHEL_HOSTS: &str = "\
127.0.0.1   localhost localhost.localdomain localhost4 localhost4.localdomain4
::1         localhost localhost.localdomain localhost6 localhost6.localdomain6
";

const RHEL_FILE_CONTEXTS: &str = "\
/.*\t\tsystem_u:object_r:default_t:s0
/etc(/.*)?\t\tsystem_u:object_r:etc_t:s0
/etc/shadow.*\t--\tsystem_u:object_r:shadow_t:s0
/etc/hostname\t--\tsystem_u:object_r:hostname_etc_t:s0
/etc/hosts\t--\tsystem_u:object_r:net_conf_t:s0
/home\t-d\tsystem_u:object_r:home_root_t:s0
/home/[^/]+\t-d\tunconfined_u:object_r:user_home_dir_t:s0
/home/[^/]+/.+\t\tunconfined_u:object_r:user_home_t:s0
/home/[^/]+/\\.ssh(/.*)?\t\tunconfined_u:object_r:ssh_home_t:s0
";

/// A RHEL 9 root on XFS in an LVM LV, labelled for SELinux (labels set with `setfattr`
/// on a loop mount): customize keeps the labels of what it replaces (/etc/shadow,
/// /etc/hostname, /etc/hosts, byte for byte as `getfattr` reads them), labels what it
/// creates from the guest's `file_contexts` (`.ssh`, `authorized_keys`, `/etc/motd`,
/// so no `/.autorelabel`), and leaves an XFS `xfs_repair -n` finds clean; the LV's bytes
/// are found with LVM's own `pvs`/`lvs --segments` figures.
#[test]
fn xfs_root_on_lvm_keeps_selinux_labels() {
    use skiff_tests::lvm::{Lab, dd_at, dd_out, lvm, unique_tag};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let vg = format!("sk-rhel{}", unique_tag());
    let mapper_root = format!("/dev/mapper/{}-root", vg.replace('-', "--"));

    // 1. The XFS root (mkfs.xfs 6.1 makes nothing smaller than 300 MiB), filled through
    // a loop mount so that ownership and labels are the kernel's own.
    let xfs = d.join("root.xfs");
    std::fs::File::create(&xfs)
        .and_then(|f| f.set_len(300 << 20))
        .unwrap();
    run(Command::new("mkfs.xfs").args(["-q", "-f", p(&xfs)]));
    let mnt = d.join("mnt");
    let fstab = format!("{mapper_root} / xfs defaults 0 0\n");
    let labels = [
        ("etc", "system_u:object_r:etc_t:s0"),
        ("etc/shadow", "system_u:object_r:shadow_t:s0"),
        // Not what the policy says (hostname_etc_t): kept, not re-derived.
        ("etc/hostname", "system_u:object_r:etc_t:s0"),
        ("etc/hosts", "system_u:object_r:net_conf_t:s0"),
        ("home", "system_u:object_r:home_root_t:s0"),
        ("home/alice", "unconfined_u:object_r:user_home_dir_t:s0"),
    ];
    let before: Vec<Option<Vec<u8>>>;
    {
        let _m = Mounted::new(&xfs, &mnt, "loop");
        guests::write_tree(
            &mnt,
            &[
                (
                    "etc/passwd",
                    "root:x:0:0:root:/root:/bin/bash\n\
                     alice:x:1000:1000:Alice:/home/alice:/bin/bash\n",
                ),
                (
                    "etc/shadow",
                    "root:!!:19800:0:99999:7:::\nalice:!!:19800:0:99999:7:::\n",
                ),
                ("etc/hostname", "localhost.localdomain\n"),
                ("etc/hosts", RHEL_HOSTS),
                (
                    "etc/os-release",
                    "NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"9.4 (Plow)\"\nID=\"rhel\"\n\
                     ID_LIKE=\"fedora\"\nVERSION_ID=\"9.4\"\n",
                ),
                (
                    "etc/selinux/config",
                    "# This file controls the state of SELinux on the system.\n\
                     SELINUX=enforcing\nSELINUXTYPE=targeted\n",
                ),
                (
                    "etc/selinux/targeted/contexts/files/file_contexts",
                    RHEL_FILE_CONTEXTS,
                ),
                ("etc/fstab", &fstab),
                ("home/alice/.bashrc", "# .bashrc\n"),
                ("root/.bashrc", "# .bashrc\n"),
            ],
        );
        std::fs::set_permissions(mnt.join("etc/shadow"), PermissionsExt::from_mode(0o000)).unwrap();
        for f in ["home/alice", "home/alice/.bashrc"] {
            std::os::unix::fs::chown(mnt.join(f), Some(1000), Some(1000)).unwrap();
        }
        std::fs::set_permissions(mnt.join("home/alice"), PermissionsExt::from_mode(0o700)).unwrap();
        for (f, ctx) in labels {
            let hex: String = label_bytes(ctx)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            run(Command::new("setfattr")
                .args(["-n", "security.selinux", "-v", &format!("0x{hex}")])
                .arg(mnt.join(f)));
        }
        before = labels
            .iter()
            .map(|(f, _)| getfattr_label(&mnt.join(f)))
            .collect();
    }
    for ((f, ctx), got) in labels.iter().zip(&before) {
        assert_eq!(
            got.as_deref(),
            Some(label_bytes(ctx).as_slice()),
            "setfattr labelled /{f}"
        );
    }
    run(Command::new("xfs_repair").args(["-n", p(&xfs)]));

    // 2. A disk like a RHEL install's: an MBR partition of type 8e, a PV on it, the root
    // in the LV `root` (and swap after it), made without activating anything.
    let img = d.join("rhel.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(340 << 20))
        .unwrap();
    guests::sfdisk(&img, "label: dos\nstart=2048, type=8e\n");
    let (part_off, part_size) = (2048u64 * 512, (340u64 << 20) - 2048 * 512);
    let mut lab = Lab::default();
    let pv = lab.attach(&img, part_off, part_size);
    lab.vg(&vg, &[&pv]);
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-n", "root", "-L", "300M", &vg],
    );
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-n", "swap", "-l", "100%FREE", &vg],
    );
    let (on, lv_off) = lab.linear_lv_offset(&vg, "root");
    assert_eq!(on, pv);
    lab.detach();
    let root_at = part_off + lv_off;
    dd_at(&xfs, &img, root_at);

    // 3. customize: inspection finds the XFS root in the LV.
    let out = ok(&[
        "customize",
        "-a",
        p(&img),
        "--hostname",
        "web1",
        "--ssh-inject",
        "alice:string:ssh-ed25519 AAAA test",
        "--root-password",
        "password:x",
        "--write",
        "/etc/motd:hi",
    ]);
    assert!(!out.contains("/.autorelabel"), "every label derived: {out}");
    // The old hostname, localhost.localdomain, is a loopback name: /etc/hosts stays.
    assert!(!out.contains("/etc/hosts"), "{out}");

    // 4. The LV's bytes pulled out again, checked by xfs_repair and a read-only mount.
    let after = dd_out(&img, root_at, 300 << 20, &d.join("after.xfs"));
    run(Command::new("xfs_repair").args(["-n", p(&after)]));
    let _m = Mounted::new(&after, &d.join("mnt2"), "loop,ro");
    let m = &d.join("mnt2");
    assert_eq!(
        std::fs::read_to_string(m.join("etc/hostname")).unwrap(),
        "web1\n"
    );
    assert_eq!(std::fs::read_to_string(m.join("etc/motd")).unwrap(), "hi");
    // The root entry: sha512-crypt of "x" as openssl computes it with the same salt;
    // alice's line untouched.
    let shadow = std::fs::read_to_string(m.join("etc/shadow")).unwrap();
    let root_line = shadow.lines().next().unwrap();
    let hash = root_line.split(':').nth(1).unwrap();
    let salt = hash
        .strip_prefix("$6$")
        .and_then(|r| r.split('$').next())
        .unwrap_or_else(|| panic!("a sha512-crypt hash: {root_line}"));
    assert_eq!(hash, openssl_sha512(salt, "x"));
    assert_eq!(
        shadow.lines().nth(1),
        Some("alice:!!:19800:0:99999:7:::"),
        "{shadow}"
    );
    let md = std::fs::metadata(m.join("etc/shadow")).unwrap();
    assert_eq!(
        (md.permissions().mode() & 0o7777, md.uid(), md.gid()),
        (0, 0, 0),
        "/etc/shadow keeps mode 0 root:root"
    );
    // Replaced files: the very label bytes they had.
    let kept: Vec<Option<Vec<u8>>> = labels
        .iter()
        .map(|(f, _)| getfattr_label(&m.join(f)))
        .collect();
    for (((f, _), b), a) in labels.iter().zip(&before).zip(&kept) {
        assert_eq!(a, b, "label of /{f} kept");
    }
    assert_eq!(
        std::fs::read_to_string(m.join("etc/hosts")).unwrap(),
        RHEL_HOSTS
    );
    // New files: labelled from file_contexts (the last matching regex wins: ssh_home_t).
    let keys = m.join("home/alice/.ssh/authorized_keys");
    assert_eq!(
        std::fs::read_to_string(&keys).unwrap(),
        "ssh-ed25519 AAAA test\n"
    );
    for (f, mode) in [(".ssh", 0o700), (".ssh/authorized_keys", 0o600)] {
        let md = std::fs::metadata(m.join("home/alice").join(f)).unwrap();
        assert_eq!(
            (md.permissions().mode() & 0o7777, md.uid(), md.gid()),
            (mode, 1000, 1000),
            "/home/alice/{f}"
        );
        assert_eq!(
            getfattr_label(&m.join("home/alice").join(f)),
            Some(label_bytes("unconfined_u:object_r:ssh_home_t:s0")),
            "/home/alice/{f}"
        );
    }
    assert_eq!(
        getfattr_label(&m.join("etc/motd")),
        Some(label_bytes("system_u:object_r:etc_t:s0"))
    );
    assert!(!m.join(".autorelabel").exists());
}
