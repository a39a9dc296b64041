//! Jobs over many images, each image in an appliance of its own unless the caller opts
//! into sharing one.
//!
//! - [`each`]: N jobs at a time on worker threads, results back on the caller's thread.
//! - [`df`]: size and use of every filesystem (like `virt-df`), per session or per image.
//! - [`pool`]: pristine appliances booted ahead of need ([`pool::Pool`]), and one
//!   appliance reused for many read-only disks of one trust domain
//!   ([`pool::SharedReader`]).

pub mod df;
pub mod each;
pub mod pool;
