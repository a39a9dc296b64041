//! dpkg: `/var/lib/dpkg/status`, a sequence of deb822 stanzas separated by blank lines.
//! A package is listed when its `Status` says it is installed (the third word,
//! `install ok installed`, `hold ok installed`: dpkg-query's `db:Status-Status`).
//! Fields, as libguestfs maps them: `Package` → name; `Version` split
//! `[epoch:]version[-release]` at the first `:` and the first `-` after it;
//! `Architecture` → arch; `Homepage` → url; `Source` (its name, without a
//! `(version)`) → source_package; the first `Description` line → summary, the
//! continuation lines (their leading space removed, joined with newlines) →
//! description. A stanza whose epoch is not a number is skipped.

use super::source::{Lines, Reader, Result};
use super::{AppSink, DbStats, clean, split_evr};
use alloc::string::String;
use wire::Application;

/// Longest line looked at (longer ones are cut).
const MAX_LINE: usize = 16 * 1024;
/// Most description lines kept per package.
const MAX_DESC_LINES: usize = 256;

#[derive(Default)]
struct Stanza {
    name: Option<String>,
    installed: bool,
    version: Option<String>,
    arch: String,
    url: String,
    source: String,
    summary: String,
    description: String,
    desc_lines: usize,
}

fn field<'l>(line: &'l str, name: &str) -> Option<&'l str> {
    let rest = line.strip_prefix(name)?.strip_prefix(':')?;
    Some(rest.trim())
}

/// Reads the status file into `sink`.
pub fn parse(r: &mut Reader, sink: &mut AppSink) -> Result<DbStats> {
    let mut stats = DbStats::default();
    let mut lines = Lines::new(r, MAX_LINE);
    let mut st = Stanza::default();
    let mut in_description = false;
    loop {
        let line = lines.next_line()?;
        let Some(line) = line else {
            finish(&mut st, sink, &mut stats);
            break;
        };
        let line = String::from_utf8_lossy(&line);
        if line.trim().is_empty() {
            if !finish(&mut st, sink, &mut stats) {
                break;
            }
            in_description = false;
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if in_description && st.desc_lines < MAX_DESC_LINES {
                let cont = line.get(1..).unwrap_or_default();
                if st.desc_lines > 0 {
                    st.description.push('\n');
                }
                st.description.push_str(cont);
                st.desc_lines += 1;
                if st.description.len() > 4 * super::MAX_STRING {
                    st.desc_lines = MAX_DESC_LINES;
                }
            }
            continue;
        }
        in_description = false;
        if let Some(v) = field(&line, "Package") {
            st.name = Some(clean(v.as_bytes(), false));
        } else if let Some(v) = field(&line, "Status") {
            st.installed = v.split_whitespace().nth(2) == Some("installed");
        } else if let Some(v) = field(&line, "Version") {
            st.version = Some(String::from(v));
        } else if let Some(v) = field(&line, "Architecture") {
            st.arch = clean(v.as_bytes(), false);
        } else if let Some(v) = field(&line, "Homepage") {
            st.url = clean(v.as_bytes(), false);
        } else if let Some(v) = field(&line, "Source") {
            let name = v.split_whitespace().next().unwrap_or_default();
            st.source = clean(name.as_bytes(), false);
        } else if let Some(v) = field(&line, "Description") {
            st.summary = clean(v.as_bytes(), false);
            st.description.clear();
            st.desc_lines = 0;
            in_description = true;
        }
    }
    Ok(stats)
}

/// Ends a stanza: adds it when installed and well-formed. False when the sink is full.
fn finish(st: &mut Stanza, sink: &mut AppSink, stats: &mut DbStats) -> bool {
    let s = core::mem::take(st);
    let (Some(name), Some(version)) = (s.name, s.version) else {
        return true;
    };
    if !s.installed || name.is_empty() {
        return true;
    }
    let Some((epoch, ver, rel)) = split_evr(&version) else {
        stats.skipped += 1;
        return true;
    };
    stats.count += 1;
    sink.push(Application {
        name,
        epoch,
        version: clean(ver.as_bytes(), false),
        release: clean(rel.unwrap_or_default().as_bytes(), false),
        arch: s.arch,
        url: s.url,
        source_package: s.source,
        summary: s.summary,
        description: clean(s.description.as_bytes(), true),
        ..Application::default()
    })
}
