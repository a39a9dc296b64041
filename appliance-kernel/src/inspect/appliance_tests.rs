//! End to end through the RPC dispatcher: a guest tree holding a dpkg status file, an
//! rpm sqlite database (reached through two directories, one a symlink to the other),
//! pacman and apk databases and a Windows system root with hivexregedit-made hives,
//! put in an ext4 filesystem (`mkfs.ext4 -d`) on an MBR disk, with a GPT disk beside
//! it; then `Applications` (paged) and `WindowsFacts` against the tools' listings.

use super::regf_tests::Reg;
use super::tests::{dpkg_installed_count, have, rpm_sqlite_db};
use crate::block::{MemDisk, shared};
use crate::part::testutil::{TempDir, run};
use crate::rpc::Appliance;
use alloc::string::ToString;
use std::collections::BTreeSet;
use wire::{Application, DriveTarget, PackageFormat, Reply, Request};

const MBR_ID: u32 = 0x1234_abcd;
const GPT_PART_GUID: &str = "5e4d3c2b-1a09-4f8e-8d7c-6b5a49382716";

/// A PE file for `cmd.exe`: a real one when the host has one, else a minimal header.
fn pe_file() -> Vec<u8> {
    for p in [
        "/usr/lib/python3/dist-packages/pip/_vendor/distlib/w64.exe",
        "/usr/share/python-wheels/w64.exe",
    ] {
        if let Ok(d) = std::fs::read(p) {
            return d;
        }
    }
    let mut h = vec![0u8; 1024];
    h[..2].copy_from_slice(b"MZ");
    h[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    h[0x80..0x84].copy_from_slice(b"PE\0\0");
    h[0x84..0x86].copy_from_slice(&0x8664u16.to_le_bytes());
    // Optional header magic PE32+, so `file` recognises it.
    h[0x94..0x96].copy_from_slice(&0xf0u16.to_le_bytes());
    h[0x98..0x9a].copy_from_slice(&0x20bu16.to_le_bytes());
    h
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn guid_bytes(g: &str) -> Vec<u8> {
    let hex: String = g.chars().filter(|c| *c != '-').collect();
    let b: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut out = vec![b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]];
    out.extend_from_slice(&b[8..]);
    out
}

fn software_hive(dir: &str) -> Vec<u8> {
    let mut r = Reg::new();
    r.key("Microsoft\\Windows NT\\CurrentVersion")
        .sz("ProductName", "Windows 10 Pro")
        .sz("InstallationType", "Client")
        .sz("EditionID", "Professional")
        .sz("CurrentVersion", "6.3")
        .sz("CurrentBuildNumber", "19045")
        .dword("CurrentMajorVersionNumber", 10)
        .dword("CurrentMinorVersionNumber", 0);
    r.key("Microsoft\\Windows\\CurrentVersion\\Uninstall\\{AC76BA86-7AD7-1033-7B44-AC0F074E4100}")
        .sz("DisplayName", "Adobe Acrobat Reader DC")
        .sz("DisplayVersion", "23.001.20093")
        .sz("Publisher", "Adobe Systems Incorporated")
        .sz(
            "InstallLocation",
            "C:\\Program Files (x86)\\Adobe\\Acrobat Reader DC\\",
        )
        .sz("URLInfoAbout", "https://www.adobe.com")
        .sz("Comments", "Line one\r\nLine two")
        .sz("InstallDate", "20240229");
    r.key("Microsoft\\Windows\\CurrentVersion\\Uninstall\\NoDisplayName")
        .sz("DisplayVersion", "1.0");
    r.key("WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\7-Zip")
        .sz("DisplayName", "7-Zip 23.01 (x64)")
        .sz("DisplayVersion", "23.01")
        .sz("Publisher", "Igor Pavlov");
    r.build(dir, "software")
}

fn system_hive(dir: &str) -> Vec<u8> {
    let mut r = Reg::new();
    r.key("Select").dword("Current", 2).dword("Default", 2);
    r.key("ControlSet001\\Services\\Tcpip\\Parameters")
        .sz("Hostname", "WRONG-SET");
    r.key("ControlSet002\\Services\\Tcpip\\Parameters")
        .sz("Hostname", "win-guest");
    r.key("ControlSet002\\Control\\ComputerName\\ComputerName")
        .sz("ComputerName", "WIN-GUEST");
    let mbr: Vec<u8> = [
        MBR_ID.to_le_bytes().to_vec(),
        (1u64 << 20).to_le_bytes().to_vec(),
    ]
    .concat();
    let gpt = [b"DMIO:ID:".to_vec(), guid_bytes(GPT_PART_GUID)].concat();
    let cdrom = utf16("\\??\\IDE#CdRomQEMU_QEMU_DVD-ROM#5&1");
    r.key("MountedDevices")
        .raw("\\DosDevices\\C:", 3, &mbr)
        .raw("\\DosDevices\\d:", 3, &gpt)
        .raw("\\DosDevices\\E:", 3, &cdrom)
        .raw(
            "\\??\\Volume{0a1b2c3d-0000-0000-0000-100000000000}",
            3,
            &mbr,
        );
    r.build(dir, "system")
}

/// The guest tree, as an ext4 filesystem image.
fn guest_fs(t: &TempDir) -> (Vec<u8>, Vec<String>) {
    let root = format!("{}/root", t.path());
    let mk = |p: &str| std::fs::create_dir_all(format!("{root}/{p}")).unwrap();
    for d in [
        "var/lib/dpkg",
        "usr/lib/sysimage",
        "var/lib/pacman/local/linux-6.9.7.arch1-1",
        "var/lib/pacman/local/broken-1-1",
        "lib/apk/db",
        "Windows/System32/config",
        "etc",
    ] {
        mk(d);
    }
    std::fs::copy(
        "/var/lib/dpkg/status",
        format!("{root}/var/lib/dpkg/status"),
    )
    .unwrap();
    let (db, oracle) = rpm_sqlite_db(t.path());
    mk("var/lib/rpm");
    std::fs::copy(
        format!("{db}/rpmdb.sqlite"),
        format!("{root}/var/lib/rpm/rpmdb.sqlite"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../../../var/lib/rpm",
        format!("{root}/usr/lib/sysimage/rpm"),
    )
    .unwrap();
    std::fs::write(
        format!("{root}/var/lib/pacman/local/linux-6.9.7.arch1-1/desc"),
        "%NAME%\nlinux\n\n%VERSION%\n6.9.7.arch1-1\n\n%DESC%\nThe Linux kernel\n\n%ARCH%\nx86_64\n\n",
    )
    .unwrap();
    std::fs::write(
        format!("{root}/var/lib/pacman/local/broken-1-1/desc"),
        "%NAME%\nbroken\n",
    )
    .unwrap();
    std::fs::write(
        format!("{root}/lib/apk/db/installed"),
        "P:musl\nV:1.2.5-r0\nA:x86_64\nT:the musl c library\nU:https://musl.libc.org/\n\n",
    )
    .unwrap();
    std::fs::write(
        format!("{root}/Windows/System32/config/SOFTWARE"),
        software_hive(t.path()),
    )
    .unwrap();
    std::fs::write(
        format!("{root}/Windows/System32/config/SYSTEM"),
        system_hive(t.path()),
    )
    .unwrap();
    std::fs::write(format!("{root}/Windows/System32/cmd.exe"), pe_file()).unwrap();
    let img = format!("{}/fs.img", t.path());
    run(
        "mkfs.ext4",
        &["-q", "-F", "-E", "root_owner=0:0", "-d", &root, &img, "40M"],
        None,
    );
    (std::fs::read(img).unwrap(), oracle)
}

fn disks(t: &TempDir, fs: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let a = format!("{}/a.img", t.path());
    let f = std::fs::File::create(&a).unwrap();
    f.set_len((1 << 20) + fs.len() as u64 + (1 << 20)).unwrap();
    drop(f);
    run(
        "sfdisk",
        &["-q", &a],
        Some(&format!(
            "label: dos\nlabel-id: {MBR_ID:#x}\nstart=2048, size={}, type=83\n",
            fs.len() / 512
        )),
    );
    let mut disk_a = std::fs::read(&a).unwrap();
    disk_a[1 << 20..(1 << 20) + fs.len()].copy_from_slice(fs);
    let b = format!("{}/b.img", t.path());
    std::fs::File::create(&b).unwrap().set_len(8 << 20).unwrap();
    run(
        "sgdisk",
        &["-n", "1:2048:+2M", "-u", &format!("1:{GPT_PART_GUID}"), &b],
        None,
    );
    (disk_a, std::fs::read(&b).unwrap())
}

#[test]
fn applications_and_windows_facts_through_the_dispatcher() {
    assert!(
        have("mkfs.ext4") && have("sfdisk") && have("sgdisk"),
        "e2fsprogs, fdisk and gdisk are needed"
    );
    let t = TempDir::new("inspect-e2e");
    let (fs, rpm_oracle) = guest_fs(&t);
    let (a, b) = disks(&t, &fs);
    let mut app = Appliance::new();
    app.set_disk(0, shared(MemDisk::new(a, true)));
    app.set_disk(1, shared(MemDisk::new(b, true)));
    app.handle(Request::Mount {
        device: "/dev/sda1".to_string(),
        mountpoint: "/".to_string(),
        readonly: true,
        fstype: None,
    })
    .unwrap();

    // Page through the applications.
    let mut all: Vec<Application> = Vec::new();
    let mut start = 0;
    let mut pages = 0;
    let dbs = loop {
        let Reply::Applications(p) = app
            .handle(Request::Applications {
                root: "/".to_string(),
                start,
            })
            .unwrap()
        else {
            panic!("not an Applications reply")
        };
        pages += 1;
        assert_eq!(
            p.total as usize,
            all.len() + p.applications.len() + p.next.map_or(0, |n| p.total - n) as usize
        );
        all.extend(p.applications);
        match p.next {
            Some(n) => start = n,
            None => break p.databases,
        }
    };
    assert!(pages > 3, "{pages} pages");
    let formats: Vec<PackageFormat> = dbs.iter().map(|d| d.format).collect();
    assert_eq!(
        formats,
        [
            PackageFormat::Dpkg,
            PackageFormat::RpmSqlite,
            PackageFormat::Pacman,
            PackageFormat::Apk,
            PackageFormat::WindowsRegistry
        ],
        "{dbs:?}"
    );
    assert!(dbs.iter().all(|d| d.error.is_none()), "{dbs:?}");
    assert_eq!(dbs[0].path, "/var/lib/dpkg/status");
    assert_eq!(dbs[0].count as usize, dpkg_installed_count("/var/lib/dpkg"));
    assert_eq!(dbs[1].path, "/var/lib/rpm/rpmdb.sqlite");
    assert_eq!(dbs[1].count as usize, rpm_oracle.len());
    assert_eq!((dbs[2].count, dbs[2].skipped), (1, 1));
    assert_eq!(dbs[3].count, 1);
    assert_eq!(dbs[4].path, "/Windows/System32/config/SOFTWARE");
    assert_eq!(dbs[4].count, 2);
    assert_eq!(all.len() as u64, dbs.iter().map(|d| d.count).sum::<u64>());
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| {
        (&a.name, &a.version, &a.release, &a.arch).cmp(&(&b.name, &b.version, &b.release, &b.arch))
    });
    assert_eq!(sorted, all, "sorted by name");
    let rpm_names: BTreeSet<&str> = rpm_oracle
        .iter()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert!(rpm_names.iter().all(|n| all.iter().any(|a| a.name == *n)));
    let acro = all
        .iter()
        .find(|a| a.name == "{AC76BA86-7AD7-1033-7B44-AC0F074E4100}")
        .unwrap();
    assert_eq!(acro.display_name, "Adobe Acrobat Reader DC");
    assert_eq!(acro.version, "23.001.20093");
    assert_eq!(acro.publisher, "Adobe Systems Incorporated");
    assert_eq!(
        acro.install_path,
        "C:\\Program Files (x86)\\Adobe\\Acrobat Reader DC\\"
    );
    assert_eq!(acro.url, "https://www.adobe.com");
    assert_eq!(acro.description, "Line one\nLine two");
    assert_eq!(acro.install_time, Some(1_709_164_800));
    assert!(
        all.iter()
            .any(|a| a.name == "7-Zip" && a.display_name == "7-Zip 23.01 (x64)")
    );
    assert!(!all.iter().any(|a| a.name == "NoDisplayName"));

    // The Windows facts.
    let Reply::WindowsFacts(w) = app
        .handle(Request::WindowsFacts {
            root: "/".to_string(),
        })
        .unwrap()
    else {
        panic!("not a WindowsFacts reply")
    };
    assert!(w.warnings.is_empty(), "{:?}", w.warnings);
    assert_eq!(w.systemroot, "/Windows");
    assert_eq!(
        w.software_hive.as_deref(),
        Some("/Windows/System32/config/SOFTWARE")
    );
    assert_eq!(
        w.system_hive.as_deref(),
        Some("/Windows/System32/config/SYSTEM")
    );
    assert_eq!(w.product_name.as_deref(), Some("Windows 10 Pro"));
    assert_eq!(w.product_variant.as_deref(), Some("Client"));
    assert_eq!(w.edition_id.as_deref(), Some("Professional"));
    assert_eq!((w.major_version, w.minor_version), (Some(10), Some(0)));
    assert_eq!(w.build.as_deref(), Some("19045"));
    assert_eq!(w.current_control_set.as_deref(), Some("ControlSet002"));
    assert_eq!(w.hostname.as_deref(), Some("win-guest"));
    assert!(w.dirty_hives.is_empty());
    // `file` is the oracle for the PE machine.
    let cmd = format!("{}/root/Windows/System32/cmd.exe", t.path());
    let desc = run("file", &["-b", &cmd], None);
    let expect = if desc.contains("x86-64") {
        "x86_64"
    } else if desc.contains("Aarch64") {
        "aarch64"
    } else {
        "i386"
    };
    assert_eq!(w.arch.as_deref(), Some(expect), "{desc}");
    // Drive letters: C: by MBR signature and offset, D: by GPT partition GUID, E: a
    // CD-ROM (raw), and the volume GUID entry is not a drive letter.
    let letters: Vec<char> = w.drive_mappings.iter().map(|d| d.letter).collect();
    assert_eq!(letters, ['C', 'D', 'E']);
    assert_eq!(
        w.drive_mappings[0].target,
        DriveTarget::Mbr {
            disk_signature: MBR_ID,
            offset: 1 << 20
        }
    );
    assert_eq!(w.drive_mappings[0].device.as_deref(), Some("/dev/sda1"));
    assert_eq!(
        w.drive_mappings[1].target,
        DriveTarget::Gpt {
            partition_guid: GPT_PART_GUID.to_string()
        }
    );
    assert_eq!(w.drive_mappings[1].device.as_deref(), Some("/dev/sdb1"));
    assert!(matches!(
        w.drive_mappings[2].target,
        DriveTarget::Other { .. }
    ));
    assert_eq!(w.drive_mappings[2].device, None);

    // Not a Windows root, not a directory.
    let e = app
        .handle(Request::WindowsFacts {
            root: "/etc".to_string(),
        })
        .unwrap_err();
    assert_eq!(e.kind, wire::ErrorKind::NotFound);
    let e = app
        .handle(Request::Applications {
            root: "/nonexistent".to_string(),
            start: 0,
        })
        .unwrap_err();
    assert_eq!(e.kind, wire::ErrorKind::NotADirectory);
}

#[test]
fn boot_ini_names_a_non_standard_systemroot() {
    assert!(have("mkfs.ext4"), "e2fsprogs is needed");
    let t = TempDir::new("inspect-bootini");
    let root = format!("{}/root", t.path());
    std::fs::create_dir_all(format!("{root}/Operating Systems/XP/system32/config")).unwrap();
    std::fs::write(
        format!("{root}/BOOT.INI"),
        "[boot loader]\r\ntimeout=30\r\ndefault=multi(0)disk(0)rdisk(0)partition(1)\\NOPE\r\n\
         [operating systems]\r\nmulti(0)disk(0)rdisk(0)partition(1)\\NOPE=\"Missing\" /fastdetect\r\n\
         multi(0)disk(0)rdisk(0)partition(1)\\OPERATING SYSTEMS\\XP=\"Microsoft Windows XP Professional\" /noexecute=optin\r\n",
    )
    .unwrap();
    std::fs::write(
        format!("{root}/Operating Systems/XP/system32/cmd.exe"),
        pe_file(),
    )
    .unwrap();
    let mut r = Reg::new();
    r.key("Microsoft\\Windows NT\\CurrentVersion")
        .sz("ProductName", "Microsoft Windows XP")
        .sz("CurrentVersion", "5.1")
        .sz("CurrentBuildNumber", "2600");
    std::fs::write(
        format!("{root}/Operating Systems/XP/system32/config/software"),
        r.build(t.path(), "xp-software"),
    )
    .unwrap();
    let img = format!("{}/fs.img", t.path());
    run("mkfs.ext4", &["-q", "-F", "-d", &root, &img, "8M"], None);
    let mut app = Appliance::new();
    app.set_disk(0, shared(MemDisk::new(std::fs::read(&img).unwrap(), true)));
    app.handle(Request::Mount {
        device: "/dev/sda".to_string(),
        mountpoint: "/".to_string(),
        readonly: true,
        fstype: None,
    })
    .unwrap();
    let Reply::WindowsFacts(w) = app
        .handle(Request::WindowsFacts {
            root: "/".to_string(),
        })
        .unwrap()
    else {
        panic!("not a WindowsFacts reply")
    };
    assert_eq!(w.systemroot, "/Operating Systems/XP");
    assert_eq!(
        w.software_hive.as_deref(),
        Some("/Operating Systems/XP/system32/config/software")
    );
    assert_eq!(w.product_name.as_deref(), Some("Microsoft Windows XP"));
    // No CurrentMajorVersionNumber: CurrentVersion "5.1".
    assert_eq!((w.major_version, w.minor_version), (Some(5), Some(1)));
    assert_eq!(w.build.as_deref(), Some("2600"));
    assert_eq!(w.system_hive, None);
    assert!(
        w.warnings.iter().any(|m| m.contains("SYSTEM")),
        "{:?}",
        w.warnings
    );
}
