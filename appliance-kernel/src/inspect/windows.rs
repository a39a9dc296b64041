//! Windows facts from the registry, as libguestfs' inspection computes them:
//! - SOFTWARE `Microsoft\Windows NT\CurrentVersion`: `ProductName`, `InstallationType`
//!   (the product variant), `EditionID`, the version (`CurrentMajorVersionNumber` and
//!   `CurrentMinorVersionNumber` when both exist, else `CurrentVersion` `X.Y`), the
//!   build (`CurrentBuildNumber`, else `CurrentBuild`);
//! - SYSTEM `Select\Current` → `ControlSet00N`; the hostname from
//!   `<ControlSet>\Services\Tcpip\Parameters` `Hostname` (libguestfs' source), else
//!   `<ControlSet>\Control\ComputerName\ComputerName` `ComputerName`; and
//!   `MountedDevices` `\DosDevices\X:` → an MBR disk signature and offset, or a GPT
//!   partition GUID (`DMIO:ID:` blobs);
//! - SOFTWARE `Microsoft\Windows\CurrentVersion\Uninstall` and its `WOW6432Node` twin:
//!   one application per subkey with a `DisplayName` (name = the subkey's name).

use super::regf::{Hive, Key, REG_BINARY, Value};
use super::source::Result;
use super::{AppSink, DbStats, clean_str};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use wire::{Application, DriveTarget, WindowsFacts};

const CURRENT_VERSION: &[&str] = &["Microsoft", "Windows NT", "CurrentVersion"];
const UNINSTALL: &[&str] = &["Microsoft", "Windows", "CurrentVersion", "Uninstall"];
const UNINSTALL_WOW: &[&str] = &[
    "WOW6432Node",
    "Microsoft",
    "Windows",
    "CurrentVersion",
    "Uninstall",
];

fn string_of(h: &mut Hive, k: &Key, name: &str) -> Result<Option<String>> {
    Ok(h.value(k, name)?
        .and_then(|v| v.string())
        .map(|s| clean_str(&s, false)))
}

fn dword_of(h: &mut Hive, k: &Key, name: &str) -> Result<Option<u32>> {
    Ok(h.value(k, name)?.and_then(|v| v.dword()))
}

/// `6.1` → (6, 1), as libguestfs parses `CurrentVersion`.
fn major_minor(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Reads the SOFTWARE hive's `CurrentVersion` facts into `out`.
pub fn software_facts(h: &mut Hive, out: &mut WindowsFacts) -> Result<()> {
    let Some(k) = h.path(CURRENT_VERSION)? else {
        out.warnings.push(String::from(
            "SOFTWARE: no Microsoft\\Windows NT\\CurrentVersion key",
        ));
        return Ok(());
    };
    out.product_name = string_of(h, &k, "ProductName")?;
    out.product_variant = string_of(h, &k, "InstallationType")?;
    out.edition_id = string_of(h, &k, "EditionID")?;
    let major = dword_of(h, &k, "CurrentMajorVersionNumber")?;
    let minor = dword_of(h, &k, "CurrentMinorVersionNumber")?;
    let version = match (major, minor) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => string_of(h, &k, "CurrentVersion")?.and_then(|s| major_minor(&s)),
    };
    if let Some((a, b)) = version {
        out.major_version = Some(a);
        out.minor_version = Some(b);
    }
    out.build = match string_of(h, &k, "CurrentBuildNumber")? {
        Some(b) => Some(b),
        None => string_of(h, &k, "CurrentBuild")?,
    };
    Ok(())
}

/// Reads the SYSTEM hive's facts into `out`; returns the raw drive mappings (the caller
/// maps them to devices).
pub fn system_facts(h: &mut Hive, out: &mut WindowsFacts) -> Result<Vec<(char, DriveTarget)>> {
    let drives = match h.path(&["MountedDevices"])? {
        Some(k) => drive_mappings(&h.values(&k)?),
        None => Vec::new(),
    };
    let current = match h.path(&["Select"])? {
        Some(k) => dword_of(h, &k, "Current")?,
        None => None,
    };
    let Some(n) = current else {
        out.warnings
            .push(String::from("SYSTEM: no Select\\Current value"));
        return Ok(drives);
    };
    let ccs = format!("ControlSet{n:03}");
    out.hostname = match h.path(&[&ccs, "Services", "Tcpip", "Parameters"])? {
        Some(k) => string_of(h, &k, "Hostname")?,
        None => None,
    }
    .filter(|s| !s.is_empty());
    if out.hostname.is_none()
        && let Some(k) = h.path(&[&ccs, "Control", "ComputerName", "ComputerName"])?
    {
        out.hostname = string_of(h, &k, "ComputerName")?.filter(|s| !s.is_empty());
    }
    out.current_control_set = Some(ccs);
    Ok(drives)
}

/// `MountedDevices` values named `\DosDevices\X:`, by letter.
pub fn drive_mappings(values: &[Value]) -> Vec<(char, DriveTarget)> {
    let mut out = Vec::new();
    for v in values {
        let Some(rest) = v
            .name
            .get(..12)
            .filter(|p| p.eq_ignore_ascii_case("\\DosDevices\\"))
            .and_then(|_| v.name.get(12..))
        else {
            continue;
        };
        let mut cs = rest.chars();
        let (Some(letter), Some(':'), None) = (cs.next(), cs.next(), cs.next()) else {
            continue;
        };
        if !letter.is_ascii_alphabetic() || v.kind != REG_BINARY {
            continue;
        }
        out.push((letter.to_ascii_uppercase(), target(&v.data)));
    }
    out.sort_by_key(|(l, _)| *l);
    out
}

/// What a `MountedDevices` blob points at.
pub fn target(d: &[u8]) -> DriveTarget {
    if d.len() == 12 {
        let sig = d
            .get(..4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes);
        let off = d
            .get(4..12)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes);
        if let (Some(disk_signature), Some(offset)) = (sig, off) {
            return DriveTarget::Mbr {
                disk_signature,
                offset,
            };
        }
    }
    if d.len() >= 24
        && d.starts_with(b"DMIO:ID:")
        && let Some(g) = d.get(8..24)
    {
        return DriveTarget::Gpt {
            partition_guid: guid(g),
        };
    }
    let mut data = String::new();
    for b in d.iter().take(128) {
        data.push_str(&format!("{b:02x}"));
    }
    DriveTarget::Other { data }
}

/// A mixed-endian GUID (`data1` LE u32, `data2`/`data3` LE u16, 8 bytes as they are),
/// lowercase.
fn guid(g: &[u8]) -> String {
    let b = |i: usize| g.get(i).copied().unwrap_or(0);
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b(3),
        b(2),
        b(1),
        b(0),
        b(5),
        b(4),
        b(7),
        b(6),
        b(8),
        b(9),
        b(10),
        b(11),
        b(12),
        b(13),
        b(14),
        b(15)
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYYMMDD` → seconds since the epoch at 00:00 UTC.
pub fn install_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = s.get(..4)?.parse().ok()?;
    let m: u32 = s.get(4..6)?.parse().ok()?;
    let d: u32 = s.get(6..8)?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400)
}

/// The applications of the SOFTWARE hive's Uninstall keys (native, then WOW64).
pub fn applications(h: &mut Hive, sink: &mut AppSink) -> Result<DbStats> {
    let mut stats = DbStats::default();
    for path in [UNINSTALL, UNINSTALL_WOW] {
        let Some(k) = h.path(path)? else {
            continue;
        };
        for child in h.subkeys(&k)? {
            let app = (|| -> Result<Option<Application>> {
                let Some(display_name) = string_of(h, &child, "DisplayName")? else {
                    return Ok(None);
                };
                let get = |h: &mut Hive, n: &str| -> Result<String> {
                    Ok(string_of(h, &child, n)?.unwrap_or_default())
                };
                let comments = h
                    .value(&child, "Comments")?
                    .and_then(|v| v.string())
                    .map(|s| clean_str(&s, true))
                    .unwrap_or_default();
                Ok(Some(Application {
                    name: clean_str(&child.name, false),
                    display_name,
                    version: get(h, "DisplayVersion")?,
                    install_path: get(h, "InstallLocation")?,
                    publisher: get(h, "Publisher")?,
                    url: get(h, "URLInfoAbout")?,
                    description: comments,
                    install_time: string_of(h, &child, "InstallDate")?
                        .and_then(|s| install_date(&s)),
                    ..Application::default()
                }))
            })();
            match app {
                Ok(Some(a)) => {
                    stats.count += 1;
                    if !sink.push(a) {
                        return Ok(stats);
                    }
                }
                Ok(None) => {}
                Err(_) => stats.skipped += 1,
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_guids() {
        assert_eq!(install_date("19700101"), Some(0));
        assert_eq!(install_date("20240229"), Some(1_709_164_800));
        assert_eq!(install_date("2024022"), None);
        assert_eq!(install_date("20241301"), None);
        let g = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(guid(&g), "00112233-4455-6677-8899-aabbccddeeff");
    }
}
