//! `--json`: one JSON document (one line) per command, built from [`skiff::json`]'s
//! types and a few of the CLI's own (`inspect`, `df`, `each`); field names are
//! documented in the README's CLI reference. Byte-stream commands (`cat`, `pread`,
//! `download GUEST -`, `pread-device`) write the raw bytes as without `--json`. Errors
//! are not JSON: one `skiff: ...` line on stderr and a non-zero exit status, as always.

use crate::commands::{EachOutcome, Output, Test};
use crate::warnings;
use anyhow::Result;
use serde::Serialize;
use serde_json::value::RawValue;
use skiff::df::DfEntry;
use skiff::inspect::OsInfo;
use skiff::json::{
    DevicesDoc, DoneDoc, FilesystemsDoc, LlDoc, LlEntry, LvDoc, LvsDoc, MountsDoc, NamesDoc,
    PartitionDoc, PartitionsDoc, PvDoc, PvsDoc, ReadlinkDoc, StatDoc, StatvfsDoc, TestDoc, VgDoc,
    VgsDoc, XattrsDoc,
};
use std::io::Write;

/// Writes `output`'s JSON document to `out`.
pub fn render(out: &mut impl Write, output: Output) -> Result<()> {
    match output {
        // Raw bytes stay raw.
        Output::Raw => Ok(()),
        Output::Done { bytes: None } => json_to(out, &DoneDoc::ok()),
        Output::Done { bytes: Some(n) } => json_to(out, &DoneDoc::bytes(n)),
        Output::Transfer { op, report } => {
            let mut v = serde_json::to_value(&report)?;
            if let Some(m) = v.as_object_mut() {
                m.insert("op".into(), op.into());
            }
            json_to(out, &v)
        }
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
        Output::Checksum {
            path,
            algo,
            checksum,
        } => json_to(
            out,
            &serde_json::json!({ "path": path, "algo": algo, "checksum": checksum }),
        ),
        Output::Checksums { dir, algo, files } => {
            let files: Vec<serde_json::Value> = files
                .into_iter()
                .map(|(path, hash)| serde_json::json!({ "path": path, "checksum": hash }))
                .collect();
            json_to(
                out,
                &serde_json::json!({ "dir": dir, "algo": algo, "files": files }),
            )
        }
        Output::Du { path, kib } => json_to(out, &serde_json::json!({ "path": path, "kib": kib })),
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
        Output::Inspect(r) => json_to(
            out,
            &InspectDoc {
                operating_systems: &r.oses,
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
        Output::Pvs { pvs, .. } => json_to(
            out,
            &PvsDoc {
                pvs: pvs.iter().map(PvDoc::from).collect(),
            },
        ),
        Output::Vgs { vgs, .. } => json_to(
            out,
            &VgsDoc {
                vgs: vgs.iter().map(VgDoc::from).collect(),
            },
        ),
        Output::Lvs { lvs, full } => json_to(
            out,
            &LvsDoc {
                lvs: lvs
                    .iter()
                    .filter(|l| full || !l.hidden)
                    .map(LvDoc::from)
                    .collect(),
            },
        ),
        Output::Xattrs { path, xattrs } => json_to(
            out,
            &XattrsDoc {
                path: &path,
                xattrs: &xattrs,
            },
        ),
        Output::EachImage(o) => Ok(write_outcome(out, &o)?),
        Output::Customize(report) => json_to(out, &report),
        Output::SysprepOperations(ops) => json_to(
            out,
            &SysprepOpsDoc {
                operations: ops
                    .iter()
                    .map(|o| SysprepOpDoc {
                        name: o.name,
                        default: o.default,
                        offered: !matches!(o.effect, skiff::customize::sysprep::Effect::NotOffered),
                        description: o.description,
                    })
                    .collect(),
            },
        ),
        Output::Summary { ok, failed } => {
            eprintln!("{ok} ok, {failed} failed");
            Ok(())
        }
    }
}

/// Writes `v` as one line of JSON to `out`, with the pending warnings (if any) added to
/// it as a last field, `"warnings"`, when it is an object.
fn json_to(out: &mut impl Write, v: &impl Serialize) -> Result<()> {
    let doc = with_warnings(serde_json::to_string(v)?, &warnings::take())?;
    writeln!(out, "{doc}")?;
    out.flush()?;
    Ok(())
}

/// `doc` (one JSON document) with `"warnings": [...]` appended as its last field when
/// there are any and it is an object; its own fields keep their order. (Spliced into the
/// text rather than through `serde_json::Value`, whose map sorts keys unless serde_json's
/// `preserve_order` feature is on, and that feature would be switched on for the whole
/// workspace, changing other crates' `Value`s too.)
fn with_warnings(doc: String, pending: &[String]) -> Result<String> {
    if pending.is_empty() || !doc.starts_with('{') || !doc.ends_with('}') {
        return Ok(doc);
    }
    let body = &doc[1..doc.len() - 1];
    let sep = if body.is_empty() { "" } else { "," };
    let list = serde_json::to_string(pending)?;
    Ok(format!("{{{body}{sep}\"warnings\":{list}}}"))
}

/// `sysprep --list-operations`: `{"operations": [{name, default, offered, description}]}`.
#[derive(Serialize)]
struct SysprepOpsDoc {
    operations: Vec<SysprepOpDoc>,
}

#[derive(Serialize)]
struct SysprepOpDoc {
    name: &'static str,
    default: bool,
    offered: bool,
    description: &'static str,
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
    output: EachOutput,
    /// The command's stderr (its error message), if any.
    error: Option<String>,
}

/// A child's stdout in `each --json`: its JSON document as it wrote it (field order
/// and all), or its text.
#[derive(Serialize)]
#[serde(untagged)]
enum EachOutput {
    Json(Box<RawValue>),
    Text(String),
}

/// One image's run under `each`, as one line.
fn write_outcome(out: &mut impl Write, o: &EachOutcome) -> std::io::Result<()> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let err = text(&o.stderr);
    let output = serde_json::from_slice(&o.stdout)
        .map(EachOutput::Json)
        .unwrap_or_else(|_| EachOutput::Text(text(&o.stdout)));
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
    fn each_keeps_the_child_document() {
        let o = |stdout: &[u8]| EachOutcome {
            image: "a.img".into(),
            ok: true,
            code: Some(0),
            stdout: stdout.to_vec(),
            stderr: Vec::new(),
        };
        let mut out = Vec::new();
        write_outcome(&mut out, &o(b"{\"path\":\"/\",\"names\":[]}\n")).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"image\":\"a.img\",\"ok\":true,\"exit_code\":0,\
             \"output\":{\"path\":\"/\",\"names\":[]},\"error\":null}\n"
        );
        let mut out = Vec::new();
        write_outcome(&mut out, &o(b"not json\n")).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("\"output\":\"not json\\n\"")
        );
    }

    #[test]
    fn warnings_come_last() {
        let w = ["fstab: /boot/efi: not found".to_string()];
        assert_eq!(
            with_warnings("{\"path\":\"/etc\",\"names\":[\"a\"]}".into(), &w).unwrap(),
            "{\"path\":\"/etc\",\"names\":[\"a\"],\"warnings\":[\"fstab: /boot/efi: not found\"]}"
        );
        assert_eq!(
            with_warnings("{}".into(), &w).unwrap(),
            "{\"warnings\":[\"fstab: /boot/efi: not found\"]}"
        );
        assert_eq!(with_warnings("[1]".into(), &w).unwrap(), "[1]");
        assert_eq!(
            with_warnings("{\"ok\":true}".into(), &[]).unwrap(),
            "{\"ok\":true}"
        );
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
