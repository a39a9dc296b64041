//! The volume layers stacked both ways through the dispatcher, as installers lay them
//! out: LVM on LUKS (Debian's "guided, encrypted LVM") and LUKS on LVM (an encrypted LV).
//! LVM metadata from the real tools (no device-mapper: `-an -Zn`), LUKS headers from
//! `cryptsetup luksFormat`; payloads written through the library's own `LuksDevice`
//! (checked against OpenSSL and cryptsetup in `luks/tests.rs`).

use super::luks::tests::{CHEAP_PBKDF2, PASS, SMALL_LUKS2, luks_format};
use super::luks::{self, Limits};
use super::lvm::tests::{Lab, check_tree, ext4, filesystems, lvm, mount, tag, tree};
use crate::block::{BlockDevice, MemDisk, shared};
use crate::part::testutil::TempImage;
use crate::rpc::Appliance;
use alloc::string::ToString;
use wire::{Bytes, Reply, Request};

/// The byte offset of the first extent of a fresh VG's first LV (it starts at PE 0).
fn pe_start(dev: &str) -> u64 {
    lvm(
        "pvs",
        &[
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "pe_start",
            dev,
        ],
    )
    .trim()
    .parse()
    .unwrap()
}

/// Writes `data` into the LUKS payload of the image at `path` (unlocked with PASS).
fn fill_payload(path: &str, data: &[u8]) {
    let m = shared(MemDisk::new(std::fs::read(path).unwrap(), false));
    let (_, mut d) = luks::open(m.clone(), PASS.as_bytes(), None, &Limits::default()).unwrap();
    assert!(d.size() >= data.len() as u64);
    d.write_at(0, data).unwrap();
    drop(d);
    let mut bytes = vec![0u8; m.borrow().size() as usize];
    m.borrow_mut().read_at(0, &mut bytes).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn open(a: &mut Appliance, dev: &str) -> String {
    match a.handle(Request::LuksOpen {
        device: dev.to_string(),
        key: Bytes(PASS.as_bytes().to_vec()),
        name: None,
    }) {
        Ok(Reply::Text(m)) => m,
        other => panic!("LuksOpen {dev}: {other:?}"),
    }
}

#[test]
fn lvm_on_luks() {
    let mut lab = Lab::default();
    // The decrypted payload: a PV whose VG has the root LV with a filesystem in it.
    let plain = TempImage::new("stack-plain", 24 << 20);
    let loopdev = lab.attach(plain.path(), None);
    let vg = format!("sklol{}", tag());
    lab.vg(&vg, &[&loopdev], &[]);
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-L", "8m", "-n", "root", &vg],
    );
    let start = pe_start(&loopdev);
    lab.detach();
    let src = tree(31);
    let fs = ext4(&src, 8 << 20);
    let mut bytes = std::fs::read(plain.path()).unwrap();
    let fsb = std::fs::read(fs.path()).unwrap();
    let at = start as usize;
    bytes[at..at + fsb.len()].copy_from_slice(&fsb);
    // The disk: a LUKS2 container around that payload.
    let disk = luks_format(
        32 << 20,
        &[&["--type", "luks2"], SMALL_LUKS2, CHEAP_PBKDF2].concat(),
    );
    fill_payload(disk.path(), &bytes);

    let mut a = Appliance::new();
    a.set_disk(0, disk.disk());
    // Locked: only the LUKS device is there.
    let fss = filesystems(&mut a);
    assert_eq!(fss.len(), 1);
    assert_eq!(fss[0].fstype, "crypto_LUKS");
    let mapped = open(&mut a, "/dev/sda");
    assert!(mapped.starts_with("/dev/mapper/luks-"), "{mapped}");
    // Opened: the mapping is a PV, and its LV shows up with the filesystem.
    let fss = filesystems(&mut a);
    let lv = format!("/dev/{vg}/root");
    assert!(
        fss.iter()
            .any(|f| f.device == mapped && f.fstype == "LVM2_member"),
        "{fss:?}"
    );
    assert!(
        fss.iter().any(|f| f.device == lv && f.fstype == "ext4"),
        "{fss:?}"
    );
    let Reply::Pvs(pvs) = a.handle(Request::Pvs).unwrap() else {
        panic!()
    };
    assert_eq!(pvs.len(), 1);
    assert_eq!(pvs[0].name, mapped);
    mount(&mut a, &format!("/dev/mapper/{vg}-root"), "/", true);
    assert!(check_tree(&mut a, &src, "/") > 0);
    // The mapping cannot close while an LV on it is mounted.
    let e = a
        .handle(Request::LuksClose {
            name: mapped.clone(),
        })
        .unwrap_err();
    assert_eq!(e.kind, wire::ErrorKind::Busy, "{e:?}");
    a.handle(Request::Umount {
        mountpoint: "/".to_string(),
    })
    .unwrap();
    a.handle(Request::LuksClose { name: mapped }).unwrap();
    assert!(!filesystems(&mut a).iter().any(|f| f.device == lv));
}

#[test]
fn luks_on_lvm() {
    let mut lab = Lab::default();
    let disk = TempImage::new("stack-disk", 40 << 20);
    let loopdev = lab.attach(disk.path(), None);
    let vg = format!("sklul{}", tag());
    lab.vg(&vg, &[&loopdev], &[]);
    lvm(
        "lvcreate",
        &["-an", "-Zn", "-y", "-L", "24m", "-n", "secret", &vg],
    );
    let start = pe_start(&loopdev);
    lab.detach();
    // The LV's contents: a LUKS1 container holding an ext4 filesystem.
    let lvimg = luks_format(24 << 20, &[&["--type", "luks1"], CHEAP_PBKDF2].concat());
    let src = tree(32);
    let fs = ext4(&src, 8 << 20);
    fill_payload(lvimg.path(), &std::fs::read(fs.path()).unwrap());
    let mut bytes = std::fs::read(disk.path()).unwrap();
    let lvb = std::fs::read(lvimg.path()).unwrap();
    let at = start as usize;
    bytes[at..at + lvb.len()].copy_from_slice(&lvb);
    std::fs::write(disk.path(), &bytes).unwrap();

    let mut a = Appliance::new();
    a.set_disk(0, disk.disk());
    let lv = format!("/dev/{vg}/secret");
    let fss = filesystems(&mut a);
    assert!(
        fss.iter()
            .any(|f| f.device == lv && f.fstype == "crypto_LUKS"),
        "{fss:?}"
    );
    // LuksInfo finds the LUKS header on the LV.
    let Reply::LuksInfo(info) = a.handle(Request::LuksInfo).unwrap() else {
        panic!()
    };
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0].device, lv);
    assert_eq!(info[0].version, 1);
    let mapped = open(&mut a, &format!("/dev/mapper/{vg}-secret"));
    assert!(
        filesystems(&mut a)
            .iter()
            .any(|f| f.device == mapped && f.fstype == "ext4")
    );
    mount(&mut a, &mapped, "/", true);
    assert!(check_tree(&mut a, &src, "/") > 0);
    // The mapping goes with its disk.
    a.remove_disk(0);
    let Reply::Mounts(m) = a.handle(Request::Mounts).unwrap() else {
        panic!()
    };
    assert!(m.is_empty(), "{m:?}");
    assert!(filesystems(&mut a).is_empty());
}
