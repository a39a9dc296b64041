//! The pool of pristine appliances and the shared read-only reader, under qemu: every
//! acquisition gets a fresh appliance that sees only its own disks; one shared reader
//! serves many disks one after another and refuses writable ones.

use skiff_tests::skiff::{
    DriveOptions, Error, Format, MountOptions, Pool, PoolOptions, SharedReader,
};
use skiff_tests::{builder, pattern, raw_image};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

const MIB: usize = 1 << 20;

#[test]
fn pool_of_two_serves_ten_acquisitions() {
    let dir = tempfile::tempdir().unwrap();
    let images: Vec<PathBuf> = (0..10)
        .map(|i| {
            raw_image(
                dir.path(),
                &format!("p{i}.img"),
                MIB + 512 * i,
                100 + i as u64,
            )
        })
        .collect();
    let before: Vec<Vec<u8>> = images.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let pool = Pool::new(PoolOptions::new(2).builder(builder())).unwrap();
    assert!(pool.wait_ready(2, Duration::from_secs(120)));
    let mut pids = HashSet::new();
    for (i, img) in images.iter().enumerate() {
        // Two disks per acquisition: its own, and the next one (wrapping).
        let other = &images[(i + 1) % images.len()];
        let mut s = pool
            .acquire(&[
                (img.clone(), DriveOptions::readonly().format(Format::Raw)),
                (other.clone(), DriveOptions::readonly()),
            ])
            .unwrap();
        assert!(
            pids.insert(s.qemu_pid().unwrap()),
            "an appliance was reused"
        );
        let names: Vec<String> = s.devices().iter().map(|d| d.name.clone()).collect();
        assert_eq!(names, ["/dev/sda", "/dev/sdb"], "acquisition {i}");
        assert_eq!(s.devices()[0].size, before[i].len() as u64);
        let want = &before[i];
        let n = want.len() as u64;
        assert!(s.pread_device("/dev/sda", 0, n).unwrap() == *want);
        let want_b = &before[(i + 1) % images.len()];
        assert!(s.pread_device("/dev/sdb", 0, 4096).unwrap() == want_b[..4096]);
        // Nothing beyond its own two disks.
        assert!(s.pread_device("/dev/sdc", 0, 512).is_err());
        if i % 2 == 0 {
            s.shutdown().unwrap();
        } // else: dropped, which kills the appliance
    }
    assert_eq!(pids.len(), 10);
    // The pool refills in the background.
    assert!(pool.wait_ready(2, Duration::from_secs(120)));
    // An acquisition that cannot work does not consume an appliance.
    let missing = dir.path().join("missing.img");
    assert!(matches!(
        pool.acquire(&[(missing, DriveOptions::readonly())]),
        Err(Error::DiskNotFound { .. })
    ));
    assert_eq!(pool.ready(), 2);
    let too_many: Vec<(PathBuf, DriveOptions)> = (0..9)
        .map(|_| (images[0].clone(), DriveOptions::readonly()))
        .collect();
    assert!(matches!(
        pool.acquire(&too_many),
        Err(Error::NoFreePort { ports: 8 })
    ));
    assert_eq!(pool.ready(), 2, "a refused acquisition keeps its appliance");
    drop(pool);
    for (p, want) in images.iter().zip(&before) {
        assert!(std::fs::read(p).unwrap() == *want, "{p:?} changed");
    }
}

#[test]
fn pooled_appliances_are_killed_when_dropped() {
    let pool = Pool::new(PoolOptions::new(1).builder(builder())).unwrap();
    let none: &[(PathBuf, DriveOptions)] = &[];
    let s = pool.acquire(none).unwrap();
    let pid = s.qemu_pid().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(s);
    // Reaped: no such process any more.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    // The pool refills; dropping it stops its workers and kills its idle appliances.
    assert!(pool.wait_ready(1, Duration::from_secs(120)));
    drop(pool);
}

#[test]
fn shared_reader_over_five_disks() {
    let dir = tempfile::tempdir().unwrap();
    let images: Vec<PathBuf> = (0..5)
        .map(|i| raw_image(dir.path(), &format!("s{i}.img"), 2 * MIB, 200 + i))
        .collect();
    let before: Vec<Vec<u8>> = images.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let mut r = SharedReader::launch(&builder()).unwrap();
    let pid = r.qemu_pid();
    for (i, img) in images.iter().enumerate() {
        let got = r
            .with_disk(img, None, |s, dev| {
                assert_eq!(s.devices().len(), 1, "only the current disk is attached");
                assert_eq!(s.devices()[0].name, dev);
                s.pread_device(dev, 0, 2 * MIB as u64)
            })
            .unwrap();
        assert!(got == before[i], "disk {i}");
        assert!(r.devices().is_empty());
    }
    assert_eq!(r.qemu_pid(), pid, "one appliance for all five");
    // Writable drives are refused, by the reader and by its session.
    assert!(matches!(
        r.add_drive(&images[0], DriveOptions::writable()),
        Err(Error::ReadOnlySession { .. })
    ));
    // Mounted read-only whatever is asked; a write through the mount fails.
    let dev = r.add(&images[0], Some(Format::Raw)).unwrap();
    assert!(r.readonly_drives_only());
    assert!(r.pwrite_device(&dev, 0, &pattern(512, 1)).is_err());
    let _ = r.mount(&dev, "/", MountOptions::writable());
    r.remove(&dev).unwrap();
    r.shutdown().unwrap();
    for (p, want) in images.iter().zip(&before) {
        assert!(std::fs::read(p).unwrap() == *want, "{p:?} changed");
    }
}
