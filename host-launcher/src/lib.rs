//! skiff: look inside and change VM disk images through a tiny Rust appliance booted
//! under qemu. This is the library (the product's API); the `skiff` command (crate
//! `skiff-cli`, in `cli/`) and other front-ends are thin layers over it.
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
//!
//! # Where things are
//!
//! Each folder of `src/` is one concern; dependencies point down this list
//! (`appliance` → `backend`/`session` → `images`, `confine` → `error`).
//!
//! ```text
//! lib.rs              this map; the public names
//! appliance.rs        Appliance::builder(), Builder, DriveOptions: what to launch
//! error.rs            Error: every failure, typed
//! backend/            where the appliance runs: the Backend choice and BackendHandle,
//!   mod.rs              the one abstraction (launch → handle: teardown, hotplug)
//!   accel.rs            KVM or TCG
//!   kernel.rs           the appliance kernel embedded by build.rs (memfd)
//!   direct/             qemu as our child
//!     launch.rs           command line and spawn (fds, root ports, confinement args)
//!     mod.rs              DirectHandle: power-off wait, exit status, crashes, kill
//!     qemu.rs             machine profiles, -blockdev/-add-fd arguments for a chain
//!     qmp.rs              QMP client (add-fd over SCM_RIGHTS, events)
//!     hotplug.rs          hot-add/remove over QMP
//!   libvirt/            a transient libvirt domain (feature `libvirt`)
//!     launch.rs           domain creation, VirtGuest (the handle), kernel placement
//!     hotplug.rs          attach/detach on the domain's root ports
//!     stream.rs           the channel over a libvirt stream
//!     guests.rs, xml.rs   -d DOMAIN, --volume POOL/VOL; domain and volume XML
//! session/            a running appliance: Session
//!   mod.rs              Hello, shutdown, per-slot bookkeeping, failures, Drop
//!   channel.rs          frames over the socket, with deadlines
//!   calls.rs            call/submit/complete (ids, timeouts, pipelining)
//!   device.rs           devices, rescan, pread_device/pwrite_device
//!   fs.rs               partitions, mounts, file calls (MountOptions)
//!   meta.rs             owners, times, xattrs, the clock, sync; create with a mode
//!   hotplug.rs          add_drive/remove_drive: policy and bookkeeping (HotDrive)
//!   tree.rs             whole trees: checksums, du, cp, find with stats, streamed writes
//!   attrs.rs            chown, utimens, touch, xattrs; the clock sent before changes
//!   transfer.rs         trees in and out: copy-in/out, tar-in/out (pipelined, checked names)
//! images/             disk images opened by skiff: format detection, backing chains
//!   mod.rs              OpenedImage, BackingPolicy, header checks (before and after)
//!   format.rs           Format (raw, qcow2) and its detection
//! confine/            what keeps qemu in its box
//!   mod.rs              seccomp sandbox, own uid, empty chroot
//!   process.rs          the qemu child: keeper thread, PDEATHSIG, logs, fd handoff
//! inspect/            operating-system inspection
//!   mod.rs              inspect_os, mount_plan (host side, over file calls)
//!   calls.rs            Session::applications, windows_facts (computed in the appliance)
//! volumes/            LVM and LUKS: pvs/vgs/lvs, luks_info/open/close, unlock_all,
//!   mod.rs              Builder::launch_unlocked (relaunch with memory for Argon2)
//!   keys.rs             Secret, KeySet (libguestfs' --key syntax), KeyPrompt
//!   plan.rs             plan_mounts, mount_guest: what to mount when the caller names nothing
//! bulk/               many images: each (parallel runs), df, pool (Pool, SharedReader)
//! customize/          customize and sysprep: operations on a mounted guest
//!   mod.rs              Op (virt-customize's options), customize(), Report, Change
//!   ops.rs              each operation; host inputs read once (Prepared)
//!   sysprep.rs          virt-sysprep's file operations
//!   guest.rs            Guest: how changes are made (whole-file replace, attributes,
//!                       labels, no writes through symlinks, dry run)
//!   passwd.rs, selinux.rs, firstboot.rs, glob.rs
//! json.rs             the JSON documents of front-ends' --json output
//! ```
//!
//! A change to how qemu is started goes to `backend/direct/`; to libvirt, to
//! `backend/libvirt/`; a new call to `session/`; a new image check to `images/`; a new
//! backend is a module under `backend/` with a `launch` and a [`BackendHandle`].
//!
//! [`BackendHandle`]: backend::BackendHandle

pub mod appliance;
pub mod backend;
pub mod bulk;
pub mod confine;
pub mod customize;
pub mod error;
pub mod images;
pub mod inspect;
pub mod json;
pub mod session;
pub mod volumes;

// The modules' former places (before the layout above), for callers.
pub use backend::direct::{qemu, qmp};
pub use backend::{accel, kernel, libvirt};
pub use bulk::{df, each, pool};
pub use confine::process;
pub use images::format;
pub use inspect::calls as session_inspect;
pub use session::transfer;
pub use session::tree as session_tree;
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
pub use volumes::{KeySet, Secret};
pub use wire;
