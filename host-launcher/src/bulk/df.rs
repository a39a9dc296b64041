//! `df` for disk images (like `virt-df`): size, used, available and use% of every
//! filesystem on a session's disks, each mounted read-only at `/` in turn and measured
//! with `statvfs`; and [`df_images`], which does that for many images, each in its own
//! appliance, N at a time.

use crate::appliance::{Builder, DriveOptions};
use crate::bulk::each;
use crate::error::{Error, Result};
use crate::inspect::clean;
use crate::session::Session;
use crate::session::fs::MountOptions;
use serde::Serialize;
use std::path::PathBuf;

/// Filesystem types `df` measures; the rest (`unknown`, `swap`, ...) are not listed.
const MEASURED: &[&str] = &["ext2", "ext3", "ext4", "vfat", "fat12", "fat16", "fat32"];

/// One measured filesystem. Sizes are in bytes; JSON field names are stable.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct DfEntry {
    /// `/dev/sda1`.
    pub device: String,
    pub fstype: String,
    pub label: Option<String>,
    pub block_size: u64,
    pub size: u64,
    pub used: u64,
    /// Free space available to unprivileged users.
    pub available: u64,
    /// `used / (used + available)`, in percent, rounded up (like `df`).
    pub use_percent: u32,
    pub inodes: u64,
    pub inodes_free: u64,
}

/// A filesystem of a measurable type that could not be mounted or measured.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct DfSkipped {
    pub device: String,
    pub fstype: String,
    pub error: String,
}

/// What [`df`] found on one session's disks.
#[derive(Serialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Df {
    pub filesystems: Vec<DfEntry>,
    pub skipped: Vec<DfSkipped>,
}

/// `used * 100 / (used + available)` rounded up; 0 for an empty filesystem.
pub fn use_percent(used: u64, available: u64) -> u32 {
    let total = u128::from(used) + u128::from(available);
    if total == 0 {
        return 0;
    }
    (u128::from(used) * 100).div_ceil(total) as u32
}

/// Measures every filesystem on the session's disks. The session must have nothing
/// mounted (each filesystem is mounted at `/` and unmounted again).
///
/// ```no_run
/// let mut s = skiff::Appliance::builder()
///     .add_drive("guest.qcow2", skiff::DriveOptions::readonly())
///     .launch()?;
/// for f in skiff::df::df(&mut s)?.filesystems {
///     println!("{} {} {} {}%", f.device, f.size, f.used, f.use_percent);
/// }
/// # Ok::<(), skiff::Error>(())
/// ```
pub fn df(s: &mut Session) -> Result<Df> {
    if !s.mounts()?.is_empty() {
        return Err(Error::InvalidArgument(
            "df needs a session with nothing mounted".into(),
        ));
    }
    let mut out = Df::default();
    for fs in s.filesystems()? {
        if !MEASURED.contains(&fs.fstype.as_str()) {
            continue;
        }
        let measured = match s.mount(&fs.device, "/", MountOptions::readonly()) {
            Ok(()) => {
                let r = s.statvfs("/");
                s.umount("/")?;
                r
            }
            Err(e) => Err(e),
        };
        match measured {
            Ok(v) => {
                let bs = v.block_size;
                let size = v.blocks.saturating_mul(bs);
                let used = v.blocks.saturating_sub(v.blocks_free).saturating_mul(bs);
                let available = v.blocks_avail.saturating_mul(bs);
                out.filesystems.push(DfEntry {
                    device: fs.device,
                    fstype: fs.fstype,
                    label: fs.label.map(|l| clean(&l)),
                    block_size: bs,
                    size,
                    used,
                    available,
                    use_percent: use_percent(used, available),
                    inodes: v.files,
                    inodes_free: v.files_free,
                });
            }
            Err(e @ Error::Remote(_)) => out.skipped.push(DfSkipped {
                device: fs.device,
                fstype: fs.fstype,
                error: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Launches `builder` with `image` (read-only) added, runs [`df`], shuts down.
pub fn df_image(builder: &Builder, image: &std::path::Path) -> Result<Df> {
    let mut s = builder
        .clone()
        .add_drive(image, DriveOptions::readonly())
        .launch()?;
    let r = df(&mut s);
    match r {
        Ok(d) => {
            s.shutdown()?;
            Ok(d)
        }
        Err(e) => Err(e),
    }
}

/// [`df_image`] for every image, `jobs` appliances at a time; `done` is called on the
/// calling thread as each image finishes (in completion order) with its index.
pub fn df_images(
    builder: &Builder,
    images: &[PathBuf],
    jobs: usize,
    done: impl FnMut(usize, Result<Df>),
) {
    each::run_parallel(images.len(), jobs, |i| df_image(builder, &images[i]), done);
}

/// `1536` → `1.5K`; powers of 1024 with one decimal below 10 (like `df -h`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["", "K", "M", "G", "T", "P", "E"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}")
    } else if v < 10.0 {
        format!("{:.1}{}", (v * 10.0).ceil() / 10.0, UNITS[u])
    } else {
        format!("{:.0}{}", v.ceil(), UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_and_sizes() {
        assert_eq!(use_percent(0, 0), 0);
        assert_eq!(use_percent(1, 99), 1);
        assert_eq!(use_percent(1, 1000), 1);
        assert_eq!(use_percent(50, 50), 50);
        assert_eq!(use_percent(u64::MAX, 0), 100);
        assert_eq!(human_size(512), "512");
        assert_eq!(human_size(1536), "1.5K");
        assert_eq!(human_size(100 << 20), "100M");
        assert_eq!(human_size(3 << 30), "3.0G");
    }
}
