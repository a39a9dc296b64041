//! Whole trees in and out: `copy-out`, `copy-in`, `tar-out`, `tar-in` (like
//! `virt-copy-out`, `virt-copy-in`, `virt-tar-out`, `virt-tar-in`), over
//! [`skiff::transfer`]. A progress bar (indicatif) is drawn on stderr when it is a
//! terminal; notes (what could not be copied exactly) are warnings; archive entries
//! refused by `tar-in` are warnings too and make the command fail once the rest is in.

use super::Output;
use crate::warnings::warn;
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use skiff::Session;
use skiff::transfer::{Compression, Progress, TransferReport};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum TransferCmd {
    /// Copy guest files and directory trees into the host directory HOSTDIR (the last
    /// argument), recursively, like virt-copy-out: symlinks are copied as symlinks,
    /// modes and times kept, owners too when run as root.
    #[command(after_help = "Example:\n  skiff copy-out -a guest.img /etc /var/log/apt ./backup")]
    CopyOut {
        /// GUESTPATH... HOSTDIR
        #[arg(num_args = 2.., required = true, value_name = "GUESTPATH... HOSTDIR")]
        paths: Vec<String>,
    },
    /// Copy host files and directory trees into the guest directory GUESTDIR (the last
    /// argument), recursively, like virt-copy-in: modes, numeric owners and times kept
    /// where the guest filesystem can hold them. Needs --rw.
    #[command(after_help = "Example:\n  skiff --rw copy-in -a guest.img ./site /srv/www")]
    CopyIn {
        /// HOSTPATH... GUESTDIR
        #[arg(num_args = 2.., required = true, value_name = "HOSTPATH... GUESTDIR")]
        paths: Vec<String>,
    },
    /// Write the guest directory GUESTDIR as a tar archive to FILE (`-`: stdout), like
    /// virt-tar-out: numeric owners, modes, times, symlinks, hard links.
    TarOut {
        /// Compress with gzip (same as --compress gzip).
        #[arg(short = 'z')]
        gzip: bool,
        /// Compress on the host: none, gzip or zstd.
        #[arg(long, value_name = "ALGO")]
        compress: Option<Compression>,
        dir: String,
        file: PathBuf,
    },
    /// Extract the tar archive FILE (`-`: stdin; gzip and zstd recognised) into the
    /// guest directory GUESTDIR, like virt-tar-in. Entries with absolute paths or `..`
    /// are refused one by one (the command then fails after extracting the rest).
    /// Needs --rw.
    TarIn {
        /// The archive is gzip-compressed (also recognised without it).
        #[arg(short = 'z')]
        gzip: bool,
        /// The archive's compression: none, gzip or zstd (recognised without it).
        #[arg(long, value_name = "ALGO")]
        compress: Option<Compression>,
        file: PathBuf,
        dir: String,
    },
}

impl TransferCmd {
    /// Commands that change the disk.
    pub fn writes(&self) -> bool {
        matches!(self, TransferCmd::CopyIn { .. } | TransferCmd::TarIn { .. })
    }
}

/// A byte progress bar on stderr, only when stderr is a terminal.
struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    fn new() -> Bar {
        Bar { bar: None }
    }
}

impl Progress for Bar {
    fn start(&mut self, total: Option<u64>) {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let bar = match total {
            Some(t) => ProgressBar::new(t).with_style(
                ProgressStyle::with_template(
                    "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {bytes} {binary_bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        self.bar = Some(bar);
    }
    fn advance(&mut self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }
    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

fn compression(gzip: bool, compress: Option<Compression>) -> Result<Compression> {
    match (gzip, compress) {
        (true, Some(c)) if c != Compression::Gzip => bail!("-z and --compress disagree"),
        (true, _) => Ok(Compression::Gzip),
        (false, c) => Ok(c.unwrap_or_default()),
    }
}

/// Adds `r` to `total`, reporting its notes as warnings.
fn merge(total: &mut TransferReport, r: TransferReport) {
    for n in &r.notes {
        warn(n.clone());
    }
    total.files += r.files;
    total.dirs += r.dirs;
    total.symlinks += r.symlinks;
    total.hardlinks += r.hardlinks;
    total.bytes += r.bytes;
    total.notes.extend(r.notes);
    total.refused.extend(r.refused);
}

/// Runs one transfer command on a mounted session. `raw`: stdout, for `tar-out -`.
pub fn exec(s: &mut Session, cmd: TransferCmd, raw: &mut dyn Write) -> Result<Output> {
    let mut bar = Bar::new();
    let mut total = TransferReport::default();
    let op = match cmd {
        TransferCmd::CopyOut { mut paths } => {
            let dir = PathBuf::from(paths.pop().context("HOSTDIR missing")?);
            for g in &paths {
                let r = s
                    .copy_out(g, &dir, &mut bar)
                    .with_context(|| format!("copy-out {g}"))?;
                merge(&mut total, r);
            }
            "copy-out"
        }
        TransferCmd::CopyIn { mut paths } => {
            let dir = paths.pop().context("GUESTDIR missing")?;
            for h in &paths {
                let r = s
                    .copy_in(Path::new(h), &dir, &mut bar)
                    .with_context(|| format!("copy-in {h}"))?;
                merge(&mut total, r);
            }
            "copy-in"
        }
        TransferCmd::TarOut {
            gzip,
            compress,
            dir,
            file,
        } => {
            let c = compression(gzip, compress)?;
            if file.as_os_str() == "-" {
                let r = s.tar_out(&dir, raw, c, &mut bar)?;
                raw.flush()?;
                merge(&mut total, r);
                return Ok(Output::Raw);
            }
            let mut f = std::fs::File::create(&file)
                .with_context(|| format!("creating {}", file.display()))?;
            let r = s.tar_out(&dir, &mut f, c, &mut bar)?;
            f.sync_all()
                .with_context(|| format!("writing {}", file.display()))?;
            merge(&mut total, r);
            "tar-out"
        }
        TransferCmd::TarIn {
            gzip,
            compress,
            file,
            dir,
        } => {
            let c = compression(gzip, compress)?;
            let r = if file.as_os_str() == "-" {
                s.tar_in(&mut std::io::stdin().lock(), &dir, c, &mut bar)?
            } else {
                let mut f = std::fs::File::open(&file)
                    .with_context(|| format!("opening {}", file.display()))?;
                s.tar_in(&mut f, &dir, c, &mut bar)?
            };
            merge(&mut total, r);
            if !total.refused.is_empty() {
                for r in &total.refused {
                    warn(r.clone());
                }
                bail!(
                    "{} archive entr{} refused (listed above); the rest was extracted",
                    total.refused.len(),
                    if total.refused.len() == 1 { "y" } else { "ies" }
                );
            }
            "tar-in"
        }
    };
    Ok(Output::Transfer { op, report: total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_flags() {
        assert_eq!(compression(true, None).unwrap(), Compression::Gzip);
        assert_eq!(compression(false, None).unwrap(), Compression::None);
        assert_eq!(
            compression(false, Some(Compression::Zstd)).unwrap(),
            Compression::Zstd
        );
        assert!(compression(true, Some(Compression::Zstd)).is_err());
    }
}
