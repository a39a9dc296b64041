//! The libvirt backend: the appliance runs as a transient libvirt domain created with
//! `VIR_DOMAIN_START_AUTODESTROY` (it disappears when our connection closes, also when
//! this process is killed), its RPC channel reached as a stream over the libvirt
//! connection (`virDomainOpenChannel`), so the same code works against a remote libvirtd.
//! Also: the disks of an existing guest (`-d DOMAIN`), storage volumes
//! (`--volume POOL/VOLUME`), and disk hotplug (`Builder::hotplug(true)`:
//! `Session::add_drive`/`remove_drive` through `virDomainAttachDevice`/`DetachDeviceAlias`).
//!
//! Built only with the `libvirt` cargo feature (links libvirt); without it, choosing the
//! backend is a clear error.

#[cfg(feature = "libvirt")]
mod guests;
#[cfg(feature = "libvirt")]
mod hotplug;
#[cfg(feature = "libvirt")]
mod launch;
#[cfg(feature = "libvirt")]
mod stream;
#[cfg(feature = "libvirt")]
pub mod xml;

#[cfg(feature = "libvirt")]
pub use guests::{GuestDrive, domain_drives, volume_drive};

use crate::appliance::{Builder, DriveOptions};
use crate::backend::direct::hotplug::HotDrive;
use crate::error::{Error, Result};
use crate::session::Session;
use std::path::Path;

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

    /// True when this build has the libvirt backend (the `libvirt` cargo feature).
    pub fn libvirt_available() -> bool {
        cfg!(feature = "libvirt")
    }
}

/// Launches `builder`'s appliance through libvirt.
pub(crate) fn launch(builder: &Builder, uri: Option<&str>) -> Result<Session> {
    #[cfg(feature = "libvirt")]
    {
        launch::launch(builder, uri)
    }
    #[cfg(not(feature = "libvirt"))]
    {
        let _ = (builder, uri);
        Err(not_built())
    }
}

/// Is `session` a libvirt session launched with hotplug (root ports in its domain)?
pub(crate) fn has_hotplug(session: &Session) -> bool {
    #[cfg(feature = "libvirt")]
    {
        hotplug::has_hotplug(session)
    }
    #[cfg(not(feature = "libvirt"))]
    {
        let _ = session;
        false
    }
}

/// The hot-added disks and free root ports of a libvirt hotplug session (`None`: not one).
pub(crate) fn hotplug_status(session: &Session) -> Option<(Vec<HotDrive>, usize)> {
    #[cfg(feature = "libvirt")]
    {
        hotplug::status(session)
    }
    #[cfg(not(feature = "libvirt"))]
    {
        let _ = session;
        None
    }
}

/// `Session::add_drive` of a libvirt hotplug session: `virDomainAttachDevice` + Rescan.
pub(crate) fn add_drive(
    session: &mut Session,
    path: &Path,
    options: DriveOptions,
) -> Result<String> {
    #[cfg(feature = "libvirt")]
    {
        hotplug::add_drive(session, path, options)
    }
    #[cfg(not(feature = "libvirt"))]
    {
        let _ = (session, path, options);
        Err(not_built())
    }
}

/// `Session::remove_drive` of a libvirt hotplug session: Umount, detach, Rescan.
pub(crate) fn remove_drive(session: &mut Session, device: &str) -> Result<()> {
    #[cfg(feature = "libvirt")]
    {
        hotplug::remove_drive(session, device)
    }
    #[cfg(not(feature = "libvirt"))]
    {
        let _ = (session, device);
        Err(not_built())
    }
}

/// The error for libvirt features in a build without them.
pub fn not_built() -> Error {
    Error::Config(
        "this skiff was built without libvirt support (rebuild with --features libvirt)".into(),
    )
}
