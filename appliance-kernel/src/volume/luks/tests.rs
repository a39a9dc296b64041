//! LUKS against the real tools: headers made by `cryptsetup luksFormat` (and `qemu-img`),
//! compared with `cryptsetup luksDump` (text and JSON metadata); volume keys compared with
//! `luksDump --dump-volume-key`; payloads encrypted and decrypted by an independent
//! implementation (Python's `cryptography`, i.e. OpenSSL) and checked with e2fsck.

use super::*;
use crate::block::{BlockDevice, MemDisk, shared};
use crate::part::testutil::{TempDir, TempImage, run};
use crate::rpc::Appliance;
use alloc::rc::Rc;
use alloc::string::ToString;
use core::cell::RefCell;
use std::collections::BTreeMap;
use std::process::Command;
use wire::{Bytes, Reply, Request};

pub(crate) const PASS: &str = "correct horse battery staple";
pub(crate) const CHEAP_PBKDF2: &[&str] = &["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];
const CHEAP_ARGON2ID: &[&str] = &[
    "--pbkdf",
    "argon2id",
    "--pbkdf-memory",
    "1024",
    "--pbkdf-force-iterations",
    "4",
];
const CHEAP_ARGON2I: &[&str] = &[
    "--pbkdf",
    "argon2i",
    "--pbkdf-memory",
    "1024",
    "--pbkdf-force-iterations",
    "4",
];
/// A LUKS2 header of 2 MiB instead of 16 (keeps test images small).
pub(crate) const SMALL_LUKS2: &[&str] = &[
    "--luks2-metadata-size",
    "16k",
    "--luks2-keyslots-size",
    "1m",
];

/// An image of `size` bytes formatted by `cryptsetup luksFormat` with `args`.
pub(crate) fn luks_format(size: u64, args: &[&str]) -> TempImage {
    let img = TempImage::new("luks", size);
    let mut a = vec!["luksFormat", "--batch-mode", "--key-file=-"];
    a.extend_from_slice(args);
    a.push(img.path());
    run("cryptsetup", &a, Some(PASS));
    img
}

/// `luksDump --dump-volume-key` with `pass`: the volume key, as cryptsetup derives it.
fn dumped_volume_key(img: &TempImage, pass: &str) -> Vec<u8> {
    let dir = TempDir::new("luks-vk");
    let f = dir.0.join("vk");
    run(
        "cryptsetup",
        &[
            "luksDump",
            "--dump-volume-key",
            "--batch-mode",
            "--key-file=-",
            "--volume-key-file",
            f.to_str().unwrap(),
            img.path(),
        ],
        Some(pass),
    );
    std::fs::read(f).unwrap()
}

/// `Name: value` lines of the text `luksDump` (first occurrence of each name).
fn dump_fields(img: &TempImage) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for l in run("cryptsetup", &["luksDump", img.path()], None).lines() {
        if let Some((k, v)) = l.split_once(':') {
            m.entry(k.trim().to_string())
                .or_insert_with(|| v.trim().to_string());
        }
    }
    m
}

fn json_metadata(img: &TempImage) -> serde_json::Value {
    let s = run(
        "cryptsetup",
        &["luksDump", "--dump-json-metadata", img.path()],
        None,
    );
    serde_json::from_str(&s).unwrap()
}

fn b64(s: &serde_json::Value) -> Vec<u8> {
    use base64ct::{Base64, Encoding};
    let mut buf = [0u8; 128];
    Base64::decode(s.as_str().unwrap(), &mut buf)
        .unwrap()
        .to_vec()
}

fn juint(v: &serde_json::Value) -> u64 {
    match v {
        serde_json::Value::String(s) => s.parse().unwrap(),
        n => n.as_u64().unwrap(),
    }
}

fn disk_of(img: &TempImage) -> SharedDevice {
    img.disk()
}

/// Compares a parsed LUKS2 header with cryptsetup's own JSON view of it.
fn check_luks2_against_json(h: &LuksHeader, img: &TempImage) {
    let j = json_metadata(img);
    let dump = dump_fields(img);
    assert_eq!(h.version, 2);
    assert_eq!(&h.uuid, dump.get("UUID").unwrap());
    let seg = &j["segments"]["0"];
    assert_eq!(h.segment.offset, juint(&seg["offset"]));
    assert_eq!(h.segment.iv_tweak, juint(&seg["iv_tweak"]));
    assert_eq!(h.segment.sector_size as u64, juint(&seg["sector_size"]));
    assert_eq!(h.segment.cipher.name(), seg["encryption"].as_str().unwrap());
    assert_eq!(h.segment.size.is_none(), seg["size"] == "dynamic");
    let slots = j["keyslots"].as_object().unwrap();
    assert_eq!(h.keyslots.len(), slots.len());
    for k in &h.keyslots {
        let js = &slots[&k.id.to_string()];
        assert_eq!(k.key_size as u64, juint(&js["key_size"]));
        assert_eq!(k.stripes as u64, juint(&js["af"]["stripes"]));
        assert_eq!(k.af_hash.name(), js["af"]["hash"].as_str().unwrap());
        assert_eq!(k.area_offset, juint(&js["area"]["offset"]));
        assert_eq!(k.area_size, juint(&js["area"]["size"]));
        assert_eq!(k.area_key_size as u64, juint(&js["area"]["key_size"]));
        assert_eq!(
            k.area_cipher.name(),
            js["area"]["encryption"].as_str().unwrap()
        );
        let kdf = &js["kdf"];
        assert_eq!(k.kdf.name(), kdf["type"].as_str().unwrap());
        match &k.kdf {
            Kdf::Pbkdf2 {
                hash,
                iterations,
                salt,
            } => {
                assert_eq!(hash.name(), kdf["hash"].as_str().unwrap());
                assert_eq!(*iterations as u64, juint(&kdf["iterations"]));
                assert_eq!(*salt, b64(&kdf["salt"]));
            }
            Kdf::Argon2 {
                time,
                memory,
                cpus,
                salt,
                ..
            } => {
                assert_eq!(*time as u64, juint(&kdf["time"]));
                assert_eq!(*memory as u64, juint(&kdf["memory"]));
                assert_eq!(*cpus as u64, juint(&kdf["cpus"]));
                assert_eq!(*salt, b64(&kdf["salt"]));
            }
        }
    }
    let digests = j["digests"].as_object().unwrap();
    assert_eq!(h.digests.len(), digests.len());
    for (d, jd) in h.digests.iter().zip(digests.values()) {
        assert_eq!(d.hash.name(), jd["hash"].as_str().unwrap());
        assert_eq!(d.iterations as u64, juint(&jd["iterations"]));
        assert_eq!(d.salt, b64(&jd["salt"]));
        assert_eq!(d.digest, b64(&jd["digest"]));
        let ks: Vec<u32> = jd["keyslots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(d.keyslots, ks);
    }
}

/// Compares a parsed LUKS1 header with the text `luksDump`.
fn check_luks1_against_dump(h: &LuksHeader, img: &TempImage) {
    let out = run("cryptsetup", &["luksDump", img.path()], None);
    let f = dump_fields(img);
    assert_eq!(h.version, 1);
    assert_eq!(&h.uuid, f.get("UUID").unwrap());
    assert_eq!(
        h.segment.cipher.name(),
        format!("{}-{}", f["Cipher name"], f["Cipher mode"])
    );
    assert_eq!(
        h.segment.offset,
        f["Payload offset"].parse::<u64>().unwrap() * 512
    );
    assert_eq!(
        h.key_size().unwrap() * 8,
        f["MK bits"].parse::<usize>().unwrap()
    );
    assert_eq!(
        h.digests[0].iterations,
        f["MK iterations"].parse::<u32>().unwrap()
    );
    assert_eq!(h.digests[0].hash.name(), f["Hash spec"]);
    // Keyslots: "Key Slot N: ENABLED" followed by its Iterations and material offset.
    let mut enabled = Vec::new();
    let mut lines = out.lines().peekable();
    while let Some(l) = lines.next() {
        if let Some(rest) = l.strip_prefix("Key Slot ")
            && rest.ends_with("ENABLED")
        {
            let n: u32 = rest.split(':').next().unwrap().parse().unwrap();
            let mut iters = 0;
            let mut off = 0;
            while let Some(l) = lines.peek() {
                if l.starts_with("Key Slot") {
                    break;
                }
                let l = lines.next().unwrap();
                if let Some((k, v)) = l.split_once(':') {
                    match k.trim() {
                        "Iterations" => iters = v.trim().parse().unwrap(),
                        "Key material offset" => off = v.trim().parse::<u64>().unwrap(),
                        _ => {}
                    }
                }
            }
            enabled.push((n, iters, off * 512));
        }
    }
    let ours: Vec<(u32, u32, u64)> = h
        .keyslots
        .iter()
        .map(|k| match &k.kdf {
            Kdf::Pbkdf2 { iterations, .. } => (k.id, *iterations, k.area_offset),
            _ => panic!("LUKS1 with a non-PBKDF2 keyslot"),
        })
        .collect();
    assert_eq!(ours, enabled);
}

/// Formats, checks the header against cryptsetup's dump and the unlocked key against
/// its dumped volume key; returns the image.
fn format_and_unlock(args: &[&str]) -> (TempImage, LuksHeader) {
    let img = luks_format(4 << 20, args);
    let dev = disk_of(&img);
    let h = LuksHeader::read(&dev).unwrap();
    if h.version == 1 {
        check_luks1_against_dump(&h, &img);
    } else {
        check_luks2_against_json(&h, &img);
    }
    let key = h
        .unlock(&dev, PASS.as_bytes(), None, &Limits::default())
        .unwrap();
    assert_eq!(key.bytes(), dumped_volume_key(&img, PASS), "{args:?}");
    (img, h)
}

#[test]
fn luks1_xts_sha256() {
    let (_, h) = format_and_unlock(&["--type", "luks1", "--pbkdf-force-iterations", "1000"]);
    assert_eq!(h.segment.cipher.name(), "aes-xts-plain64");
    assert_eq!(h.key_size(), Some(64));
}

#[test]
fn luks1_cbc_essiv_sha1() {
    let (_, h) = format_and_unlock(&[
        "--type",
        "luks1",
        "--cipher",
        "aes-cbc-essiv:sha256",
        "--key-size",
        "256",
        "--hash",
        "sha1",
        "--pbkdf-force-iterations",
        "1000",
    ]);
    assert_eq!(h.segment.cipher.name(), "aes-cbc-essiv:sha256");
    assert_eq!(h.digests[0].hash, Hash::Sha1);
}

#[test]
fn luks1_xts_256_sha512_plain() {
    format_and_unlock(&[
        "--type",
        "luks1",
        "--cipher",
        "aes-xts-plain",
        "--key-size",
        "256",
        "--hash",
        "sha512",
        "--pbkdf-force-iterations",
        "1000",
    ]);
}

#[test]
fn luks2_argon2id() {
    let mut a = vec!["--type", "luks2"];
    a.extend_from_slice(CHEAP_ARGON2ID);
    a.extend_from_slice(SMALL_LUKS2);
    let (_, h) = format_and_unlock(&a);
    assert!(matches!(h.keyslots[0].kdf, Kdf::Argon2 { id: true, .. }));
    assert_eq!(h.required_memory_bytes(), (1024 + 1024) * 1024);
}

#[test]
fn luks2_argon2i_sector_4096() {
    let mut a = vec!["--type", "luks2", "--sector-size", "4096"];
    a.extend_from_slice(CHEAP_ARGON2I);
    a.extend_from_slice(SMALL_LUKS2);
    let (_, h) = format_and_unlock(&a);
    assert!(matches!(h.keyslots[0].kdf, Kdf::Argon2 { id: false, .. }));
    assert_eq!(h.segment.sector_size, 4096);
}

#[test]
fn luks2_pbkdf2_sha512_cbc_essiv_512() {
    let mut a = vec![
        "--type",
        "luks2",
        "--sector-size",
        "512",
        "--hash",
        "sha512",
        "--cipher",
        "aes-cbc-essiv:sha256",
        "--key-size",
        "256",
        "--label",
        "secret-stuff",
    ];
    a.extend_from_slice(CHEAP_PBKDF2);
    a.extend_from_slice(SMALL_LUKS2);
    let (_, h) = format_and_unlock(&a);
    assert_eq!(h.label.as_deref(), Some("secret-stuff"));
    assert!(matches!(
        h.keyslots[0].kdf,
        Kdf::Pbkdf2 {
            hash: Hash::Sha512,
            ..
        }
    ));
}

/// cryptsetup's defaults (LUKS2, argon2id with its own benchmark's parameters, up to
/// 1 GiB of memory); default 16 MiB header.
#[test]
fn luks2_cryptsetup_defaults() {
    let img = luks_format(20 << 20, &[]);
    let dev = disk_of(&img);
    let h = LuksHeader::read(&dev).unwrap();
    check_luks2_against_json(&h, &img);
    let t = std::time::Instant::now();
    let key = h
        .unlock(&dev, PASS.as_bytes(), None, &Limits::default())
        .unwrap();
    eprintln!(
        "default keyslot ({:?}) unlocked in {:?}",
        h.keyslots[0].kdf.name(),
        t.elapsed()
    );
    assert_eq!(key.bytes(), dumped_volume_key(&img, PASS));
}

#[test]
fn several_keyslots_and_wrong_keys() {
    for ty in ["luks1", "luks2"] {
        let mut a = vec!["--type", ty];
        a.extend_from_slice(CHEAP_PBKDF2);
        if ty == "luks2" {
            a.extend_from_slice(SMALL_LUKS2);
        }
        let img = luks_format(4 << 20, &a);
        let dir = TempDir::new("luks-keys");
        let new_key = dir.0.join("new");
        std::fs::write(&new_key, "second passphrase").unwrap();
        let mut add = vec![
            "luksAddKey",
            "--batch-mode",
            "--key-file=-",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-slot",
            "5",
            img.path(),
        ];
        add.push(new_key.to_str().unwrap());
        run("cryptsetup", &add, Some(PASS));
        let dev = disk_of(&img);
        let h = LuksHeader::read(&dev).unwrap();
        let ids: Vec<u32> = h.keyslots.iter().map(|k| k.id).collect();
        assert_eq!(ids, [0, 5], "{ty}");
        let vk = dumped_volume_key(&img, PASS);
        let l = Limits::default();
        assert_eq!(
            h.unlock(&dev, b"second passphrase", None, &l)
                .unwrap()
                .bytes(),
            vk
        );
        assert_eq!(
            h.unlock(&dev, b"second passphrase", Some(5), &l)
                .unwrap()
                .bytes(),
            vk
        );
        let e = h
            .unlock(&dev, b"second passphrase", Some(0), &l)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        assert_eq!(
            h.unlock(&dev, PASS.as_bytes(), Some(3), &l)
                .unwrap_err()
                .kind,
            ErrorKind::NotFound
        );
        let e = h.unlock(&dev, b"wrong", None, &l).unwrap_err();
        assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}");
        // Through the RPC: the error names the device, never the key.
        let mut a = Appliance::new();
        a.set_disk(0, dev.clone());
        let e = a
            .handle(Request::LuksOpen {
                device: "/dev/sda".to_string(),
                key: Bytes(b"hunter2-wrong".to_vec()),
                name: None,
            })
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        assert!(e.message.starts_with("/dev/sda: "), "{e}");
        assert!(!e.message.contains("hunter2"), "{e}");
        assert!(!format!("{e:?}").contains("hunter2"));
    }
}

/// Writes `bytes` at `offset` of the image file.
fn patch(img: &TempImage, offset: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&img.0)
        .unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

/// Replaces the JSON of both LUKS2 header copies (at 0 and `hdr_size`) with `json` and
/// recomputes their checksums, as a header writer would.
fn rewrite_luks2_json(img: &TempImage, json: &str) {
    let mut data = std::fs::read(&img.0).unwrap();
    let hdr_size = u64::from_be_bytes(data[8..16].try_into().unwrap()) as usize;
    for off in [0, hdr_size] {
        let area = &mut data[off + 4096..off + hdr_size];
        area.fill(0);
        area[..json.len()].copy_from_slice(json.as_bytes());
        data[off + 448..off + 512].fill(0);
        let mut sum = [0u8; 64];
        Hash::Sha256.digest_into(&[&data[off..off + hdr_size]], &mut sum);
        data[off + 448..off + 480].copy_from_slice(&sum[..32]);
    }
    std::fs::write(&img.0, data).unwrap();
}

#[test]
fn corrupted_luks2_headers() {
    let mut a = vec!["--type", "luks2", "--sector-size", "4096"];
    a.extend_from_slice(CHEAP_ARGON2ID);
    a.extend_from_slice(SMALL_LUKS2);
    let img = luks_format(4 << 20, &a);
    let vk = dumped_volume_key(&img, PASS);
    let pristine = std::fs::read(&img.0).unwrap();
    let json = serde_json::to_string(&json_metadata(&img)).unwrap();
    let l = Limits::default();

    // A flipped byte in the primary JSON: its checksum fails, the secondary copy serves.
    patch(&img, 4096 + 10, b"#");
    let dev = disk_of(&img);
    let h = LuksHeader::read(&dev).unwrap();
    assert_eq!(
        h.unlock(&dev, PASS.as_bytes(), None, &l).unwrap().bytes(),
        vk
    );
    // ... and in the secondary too: corrupt.
    patch(&img, 16384 + 4096 + 10, b"#");
    let e = LuksHeader::read(&disk_of(&img)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Corrupt);
    assert!(e.message.contains("checksum"), "{e}");
    // The primary magic wiped: the secondary alone is found.
    std::fs::write(&img.0, &pristine).unwrap();
    patch(&img, 0, &[0u8; 4096]);
    let dev = disk_of(&img);
    let h = LuksHeader::read(&dev).unwrap();
    assert_eq!(
        h.unlock(&dev, PASS.as_bytes(), None, &l).unwrap().bytes(),
        vk
    );

    // Absurd values with valid checksums: refused when parsed, before any allocation.
    for (from, to, what) in [
        ("\"memory\":1024", "\"memory\":8388608", "memory"),
        ("\"memory\":1024", "\"memory\":99999999999", "memory"),
        ("\"time\":4", "\"time\":4000000000", "time"),
        ("\"stripes\":4000", "\"stripes\":400000", "stripes"),
        (
            "\"key_size\":64,\"type\":\"luks2\"",
            "\"key_size\":4096,\"type\":\"luks2\"",
            "key size",
        ),
        (
            "\"iterations\":1000",
            "\"iterations\":4294967295",
            "iterations",
        ),
        ("\"cpus\":", "\"cpus\":100000,\"x\":", "parallelism"),
        (
            "\"sector_size\":4096",
            "\"sector_size\":3000",
            "sector size",
        ),
        (
            "\"offset\":\"2097152\"",
            "\"offset\":\"99999999999\"",
            "offset",
        ),
    ] {
        assert!(json.contains(from), "{from} in {json}");
        std::fs::write(&img.0, &pristine).unwrap();
        rewrite_luks2_json(&img, &json.replacen(from, to, 1));
        let e = LuksHeader::read(&disk_of(&img)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt, "{to}: {e}");
        assert!(e.message.contains(what), "{to}: {e}");
    }
    // Our rewriting itself is sound: the unchanged JSON still opens.
    std::fs::write(&img.0, &pristine).unwrap();
    rewrite_luks2_json(&img, &json);
    let dev = disk_of(&img);
    let h = LuksHeader::read(&dev).unwrap();
    assert_eq!(
        h.unlock(&dev, PASS.as_bytes(), None, &l).unwrap().bytes(),
        vk
    );

    // Memory the appliance cannot give: TooLarge stating the MiB needed.
    let tight = Limits {
        max_argon2_memory_kib: 512,
        ..Limits::default()
    };
    let e = h.unlock(&dev, PASS.as_bytes(), None, &tight).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    assert!(e.message.contains("needs 1 MiB"), "{e}");
}

#[test]
fn corrupted_luks1_headers() {
    let img = luks_format(
        4 << 20,
        &["--type", "luks1", "--pbkdf-force-iterations", "1000"],
    );
    let pristine = std::fs::read(&img.0).unwrap();
    let slot0 = 208u64;
    for (offset, bytes, what) in [
        (108u64, 1000u32.to_be_bytes(), "key size"),
        (108, 0u32.to_be_bytes(), "key size"),
        (slot0 + 44, 4001u32.to_be_bytes(), "stripes"),
        (slot0 + 4, u32::MAX.to_be_bytes(), "iterations"),
        (slot0 + 4, 0u32.to_be_bytes(), "iterations"),
        (164, u32::MAX.to_be_bytes(), "iterations"),
        (slot0 + 40, 1u32.to_be_bytes(), "overlaps"),
        (slot0 + 40, 4090u32.to_be_bytes(), "overlaps"),
        (slot0, 0x1234u32.to_be_bytes(), "state"),
        (104, 0xFFFF_FFF0u32.to_be_bytes(), "payload offset"),
    ] {
        std::fs::write(&img.0, &pristine).unwrap();
        patch(&img, offset, &bytes);
        let e = LuksHeader::read(&disk_of(&img)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt, "{offset}: {e}");
        assert!(e.message.contains(what), "{offset}: {e}");
    }
    // An unsupported cipher is named.
    std::fs::write(&img.0, &pristine).unwrap();
    patch(&img, 8, b"serpent\0");
    let e = LuksHeader::read(&disk_of(&img)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert!(e.message.contains("serpent-xts-plain64"), "{e}");
    // A detached header (payload offset 0) is refused by name.
    std::fs::write(&img.0, &pristine).unwrap();
    patch(&img, 104, &0u32.to_be_bytes());
    let e = LuksHeader::read(&disk_of(&img)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert!(e.message.contains("detached"), "{e}");
    // Damaged key material: the key does not verify, a clean refusal.
    std::fs::write(&img.0, &pristine).unwrap();
    patch(&img, 8 * 512 + 1000, b"garbage");
    let dev = disk_of(&img);
    let h = LuksHeader::read(&dev).unwrap();
    let e = h
        .unlock(&dev, PASS.as_bytes(), None, &Limits::default())
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::PermissionDenied);
}

#[test]
fn truncated_devices() {
    for ty in ["luks1", "luks2"] {
        let mut a = vec!["--type", ty];
        a.extend_from_slice(CHEAP_PBKDF2);
        if ty == "luks2" {
            a.extend_from_slice(SMALL_LUKS2);
        }
        let img = luks_format(4 << 20, &a);
        let data = std::fs::read(&img.0).unwrap();
        for len in [
            0,
            5,
            300,
            591,
            600,
            4096,
            20000,
            40000,
            100_000,
            2 << 20,
            3 << 20,
        ] {
            let dev = shared(MemDisk::new(data[..len].to_vec(), true));
            match open(dev, PASS.as_bytes(), None, &Limits::default()) {
                Ok((_, d)) => {
                    // Only possible once the whole header and key material are there.
                    assert!(len >= 2 << 20, "{ty} {len}");
                    assert_eq!(d.size(), len as u64 - (2 << 20));
                }
                Err(e) => assert!(
                    matches!(e.kind, ErrorKind::Corrupt | ErrorKind::InvalidArgument),
                    "{ty} {len}: {e}"
                ),
            }
        }
    }
}

// ---- payloads: encrypted by an independent implementation ----

/// Python with the `cryptography` package (OpenSSL's AES-XTS and AES-CBC).
fn python() -> &'static str {
    for p in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(p)
            .args(["-c", "import cryptography.hazmat.primitives.ciphers"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return p;
        }
    }
    panic!("python3 with the cryptography package is needed (Debian: python3-cryptography)");
}

/// dm-crypt's sector encryption, written independently in Python: every sector of
/// `sector_size` bytes gets IV number `iv0 + i * sector_size / 512`.
const DMCRYPT_PY: &str = r#"
import sys, hashlib
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
op, spec, keyhex, ss, iv0, src, dst = sys.argv[1:]
key = bytes.fromhex(keyhex); ss = int(ss); iv0 = int(iv0)
data = open(src, 'rb').read()
assert len(data) % ss == 0
_, mode, ivgen = spec.split('-', 2)
if ivgen.startswith('essiv:'):
    assert ivgen == 'essiv:sha256'
    essiv = Cipher(algorithms.AES(hashlib.sha256(key).digest()), modes.ECB()).encryptor()
out = bytearray()
for i in range(len(data) // ss):
    n = iv0 + i * (ss // 512)
    if ivgen == 'plain64':
        iv = n.to_bytes(8, 'little') + bytes(8)
    elif ivgen == 'plain':
        iv = (n & 0xffffffff).to_bytes(4, 'little') + bytes(12)
    else:
        iv = essiv.update(n.to_bytes(8, 'little') + bytes(8))
    m = modes.XTS(iv) if mode == 'xts' else modes.CBC(iv)
    c = Cipher(algorithms.AES(key), m)
    x = c.encryptor() if op == 'enc' else c.decryptor()
    out += x.update(data[i * ss:(i + 1) * ss]) + x.finalize()
open(dst, 'wb').write(out)
"#;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn dmcrypt_py(op: &str, spec: &str, key: &[u8], ss: u32, iv0: u64, data: &[u8]) -> Vec<u8> {
    let dir = TempDir::new("luks-py");
    let (src, dst) = (dir.0.join("in"), dir.0.join("out"));
    std::fs::write(&src, data).unwrap();
    run(
        python(),
        &[
            "-c",
            DMCRYPT_PY,
            op,
            spec,
            &hex(key),
            &ss.to_string(),
            &iv0.to_string(),
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
        ],
        None,
    );
    std::fs::read(dst).unwrap()
}

#[test]
fn sector_cipher_matches_openssl() {
    let key: Vec<u8> = (0..64u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let data: Vec<u8> = (0..16384u32).map(|i| (i * 7 + i / 13) as u8).collect();
    for (spec, klen, ss, iv0) in [
        ("aes-xts-plain64", 64, 512, 0u64),
        ("aes-xts-plain64", 32, 4096, 77),
        ("aes-xts-plain64", 64, 512, (1 << 32) + 5),
        ("aes-xts-plain", 64, 512, (1 << 32) - 3),
        ("aes-cbc-essiv:sha256", 32, 512, 9),
        ("aes-cbc-essiv:sha256", 16, 4096, 0),
        ("aes-cbc-plain64", 32, 1024, 3),
        ("aes-cbc-plain", 24, 512, (1 << 32) - 1),
    ] {
        let k = &key[..klen];
        let c = SectorCipher::new(&CipherSpec::parse(spec).unwrap(), k).unwrap();
        let mut ours = data.clone();
        c.encrypt(&mut ours, ss as usize, iv0, u64::from(ss / 512));
        let theirs = dmcrypt_py("enc", spec, k, ss, iv0, &data);
        assert!(
            ours == theirs,
            "{spec} {klen} {ss} {iv0}: encryption differs"
        );
        c.decrypt(&mut ours, ss as usize, iv0, u64::from(ss / 512));
        assert!(ours == data, "{spec}: decryption");
    }
}

/// A source tree for the payload filesystem.
fn source_tree(dir: &TempDir) -> Vec<(String, Vec<u8>)> {
    let files: Vec<(String, Vec<u8>)> = vec![
        ("hello.txt".into(), b"hello, encrypted world\n".to_vec()),
        (
            "dir/big.bin".into(),
            (0..300_000u32).map(|i| (i % 251) as u8).collect(),
        ),
        ("dir/sub/small".into(), b"small".to_vec()),
        ("odd-size".into(), vec![0x5a; 4097]),
    ];
    for (p, d) in &files {
        let p = dir.0.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, d).unwrap();
    }
    files
}

/// A writable in-memory copy of an image file, with a typed handle to read it back.
fn mem_disk(data: Vec<u8>) -> (Rc<RefCell<MemDisk>>, SharedDevice) {
    let m = Rc::new(RefCell::new(MemDisk::new(data, false)));
    let d: SharedDevice = m.clone();
    (m, d)
}

/// The full story for one format: cryptsetup makes the header, Python encrypts an ext4
/// image (made by mkfs.ext4 -d) into the payload with the dumped volume key; the
/// appliance opens it, lists it, reads every file; writes through it; Python decrypts
/// the result and e2fsck and debugfs check it.
fn payload_round_trip(args: &[&str], fs_block: &str) {
    let payload_len: u64 = 8 << 20;
    let img = luks_format(3 << 20, args);
    let dev = disk_of(&img);
    let h = LuksHeader::read(&dev).unwrap();
    let vk = dumped_volume_key(&img, PASS);
    let spec = h.segment.cipher.name().to_string();
    let ss = h.segment.sector_size;
    let offset = h.segment.offset;

    let dir = TempDir::new("luks-src");
    let files = source_tree(&dir);
    let plain = TempImage::new("luks-plain", payload_len);
    run(
        "mkfs.ext4",
        &["-q", "-F", "-b", fs_block, "-d", dir.path(), plain.path()],
        None,
    );
    let plain_bytes = std::fs::read(&plain.0).unwrap();
    let enc = dmcrypt_py("enc", &spec, &vk, ss, h.segment.iv_tweak, &plain_bytes);
    let mut whole = std::fs::read(&img.0).unwrap();
    whole.resize(offset as usize, 0);
    whole.extend_from_slice(&enc);

    let (mem, disk) = mem_disk(whole);
    let mut a = Appliance::new();
    a.set_disk(0, disk);
    let Reply::LuksInfo(info) = a.handle(Request::LuksInfo).unwrap() else {
        panic!()
    };
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].device, "/dev/sda");
    assert_eq!(info[0].uuid, h.uuid);
    assert_eq!(info[0].cipher, spec);
    assert_eq!(info[0].mapped, None);
    let Reply::Text(mapped) = a
        .handle(Request::LuksOpen {
            device: "/dev/sda".into(),
            key: Bytes(PASS.as_bytes().to_vec()),
            name: None,
        })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(mapped, format!("/dev/mapper/luks-{}", h.uuid));
    // Opening twice is refused.
    assert_eq!(
        a.handle(Request::LuksOpen {
            device: "/dev/sda".into(),
            key: Bytes(PASS.as_bytes().to_vec()),
            name: Some("other".into()),
        })
        .unwrap_err()
        .kind,
        ErrorKind::Busy
    );
    let Reply::Filesystems(fss) = a.handle(Request::Filesystems).unwrap() else {
        panic!()
    };
    assert_eq!(fss.len(), 2, "{fss:?}");
    assert_eq!(fss[0].device, "/dev/sda");
    assert_eq!(fss[0].fstype, "crypto_LUKS");
    assert_eq!(fss[0].uuid.as_deref(), Some(h.uuid.as_str()));
    assert_eq!(fss[1].device, mapped);
    assert_eq!(fss[1].fstype, "ext4");
    assert_eq!(fss[1].size, payload_len);
    let blkid_plain = crate::part::testutil::blkid(plain.path());
    assert_eq!(fss[1].uuid.as_ref(), blkid_plain.get("UUID"));

    a.handle(Request::Mount {
        device: mapped.clone(),
        mountpoint: "/".into(),
        readonly: false,
        fstype: None,
    })
    .unwrap();
    for (p, want) in &files {
        let mut got = Vec::new();
        loop {
            let Reply::Data(Bytes(d)) = a
                .handle(Request::Pread {
                    path: format!("/{p}"),
                    offset: got.len() as u64,
                    len: 65536,
                })
                .unwrap()
            else {
                panic!()
            };
            if d.is_empty() {
                break;
            }
            got.extend_from_slice(&d);
        }
        assert!(got == *want, "{p} differs");
    }
    // Close is refused while mounted.
    assert_eq!(
        a.handle(Request::LuksClose {
            name: mapped.clone()
        })
        .unwrap_err()
        .kind,
        ErrorKind::Busy
    );
    // Writes through the mapping.
    let new_data: Vec<u8> = (0..100_000u32).map(|i| (i * 3) as u8).collect();
    a.handle(Request::Mkdir {
        path: "/newdir".into(),
        parents: false,
        mode: 0o755,
    })
    .unwrap();
    a.handle(Request::WriteFile {
        path: "/newdir/new.bin".into(),
        offset: 0,
        data: Bytes(new_data.clone()),
        truncate: true,
        mode: 0o644,
    })
    .unwrap();
    a.handle(Request::Umount {
        mountpoint: "/".into(),
    })
    .unwrap();
    a.handle(Request::LuksClose {
        name: mapped.clone(),
    })
    .unwrap();
    assert_eq!(
        a.handle(Request::Mount {
            device: mapped.clone(),
            mountpoint: "/".into(),
            readonly: true,
            fstype: None,
        })
        .unwrap_err()
        .kind,
        ErrorKind::NotFound
    );
    a.handle(Request::Shutdown).unwrap();

    // The header is untouched; the payload decrypts (independently) to a clean ext4
    // holding the new file.
    let after = mem.borrow().data.clone();
    let before = std::fs::read(&img.0).unwrap();
    assert!(
        after[..offset as usize] == before[..offset as usize],
        "header changed"
    );
    let dec = dmcrypt_py(
        "dec",
        &spec,
        &vk,
        ss,
        h.segment.iv_tweak,
        &after[offset as usize..],
    );
    std::fs::write(&plain.0, &dec).unwrap();
    run("e2fsck", &["-fn", plain.path()], None);
    let dir2 = TempDir::new("luks-out");
    let out = dir2.0.join("new.bin");
    run(
        "debugfs",
        &[
            "-R",
            &format!("dump /newdir/new.bin {}", out.to_str().unwrap()),
            plain.path(),
        ],
        None,
    );
    assert!(std::fs::read(out).unwrap() == new_data);
}

#[test]
fn payload_luks1_xts() {
    payload_round_trip(
        &["--type", "luks1", "--pbkdf-force-iterations", "1000"],
        "4096",
    );
}

#[test]
fn payload_luks1_cbc_essiv() {
    payload_round_trip(
        &[
            "--type",
            "luks1",
            "--cipher",
            "aes-cbc-essiv:sha256",
            "--key-size",
            "256",
            "--pbkdf-force-iterations",
            "1000",
        ],
        "1024",
    );
}

#[test]
fn payload_luks2_sector_4096_with_1k_blocks() {
    // ext4 blocks smaller than the encryption sector: every write is a read-modify-write.
    let mut a = vec!["--type", "luks2", "--sector-size", "4096"];
    a.extend_from_slice(CHEAP_ARGON2ID);
    a.extend_from_slice(SMALL_LUKS2);
    payload_round_trip(&a, "1024");
}

#[test]
fn payload_luks2_sector_512() {
    let mut a = vec!["--type", "luks2", "--sector-size", "512"];
    a.extend_from_slice(CHEAP_PBKDF2);
    a.extend_from_slice(SMALL_LUKS2);
    payload_round_trip(&a, "4096");
}

/// Byte-level reads and writes at unaligned offsets agree with a plain model.
#[test]
fn unaligned_io() {
    let mut a = vec!["--type", "luks2", "--sector-size", "4096"];
    a.extend_from_slice(CHEAP_PBKDF2);
    a.extend_from_slice(SMALL_LUKS2);
    let img = luks_format(3 << 20, &a);
    let mut data = std::fs::read(&img.0).unwrap();
    data.resize((2 << 20) + 64 * 4096, 0);
    let (_, disk) = mem_disk(data);
    let (_, mut d) = open(disk, PASS.as_bytes(), None, &Limits::default()).unwrap();
    let size = d.size() as usize;
    assert_eq!(size, 64 * 4096);
    let mut model = vec![0u8; size];
    d.read_at(0, &mut model).unwrap();
    let mut seed = 12345u32;
    let mut rnd = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed as usize % n
    };
    for round in 0..200 {
        let off = rnd(size);
        let len = rnd((size - off).min(20_000)) + 1;
        let len = len.min(size - off);
        if round % 2 == 0 {
            let bytes: Vec<u8> = (0..len).map(|i| (i + round) as u8).collect();
            d.write_at(off as u64, &bytes).unwrap();
            model[off..off + len].copy_from_slice(&bytes);
        } else {
            let mut b = vec![0u8; len];
            d.read_at(off as u64, &mut b).unwrap();
            assert!(b == model[off..off + len], "read {off}+{len}");
        }
    }
    let mut all = vec![0u8; size];
    d.read_at(0, &mut all).unwrap();
    assert!(all == model);
    let mut b = [0u8; 2];
    assert!(d.read_at(size as u64 - 1, &mut b).is_err());
    assert!(d.write_at(u64::MAX, &b).is_err());
}

/// qemu's own LUKS implementation writes header and payload (`qemu-img convert -O luks`).
#[test]
fn qemu_img_luks() {
    let dir = TempDir::new("luks-qemu");
    let files = source_tree(&dir);
    let plain = TempImage::new("luks-qplain", 4 << 20);
    run(
        "mkfs.ext4",
        &["-q", "-F", "-d", dir.path(), plain.path()],
        None,
    );
    let out = TempImage::new("luks-qemu", 0);
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "luks",
            "--object",
            &format!("secret,id=s0,data={PASS}"),
            "-o",
            "key-secret=s0,iter-time=10",
            plain.path(),
            out.path(),
        ],
        None,
    );
    let dev = shared(MemDisk::new(std::fs::read(&out.0).unwrap(), true));
    let (h, mut d) = open(dev, PASS.as_bytes(), None, &Limits::default()).unwrap();
    assert_eq!(h.version, 1);
    assert_eq!(h.segment.cipher.name(), "aes-xts-plain64");
    let mut got = vec![0u8; 4 << 20];
    d.read_at(0, &mut got).unwrap();
    assert!(got == std::fs::read(&plain.0).unwrap());
    let mut a = Appliance::new();
    a.set_disk(
        0,
        shared(MemDisk::new(std::fs::read(&out.0).unwrap(), true)),
    );
    let Reply::Text(m) = a
        .handle(Request::LuksOpen {
            device: "/dev/sda".into(),
            key: Bytes(PASS.as_bytes().to_vec()),
            name: Some("root".into()),
        })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(m, "/dev/mapper/root");
    a.handle(Request::Mount {
        device: m,
        mountpoint: "/".into(),
        readonly: true,
        fstype: None,
    })
    .unwrap();
    let Reply::Data(Bytes(b)) = a
        .handle(Request::Pread {
            path: "/hello.txt".into(),
            offset: 0,
            len: 1000,
        })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(b, files[0].1);
}

/// LUKS on a GPT partition: found by LuksInfo, opened by partition name, listed after
/// the partitions; dropped with its disk.
#[test]
fn luks_in_a_partition() {
    let mut a = vec!["--type", "luks2"];
    a.extend_from_slice(CHEAP_ARGON2ID);
    a.extend_from_slice(SMALL_LUKS2);
    let luks = luks_format(3 << 20, &a);
    let luks_bytes = std::fs::read(&luks.0).unwrap();
    let disk = TempImage::new("luks-gpt", 8 << 20);
    run(
        "sfdisk",
        &["-q", disk.path()],
        Some("label: gpt\nstart=2048, size=4096\nstart=8192, size=6144\n"),
    );
    patch(&disk, 8192 * 512, &luks_bytes);
    let mut app = Appliance::new();
    app.set_disk(1, disk.disk());
    let Reply::LuksInfo(info) = app.handle(Request::LuksInfo).unwrap() else {
        panic!()
    };
    assert_eq!(info.len(), 1);
    let v = &info[0];
    assert_eq!(v.device, "/dev/sdb2");
    assert_eq!(v.version, 2);
    assert_eq!(v.key_bits, 512);
    assert_eq!(v.sector_size, 4096);
    assert_eq!(v.keyslots.len(), 1);
    assert_eq!(v.keyslots[0].kdf, "argon2id");
    assert_eq!(v.keyslots[0].memory_kib, 1024);
    assert_eq!(v.keyslots[0].iterations, 4);
    assert_eq!(v.required_memory, 2 << 20);
    let f = dump_fields(&luks);
    assert_eq!(&v.uuid, f.get("UUID").unwrap());
    // Too little memory for the keyslot: a clear TooLarge.
    app.set_luks_limits(Limits {
        max_argon2_memory_kib: 100,
        ..Limits::default()
    });
    let e = app
        .handle(Request::LuksOpen {
            device: "/dev/sdb2".into(),
            key: Bytes(PASS.as_bytes().to_vec()),
            name: None,
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    assert!(
        e.message.contains("/dev/sdb2") && e.message.contains("1 MiB"),
        "{e}"
    );
    app.set_luks_limits(Limits::default());
    let Reply::Text(m) = app
        .handle(Request::LuksOpen {
            device: "/dev/sdb2".into(),
            key: Bytes(PASS.as_bytes().to_vec()),
            name: Some("/dev/mapper/cr".into()),
        })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(m, "/dev/mapper/cr");
    let Reply::Filesystems(fss) = app.handle(Request::Filesystems).unwrap() else {
        panic!()
    };
    let names: Vec<&str> = fss.iter().map(|f| f.device.as_str()).collect();
    assert_eq!(names, ["/dev/sdb1", "/dev/sdb2", "/dev/mapper/cr"]);
    assert_eq!(fss[1].fstype, "crypto_LUKS");
    assert_eq!(fss[2].size, (3 << 20) - (2 << 20));
    let Reply::LuksInfo(info) = app.handle(Request::LuksInfo).unwrap() else {
        panic!()
    };
    assert_eq!(info[0].mapped.as_deref(), Some("/dev/mapper/cr"));
    let Reply::Data(Bytes(b)) = app
        .handle(Request::PreadDevice {
            device: m.clone(),
            offset: 0,
            len: 4096,
        })
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(b.len(), 4096);
    app.remove_disk(1);
    assert_eq!(app.device(&m).err().unwrap().kind, ErrorKind::NotFound);
    assert_eq!(
        app.handle(Request::LuksClose { name: "cr".into() })
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
}

/// cryptsetup itself encrypts a plaintext ext4 image in userspace (offline LUKS2
/// encryption, no device-mapper): its payload is the oracle for dm-crypt's sector and
/// IV conventions (4096-byte sectors count IVs in 512-byte units).
#[test]
fn cryptsetup_offline_encryption() {
    let dir = TempDir::new("luks-offline");
    let files = source_tree(&dir);
    for (ss, cipher) in [
        ("4096", "aes-xts-plain64"),
        ("512", "aes-xts-plain64"),
        ("512", "aes-cbc-essiv:sha256"),
        ("2048", "aes-xts-plain"),
    ] {
        let fs_len: u64 = 6 << 20;
        let img = TempImage::new("luks-offline", fs_len + (4 << 20));
        run(
            "mkfs.ext4",
            &["-q", "-F", "-b", "4096", "-d", dir.path(), img.path(), "6M"],
            None,
        );
        let plain = std::fs::read(&img.0).unwrap()[..fs_len as usize].to_vec();
        let key_size = if cipher.contains("cbc") { "256" } else { "512" };
        let mut a = vec![
            "reencrypt",
            "--encrypt",
            "--batch-mode",
            "--key-file=-",
            "--type",
            "luks2",
            "--reduce-device-size",
            "4M",
            "--force-offline-reencrypt",
            "--sector-size",
            ss,
            "--cipher",
            cipher,
            "--key-size",
            key_size,
        ];
        a.extend_from_slice(CHEAP_PBKDF2);
        a.extend_from_slice(SMALL_LUKS2);
        a.push(img.path());
        run("cryptsetup", &a, Some(PASS));
        let (h, mut d) = open(disk_of(&img), PASS.as_bytes(), None, &Limits::default()).unwrap();
        check_luks2_against_json(&h, &img);
        assert_eq!(h.segment.sector_size.to_string(), ss);
        assert_eq!(h.segment.cipher.name(), cipher);
        let mut got = vec![0u8; fs_len as usize];
        d.read_at(0, &mut got).unwrap();
        assert!(
            got == plain,
            "{ss} {cipher}: payload differs from the plaintext"
        );
        let mut a = Appliance::new();
        a.set_disk(0, img.disk());
        let Reply::Text(m) = a
            .handle(Request::LuksOpen {
                device: "/dev/sda".into(),
                key: Bytes(PASS.as_bytes().to_vec()),
                name: None,
            })
            .unwrap()
        else {
            panic!()
        };
        a.handle(Request::Mount {
            device: m,
            mountpoint: "/".into(),
            readonly: true,
            fstype: None,
        })
        .unwrap();
        let Reply::Data(Bytes(b)) = a
            .handle(Request::Pread {
                path: "/dir/big.bin".into(),
                offset: 0,
                len: 1 << 20,
            })
            .unwrap()
        else {
            panic!()
        };
        assert!(b == files[1].1);
    }
}
