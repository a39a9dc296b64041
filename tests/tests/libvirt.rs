//! The libvirt backend against `qemu:///system` (built only with the `libvirt` feature;
//! each test prints a reason and passes without checking anything when libvirtd cannot be
//! reached — tests/run.sh starts it). Launch and read device bytes and a file; the
//! transient domain is gone after the session and after `kill -9` of the client; `-d` on
//! a defined, shut-off guest with two disks; `--volume`; a running guest refuses `--rw`;
//! a bad URI and an unknown domain are clear errors; disk hotplug through libvirt
//! (attach, read, detach; the other disk keeps working, the removed one's calls fail).
//! Every domain, pool and volume made here is removed again (guards).
#![cfg(feature = "libvirt")]

use skiff_tests::skiff::libvirt::{domain_drives, volume_drive};
use skiff_tests::skiff::wire::ErrorKind;
use skiff_tests::skiff::{Backend, DriveOptions, Error, Format, MountOptions};
use skiff_tests::{builder, pattern, qcow2_from, raw_image};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const URI: &str = "qemu:///system";

/// The tests count the appliance domains of this process: one test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
const MIB: usize = 1 << 20;

fn virsh(args: &[&str]) -> (bool, String) {
    let out = Command::new("virsh")
        .arg("-c")
        .arg(URI)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("virsh is installed (SKIFF_DEPS_LIBVIRT=1 tests/install-deps.sh)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// False (with the reason printed) when libvirtd is not reachable here.
fn libvirt_up() -> bool {
    match Command::new("virsh")
        .args(["-c", URI, "version"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!(
                "SKIPPED: libvirtd not reachable at {URI}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("SKIPPED: virsh not installed: {e}");
            false
        }
    }
}

/// Every domain name (running or defined).
fn domains() -> Vec<String> {
    let (ok, text) = virsh(&["list", "--all", "--name"]);
    assert!(ok, "virsh list: {text}");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// The appliance domains a process (by pid) has on the host: `skiff-<pid>-...`.
fn appliance_domains(pid: u32) -> Vec<String> {
    let prefix = format!("skiff-{pid}-");
    domains()
        .into_iter()
        .filter(|d| d.starts_with(&prefix))
        .collect()
}

/// Waits up to 60 s for `cond`.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// A temp dir libvirt's qemu (user libvirt-qemu) can traverse: tempfile makes 0700 ones.
fn qemu_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn libvirt_builder() -> skiff_tests::skiff::Builder {
    builder().backend(Backend::Libvirt {
        uri: Some(URI.into()),
    })
}

/// Undefines/destroys a domain, or destroys a pool, when dropped.
struct Cleanup(Vec<&'static str>, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for cmd in &self.0 {
            let _ = virsh(&[cmd, &self.1]);
        }
        remove_log(&self.1);
    }
}

/// Removes a (gone) domain's log file, which libvirt keeps.
fn remove_log(domain: &str) {
    let _ = std::fs::remove_file(format!("/var/log/libvirt/qemu/{domain}.log"));
}

/// `target/<profile>/skiff`, next to this test's `deps/` directory.
/// `skiff ARGS` must succeed; its output.
fn skiff_ok(args: &[&str]) -> std::process::Output {
    let out = Command::new(skiff_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skiff {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `skiff ARGS` must fail; its stderr.
fn skiff_fails(args: &[&str]) -> String {
    let out = Command::new(skiff_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "skiff {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn skiff_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().and_then(Path::parent).unwrap().join("skiff");
    assert!(
        p.exists(),
        "{p:?} missing: build it (cargo build -p skiff-cli; cargo test --workspace builds it)"
    );
    p
}

#[test]
fn launch_reads_bytes_and_a_file_and_the_domain_goes() {
    let _serial = serial();
    if !libvirt_up() {
        return;
    }
    let dir = qemu_dir();
    let raw = raw_image(dir.path(), "a.img", 2 * MIB + 4096, 7);
    let want = std::fs::read(&raw).unwrap();
    // An ext4 filesystem made by mkfs.ext4 -d with one file.
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let text = pattern(10_000, 3);
    std::fs::write(src.join("hello.bin"), &text).unwrap();
    let fs_img = dir.path().join("fs.img");
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&src)
        .arg(&fs_img)
        .arg("8M")
        .stdout(Stdio::null())
        .status()
        .expect("mkfs.ext4");
    assert!(st.success());
    let qcow = qcow2_from(&raw, dir.path(), "a.qcow2");

    let mut s = libvirt_builder()
        .add_drive(&raw, DriveOptions::readonly())
        .add_drive(&fs_img, DriveOptions::readonly().format(Format::Raw))
        .add_drive(&qcow, DriveOptions::readonly())
        .launch()
        .unwrap();
    let me = std::process::id();
    let running = appliance_domains(me);
    assert_eq!(running.len(), 1, "{running:?}");
    let (_, state) = virsh(&["domstate", &running[0]]);
    assert!(state.contains("running"), "{state}");
    let devs = s.devices().to_vec();
    assert_eq!(devs.len(), 3);
    assert_eq!(devs[0].size, want.len() as u64);
    assert!(devs.iter().all(|d| d.readonly));
    for dev in ["/dev/sda", "/dev/sdc"] {
        for (off, len) in [
            (0u64, 512u64),
            (MIB as u64 - 100, 5000),
            (want.len() as u64 - 512, 512),
        ] {
            let got = s.pread_device(dev, off, len).unwrap();
            assert!(
                got == want[off as usize..(off + len) as usize],
                "{dev} @{off}+{len}"
            );
        }
    }
    // A whole 2 MiB+ device: more than one chunk through the stream.
    assert!(s.pread_device("/dev/sda", 0, want.len() as u64).unwrap() == want);
    s.mount("/dev/sdb", "/", MountOptions::readonly()).unwrap();
    assert_eq!(s.read_file("/hello.bin").unwrap(), text);
    s.shutdown().unwrap();
    assert!(
        eventually(|| appliance_domains(me).is_empty()),
        "domain left after shutdown: {:?}",
        appliance_domains(me)
    );

    // Dropped without shutdown (e.g. after an error): destroyed too.
    let s = libvirt_builder()
        .add_drive(&raw, DriveOptions::readonly())
        .launch()
        .unwrap();
    assert_eq!(appliance_domains(me).len(), 1);
    drop(s);
    assert!(eventually(|| appliance_domains(me).is_empty()));
}

#[test]
fn killed_client_domain_autodestroyed() {
    let _serial = serial();
    if !libvirt_up() {
        return;
    }
    let dir = qemu_dir();
    let raw = raw_image(dir.path(), "k.img", MIB, 9);
    // pwrite-device launches, then waits on stdin: the session stays up until killed.
    let mut child = Command::new(skiff_bin())
        .args([
            "--backend",
            "libvirt",
            "--connect",
            URI,
            "--rw",
            "pwrite-device",
            "-a",
        ])
        .arg(format!("{},format=raw", raw.display()))
        .args(["/dev/sda", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let up = eventually(|| {
        appliance_domains(pid)
            .first()
            .is_some_and(|d| virsh(&["domstate", d]).1.contains("running"))
    });
    if !up {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "the client's domain never ran: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let names = appliance_domains(pid);
    // SIGKILL: no destructor runs; libvirtd sees the connection close.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        eventually(|| appliance_domains(pid).is_empty()),
        "transient domain survived its killed client: {:?}",
        appliance_domains(pid)
    );
    for n in names {
        remove_log(&n);
    }
    // The image was never written (the client died before sending anything).
    assert!(std::fs::read(&raw).unwrap() == pattern(MIB, 9));
}

/// A persistent guest definition with the given disks (file, explicit formats).
fn guest_xml(name: &str, disks: &[(&Path, &str)]) -> String {
    let mut d = String::new();
    for (i, (p, f)) in disks.iter().enumerate() {
        d += &format!(
            "<disk type='file' device='disk'><driver name='qemu' type='{f}'/>\
             <source file='{}'/><target dev='vd{}' bus='virtio'/></disk>",
            p.display(),
            (b'a' + i as u8) as char
        );
    }
    format!(
        "<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory>\
         <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>\
         <on_reboot>restart</on_reboot><devices>{d}</devices></domain>"
    )
}

fn define(name: &str, xml: &str, dir: &Path) -> Cleanup {
    let f = dir.join(format!("{name}.xml"));
    std::fs::write(&f, xml).unwrap();
    let (ok, text) = virsh(&["define", f.to_str().unwrap()]);
    assert!(ok, "virsh define: {text}");
    Cleanup(vec!["destroy", "undefine"], name.to_string())
}

#[test]
fn domain_disks_of_a_shut_off_guest() {
    let _serial = serial();
    if !libvirt_up() {
        return;
    }
    let dir = qemu_dir();
    let a = raw_image(dir.path(), "g-a.img", MIB, 21);
    let b_raw = raw_image(dir.path(), "g-b.raw", 3 * MIB / 2, 22);
    let b = qcow2_from(&b_raw, dir.path(), "g-b.qcow2");
    let name = format!("skiff-test-guest-{}", std::process::id());
    let _guard = define(
        &name,
        &guest_xml(&name, &[(&a, "raw"), (&b, "qcow2")]),
        dir.path(),
    );
    let drives = domain_drives(Some(URI), &name, false).unwrap();
    assert_eq!(drives.len(), 2);
    assert_eq!(drives[0].path, a);
    assert_eq!(drives[0].format, Format::Raw);
    assert_eq!(drives[1].path, b);
    assert_eq!(drives[1].format, Format::Qcow2);
    assert!(drives.iter().all(|d| d.readonly));
    // By UUID too.
    let (_, uuid) = virsh(&["domuuid", &name]);
    let by_uuid = domain_drives(Some(URI), uuid.trim(), false).unwrap();
    assert_eq!(by_uuid, drives);
    // Shut off: --rw is allowed.
    assert!(
        domain_drives(Some(URI), &name, true)
            .unwrap()
            .iter()
            .all(|d| !d.readonly)
    );

    // Through the CLI, as `skiff -d NAME`: both disks, their bytes.
    let out = skiff_ok(&["-c", URI, "-d", &name, "devices"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        [
            format!("/dev/sda {}", MIB),
            format!("/dev/sdb {}", 3 * MIB / 2)
        ]
    );
    let out = skiff_ok(&[
        "-c",
        URI,
        "-d",
        &name,
        "pread-device",
        "/dev/sdb",
        "4096",
        "8192",
    ]);
    assert!(out.stdout == std::fs::read(&b_raw).unwrap()[4096..4096 + 8192]);
    // The guest is untouched: still defined, still shut off.
    let (_, state) = virsh(&["domstate", &name]);
    assert!(state.contains("shut off"), "{state}");
}

#[test]
fn running_guest_refuses_rw() {
    let _serial = serial();
    if !libvirt_up() {
        return;
    }
    let dir = qemu_dir();
    let a = raw_image(dir.path(), "r-a.img", MIB, 31);
    let name = format!("skiff-test-running-{}", std::process::id());
    let _guard = define(&name, &guest_xml(&name, &[(&a, "raw")]), dir.path());
    // SeaBIOS finds nothing to boot and keeps the guest up.
    let (ok, text) = virsh(&["start", &name]);
    assert!(ok, "virsh start: {text}");
    match domain_drives(Some(URI), &name, true) {
        Err(Error::Libvirt(m)) => assert!(m.contains("is running"), "{m}"),
        other => panic!("{other:?}"),
    }
    let err = skiff_fails(&["-c", URI, "-d", &name, "--rw", "devices"]);
    assert!(
        err.contains("is running") && err.contains("refusing write"),
        "{err}"
    );
    // customize through -d is a write: refused too, the disk untouched.
    let before = std::fs::read(&a).unwrap();
    let err = skiff_fails(&["-c", URI, "-d", &name, "customize", "--write", "/x:y"]);
    assert!(err.contains("is running"), "{err}");
    assert!(std::fs::read(&a).unwrap() == before);
    // Read-only lookups of a running guest are fine.
    let ro = domain_drives(Some(URI), &name, false).unwrap();
    assert_eq!(ro.len(), 1);
    assert!(ro[0].readonly);
}

/// `skiff -d GUEST customize` on a shut-off guest's ext4 disk, checked with debugfs.
#[test]
fn customize_a_shut_off_guest() {
    let _serial = serial();
    if !libvirt_up() {
        return;
    }
    let dir = qemu_dir();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/hostname"), "old\n").unwrap();
    let img = dir.path().join("c.img");
    skiff_tests::mkfs_ext4(&img, "16M", &src, &[]);
    let name = format!("skiff-test-customize-{}", std::process::id());
    let _guard = define(&name, &guest_xml(&name, &[(&img, "raw")]), dir.path());
    skiff_ok(&[
        "-c",
        URI,
        "-d",
        &name,
        "customize",
        "--hostname",
        "web1",
        "--write",
        "/etc/motd:hi",
    ]);
    assert_eq!(skiff_tests::debugfs_cat(&img, "/etc/hostname"), b"web1\n");
    assert_eq!(skiff_tests::debugfs_cat(&img, "/etc/motd"), b"hi");
    skiff_tests::assert_e2fsck_clean(&img);
    let (_, state) = virsh(&["domstate", &name]);
    assert!(state.contains("shut off"), "{state}");
}

/// An encrypted qcow2 through libvirt: its key becomes an ephemeral libvirt secret (the
/// disk's `<encryption>`); a wrong key is a clear error naming the image.
#[test]
fn encrypted_qcow2_through_libvirt() {
    let _serial = serial();
    if !libvirt_up() {
        return;
    }
    let dir = qemu_dir();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/hostname"), "locked\n").unwrap();
    let raw = dir.path().join("plain.img");
    skiff_tests::mkfs_ext4(&raw, "16M", &src, &[]);
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret").unwrap();
    let enc = dir.path().join("enc.qcow2");
    let secret = format!("secret,id=sec0,file={}", pw.display());
    skiff_tests::run(Command::new("qemu-img").args([
        "convert",
        "-O",
        "qcow2",
        "--object",
        &secret,
        "-o",
        "encrypt.format=luks,encrypt.key-secret=sec0",
        raw.to_str().unwrap(),
        enc.to_str().unwrap(),
    ]));
    let img = enc.to_str().unwrap();
    let key = format!("{img}:key:s3cret");
    let out = skiff_ok(&[
        "--backend",
        "libvirt",
        "-c",
        URI,
        "--key",
        &key,
        "-a",
        img,
        "cat",
        "/etc/hostname",
    ]);
    assert_eq!(out.stdout, b"locked\n");
    let wrong = format!("{img}:key:nope");
    let err = skiff_fails(&[
        "--backend",
        "libvirt",
        "-c",
        URI,
        "--key",
        &wrong,
        "-a",
        img,
        "cat",
        "/etc/hostname",
    ]);
    assert!(err.contains("wrong key") && err.contains(img), "{err}");
    assert!(!err.contains("nope"), "the key is in the error: {err}");
}

#[test]
fn storage_volume() {
    let _serial = serial();
    if !libvirt_up() {
        return;
    }
    let dir = qemu_dir();
    let pool = format!("skiff-test-pool-{}", std::process::id());
    let target = dir.path().join("pool");
    std::fs::create_dir(&target).unwrap();
    let raw = raw_image(&target, "v.raw", 2 * MIB, 41);
    qcow2_from(&raw, &target, "v.qcow2");
    std::fs::remove_file(&raw).unwrap();
    // A transient pool: gone with `pool-destroy`.
    let (ok, text) = virsh(&[
        "pool-create-as",
        &pool,
        "dir",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert!(ok, "pool-create-as: {text}");
    let _guard = Cleanup(vec!["pool-destroy"], pool.clone());
    let v = volume_drive(Some(URI), &format!("{pool}/v.qcow2"), true).unwrap();
    assert_eq!(v.path, target.join("v.qcow2"));
    assert_eq!(v.format, Format::Qcow2);
    assert!(v.readonly);
    let mut s = libvirt_builder()
        .add_drive(
            &v.path,
            DriveOptions {
                format: Some(v.format),
                readonly: true,
                ..DriveOptions::default()
            },
        )
        .launch()
        .unwrap();
    assert_eq!(s.devices()[0].size, 2 * MIB as u64);
    let got = s.pread_device("/dev/sda", MIB as u64, 4096).unwrap();
    assert!(got == pattern(2 * MIB, 41)[MIB..MIB + 4096]);
    s.shutdown().unwrap();
    assert!(matches!(
        volume_drive(Some(URI), &format!("{pool}/nope"), true),
        Err(Error::Libvirt(m)) if m.contains("nope")
    ));
    assert!(matches!(
        volume_drive(Some(URI), "no-slash", true),
        Err(Error::Config(_))
    ));
}

#[test]
fn bad_uri_and_unknown_domain_are_clear_errors() {
    let _serial = serial();
    if !libvirt_up() {
        return;
    }
    let bad = "qemu+unix:///system?socket=/nonexistent/skiff.sock";
    match libvirt_builder()
        .backend(Backend::Libvirt {
            uri: Some(bad.into()),
        })
        .launch()
    {
        Err(Error::Libvirt(m)) => assert!(m.contains("cannot connect to"), "{m}"),
        other => panic!("{:?}", other.err()),
    }
    match domain_drives(Some(URI), "skiff-no-such-domain", false) {
        Err(Error::Libvirt(m)) => {
            assert!(
                m.contains("no domain named or with UUID 'skiff-no-such-domain'"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    let err = skiff_fails(&["-c", URI, "-d", "skiff-no-such-domain", "devices"]);
    assert!(err.contains("no domain named"), "{err}");
    let err = skiff_fails(&["--connect", "bogus://x/y", "devices"]);
    assert!(err.contains("cannot connect to bogus://x/y"), "{err}");
}

/// The live XML of `domain` (empty when it is gone).
fn live_xml(domain: &str) -> String {
    virsh(&["dumpxml", domain]).1
}

#[test]
fn hotplug_add_two_remove_one() {
    let _serial = serial();
    if !libvirt_up() {
        return;
    }
    let dir = qemu_dir();
    let a = raw_image(dir.path(), "h-a.img", 2 * MIB, 51);
    let want_a = std::fs::read(&a).unwrap();
    let b_raw = raw_image(dir.path(), "h-b.raw", 3 * MIB, 52);
    let want_b = std::fs::read(&b_raw).unwrap();
    let b = qcow2_from(&b_raw, dir.path(), "h-b.qcow2");
    let b_before = std::fs::read(&b).unwrap();

    let mut s = libvirt_builder().hotplug(true).launch().unwrap();
    let me = std::process::id();
    let doms = appliance_domains(me);
    assert_eq!(doms.len(), 1, "{doms:?}");
    let dom = doms[0].clone();
    assert!(s.devices().is_empty());
    assert_eq!(s.free_ports(), 8);
    let xml = live_xml(&dom);
    assert_eq!(xml.matches("model='pcie-root-port'").count(), 8, "{xml}");

    let da = s
        .add_drive(&a, DriveOptions::readonly().format(Format::Raw))
        .unwrap();
    assert_eq!(da, "/dev/sda");
    let db = s.add_drive(&b, DriveOptions::readonly()).unwrap();
    assert_eq!(db, "/dev/sdb");
    assert_eq!(s.free_ports(), 6);
    let hot = s.hot_drives();
    assert_eq!(hot.len(), 2);
    assert_eq!(hot[1].format, Format::Qcow2);
    assert!(hot.iter().all(|d| d.readonly));
    // libvirt knows both disks: serials, explicit formats, read-only.
    let xml = live_xml(&dom);
    for (serial, format) in [("skiff0", "raw"), ("skiff1", "qcow2")] {
        assert!(xml.contains(&format!("<serial>{serial}</serial>")), "{xml}");
        assert!(xml.contains(&format!("type='{format}'")), "{xml}");
    }
    assert_eq!(xml.matches("<readonly/>").count(), 2, "{xml}");
    let names: Vec<_> = s.devices().iter().map(|d| d.name.clone()).collect();
    assert_eq!(names, ["/dev/sda", "/dev/sdb"]);
    assert_eq!(s.devices()[1].size, 3 * MIB as u64);

    for (dev, want) in [(&da, &want_a), (&db, &want_b)] {
        let n = want.len() as u64;
        for (off, len) in [(0u64, 4096u64), (n / 2 + 7, 3000), (n - 512, 512)] {
            let got = s.pread_device(dev, off, len).unwrap();
            assert!(
                got == want[off as usize..(off + len) as usize],
                "{dev} @{off}+{len}"
            );
        }
    }
    // Read-only: refused before the appliance sees it.
    assert!(matches!(
        s.pwrite_device(&da, 0, b"x"),
        Err(Error::ReadOnly { .. })
    ));

    s.remove_drive(&da).unwrap();
    // Gone from libvirt's live domain and from the appliance; the port is free again.
    let xml = live_xml(&dom);
    assert!(!xml.contains("<serial>skiff0</serial>"), "{xml}");
    assert!(xml.contains("<serial>skiff1</serial>"), "{xml}");
    assert_eq!(s.free_ports(), 7);
    assert_eq!(s.hot_drives().len(), 1);
    let names: Vec<_> = s.devices().iter().map(|d| d.name.clone()).collect();
    assert_eq!(names, ["/dev/sdb"]);
    // The removed disk's calls fail cleanly (NotFound), the session stays usable.
    match s.pread_device(&da, 0, 512) {
        Err(Error::Remote(e)) => assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.remove_drive(&da),
        Err(Error::NotHotpluggable(_))
    ));
    let got = s.pread_device(&db, MIB as u64, 8192).unwrap();
    assert!(got == want_b[MIB..MIB + 8192]);
    s.ping().unwrap();

    // Another disk takes the freed port (a fresh name, never reused in a session).
    let dc = s
        .add_drive(&a, DriveOptions::readonly().format(Format::Raw))
        .unwrap();
    assert_eq!(dc, "/dev/sdc");
    assert!(s.pread_device(&dc, 0, 4096).unwrap() == want_a[..4096]);
    // A missing file is a clear error, nothing attached.
    assert!(matches!(
        s.add_drive(dir.path().join("nope.img"), DriveOptions::readonly()),
        Err(Error::DiskNotFound { .. })
    ));
    assert_eq!(s.hot_drives().len(), 2);

    s.shutdown().unwrap();
    assert!(
        eventually(|| appliance_domains(me).is_empty()),
        "domain left after shutdown: {:?}",
        appliance_domains(me)
    );
    remove_log(&dom);
    // Read-only images are unchanged.
    assert!(std::fs::read(&a).unwrap() == want_a);
    assert!(std::fs::read(&b).unwrap() == b_before);
}

#[test]
fn hotplug_needs_a_hotplug_launch() {
    let _serial = serial();
    if !libvirt_up() {
        return;
    }
    let dir = qemu_dir();
    let a = raw_image(dir.path(), "n-a.img", MIB, 61);
    let mut s = libvirt_builder().launch().unwrap();
    assert_eq!(s.free_ports(), 0);
    assert!(matches!(
        s.add_drive(&a, DriveOptions::readonly()),
        Err(Error::NotHotpluggable(_))
    ));
    s.shutdown().unwrap();
}
