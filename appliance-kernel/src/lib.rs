//! The appliance's portable library: block devices, partitions, filesystems and RPC
//! dispatch. Nothing here touches hardware, so it builds and is tested on the host against
//! in-memory and file-backed disks; the kernel binary (`main.rs`) supplies the virtio
//! devices and the console channel.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod block;
pub mod fs;
pub mod inspect;
pub mod part;
pub mod rpc;
pub mod volume;
