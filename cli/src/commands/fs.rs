//! The filesystem subcommands of the `skiff` CLI: partitions, filesystems, ls/ll, stat,
//! cat/download, find, and the write side (write, upload, mkdir, rm, mv, chmod, ln -s,
//! truncate). Each launches an appliance, mounts what `-m` (or
//! [`skiff::inspect::plan_mounts`]) says, runs one operation, and shuts the
//! appliance down cleanly (unmount, sync, flush), so written data is in the disk file
//! when the command exits.

use super::{Entry, Output, Sink, Test, parse_u64};
use crate::launch::{LaunchArgs, launch, mount_planned};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use skiff::Session;
use skiff::wire::FileType;
use std::io::{Read, Write};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum FsCmd {
    /// List the partitions: name, table, number, start, size, type, label (bytes).
    Partitions,
    /// List every device and partition with its filesystem: device, type, label, UUID,
    /// size (like `virt-filesystems --all --long`; "unknown" included).
    Filesystems,
    /// List a directory, one name per line.
    Ls { path: String },
    /// Long listing: mode, uid, gid, size, mtime (UTC), name.
    Ll { path: String },
    /// Attributes of a path (following symlinks).
    Stat { path: String },
    /// Attributes of a path itself (not following a final symlink).
    Lstat { path: String },
    /// The target of a symlink.
    Readlink { path: String },
    /// Write a file's contents to stdout.
    Cat { path: String },
    /// Copy a guest file to HOSTPATH (`-`: stdout).
    Download { guest: String, host: PathBuf },
    /// Write LEN bytes of a file at OFFSET to stdout.
    Pread {
        path: String,
        #[arg(value_parser = parse_u64)]
        offset: u64,
        #[arg(value_parser = parse_u64)]
        len: u64,
    },
    /// Statistics of the filesystem holding PATH.
    Statvfs { path: String },
    /// Every path below a directory, relative to it, one per line.
    Find { path: String },
    /// Print true or false: does PATH exist?
    Exists { path: String },
    /// Print true or false: is PATH a regular file (following symlinks)?
    IsFile { path: String },
    /// Print true or false: is PATH a directory (following symlinks)?
    IsDir { path: String },
    /// Create or replace a file with CONTENT (`-`: stdin). Needs --rw.
    Write {
        path: String,
        content: String,
        #[command(flatten)]
        owner: Owner,
    },
    /// Append CONTENT (`-`: stdin) to a file, creating it if missing. Needs --rw.
    Append { path: String, content: String },
    /// Copy HOSTPATH (`-`: stdin) into the guest as GUESTPATH. Needs --rw.
    #[command(after_help = "Examples:
  skiff --rw -a guest.img upload id_ed25519.pub /home/user/.ssh/authorized_keys --uid 1000 --gid 1000")]
    Upload {
        host: PathBuf,
        guest: String,
        #[command(flatten)]
        owner: Owner,
    },
    /// Create a directory. Needs --rw.
    #[command(after_help = "Examples:
  skiff --rw -a guest.img mkdir -p /home/user/.ssh --uid 1000 --gid 1000   # chowns what it creates")]
    Mkdir {
        /// Create missing parents; no error if it exists.
        #[arg(short, long)]
        parents: bool,
        path: String,
        #[command(flatten)]
        owner: Owner,
    },
    /// Remove a file or symlink (`-r`: a directory and everything below it). Needs --rw.
    Rm {
        #[arg(short, long)]
        recursive: bool,
        path: String,
    },
    /// Remove an empty directory. Needs --rw.
    Rmdir { path: String },
    /// Rename or move within one filesystem. Needs --rw.
    Mv { from: String, to: String },
    /// Set permission bits: MODE is octal (`755`, `0644`). Needs --rw.
    Chmod {
        #[arg(value_parser = parse_mode)]
        mode: u32,
        path: String,
    },
    /// Create a symlink LINK pointing at TARGET (only `-s` is supported). Needs --rw.
    Ln {
        #[arg(short, long, required = true)]
        symbolic: bool,
        target: String,
        link: String,
    },
    /// Set a file's size (shrink, or extend with zeros). Needs --rw.
    /// The checksum of a regular file, computed in the appliance: ALGO is md5, sha1,
    /// sha224, sha256, sha384 or sha512 (like guestfish `checksum`).
    Checksum { algo: String, path: String },
    /// `HASH  ./PATH` for every regular file below DIR, like `sha256sum` output
    /// (guestfish `checksums-out`).
    ChecksumsOut { algo: String, dir: String },
    /// Disk usage of PATH and everything below it, in KiB (`du -s`, guestfish `du`).
    Du { path: String },
    /// Copy SRC to DST inside the guest (`-r`: a directory and everything below it),
    /// keeping modes, owners and times where the target can hold them. Needs --rw.
    Cp {
        #[arg(short = 'r', short_alias = 'R', long)]
        recursive: bool,
        src: String,
        dst: String,
    },
    Truncate {
        path: String,
        #[arg(value_parser = parse_u64)]
        size: u64,
    },
    /// Set the owner of PATH (numeric UID and GID; a final symlink itself). Needs --rw.
    /// ext4 and XFS have owners; FAT has none; btrfs and NTFS are not written.
    Chown { uid: u32, gid: u32, path: String },
    /// Create PATH empty if missing, then set its times to now. Needs --rw.
    Touch { path: String },
    /// Set the access and modification times of PATH (seconds since the epoch). Needs --rw.
    Utimens {
        path: String,
        #[arg(allow_negative_numbers = true)]
        atime: i64,
        #[arg(allow_negative_numbers = true)]
        mtime: i64,
    },
    /// Write the value of extended attribute NAME of PATH to stdout (ext4: with --rw, as
    /// its attributes are read on read-write mounts only).
    Getxattr { path: String, name: String },
    /// List the extended attributes of PATH with their values (`name=value` lines; ext4:
    /// with --rw).
    Lgetxattrs { path: String },
    /// Set extended attribute NAME of PATH to VALUE (`-`: stdin). Needs --rw.
    Setxattr {
        path: String,
        name: String,
        value: String,
    },
    /// Remove extended attribute NAME of PATH. Needs --rw.
    Removexattr { path: String, name: String },
    /// copy-out, copy-in, tar-out, tar-in: whole trees ([`super::transfer`]).
    #[command(flatten)]
    Transfer(super::transfer::TransferCmd),
}

/// `--uid`/`--gid` of `write`, `upload` and `mkdir`: the owner of what they create.
#[derive(clap::Args, Clone, Copy, Default, Debug)]
pub struct Owner {
    /// Owner (numeric uid) of the new file or directory (default: unchanged, root).
    #[arg(long, value_name = "UID")]
    pub uid: Option<u32>,
    /// Group (numeric gid) of the new file or directory (default: the --uid, else 0).
    #[arg(long, value_name = "GID")]
    pub gid: Option<u32>,
}

impl Owner {
    /// `(uid, gid)` to set, when either was given (the other one: 0, or the uid for
    /// the gid, as a user's own group usually is).
    fn ids(self) -> Option<(u32, u32)> {
        match (self.uid, self.gid) {
            (None, None) => None,
            (Some(u), None) => Some((u, u)),
            (u, g) => Some((u.unwrap_or(0), g.unwrap_or(0))),
        }
    }
}

impl FsCmd {
    /// Commands that change the disk.
    fn writes(&self) -> bool {
        matches!(
            self,
            FsCmd::Write { .. }
                | FsCmd::Append { .. }
                | FsCmd::Upload { .. }
                | FsCmd::Mkdir { .. }
                | FsCmd::Rm { .. }
                | FsCmd::Rmdir { .. }
                | FsCmd::Mv { .. }
                | FsCmd::Chmod { .. }
                | FsCmd::Ln { .. }
                | FsCmd::Truncate { .. }
                | FsCmd::Cp { .. }
                | FsCmd::Chown { .. }
                | FsCmd::Touch { .. }
                | FsCmd::Utimens { .. }
                | FsCmd::Setxattr { .. }
                | FsCmd::Removexattr { .. }
        ) || matches!(self, FsCmd::Transfer(t) if t.writes())
    }

    /// Commands that work on devices and need nothing mounted.
    fn needs_mounts(&self) -> bool {
        !matches!(self, FsCmd::Partitions | FsCmd::Filesystems)
    }
}

/// An octal mode: `755`, `0644`, `0o4755`.
fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        Ok(_) => Err(format!("{s:?}: mode out of range (at most 7777)")),
        Err(e) => Err(format!("{s:?}: not an octal mode: {e}")),
    }
}

/// Runs one filesystem subcommand end to end: launch, mount, operate, clean shutdown.
pub fn run(a: &LaunchArgs, cmd: FsCmd, sink: &mut dyn Sink) -> Result<()> {
    if cmd.writes() && !a.rw {
        bail!(
            "this command changes the disk: add --rw (disks and mounts are read-only without it)"
        );
    }
    let mut session = launch(a)?;
    let result = prepare_and_run(&mut session, a, cmd, sink);
    // Shut down even after a failed operation: the appliance unmounts, syncs and
    // flushes, so whatever was written is consistent on disk.
    let down = session.shutdown().context("shutting the appliance down");
    result?;
    down
}

fn prepare_and_run(s: &mut Session, a: &LaunchArgs, cmd: FsCmd, sink: &mut dyn Sink) -> Result<()> {
    if cmd.needs_mounts() {
        mount_planned(s, a)?;
    }
    let output = exec(s, cmd, sink)?;
    sink.emit(output)
}

/// Runs one command on a session whose mounts are made (`skiff shell` runs many).
/// Raw bytes (`cat`, `pread`, `download GUEST -`) go to [`Sink::raw`] as they come.
pub fn exec(s: &mut Session, cmd: FsCmd, sink: &mut dyn Sink) -> Result<Output> {
    let done = |bytes: Option<u64>| Output::Done { bytes };
    Ok(match cmd {
        FsCmd::Partitions => Output::Partitions(s.partitions()?),
        FsCmd::Filesystems => Output::Filesystems(s.filesystems()?),
        FsCmd::Ls { path } => Output::Names {
            names: s.ls(&path)?,
            path,
        },
        FsCmd::Find { path } => Output::Names {
            names: s.find(&path)?,
            path,
        },
        FsCmd::Ll { path } => {
            let mut entries = Vec::new();
            for entry in s.read_dir(&path)? {
                let link_target = if entry.stat.file_type == FileType::Symlink {
                    s.readlink(&join(&path, &entry.name)).ok()
                } else {
                    None
                };
                entries.push(Entry { entry, link_target });
            }
            Output::Listing { path, entries }
        }
        FsCmd::Stat { path } => Output::Stat {
            stat: s.stat(&path)?,
            path,
        },
        FsCmd::Lstat { path } => Output::Stat {
            stat: s.lstat(&path)?,
            path,
        },
        FsCmd::Readlink { path } => Output::Readlink {
            target: s.readlink(&path)?,
            path,
        },
        FsCmd::Cat { path } => {
            let mut out = sink.raw();
            s.download(&path, &mut out)?;
            out.flush()?;
            Output::Raw
        }
        FsCmd::Download { guest, host } => {
            if host.as_os_str() == "-" {
                let mut out = sink.raw();
                s.download(&guest, &mut out)?;
                out.flush()?;
                Output::Raw
            } else {
                let f = std::fs::File::create(&host)
                    .with_context(|| format!("creating {}", host.display()))?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                let n = s.download(&guest, &mut w)?;
                w.flush()
                    .with_context(|| format!("writing {}", host.display()))?;
                done(Some(n))
            }
        }
        FsCmd::Pread { path, offset, len } => {
            let data = s.pread(&path, offset, len)?;
            let out = sink.raw();
            out.write_all(&data)?;
            out.flush()?;
            Output::Raw
        }
        FsCmd::Statvfs { path } => Output::Statvfs {
            statvfs: s.statvfs(&path)?,
            path,
        },
        FsCmd::Exists { path } => Output::Test {
            value: s.exists(&path)?,
            test: Test::Exists,
            path,
        },
        FsCmd::IsFile { path } => Output::Test {
            value: s.is_file(&path)?,
            test: Test::IsFile,
            path,
        },
        FsCmd::IsDir { path } => Output::Test {
            value: s.is_dir(&path)?,
            test: Test::IsDir,
            path,
        },
        FsCmd::Write {
            path,
            content,
            owner,
        } => {
            let n = if content == "-" {
                s.upload(&mut std::io::stdin().lock(), &path)?
            } else {
                s.write_file(&path, content.as_bytes())?;
                content.len() as u64
            };
            if let Some((uid, gid)) = owner.ids() {
                s.chown(&path, uid, gid)?;
            }
            done(Some(n))
        }
        FsCmd::Append { path, content } => {
            let data = if content == "-" {
                let mut d = Vec::new();
                std::io::stdin()
                    .lock()
                    .read_to_end(&mut d)
                    .context("reading stdin")?;
                d
            } else {
                content.into_bytes()
            };
            s.append(&path, &data)?;
            done(Some(data.len() as u64))
        }
        FsCmd::Upload { host, guest, owner } => {
            let n = if host.as_os_str() == "-" {
                s.upload(&mut std::io::stdin().lock(), &guest)?
            } else {
                let mut f = std::fs::File::open(&host)
                    .with_context(|| format!("opening {}", host.display()))?;
                s.upload(&mut f, &guest)?
            };
            if let Some((uid, gid)) = owner.ids() {
                s.chown(&guest, uid, gid)?;
            }
            done(Some(n))
        }
        FsCmd::Mkdir {
            parents,
            path,
            owner,
        } => {
            // With an owner, every directory this command creates gets it (not the
            // parents that were there already).
            let mut created = Vec::new();
            if owner.ids().is_some() {
                for dir in ancestors(&path, parents) {
                    if !s.exists(&dir)? {
                        created.push(dir);
                    }
                }
            }
            if parents {
                s.mkdir_p(&path)?
            } else {
                s.mkdir(&path)?
            }
            if let Some((uid, gid)) = owner.ids() {
                for dir in created {
                    s.chown(&dir, uid, gid)?;
                }
            }
            done(None)
        }
        FsCmd::Rm { recursive, path } => {
            if recursive {
                s.rm_rf(&path)?
            } else {
                s.rm(&path)?
            }
            done(None)
        }
        FsCmd::Rmdir { path } => {
            s.rmdir(&path)?;
            done(None)
        }
        FsCmd::Mv { from, to } => {
            s.rename(&from, &to)?;
            done(None)
        }
        FsCmd::Chmod { mode, path } => {
            s.chmod(&path, mode)?;
            done(None)
        }
        FsCmd::Ln {
            symbolic: _,
            target,
            link,
        } => {
            s.ln_s(&target, &link)?;
            done(None)
        }
        FsCmd::Truncate { path, size } => {
            s.truncate(&path, size)?;
            done(None)
        }
        FsCmd::Checksum { algo, path } => Output::Checksum {
            checksum: s.checksum(&algo, &path)?,
            algo,
            path,
        },
        FsCmd::ChecksumsOut { algo, dir } => Output::Checksums {
            files: s
                .checksums_out(&algo, &dir)?
                .into_iter()
                .map(|c| (c.path, c.hash))
                .collect(),
            algo,
            dir,
        },
        FsCmd::Du { path } => Output::Du {
            kib: s.du(&path)?,
            path,
        },
        FsCmd::Cp {
            recursive,
            src,
            dst,
        } => {
            if recursive {
                s.cp_r(&src, &dst)?
            } else {
                s.cp(&src, &dst)?
            }
            done(None)
        }
        FsCmd::Chown { uid, gid, path } => {
            s.chown(&path, uid, gid)?;
            done(None)
        }
        FsCmd::Touch { path } => {
            s.touch(&path)?;
            done(None)
        }
        FsCmd::Utimens { path, atime, mtime } => {
            s.utimens(&path, atime, mtime)?;
            done(None)
        }
        FsCmd::Getxattr { path, name } => {
            let v = s.getxattr(&path, &name)?;
            let out = sink.raw();
            out.write_all(&v)?;
            out.flush()?;
            Output::Raw
        }
        FsCmd::Lgetxattrs { path } => Output::Xattrs {
            xattrs: s.lgetxattrs(&path)?,
            path,
        },
        FsCmd::Setxattr { path, name, value } => {
            let v = if value == "-" {
                let mut d = Vec::new();
                std::io::stdin()
                    .lock()
                    .read_to_end(&mut d)
                    .context("reading stdin")?;
                d
            } else {
                value.into_bytes()
            };
            s.setxattr(&path, &name, &v)?;
            done(None)
        }
        FsCmd::Removexattr { path, name } => {
            s.removexattr(&path, &name)?;
            done(None)
        }
        FsCmd::Transfer(t) => super::transfer::exec(s, t, sink.raw())?,
    })
}

/// The directories `mkdir` (with `parents`: `mkdir -p`) may create for `path`,
/// shallowest first: `/a/b/c` → `/a`, `/a/b`, `/a/b/c` (just `/a/b/c` without).
fn ancestors(path: &str, parents: bool) -> Vec<String> {
    let trimmed = path.trim_end_matches('/');
    if !parents {
        return vec![trimmed.to_string()];
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in trimmed.split('/').filter(|c| !c.is_empty()) {
        cur.push('/');
        cur.push_str(c);
        out.push(cur.clone());
    }
    out
}

/// `dir/name`.
fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("755").unwrap(), 0o755);
        assert_eq!(parse_mode("0644").unwrap(), 0o644);
        assert_eq!(parse_mode("0o4755").unwrap(), 0o4755);
        assert!(parse_mode("999").is_err());
        assert!(parse_mode("17777").is_err());
    }

    #[test]
    fn mkdir_ancestors() {
        assert_eq!(
            ancestors("/home/u/.ssh/", true),
            ["/home", "/home/u", "/home/u/.ssh"]
        );
        assert_eq!(ancestors("/home/u", false), ["/home/u"]);
        assert_eq!(Owner::default().ids(), None);
        let o = |uid, gid| Owner { uid, gid }.ids();
        assert_eq!(o(Some(1000), None), Some((1000, 1000)));
        assert_eq!(o(None, Some(5)), Some((0, 5)));
        assert_eq!(o(Some(1), Some(2)), Some((1, 2)));
    }

    #[test]
    fn joins() {
        assert_eq!(join("/", "etc"), "/etc");
        assert_eq!(join("/etc", "hostname"), "/etc/hostname");
    }
}
