//! A whole XFS image mounted read-write through the RPC dispatcher and changed: mkdir
//! -p, create, append, overwrite, truncate, rename, symlink, xattrs, chmod/chown,
//! rm -r, sync, then mounted again and walked. No input may panic or hang (errors are
//! expected: most inputs are damaged). Seeds: `mkfs.xfs` images from `seed.sh`
//! (32 MiB: run with `-max_len=33554432`).
#![no_main]
use appliance::block::{MemDisk, shared};
use appliance::rpc::Appliance;
use libfuzzer_sys::fuzz_target;
use wire::{Bytes, Reply, Request};

fn mount(app: &mut Appliance) -> bool {
    app.handle(Request::Mount {
        device: "/dev/sda".into(),
        mountpoint: "/".into(),
        readonly: false,
        fstype: Some("xfs".into()),
    })
    .is_ok()
}

fuzz_target!(|data: &[u8]| {
    let mut app = Appliance::new();
    app.set_disk(0, shared(MemDisk::new(data.to_vec(), false)));
    if !mount(&mut app) {
        return;
    }
    let s = |p: &str| p.to_string();
    let reqs = [
        Request::SetClock { now: 1_700_000_000 },
        Request::Mkdir { path: s("/new/deeper"), parents: true, mode: 0o755 },
        Request::WriteFile {
            path: s("/new/deeper/file"),
            offset: 0,
            data: Bytes(vec![7u8; 9000]),
            truncate: true,
            mode: 0o644,
        },
        Request::Append { path: s("/a.txt"), data: Bytes(b"more\n".to_vec()) },
        Request::WriteFile {
            path: s("/many/entry-1"),
            offset: 5000,
            data: Bytes(vec![1u8; 70_000]),
            truncate: false,
            mode: 0o644,
        },
        Request::Truncate { path: s("/many/entry-2"), size: 1 },
        Request::Rename { from: s("/many"), to: s("/new/many") },
        Request::Symlink { target: s("new/deeper/file"), linkpath: s("/lnk2") },
        Request::Setxattr {
            path: s("/a.txt"),
            name: s("security.selinux"),
            value: Bytes(b"system_u:object_r:etc_t:s0\0".to_vec()),
        },
        Request::Listxattrs { path: s("/a.txt") },
        Request::Chmod { path: s("/a.txt"), mode: 0o600 },
        Request::Chown { path: s("/a.txt"), uid: 1, gid: 2 },
        Request::StatVfs { path: s("/") },
        Request::Remove { path: s("/new"), recursive: true },
        Request::Sync,
        Request::Umount { mountpoint: s("/") },
    ];
    for r in reqs {
        let _ = app.handle(r);
    }
    if mount(&mut app) {
        if let Ok(Reply::Names(names)) = app.handle(Request::Find { path: "/".into() }) {
            for n in names.iter().take(256) {
                let _ = app.handle(Request::Pread { path: format!("/{n}"), offset: 0, len: 1 << 16 });
            }
        }
    }
    let _ = app.handle(Request::Shutdown);
});
