//! The `skiff` command: a thin CLI over the library. One subcommand per operation; every
//! subcommand shares the launch options (`-a DISK`, `--rw`, `--verbose`, ...).
//!
//! - [`launch`]: the shared options, and the session they make (launch, mounts).
//! - [`commands`]: the subcommands; each hands typed results ([`commands::Output`]) to
//!   a [`commands::Sink`].
//! - [`render`]: the one renderer (text or `--json`), the sink the commands write to.
//! - [`mount`]: `skiff mount` (FUSE) and `skiff umount`.
//! - [`shell`]: `skiff shell`, many commands in one appliance.
//! - [`warnings`]: warnings on stderr, carried into the next JSON document.

mod commands;
mod launch;
mod mount;
mod render;
mod shell;
mod warnings;

use clap::{Parser, Subcommand};
use commands::bulk::BulkCmd;
use commands::customize::CustomizeCmd;
use commands::device::DeviceCmd;
use commands::fs::FsCmd;
use commands::inspect::InspectCmd;
use commands::volumes::VolCmd;
use launch::LaunchArgs;
use render::{Format, Renderer};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "Look inside and change VM disk images"
)]
struct Cli {
    #[command(flatten)]
    launch: LaunchArgs,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    #[command(flatten)]
    Device(DeviceCmd),
    #[command(flatten)]
    Fs(FsCmd),
    #[command(flatten)]
    Inspect(InspectCmd),
    #[command(flatten)]
    Vol(VolCmd),
    #[command(flatten)]
    Bulk(BulkCmd),
    #[command(flatten)]
    Customize(Box<CustomizeCmd>),
    /// An interactive shell running many commands in one appliance (guestfish-like);
    /// reads commands from stdin when it is not a terminal.
    #[command(after_help = "Examples:
  skiff shell -a guest.qcow2
  printf 'ls /etc\\ncat /etc/hostname\\n' | skiff shell -a guest.qcow2
  skiff shell --rw -a guest.img -m /dev/sda2 < script.txt   # '-cmd' may fail, '# comment'")]
    Shell,
    /// Mount the guest's filesystems on the host (FUSE), like guestmount: read-only
    /// unless --rw; the guest is mounted as -m says, or the way it mounts itself. Goes
    /// to the background once mounted unless -f; `skiff umount` (or fusermount -u)
    /// unmounts, and the appliance then shuts down, flushing the disks.
    #[command(after_help = "Examples:
  skiff mount -a guest.qcow2 /mnt/guest && ls /mnt/guest/etc && skiff umount /mnt/guest
  skiff mount --rw -a disk.img -m /dev/sda2 -m /dev/sda1:/boot/efi -f /mnt/guest")]
    Mount(mount::MountArgs),
    /// Unmount a `skiff mount` and wait for its appliance to shut down (like
    /// guestunmount).
    Umount(mount::UmountArgs),
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    // The matches are kept: customize's operations run in command-line order.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match run(cli, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skiff: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let a = &cli.launch;
    let xml = matches!(&cli.command, Cmd::Inspect(c) if c.wants_xml());
    if xml && a.json {
        anyhow::bail!("--xml and --json: choose one");
    }
    let format = if xml {
        Format::Xml
    } else if a.json {
        Format::Json
    } else {
        Format::Text
    };
    let mut renderer = Renderer::new(format);
    let sink = &mut renderer;
    match cli.command {
        Cmd::Device(c) => commands::device::run(a, c, sink),
        Cmd::Fs(c) => commands::fs::run(a, c, sink),
        Cmd::Inspect(c) => commands::inspect::run(a, c, sink),
        Cmd::Vol(c) => commands::volumes::run(a, c, sink),
        Cmd::Bulk(c) => commands::bulk::run(a, c, sink),
        Cmd::Customize(c) => {
            let m = matches.subcommand().map(|(_, m)| m);
            commands::customize::run(a, *c, m, sink)
        }
        Cmd::Shell => shell::run(a, sink),
        Cmd::Mount(m) => mount::run(a, m),
        Cmd::Umount(u) => mount::umount(u),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default build of the command has the libvirt backend (its `default` features
    /// name `libvirt`); `--no-default-features` builds one without.
    #[test]
    fn default_build_has_the_libvirt_backend() {
        let manifest = include_str!("../Cargo.toml");
        let features = manifest
            .split("\n[features]\n")
            .nth(1)
            .expect("a [features] table");
        let default = features
            .lines()
            .find_map(|l| l.strip_prefix("default = "))
            .expect("a default feature list");
        assert!(default.contains("\"libvirt\""), "{default}");
        assert_eq!(
            skiff::Backend::libvirt_available(),
            cfg!(feature = "libvirt")
        );
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "skiff",
            "pread-device",
            "-a",
            "x.img",
            "/dev/sda",
            "0",
            "512",
        ])
        .unwrap();
        assert_eq!(c.launch.drives.len(), 1);
        let c = Cli::try_parse_from(["skiff", "--rw", "devices", "-a", "x", "-a", "y"]).unwrap();
        assert_eq!(c.launch.drives.len(), 2);
        assert!(c.launch.rw);
        let c = Cli::try_parse_from([
            "skiff",
            "lvs",
            "-a",
            "x",
            "--key",
            "/dev/sda2:key:a b",
            "--key",
            "all:file:/k",
        ])
        .unwrap();
        assert_eq!(c.launch.keys, ["/dev/sda2:key:a b", "all:file:/k"]);
        assert!(matches!(c.command, Cmd::Vol(VolCmd::Lvs)));
        let c = Cli::try_parse_from([
            "skiff", "--rw", "-a", "x", "upload", "k.pub", "/a", "--uid", "1000",
        ])
        .unwrap();
        assert!(matches!(c.command, Cmd::Fs(_)));
    }
}
