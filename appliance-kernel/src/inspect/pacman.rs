//! pacman (Arch): one `desc` file per package in `/var/lib/pacman/local/<name-ver>/`,
//! sections `%NAME%`, `%VERSION%`, ... each followed by its value lines and a blank
//! line. As libguestfs reads them: `%NAME%`, `%VERSION%` (`[epoch:]version-release`,
//! the release required), `%ARCH%` (required), `%URL%`, `%DESC%` → description; and
//! `%INSTALLDATE%` → install_time.

use super::{clean, split_evr};
use alloc::string::String;
use wire::Application;

/// The largest `desc` file read (libguestfs reads 8 KiB; real ones are ~1 KiB).
pub const MAX_DESC: usize = 64 * 1024;

/// Parses one `desc` file; `None` when a required field is missing or malformed.
pub fn parse_desc(data: &[u8]) -> Option<Application> {
    let data = data.get(..data.len().min(MAX_DESC))?;
    let text = String::from_utf8_lossy(data);
    let mut name = None;
    let mut version = None;
    let mut arch = None;
    let mut url = String::new();
    let mut desc = String::new();
    let mut installed = None;
    let mut key: Option<&str> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            key = None;
            continue;
        }
        if let Some(k) = key.take() {
            // The first value line of the section (as libguestfs reads it).
            let v = clean(line.as_bytes(), false);
            match k {
                "%NAME%" => name = Some(v),
                "%VERSION%" => version = Some(v),
                "%ARCH%" => arch = Some(v),
                "%URL%" => url = v,
                "%DESC%" => desc = v,
                "%INSTALLDATE%" => installed = v.parse::<i64>().ok(),
                _ => {}
            }
            continue;
        }
        if line.starts_with('%') && line.ends_with('%') && line.len() > 2 {
            key = Some(line);
        }
    }
    let (name, version, arch) = (name?, version?, arch?);
    let (epoch, ver, rel) = split_evr(&version)?;
    let rel = rel?;
    if name.is_empty() || ver.is_empty() || rel.is_empty() {
        return None;
    }
    Some(Application {
        name,
        epoch,
        version: String::from(ver),
        release: String::from(rel),
        arch,
        url,
        description: desc,
        install_time: installed,
        ..Application::default()
    })
}
