//! FAT tests against images built by mkfs.vfat and mtools.
