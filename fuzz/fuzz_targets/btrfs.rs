//! Arbitrary bytes as a btrfs image. The checksums are recomputed first
//! (`reseal_checksums`), so mutated tree blocks reach the parsers behind them instead of
//! stopping at a checksum mismatch. Then: the subvolume listing, and the default
//! subvolume and the top level mounted, walked, stat'ed, read and `statvfs`'ed. No input
//! may panic, hang or change the (read-only) disk.
#![no_main]
use appliance::block::{MemDisk, shared};
use appliance::fs::FileSystem;
use appliance::fs::btrfs;
use libfuzzer_sys::fuzz_target;

fn walk(fs: &mut dyn FileSystem, dir: &str, depth: usize, budget: &mut usize) {
    let Ok(entries) = fs.read_dir(dir) else { return };
    for e in entries {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let path = if dir == "/" { format!("/{}", e.name) } else { format!("{dir}/{}", e.name) };
        let _ = fs.stat(&path, true);
        let _ = fs.read_link(&path);
        let _ = fs.read(&path, 0, 1 << 16);
        let _ = fs.read(&path, 100_000, 5000);
        if depth < 8 {
            walk(fs, &path, depth + 1, budget);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut img = data.to_vec();
    btrfs::reseal_checksums(&mut img);
    let dev = shared(MemDisk::new(img, true));
    let _ = btrfs::list_subvolumes(dev.clone());
    for subvol in [None, Some("/")] {
        if let Ok(mut fs) = btrfs::mount_subvol(dev.clone(), true, subvol) {
            let _ = fs.statvfs();
            let mut budget = 512;
            walk(fs.as_mut(), "/", 0, &mut budget);
            assert!(fs.write("/x", 0, b"x", true, 0o644).is_err());
        }
    }
});
