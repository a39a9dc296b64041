//! `devices`, `pread-device` and `pwrite-device`: the disks and their raw bytes.

use super::{Output, Sink, parse_u64};
use crate::launch::{LaunchArgs, launch, launch_plain};
use anyhow::{Context, Result};
use clap::Subcommand;
use skiff::Session;
use std::io::Read;

#[derive(Subcommand)]
pub enum DeviceCmd {
    /// List the disks: `/dev/sda <size in bytes>` per line.
    Devices,
    /// Write LEN raw bytes of DEVICE at OFFSET to stdout.
    PreadDevice {
        device: String,
        #[arg(value_parser = parse_u64)]
        offset: u64,
        #[arg(value_parser = parse_u64)]
        len: u64,
    },
    /// Write stdin to DEVICE at OFFSET (needs --rw).
    PwriteDevice {
        device: String,
        #[arg(value_parser = parse_u64)]
        offset: u64,
    },
}

/// Launch, run, and (when the command succeeded) shut down cleanly so writes are flushed
/// and qemu's status is checked.
pub fn run(a: &LaunchArgs, cmd: DeviceCmd, sink: &mut dyn Sink) -> Result<()> {
    // Whole disks and partitions need nothing unlocked; other devices (a LUKS
    // mapping, an LV) may.
    let volume = match &cmd {
        DeviceCmd::Devices => false,
        DeviceCmd::PreadDevice { device, .. } | DeviceCmd::PwriteDevice { device, .. } => {
            !is_disk_or_partition(device)
        }
    };
    let mut session = if volume { launch(a)? } else { launch_plain(a)? };
    let result = exec(&mut session, cmd, sink).and_then(|o| sink.emit(o));
    match result {
        Ok(()) => session.shutdown().context("shutting the appliance down"),
        Err(e) => Err(e),
    }
}

/// `/dev/sdX` or `/dev/sdXN`.
fn is_disk_or_partition(device: &str) -> bool {
    let disk = device.trim_end_matches(|c: char| c.is_ascii_digit());
    skiff::wire::disk_slot(disk).is_some()
}

fn exec(s: &mut Session, cmd: DeviceCmd, sink: &mut dyn Sink) -> Result<Output> {
    match cmd {
        DeviceCmd::Devices => Ok(Output::Devices {
            devices: s.devices().to_vec(),
            chains: s.chains(),
        }),
        DeviceCmd::PreadDevice {
            device,
            offset,
            len,
        } => {
            pread_device(s, &device, offset, len, sink.raw())?;
            Ok(Output::Raw)
        }
        DeviceCmd::PwriteDevice { device, offset } => {
            let mut data = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut data)
                .context("reading stdin")?;
            s.pwrite_device(&device, offset, &data)?;
            Ok(Output::Done {
                bytes: Some(data.len() as u64),
            })
        }
    }
}

/// Streams LEN bytes of `device` at `offset` to `out`, a chunk at a time.
fn pread_device(
    s: &mut Session,
    device: &str,
    offset: u64,
    len: u64,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let chunk = u64::from(skiff::wire::MAX_CHUNK);
    let mut done = 0;
    while done < len {
        let want = (len - done).min(chunk);
        let at = offset
            .checked_add(done)
            .context("offset + length overflows")?;
        let data = s.pread_device(device, at, want)?;
        out.write_all(&data)?;
        if (data.len() as u64) < want {
            break;
        }
        done += want;
    }
    out.flush()?;
    Ok(())
}
