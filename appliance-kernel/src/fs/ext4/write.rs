//! ext4 write support through `rsext4`.
