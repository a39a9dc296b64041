//! `pvs`, `vgs`, `lvs` (and their `-full` forms): LVM as the appliance finds it, with
//! LUKS devices unlocked first by the `--key`s given (guestfish's command names).

use super::{Output, Sink};
use crate::launch::{LaunchArgs, launch};
use anyhow::{Context, Result};
use clap::Subcommand;
use skiff::Session;

#[derive(Subcommand, Clone, Copy)]
pub enum VolCmd {
    /// List the LVM physical volumes, one device per line (--json: every field, as
    /// guestfish's pvs-full).
    #[command(after_help = "Examples:
  skiff pvs -a server.qcow2
  skiff pvs --json -a server.qcow2 | jq '.pvs[] | {pv_name, vg_name, pv_size}'")]
    Pvs,
    /// List the LVM volume groups, one name per line (--json: every field).
    Vgs,
    /// List the LVM logical volumes as /dev/VG/LV, one per line; hidden ones (raid
    /// legs, pool metadata) are left out (--json: every field; lvs-full: hidden ones too).
    #[command(after_help = "Examples:
  skiff lvs -a server.qcow2
  skiff lvs -a laptop.qcow2 --key /dev/sda3:file:/root/pass   # LVM inside LUKS")]
    Lvs,
    /// Every field of every physical volume, guestfish's pvs-full.
    PvsFull,
    /// Every field of every volume group, guestfish's vgs-full.
    VgsFull,
    /// Every field of every logical volume (hidden ones included), guestfish's lvs-full.
    LvsFull,
}

/// Launch (unlocking LUKS devices), list, shut down.
pub fn run(a: &LaunchArgs, cmd: VolCmd, sink: &mut dyn Sink) -> Result<()> {
    let mut s = launch(a)?;
    let r = exec(&mut s, cmd);
    let down = s.shutdown().context("shutting the appliance down");
    let out = r?;
    down?;
    sink.emit(out)
}

/// Runs one volume command (also from `skiff shell`).
pub fn exec(s: &mut Session, cmd: VolCmd) -> Result<Output> {
    Ok(match cmd {
        VolCmd::Pvs => Output::Pvs {
            pvs: s.pvs()?,
            full: false,
        },
        VolCmd::PvsFull => Output::Pvs {
            pvs: s.pvs()?,
            full: true,
        },
        VolCmd::Vgs => Output::Vgs {
            vgs: s.vgs()?,
            full: false,
        },
        VolCmd::VgsFull => Output::Vgs {
            vgs: s.vgs()?,
            full: true,
        },
        VolCmd::Lvs => Output::Lvs {
            lvs: s.lvs()?,
            full: false,
        },
        VolCmd::LvsFull => Output::Lvs {
            lvs: s.lvs()?,
            full: true,
        },
    })
}
