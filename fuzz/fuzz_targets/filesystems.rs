//! Arbitrary bytes as a disk, served through the appliance's real dispatcher: list
//! partitions and filesystems, mount each read-only, walk it, read every file. No input
//! may panic, hang or change the (read-only) disk.
#![no_main]
use appliance::block::{MemDisk, shared};
use appliance::rpc::Appliance;
use libfuzzer_sys::fuzz_target;
use wire::{Reply, Request};

fuzz_target!(|data: &[u8]| {
    let mut app = Appliance::new();
    app.set_disk(0, shared(MemDisk::new(data.to_vec(), true)));
    let _ = app.handle(Request::Partitions);
    let mut devices = vec![String::from("/dev/sda")];
    if let Ok(Reply::Filesystems(fss)) = app.handle(Request::Filesystems) {
        devices.extend(fss.into_iter().map(|f| f.device));
    }
    devices.dedup();
    for fstype in [None, Some("ext4"), Some("vfat"), Some("ntfs"), Some("btrfs"), Some("xfs")] {
        for dev in &devices {
            let mounted = app.handle(Request::Mount {
                device: dev.clone(),
                mountpoint: "/".into(),
                readonly: true,
                fstype: fstype.map(String::from),
            });
            if mounted.is_err() {
                continue;
            }
            let _ = app.handle(Request::StatVfs { path: "/".into() });
            let _ = app.handle(Request::FindStat { path: "/".into(), after: None });
            let _ = app.handle(Request::Du { path: "/".into() });
            if let Ok(Reply::Names(names)) = app.handle(Request::Find { path: "/".into() }) {
                for n in names.iter().take(256) {
                    let path = format!("/{n}");
                    let _ = app.handle(Request::Lstat { path: path.clone() });
                    let _ = app.handle(Request::Readlink { path: path.clone() });
                    let _ = app.handle(Request::Pread { path, offset: 0, len: 1 << 16 });
                }
            }
            let _ = app.handle(Request::Umount { mountpoint: "/".into() });
        }
    }
});
