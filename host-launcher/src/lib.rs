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

pub mod accel;
pub mod appliance;
pub mod channel;
pub mod confine;
pub mod df;
pub mod each;
pub mod error;
pub mod format;
pub mod fs;
pub mod hotplug;
pub mod images;
pub mod inspect;
pub mod json;
pub mod kernel;
pub mod libvirt;
pub mod pool;
pub mod process;
pub mod qemu;
pub mod qmp;
pub mod session;
pub mod session_tree;

pub use accel::Accel;
pub use appliance::{Appliance, Builder, DriveOptions};
pub use error::{Error, Result};
pub use format::Format;
pub use fs::MountOptions;
pub use hotplug::HotDrive;
pub use images::BackingPolicy;
pub use libvirt::Backend;
pub use pool::{Pool, PoolOptions, PooledSession, SharedReader};
pub use session::Session;
pub use wire;
