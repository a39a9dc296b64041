//! `--json` for the device and filesystem commands: one JSON document (one line) per
//! command, built from [`skiff::json`]'s types (field names documented in the README's
//! CLI reference). Byte-stream commands (`cat`, `pread`, `download GUEST -`,
//! `pread-device`) write the raw bytes as without `--json`. Errors are not JSON: one
//! `skiff: ...` line on stderr and a non-zero exit status, as always.

use crate::cli_fs::{self, FsCmd};
use crate::output::json;
use anyhow::{Context, Result};
use skiff::Session;
use skiff::json::{
    DevicesDoc, DoneDoc, FilesystemsDoc, LlDoc, LlEntry, MountsDoc, NamesDoc, PartitionDoc,
    PartitionsDoc, ReadlinkDoc, StatDoc, StatvfsDoc, TestDoc,
};
use skiff::wire::FileType;
use std::io::{Read, Write};

/// `devices --json`.
pub fn devices(s: &Session) -> Result<()> {
    json(&DevicesDoc::new(s.devices(), &s.chains()))
}

/// `mounts --json` (shell).
pub fn mounts(s: &mut Session) -> Result<()> {
    json(&MountsDoc {
        mounts: &s.mounts()?,
    })
}

fn test(path: &str) -> TestDoc<'_> {
    TestDoc {
        path,
        exists: None,
        is_file: None,
        is_dir: None,
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn stdin_bytes() -> Result<Vec<u8>> {
    let mut d = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut d)
        .context("reading stdin")?;
    Ok(d)
}

/// Runs one filesystem command on a mounted session, printing its JSON document.
pub fn exec(s: &mut Session, cmd: FsCmd) -> Result<()> {
    match cmd {
        FsCmd::Partitions => json(&PartitionsDoc {
            partitions: s.partitions()?.iter().map(PartitionDoc::from).collect(),
        }),
        FsCmd::Filesystems => json(&FilesystemsDoc {
            filesystems: &s.filesystems()?,
        }),
        FsCmd::Ls { path } => json(&NamesDoc {
            names: s.ls(&path)?,
            path: &path,
        }),
        FsCmd::Find { path } => json(&NamesDoc {
            names: s.find(&path)?,
            path: &path,
        }),
        FsCmd::Ll { path } => {
            let mut entries = Vec::new();
            for e in s.read_dir(&path)? {
                let link_target = if e.stat.file_type == FileType::Symlink {
                    s.readlink(&join(&path, &e.name)).ok()
                } else {
                    None
                };
                entries.push(LlEntry {
                    attrs: (&e.stat).into(),
                    name: e.name,
                    link_target,
                });
            }
            json(&LlDoc {
                path: &path,
                entries,
            })
        }
        FsCmd::Stat { path } => json(&StatDoc::new(&path, &s.stat(&path)?)),
        FsCmd::Lstat { path } => json(&StatDoc::new(&path, &s.lstat(&path)?)),
        FsCmd::Readlink { path } => json(&ReadlinkDoc {
            target: &s.readlink(&path)?,
            path: &path,
        }),
        FsCmd::Statvfs { path } => json(&StatvfsDoc {
            statvfs: &s.statvfs(&path)?,
            path: &path,
        }),
        FsCmd::Exists { path } => json(&TestDoc {
            exists: Some(s.exists(&path)?),
            ..test(&path)
        }),
        FsCmd::IsFile { path } => json(&TestDoc {
            is_file: Some(s.is_file(&path)?),
            ..test(&path)
        }),
        FsCmd::IsDir { path } => json(&TestDoc {
            is_dir: Some(s.is_dir(&path)?),
            ..test(&path)
        }),
        FsCmd::Download { guest, host } if host.as_os_str() != "-" => {
            let f = std::fs::File::create(&host)
                .with_context(|| format!("creating {}", host.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let n = s.download(&guest, &mut w)?;
            w.flush()
                .with_context(|| format!("writing {}", host.display()))?;
            json(&DoneDoc::bytes(n))
        }
        // Raw bytes stay raw.
        cmd @ (FsCmd::Cat { .. } | FsCmd::Download { .. } | FsCmd::Pread { .. }) => {
            cli_fs::exec(s, cmd, false)
        }
        FsCmd::Write { path, content } => {
            let n = if content == "-" {
                s.upload(&mut std::io::stdin().lock(), &path)?
            } else {
                s.write_file(&path, content.as_bytes())?;
                content.len() as u64
            };
            json(&DoneDoc::bytes(n))
        }
        FsCmd::Append { path, content } => {
            let data = if content == "-" {
                stdin_bytes()?
            } else {
                content.into_bytes()
            };
            s.append(&path, &data)?;
            json(&DoneDoc::bytes(data.len() as u64))
        }
        FsCmd::Upload { host, guest } => {
            let n = if host.as_os_str() == "-" {
                s.upload(&mut std::io::stdin().lock(), &guest)?
            } else {
                let mut f = std::fs::File::open(&host)
                    .with_context(|| format!("opening {}", host.display()))?;
                s.upload(&mut f, &guest)?
            };
            json(&DoneDoc::bytes(n))
        }
        FsCmd::Checksum { algo, path } => {
            let sum = s.checksum(&algo, &path)?;
            json(&serde_json::json!({ "path": path, "algo": algo, "checksum": sum }))
        }
        FsCmd::ChecksumsOut { algo, dir } => {
            let files: Vec<serde_json::Value> = s
                .checksums_out(&algo, &dir)?
                .into_iter()
                .map(|c| serde_json::json!({ "path": c.path, "checksum": c.hash }))
                .collect();
            json(&serde_json::json!({ "dir": dir, "algo": algo, "files": files }))
        }
        FsCmd::Du { path } => {
            let kib = s.du(&path)?;
            json(&serde_json::json!({ "path": path, "kib": kib }))
        }
        // The other writes print nothing as text: run them, then report success.
        cmd @ (FsCmd::Cp { .. }
        | FsCmd::Mkdir { .. }
        | FsCmd::Rm { .. }
        | FsCmd::Rmdir { .. }
        | FsCmd::Mv { .. }
        | FsCmd::Chmod { .. }
        | FsCmd::Ln { .. }
        | FsCmd::Truncate { .. }) => {
            cli_fs::exec(s, cmd, false)?;
            json(&DoneDoc::ok())
        }
    }
}
