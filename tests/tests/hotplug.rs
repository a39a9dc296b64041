//! Disk hotplug under qemu through the library: an appliance launched with no disks gets
//! raw, qcow2 and ext4 disks one after another, loses one, keeps serving the others;
//! hotplug errors are typed; read-only images are byte-identical afterwards.

use skiff_tests::skiff::wire::ErrorKind;
use skiff_tests::skiff::{DriveOptions, Error, Format, MountOptions, Session};
use skiff_tests::{builder, contents, empty_image, pattern, qcow2_from, raw_image};
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: usize = 1 << 20;

/// An ext4 image of `size` holding `files` (made by `mkfs.ext4 -d`, no root needed).
fn ext4_image(dir: &Path, name: &str, size: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let root = dir.join(format!("{name}.root"));
    std::fs::create_dir_all(&root).unwrap();
    for (rel, data) in files {
        std::fs::write(root.join(rel), data).unwrap();
    }
    let out = dir.join(name);
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&root)
        .arg(&out)
        .arg(size)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("mkfs.ext4 is installed (tests/install-deps.sh)");
    assert!(st.success(), "mkfs.ext4");
    out
}

fn is_not_found(r: &Result<Vec<u8>, Error>) -> bool {
    matches!(r, Err(Error::Remote(e)) if e.kind == ErrorKind::NotFound)
}

fn check_bytes(s: &mut Session, dev: &str, want: &[u8]) {
    let n = want.len() as u64;
    for (off, len) in [(0u64, 4096u64), (n / 2 + 3, 1000), (n - 512, 512)] {
        let got = s.pread_device(dev, off, len).unwrap();
        assert!(
            got == want[off as usize..(off + len) as usize],
            "{dev} @{off}+{len}: bytes differ"
        );
    }
}

fn names(s: &Session) -> Vec<String> {
    s.devices().iter().map(|d| d.name.clone()).collect()
}

#[test]
fn add_three_disks_remove_one_readd() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = raw_image(d, "a.img", 2 * MIB, 21);
    let b_raw = raw_image(d, "b.raw", 3 * MIB, 22);
    let b = qcow2_from(&b_raw, d, "b.qcow2");
    let hello = b"hello from a hot-added ext4 disk\n".to_vec();
    let big = pattern(300_000, 23);
    let c = ext4_image(
        d,
        "c.ext4",
        "8M",
        &[("hello.txt", &hello), ("big.bin", &big)],
    );
    let images = [a.clone(), b.clone(), c.clone()];
    let before: Vec<Vec<u8>> = images.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let want_a = before[0].clone();
    let want_b = std::fs::read(&b_raw).unwrap();

    let mut s = builder().hotplug(true).launch().unwrap();
    assert!(s.devices().is_empty());
    assert_eq!(s.free_ports(), 8);

    let da = s
        .add_drive(&a, DriveOptions::readonly().format(Format::Raw))
        .unwrap();
    assert_eq!(da, "/dev/sda");
    check_bytes(&mut s, &da, &want_a);

    let db = s.add_drive(&b, DriveOptions::readonly()).unwrap(); // qcow2, detected
    assert_eq!(db, "/dev/sdb");
    check_bytes(&mut s, &db, &want_b);

    let dc = s.add_drive(&c, DriveOptions::readonly()).unwrap();
    assert_eq!(dc, "/dev/sdc");
    assert_eq!(names(&s), ["/dev/sda", "/dev/sdb", "/dev/sdc"]);
    let sizes: Vec<u64> = s.devices().iter().map(|d| d.size).collect();
    assert_eq!(sizes, [2 * MIB as u64, 3 * MIB as u64, 8 * MIB as u64]);
    assert!(s.devices().iter().all(|d| d.readonly));
    // A file through the filesystem calls.
    s.mount(&dc, "/", MountOptions::readonly()).unwrap();
    assert_eq!(s.read_file("/hello.txt").unwrap(), hello);
    assert!(s.read_file("/big.bin").unwrap() == big);
    assert_eq!(s.hot_drives().len(), 3);
    assert_eq!(s.free_ports(), 5);

    // Remove the qcow2 disk: its calls fail cleanly, the others keep working.
    s.remove_drive(&db).unwrap();
    assert_eq!(names(&s), ["/dev/sda", "/dev/sdc"]);
    assert!(is_not_found(&s.pread_device(&db, 0, 512)));
    s.ping().unwrap();
    check_bytes(&mut s, &da, &want_a);
    assert_eq!(s.read_file("/hello.txt").unwrap(), hello);
    // Not a hot-added disk (any more).
    assert!(matches!(
        s.remove_drive(&db),
        Err(Error::NotHotpluggable(_))
    ));

    // Remove the mounted ext4 disk: it is unmounted first, files are gone cleanly.
    s.remove_drive(&dc).unwrap();
    assert!(s.mounts().unwrap().is_empty());
    assert!(s.read_file("/hello.txt").is_err());
    assert!(is_not_found(&s.pread_device(&dc, 0, 512)));
    s.ping().unwrap();

    // Ports are reused, names are not: the qcow2 disk comes back as /dev/sdd.
    let dd = s.add_drive(&b, DriveOptions::readonly()).unwrap();
    assert_eq!(dd, "/dev/sdd");
    check_bytes(&mut s, &dd, &want_b);
    check_bytes(&mut s, &da, &want_a);
    assert_eq!(names(&s), ["/dev/sda", "/dev/sdd"]);
    s.shutdown().unwrap();

    for (p, want) in images.iter().zip(&before) {
        assert!(std::fs::read(p).unwrap() == *want, "{p:?} changed");
    }
}

#[test]
fn writable_hot_disk_is_flushed_on_removal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let q = qcow2_from(&raw_image(d, "w.raw", 2 * MIB, 31), d, "w.qcow2");
    let mut want = contents(&q, "qcow2");
    let mut s = builder().hotplug(true).launch().unwrap();
    let dev = s
        .add_drive(&q, DriveOptions::writable().format(Format::Qcow2))
        .unwrap();
    assert!(!s.devices()[0].readonly);
    let data = pattern(70_000, 32);
    s.pwrite_device(&dev, 4321, &data).unwrap();
    want[4321..4321 + data.len()].copy_from_slice(&data);
    s.remove_drive(&dev).unwrap();
    // Removed and flushed while qemu still runs: the file already holds the write.
    assert!(contents(&q, "qcow2") == want);
    skiff_tests::qemu_img(&["check", "-q", q.to_str().unwrap()]);
    s.shutdown().unwrap();
}

#[test]
fn hotplug_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = raw_image(d, "e.img", MIB, 41);
    let before = std::fs::read(&img).unwrap();

    // A session without hotplug.
    let mut plain = builder().launch().unwrap();
    assert!(matches!(
        plain.add_drive(&img, DriveOptions::readonly()),
        Err(Error::NotHotpluggable(_))
    ));
    plain.shutdown().unwrap();

    let mut s = builder().hotplug(true).launch().unwrap();
    // A file that vanished before the hot-add; a format skiff does not attach.
    let gone = raw_image(d, "gone.img", MIB, 42);
    std::fs::remove_file(&gone).unwrap();
    assert!(matches!(
        s.add_drive(&gone, DriveOptions::readonly()),
        Err(Error::DiskNotFound { path }) if path == gone
    ));
    let vdi = empty_image(d, "x.vdi", "vdi", "1M");
    assert!(matches!(
        s.add_drive(&vdi, DriveOptions::readonly()),
        Err(Error::UnknownFormat { .. })
    ));
    // The wrong format given explicitly: skiff reads no qcow2 header there and refuses
    // before qemu is asked; the session lives on.
    match s.add_drive(&img, DriveOptions::readonly().format(Format::Qcow2)) {
        Err(Error::ImageRefused { reason, .. }) => assert!(reason.contains("qcow2"), "{reason}"),
        other => panic!("{other:?}"),
    }
    s.ping().unwrap();

    // More disks than ports: the ninth is refused, the eight work.
    let mut devs = Vec::new();
    for _ in 0..8 {
        devs.push(s.add_drive(&img, DriveOptions::readonly()).unwrap());
    }
    match s.add_drive(&img, DriveOptions::readonly()) {
        Err(Error::NoFreePort { ports }) => assert_eq!(ports, 8),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.devices().len(), 8);
    for dev in &devs {
        assert!(s.pread_device(dev, 0, 4096).unwrap() == before[..4096]);
    }

    // A session restricted to read-only drives refuses a writable one.
    s.remove_drive(&devs[0]).unwrap();
    s.restrict_to_readonly_drives();
    assert!(matches!(
        s.add_drive(&img, DriveOptions::writable()),
        Err(Error::ReadOnlySession { .. })
    ));

    // qemu dying before a hotplug: a clear error, then the session is closed.
    let pid = s.qemu_pid().unwrap();
    let st = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    match s.add_drive(&img, DriveOptions::readonly()) {
        Err(Error::ApplianceExited { status, .. }) => {
            assert!(status.contains("signal 9"), "{status}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.add_drive(&img, DriveOptions::readonly()),
        Err(Error::Closed)
    ));
    assert!(std::fs::read(&img).unwrap() == before);
}

#[test]
fn cold_and_hot_disks_together() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cold = raw_image(d, "cold.img", MIB, 51);
    let hot = raw_image(d, "hot.img", 2 * MIB, 52);
    let (want_cold, want_hot) = (std::fs::read(&cold).unwrap(), std::fs::read(&hot).unwrap());
    // One root port: one hot disk at a time.
    let mut s = builder()
        .hotplug(true)
        .hotplug_ports(1)
        .add_drive(&cold, DriveOptions::readonly())
        .launch()
        .unwrap();
    assert_eq!(names(&s), ["/dev/sda"]);
    // The hot-added disk takes the next slot after the cold-plugged ones.
    let dev = s.add_drive(&hot, DriveOptions::readonly()).unwrap();
    assert_eq!(dev, "/dev/sdb");
    match s.add_drive(&hot, DriveOptions::readonly()) {
        Err(Error::NoFreePort { ports }) => assert_eq!(ports, 1),
        other => panic!("{other:?}"),
    }
    check_bytes(&mut s, "/dev/sda", &want_cold);
    check_bytes(&mut s, &dev, &want_hot);
    // A cold-plugged disk is not on a hotplug port: it cannot be removed.
    assert!(matches!(
        s.remove_drive("/dev/sda"),
        Err(Error::NotHotpluggable(_))
    ));
    s.remove_drive(&dev).unwrap();
    assert_eq!(names(&s), ["/dev/sda"]);
    check_bytes(&mut s, "/dev/sda", &want_cold);
    // The port is free again; the new disk gets a fresh name.
    let again = s.add_drive(&hot, DriveOptions::readonly()).unwrap();
    assert_eq!(again, "/dev/sdc");
    check_bytes(&mut s, &again, &want_hot);
    s.shutdown().unwrap();
}

/// The q35 profiles (not built in) still work: the appliance finds port I/O configuration
/// access there instead of microvm's ECAM; cold and hot disks, removal.
#[test]
fn q35_hotplug_profile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cold = raw_image(d, "cold.img", MIB, 61);
    let hot = raw_image(d, "hot.img", 2 * MIB, 62);
    let (want_cold, want_hot) = (std::fs::read(&cold).unwrap(), std::fs::read(&hot).unwrap());
    let profile = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../qemu-configs/q35-hotplug.args"
    );
    let b = builder()
        .profile(profile)
        .hotplug(true)
        .hotplug_ports(2)
        .add_drive(&cold, DriveOptions::readonly());
    let (_, args) = b.command_line().unwrap();
    let machine = &args[args.iter().position(|a| a == "-machine").unwrap() + 1];
    assert!(machine.starts_with("q35,"), "{machine}");
    let mut s = b.launch().unwrap();
    assert_eq!(names(&s), ["/dev/sda"]);
    let dev = s.add_drive(&hot, DriveOptions::readonly()).unwrap();
    assert_eq!(dev, "/dev/sdb");
    check_bytes(&mut s, "/dev/sda", &want_cold);
    check_bytes(&mut s, &dev, &want_hot);
    s.remove_drive(&dev).unwrap();
    assert_eq!(names(&s), ["/dev/sda"]);
    s.shutdown().unwrap();
}

#[test]
fn deferred_removal_frees_the_port_when_qemu_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let imgs: Vec<(PathBuf, Vec<u8>)> = (0..5)
        .map(|i| {
            let p = raw_image(d, &format!("d{i}.img"), MIB, 60 + i as u64);
            let want = std::fs::read(&p).unwrap();
            (p, want)
        })
        .collect();
    for ports in [1, 2] {
        let mut s = builder()
            .hotplug(true)
            .hotplug_ports(ports)
            .launch()
            .unwrap();
        let mut last = None;
        for (p, want) in &imgs {
            // With one port, this add waits for the previous disk's unplug to finish.
            let dev = s.add_drive(p, DriveOptions::readonly()).unwrap();
            check_bytes(&mut s, &dev, want);
            s.remove_drive_deferred(&dev).unwrap();
            // Gone at once for the caller and the appliance, even if qemu is not done.
            assert!(is_not_found(&s.pread_device(&dev, 0, 512)));
            assert!(s.hot_drives().is_empty());
            assert!(!names(&s).contains(&dev));
            last = Some(dev);
        }
        assert_eq!(last.as_deref(), Some("/dev/sde"));
        // A blocking removal still works after deferred ones.
        let dev = s.add_drive(&imgs[0].0, DriveOptions::readonly()).unwrap();
        s.remove_drive(&dev).unwrap();
        assert!(is_not_found(&s.pread_device(&dev, 0, 512)));
        s.shutdown().unwrap();
    }
    for (p, want) in &imgs {
        assert!(std::fs::read(p).unwrap() == *want);
    }
}
