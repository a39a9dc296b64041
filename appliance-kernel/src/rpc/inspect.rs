//! Inspection requests: [`Request::Applications`](wire::Request::Applications) (the
//! package databases found below a mounted guest root, and the Windows Uninstall keys)
//! and [`Request::WindowsFacts`](wire::Request::WindowsFacts). The parsers live in
//! `crate::inspect`; this file finds the files, feeds them through a bounded
//! [`Reader`], turns per-database failures into reply fields, and pages the list.

use super::{Appliance, err};
use crate::fs::FsResult;
use crate::fs::vfs::{MountTable, normalize};
use crate::inspect::source::{Reader, Source};
use crate::inspect::{
    AppSink, DbStats, apk, app_text, dpkg, pacman, pe, regf, rpm_database, windows,
};
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use wire::{
    Application, Applications, DriveMapping, DriveTarget, Error, ErrorKind, FileType, MAX_CHUNK,
    PackageDatabase, PackageFormat, TableKind, WindowsFacts,
};

/// Bytes of application strings in one reply page (the frame bound is 2 MiB).
const PAGE_TEXT: usize = if cfg!(test) { 64 << 10 } else { 1 << 20 };
/// Per-application overhead assumed when sizing a page.
const APP_OVERHEAD: usize = 64;
/// Windows system root candidates, as libguestfs tries them (case-insensitively).
const SYSTEMROOTS: &[&str] = &["windows", "winnt", "win32", "win", "reactos"];

/// The last application listing, kept while the host pages through it.
#[derive(Default)]
pub struct AppsCache {
    last: Option<(String, Vec<Application>, Vec<PackageDatabase>, bool)>,
}

impl AppsCache {
    pub fn clear(&mut self) {
        self.last = None;
    }
}

/// A guest file read through the mount table (shared, so that two files can be open
/// at once: a database and its log).
struct GuestFile<'s, 'm> {
    mounts: &'s RefCell<&'m mut MountTable>,
    path: String,
    size: u64,
}

impl Source for GuestFile<'_, '_> {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        let mut done = 0usize;
        let mut mounts = self.mounts.borrow_mut();
        while done < buf.len() {
            let (fs, inner) = mounts.resolve(&self.path)?;
            let want = (buf.len() - done).min(MAX_CHUNK as usize);
            let data = fs.read(&inner, offset + done as u64, want)?;
            if data.is_empty() {
                return Err(err(
                    ErrorKind::Corrupt,
                    format!("{}: file shorter than its size", self.path),
                ));
            }
            let n = data.len().min(want);
            buf.get_mut(done..done + n)
                .ok_or_else(|| err(ErrorKind::Internal, "read overrun"))?
                .copy_from_slice(data.get(..n).unwrap_or_default());
            done += n;
        }
        Ok(())
    }
}

/// A database parser: the file's reader and, for a sqlite database, its log's.
type ParseFn<'f> = dyn for<'x, 'y> FnMut(&'y mut Reader<'x>, Option<&'y mut Reader<'x>>) -> Result<DbStats, Error>
    + 'f;

/// The system root paths of a `boot.ini`'s `[operating systems]` section: the lines
/// `multi(0)disk(0)rdisk(0)partition(1)\WINDOWS="..."` give `/WINDOWS` (the partition
/// is not looked at: like libguestfs, the root is assumed to be on this filesystem).
pub fn boot_ini_roots(text: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(text);
    let mut out = Vec::new();
    let mut in_section = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_section = line.eq_ignore_ascii_case("[operating systems]");
            continue;
        }
        let lower = line.to_ascii_lowercase();
        if !in_section || !(lower.starts_with("multi(") || lower.starts_with("scsi(")) {
            continue;
        }
        let Some((arc, _)) = line.split_once('=') else {
            continue;
        };
        let Some(i) = arc.rfind(')') else {
            continue;
        };
        let path = arc.get(i + 1..).unwrap_or_default().replace('\\', "/");
        if !path.is_empty() && out.len() < 16 {
            out.push(path);
        }
    }
    out
}

/// `root` + `rel` (`rel` absolute within the root).
fn under(root: &str, rel: &str) -> String {
    if root == "/" {
        String::from(rel)
    } else {
        format!("{root}{rel}")
    }
}

impl Appliance {
    /// (size, identity) of a regular file, `None` when it is missing or not a file.
    fn regular_file(&mut self, path: &str) -> Option<(u64, (usize, u64))> {
        let st = self.stat(path, true).ok()?;
        if st.file_type != FileType::Regular {
            return None;
        }
        let mi = self.mounts.mount_index(path).ok()?;
        Some((st.size, (mi, st.ino)))
    }

    /// Finds `rel` (components) below `dir` case-insensitively, returning the path with
    /// the guest's spelling.
    fn find_nocase(&mut self, dir: &str, rel: &[&str]) -> Option<String> {
        let mut cur = String::from(dir);
        for comp in rel {
            let entries = self.read_dir(&cur).ok()?;
            let e = entries
                .iter()
                .find(|e| e.name == *comp)
                .or_else(|| entries.iter().find(|e| e.name.eq_ignore_ascii_case(comp)))?;
            cur = under(&cur, &format!("/{}", e.name));
        }
        Some(cur)
    }

    fn is_dir(&mut self, path: &str) -> bool {
        self.stat(path, true)
            .is_ok_and(|s| s.file_type == FileType::Directory)
    }

    /// The Windows system root below `root` (libguestfs' test: `system32`,
    /// `system32/config` and `system32/cmd.exe` exist), with the guest's spelling.
    fn systemroot(&mut self, root: &str) -> Option<String> {
        for cand in SYSTEMROOTS {
            if let Some(sr) = self.is_systemroot(root, &[cand]) {
                return Some(sr);
            }
        }
        // Else the paths `boot.ini` names (libguestfs' fallback for non-standard roots).
        let ini = self.find_nocase(root, &["boot.ini"])?;
        let text = self.pread(&ini, 0, 64 * 1024).ok()?;
        for path in boot_ini_roots(&text) {
            let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
            if comps.is_empty() || comps.len() > 8 {
                continue;
            }
            if let Some(sr) = self.is_systemroot(root, &comps) {
                return Some(sr);
            }
        }
        None
    }

    /// `root/<comps>` with the guest's spelling when it holds `system32`,
    /// `system32/config` and `system32/cmd.exe`.
    fn is_systemroot(&mut self, root: &str, comps: &[&str]) -> Option<String> {
        let sr = self.find_nocase(root, comps)?;
        let config = self.find_nocase(&sr, &["system32", "config"])?;
        let cmd = self.find_nocase(&sr, &["system32", "cmd.exe"])?;
        (self.is_dir(&config) && self.regular_file(&cmd).is_some()).then_some(sr)
    }

    /// Runs `parse` over the file at `path` (and its companion `extra`, a sqlite log),
    /// recording the outcome as a database.
    fn read_db(
        &mut self,
        format: PackageFormat,
        root: &str,
        path: &str,
        size: u64,
        extra: Option<(String, u64)>,
        parse: &mut ParseFn<'_>,
    ) -> PackageDatabase {
        let mounts = RefCell::new(&mut self.mounts);
        let mut f = GuestFile {
            mounts: &mounts,
            path: String::from(path),
            size,
        };
        let mut r = Reader::new(&mut f);
        let mut x = extra.map(|(path, size)| GuestFile {
            mounts: &mounts,
            path,
            size,
        });
        let mut xr = x.as_mut().map(|x| Reader::new(x as &mut dyn Source));
        let (stats, error) = match parse(&mut r, xr.as_mut()) {
            Ok(s) => (s, None),
            Err(e) => (DbStats::default(), Some(format!("{e}"))),
        };
        PackageDatabase {
            format,
            path: String::from(
                path.strip_prefix(root)
                    .filter(|_| root != "/")
                    .unwrap_or(path),
            ),
            count: stats.count,
            error,
            skipped: stats.skipped,
        }
    }

    /// Every application below `root`, with the databases read.
    fn read_applications(&mut self, root: &str) -> (Vec<Application>, Vec<PackageDatabase>, bool) {
        let mut sink = AppSink::default();
        let mut dbs = Vec::new();

        let p = under(root, "/var/lib/dpkg/status");
        if let Some((size, _)) = self.regular_file(&p) {
            dbs.push(
                self.read_db(PackageFormat::Dpkg, root, &p, size, None, &mut |r, _| {
                    dpkg::parse(r, &mut sink)
                }),
            );
        }

        // rpm: per directory the first database found (sqlite, ndb, BerkeleyDB: the
        // newest format a converted system uses); a directory that is a symlink to the
        // other (/var/lib/rpm → /usr/lib/sysimage/rpm) is read once.
        let mut seen = BTreeSet::new();
        for dir in ["/var/lib/rpm", "/usr/lib/sysimage/rpm"] {
            for (name, format) in [
                ("rpmdb.sqlite", PackageFormat::RpmSqlite),
                ("Packages.db", PackageFormat::RpmNdb),
                ("Packages", PackageFormat::RpmBerkeleyDb),
            ] {
                let p = under(root, &format!("{dir}/{name}"));
                let Some((size, id)) = self.regular_file(&p) else {
                    continue;
                };
                if seen.insert(id) {
                    let wal = format!("{p}-wal");
                    let wal = (format == PackageFormat::RpmSqlite)
                        .then(|| self.regular_file(&wal))
                        .flatten()
                        .filter(|(size, _)| *size > 0)
                        .map(|(size, _)| (wal, size));
                    dbs.push(self.read_db(format, root, &p, size, wal, &mut |r, w| {
                        rpm_database(format, r, w, &mut sink)
                    }));
                }
                break;
            }
        }

        let dir = under(root, "/var/lib/pacman/local");
        if self.is_dir(&dir) {
            dbs.push(self.read_pacman(root, &dir, &mut sink));
        }

        let p = under(root, "/lib/apk/db/installed");
        if let Some((size, _)) = self.regular_file(&p) {
            dbs.push(
                self.read_db(PackageFormat::Apk, root, &p, size, None, &mut |r, _| {
                    apk::parse(r, &mut sink)
                }),
            );
        }

        if let Some(sr) = self.systemroot(root)
            && let Some(p) = self.find_nocase(&sr, &["system32", "config", "software"])
            && let Some((size, _)) = self.regular_file(&p)
        {
            dbs.push(self.read_db(
                PackageFormat::WindowsRegistry,
                root,
                &p,
                size,
                None,
                &mut |r, _| {
                    let mut h = regf::Hive::open(r)?;
                    windows::applications(&mut h, &mut sink)
                },
            ));
        }
        let (apps, truncated) = sink.finish();
        (apps, dbs, truncated)
    }

    fn read_pacman(&mut self, root: &str, dir: &str, sink: &mut AppSink) -> PackageDatabase {
        let mut db = PackageDatabase {
            format: PackageFormat::Pacman,
            path: String::from(
                dir.strip_prefix(root)
                    .filter(|_| root != "/")
                    .unwrap_or(dir),
            ),
            count: 0,
            error: None,
            skipped: 0,
        };
        let entries = match self.read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                db.error = Some(format!("{e}"));
                return db;
            }
        };
        for e in entries.iter().take(crate::inspect::MAX_APPS) {
            if e.stat.file_type != FileType::Directory {
                continue;
            }
            let p = format!("{dir}/{}/desc", e.name);
            let parsed = self
                .pread(&p, 0, pacman::MAX_DESC as u32)
                .ok()
                .and_then(|d| pacman::parse_desc(&d));
            match parsed {
                Some(a) => {
                    db.count += 1;
                    if !sink.push(a) {
                        break;
                    }
                }
                None => db.skipped += 1,
            }
        }
        db
    }

    /// One page of the applications below `root` (see `Request::Applications`).
    pub fn applications(&mut self, root: &str, start: u32) -> FsResult<Applications> {
        let root = normalize(root)?;
        if !self.is_dir(&root) {
            return Err(err(
                ErrorKind::NotADirectory,
                format!("{root} is not a mounted directory"),
            ));
        }
        let cached = matches!(&self.inspect.last, Some((r, ..)) if *r == root);
        if start == 0 || !cached {
            self.inspect.clear();
            let (apps, dbs, truncated) = self.read_applications(&root);
            self.inspect.last = Some((root.clone(), apps, dbs, truncated));
        }
        let Some((_, apps, dbs, truncated)) = &self.inspect.last else {
            return Err(err(ErrorKind::Internal, "application cache lost"));
        };
        let total = apps.len();
        let first = (start as usize).min(total);
        let mut page = Vec::new();
        let mut bytes = 0usize;
        for a in apps.get(first..).unwrap_or_default() {
            let n = app_text(a) + APP_OVERHEAD;
            if !page.is_empty() && bytes + n > PAGE_TEXT {
                break;
            }
            bytes += n;
            page.push(a.clone());
        }
        let end = first + page.len();
        let reply = Applications {
            applications: page,
            databases: dbs.clone(),
            total: total as u32,
            next: (end < total).then_some(end as u32),
            truncated: *truncated,
        };
        if reply.next.is_none() {
            self.inspect.clear();
        }
        Ok(reply)
    }

    /// The Windows facts of the installation mounted at `root`.
    pub fn windows_facts(&mut self, root: &str) -> FsResult<WindowsFacts> {
        let root = normalize(root)?;
        let sr = self.systemroot(&root).ok_or_else(|| {
            err(
                ErrorKind::NotFound,
                format!("no Windows system root below {root}"),
            )
        })?;
        let mut out = WindowsFacts {
            systemroot: String::from(
                sr.strip_prefix(&root)
                    .filter(|_| root != "/")
                    .unwrap_or(&sr),
            ),
            ..WindowsFacts::default()
        };
        if let Some(cmd) = self.find_nocase(&sr, &["system32", "cmd.exe"]) {
            match self.pread(&cmd, 0, pe::HEADER_BYTES as u32) {
                Ok(head) => {
                    out.arch = pe::arch(&head).map(String::from);
                    if out.arch.is_none() {
                        out.warnings
                            .push(format!("{cmd}: not a PE executable of a known machine"));
                    }
                }
                Err(e) => out.warnings.push(format!("{cmd}: {e}")),
            }
        }
        let rel = |p: &str| {
            String::from(
                p.strip_prefix(root.as_str())
                    .filter(|_| root != "/")
                    .unwrap_or(p),
            )
        };
        let software = self.find_nocase(&sr, &["system32", "config", "software"]);
        let system = self.find_nocase(&sr, &["system32", "config", "system"]);
        let mut drives = Vec::new();
        for (hive, is_software) in [(software, true), (system, false)] {
            let label = if is_software { "SOFTWARE" } else { "SYSTEM" };
            let Some(p) = hive else {
                out.warnings.push(format!("no {label} hive"));
                continue;
            };
            let Some((size, _)) = self.regular_file(&p) else {
                out.warnings.push(format!("{p}: not a regular file"));
                continue;
            };
            if is_software {
                out.software_hive = Some(rel(&p));
            } else {
                out.system_hive = Some(rel(&p));
            }
            let mounts = RefCell::new(&mut self.mounts);
            let mut f = GuestFile {
                mounts: &mounts,
                path: p.clone(),
                size,
            };
            let mut r = Reader::new(&mut f);
            let res = regf::Hive::open(&mut r).and_then(|mut h| {
                if h.dirty {
                    out.dirty_hives.push(rel(&p));
                }
                if is_software {
                    windows::software_facts(&mut h, &mut out)
                } else {
                    drives = windows::system_facts(&mut h, &mut out)?;
                    Ok(())
                }
            });
            if let Err(e) = res {
                out.warnings.push(format!("{label} hive: {e}"));
            }
        }
        out.drive_mappings = self.map_drives(drives);
        Ok(out)
    }

    /// Resolves drive targets against the partitions of the attached disks.
    fn map_drives(&self, drives: Vec<(char, DriveTarget)>) -> Vec<DriveMapping> {
        let parts = self.partitions().unwrap_or_default();
        drives
            .into_iter()
            .map(|(letter, target)| {
                let device = match &target {
                    DriveTarget::Mbr {
                        disk_signature,
                        offset,
                    } => {
                        let sig = format!("{disk_signature:08x}");
                        parts
                            .iter()
                            .find(|p| {
                                p.table == TableKind::Mbr
                                    && p.start == *offset
                                    && p.uuid
                                        .as_deref()
                                        .and_then(|u| u.split('-').next())
                                        .is_some_and(|u| u.eq_ignore_ascii_case(&sig))
                            })
                            .map(|p| p.name.clone())
                    }
                    DriveTarget::Gpt { partition_guid } => parts
                        .iter()
                        .find(|p| {
                            p.table == TableKind::Gpt
                                && p.uuid
                                    .as_deref()
                                    .is_some_and(|u| u.eq_ignore_ascii_case(partition_guid))
                        })
                        .map(|p| p.name.clone()),
                    DriveTarget::Other { .. } => None,
                };
                DriveMapping {
                    letter,
                    target,
                    device,
                }
            })
            .collect()
    }
}
