//! `inspect`: the operating system(s) on the disks ([`skiff::inspect`]).

use super::{Output, Sink};
use crate::launch::{LaunchArgs, launch};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use skiff::inspect::inspect_os;

#[derive(Subcommand)]
pub enum InspectCmd {
    /// Find the operating system(s) on the disks: type, distro, version, hostname,
    /// architecture, package format, and /etc/fstab resolved to devices.
    #[command(after_help = "Examples:
  skiff inspect -a guest.qcow2
  skiff inspect --json -a disk1.img -a disk2.img | jq '.operating_systems[0].hostname'")]
    Inspect,
}

/// Launch, inspect, shut down; then the result.
pub fn run(a: &LaunchArgs, cmd: InspectCmd, sink: &mut dyn Sink) -> Result<()> {
    let InspectCmd::Inspect = cmd;
    if a.drives.is_empty() {
        bail!("add the disk(s) to inspect with -a DISK");
    }
    let mut s = launch(a)?;
    let found = inspect_os(&mut s);
    let down = s.shutdown().context("shutting the appliance down");
    let found = found?;
    down?;
    sink.emit(Output::Inspect(found))
}
