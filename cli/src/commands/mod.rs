//! The subcommands. Each one runs against the library and hands its result, typed, to a
//! [`Sink`] (the CLI's renderer, which turns it into text or JSON); none of them prints
//! a result itself. Raw bytes (`cat`, `pread`, `download GUEST -`, `pread-device`)
//! stream to [`Sink::raw`] as they arrive.
//!
//! - `devices`, `pread-device`, `pwrite-device`: [`device`].
//! - partitions, filesystems and file commands (also run by `skiff shell`): [`fs`].
//! - `inspect`: [`inspect`].
//! - `df` and `each` over many images: [`bulk`].
//! - `pvs`, `vgs`, `lvs` (and `-full`): [`volumes`].

pub mod bulk;
mod bulk_progress;
pub mod customize;
pub mod device;
pub mod fs;
pub mod inspect;
pub mod transfer;
pub mod volumes;

use anyhow::Result;
use skiff::df::DfEntry;
use skiff::images::ChainEntry;
use skiff::inspect::OsInfo;
use skiff::session::attrs::Xattr;
use skiff::wire::{
    Device, DirEntry, Filesystem, LogicalVolume, Mount, Partition, PhysicalVolume, Stat, StatVfs,
    VolumeGroup,
};
use std::io::Write;

/// What one command produced.
pub enum Output {
    /// Nothing to show: the command wrote raw bytes to [`Sink::raw`] (or nothing).
    Raw,
    /// A change, or a copy to a host file, went through; `bytes`: how much data moved
    /// (`write`, `append`, `upload`, `download` to a file, `pwrite-device`).
    Done {
        bytes: Option<u64>,
    },
    /// `devices`: the disks, and the chain of each image skiff opened (by device name).
    Devices {
        devices: Vec<Device>,
        chains: Vec<(String, Vec<ChainEntry>)>,
    },
    Partitions(Vec<Partition>),
    Filesystems(Vec<Filesystem>),
    /// `ls` (names in `path`) and `find` (paths below `path`, relative to it).
    Names {
        path: String,
        names: Vec<String>,
    },
    /// `ll`.
    Listing {
        path: String,
        entries: Vec<Entry>,
    },
    /// `stat` and `lstat`.
    Stat {
        path: String,
        stat: Stat,
    },
    Readlink {
        path: String,
        target: String,
    },
    Statvfs {
        path: String,
        statvfs: StatVfs,
    },
    /// `exists`, `is-file`, `is-dir`.
    Test {
        path: String,
        test: Test,
        value: bool,
    },
    /// `mounts` (shell).
    Mounts(Vec<Mount>),
    /// `checksum ALGO PATH`.
    Checksum {
        path: String,
        algo: String,
        checksum: String,
    },
    /// `checksums-out ALGO DIR`: (path relative to `dir`, digest) per regular file.
    Checksums {
        dir: String,
        algo: String,
        files: Vec<(String, String)>,
    },
    /// `du PATH`: KiB used.
    Du {
        path: String,
        kib: u64,
    },
    /// `copy-out`, `copy-in`, `tar-out FILE`, `tar-in`: what moved (text: nothing; the
    /// notes were warnings).
    Transfer {
        op: &'static str,
        report: skiff::transfer::TransferReport,
    },
    /// `inspect`: the operating systems found.
    Inspect(InspectReport),
    /// `df`.
    Df(DfReport),
    /// `each`: one image's run (as it completes).
    EachImage(EachOutcome),
    /// `customize`, `sysprep`: what changed (or, with `--dry-run`, would change).
    Customize(skiff::customize::Report),
    /// `sysprep --list-operations`.
    SysprepOperations(&'static [skiff::customize::sysprep::Operation]),
    /// `pvs` (`full`: `pvs-full`).
    Pvs {
        pvs: Vec<PhysicalVolume>,
        full: bool,
    },
    /// `vgs` (`full`: `vgs-full`).
    Vgs {
        vgs: Vec<VolumeGroup>,
        full: bool,
    },
    /// `lvs` (`full`: `lvs-full`, hidden LVs included).
    Lvs {
        lvs: Vec<LogicalVolume>,
        full: bool,
    },
    /// `lgetxattrs`.
    Xattrs {
        path: String,
        xattrs: Vec<Xattr>,
    },
    /// The end of a bulk run in which every image succeeded: `ok` images.
    Summary {
        ok: usize,
        failed: usize,
    },
}

/// One entry of `ll`: the directory entry and, for a symlink, its target (when it could
/// be read).
pub struct Entry {
    pub entry: DirEntry,
    pub link_target: Option<String>,
}

/// `inspect`'s result.
pub struct InspectReport {
    pub oses: Vec<OsInfo>,
    /// Text output lists the applications (`--applications`), not only their number.
    pub list_applications: bool,
}

/// Which test `exists`, `is-file` and `is-dir` made.
#[derive(Clone, Copy)]
pub enum Test {
    Exists,
    IsFile,
    IsDir,
}

/// `df` over many images.
pub struct DfReport {
    /// `-h`: sizes in K, M, G (powers of 1024) rather than 1K blocks.
    pub human: bool,
    /// Every measured filesystem, image by image in the order given.
    pub rows: Vec<DfRow>,
    /// Images (or filesystems of an image) that could not be measured.
    pub errors: Vec<ImageError>,
}

/// A filesystem of one image.
pub struct DfRow {
    pub image: String,
    pub fs: DfEntry,
}

/// An image that could not be measured, or run.
pub struct ImageError {
    pub image: String,
    pub error: String,
}

/// One image's run under `each`: the child `skiff`'s status and output.
pub struct EachOutcome {
    pub image: String,
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Where commands hand their results: the renderer.
pub trait Sink {
    /// Takes one result (a command may hand over several, e.g. `each`).
    fn emit(&mut self, output: Output) -> Result<()>;
    /// Where raw bytes go (stdout).
    fn raw(&mut self) -> &mut dyn Write;
}

/// A decimal or 0x-hexadecimal number.
pub fn parse_u64(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("512").unwrap(), 512);
        assert_eq!(parse_u64("0x200").unwrap(), 512);
        assert!(parse_u64("-1").is_err());
    }
}
