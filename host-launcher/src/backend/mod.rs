//! Where the appliance runs. A [`Backend`] (the caller's choice on the
//! [`Builder`](crate::Builder::backend)) launches the appliance and hands back the RPC channel
//! and a [`BackendHandle`]; the [`Session`](crate::Session) holds both and knows
//! nothing else about the backend. Everything that differs between backends lives in
//! the handle: how the appliance is torn down (power-off wait, kill, exit status, log),
//! what a broken channel means, and disk hotplug ([`Hotplug`]).
//!
//! - [`direct`]: qemu as a child of this process (confined, images passed as fds, QMP
//!   for hotplug).
//! - [`libvirt`]: a transient libvirt domain (AUTODESTROY), the channel over a libvirt
//!   stream, hotplug through `virDomainAttachDevice`.
//! - [`Detached`]: an appliance another process launched and handed down
//!   ([`Session::adopt`](crate::Session::adopt)); that process owns it.
//!
//! A new backend is a variant of [`Backend`], a module with a `launch` returning
//! `Launched`, and a [`BackendHandle`] (plus [`Hotplug`] if it can add disks).
//! [`accel`] and [`kernel`] are shared by the backends: the accelerator choice and the
//! appliance kernel embedded in the library.

pub mod accel;
pub mod direct;
pub mod kernel;
pub mod libvirt;

use crate::appliance::{Builder, DriveOptions};
use crate::error::{Error, Result};
use crate::images::OpenedImage;
use crate::images::format::Format;
use crate::session::channel::{ChannelError, Waiting};
use crate::volumes::KeySet;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};
use wire::Device;

/// The firmware both backends use when it is installed (else qemu's default).
pub const QBOOT: &str = "/usr/share/qemu/qboot.rom";

/// Where the appliance runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Backend {
    /// qemu spawned by this process (the default).
    #[default]
    Direct,
    /// A transient domain through libvirt; `uri` `None` is libvirt's default connection
    /// (`$LIBVIRT_DEFAULT_URI`, ...), e.g. `qemu:///system`, `qemu+ssh://host/system`.
    Libvirt { uri: Option<String> },
}

impl Backend {
    /// `direct` or `libvirt` (with `uri`).
    pub fn parse(name: &str, uri: Option<String>) -> Result<Backend> {
        match name {
            "direct" => Ok(Backend::Direct),
            "libvirt" => Ok(Backend::Libvirt { uri }),
            other => Err(Error::Config(format!(
                "unknown backend {other:?} (expected direct or libvirt)"
            ))),
        }
    }

    /// True when this build has the libvirt backend (the `libvirt` cargo feature, on by
    /// default).
    pub fn libvirt_available() -> bool {
        cfg!(feature = "libvirt")
    }

    /// Boots `builder`'s appliance on this backend, up to the point where the appliance
    /// is running and the channel is open (the session then waits for its Hello).
    pub(crate) fn launch(&self, builder: &Builder) -> Result<Launched> {
        match self {
            Backend::Direct => direct::launch(builder),
            Backend::Libvirt { uri } => libvirt::launch(builder, uri.as_deref()),
        }
    }
}

/// A launched appliance, before its Hello.
pub(crate) struct Launched {
    /// Our end of the RPC channel.
    pub stream: UnixStream,
    pub handle: Box<dyn BackendHandle>,
    /// Per cold-plugged disk slot: attached read-only?
    pub readonly: Vec<bool>,
    /// Per cold-plugged disk slot, the image skiff opened and keeps (the direct
    /// backend's; empty when the backend keeps none).
    pub images: Vec<OpenedImage>,
    /// When the launch must be complete (Hello received, [`BackendHandle::ready`] done).
    pub deadline: Instant,
}

/// A backend's failure in the middle of an operation: the error, and whether the
/// session cannot go on (the appliance is gone, or the backend is out of step with it).
/// The session closes itself (and ends the appliance) after a fatal one.
#[derive(Debug)]
pub struct Failure {
    pub error: Error,
    pub fatal: bool,
}

impl Failure {
    /// A failure after which the session must close.
    pub fn fatal(error: Error) -> Failure {
        Failure { error, fatal: true }
    }
}

/// An error that leaves the session usable (a refusal, a bad argument).
impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure {
            error,
            fatal: false,
        }
    }
}

/// A running appliance as its backend sees it, held by the session next to the RPC
/// channel. Dropping it ends the appliance.
pub trait BackendHandle: Send {
    /// Finishes the launch once the appliance said Hello (by `deadline`); the direct
    /// backend connects its QMP monitor here.
    fn ready(&mut self, deadline: Instant) -> Result<(), Failure> {
        let _ = deadline;
        Ok(())
    }

    /// After the appliance answered Shutdown: waits up to `limit` for it to power off,
    /// ending it if it does not; an error when it did not end cleanly.
    fn wait_poweroff(&mut self, limit: Duration) -> Result<()>;

    /// Ends the appliance now (idempotent).
    fn kill(&mut self);

    /// The appliance sent its panic message: lets it exit on its own for a moment (and
    /// ends it if it does not).
    fn panicked(&mut self) {}

    /// The RPC channel failed while the session was `waiting`: the error the caller
    /// sees, told from the appliance's fate where the backend knows it (the session is
    /// closed afterwards).
    fn channel_failed(&mut self, e: ChannelError, waiting: Waiting) -> Error {
        channel_error(e, waiting)
    }

    /// What the appliance logged so far, where this process can read it.
    fn log(&self) -> String;

    /// qemu's process id, when qemu is a child of this process.
    fn pid(&self) -> Option<u32> {
        None
    }

    /// True when the appliance is known to have exited (a pooled appliance that died
    /// while it waited).
    fn has_exited(&mut self) -> bool {
        false
    }

    /// Disk hotplug, for appliances launched with it ([`Builder::hotplug`]).
    fn hotplug(&mut self) -> Option<&mut dyn Hotplug> {
        None
    }

    /// As [`BackendHandle::hotplug`], shared.
    fn hotplug_ref(&self) -> Option<&dyn Hotplug> {
        None
    }
}

/// The error for a channel failure when the backend knows nothing more.
pub(crate) fn channel_error(e: ChannelError, waiting: Waiting) -> Error {
    match e {
        ChannelError::Eof => Error::ApplianceExited {
            status: "channel closed".into(),
            log: String::new(),
        },
        ChannelError::Timeout => waiting.timeout(),
        ChannelError::Frame(f) => Error::BadFrame(f.to_string()),
        ChannelError::Io(e) => Error::Io(e),
    }
}

/// A disk a backend attached: the slot it took and what the session keeps of it.
pub struct Attached {
    /// The disk slot N (the appliance names it `/dev/sd<a+N>`); never reused in a session.
    pub slot: usize,
    pub format: Format,
    /// The image skiff opened and keeps while the disk is attached (checked again when
    /// it goes), if the backend kept it open.
    pub image: Option<OpenedImage>,
}

/// Adding disks to and removing them from a running appliance, the backend's part: the
/// ports and the attach/detach protocol. The session does the rest: the read-only
/// policy, per-slot bookkeeping, unmounting, and the appliance's rescans, between which
/// it calls [`Hotplug::unplug_progress`].
pub trait Hotplug: Send {
    /// How many more disks can be attached now.
    fn free_ports(&self) -> usize;

    /// Before an attach: completes the unplugs the backend has seen finish (or, with no
    /// port free, waits for the oldest); the slots whose disk is now gone for good are
    /// pushed to `gone` (also when it fails half-way).
    fn make_room(&mut self, gone: &mut Vec<usize>) -> Result<(), Failure> {
        let _ = gone;
        Ok(())
    }

    /// Attaches `path` to a free port as a new slot. The image is opened and checked as
    /// `options` say before anything reaches qemu; an encrypted qcow2 takes its key from
    /// `keys`.
    fn attach(
        &mut self,
        path: &Path,
        options: DriveOptions,
        keys: &KeySet,
    ) -> Result<Attached, Failure>;

    /// Asks for the disk in `slot` (`device` in the appliance) to be unplugged: the
    /// appliance drops it on its next rescan.
    fn detach(&mut self, slot: usize, device: &str) -> Result<(), Failure>;

    /// Called after each rescan while `slot` is being unplugged, with the appliance's
    /// device list: true once the unplug has gone far enough for the session to go on;
    /// false to rescan again (after waiting as the backend sees fit). Fails when the
    /// unplug does not complete in time.
    fn unplug_progress(
        &mut self,
        slot: usize,
        device: &str,
        listed: &[Device],
    ) -> Result<bool, Failure>;

    /// After [`Hotplug::unplug_progress`] said done: with `wait`, completes the unplug
    /// (the port is free again) and returns true; without, may leave it to finish in
    /// the background and return false (the next [`Hotplug::make_room`] collects it).
    /// Slots whose disk is gone for good are pushed to `gone` (also on failure).
    fn finish_unplug(
        &mut self,
        slot: usize,
        wait: bool,
        gone: &mut Vec<usize>,
    ) -> Result<bool, Failure>;
}

/// A session on an appliance launched by another process ([`Session::adopt`]): that
/// process owns qemu, so there is nothing to wait for, kill or read here.
///
/// [`Session::adopt`]: crate::Session::adopt
pub struct Detached;

impl BackendHandle for Detached {
    fn wait_poweroff(&mut self, _limit: Duration) -> Result<()> {
        Ok(())
    }

    fn kill(&mut self) {}

    fn log(&self) -> String {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The features `default = [...]` names in a Cargo.toml.
    pub(crate) fn default_features(manifest: &str) -> Vec<String> {
        let features = manifest
            .split("\n[features]\n")
            .nth(1)
            .expect("a [features] table");
        let line = features
            .lines()
            .take_while(|l| !l.starts_with('['))
            .find_map(|l| l.strip_prefix("default = "))
            .expect("a default feature list");
        line.trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|f| f.trim().trim_matches('"').to_string())
            .filter(|f| !f.is_empty())
            .collect()
    }

    /// The libvirt backend is part of the default build (the README's install and demo
    /// commands build that); `--no-default-features` leaves it out.
    #[test]
    fn default_build_has_the_libvirt_backend() {
        let manifest = include_str!("../../Cargo.toml");
        assert!(
            default_features(manifest).contains(&"libvirt".to_string()),
            "{manifest}"
        );
        assert_eq!(Backend::libvirt_available(), cfg!(feature = "libvirt"));
    }

    #[test]
    fn backend_names() {
        assert_eq!(Backend::parse("direct", None).unwrap(), Backend::Direct);
        assert_eq!(
            Backend::parse("libvirt", Some("qemu:///system".into())).unwrap(),
            Backend::Libvirt {
                uri: Some("qemu:///system".into())
            }
        );
        assert!(matches!(Backend::parse("xen", None), Err(Error::Config(_))));
    }
}
