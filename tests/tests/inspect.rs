//! Inspection under qemu: a Debian-like GPT disk (ESP + ext4 root, fstab by UUID,
//! `/bin -> usr/bin`, a real x86_64 `/bin/sh`) and a Fedora-like MBR disk (release file
//! fallback, `/etc/sysconfig/network`, fstab by path and LABEL), through the library and
//! the CLI (`--json` parsed back), and commands without `-m` mounting the guest the way
//! it mounts itself.

use serde_json::Value;
use skiff_tests::guests::{self, DEBIAN_ESP_UUID, DEBIAN_ROOT_UUID};
use skiff_tests::skiff::DriveOptions;
use skiff_tests::skiff::inspect::{OsType, inspect_os, mount_plan};
use skiff_tests::{builder, qcow2_from};

#[test]
fn debian_gpt_through_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let img = guests::debian_gpt(dir.path(), "debian.img", "deb-host");
    // The qcow2 copy inspects the same.
    let q = qcow2_from(&img, dir.path(), "debian.qcow2");
    for disk in [&img, &q] {
        let mut s = builder()
            .add_drive(disk, DriveOptions::readonly())
            .launch()
            .unwrap();
        let found = inspect_os(&mut s).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        let os = &found[0];
        assert_eq!(os.root, "/dev/sda2");
        assert_eq!(os.os_type, OsType::Linux);
        assert_eq!(os.distro.as_deref(), Some("debian"));
        // As libguestfs (tests/oracles/debian.xml): Debian's os-release names the major
        // version only, so /etc/debian_version (12.5) is read instead.
        assert_eq!(os.version.as_deref(), Some("12.5"));
        assert_eq!((os.major_version, os.minor_version), (Some(12), Some(5)));
        assert_eq!(os.product_name.as_deref(), Some("12.5"));
        assert_eq!(os.osinfo.as_deref(), Some("debian12"));
        assert_eq!(os.package_management.as_deref(), Some("apt"));
        assert_eq!(os.hostname.as_deref(), Some("deb-host"));
        assert_eq!(os.arch.as_deref(), Some("x86_64"));
        assert_eq!(os.package_format.as_deref(), Some("deb"));
        let mps: Vec<(&str, Option<&str>)> = os
            .fstab
            .iter()
            .map(|e| (e.mountpoint.as_str(), e.device.as_deref()))
            .collect();
        assert_eq!(
            mps,
            [
                ("/", Some("/dev/sda2")),
                ("/boot/efi", Some("/dev/sda1")),
                ("/proc", None)
            ]
        );
        assert_eq!(os.fstab[0].spec, format!("UUID={DEBIAN_ROOT_UUID}"));
        assert_eq!(os.fstab[1].spec, format!("UUID={DEBIAN_ESP_UUID}"));
        // Inspection leaves nothing mounted; the plan mounts root, then the ESP.
        assert!(s.mounts().unwrap().is_empty());
        let plan = mount_plan(os);
        assert_eq!(
            plan,
            [
                ("/dev/sda2".to_string(), "/".to_string()),
                ("/dev/sda1".to_string(), "/boot/efi".to_string())
            ]
        );
        for (dev, mp) in &plan {
            s.mount(dev, mp, skiff_tests::skiff::MountOptions::readonly())
                .unwrap();
        }
        assert_eq!(s.read_file("/boot/efi/hello.txt").unwrap(), b"efi\n");
        s.shutdown().unwrap();
    }
}

#[test]
fn fedora_mbr_through_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let img = guests::fedora_mbr(dir.path(), "fedora.img");
    let mut s = builder()
        .add_drive(&img, DriveOptions::readonly())
        .launch()
        .unwrap();
    let found = inspect_os(&mut s).unwrap();
    assert_eq!(
        found.len(),
        1,
        "the /boot filesystem is not a root: {found:?}"
    );
    let os = &found[0];
    assert_eq!(os.root, "/dev/sda2");
    assert_eq!(os.distro.as_deref(), Some("fedora"));
    assert_eq!(os.version.as_deref(), Some("39"));
    assert_eq!(
        os.product_name.as_deref(),
        Some("Fedora release 39 (Thirty Nine)")
    );
    assert_eq!(os.hostname.as_deref(), Some("fedora-vm"));
    assert_eq!(os.arch.as_deref(), Some("x86_64"));
    assert_eq!(os.package_format.as_deref(), Some("rpm"));
    let devs: Vec<Option<&str>> = os.fstab.iter().map(|e| e.device.as_deref()).collect();
    assert_eq!(devs, [Some("/dev/sda2"), Some("/dev/sda1"), None]);
    assert_eq!(
        mount_plan(os),
        [
            ("/dev/sda2".to_string(), "/".to_string()),
            ("/dev/sda1".to_string(), "/boot".to_string())
        ]
    );
    s.shutdown().unwrap();
}

#[test]
fn cli_inspect_json_and_mounting_like_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let deb = guests::debian_gpt(dir.path(), "debian.img", "cli-host");
    let fed = guests::fedora_mbr(dir.path(), "fedora.img");
    let d = deb.to_str().unwrap();
    let f = fed.to_str().unwrap();

    // Two disks, one appliance: both roots, in device order.
    let o = guests::skiff_cli(&["inspect", "--json", "-a", d, "-a", f], b"");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one JSON document: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let oses = v["operating_systems"].as_array().unwrap();
    assert_eq!(oses.len(), 2, "{v}");
    assert_eq!(oses[0]["root"], "/dev/sda2");
    assert_eq!(oses[0]["type"], "linux");
    assert_eq!(oses[0]["hostname"], "cli-host");
    assert_eq!(oses[0]["arch"], "x86_64");
    assert_eq!(oses[0]["fstab"][1]["device"], "/dev/sda1");
    assert_eq!(oses[1]["root"], "/dev/sdb2");
    assert_eq!(oses[1]["distro"], "fedora");
    // /dev/vda2 in the second guest's fstab is its own first disk: here /dev/sda2
    // (disk position in the guest), LABEL=boot the second disk's /dev/sdb1.
    assert_eq!(oses[1]["fstab"][1]["device"], "/dev/sdb1");

    // Text output.
    let o = guests::skiff_cli(&["inspect", "-a", d], b"");
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("hostname: cli-host"), "{text}");
    assert!(text.contains("/boot/efi /dev/sda1"), "{text}");

    // No -m on a disk with two filesystems: root at /, the ESP at /boot/efi.
    let o = guests::skiff_cli(&["cat", "-a", d, "/boot/efi/hello.txt"], b"");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, b"efi\n");
    let o = guests::skiff_cli(&["cat", "-a", f, "/boot/vmlinuz"], b"");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, b"not a kernel\n");

    // A disk with no OS: an empty list, not an error.
    let blank = guests::small_ext4(dir.path(), "blank.img", "x");
    let o = guests::skiff_cli(&["inspect", "--json", "-a", blank.to_str().unwrap()], b"");
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["operating_systems"].as_array().unwrap().len(), 0);
}
