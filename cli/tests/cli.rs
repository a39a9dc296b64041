//! The `skiff` binary end to end under qemu: `devices`, `pread-device`, `pwrite-device`
//! output and exit codes, and the one-line errors for missing qemu, missing disks and
//! unsupported formats.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn skiff(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
    cmd.args(args)
        .args(["--timeout", "120"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run skiff");
    let mut input = child.stdin.take().expect("piped stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait for skiff")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit status non-zero and exactly one line on stderr, starting `skiff: ` and holding
/// `needle`.
fn assert_one_line_error(o: &Output, needle: &str) {
    let e = stderr(o);
    assert!(!o.status.success(), "expected failure, stderr: {e}");
    assert_eq!(e.lines().count(), 1, "one line: {e:?}");
    assert!(e.starts_with("skiff: "), "{e:?}");
    assert!(e.contains(needle), "{needle:?} in {e:?}");
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(u32::from(seed)) as u8
        })
        .collect()
}

fn qemu_img(args: &[&str]) {
    let st = Command::new("qemu-img")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("qemu-img is installed");
    assert!(st.success(), "qemu-img {args:?}");
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn image(dir: &Path, name: &str, len: usize, seed: u8) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pattern(len, seed)).unwrap();
    p
}

#[test]
fn devices_lists_name_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let a = image(dir.path(), "a.img", 1 << 20, 1);
    let b_raw = image(dir.path(), "b.raw", 3 << 20, 2);
    let b = dir.path().join("b.qcow2");
    qemu_img(&[
        "convert",
        "-q",
        "-O",
        "qcow2",
        path_str(&b_raw),
        path_str(&b),
    ]);
    let b_arg = format!("{},format=qcow2", path_str(&b));
    let o = skiff(&["devices", "-a", path_str(&a), "-a", &b_arg], &[], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "/dev/sda 1048576\n/dev/sdb 3145728\n"
    );
}

#[test]
fn pread_device_writes_raw_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let a = image(dir.path(), "a.img", 2 << 20, 3);
    let want = std::fs::read(&a).unwrap();
    for (off, len) in [(0usize, 512usize), (12345, 70000), ((2 << 20) - 512, 512)] {
        let o = skiff(
            &[
                "pread-device",
                "-a",
                path_str(&a),
                "/dev/sda",
                &off.to_string(),
                &len.to_string(),
            ],
            &[],
            b"",
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(o.stdout == want[off..off + len], "bytes at {off}+{len}");
    }
}

#[test]
fn pwrite_device_needs_rw_and_lands_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = image(dir.path(), "a.img", 1 << 20, 4);
    let mut want = std::fs::read(&a).unwrap();
    let data = pattern(3000, 9);

    let o = skiff(
        &["pwrite-device", "-a", path_str(&a), "/dev/sda", "4096"],
        &[],
        &data,
    );
    assert_one_line_error(&o, "read-only");
    assert!(
        std::fs::read(&a).unwrap() == want,
        "unchanged after refusal"
    );

    let o = skiff(
        &[
            "pwrite-device",
            "--rw",
            "-a",
            path_str(&a),
            "/dev/sda",
            "0x1000",
        ],
        &[],
        &data,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    want[4096..4096 + data.len()].copy_from_slice(&data);
    assert!(std::fs::read(&a).unwrap() == want, "write landed");
}

#[test]
fn clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.img");
    let o = skiff(&["devices", "-a", path_str(&missing)], &[], b"");
    assert_one_line_error(&o, "disk image not found");

    let vdi = dir.path().join("x.vdi");
    qemu_img(&["create", "-q", "-f", "vdi", path_str(&vdi), "1M"]);
    let o = skiff(&["devices", "-a", path_str(&vdi)], &[], b"");
    assert_one_line_error(&o, "unsupported disk format \"vdi\"");

    let o = skiff(&["devices"], &[("SKIFF_QEMU", "/nonexistent")], b"");
    assert_one_line_error(&o, "qemu not found");

    let o = skiff(
        &["devices"],
        &[("SKIFF_APPLIANCE", "/nonexistent/kernel")],
        b"",
    );
    assert_one_line_error(&o, "SKIFF_APPLIANCE");

    let o = skiff(&["devices"], &[("SKIFF_ACCEL", "hvf")], b"");
    assert_one_line_error(&o, "unknown accelerator");

    let profile = dir.path().join("bad.args");
    std::fs::write(&profile, "-nodefaults\n-m\n{memroy}\n").unwrap();
    let o = skiff(&["devices"], &[("SKIFF_PROFILE", path_str(&profile))], b"");
    assert_one_line_error(&o, "unknown placeholder {memroy}");

    let a = image(dir.path(), "a.img", 1 << 20, 5);
    let o = skiff(
        &["pread-device", "-a", path_str(&a), "/dev/sdz", "0", "512"],
        &[],
        b"",
    );
    assert!(!o.status.success());
    assert!(stderr(&o).starts_with("skiff: "), "{}", stderr(&o));
}

#[test]
fn profile_and_kernel_overrides() {
    // The q35 profile (not built in), given as an override file, with a smaller guest:
    // the appliance reaches PCI through ports there (ECAM on the built-in microvm).
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("q35-copy.args");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../qemu-configs/q35.args"
    ))
    .unwrap();
    std::fs::write(&profile, text).unwrap();
    let o = skiff(
        &["devices", "--memory", "64", "--verbose"],
        &[("SKIFF_PROFILE", path_str(&profile))],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(" -m 64 "), "{}", stderr(&o));
    assert!(stderr(&o).contains(" -machine q35,"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("pci: Port configuration access"),
        "{}",
        stderr(&o)
    );

    // SKIFF_APPLIANCE: the kernel the nested build made (what is embedded), by path.
    let kernel = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/appliance/x86_64-unknown-none/appliance/appliance-kernel"
    );
    let o = skiff(
        &["devices", "--verbose"],
        &[("SKIFF_APPLIANCE", kernel)],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("-kernel "), "{}", stderr(&o));
    assert!(stderr(&o).contains("appliance-kernel"), "{}", stderr(&o));
}

#[test]
fn verbose_shows_command_line_and_log() {
    let o = skiff(&["devices", "--verbose"], &[], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("qemu-system-x86_64") || e.contains("-kernel"),
        "{e}"
    );
    assert!(e.contains("virtserialport,chardev=rpc,nr=1"), "{e}");
    // The built-in profile: microvm, PCI through ECAM.
    assert!(e.contains(" -machine microvm,"), "{e}");
    assert!(e.contains("pci: Ecam configuration access"), "{e}");
    assert!(o.stdout.is_empty());
}

/// This build's libvirt backend: the default build has it (asking libvirt's built-in
/// test driver, which needs no daemon, for a guest that does not exist reaches libvirt);
/// a `--no-default-features` build says clearly that it has none.
#[test]
fn libvirt_backend_in_this_build() {
    let o = skiff(
        &["devices", "-c", "test:///default", "-d", "no-such-guest"],
        &[],
        b"",
    );
    if cfg!(feature = "libvirt") {
        assert_one_line_error(&o, "no domain named or with UUID 'no-such-guest'");
        assert!(!stderr(&o).contains("without libvirt"), "{}", stderr(&o));
    } else {
        assert_one_line_error(&o, "this skiff was built without libvirt support");
    }
    let o = skiff(
        &["devices", "--backend", "libvirt", "-c", "bogus:///"],
        &[],
        b"",
    );
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o).contains("without libvirt support"),
        !cfg!(feature = "libvirt"),
        "{}",
        stderr(&o)
    );
}
