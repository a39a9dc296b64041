//! Volume layers: block devices built over other block devices (LVM2 logical volumes,
//! LUKS encryption). Each offers [`crate::block::BlockDevice`]s that the rest of the
//! stack uses like any partition; they stack both ways (LVM on LUKS, LUKS on LVM).

pub mod luks;
pub mod lvm;

#[cfg(test)]
mod stack_tests;
