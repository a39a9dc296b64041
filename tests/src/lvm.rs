//! LVM on loop devices without device-mapper (it does not work on the test machine):
//! `pvcreate`/`vgcreate`/`lvcreate -an -Zn` with activation off, and where a linear LV's
//! bytes are in its image file, from `pvs`' `pe_start` and `lvs --segments` (striped
//! LVs: tests/tests/volumes.rs maps their runs itself).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `--config` that keeps every LVM command from activating anything.
pub const NOACT: &str = "global/activation=0";

/// Runs an LVM command with activation off; panics with its stderr when it fails. Its
/// stdout.
pub fn lvm(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(["--config", NOACT])
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (tests/install-deps.sh installs lvm2)"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A name no other test (or run) uses at the same time: `PID x N`.
pub fn unique_tag() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{}x{n}", std::process::id())
}

/// One field of an LVM report of one row (`--units b --nosuffix`, no headings).
pub fn field(cmd: &str, field: &str, args: &[&str]) -> String {
    let mut a = vec!["--noheadings", "--units", "b", "--nosuffix", "-o", field];
    a.extend_from_slice(args);
    let out = lvm(cmd, &a);
    let rows: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(rows.len(), 1, "{cmd} -o {field} {args:?}: one row: {out:?}");
    rows[0].to_string()
}

/// A VG on loop devices of a test: the VG forgotten by the host (its metadata stays in
/// the image files) and the loop devices detached on drop, even on failure.
#[derive(Default)]
pub struct Lab {
    vgs: Vec<String>,
    loops: Vec<String>,
}

impl Lab {
    /// Attaches `size` bytes of `img` from byte `off` to a loop device; its name.
    pub fn attach(&mut self, img: &Path, off: u64, size: u64) -> String {
        self.attach_range(img, Some((off, size)))
    }

    /// Attaches `img` (or `size` bytes of it from `off`) to a loop device; its name.
    pub fn attach_range(&mut self, img: &Path, range: Option<(u64, u64)>) -> String {
        let mut c = Command::new("losetup");
        c.args(["-f", "--show"]);
        if let Some((off, size)) = range {
            c.args(["-o", &off.to_string(), "--sizelimit", &size.to_string()]);
        }
        let out = c.arg(img).output().expect("losetup is installed");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        self.loops.push(dev.clone());
        dev
    }

    /// `pvcreate` on each of `pvs`, then `vgcreate NAME PVS`.
    pub fn vg(&mut self, name: &str, pvs: &[&str]) {
        self.vg_with(name, pvs, &[]);
    }

    /// [`Lab::vg`] with extra `vgcreate` options (`-s 1m`, ...).
    pub fn vg_with(&mut self, name: &str, pvs: &[&str], extra: &[&str]) {
        for p in pvs {
            lvm("pvcreate", &["-ff", "-y", p]);
        }
        let mut a = extra.to_vec();
        a.push(name);
        a.extend_from_slice(pvs);
        lvm("vgcreate", &a);
        self.vgs.push(name.to_string());
    }

    /// Byte offset, on its PV, of the first byte of the linear, one-segment LV `vg/lv`
    /// (`pe_start` + first extent × extent size), and the PV's name.
    pub fn linear_lv_offset(&self, vg: &str, lv: &str) -> (String, u64) {
        let ext: u64 = field("vgs", "vg_extent_size", &[vg]).parse().expect("size");
        let ranges = field(
            "lvs",
            "seg_pe_ranges",
            &["--segments", &format!("{vg}/{lv}")],
        );
        let (pv, pes) = ranges.rsplit_once(':').expect("PV:FIRST-LAST");
        assert!(!ranges.contains(' '), "one PV range: {ranges:?}");
        let first: u64 = pes
            .split('-')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("first extent");
        let pe_start: u64 = field("pvs", "pe_start", &[pv]).parse().expect("pe_start");
        (pv.to_string(), pe_start + first * ext)
    }

    /// Detaches the loop devices (the metadata stays in the image files).
    pub fn detach(&mut self) {
        for l in self.loops.drain(..) {
            let _ = Command::new("losetup").args(["-d", &l]).status();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.loops.is_empty() {
            for vg in &self.vgs {
                let _ = Command::new("vgremove")
                    .args(["--config", NOACT, "-f", "-y", vg])
                    .output();
            }
        }
        self.detach();
        for vg in &self.vgs {
            let _ = std::fs::remove_file(format!("/etc/lvm/backup/{vg}"));
            if let Ok(rd) = std::fs::read_dir("/etc/lvm/archive") {
                for e in rd.flatten() {
                    if e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{vg}_"))
                    {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
    }
}

/// Copies `fs` into `image` at byte `offset` with `dd conv=notrunc,sparse` (holes stay
/// holes: a 300 MiB XFS is mostly empty).
pub fn dd_at(fs: &Path, image: &Path, offset: u64) {
    dd(&[
        &format!("if={}", fs.display()),
        &format!("of={}", image.display()),
        "bs=1M",
        &format!("seek={offset}"),
        "oflag=seek_bytes",
        "conv=notrunc,sparse",
    ]);
}

/// `len` bytes of `image` from byte `offset` into a new sparse file `out`.
pub fn dd_out(image: &Path, offset: u64, len: u64, out: &Path) -> PathBuf {
    dd(&[
        &format!("if={}", image.display()),
        &format!("of={}", out.display()),
        "bs=1M",
        &format!("skip={offset}"),
        &format!("count={len}"),
        "iflag=skip_bytes,count_bytes",
        "conv=sparse",
    ]);
    out.to_path_buf()
}

fn dd(args: &[&str]) {
    let out = Command::new("dd")
        .args(args)
        .arg("status=none")
        .stdin(Stdio::null())
        .output()
        .expect("dd is installed");
    assert!(
        out.status.success(),
        "dd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
