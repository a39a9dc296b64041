//! `inspect`: the operating system(s) on the disks ([`skiff::inspect`]), as text,
//! `--json` or virt-inspector's `--xml`.

use super::{InspectReport, Output, Sink};
use crate::launch::{LaunchArgs, launch};
use crate::warnings;
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use skiff::inspect::{InspectOptions, inspect_os_with};

#[derive(Subcommand)]
pub enum InspectCmd {
    /// Find the operating system(s) on the disks and what virt-inspector reports about
    /// them: type, distro, product, version, arch, hostname, package format and manager,
    /// osinfo, mountpoints, filesystems, Windows facts, installed applications.
    #[command(after_help = "Examples:
  skiff inspect -a guest.qcow2
  skiff inspect --xml -a guest.qcow2 > guest.xml        # virt-inspector's XML
  skiff inspect --applications -a guest.qcow2           # the installed applications too
  skiff inspect --json -a disk1.img -a disk2.img | jq '.operating_systems[0].osinfo'")]
    Inspect {
        /// Print virt-inspector's XML (same elements, order and value formats).
        #[arg(long)]
        xml: bool,
        /// Text output: list the installed applications, not only how many there are.
        #[arg(long)]
        applications: bool,
        /// Do not read the package databases (virt-inspector --no-applications).
        #[arg(long, conflicts_with = "applications")]
        no_applications: bool,
    },
}

impl InspectCmd {
    /// `--xml` was given.
    pub fn wants_xml(&self) -> bool {
        matches!(self, InspectCmd::Inspect { xml: true, .. })
    }
}

/// Launch, inspect, shut down; then the result.
pub fn run(a: &LaunchArgs, cmd: InspectCmd, sink: &mut dyn Sink) -> Result<()> {
    let InspectCmd::Inspect {
        applications,
        no_applications,
        ..
    } = cmd;
    if a.drives.is_empty() && a.domain.is_none() && a.volumes.is_empty() {
        bail!("add the disk(s) to inspect with -a DISK");
    }
    let mut s = launch(a)?;
    let opts = InspectOptions {
        applications: !no_applications,
    };
    let found = inspect_os_with(&mut s, &opts);
    let down = s.shutdown().context("shutting the appliance down");
    let found = found?;
    down?;
    for os in &found {
        for w in &os.warnings {
            warnings::warn(format!("{}: {w}", os.root));
        }
    }
    sink.emit(Output::Inspect(InspectReport {
        oses: found,
        list_applications: applications,
    }))
}
