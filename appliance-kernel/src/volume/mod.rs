//! Volume layers: block devices built over other block devices (LVM2 logical volumes,
//! LUKS). Each offers [`crate::block::BlockDevice`]s that the rest of the stack uses
//! like any partition.

pub mod lvm;
