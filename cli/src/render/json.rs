//! `--json`: one JSON document (one line) per command, built from [`skiff::json`]'s
//! types and a few of the CLI's own (`inspect`, `df`, `each`); field names are
//! documented in the README's CLI reference. Byte-stream commands (`cat`, `pread`,
//! `download GUEST -`, `pread-device`) write the raw bytes as without `--json`. Errors
//! are not JSON: one `skiff: ...` line on stderr and a non-zero exit status, as always.

use crate::commands::{EachOutcome, Output, Test};
use crate::warnings;
use anyhow::Result;
use serde::Serialize;
use skiff::df::DfEntry;
use skiff::inspect::OsInfo;
use skiff::json::{
    DevicesDoc, DoneDoc, FilesystemsDoc, LlDoc, LlEntry, MountsDoc, NamesDoc, PartitionDoc,
    PartitionsDoc, ReadlinkDoc, StatDoc, StatvfsDoc, TestDoc,
};
use std::io::Write;

/// Writes `output`'s JSON document to `out`.
pub fn render(out: &mut impl Write, output: Output) -> Result<()> {
    match output {
        // Raw bytes stay raw.
        Output::Raw => Ok(()),
        Output::Done { bytes: None } => json_to(out, &DoneDoc::ok()),
        Output::Done { bytes: Some(n) } => json_to(out, &DoneDoc::bytes(n)),
        Output::Devices { devices, chains } => json_to(out, &DevicesDoc::new(&devices, &chains)),
        Output::Partitions(parts) => json_to(
            out,
            &PartitionsDoc {
                partitions: parts.iter().map(PartitionDoc::from).collect(),
            },
        ),
        Output::Filesystems(fs) => json_to(out, &FilesystemsDoc { filesystems: &fs }),
        Output::Names { path, names } => json_to(out, &NamesDoc { path: &path, names }),
        Output::Listing { path, entries } => json_to(
            out,
            &LlDoc {
                path: &path,
                entries: entries
                    .into_iter()
                    .map(|e| LlEntry {
                        attrs: (&e.entry.stat).into(),
                        name: e.entry.name,
                        link_target: e.link_target,
                    })
                    .collect(),
            },
        ),
        Output::Stat { path, stat } => json_to(out, &StatDoc::new(&path, &stat)),
        Output::Readlink { path, target } => json_to(
            out,
            &ReadlinkDoc {
                path: &path,
                target: &target,
            },
        ),
        Output::Statvfs { path, statvfs } => json_to(
            out,
            &StatvfsDoc {
                path: &path,
                statvfs: &statvfs,
            },
        ),
        Output::Test { path, test, value } => {
            let mut doc = TestDoc {
                path: &path,
                exists: None,
                is_file: None,
                is_dir: None,
            };
            *match test {
                Test::Exists => &mut doc.exists,
                Test::IsFile => &mut doc.is_file,
                Test::IsDir => &mut doc.is_dir,
            } = Some(value);
            json_to(out, &doc)
        }
        Output::Mounts(mounts) => json_to(out, &MountsDoc { mounts: &mounts }),
        Output::Inspect(found) => json_to(
            out,
            &InspectDoc {
                operating_systems: &found,
            },
        ),
        Output::Df(report) => json_to(
            out,
            &DfDoc {
                filesystems: report
                    .rows
                    .iter()
                    .map(|r| DfRow {
                        image: &r.image,
                        fs: &r.fs,
                    })
                    .collect(),
                errors: report
                    .errors
                    .iter()
                    .map(|e| ImageError {
                        image: &e.image,
                        error: &e.error,
                    })
                    .collect(),
            },
        ),
        Output::EachImage(o) => Ok(write_outcome(out, &o)?),
        Output::Summary { ok, failed } => {
            eprintln!("{ok} ok, {failed} failed");
            Ok(())
        }
    }
}

/// Writes `v` as one line of JSON to `out`, with the pending warnings (if any) added to
/// it as `"warnings"` when it is an object.
fn json_to(out: &mut impl Write, v: &impl Serialize) -> Result<()> {
    let pending = warnings::take();
    if pending.is_empty() {
        serde_json::to_writer(&mut *out, v)?;
    } else {
        let mut doc = serde_json::to_value(v)?;
        if let Some(o) = doc.as_object_mut() {
            o.insert("warnings".into(), pending.into());
        }
        serde_json::to_writer(&mut *out, &doc)?;
    }
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// `inspect`: `{"operating_systems": [...]}`.
#[derive(Serialize)]
struct InspectDoc<'a> {
    operating_systems: &'a [OsInfo],
}

/// One row of `df`: a filesystem of one image.
#[derive(Serialize)]
struct DfRow<'a> {
    image: &'a str,
    #[serde(flatten)]
    fs: &'a DfEntry,
}

/// An image that could not be measured (`df`).
#[derive(Serialize)]
struct ImageError<'a> {
    image: &'a str,
    error: &'a str,
}

/// `df`: `{"filesystems": [...], "errors": [...]}`.
#[derive(Serialize)]
struct DfDoc<'a> {
    filesystems: Vec<DfRow<'a>>,
    errors: Vec<ImageError<'a>>,
}

/// One line of `each`.
#[derive(Serialize)]
struct EachDoc {
    image: String,
    ok: bool,
    exit_code: Option<i32>,
    /// The command's own JSON document (or its text output when it is not JSON).
    output: serde_json::Value,
    /// The command's stderr (its error message), if any.
    error: Option<String>,
}

/// One image's run under `each`, as one line.
fn write_outcome(out: &mut impl Write, o: &EachOutcome) -> std::io::Result<()> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let err = text(&o.stderr);
    let output = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| serde_json::Value::String(text(&o.stdout)));
    let doc = EachDoc {
        image: o.image.clone(),
        ok: o.ok,
        exit_code: o.code,
        output,
        error: (!err.trim().is_empty()).then(|| err.trim_end().to_string()),
    };
    serde_json::to_writer(&mut *out, &doc)?;
    writeln!(out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(output: Output) -> String {
        let mut out = Vec::new();
        render(&mut out, output).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn documents() {
        assert_eq!(rendered(Output::Raw), "");
        assert_eq!(rendered(Output::Done { bytes: None }), "{\"ok\":true}\n");
        assert_eq!(
            rendered(Output::Done { bytes: Some(5) }),
            "{\"ok\":true,\"bytes\":5}\n"
        );
        let test = |test, value| Output::Test {
            path: "/a".into(),
            test,
            value,
        };
        assert_eq!(
            rendered(test(Test::IsFile, false)),
            "{\"path\":\"/a\",\"is_file\":false}\n"
        );
        assert_eq!(
            rendered(test(Test::Exists, true)),
            "{\"path\":\"/a\",\"exists\":true}\n"
        );
        assert_eq!(
            rendered(Output::Names {
                path: "/".into(),
                names: vec!["etc".into()]
            }),
            "{\"path\":\"/\",\"names\":[\"etc\"]}\n"
        );
    }
}
