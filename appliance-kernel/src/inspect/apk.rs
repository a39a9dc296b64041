//! apk (Alpine): `/lib/apk/db/installed`, records of `X:value` lines separated by blank
//! lines. As libguestfs reads them: `P` → name, `V` → `[epoch:]version-rrelease` (the
//! `r` of the release dropped), `A` → arch, `U` → url, `T` → description; and `o`
//! (origin) → source_package. Lines of other shapes are ignored; a record without a
//! name or version, or with a non-numeric epoch, is skipped.

use super::source::{Lines, Reader, Result};
use super::{AppSink, DbStats, clean, split_evr};
use alloc::string::String;
use wire::Application;

const MAX_LINE: usize = 16 * 1024;

#[derive(Default)]
struct Record {
    name: Option<String>,
    version: Option<String>,
    arch: String,
    url: String,
    description: String,
    origin: String,
}

/// Reads the installed database into `sink`.
pub fn parse(r: &mut Reader, sink: &mut AppSink) -> Result<DbStats> {
    let mut stats = DbStats::default();
    let mut lines = Lines::new(r, MAX_LINE);
    let mut rec = Record::default();
    while let Some(line) = lines.next_line()? {
        if line.is_empty() {
            if !finish(&mut rec, sink, &mut stats) {
                return Ok(stats);
            }
            continue;
        }
        let (Some(&key), Some(b':')) = (line.first(), line.get(1).copied()) else {
            continue;
        };
        let value = line.get(2..).unwrap_or_default();
        match key {
            b'P' => rec.name = Some(clean(value, false)),
            b'V' => rec.version = Some(clean(value, false)),
            b'A' => rec.arch = clean(value, false),
            b'U' => rec.url = clean(value, false),
            b'T' => rec.description = clean(value, false),
            b'o' => rec.origin = clean(value, false),
            _ => {}
        }
    }
    finish(&mut rec, sink, &mut stats);
    Ok(stats)
}

fn finish(rec: &mut Record, sink: &mut AppSink, stats: &mut DbStats) -> bool {
    let r = core::mem::take(rec);
    let (Some(name), Some(version)) = (r.name, r.version) else {
        return true;
    };
    if name.is_empty() {
        return true;
    }
    let Some((epoch, ver, rel)) = split_evr(&version) else {
        stats.skipped += 1;
        return true;
    };
    let rel = rel.unwrap_or_default();
    let rel = rel.strip_prefix('r').unwrap_or(rel);
    stats.count += 1;
    sink.push(Application {
        name,
        epoch,
        version: String::from(ver),
        release: String::from(rel),
        arch: r.arch,
        url: r.url,
        description: r.description,
        source_package: r.origin,
        ..Application::default()
    })
}
