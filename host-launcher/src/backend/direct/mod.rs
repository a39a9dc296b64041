//! The direct backend: qemu as a child of this process. skiff opens the images and
//! hands qemu fds (`-add-fd`, `/dev/fdset`, explicit chains: [`qemu`]); qemu runs
//! confined and dies with this process ([`crate::confine`]); disks are hot-plugged over
//! a QMP monitor on a socketpair ([`qmp`], [`hotplug`]).
//!
//! - `launch`: the command line and the spawn.
//! - `DirectHandle` (here): the running qemu: power-off wait, kill, exit status and
//!   log, and what a broken channel means (qemu's exit status tells a crash from a
//!   clean exit).

pub mod hotplug;
mod launch;
pub mod qemu;
pub mod qmp;

pub use launch::describe_chain;
pub(crate) use launch::{command_line, launch, run_to_exit};

use crate::backend::{BackendHandle, Failure, Hotplug};
use crate::confine::process::{self, EXIT_CLEAN, EXIT_PANIC, Qemu};
use crate::error::{Error, Result};
use crate::session::channel::{ChannelError, Waiting};
use std::os::unix::net::UnixStream;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// How long qemu may take to exit once the channel closed or the appliance panicked.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// A running qemu child (see the module docs).
pub(crate) struct DirectHandle {
    qemu: Qemu,
    /// Our end of the QMP socketpair and the root port ids, until [`BackendHandle::ready`]
    /// connects the monitor (hotplug launches).
    monitor: Option<(UnixStream, Vec<String>)>,
    /// How many disks were cold-plugged (the first hot-added one takes the next slot).
    cold: usize,
    /// The hotplug state, once the monitor is connected.
    hot: Option<hotplug::QmpHotplug>,
    /// qemu's output is echoed to stderr (`Builder::verbose`).
    verbose: bool,
}

impl DirectHandle {
    pub(crate) fn new(
        qemu: Qemu,
        monitor: Option<(UnixStream, Vec<String>)>,
        cold: usize,
        verbose: bool,
    ) -> DirectHandle {
        DirectHandle {
            qemu,
            monitor,
            cold,
            hot: None,
            verbose,
        }
    }
}

impl BackendHandle for DirectHandle {
    /// Connects the QMP monitor of a hotplug launch.
    fn ready(&mut self, deadline: Instant) -> Result<(), Failure> {
        let Some((stream, ports)) = self.monitor.take() else {
            return Ok(());
        };
        let deadline = deadline.max(Instant::now() + Duration::from_secs(2));
        match qmp::Qmp::connect(stream, deadline) {
            Ok(qmp) => {
                self.hot = Some(hotplug::QmpHotplug::new(qmp, ports, self.cold));
                Ok(())
            }
            Err(e) => Err(hotplug::qmp_failed(&mut self.qemu, "qmp_capabilities", e)),
        }
    }

    fn wait_poweroff(&mut self, limit: Duration) -> Result<()> {
        let q = &mut self.qemu;
        match q.wait_timeout(limit) {
            Some(s) if s.code() == Some(EXIT_CLEAN) => {
                if self.verbose {
                    // Let the echo of qemu's output catch up before the caller goes on
                    // (and perhaps exits): the log threads may lag on a busy machine.
                    q.final_log();
                }
                Ok(())
            }
            Some(s) => Err(exit_error(q, s)),
            None => {
                q.kill();
                Err(Error::ApplianceExited {
                    status: "it did not power off after Shutdown; killed".into(),
                    log: q.log(),
                })
            }
        }
    }

    fn kill(&mut self) {
        self.qemu.kill();
    }

    fn panicked(&mut self) {
        if self.qemu.wait_timeout(EXIT_GRACE).is_none() {
            self.qemu.kill();
        }
    }

    fn channel_failed(&mut self, e: ChannelError, waiting: Waiting) -> Error {
        let q = &mut self.qemu;
        match e {
            ChannelError::Eof => match q.wait_timeout(EXIT_GRACE) {
                Some(s) => exit_error(q, s),
                None => {
                    q.kill();
                    Error::ApplianceExited {
                        status: "it closed the channel but kept running; killed".into(),
                        log: q.log(),
                    }
                }
            },
            ChannelError::Timeout => match q.try_status() {
                Some(s) => exit_error(q, s),
                None => {
                    q.kill();
                    waiting.timeout()
                }
            },
            ChannelError::Frame(f) => {
                q.kill();
                Error::BadFrame(f.to_string())
            }
            ChannelError::Io(e) => {
                q.kill();
                Error::Io(e)
            }
        }
    }

    fn log(&self) -> String {
        self.qemu.log()
    }

    fn pid(&self) -> Option<u32> {
        Some(self.qemu.pid())
    }

    fn has_exited(&mut self) -> bool {
        self.qemu.try_status().is_some()
    }

    fn hotplug(&mut self) -> Option<&mut dyn Hotplug> {
        if self.hot.is_some() { Some(self) } else { None }
    }

    fn hotplug_ref(&self) -> Option<&dyn Hotplug> {
        if self.hot.is_some() { Some(self) } else { None }
    }
}

/// The error for a qemu that exited with `status` when it should not have.
pub(crate) fn exit_error(qemu: &mut Qemu, status: ExitStatus) -> Error {
    let log = qemu.final_log();
    if status.code() == Some(EXIT_PANIC) {
        return Error::ApplianceCrashed {
            message: panic_message(&log),
        };
    }
    Error::ApplianceExited {
        status: process::describe(Some(status)),
        log,
    }
}

/// The panic message in an appliance log: from the first line that mentions a panic to
/// the end (a few lines at most), else the last non-empty line.
fn panic_message(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines
        .iter()
        .position(|l| l.to_ascii_lowercase().contains("panic"))
    {
        Some(i) => lines[i..]
            .iter()
            .take(8)
            .copied()
            .collect::<Vec<_>>()
            .join("\n"),
        None => lines
            .last()
            .map_or("no message (qemu exited with the panic status)", |l| l)
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages() {
        assert_eq!(
            panic_message("boot\npanicked at src/main.rs:3:\nskiff.test=panic\n\n"),
            "panicked at src/main.rs:3:\nskiff.test=panic"
        );
        assert_eq!(panic_message("a\nlast\n\n"), "last");
    }
}
