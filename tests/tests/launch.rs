//! Boots the real appliance under qemu through the library: 0, 1 and 3 disks (raw and
//! qcow2), device sizes and bytes checked against the image files and `qemu-img`,
//! read-only and write sessions, crashes, version mismatch and launch errors.

use skiff_tests::skiff::wire::{self, Bytes, Request};
use skiff_tests::skiff::{DriveOptions, Error, Format};
use skiff_tests::{builder, contents, empty_image, pattern, qcow2_from, raw_image};
use std::path::Path;

const MIB: usize = 1 << 20;

/// Checks device bytes against `want` at the start, in the middle, across a chunk
/// boundary, and in the last sector.
fn check_reads(s: &mut skiff_tests::skiff::Session, dev: &str, want: &[u8]) {
    let n = want.len() as u64;
    let mut at = vec![
        (0u64, 512u64),
        (n / 2 + 7, 1000),
        (n - 512, 512),
        (n - 1, 1),
    ];
    if n > 2 * MIB as u64 {
        // Spans two MAX_CHUNK calls.
        at.push((MIB as u64 - 4096, 8192));
    }
    for (off, len) in at {
        let got = s.pread_device(dev, off, len).unwrap();
        assert_eq!(got.len() as u64, len, "{dev} @{off}+{len}");
        assert!(
            got == want[off as usize..(off + len) as usize],
            "{dev} @{off}+{len}: bytes differ"
        );
    }
}

#[test]
fn boots_with_no_disks() {
    let mut s = builder().launch().unwrap();
    assert!(s.devices().is_empty());
    s.ping().unwrap();
    assert!(s.refresh_devices().unwrap().is_empty());
    s.shutdown().unwrap();
}

#[test]
fn one_raw_disk_sizes_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let size = 3 * MIB + 512 * 5;
    let img = raw_image(dir.path(), "a.img", size, 1);
    let want = std::fs::read(&img).unwrap();
    let mut s = builder()
        .add_drive(&img, DriveOptions::readonly())
        .launch()
        .unwrap();
    let devs = s.devices().to_vec();
    assert_eq!(devs.len(), 1);
    assert_eq!(devs[0].name, "/dev/sda");
    assert_eq!(devs[0].size, size as u64);
    assert!(devs[0].readonly);
    check_reads(&mut s, "/dev/sda", &want);
    // A whole-device read of more than one chunk.
    assert!(s.pread_device("/dev/sda", 0, size as u64).unwrap() == want);
    // Past the end: short (here: empty) or an error, never made-up bytes.
    match s.pread_device("/dev/sda", size as u64, 512) {
        Ok(v) => assert!(v.is_empty()),
        Err(Error::Remote(_)) => {}
        Err(e) => panic!("{e}"),
    }
    s.shutdown().unwrap();
}

#[test]
fn three_disks_raw_and_qcow2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = raw_image(d, "a.img", 2 * MIB, 11);
    let b_raw = raw_image(d, "b.raw", 5 * MIB / 2, 12);
    let b = qcow2_from(&b_raw, d, "b.qcow2");
    let c = empty_image(d, "c.qcow2", "qcow2", "7M");
    let want = [
        std::fs::read(&a).unwrap(),
        std::fs::read(&b_raw).unwrap(),
        vec![0u8; 7 * MIB],
    ];
    let mut s = builder()
        .add_drive(&a, DriveOptions::readonly().format(Format::Raw))
        .add_drive(&b, DriveOptions::readonly()) // detected with qemu-img
        .add_drive(&c, DriveOptions::readonly().format(Format::Qcow2))
        .launch()
        .unwrap();
    let devs = s.devices().to_vec();
    let names: Vec<&str> = devs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["/dev/sda", "/dev/sdb", "/dev/sdc"]);
    for (dev, want) in devs.iter().zip(&want) {
        assert_eq!(dev.size, want.len() as u64, "{}", dev.name);
        check_reads(&mut s, &dev.name, want);
    }
    s.shutdown().unwrap();
}

#[test]
fn readonly_disk_refuses_writes_and_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let img = raw_image(dir.path(), "ro.img", MIB, 3);
    let before = std::fs::read(&img).unwrap();
    let mut s = builder()
        .add_drive(&img, DriveOptions::readonly())
        .launch()
        .unwrap();
    assert!(matches!(
        s.pwrite_device("/dev/sda", 0, &[0xAA; 512]),
        Err(Error::ReadOnly { .. })
    ));
    // Past the host-side check: the appliance itself must refuse too.
    let r = s.call(Request::PwriteDevice {
        device: "/dev/sda".into(),
        offset: 4096,
        data: Bytes(vec![0x55; 4096]),
    });
    assert!(matches!(r, Err(Error::Remote(_))), "{r:?}");
    // The session survives an error reply.
    s.ping().unwrap();
    assert!(s.pread_device("/dev/sda", 4096, 4096).unwrap() == before[4096..8192]);
    s.shutdown().unwrap();
    assert!(std::fs::read(&img).unwrap() == before);
}

#[test]
fn write_session_lands_in_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let raw = raw_image(d, "w.img", 3 * MIB, 4);
    let q = qcow2_from(&raw_image(d, "w2.raw", 2 * MIB, 5), d, "w2.qcow2");
    let mut want_raw = std::fs::read(&raw).unwrap();
    let mut want_q = contents(&q, "qcow2");
    let mut s = builder()
        .add_drive(&raw, DriveOptions::writable())
        .add_drive(&q, DriveOptions::writable().format(Format::Qcow2))
        .launch()
        .unwrap();
    assert!(s.devices().iter().all(|d| !d.readonly));
    let writes: [(&str, u64, Vec<u8>); 4] = [
        ("/dev/sda", 0, pattern(512, 100)),
        // Unaligned, and longer than one chunk (two calls).
        ("/dev/sda", MIB as u64 - 1000, pattern(MIB + 3000, 101)),
        ("/dev/sda", 3 * MIB as u64 - 512, pattern(512, 102)),
        ("/dev/sdb", 12345, pattern(7000, 103)),
    ];
    for (dev, off, data) in &writes {
        s.pwrite_device(dev, *off, data).unwrap();
        let target = if *dev == "/dev/sda" {
            &mut want_raw
        } else {
            &mut want_q
        };
        target[*off as usize..*off as usize + data.len()].copy_from_slice(data);
        // Read back through the appliance.
        assert!(s.pread_device(dev, *off, data.len() as u64).unwrap() == *data);
    }
    s.shutdown().unwrap();
    assert!(
        std::fs::read(&raw).unwrap() == want_raw,
        "raw file contents"
    );
    assert!(contents(&q, "qcow2") == want_q, "qcow2 contents");
    qemu_img_check(&q);
}

fn qemu_img_check(q: &Path) {
    skiff_tests::qemu_img(&["check", "-q", q.to_str().unwrap()]);
}

#[test]
fn panicking_kernel_is_a_crash_with_its_message() {
    let r = builder().kernel_cmdline("skiff.test=panic").launch();
    match r {
        Err(Error::ApplianceCrashed { message }) => {
            assert!(message.contains("skiff.test=panic"), "{message}")
        }
        other => panic!("expected a crash, got {:?}", other.err()),
    }
}

#[test]
fn cpu_exception_is_a_crash_naming_the_fault() {
    match builder().kernel_cmdline("skiff.test=fault").launch() {
        Err(Error::ApplianceCrashed { message }) => {
            assert!(message.contains("invalid opcode (vector 6"), "{message}")
        }
        other => panic!("expected a crash, got {:?}", other.err()),
    }
}

#[test]
fn stack_overflow_hits_the_guard_page() {
    match builder()
        .kernel_cmdline("skiff.test=stack-overflow")
        .launch()
    {
        Err(Error::ApplianceCrashed { message }) => {
            assert!(message.contains("appliance stack overflow"), "{message}")
        }
        other => panic!("expected a crash, got {:?}", other.err()),
    }
}

#[test]
fn mismatched_protocol_version_is_refused() {
    match builder().kernel_cmdline("skiff.test=bad-version").launch() {
        Err(Error::VersionMismatch { expected, got }) => {
            assert_eq!(expected, wire::PROTOCOL_VERSION);
            assert_eq!(got, wire::PROTOCOL_VERSION + 1000);
        }
        other => panic!("expected a version mismatch, got {:?}", other.err()),
    }
}

#[test]
fn killed_qemu_becomes_an_error() {
    let mut s = builder().launch().unwrap();
    let pid = s.qemu_pid().unwrap();
    let st = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    match s.ping() {
        Err(Error::ApplianceExited { status, .. }) => {
            assert!(status.contains("signal 9"), "{status}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.ping(), Err(Error::Closed)));
}

#[test]
fn launch_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.img");
    assert!(matches!(
        builder().add_drive(&missing, DriveOptions::readonly()).launch(),
        Err(Error::DiskNotFound { path }) if path == missing
    ));
    let vdi = empty_image(dir.path(), "x.vdi", "vdi", "1M");
    match builder().add_drive(&vdi, DriveOptions::readonly()).launch() {
        Err(Error::UnknownFormat { format, .. }) => assert_eq!(format, "vdi"),
        other => panic!("{:?}", other.err()),
    }
    let vmdk = empty_image(dir.path(), "x.vmdk", "vmdk", "1M");
    assert!(matches!(
        builder()
            .add_drive(&vmdk, DriveOptions::readonly())
            .launch(),
        Err(Error::UnknownFormat { .. })
    ));
    assert!(matches!(
        builder().qemu_binary("/nonexistent").launch(),
        Err(Error::QemuNotFound { .. })
    ));
}
