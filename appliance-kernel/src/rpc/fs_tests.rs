//! Dispatcher tests of the filesystem requests against in-memory fake filesystems.

use super::*;
use crate::fs::vfs::tests::FakeFs;
use crate::fs::{FileSystem, FsResult};
use alloc::boxed::Box;
use alloc::string::ToString;
use wire::{DirEntry, FileType, Stat, StatVfs};

fn s(x: &str) -> String {
    x.to_string()
}

fn app() -> Appliance {
    let mut a = Appliance::new();
    let root = FakeFs::new("ext4", false)
        .with_dir("/boot")
        .with_dir("/etc")
        .with_file("/etc/hostname", b"guest\n")
        .with_file("/etc/a.txt", b"A")
        .with_dir("/etc/a")
        .with_file("/etc/a/z", b"zz")
        .with_link("/etc/l", "hostname");
    a.mount_filesystem("/dev/sda2", "/", Box::new(root))
        .unwrap();
    let boot = FakeFs::new("vfat", false)
        .with_dir("/EFI")
        .with_file("/EFI/boot.efi", &[1, 2, 3, 4, 5]);
    a.mount_filesystem("/dev/sda1", "/boot", Box::new(boot))
        .unwrap();
    a
}

fn kind(r: Result<Reply, Error>) -> ErrorKind {
    r.unwrap_err().kind
}

#[test]
fn reads_through_mounts() {
    let mut a = app();
    let r = a
        .handle(Request::Pread {
            path: s("/boot//EFI/./boot.efi"),
            offset: 1,
            len: 3,
        })
        .unwrap();
    assert_eq!(r, Reply::Data(Bytes(vec![2, 3, 4])));
    let r = a
        .handle(Request::Pread {
            path: s("/etc/hostname"),
            offset: 100,
            len: 3,
        })
        .unwrap();
    assert_eq!(r, Reply::Data(Bytes(vec![])));
    assert_eq!(
        kind(a.handle(Request::Pread {
            path: s("/etc/hostname"),
            offset: 0,
            len: MAX_CHUNK + 1
        })),
        ErrorKind::TooLarge
    );
    assert_eq!(
        kind(a.handle(Request::Pread {
            path: s("etc/hostname"),
            offset: 0,
            len: 1
        })),
        ErrorKind::InvalidArgument
    );
    let Reply::DirEntries(d) = a.handle(Request::ReadDir { path: s("/etc") }).unwrap() else {
        panic!()
    };
    let names: Vec<_> = d.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a", "a.txt", "hostname", "l"]);
    let Reply::Text(t) = a.handle(Request::Readlink { path: s("/etc/l") }).unwrap() else {
        panic!()
    };
    assert_eq!(t, "hostname");
    let Reply::Stat(st) = a
        .handle(Request::Stat {
            path: s("/boot/EFI/boot.efi"),
        })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!((st.file_type, st.size), (FileType::Regular, 5));
    assert!(matches!(
        a.handle(Request::StatVfs { path: s("/boot") }).unwrap(),
        Reply::StatVfs(_)
    ));
    let Reply::Mounts(m) = a.handle(Request::Mounts).unwrap() else {
        panic!()
    };
    assert_eq!(m.len(), 2);
    assert_eq!(m[1].mountpoint, "/boot");
    assert_eq!(m[1].fstype, "vfat");
}

#[test]
fn find_is_depth_first_and_crosses_mounts() {
    let mut a = app();
    let Reply::Names(n) = a.handle(Request::Find { path: s("/") }).unwrap() else {
        panic!()
    };
    assert_eq!(
        n,
        [
            "boot",
            "boot/EFI",
            "boot/EFI/boot.efi",
            "etc",
            "etc/a",
            "etc/a/z",
            "etc/a.txt",
            "etc/hostname",
            "etc/l"
        ]
    );
    let Reply::Names(n) = a.handle(Request::Find { path: s("/etc/a/") }).unwrap() else {
        panic!()
    };
    assert_eq!(n, ["z"]);
    assert_eq!(
        kind(a.handle(Request::Find {
            path: s("/etc/hostname")
        })),
        ErrorKind::NotADirectory
    );
}

#[test]
fn umount_busy_and_unmounted_paths() {
    let mut a = app();
    assert_eq!(
        kind(a.handle(Request::Umount { mountpoint: s("/") })),
        ErrorKind::Busy
    );
    assert_eq!(
        kind(a.handle(Request::Umount {
            mountpoint: s("/etc")
        })),
        ErrorKind::NotMounted
    );
    a.handle(Request::Umount {
        mountpoint: s("/boot/"),
    })
    .unwrap();
    // Now /boot is the empty directory of the root filesystem.
    let Reply::DirEntries(d) = a.handle(Request::ReadDir { path: s("/boot") }).unwrap() else {
        panic!()
    };
    assert!(d.is_empty());
    a.handle(Request::Umount { mountpoint: s("/") }).unwrap();
    assert_eq!(
        kind(a.handle(Request::Stat { path: s("/") })),
        ErrorKind::NotMounted
    );
}

#[test]
fn mount_requests_resolve_devices() {
    let mut a = app();
    // No disks are attached to this appliance.
    assert_eq!(
        kind(a.handle(Request::Mount {
            device: s("/dev/sdb"),
            mountpoint: s("/etc/a"),
            readonly: true,
            fstype: None
        })),
        ErrorKind::NotFound
    );
    // Already mounted devices (and their disks) are busy.
    for dev in ["/dev/sda1", "/dev/sda"] {
        assert_eq!(
            kind(a.handle(Request::Mount {
                device: s(dev),
                mountpoint: s("/etc/a"),
                readonly: true,
                fstype: None
            })),
            ErrorKind::Busy,
            "{dev}"
        );
    }
    // Nested mount on a directory of another mount.
    a.mount_filesystem(
        "/dev/sdb",
        "/boot/EFI",
        Box::new(FakeFs::new("x", true).with_file("/f", b"F")),
    )
    .unwrap();
    let Reply::Data(d) = a
        .handle(Request::Pread {
            path: s("/boot/EFI/f"),
            offset: 0,
            len: 10,
        })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(d.0, b"F");
    assert_eq!(
        kind(a.handle(Request::Umount {
            mountpoint: s("/boot")
        })),
        ErrorKind::Busy
    );
}

#[test]
fn write_side() {
    let mut a = app();
    a.handle(Request::Mkdir {
        path: s("/etc/x/y/z"),
        parents: true,
        mode: 0o755,
    })
    .unwrap();
    // mkdir -p of an existing directory is fine, plain mkdir is not.
    a.handle(Request::Mkdir {
        path: s("/etc/x/y"),
        parents: true,
        mode: 0o755,
    })
    .unwrap();
    assert_eq!(
        kind(a.handle(Request::Mkdir {
            path: s("/etc/x/y"),
            parents: false,
            mode: 0o755
        })),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind(a.handle(Request::Mkdir {
            path: s("/etc/hostname/q"),
            parents: true,
            mode: 0o755
        })),
        ErrorKind::NotADirectory
    );
    a.handle(Request::WriteFile {
        path: s("/etc/x/y/f"),
        offset: 0,
        data: Bytes(b"hello".to_vec()),
        truncate: true,
        mode: 0o644,
    })
    .unwrap();
    let r = a
        .handle(Request::Append {
            path: s("/etc/x/y/f"),
            data: Bytes(b" world".to_vec()),
        })
        .unwrap();
    assert_eq!(r, Reply::Written(6));
    a.handle(Request::Append {
        path: s("/etc/new"),
        data: Bytes(b"n".to_vec()),
    })
    .unwrap();
    assert_eq!(a.pread("/etc/new", 0, 10).unwrap(), b"n");
    assert_eq!(a.pread("/etc/x/y/f", 0, 100).unwrap(), b"hello world");
    a.handle(Request::Truncate {
        path: s("/etc/x/y/f"),
        size: 4,
    })
    .unwrap();
    assert_eq!(a.pread("/etc/x/y/f", 0, 100).unwrap(), b"hell");

    // Rename within a filesystem, not across.
    a.handle(Request::Rename {
        from: s("/etc/x"),
        to: s("/etc/w"),
    })
    .unwrap();
    assert_eq!(a.pread("/etc/w/y/f", 0, 100).unwrap(), b"hell");
    assert_eq!(
        kind(a.handle(Request::Rename {
            from: s("/etc/hostname"),
            to: s("/boot/hostname")
        })),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind(a.handle(Request::Rename {
            from: s("/etc/w"),
            to: s("/etc/w/y/inside")
        })),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind(a.handle(Request::Rename {
            from: s("/boot"),
            to: s("/boot2")
        })),
        ErrorKind::Busy
    );

    // rm, rm -r, rmdir.
    assert_eq!(
        kind(a.handle(Request::Remove {
            path: s("/etc/w"),
            recursive: false
        })),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        kind(a.handle(Request::Rmdir { path: s("/etc/w") })),
        ErrorKind::NotEmpty
    );
    a.handle(Request::Remove {
        path: s("/etc/w"),
        recursive: true,
    })
    .unwrap();
    assert_eq!(
        kind(a.handle(Request::Stat { path: s("/etc/w") })),
        ErrorKind::NotFound
    );
    for p in ["/", "/../.."] {
        assert_eq!(
            kind(a.handle(Request::Remove {
                path: s(p),
                recursive: true
            })),
            ErrorKind::InvalidArgument
        );
    }
    assert_eq!(
        kind(a.handle(Request::Remove {
            path: s("/boot"),
            recursive: true
        })),
        ErrorKind::Busy
    );
    a.handle(Request::Remove {
        path: s("/etc/hostname"),
        recursive: false,
    })
    .unwrap();
    a.handle(Request::Symlink {
        target: s("../x"),
        linkpath: s("/etc/sl"),
    })
    .unwrap();
    let Reply::Text(t) = a.handle(Request::Readlink { path: s("/etc/sl") }).unwrap() else {
        panic!()
    };
    assert_eq!(t, "../x");
}

#[test]
fn read_only_mounts_refuse_writes() {
    let mut a = Appliance::new();
    a.mount_filesystem(
        "/dev/sda",
        "/",
        Box::new(FakeFs::new("vfat", true).with_file("/f", b"x")),
    )
    .unwrap();
    let reqs = [
        Request::WriteFile {
            path: s("/g"),
            offset: 0,
            data: Bytes(vec![1]),
            truncate: false,
            mode: 0o644,
        },
        Request::Append {
            path: s("/f"),
            data: Bytes(vec![1]),
        },
        Request::Mkdir {
            path: s("/d"),
            parents: true,
            mode: 0o755,
        },
        Request::Remove {
            path: s("/f"),
            recursive: false,
        },
        Request::Rename {
            from: s("/f"),
            to: s("/g"),
        },
        Request::Chmod {
            path: s("/f"),
            mode: 0o600,
        },
        Request::Symlink {
            target: s("f"),
            linkpath: s("/l"),
        },
        Request::Truncate {
            path: s("/f"),
            size: 0,
        },
    ];
    for r in reqs {
        assert_eq!(kind(a.handle(r.clone())), ErrorKind::ReadOnly, "{r:?}");
    }
    assert_eq!(a.pread("/f", 0, 9).unwrap(), b"x");
}

#[test]
fn sync_and_shutdown_sync_filesystems() {
    let mut a = Appliance::new();
    let fs = FakeFs::new("vfat", false);
    let syncs = fs.syncs.clone();
    a.mount_filesystem("/dev/sda", "/", Box::new(fs)).unwrap();
    a.handle(Request::Sync).unwrap();
    assert_eq!(syncs.get(), 1);
    a.handle(Request::Shutdown).unwrap();
    assert_eq!(syncs.get(), 2);
    assert!(a.mounts().is_empty());
}

/// A corrupt filesystem: every directory contains one subdirectory `d`, forever.
struct Endless {
    ino: u64,
}

impl FileSystem for Endless {
    fn fstype(&self) -> &str {
        "endless"
    }
    fn readonly(&self) -> bool {
        true
    }
    fn stat(&mut self, _path: &str, _follow: bool) -> FsResult<Stat> {
        Ok(Stat {
            file_type: FileType::Directory,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size: 0,
            nlink: 2,
            ino: self.ino,
            mtime: 0,
            atime: 0,
            ctime: 0,
        })
    }
    fn read_dir(&mut self, path: &str) -> FsResult<Vec<DirEntry>> {
        Ok(vec![DirEntry {
            name: s("d"),
            stat: self.stat(path, false)?,
        }])
    }
    fn read_link(&mut self, _path: &str) -> FsResult<String> {
        Err(Error::new(ErrorKind::InvalidArgument, "no"))
    }
    fn read(&mut self, _path: &str, _offset: u64, _len: usize) -> FsResult<Vec<u8>> {
        Err(Error::new(ErrorKind::IsADirectory, "dir"))
    }
    fn statvfs(&mut self) -> FsResult<StatVfs> {
        Err(Error::new(ErrorKind::Unsupported, "no"))
    }
}

#[test]
fn find_stops_on_directory_cycles() {
    // Same inode at every level: detected as a cycle at once.
    let mut a = Appliance::new();
    a.mount_filesystem("/dev/sda", "/", Box::new(Endless { ino: 7 }))
        .unwrap();
    assert_eq!(
        kind(a.handle(Request::Find { path: s("/") })),
        ErrorKind::Loop
    );
    // No inode numbers: the depth limit ends it.
    let mut a = Appliance::new();
    a.mount_filesystem("/dev/sda", "/", Box::new(Endless { ino: 0 }))
        .unwrap();
    let e = a.handle(Request::Find { path: s("/") }).unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::Loop | ErrorKind::InvalidArgument | ErrorKind::TooLarge
        ),
        "{e:?}"
    );
    // The appliance still answers.
    assert_eq!(a.handle(Request::Ping).unwrap(), Reply::Unit);
}

#[test]
fn removing_a_disk_drops_its_mounts() {
    use crate::block::{MemDisk, shared};
    let mut a = Appliance::new();
    a.set_disk(0, shared(MemDisk::new(vec![0; 512], true)));
    a.set_disk(1, shared(MemDisk::new(vec![0; 512], true)));
    a.mount_filesystem(
        "/dev/sdb",
        "/",
        Box::new(FakeFs::new("x", true).with_dir("/m")),
    )
    .unwrap();
    a.mount_filesystem("/dev/sda1", "/m", Box::new(FakeFs::new("y", true)))
        .unwrap();
    a.remove_disk(0).unwrap();
    let Reply::Mounts(m) = a.handle(Request::Mounts).unwrap() else {
        panic!()
    };
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].device, "/dev/sdb");
}
