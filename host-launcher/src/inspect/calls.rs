//! Inspection calls on a [`Session`]: the installed applications of a mounted guest
//! root and the Windows facts of its registry. The appliance reads and parses the guest's
//! package databases and hives (guest bytes are never parsed on the host); the host only
//! pages the typed results in and re-checks their bounds, since an appliance that has
//! read hostile bytes is itself not fully trusted.
//!
//! ```no_run
//! use skiff::{Appliance, DriveOptions, MountOptions};
//! let mut s = Appliance::builder()
//!     .add_drive("guest.qcow2", DriveOptions::readonly())
//!     .launch()?;
//! s.mount("/dev/sda1", "/", MountOptions::readonly())?;
//! let apps = s.applications("/")?;
//! for a in &apps.applications {
//!     println!("{} {}:{}-{} {}", a.name, a.epoch, a.version, a.release, a.arch);
//! }
//! for db in &apps.databases {
//!     if let Some(e) = &db.error {
//!         eprintln!("{}: {e}", db.path);
//!     }
//! }
//! # Ok::<(), skiff::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::session::{Session, unexpected};
use wire::{Application, Applications, DriveTarget, Reply, Request, WindowsFacts};

/// The most applications accepted from the appliance (its own bound).
pub const MAX_APPLICATIONS: usize = 100_000;
/// The longest string accepted from the appliance, in bytes (its own bound).
pub const MAX_STRING: usize = 4096;

/// Drops control characters (newlines and tabs kept when `multiline`) and bounds the
/// length: the appliance does the same; this is the host's own check.
fn sanitize(s: &mut String, multiline: bool) {
    let ok = |c: char| !c.is_control() || (multiline && (c == '\n' || c == '\t'));
    if s.len() <= MAX_STRING && s.chars().all(ok) {
        return;
    }
    let mut out = String::new();
    for c in s.chars().filter(|&c| ok(c)) {
        if out.len() + c.len_utf8() > MAX_STRING {
            break;
        }
        out.push(c);
    }
    *s = out;
}

fn sanitize_app(a: &mut Application) {
    for s in [
        &mut a.name,
        &mut a.display_name,
        &mut a.version,
        &mut a.release,
        &mut a.arch,
        &mut a.install_path,
        &mut a.publisher,
        &mut a.url,
        &mut a.source_package,
        &mut a.summary,
        &mut a.vendor,
    ] {
        sanitize(s, false);
    }
    sanitize(&mut a.description, true);
}

fn sanitize_opt(s: &mut Option<String>) {
    if let Some(s) = s {
        sanitize(s, false);
    }
}

impl Session {
    /// The applications installed in the guest whose root filesystem is mounted at
    /// `root` (usually `/`, with the guest's other filesystems mounted below it as its
    /// fstab says): every package database found (dpkg, rpm in its sqlite, BerkeleyDB
    /// and ndb forms, pacman, apk) and, for Windows, the SOFTWARE hive's Uninstall keys
    /// (native and WOW6432Node). The list is sorted by name, then version, release and
    /// arch; [`Applications::databases`] says which databases were read, how many
    /// applications each gave, and why one could not be read (a corrupt or unsupported
    /// database is reported there, not as an error).
    ///
    /// The whole list is fetched in pages (each reply fits a frame); on return
    /// [`Applications::next`] is `None` and [`Applications::total`] is the list's length.
    pub fn applications(&mut self, root: &str) -> Result<Applications> {
        let mut out = Applications::default();
        let mut start = 0u32;
        loop {
            let page = match self.call(Request::Applications {
                root: root.to_string(),
                start,
            })? {
                Reply::Applications(p) => p,
                other => return Err(unexpected(&other)),
            };
            if start == 0 {
                out.databases = page.databases;
                out.total = page.total;
                out.truncated = page.truncated;
            } else if page.total != out.total {
                return Err(Error::BadFrame(
                    "the application list changed while it was paged in".into(),
                ));
            }
            out.applications.extend(page.applications);
            if out.applications.len() > MAX_APPLICATIONS
                || out.applications.len() > out.total as usize
            {
                return Err(Error::BadFrame(format!(
                    "more applications than announced ({} of {})",
                    out.applications.len(),
                    out.total
                )));
            }
            match page.next {
                None => break,
                Some(n) if n > start && n as usize == out.applications.len() => start = n,
                Some(n) => {
                    return Err(Error::BadFrame(format!(
                        "application page {start} points back to {n}"
                    )));
                }
            }
        }
        for a in &mut out.applications {
            sanitize_app(a);
        }
        for d in &mut out.databases {
            sanitize(&mut d.path, false);
            sanitize_opt(&mut d.error);
        }
        Ok(out)
    }

    /// The Windows facts of the installation mounted at `root` (libguestfs' Windows
    /// inspection): the system root, product name and variant, version and build, the
    /// current control set, hostname, architecture (from `cmd.exe`), and the drive
    /// letters with the partitions they name. An `Error::Remote` with `NotFound` when
    /// `root` holds no Windows system root. Facts that could not be read are listed in
    /// [`WindowsFacts::warnings`].
    pub fn windows_facts(&mut self, root: &str) -> Result<WindowsFacts> {
        let mut w = match self.call(Request::WindowsFacts {
            root: root.to_string(),
        })? {
            Reply::WindowsFacts(w) => *w,
            other => return Err(unexpected(&other)),
        };
        sanitize(&mut w.systemroot, false);
        for s in [
            &mut w.software_hive,
            &mut w.system_hive,
            &mut w.arch,
            &mut w.product_name,
            &mut w.product_variant,
            &mut w.edition_id,
            &mut w.build,
            &mut w.current_control_set,
            &mut w.hostname,
        ] {
            sanitize_opt(s);
        }
        for s in w.dirty_hives.iter_mut().chain(w.warnings.iter_mut()) {
            sanitize(s, false);
        }
        for d in &mut w.drive_mappings {
            sanitize_opt(&mut d.device);
            match &mut d.target {
                DriveTarget::Gpt { partition_guid } => sanitize(partition_guid, false),
                DriveTarget::Other { data } => sanitize(data, false),
                DriveTarget::Mbr { .. } => {}
            }
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_bounds_and_strips() {
        let mut s = "a\u{1b}[2Jb\nc".to_string();
        sanitize(&mut s, false);
        assert_eq!(s, "a[2Jbc");
        let mut s = "a\nb\u{7}".to_string();
        sanitize(&mut s, true);
        assert_eq!(s, "a\nb");
        let mut s = "x".repeat(MAX_STRING + 10);
        sanitize(&mut s, false);
        assert_eq!(s.len(), MAX_STRING);
    }
}
