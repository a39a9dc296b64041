//! Untrusted images must not reach the host: backing files and data files refused or
//! checked, qemu handed fds (never paths) and confined, bad paths refused before qemu
//! starts, appliances that never outlive their client, and forgiving fstab mounts.
//! Oracles: `qemu-img` (images and their guest-visible contents), `/proc/<qemu>` (fds,
//! uid, root, seccomp), `e2fsck -fn`.

use skiff::{DriveOptions, Error, Format};
use skiff_tests::guests::{self, skiff_bin, skiff_cli};
use skiff_tests::{builder, contents, pattern, qemu_img, raw_image};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The CLI fails at once with `want` in its one-line error, printing nothing on stdout.
fn refused(args: &[&str], want: &[&str]) {
    let t = Instant::now();
    let o = skiff_cli(args, b"");
    assert!(!o.status.success(), "{args:?} succeeded");
    assert!(o.stdout.is_empty(), "{args:?} printed {:?}", o.stdout);
    let e = stderr(&o);
    for w in want {
        assert!(e.contains(w), "{args:?}: {e:?} lacks {w:?}");
    }
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "{args:?} did not fail at once"
    );
}

#[test]
fn backing_files_are_refused_by_default_and_checked_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    // The classic attack: a qcow2 whose backing file is a host secret.
    let secret = p("secret.raw");
    std::fs::write(&secret, b"root:$6$hash-of-the-host:19000:0:99999:7:::\n").unwrap();
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        s(&secret),
        "-F",
        "raw",
        s(&p("evil.qcow2")),
    ]);
    refused(
        &[
            "pread-device",
            "-a",
            s(&p("evil.qcow2")),
            "/dev/sda",
            "0",
            "64",
        ],
        &["refusing", "evil.qcow2", s(&secret), "backing=allow"],
    );
    // Pseudo-protocols and network names are never followed, even when allowed.
    for (name, backing) in [
        (
            "json.qcow2",
            format!(
                "json:{{\"driver\":\"file\",\"filename\":\"{}\"}}",
                s(&secret)
            ),
        ),
        ("nbd.qcow2", "nbd://127.0.0.1:10809/x".to_string()),
        ("http.qcow2", "http://127.0.0.1/x.img".to_string()),
    ] {
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-u",
            "-b",
            &backing,
            "-F",
            "raw",
            s(&p(name)),
            "1M",
        ]);
        let spec = format!("{},backing=allow", s(&p(name)));
        refused(&["devices", "-a", &spec], &["refusing", "protocol"]);
        refused(
            &["devices", "-a", s(&p(name))],
            &["refusing", "backing=allow"],
        );
    }
    // A backing file without a format (qemu would probe it): refused, and not reported as
    // a missing image.
    let base = raw_image(dir.path(), "base.raw", 1 << 20, 1);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "base.raw",
        "-F",
        "raw",
        s(&p("nofmt.qcow2")),
    ]);
    let mut bytes = std::fs::read(p("nofmt.qcow2")).unwrap();
    let at = bytes
        .windows(4)
        .position(|w| w == [0xe2, 0x79, 0x2a, 0xca])
        .unwrap();
    bytes[at..at + 4].copy_from_slice(&[0x11, 0x22, 0x33, 0x44]);
    std::fs::write(p("nofmt.qcow2"), bytes).unwrap();
    let spec = format!("{},backing=allow", s(&p("nofmt.qcow2")));
    refused(&["devices", "-a", &spec], &["refusing", "no format"]);
    let o = skiff_cli(&["devices", "-a", &spec], b"");
    assert!(!stderr(&o).contains("not found"), "{}", stderr(&o));
    // A loop a -> b -> a.
    qemu_img(&["create", "-q", "-f", "qcow2", s(&p("a.qcow2")), "1M"]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "a.qcow2",
        "-F",
        "qcow2",
        s(&p("b.qcow2")),
    ]);
    qemu_img(&[
        "rebase",
        "-q",
        "-u",
        "-f",
        "qcow2",
        "-b",
        "b.qcow2",
        "-F",
        "qcow2",
        s(&p("a.qcow2")),
    ]);
    let spec = format!("{},backing=allow", s(&p("a.qcow2")));
    refused(&["devices", "-a", &spec], &["refusing", "loops"]);
    // Too deep: 18 layers.
    let mut below = "base.raw".to_string();
    let mut fmt = "raw";
    for i in 0..18 {
        let name = format!("deep{i}.qcow2");
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            &below,
            "-F",
            fmt,
            s(&p(&name)),
        ]);
        below = name;
        fmt = "qcow2";
    }
    let spec = format!("{},backing=allow", s(&p(&below)));
    refused(&["devices", "-a", &spec], &["refusing", "deeper than 16"]);
    drop(base);
}

#[test]
fn a_relative_chain_of_three_reads_like_qemu_img_says() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("images");
    std::fs::create_dir(&sub).unwrap();
    let size = 4 << 20;
    raw_image(&sub, "l0.raw", size, 7);
    // Each layer changes some clusters, through qemu's own writer (qemu-io).
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "l0.raw",
        "-F",
        "raw",
        s(&sub.join("l1.qcow2")),
    ]);
    qemu_io(&sub.join("l1.qcow2"), "write -P 0xa1 65536 131072");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "l1.qcow2",
        "-F",
        "qcow2",
        s(&sub.join("l2.qcow2")),
    ]);
    qemu_io(&sub.join("l2.qcow2"), "write -P 0xb2 1048576 4096");
    let top = sub.join("l2.qcow2");
    let want = contents(&top, "qcow2");
    assert_eq!(want.len(), size);
    // Opened from another directory: names resolve against the image's own directory.
    let mut s = builder()
        .add_drive(&top, DriveOptions::readonly().allow_backing())
        .launch()
        .unwrap();
    let got = s.pread_device("/dev/sda", 0, size as u64).unwrap();
    assert!(
        got == want,
        "the chain reads differently from qemu-img convert"
    );
    let chain: Vec<(PathBuf, String)> = s.chains()[0]
        .1
        .iter()
        .map(|c| (c.path.clone(), c.format.clone()))
        .collect();
    assert_eq!(
        chain,
        vec![
            (top.clone(), "qcow2".into()),
            (sub.join("l1.qcow2"), "qcow2".into()),
            (sub.join("l0.raw"), "raw".into()),
        ]
    );
    s.shutdown().unwrap();
    // devices --json shows the chain; without backing=allow the image is refused.
    let spec = format!("{},backing=allow", top.display());
    let o = skiff_cli(&["--json", "devices", "-a", &spec], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let chain = &doc["devices"][0]["chain"];
    assert_eq!(chain.as_array().unwrap().len(), 3, "{doc}");
    assert_eq!(chain[2]["path"], sub.join("l0.raw").to_str().unwrap());
    assert_eq!(chain[2]["format"], "raw");
    let o = skiff_cli(&["-v", "devices", "-a", &spec], b"");
    assert!(
        stderr(&o).contains("l2.qcow2 (qcow2) -> ") && stderr(&o).contains("l0.raw (raw)"),
        "{}",
        stderr(&o)
    );
}

fn qemu_io(img: &Path, cmd: &str) {
    let out = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", cmd])
        .arg(img)
        .output()
        .expect("qemu-io (qemu-utils)");
    assert!(out.status.success(), "qemu-io {cmd}: {out:?}");
}

#[test]
fn external_data_files_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("ext.qcow2");
    let data = dir.path().join("ext.data");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={},data_file_raw=on", s(&data)),
        s(&img),
        "1M",
    ]);
    let bytes = pattern(1 << 20, 3);
    std::fs::write(&data, &bytes).unwrap();
    refused(
        &["devices", "-a", s(&img)],
        &["refusing", "external data file", "ext.data"],
    );
    let spec = format!("{},backing=allow", s(&img));
    let o = skiff_cli(
        &["pread-device", "-a", &spec, "/dev/sda", "4096", "8192"],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        o.stdout == bytes[4096..4096 + 8192],
        "data file read wrongly"
    );
}

#[test]
fn bad_paths_fail_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    refused(&["devices", "-a", s(&fifo)], &["refusing", "FIFO"]);
    let sock = dir.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    refused(&["devices", "-a", s(&sock)], &["refusing", "socket"]);
    refused(
        &["devices", "-a", "/dev/zero"],
        &["refusing", "character device"],
    );
    refused(
        &["devices", "-a", s(dir.path())],
        &["refusing", "directory"],
    );
    let link = dir.path().join("dangling.img");
    std::os::unix::fs::symlink(dir.path().join("gone.img"), &link).unwrap();
    refused(&["devices", "-a", s(&link)], &["refusing", "dangling"]);
    refused(
        &["devices", "-a", s(&dir.path().join("missing.img"))],
        &["not found"],
    );
    // Through the library: the typed error, before anything is spawned.
    let e = builder()
        .add_drive(&fifo, DriveOptions::readonly())
        .launch()
        .err()
        .unwrap();
    assert!(matches!(e, Error::ImageRefused { .. }), "{e}");
    // A block device keeps working.
    let img = raw_image(dir.path(), "blk.raw", 2 << 20, 9);
    let out = Command::new("losetup")
        .args(["-f", "--show", "-r"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success(), "losetup: {out:?}");
    let loopdev = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let o = skiff_cli(
        &[
            "pread-device",
            "-a",
            &format!("{loopdev},format=raw"),
            "/dev/sda",
            "0",
            "4096",
        ],
        b"",
    );
    let _ = Command::new("losetup").args(["-d", &loopdev]).status();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout == pattern(2 << 20, 9)[..4096]);
}

/// qemu's fds, credentials and root while a session runs.
#[test]
fn qemu_opens_nothing_itself_and_is_confined() {
    let dir = tempfile::tempdir().unwrap();
    let img = raw_image(dir.path(), "disk.raw", 1 << 20, 5);
    let q = dir.path().join("top.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "disk.raw",
        "-F",
        "raw",
        s(&q),
    ]);
    let mut sess = builder()
        .add_drive(&q, DriveOptions::writable().allow_backing())
        .launch()
        .unwrap();
    let pid = sess.qemu_pid().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(
        !cmdline.contains("top.qcow2") && !cmdline.contains("disk.raw"),
        "{cmdline}"
    );
    assert!(cmdline.contains("/dev/fdset/"), "{cmdline}");
    // Every fd of qemu that is a file names one of the two images (passed by skiff) or
    // something qemu makes itself (anonymous memory, eventfds, pipes, sockets, /dev/null).
    let mut images = 0;
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let target = std::fs::read_link(e.unwrap().path()).unwrap_or_default();
        let t = target.to_string_lossy().into_owned();
        if t.starts_with('/') && !t.starts_with("/dev/null") && !t.starts_with("/memfd:") {
            assert!(
                t.ends_with("top.qcow2") || t.ends_with("disk.raw"),
                "qemu holds {t}"
            );
            images += 1;
        }
    }
    assert!(images >= 2, "qemu holds {images} image fds");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(field("Seccomp:"), "2", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let uid: Vec<u32> = field("Uid:")
            .split_whitespace()
            .map(|u| u.parse().unwrap())
            .collect();
        assert!(
            uid.iter().all(|&u| u >= skiff::confine::UID_BASE),
            "{uid:?}"
        );
        let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
        assert_eq!(root, Path::new(skiff::confine::EMPTY_DIR));
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    }
    // It still reads and writes.
    sess.pwrite_device("/dev/sda", 512, &[7u8; 512]).unwrap();
    assert_eq!(
        sess.pread_device("/dev/sda", 512, 512).unwrap(),
        vec![7u8; 512]
    );
    assert_eq!(
        sess.pread_device("/dev/sda", 0, 512).unwrap(),
        pattern(512, 5)
    );
    sess.shutdown().unwrap();
    // The write went to the overlay, never to the read-only backing file.
    assert!(std::fs::read(&img).unwrap() == pattern(1 << 20, 5));
}

#[test]
fn a_header_repointed_during_a_write_session_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("top.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", s(&img), "1M"]);
    // The same header naming a host file, prepared aside.
    let evil = dir.path().join("evil.qcow2");
    std::fs::copy(&img, &evil).unwrap();
    qemu_img(&[
        "rebase",
        "-q",
        "-u",
        "-f",
        "qcow2",
        "-b",
        "/etc/passwd",
        "-F",
        "raw",
        s(&evil),
    ]);
    let sess = builder()
        .add_drive(&img, DriveOptions::writable().format(Format::Qcow2))
        .launch()
        .unwrap();
    // What a compromised qemu could do: rewrite the header (first cluster).
    let head = std::fs::read(&evil).unwrap()[..65536].to_vec();
    let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    use std::io::Write;
    f.write_all(&head).unwrap();
    drop(f);
    let e = sess.shutdown().unwrap_err();
    assert!(matches!(e, Error::ImageTampered { .. }), "{e}");
    assert!(e.to_string().contains("/etc/passwd"), "{e}");
}

/// A qemu process that is still running (a zombie has let go of everything).
fn live_qemus() -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let name = status.lines().next().unwrap_or_default();
        let state = status
            .lines()
            .find_map(|l| l.strip_prefix("State:"))
            .unwrap_or_default()
            .trim()
            .to_string();
        if name.contains("qemu-system") && !state.starts_with('Z') {
            out.push(pid);
        }
    }
    out
}

/// Waits up to `limit` for every qemu in `pids` to be gone (or a zombie).
fn gone_within(pids: &[u32], limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        let live = live_qemus();
        if !pids.iter().any(|p| live.contains(p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The qemus that are children of `parent` (by /proc's PPid).
fn qemus_of(parent: u32) -> Vec<u32> {
    live_qemus()
        .into_iter()
        .filter(|q| {
            std::fs::read_to_string(format!("/proc/{q}/status"))
                .unwrap_or_default()
                .lines()
                .any(|l| {
                    l.strip_prefix("PPid:")
                        .is_some_and(|v| v.trim() == parent.to_string())
                })
        })
        .collect()
}

fn wait_for_qemus(parent: u32, n: usize) -> Vec<u32> {
    let t = Instant::now();
    loop {
        let q = qemus_of(parent);
        if q.len() >= n || t.elapsed() > Duration::from_secs(120) {
            return q;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill_9_mid_upload_leaves_no_qemu_and_a_clean_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let img = guests::small_ext4(dir.path(), "g.img", "victim");
    // Room for the upload.
    qemu_img(&["resize", "-q", "-f", "raw", s(&img), "96M"]);
    assert!(
        Command::new("resize2fs")
            .args(["-f", s(&img)])
            .output()
            .unwrap()
            .status
            .success()
    );
    let big = dir.path().join("big.bin");
    std::fs::write(&big, pattern(60 << 20, 11)).unwrap();
    for round in 0..3u64 {
        let mut child = Command::new(skiff_bin())
            .args(["--timeout", "120", "--rw", "upload", "-a", s(&img), s(&big)])
            .arg(format!("/big{round}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let qemus = wait_for_qemus(child.id(), 1);
        assert_eq!(qemus.len(), 1, "no qemu started");
        // Somewhere in the middle of the upload.
        std::thread::sleep(Duration::from_millis(300 + 200 * round));
        child.kill().unwrap();
        let _ = child.wait();
        // Not a timing test (the README gives the measured 11–40 ms): a bound far above
        // it, for a loaded machine where the appliance must still sync what it was sent.
        assert!(
            gone_within(&qemus, Duration::from_secs(30)),
            "qemu {qemus:?} outlived its killed client"
        );
        skiff_tests::assert_e2fsck_clean(&img);
        // The image is not locked: a writer gets it at once.
        let o = skiff_cli(&["--rw", "write", "-a", s(&img), "/after", "ok"], b"");
        assert!(o.status.success(), "{}", stderr(&o));
    }
}

#[test]
fn kill_9_of_a_pooled_each_leaves_no_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let mut imgs = Vec::new();
    for i in 0..6 {
        imgs.push(guests::small_ext4(
            dir.path(),
            &format!("g{i}.img"),
            &format!("h{i}"),
        ));
    }
    let mut args: Vec<String> = vec![
        "--timeout".into(),
        "120".into(),
        "each".into(),
        "--pool".into(),
        "-j".into(),
        "2".into(),
    ];
    args.extend(imgs.iter().map(|p| p.display().to_string()));
    args.extend(["--".into(), "cat".into(), "/etc/hostname".into()]);
    let mut child = Command::new(skiff_bin())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let qemus = wait_for_qemus(child.id(), 2);
    assert!(!qemus.is_empty(), "the pool started no qemu");
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        gone_within(&qemus, Duration::from_secs(30)),
        "pooled qemus {qemus:?} outlived their client"
    );
    // Nothing the pool launched later either.
    std::thread::sleep(Duration::from_millis(500));
    assert!(qemus_of(child.id()).is_empty());
}

/// A Debian-like guest whose fstab names `/boot/efi`, a directory its root lacks.
fn guest_missing_mountpoint(dir: &Path) -> PathBuf {
    let work = tempfile::tempdir_in(dir).unwrap();
    let root = work.path().join("root");
    guests::write_tree(
        &root,
        &[
            ("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n"),
            ("etc/hostname", "lost-esp\n"),
            (
                "etc/fstab",
                &format!(
                    "UUID={} / ext4 defaults 0 1\nUUID={} /boot/efi vfat umask=0077 0 1\n",
                    guests::DEBIAN_ROOT_UUID,
                    guests::DEBIAN_ESP_UUID
                ),
            ),
            ("usr/bin/.keep", ""),
        ],
    );
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    let ext4 = work.path().join("root.ext4");
    guests::mkfs_ext4(&root, &ext4, "8M", &["-U", guests::DEBIAN_ROOT_UUID]);
    let esp = work.path().join("esp.vfat");
    guests::run(
        "mkfs.vfat",
        &["-C", "-F", "12", "-i", "12AB34CD", s(&esp), "8192"],
    );
    let img = dir.join("lost-esp.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(24 << 20)
        .unwrap();
    guests::sfdisk(
        &img,
        "label: gpt\nstart=2048, size=16384, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n\
         start=18432, size=16384, type=0FC63DAF-8483-4772-8E79-3D69C4773F88\n",
    );
    guests::dd_into(&esp, &img, 2048);
    guests::dd_into(&ext4, &img, 18432);
    img
}

#[test]
fn a_missing_mountpoint_is_a_warning_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let img = guest_missing_mountpoint(dir.path());
    let o = skiff_cli(&["cat", "-a", s(&img), "/etc/hostname"], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, b"lost-esp\n");
    let e = stderr(&o);
    assert!(
        e.contains("warning") && e.contains("/boot/efi") && e.lines().count() == 1,
        "{e:?}"
    );
    let o = skiff_cli(&["--json", "ls", "-a", s(&img), "/etc"], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let w = doc["warnings"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{doc}");
    assert!(w[0].as_str().unwrap().contains("/boot/efi"), "{doc}");
    assert!(
        doc["names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "hostname")
    );
    // -m is not forgiving: what the user asked for must mount.
    let o = skiff_cli(
        &[
            "cat",
            "-a",
            s(&img),
            "-m",
            "/dev/sda2",
            "-m",
            "/dev/sda1:/boot/efi",
            "/etc/hostname",
        ],
        b"",
    );
    assert!(!o.status.success());
}
