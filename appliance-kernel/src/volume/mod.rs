//! Volume layers between disks and filesystems: block devices made from other block
//! devices (LUKS encryption; LVM alongside).

pub mod luks;
