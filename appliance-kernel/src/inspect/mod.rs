//! Inspection facts computed in the appliance from guest databases and hives: installed
//! applications (dpkg, rpm in its sqlite / BerkeleyDB / ndb databases, pacman, apk,
//! the Windows Uninstall keys) and the Windows facts of the SOFTWARE and SYSTEM hives.
//!
//! Every parser here reads untrusted bytes through a bounded [`source::Reader`]: reads
//! are range-checked, allocations bounded, loops bounded (a cycle of page or cell
//! pointers is a `Corrupt` error naming the structure), and no input panics. What a
//! parser returns is cleaned ([`clean`]) and bounded ([`MAX_STRING`]).

pub mod apk;
pub mod bdb;
pub mod dpkg;
pub mod ndb;
pub mod pacman;
pub mod pe;
pub mod regf;
pub mod rpm;
pub mod source;
pub mod sqlite;
pub mod windows;

#[cfg(test)]
mod appliance_tests;
#[cfg(test)]
mod regf_tests;
#[cfg(test)]
mod tests;

use alloc::string::String;
use alloc::vec::Vec;
use source::Reader;
use wire::{Application, Error, ErrorKind, PackageFormat};

/// The longest string kept from the guest, in bytes (cut at a character boundary).
pub const MAX_STRING: usize = 4096;
/// The most applications one listing returns.
pub const MAX_APPS: usize = 100_000;
/// The most bytes of application strings kept in one listing (the appliance's memory).
pub const MAX_TEXT: usize = 24 << 20;

/// A guest string made safe to print: control characters dropped (newlines and tabs kept
/// when `multiline`), surrounding whitespace trimmed (only trailing when `multiline`), at most [`MAX_STRING`] bytes.
pub fn clean_str(s: &str, multiline: bool) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let keep = !c.is_control() || (multiline && (c == '\n' || c == '\t'));
        if !keep {
            continue;
        }
        if out.len() + c.len_utf8() > MAX_STRING {
            break;
        }
        out.push(c);
    }
    let t = if multiline {
        out.trim_end()
    } else {
        out.trim()
    };
    if t.len() == out.len() {
        out
    } else {
        String::from(t)
    }
}

/// [`clean_str`] of bytes decoded as lossy UTF-8 (at most 4 × [`MAX_STRING`] of them
/// are looked at).
pub fn clean(b: &[u8], multiline: bool) -> String {
    let b = b.get(..b.len().min(4 * MAX_STRING)).unwrap_or_default();
    clean_str(&String::from_utf8_lossy(b), multiline)
}

/// Splits `[epoch:]version[-release]` as libguestfs does for dpkg, pacman and apk: the
/// epoch before the first `:` (`None` when it is not a number), the release after the
/// first `-` of the rest.
pub fn split_evr(s: &str) -> Option<(u32, &str, Option<&str>)> {
    let (epoch, rest) = match s.split_once(':') {
        Some((e, rest)) => (parse_u32(e)?, rest),
        None => (0, s),
    };
    Some(match rest.split_once('-') {
        Some((v, r)) => (epoch, v, Some(r)),
        None => (epoch, rest, None),
    })
}

fn parse_u32(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Applications gathered from several databases, within [`MAX_APPS`] and [`MAX_TEXT`].
#[derive(Default)]
pub struct AppSink {
    pub apps: Vec<Application>,
    text: usize,
    pub truncated: bool,
}

impl AppSink {
    /// Adds `a` (cleaned); false when a bound was reached (the caller may stop).
    pub fn push(&mut self, a: Application) -> bool {
        if self.truncated {
            return false;
        }
        let bytes = app_text(&a);
        if self.apps.len() >= MAX_APPS || self.text.saturating_add(bytes) > MAX_TEXT {
            self.truncated = true;
            return false;
        }
        self.text += bytes;
        self.apps.push(a);
        true
    }

    /// Sorts by name, then version, release and arch (libguestfs sorts by name).
    pub fn finish(mut self) -> (Vec<Application>, bool) {
        self.apps.sort_by(|a, b| {
            (&a.name, &a.version, &a.release, &a.arch)
                .cmp(&(&b.name, &b.version, &b.release, &b.arch))
        });
        (self.apps, self.truncated)
    }
}

/// The bytes of an application's strings.
pub fn app_text(a: &Application) -> usize {
    [
        &a.name,
        &a.display_name,
        &a.version,
        &a.release,
        &a.arch,
        &a.install_path,
        &a.publisher,
        &a.url,
        &a.source_package,
        &a.summary,
        &a.description,
        &a.vendor,
    ]
    .iter()
    .map(|s| s.len())
    .sum::<usize>()
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn clean_and_split() {
        assert_eq!(clean_str(" a\u{1b}[1mb\n c ", false), "a[1mb c");
        assert_eq!(clean_str("x\ny\tz\u{7}", true), "x\ny\tz");
        let long = "é".repeat(MAX_STRING);
        let c = clean_str(&long, false);
        assert!(c.len() <= MAX_STRING && c.len() >= MAX_STRING - 1);
        assert_eq!(split_evr("1:2.3-4-5"), Some((1, "2.3", Some("4-5"))));
        assert_eq!(split_evr("2.3"), Some((0, "2.3", None)));
        assert_eq!(split_evr("x:2.3-1"), None);
    }
}

/// What reading one database gave.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbStats {
    /// Applications read.
    pub count: u64,
    /// Entries skipped as unreadable.
    pub skipped: u64,
}

/// Reads an rpm database of `format` into `sink` (`wal`: the sqlite database's
/// write-ahead log, if any).
pub fn rpm_database<'r, 'a>(
    format: PackageFormat,
    r: &'r mut Reader<'a>,
    wal: Option<&'r mut Reader<'a>>,
    sink: &mut AppSink,
) -> Result<DbStats, Error> {
    let mut stats = DbStats::default();
    let mut f = |blob: &[u8]| -> bool {
        match rpm::application(blob) {
            Ok(Some(a)) => {
                stats.count += 1;
                sink.push(a)
            }
            Ok(None) => true,
            Err(_) => {
                stats.skipped += 1;
                true
            }
        }
    };
    let skipped = match format {
        PackageFormat::RpmSqlite => sqlite::rpm_packages(r, wal, &mut f)?,
        PackageFormat::RpmBerkeleyDb => bdb::rpm_packages(r, &mut f)?,
        PackageFormat::RpmNdb => ndb::rpm_packages(r, &mut f)?,
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "not an rpm database",
            ));
        }
    };
    stats.skipped += skipped;
    Ok(stats)
}
