//! LUKS1 and LUKS2 (cryptsetup's on-disk formats): header parsing, unlocking with a
//! passphrase and [`LuksDevice`], the decrypted view of the payload as a block device.
//!
//! Both header versions are read into one model ([`LuksHeader`]): the payload segment,
//! the keyslots (each: KDF, anti-forensic split, encrypted key-material area) and the
//! digests that recognise the right volume key. Every field comes from a hostile disk:
//! sizes, offsets and KDF parameters are bounded before anything is allocated or derived.
//!
//! Unlocking ([`LuksHeader::unlock`]): for each usable keyslot, derive a key from the
//! passphrase (PBKDF2 or Argon2i/id), decrypt the key material, merge the AF stripes,
//! and keep the result if its PBKDF2 digest matches. Keys and passphrases live in
//! zeroizing buffers.

mod cipher;
mod crypto;
mod device;
mod json;
mod luks1;
mod luks2;
#[cfg(test)]
pub(crate) mod tests;

pub use cipher::{CipherSpec, SectorCipher};
pub use crypto::{Hash, Kdf};
pub use device::LuksDevice;

use crate::block::SharedDevice;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use wire::{Error, ErrorKind};
use zeroize::Zeroizing;

pub(crate) fn err(kind: ErrorKind, msg: impl Into<String>) -> Error {
    Error::new(kind, msg)
}

/// The LUKS magic at offset 0 (and LUKS2's secondary header magic).
pub const MAGIC: &[u8; 6] = b"LUKS\xba\xbe";
pub const MAGIC_SECONDARY: &[u8; 6] = b"SKUL\xba\xbe";

/// Largest volume key: 512 bits (AES-256-XTS).
pub const MAX_KEY_BYTES: usize = 64;

/// How much work an unlock may do. The defaults are the hard bounds (beyond them a
/// header is corrupt); an embedder or a test can tighten them, and a keyslot over a
/// tightened limit fails with `TooLarge` before any work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_pbkdf2_iterations: u32,
    pub max_argon2_time: u32,
    pub max_argon2_memory_kib: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pbkdf2_iterations: crypto::MAX_PBKDF2_ITERATIONS,
            max_argon2_time: crypto::MAX_ARGON2_TIME,
            max_argon2_memory_kib: u64::from(crypto::MAX_ARGON2_MEMORY_KIB),
        }
    }
}

/// The encrypted payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Byte offset on the device.
    pub offset: u64,
    /// Bytes, or `None` for "to the end of the device".
    pub size: Option<u64>,
    /// Added to every sector's IV number (in 512-byte units).
    pub iv_tweak: u64,
    pub cipher: CipherSpec,
    /// Encryption sector size: 512, 1024, 2048 or 4096.
    pub sector_size: u32,
}

/// One active keyslot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyslot {
    pub id: u32,
    /// Bytes of the volume key this slot holds.
    pub key_size: usize,
    pub kdf: Kdf,
    pub af_hash: Hash,
    pub stripes: u32,
    /// Byte offset and size of the encrypted key material.
    pub area_offset: u64,
    pub area_size: u64,
    /// How the key material is encrypted (512-byte sectors, IVs from 0).
    pub area_cipher: CipherSpec,
    /// Bytes the KDF derives (the area cipher's key).
    pub area_key_size: usize,
    /// 0 ignore (only used when named), 1 normal, 2 preferred.
    pub priority: u32,
}

impl Keyslot {
    /// Bytes of key material: `key_size * stripes` rounded up to 512-byte sectors.
    pub fn material_len(&self) -> Result<usize, Error> {
        let n = self
            .key_size
            .checked_mul(self.stripes as usize)
            .and_then(|n| n.checked_next_multiple_of(512))
            .ok_or_else(|| err(ErrorKind::Corrupt, "key material size overflows"))?;
        Ok(n)
    }

    /// Checks the bounds every keyslot must respect; `Corrupt` naming the keyslot.
    fn validate(&self, version: u16) -> Result<(), Error> {
        let what = |m: String| err(ErrorKind::Corrupt, format!("keyslot {}: {m}", self.id));
        self.kdf.validate().map_err(|e| what(e.message))?;
        if self.key_size == 0 || self.key_size > MAX_KEY_BYTES {
            return Err(what(format!("key size {} bytes is invalid", self.key_size)));
        }
        if self.stripes != crypto::AF_STRIPES {
            return Err(what(format!(
                "{} anti-forensic stripes (LUKS uses {})",
                self.stripes,
                crypto::AF_STRIPES
            )));
        }
        self.area_cipher
            .check_key_size(self.area_key_size)
            .map_err(|e| what(e.message))?;
        let len = self.material_len().map_err(|e| what(e.message))? as u64;
        if len > self.area_size {
            return Err(what(format!(
                "key material ({len} bytes) is larger than its area ({} bytes)",
                self.area_size
            )));
        }
        if version == 1 && self.priority != 1 {
            return Err(what(String::from("bad priority")));
        }
        Ok(())
    }
}

/// A PBKDF2 digest of the volume key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDigest {
    /// The keyslots whose key this digest checks.
    pub keyslots: Vec<u32>,
    pub hash: Hash,
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub digest: Vec<u8>,
}

/// A parsed LUKS1 or LUKS2 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuksHeader {
    pub version: u16,
    pub uuid: String,
    /// LUKS2's label.
    pub label: Option<String>,
    pub segment: Segment,
    /// Active keyslots, in slot order.
    pub keyslots: Vec<Keyslot>,
    pub digests: Vec<KeyDigest>,
}

/// The volume (master) key. Zeroized on drop; its `Debug` shows only its length.
pub struct VolumeKey(Zeroizing<Vec<u8>>);

impl VolumeKey {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for VolumeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VolumeKey({} bytes)", self.0.len())
    }
}

/// `len` bytes at `offset` of `dev`; an error naming `what` when out of range.
fn read_bytes(dev: &SharedDevice, offset: u64, len: usize, what: &str) -> Result<Vec<u8>, Error> {
    let mut d = dev
        .try_borrow_mut()
        .map_err(|_| err(ErrorKind::Busy, "device is in use"))?;
    let end = offset.checked_add(len as u64);
    if end.is_none_or(|e| e > d.size()) {
        return Err(err(
            ErrorKind::Corrupt,
            format!(
                "{what} ({len} bytes at {offset}) lies past the end of the device ({} bytes)",
                d.size()
            ),
        ));
    }
    let mut buf = vec![0u8; len];
    d.read_at(offset, &mut buf)?;
    Ok(buf)
}

/// True when `dev` carries a LUKS header: the magic at 0, or a LUKS2 secondary header
/// (the primary may be wiped).
pub fn is_luks(dev: &SharedDevice) -> bool {
    read_bytes(dev, 0, 8, "magic").is_ok_and(|b| b.get(..6) == Some(&MAGIC[..]))
        || luks2::has_secondary(dev)
}

impl LuksHeader {
    /// Reads and validates the header of `dev`. LUKS2 falls back to its secondary header
    /// copy when the primary is damaged. Not a LUKS device: `InvalidArgument`.
    pub fn read(dev: &SharedDevice) -> Result<LuksHeader, Error> {
        let size = dev.borrow().size();
        let start = read_bytes(dev, 0, 8, "LUKS header").ok();
        let magic = start.as_ref().and_then(|b| b.get(..6));
        let version = start
            .as_ref()
            .and_then(|b| Some(u16::from_be_bytes([*b.get(6)?, *b.get(7)?])));
        let h = if magic == Some(&MAGIC[..]) && version == Some(1) {
            luks1::read(dev)?
        } else if magic == Some(&MAGIC[..]) || luks2::has_secondary(dev) {
            luks2::read(dev)?
        } else {
            return Err(err(ErrorKind::InvalidArgument, "not a LUKS device"));
        };
        h.validate(size)?;
        Ok(h)
    }

    /// Checks what both versions share: the segment inside the device, keyslot bounds.
    fn validate(&self, dev_size: u64) -> Result<(), Error> {
        let s = &self.segment;
        if !matches!(s.sector_size, 512 | 1024 | 2048 | 4096) {
            return Err(err(
                ErrorKind::Corrupt,
                format!("segment sector size {} is invalid", s.sector_size),
            ));
        }
        if s.offset == 0 {
            return Err(err(
                ErrorKind::Unsupported,
                "detached LUKS headers (payload offset 0) are not supported",
            ));
        }
        if !s.offset.is_multiple_of(512) {
            return Err(err(
                ErrorKind::Corrupt,
                format!("payload offset {} is not sector aligned", s.offset),
            ));
        }
        if s.offset > dev_size {
            return Err(err(
                ErrorKind::Corrupt,
                format!(
                    "payload offset {} is past the end of the device ({dev_size} bytes)",
                    s.offset
                ),
            ));
        }
        if let Some(n) = s.size
            && s.offset.checked_add(n).is_none_or(|e| e > dev_size)
        {
            return Err(err(
                ErrorKind::Corrupt,
                format!(
                    "payload ({n} bytes at {}) extends past the end of the device",
                    s.offset
                ),
            ));
        }
        for k in &self.keyslots {
            k.validate(self.version)?;
        }
        for d in &self.digests {
            crypto::Kdf::Pbkdf2 {
                hash: d.hash,
                iterations: d.iterations,
                salt: d.salt.clone(),
            }
            .validate()
            .map_err(|e| err(ErrorKind::Corrupt, format!("digest: {}", e.message)))?;
            if d.digest.is_empty() || d.digest.len() > 64 {
                return Err(err(ErrorKind::Corrupt, "digest has a bad length"));
            }
        }
        Ok(())
    }

    /// The segment's volume key size in bytes (from the keyslots bound to it).
    pub fn key_size(&self) -> Option<usize> {
        self.keyslots
            .iter()
            .find(|k| self.digest_for(k.id).is_some())
            .map(|k| k.key_size)
    }

    fn digest_for(&self, slot: u32) -> Option<&KeyDigest> {
        self.digests.iter().find(|d| d.keyslots.contains(&slot))
    }

    /// Bytes of memory an unlock needs at most: the largest Argon2 keyslot's memory plus
    /// a margin for the key material and working buffers. The host sizes the appliance
    /// with this.
    pub fn required_memory_bytes(&self) -> u64 {
        let kdf = self
            .keyslots
            .iter()
            .map(|k| k.kdf.memory_bytes())
            .max()
            .unwrap_or(0);
        kdf.saturating_add(1 << 20)
    }

    /// The payload size in bytes on a device of `dev_size` bytes: a whole number of
    /// encryption sectors.
    pub fn payload_size(&self, dev_size: u64) -> u64 {
        let s = &self.segment;
        let n = s.size.unwrap_or_else(|| dev_size.saturating_sub(s.offset));
        n - n % u64::from(s.sector_size.max(1))
    }

    /// Finds the volume key for `passphrase`: the named keyslot only, or every usable
    /// keyslot in priority order. No keyslot opens: `PermissionDenied` (or `TooLarge`
    /// when a keyslot could not be tried for lack of memory).
    pub fn unlock(
        &self,
        dev: &SharedDevice,
        passphrase: &[u8],
        keyslot: Option<u32>,
        limits: &Limits,
    ) -> Result<VolumeKey, Error> {
        let slots: Vec<&Keyslot> = match keyslot {
            Some(n) => {
                let k = self.keyslots.iter().find(|k| k.id == n).ok_or_else(|| {
                    err(ErrorKind::NotFound, format!("keyslot {n} is not active"))
                })?;
                vec![k]
            }
            None => {
                let mut v: Vec<&Keyslot> =
                    self.keyslots.iter().filter(|k| k.priority > 0).collect();
                v.sort_by_key(|k| core::cmp::Reverse(k.priority));
                v
            }
        };
        let mut too_large: Option<Error> = None;
        let mut skipped: Vec<String> = Vec::new();
        let mut tried = false;
        for k in slots {
            match self.try_keyslot(dev, k, passphrase, limits) {
                Ok(Some(key)) => return Ok(key),
                Ok(None) => tried = true,
                Err(e) if e.kind == ErrorKind::TooLarge => {
                    too_large
                        .get_or_insert(err(e.kind, format!("keyslot {}: {}", k.id, e.message)));
                }
                Err(e) => skipped.push(format!("keyslot {}: {}", k.id, e.message)),
            }
        }
        if let Some(e) = too_large {
            return Err(e);
        }
        if !tried && !skipped.is_empty() {
            // No keyslot could even be tried: the header is the problem, not the key.
            return Err(err(ErrorKind::Corrupt, skipped.join("; ")));
        }
        let mut msg = String::from("no key available with this passphrase");
        if !skipped.is_empty() {
            msg.push_str(" (");
            msg.push_str(&skipped.join("; "));
            msg.push(')');
        }
        Err(err(ErrorKind::PermissionDenied, msg))
    }

    /// One keyslot: `Ok(None)` when the passphrase does not open it.
    fn try_keyslot(
        &self,
        dev: &SharedDevice,
        k: &Keyslot,
        passphrase: &[u8],
        limits: &Limits,
    ) -> Result<Option<VolumeKey>, Error> {
        let digest = self
            .digest_for(k.id)
            .ok_or_else(|| err(ErrorKind::Corrupt, "no digest checks this keyslot"))?;
        crypto::check_iterations(digest.iterations, limits)?;
        let len = k.material_len()?;
        // Read before deriving: a keyslot whose area is unreadable costs no KDF run.
        let mut material = Zeroizing::new(read_bytes(dev, k.area_offset, len, "key material")?);
        let mut derived = Zeroizing::new(vec![0u8; k.area_key_size]);
        k.kdf.derive(passphrase, &mut derived, limits)?;
        let c = SectorCipher::new(&k.area_cipher, &derived)?;
        c.decrypt(&mut material, 512, 0, 1);
        let mut key = Zeroizing::new(vec![0u8; k.key_size]);
        crypto::af_merge(&material, k.stripes, k.af_hash, &mut key)?;
        let mut check = Zeroizing::new(vec![0u8; digest.digest.len()]);
        digest
            .hash
            .pbkdf2(&key, &digest.salt, digest.iterations, &mut check);
        if crypto::ct_eq(&check, &digest.digest) {
            Ok(Some(VolumeKey(key)))
        } else {
            Ok(None)
        }
    }

    /// The header as [`wire::LuksVolume`] for `device` (without `mapped`).
    pub fn info(&self, device: &str) -> wire::LuksVolume {
        wire::LuksVolume {
            device: String::from(device),
            uuid: self.uuid.clone(),
            version: u32::from(self.version),
            label: self.label.clone(),
            cipher: String::from(self.segment.cipher.name()),
            key_bits: self.key_size().map_or(0, |n| (n * 8) as u32),
            sector_size: self.segment.sector_size,
            payload_offset: self.segment.offset,
            keyslots: self
                .keyslots
                .iter()
                .map(|k| {
                    let (hash, iterations, memory_kib, parallel) = match &k.kdf {
                        Kdf::Pbkdf2 {
                            hash, iterations, ..
                        } => (Some(String::from(hash.name())), *iterations, 0, 1),
                        Kdf::Argon2 {
                            time, memory, cpus, ..
                        } => (None, *time, *memory, *cpus),
                    };
                    wire::LuksKeyslot {
                        slot: k.id,
                        kdf: String::from(k.kdf.name()),
                        hash,
                        iterations,
                        memory_kib,
                        parallel,
                        priority: k.priority,
                    }
                })
                .collect(),
            required_memory: self.required_memory_bytes(),
            mapped: None,
            error: None,
        }
    }
}

/// Opens `dev` with `passphrase`: header, unlock, decrypted device. The common path for
/// the RPC layer and the tests.
pub fn open(
    dev: SharedDevice,
    passphrase: &[u8],
    keyslot: Option<u32>,
    limits: &Limits,
) -> Result<(LuksHeader, LuksDevice), Error> {
    let h = LuksHeader::read(&dev)?;
    let key = h.unlock(&dev, passphrase, keyslot, limits)?;
    let d = LuksDevice::new(dev, &h, &key)?;
    Ok((h, d))
}

/// Fuzzing entry point: the LUKS2 JSON metadata parser and its validation, without the
/// binary header's checksum in the way.
#[doc(hidden)]
pub fn fuzz_luks2_json(json: &[u8], dev_size: u64) -> Result<(), Error> {
    let h = luks2::from_json(json, 16384, String::new(), None)?;
    h.validate(dev_size)
}
