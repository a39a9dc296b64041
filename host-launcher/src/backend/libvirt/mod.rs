//! The libvirt backend: the appliance runs as a transient libvirt domain created with
//! `VIR_DOMAIN_START_AUTODESTROY` (it disappears when our connection closes, also when
//! this process is killed), its RPC channel reached as a stream over the libvirt
//! connection (`virDomainOpenChannel`), so the same code works against a remote libvirtd.
//! Also: the disks of an existing guest (`-d DOMAIN`), storage volumes
//! (`--volume POOL/VOLUME`), and disk hotplug (`Builder::hotplug(true)`:
//! `Session::add_drive`/`remove_drive` through `virDomainAttachDevice`/`DetachDeviceAlias`).
//!
//! - `launch`: the domain's creation and `VirtGuest`, the handle
//!   (power-off wait, destroy, log).
//! - `hotplug`: attach and detach of disks on the domain's root ports.
//! - `stream`: the channel bridged from a libvirt stream to a socketpair.
//! - `guests`: disks of existing guests and storage volumes.
//! - [`xml`]: the domain XML skiff writes and the guest/volume XML it reads.
//!
//! Built with the `libvirt` cargo feature (on by default; links libvirt). A build
//! without it (`--no-default-features`) has the same API, and choosing the backend, a
//! domain or a volume is a clear error ([`not_built`]).

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

/// The backend choice (at home in [`crate::backend`]).
pub use super::Backend;

use crate::appliance::Builder;
use crate::backend::Launched;
use crate::error::{Error, Result};
use crate::images::format::Format;
use std::path::PathBuf;

/// A disk to add to a launch (`Builder::add_drive(path, DriveOptions { format, readonly })`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDrive {
    /// On the host where libvirtd runs.
    pub path: PathBuf,
    pub format: Format,
    pub readonly: bool,
}

/// The disks of guest `domain` (a name or a UUID) on `uri`. `write`: attach them writable
/// (refused while the guest runs; a disk the guest itself has `<readonly/>` stays
/// read-only).
pub fn domain_drives(uri: Option<&str>, domain: &str, write: bool) -> Result<Vec<GuestDrive>> {
    #[cfg(feature = "libvirt")]
    {
        guests::domain_drives(uri, domain, write)
    }
    #[cfg(not(feature = "libvirt"))]
    {
        let _ = (uri, domain, write);
        Err(not_built())
    }
}

/// Storage volume `spec` (`POOL/VOLUME`) on `uri`.
pub fn volume_drive(uri: Option<&str>, spec: &str, readonly: bool) -> Result<GuestDrive> {
    #[cfg(feature = "libvirt")]
    {
        guests::volume_drive(uri, spec, readonly)
    }
    #[cfg(not(feature = "libvirt"))]
    {
        let _ = (uri, spec, readonly);
        Err(not_built())
    }
}

/// Launches `builder`'s appliance as a libvirt domain.
pub(crate) fn launch(builder: &Builder, uri: Option<&str>) -> Result<Launched> {
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

/// The error for libvirt features in a build without them.
pub fn not_built() -> Error {
    Error::Config(
        "this skiff was built without libvirt support (its libvirt feature, on by default, \
         was turned off with --no-default-features)"
            .into(),
    )
}
