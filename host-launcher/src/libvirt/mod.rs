//! The libvirt backend: the appliance runs as a transient libvirt domain created with
//! `VIR_DOMAIN_START_AUTODESTROY` (it disappears when our connection closes, also when
//! this process is killed), its RPC channel reached as a stream over the libvirt
//! connection (`virDomainOpenChannel`), so the same code works against a remote libvirtd.
//! Also: the disks of an existing guest (`-d DOMAIN`) and storage volumes
//! (`--volume POOL/VOLUME`).
//!
//! Built only with the `libvirt` cargo feature (links libvirt); without it, choosing the
//! backend is a clear error.

#[cfg(feature = "libvirt")]
mod guests;
#[cfg(feature = "libvirt")]
mod launch;
#[cfg(feature = "libvirt")]
mod stream;
#[cfg(feature = "libvirt")]
pub mod xml;

#[cfg(feature = "libvirt")]
pub use guests::{GuestDrive, domain_drives, volume_drive};

use crate::appliance::Builder;
use crate::error::{Error, Result};
use crate::session::Session;

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

/// The error for libvirt features in a build without them.
pub fn not_built() -> Error {
    Error::Config(
        "this skiff was built without libvirt support (rebuild with --features libvirt)".into(),
    )
}
