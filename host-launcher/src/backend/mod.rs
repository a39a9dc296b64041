//! Where the appliance runs.

pub mod accel;
pub mod direct;
pub mod kernel;
pub mod libvirt;
