//! skiff: look inside and change VM disk images through a tiny Rust appliance booted
//! under qemu. This is the library (the product's API); the `skiff` binary is a thin CLI
//! over it.
//!
//! ```no_run
//! use skiff::{Appliance, DriveOptions};
//! let mut s = Appliance::builder()
//!     .add_drive("disk.img", DriveOptions::readonly())
//!     .launch()?;
//! for d in s.devices() {
//!     println!("{} {}", d.name, d.size);
//! }
//! let mbr = s.pread_device("/dev/sda", 0, 512)?;
//! s.shutdown()?;
//! # Ok::<(), skiff::Error>(())
//! ```

pub mod appliance;
pub mod backend;
pub mod bulk;
pub mod confine;
pub mod error;
pub mod images;
pub mod inspect;
pub mod json;
pub mod session;
pub mod session_inspect;

// The modules' former places (before the layout above), for callers.
pub use backend::direct::{qemu, qmp};
pub use backend::{accel, kernel, libvirt};
pub use bulk::{df, each, pool};
pub use confine::process;
pub use images::format;
pub use session::{channel, fs, hotplug};

pub use accel::Accel;
pub use appliance::{Appliance, Builder, DriveOptions};
pub use backend::Backend;
pub use error::{Error, Result};
pub use format::Format;
pub use fs::MountOptions;
pub use hotplug::HotDrive;
pub use images::BackingPolicy;
pub use pool::{Pool, PoolOptions, PooledSession, SharedReader};
pub use session::Session;
pub use wire;
