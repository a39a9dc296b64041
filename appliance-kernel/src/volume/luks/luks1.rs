//! The LUKS1 header (cryptsetup's "LUKS On-Disk Format Specification", version 1.2.3):
//! 592 big-endian bytes at offset 0, eight fixed keyslots.

use super::crypto::{AF_STRIPES, Hash, Kdf, printable};
use super::{CipherSpec, KeyDigest, Keyslot, LuksHeader, MAX_KEY_BYTES, Segment, err, read_bytes};
use crate::block::SharedDevice;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

const HEADER_LEN: usize = 592;
const KEYSLOT_ENABLED: u32 = 0x00AC_71F3;
const KEYSLOT_DISABLED: u32 = 0x0000_DEAD;
const DIGEST_LEN: usize = 20;
const SALT_LEN: usize = 32;

fn be32(b: &[u8], off: usize) -> Result<u32, Error> {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| err(ErrorKind::Corrupt, "LUKS1 header is truncated"))
}

/// A NUL-terminated text field; `Corrupt` naming it when not ASCII.
fn text(b: &[u8], off: usize, len: usize, what: &str) -> Result<String, Error> {
    let f = b
        .get(off..off + len)
        .ok_or_else(|| err(ErrorKind::Corrupt, "LUKS1 header is truncated"))?;
    let end = f.iter().position(|&c| c == 0).unwrap_or(f.len());
    let s = f.get(..end).unwrap_or_default();
    if !s.iter().all(|c| c.is_ascii_graphic()) {
        return Err(err(
            ErrorKind::Corrupt,
            format!("LUKS1 header: {what} is not printable ASCII"),
        ));
    }
    Ok(s.iter().map(|&c| char::from(c)).collect())
}

fn field(b: &[u8], off: usize, len: usize) -> Result<&[u8], Error> {
    b.get(off..off + len)
        .ok_or_else(|| err(ErrorKind::Corrupt, "LUKS1 header is truncated"))
}

pub fn read(dev: &SharedDevice) -> Result<LuksHeader, Error> {
    let b = read_bytes(dev, 0, HEADER_LEN, "LUKS1 header")?;
    parse(&b)
}

/// Parses the 592-byte header. Inactive keyslots are ignored; active ones must have
/// sane values (stripes, iterations, offsets), else the header is `Corrupt`.
pub fn parse(b: &[u8]) -> Result<LuksHeader, Error> {
    let cipher_name = text(b, 8, 32, "cipher name")?;
    let cipher_mode = text(b, 40, 32, "cipher mode")?;
    let hash_spec = text(b, 72, 32, "hash spec")?;
    let payload_offset = u64::from(be32(b, 104)?) * 512;
    let key_bytes = be32(b, 108)? as usize;
    let mk_digest = field(b, 112, DIGEST_LEN)?.to_vec();
    let mk_salt = field(b, 132, SALT_LEN)?.to_vec();
    let mk_iter = be32(b, 164)?;
    let uuid = text(b, 168, 40, "UUID")?;

    let hash = Hash::parse(&hash_spec).map_err(|e| err(e.kind, format!("LUKS1: {}", e.message)))?;
    let spec = format!("{cipher_name}-{cipher_mode}");
    let cipher =
        CipherSpec::parse(&spec).map_err(|e| err(e.kind, format!("LUKS1: {}", e.message)))?;
    if key_bytes == 0 || key_bytes > MAX_KEY_BYTES {
        return Err(err(
            ErrorKind::Corrupt,
            format!("LUKS1 header: key size {key_bytes} bytes is invalid"),
        ));
    }
    cipher
        .check_key_size(key_bytes)
        .map_err(|e| err(e.kind, format!("LUKS1 header: {}", e.message)))?;

    let mut keyslots = Vec::new();
    for i in 0..8u32 {
        let base = 208 + 48 * i as usize;
        let active = be32(b, base)?;
        match active {
            KEYSLOT_ENABLED => {}
            KEYSLOT_DISABLED => continue,
            other => {
                return Err(err(
                    ErrorKind::Corrupt,
                    format!("LUKS1 keyslot {i}: bad state {other:#x}"),
                ));
            }
        }
        let iterations = be32(b, base + 4)?;
        let salt = field(b, base + 8, SALT_LEN)?.to_vec();
        let area_offset = u64::from(be32(b, base + 40)?) * 512;
        let stripes = be32(b, base + 44)?;
        if stripes != AF_STRIPES {
            return Err(err(
                ErrorKind::Corrupt,
                format!(
                    "LUKS1 keyslot {i}: {stripes} anti-forensic stripes (LUKS uses {AF_STRIPES})"
                ),
            ));
        }
        let k = Keyslot {
            id: i,
            key_size: key_bytes,
            kdf: Kdf::Pbkdf2 {
                hash,
                iterations,
                salt,
            },
            af_hash: hash,
            stripes,
            area_offset,
            area_size: 0,
            area_cipher: cipher.clone(),
            area_key_size: key_bytes,
            priority: 1,
        };
        let len = k.material_len()? as u64;
        // The key material lies between the header and the payload (when the payload
        // is on this device at all: a detached header has offset 0).
        let end = area_offset.saturating_add(len);
        if area_offset < HEADER_LEN as u64 || (payload_offset != 0 && end > payload_offset) {
            return Err(err(
                ErrorKind::Corrupt,
                format!(
                    "LUKS1 keyslot {i}: key material at {area_offset} overlaps the header or the payload"
                ),
            ));
        }
        keyslots.push(Keyslot {
            area_size: len,
            ..k
        });
    }
    let digests = alloc::vec![KeyDigest {
        keyslots: keyslots.iter().map(|k| k.id).collect(),
        hash,
        iterations: mk_iter,
        salt: mk_salt,
        digest: mk_digest,
    }];
    Ok(LuksHeader {
        version: 1,
        uuid: printable(&uuid),
        label: None,
        segment: Segment {
            offset: payload_offset,
            size: None,
            iv_tweak: 0,
            cipher,
            sector_size: 512,
        },
        keyslots,
        digests,
    })
}
