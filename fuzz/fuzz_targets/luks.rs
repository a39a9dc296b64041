//! Arbitrary bytes as a LUKS device: header parsing (LUKS1, LUKS2 with both copies), an
//! unlock attempt with a fixed passphrase under tiny KDF limits, reads through the
//! decrypted device, the same through the RPC dispatcher (LuksInfo, LuksOpen); and the
//! bytes as LUKS2 JSON metadata (which a checksum otherwise guards). No input may panic,
//! hang or change the (read-only) disk.
#![no_main]
use appliance::block::{BlockDevice, MemDisk, shared};
use appliance::rpc::Appliance;
use appliance::volume::luks::{self, Limits, LuksDevice, LuksHeader};
use libfuzzer_sys::fuzz_target;
use wire::{Bytes, Reply, Request};

const PASS: &[u8] = b"fuzz";

fuzz_target!(|data: &[u8]| {
    let _ = luks::fuzz_luks2_json(data, 1 << 30);
    // Enough for the seeds (cryptsetup's minimum of 1000 PBKDF2 iterations), tiny
    // otherwise: a fuzzed iteration count or Argon2 cost stops at the limit.
    let limits = Limits {
        max_pbkdf2_iterations: 1000,
        max_argon2_time: 2,
        max_argon2_memory_kib: 64,
    };
    let dev = shared(MemDisk::new(data.to_vec(), true));
    if let Ok(h) = LuksHeader::read(&dev) {
        let _ = h.required_memory_bytes();
        let _ = h.info("/dev/sda");
        if let Ok(key) = h.unlock(&dev, PASS, None, &limits)
            && let Ok(mut d) = LuksDevice::new(dev.clone(), &h, &key)
        {
            let mut buf = vec![0u8; (d.size().min(1 << 16)) as usize];
            let _ = d.read_at(0, &mut buf);
            let n = buf.len().min(100);
            let _ = d.read_at(1, &mut buf[..n]);
        }
    }
    let mut app = Appliance::new();
    app.set_luks_limits(limits);
    app.set_disk(0, dev);
    let _ = app.handle(Request::LuksInfo);
    if let Ok(Reply::Text(m)) = app.handle(Request::LuksOpen {
        device: "/dev/sda".into(),
        key: Bytes(PASS.to_vec()),
        name: None,
    }) {
        let _ = app.handle(Request::Filesystems);
        let _ = app.handle(Request::PreadDevice { device: m.clone(), offset: 0, len: 4096 });
        let _ = app.handle(Request::LuksClose { name: m });
    }
});
