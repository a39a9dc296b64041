//! Throwaway profiling harness (not committed).
use super::*;
use crate::block::{BlockDevice, MemDisk, shared};
use std::cell::Cell;
use std::rc::Rc as SRc;

thread_local! { static FLUSHES: Cell<u64> = const { Cell::new(0) }; }
struct Counting {
    inner: MemDisk,
    reads: SRc<Cell<(u64, u64)>>,
    writes: SRc<Cell<(u64, u64)>>,
}
impl BlockDevice for Counting {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn readonly(&self) -> bool {
        self.inner.readonly()
    }
    fn read_at(&mut self, o: u64, b: &mut [u8]) -> Result<(), Error> {
        let (n, by) = self.reads.get();
        self.reads.set((n + 1, by + b.len() as u64));
        self.inner.read_at(o, b)
    }
    fn write_at(&mut self, o: u64, b: &[u8]) -> Result<(), Error> {
        let (n, by) = self.writes.get();
        self.writes.set((n + 1, by + b.len() as u64));
        self.inner.write_at(o, b)
    }
    fn flush(&mut self) -> Result<(), Error> {
        FLUSHES.with(|f| f.set(f.get() + 1));
        self.inner.flush()
    }
}

fn setup(rw: bool) -> (Appliance, SRc<Cell<(u64, u64)>>, SRc<Cell<(u64, u64)>>) {
    let img = std::env::var("SKIFF_PROF_IMG").unwrap();
    let data = std::fs::read(img).unwrap();
    let reads = SRc::new(Cell::new((0, 0)));
    let writes = SRc::new(Cell::new((0, 0)));
    let mut a = Appliance::new();
    a.set_disk(
        0,
        shared(Counting {
            inner: MemDisk::new(data, !rw),
            reads: reads.clone(),
            writes: writes.clone(),
        }),
    );
    a.handle(Request::Mount {
        device: "/dev/sda".into(),
        mountpoint: "/".into(),
        readonly: !rw,
        fstype: None,
    })
    .unwrap();
    (a, reads, writes)
}

#[test]
#[ignore]
fn prof_find() {
    let (mut a, reads, _) = setup(false);
    let t = std::time::Instant::now();
    let n = match a.handle(Request::Find { path: "/".into() }).unwrap() {
        Reply::Names(n) => n.len(),
        _ => 0,
    };
    eprintln!(
        "find: {n} names in {:?}, reads {:?}",
        t.elapsed(),
        reads.get()
    );
}

#[test]
#[ignore]
fn prof_read() {
    let (mut a, reads, _) = setup(false);
    let t = std::time::Instant::now();
    let mut off = 0u64;
    loop {
        let Reply::Data(d) = a
            .handle(Request::Pread {
                path: "/big.bin".into(),
                offset: off,
                len: MAX_CHUNK,
            })
            .unwrap()
        else {
            panic!()
        };
        off += d.len() as u64;
        if d.len() < MAX_CHUNK as usize {
            break;
        }
    }
    eprintln!(
        "read: {off} bytes in {:?}, reads {:?}",
        t.elapsed(),
        reads.get()
    );
}

#[test]
#[ignore]
fn prof_write() {
    let (mut a, reads, writes) = setup(true);
    let t = std::time::Instant::now();
    let chunk = vec![0x5au8; MAX_CHUNK as usize];
    for i in 0..64u64 {
        a.handle(Request::WriteFile {
            path: "/up.bin".into(),
            offset: i << 20,
            data: Bytes(chunk.clone()),
            truncate: i == 0,
            mode: 0o644,
        })
        .unwrap();
    }
    eprintln!(
        "write: 64 MiB in {:?}, reads {:?} writes {:?} flushes {}",
        t.elapsed(),
        reads.get(),
        writes.get(),
        FLUSHES.with(|f| f.get())
    );
}

#[test]
#[ignore]
fn prof_write_big() {
    for per in [1usize, 4, 16, 64] {
        let (mut a, reads, writes) = setup(true);
        let t = std::time::Instant::now();
        let chunk = vec![0x5au8; per << 20];
        let n = 64 / per;
        for i in 0..n as u64 {
            let (fs, _) = a.mounts.resolve("/").unwrap();
            fs.write("/up.bin", i * (per as u64) << 20, &chunk, i == 0, 0o644)
                .unwrap();
        }
        eprintln!(
            "write {per} MiB x {n}: {:?}, reads {:?} writes {:?}",
            t.elapsed(),
            reads.get(),
            writes.get()
        );
    }
}

#[test]
#[ignore]
fn prof_stream() {
    let (mut a, reads, writes) = setup(true);
    let t = std::time::Instant::now();
    let chunk = vec![0x5au8; MAX_CHUNK as usize];
    for i in 0..64u64 {
        a.handle(Request::WriteStream { path: "/up.bin".into(), offset: i << 20, data: Bytes(chunk.clone()), first: i == 0, truncate: i == 0, mode: 0o644, last: i == 63 }).unwrap();
    }
    eprintln!("stream: 64 MiB in {:?}, reads {:?} writes {:?}", t.elapsed(), reads.get(), writes.get());
}
