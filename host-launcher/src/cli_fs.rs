//! The filesystem subcommands of the `skiff` CLI: partitions, filesystems, ls/ll, stat,
//! cat/download, find, and the write side (write, upload, mkdir, rm, mv, chmod, ln -s,
//! truncate). Each launches an appliance, mounts what `-m` (or [`plan_mounts`]) says,
//! runs one operation, and shuts the appliance down cleanly (unmount, sync, flush), so
//! written data is in the disk file when the command exits.

use super::{LaunchArgs, launch, parse_u64};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use skiff::fs::mode_string;
use skiff::wire::{FileType, Filesystem, Stat};
use skiff::{MountOptions, Session};
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
    Write { path: String, content: String },
    /// Append CONTENT (`-`: stdin) to a file, creating it if missing. Needs --rw.
    Append { path: String, content: String },
    /// Copy HOSTPATH (`-`: stdin) into the guest as GUESTPATH. Needs --rw.
    Upload { host: PathBuf, guest: String },
    /// Create a directory. Needs --rw.
    Mkdir {
        /// Create missing parents; no error if it exists.
        #[arg(short, long)]
        parents: bool,
        path: String,
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
    Truncate {
        path: String,
        #[arg(value_parser = parse_u64)]
        size: u64,
    },
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
        )
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

/// One `-m DEV[:MOUNTPOINT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub device: String,
    pub mountpoint: String,
}

/// `DEV` (mounted at `/`) or `DEV:MOUNTPOINT`.
pub fn parse_mount(s: &str) -> Result<MountSpec, String> {
    let (device, mountpoint) = match s.split_once(':') {
        Some((d, m)) => (d, m),
        None => (s, "/"),
    };
    if device.is_empty() {
        return Err(format!("{s:?}: empty device"));
    }
    if !mountpoint.starts_with('/') {
        return Err(format!("{s:?}: the mountpoint must be an absolute path"));
    }
    Ok(MountSpec {
        device: device.into(),
        mountpoint: mountpoint.into(),
    })
}

/// A filesystem skiff could be asked to mount (not a partition it cannot read, swap,
/// or a container like LUKS/LVM).
fn is_mountable(f: &Filesystem) -> bool {
    !matches!(
        f.fstype.as_str(),
        "unknown" | "swap" | "crypto_LUKS" | "LVM2_member"
    )
}

/// Which mounts to make, in order: the `-m` options as given, or, without any, the one
/// filesystem on the disks at `/`, or with several, the OS found by inspection mounted
/// the way it mounts itself ([`skiff::inspect::mount_plan`]).
pub fn plan_mounts(session: &mut Session, given: &[MountSpec]) -> Result<Vec<MountSpec>> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    let all = session.filesystems().context("listing the filesystems")?;
    let found: Vec<&Filesystem> = all.iter().filter(|f| is_mountable(f)).collect();
    match found.as_slice() {
        [one] => Ok(vec![MountSpec {
            device: one.device.clone(),
            mountpoint: "/".into(),
        }]),
        [] => {
            let listed: Vec<String> = all
                .iter()
                .map(|f| format!("{} ({})", f.device, f.fstype))
                .collect();
            bail!(
                "no filesystem found to mount (devices: {}); use -m DEV[:MOUNTPOINT]",
                if listed.is_empty() {
                    "none".to_string()
                } else {
                    listed.join(", ")
                }
            )
        }
        many => {
            // Several filesystems: mount the guest the way it mounts itself (inspection:
            // the OS root at /, then its fstab entries, shallowest first).
            let found = skiff::inspect::inspect_os(session).context("inspecting the disks")?;
            if let Some(os) = found.first() {
                let plan = skiff::inspect::mount_plan(os);
                return Ok(plan
                    .into_iter()
                    .map(|(device, mountpoint)| MountSpec { device, mountpoint })
                    .collect());
            }
            let listed: Vec<String> = many
                .iter()
                .map(|f| format!("{} ({})", f.device, f.fstype))
                .collect();
            bail!(
                "the disks hold {} filesystems: {}; choose with -m DEV[:MOUNTPOINT] \
                 (e.g. -m {})",
                many.len(),
                listed.join(", "),
                many[0].device
            )
        }
    }
}

/// Runs one filesystem subcommand end to end: launch, mount, operate, clean shutdown.
pub fn run(a: &LaunchArgs, cmd: FsCmd) -> Result<()> {
    if cmd.writes() && !a.rw {
        bail!(
            "this command changes the disk: add --rw (disks and mounts are read-only without it)"
        );
    }
    let mut session = launch(a)?;
    let result = prepare_and_run(&mut session, a, cmd);
    // Shut down even after a failed operation: the appliance unmounts, syncs and
    // flushes, so whatever was written is consistent on disk.
    let down = session.shutdown().context("shutting the appliance down");
    result?;
    down
}

fn prepare_and_run(s: &mut Session, a: &LaunchArgs, cmd: FsCmd) -> Result<()> {
    if cmd.needs_mounts() {
        mount_planned(s, a)?;
    }
    exec(s, cmd, a.json)
}

/// Makes the mounts [`plan_mounts`] decides (read-write with `--rw`). Mounts named with
/// `-m`, and the root of an inspected guest, must succeed. The guest's other fstab
/// entries are forgiving, as with `virt-cat` and `guestfish -i`: one that fails (missing
/// mountpoint directory, unreadable or unsupported filesystem, absent device) is a
/// warning ([`crate::output::warn`]) and the command goes on.
pub fn mount_planned(s: &mut Session, a: &LaunchArgs) -> Result<()> {
    let from_inspection = a.mounts.is_empty();
    for (i, m) in plan_mounts(s, &a.mounts)?.into_iter().enumerate() {
        let opts = MountOptions {
            readonly: !a.rw,
            fstype: None,
        };
        let r = s
            .mount(&m.device, &m.mountpoint, opts)
            .with_context(|| format!("mounting {} at {}", m.device, m.mountpoint));
        match r {
            Err(e) if from_inspection && i > 0 && !is_fatal(&e) => {
                crate::output::warn(format!(
                    "some filesystems could not be mounted (ignored): {e:#}"
                ));
            }
            r => r?,
        }
    }
    Ok(())
}

/// Errors after which the session cannot go on (the appliance is gone), as opposed to a
/// refusal of one mount.
fn is_fatal(e: &anyhow::Error) -> bool {
    !matches!(
        e.downcast_ref::<skiff::Error>(),
        Some(skiff::Error::Remote(_))
    )
}

/// Runs one command on a session whose mounts are made (`skiff shell` runs many);
/// `json`: print its `--json` document instead of text ([`crate::cli_json`]).
pub fn exec(s: &mut Session, cmd: FsCmd, json: bool) -> Result<()> {
    if json {
        return crate::cli_json::exec(s, cmd);
    }
    let mut out = std::io::stdout().lock();
    match cmd {
        FsCmd::Partitions => {
            for p in s.partitions()? {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    p.name,
                    match p.table {
                        skiff::wire::TableKind::Mbr => "mbr",
                        skiff::wire::TableKind::Gpt => "gpt",
                    },
                    p.number,
                    p.start,
                    p.size,
                    p.part_type,
                    p.label.as_deref().unwrap_or("-")
                )?;
            }
        }
        FsCmd::Filesystems => {
            let fs = s.filesystems()?;
            let rows: Vec<[String; 5]> = fs
                .iter()
                .map(|f| {
                    [
                        f.device.clone(),
                        f.fstype.clone(),
                        f.label.clone().unwrap_or_else(|| "-".into()),
                        f.uuid.clone().unwrap_or_else(|| "-".into()),
                        f.size.to_string(),
                    ]
                })
                .collect();
            let head = ["Name", "VFS", "Label", "UUID", "Size"].map(String::from);
            write_table(&mut out, &head, &rows)?;
        }
        FsCmd::Ls { path } => {
            for n in s.ls(&path)? {
                writeln!(out, "{n}")?;
            }
        }
        FsCmd::Ll { path } => {
            for e in s.read_dir(&path)? {
                let mut name = e.name.clone();
                if e.stat.file_type == FileType::Symlink {
                    let full = join(&path, &e.name);
                    if let Ok(t) = s.readlink(&full) {
                        name = format!("{name} -> {t}");
                    }
                }
                writeln!(
                    out,
                    "{} {:>5} {:>5} {:>10} {} {}",
                    mode_string(e.stat.file_type, e.stat.mode),
                    e.stat.uid,
                    e.stat.gid,
                    e.stat.size,
                    format_time(e.stat.mtime),
                    name
                )?;
            }
        }
        FsCmd::Stat { path } => print_stat(&mut out, &s.stat(&path)?)?,
        FsCmd::Lstat { path } => print_stat(&mut out, &s.lstat(&path)?)?,
        FsCmd::Readlink { path } => writeln!(out, "{}", s.readlink(&path)?)?,
        FsCmd::Cat { path } => {
            s.download(&path, &mut out)?;
        }
        FsCmd::Download { guest, host } => {
            if host.as_os_str() == "-" {
                s.download(&guest, &mut out)?;
            } else {
                let f = std::fs::File::create(&host)
                    .with_context(|| format!("creating {}", host.display()))?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                s.download(&guest, &mut w)?;
                w.flush()
                    .with_context(|| format!("writing {}", host.display()))?;
            }
        }
        FsCmd::Pread { path, offset, len } => out.write_all(&s.pread(&path, offset, len)?)?,
        FsCmd::Statvfs { path } => {
            let v = s.statvfs(&path)?;
            writeln!(out, "bsize: {}", v.block_size)?;
            writeln!(out, "blocks: {}", v.blocks)?;
            writeln!(out, "bfree: {}", v.blocks_free)?;
            writeln!(out, "bavail: {}", v.blocks_avail)?;
            writeln!(out, "files: {}", v.files)?;
            writeln!(out, "ffree: {}", v.files_free)?;
            writeln!(out, "namemax: {}", v.name_max)?;
        }
        FsCmd::Find { path } => {
            for n in s.find(&path)? {
                writeln!(out, "{n}")?;
            }
        }
        FsCmd::Exists { path } => writeln!(out, "{}", s.exists(&path)?)?,
        FsCmd::IsFile { path } => writeln!(out, "{}", s.is_file(&path)?)?,
        FsCmd::IsDir { path } => writeln!(out, "{}", s.is_dir(&path)?)?,
        FsCmd::Write { path, content } => {
            if content == "-" {
                s.upload(&mut std::io::stdin().lock(), &path)?;
            } else {
                s.write_file(&path, content.as_bytes())?;
            }
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
        }
        FsCmd::Upload { host, guest } => {
            if host.as_os_str() == "-" {
                s.upload(&mut std::io::stdin().lock(), &guest)?;
            } else {
                let mut f = std::fs::File::open(&host)
                    .with_context(|| format!("opening {}", host.display()))?;
                s.upload(&mut f, &guest)?;
            }
        }
        FsCmd::Mkdir { parents, path } => {
            if parents {
                s.mkdir_p(&path)?
            } else {
                s.mkdir(&path)?
            }
        }
        FsCmd::Rm { recursive, path } => {
            if recursive {
                s.rm_rf(&path)?
            } else {
                s.rm(&path)?
            }
        }
        FsCmd::Rmdir { path } => s.rmdir(&path)?,
        FsCmd::Mv { from, to } => s.rename(&from, &to)?,
        FsCmd::Chmod { mode, path } => s.chmod(&path, mode)?,
        FsCmd::Ln {
            symbolic: _,
            target,
            link,
        } => s.ln_s(&target, &link)?,
        FsCmd::Truncate { path, size } => s.truncate(&path, size)?,
        FsCmd::Checksum { algo, path } => writeln!(out, "{}", s.checksum(&algo, &path)?)?,
        FsCmd::ChecksumsOut { algo, dir } => {
            for c in s.checksums_out(&algo, &dir)? {
                writeln!(out, "{}  ./{}", c.hash, c.path)?;
            }
        }
        FsCmd::Du { path } => writeln!(out, "{}", s.du(&path)?)?,
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
        }
    }
    out.flush()?;
    Ok(())
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Columns padded to their widest cell, separated by two spaces.
fn write_table(out: &mut impl Write, head: &[String; 5], rows: &[[String; 5]]) -> Result<()> {
    let mut width = [0usize; 5];
    for r in std::iter::once(head).chain(rows) {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(head).chain(rows) {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(width).enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::Regular => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::CharDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::Unknown => "unknown",
    }
}

fn print_stat(out: &mut impl Write, st: &Stat) -> Result<()> {
    writeln!(out, "type: {}", type_name(st.file_type))?;
    writeln!(
        out,
        "mode: {:04o} ({})",
        st.mode,
        mode_string(st.file_type, st.mode)
    )?;
    writeln!(out, "uid: {}", st.uid)?;
    writeln!(out, "gid: {}", st.gid)?;
    writeln!(out, "size: {}", st.size)?;
    writeln!(out, "nlink: {}", st.nlink)?;
    writeln!(out, "ino: {}", st.ino)?;
    writeln!(out, "atime: {} ({})", st.atime, format_time(st.atime))?;
    writeln!(out, "mtime: {} ({})", st.mtime, format_time(st.mtime))?;
    writeln!(out, "ctime: {} ({})", st.ctime, format_time(st.ctime))?;
    Ok(())
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC (proleptic Gregorian).
pub fn format_time(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_specs() {
        assert_eq!(
            parse_mount("/dev/sda2").unwrap(),
            MountSpec {
                device: "/dev/sda2".into(),
                mountpoint: "/".into()
            }
        );
        assert_eq!(
            parse_mount("/dev/sda1:/boot/efi").unwrap().mountpoint,
            "/boot/efi"
        );
        assert!(parse_mount(":/x").is_err());
        assert!(parse_mount("/dev/sda1:boot").is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("755").unwrap(), 0o755);
        assert_eq!(parse_mode("0644").unwrap(), 0o644);
        assert_eq!(parse_mode("0o4755").unwrap(), 0o4755);
        assert!(parse_mode("999").is_err());
        assert!(parse_mode("17777").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_time(-1), "1969-12-31 23:59:59");
    }

    #[test]
    fn mountable() {
        let f = |t: &str| Filesystem {
            device: "/dev/sda".into(),
            fstype: t.into(),
            label: None,
            uuid: None,
            size: 0,
        };
        assert!(is_mountable(&f("ext4")));
        assert!(is_mountable(&f("vfat")));
        assert!(!is_mountable(&f("unknown")));
        assert!(!is_mountable(&f("swap")));
    }
}
