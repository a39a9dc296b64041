//! Hashes, key derivation (PBKDF2, Argon2i/id) and the anti-forensic splitter's merge,
//! over RustCrypto's no_std crates.

use super::{Limits, err};
use alloc::format;
use alloc::vec::Vec;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use wire::{Error, ErrorKind};
use zeroize::{Zeroize, Zeroizing};

/// The hashes LUKS headers name (`hash-spec`, `af.hash`, `kdf.hash`, `digests.hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// The hash named `name` (cryptsetup's spelling); `Unsupported` naming it otherwise.
    pub fn parse(name: &str) -> Result<Hash, Error> {
        match name {
            "sha1" => Ok(Hash::Sha1),
            "sha256" => Ok(Hash::Sha256),
            "sha384" => Ok(Hash::Sha384),
            "sha512" => Ok(Hash::Sha512),
            other => Err(err(
                ErrorKind::Unsupported,
                format!("hash {:?} is not supported", printable(other)),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Hash::Sha1 => "sha1",
            Hash::Sha256 => "sha256",
            Hash::Sha384 => "sha384",
            Hash::Sha512 => "sha512",
        }
    }

    /// Output size in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// The hash of the concatenation of `parts`, written to the start of `out` (which
    /// must hold [`Hash::len`] bytes; a shorter `out` gets a truncated hash).
    pub fn digest_into(self, parts: &[&[u8]], out: &mut [u8]) {
        fn run<D: Digest>(parts: &[&[u8]], out: &mut [u8]) {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            let h = d.finalize();
            let n = out.len().min(h.len());
            if let (Some(o), Some(h)) = (out.get_mut(..n), h.get(..n)) {
                o.copy_from_slice(h);
            }
        }
        match self {
            Hash::Sha1 => run::<Sha1>(parts, out),
            Hash::Sha256 => run::<Sha256>(parts, out),
            Hash::Sha384 => run::<Sha384>(parts, out),
            Hash::Sha512 => run::<Sha512>(parts, out),
        }
    }

    /// PBKDF2-HMAC with this hash.
    pub fn pbkdf2(self, password: &[u8], salt: &[u8], rounds: u32, out: &mut [u8]) {
        use pbkdf2::pbkdf2_hmac;
        match self {
            Hash::Sha1 => pbkdf2_hmac::<Sha1>(password, salt, rounds, out),
            Hash::Sha256 => pbkdf2_hmac::<Sha256>(password, salt, rounds, out),
            Hash::Sha384 => pbkdf2_hmac::<Sha384>(password, salt, rounds, out),
            Hash::Sha512 => pbkdf2_hmac::<Sha512>(password, salt, rounds, out),
        }
    }
}

/// A header string for an error message: at most 40 characters, control characters
/// replaced (the header is hostile and messages end up in terminals).
pub fn printable(s: &str) -> alloc::string::String {
    s.chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// How a keyslot turns a passphrase into the key that decrypts its key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kdf {
    Pbkdf2 {
        hash: Hash,
        iterations: u32,
        salt: Vec<u8>,
    },
    Argon2 {
        /// true: Argon2id, false: Argon2i.
        id: bool,
        /// Passes over memory.
        time: u32,
        /// KiB.
        memory: u32,
        /// Lanes.
        cpus: u32,
        salt: Vec<u8>,
    },
}

/// Hard bounds on KDF parameters: beyond these a header is corrupt (cryptsetup never
/// writes them), checked when it is parsed, before anything is allocated.
pub const MAX_PBKDF2_ITERATIONS: u32 = 100_000_000;
pub const MAX_ARGON2_TIME: u32 = 1000;
/// 4 GiB, cryptsetup's own ceiling.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 4 << 20;
pub const MAX_ARGON2_CPUS: u32 = 64;

impl Kdf {
    pub fn name(&self) -> &'static str {
        match self {
            Kdf::Pbkdf2 { .. } => "pbkdf2",
            Kdf::Argon2 { id: true, .. } => "argon2id",
            Kdf::Argon2 { id: false, .. } => "argon2i",
        }
    }

    /// Checks the parameters against the hard bounds; `Corrupt` naming what is wrong.
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            Kdf::Pbkdf2 {
                iterations, salt, ..
            } => {
                if *iterations == 0 || *iterations > MAX_PBKDF2_ITERATIONS {
                    return Err(err(
                        ErrorKind::Corrupt,
                        format!("pbkdf2 iterations {iterations} out of range"),
                    ));
                }
                if salt.is_empty() {
                    return Err(err(ErrorKind::Corrupt, "pbkdf2 salt is empty"));
                }
            }
            Kdf::Argon2 {
                time,
                memory,
                cpus,
                salt,
                ..
            } => {
                if *time == 0 || *time > MAX_ARGON2_TIME {
                    return Err(err(
                        ErrorKind::Corrupt,
                        format!("argon2 time cost {time} out of range"),
                    ));
                }
                if *memory > MAX_ARGON2_MEMORY_KIB {
                    return Err(err(
                        ErrorKind::Corrupt,
                        format!("argon2 memory {memory} KiB exceeds the 4 GiB limit"),
                    ));
                }
                if *cpus == 0 || *cpus > MAX_ARGON2_CPUS {
                    return Err(err(
                        ErrorKind::Corrupt,
                        format!("argon2 parallelism {cpus} out of range"),
                    ));
                }
                if u64::from(*memory) < 8 * u64::from(*cpus) {
                    return Err(err(
                        ErrorKind::Corrupt,
                        format!("argon2 memory {memory} KiB is below 8 KiB per lane"),
                    ));
                }
                if salt.len() < 8 {
                    return Err(err(ErrorKind::Corrupt, "argon2 salt shorter than 8 bytes"));
                }
            }
        }
        Ok(())
    }

    /// Bytes the derivation allocates (Argon2's memory; PBKDF2 needs none to speak of).
    pub fn memory_bytes(&self) -> u64 {
        match self {
            Kdf::Pbkdf2 { .. } => 0,
            Kdf::Argon2 { memory, .. } => u64::from(*memory) * 1024,
        }
    }

    /// Derives `out.len()` bytes from `password`. Parameters must have passed
    /// [`Kdf::validate`]; `limits` may be tighter (then `TooLarge`, before any work).
    /// The Argon2 memory is allocated fallibly: when the heap cannot hold it the error
    /// is `TooLarge` stating the MiB needed.
    pub fn derive(&self, password: &[u8], out: &mut [u8], limits: &Limits) -> Result<(), Error> {
        self.validate()?;
        match self {
            Kdf::Pbkdf2 {
                hash,
                iterations,
                salt,
            } => {
                check_iterations(*iterations, limits)?;
                hash.pbkdf2(password, salt, *iterations, out);
                Ok(())
            }
            Kdf::Argon2 {
                id,
                time,
                memory,
                cpus,
                salt,
            } => {
                if *time > limits.max_argon2_time {
                    return Err(err(
                        ErrorKind::TooLarge,
                        format!(
                            "argon2 time cost {time} exceeds this appliance's limit of {}",
                            limits.max_argon2_time
                        ),
                    ));
                }
                let need_mib = u64::from(*memory).div_ceil(1024);
                let too_little = || {
                    err(
                        ErrorKind::TooLarge,
                        format!(
                            "{} needs {need_mib} MiB of memory, more than this appliance can \
                             allocate; start it with more memory",
                            self.name()
                        ),
                    )
                };
                if u64::from(*memory) > limits.max_argon2_memory_kib {
                    return Err(too_little());
                }
                let params = Params::new(*memory, *time, *cpus, Some(out.len()))
                    .map_err(|e| err(ErrorKind::Corrupt, format!("argon2 parameters: {e}")))?;
                let algorithm = if *id {
                    Algorithm::Argon2id
                } else {
                    Algorithm::Argon2i
                };
                let a = Argon2::new(algorithm, Version::V0x13, params);
                let n = a.params().block_count();
                let mut blocks: Vec<Block> = Vec::new();
                blocks.try_reserve_exact(n).map_err(|_| too_little())?;
                blocks.resize(n, Block::new());
                let r = a.hash_password_into_with_memory(password, salt, out, &mut blocks[..]);
                blocks.zeroize();
                r.map_err(|e| err(ErrorKind::Corrupt, format!("argon2: {e}")))
            }
        }
    }
}

/// `TooLarge` when PBKDF2 `iterations` exceed the limits.
pub fn check_iterations(iterations: u32, limits: &Limits) -> Result<(), Error> {
    if iterations > limits.max_pbkdf2_iterations {
        return Err(err(
            ErrorKind::TooLarge,
            format!(
                "pbkdf2 iterations {iterations} exceed this appliance's limit of {}",
                limits.max_pbkdf2_iterations
            ),
        ));
    }
    Ok(())
}

/// The anti-forensic stripes LUKS uses (both versions).
pub const AF_STRIPES: u32 = 4000;

/// Merges `material` (`stripes` stripes of `key.len()` bytes each, already decrypted)
/// into `key`: the inverse of LUKS's anti-forensic split (the stripes XORed together,
/// each intermediate passed through the hash-based diffuser).
pub fn af_merge(material: &[u8], stripes: u32, hash: Hash, key: &mut [u8]) -> Result<(), Error> {
    let ks = key.len();
    let need = ks
        .checked_mul(stripes as usize)
        .ok_or_else(|| err(ErrorKind::Corrupt, "key material size overflows"))?;
    if ks == 0 || stripes == 0 || material.len() < need {
        return Err(err(ErrorKind::Corrupt, "key material is too short"));
    }
    key.fill(0);
    let mut chunks = material.chunks_exact(ks).take(stripes as usize);
    for _ in 1..stripes {
        let s = chunks
            .next()
            .ok_or_else(|| err(ErrorKind::Corrupt, "key material is too short"))?;
        xor_into(key, s);
        diffuse(key, hash);
    }
    let last = chunks
        .next()
        .ok_or_else(|| err(ErrorKind::Corrupt, "key material is too short"))?;
    xor_into(key, last);
    Ok(())
}

fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

/// The AF diffuser: each hash-sized piece `i` of `buf` becomes H(be32(i) || piece),
/// truncated to the piece's length.
fn diffuse(buf: &mut [u8], hash: Hash) {
    let hl = hash.len();
    let mut h = Zeroizing::new([0u8; 64]);
    for (i, piece) in buf.chunks_mut(hl).enumerate() {
        let iv = (i as u32).to_be_bytes();
        hash.digest_into(&[&iv, piece], &mut h[..]);
        let n = piece.len();
        piece.copy_from_slice(h.get(..n).unwrap_or_default());
    }
}

/// Constant-time equality of two byte strings of the same length.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn pbkdf2_rfc6070() {
        let mut out = [0u8; 20];
        Hash::Sha1.pbkdf2(b"password", b"salt", 4096, &mut out);
        assert_eq!(
            out.to_vec(),
            hex("4b007901b765489abead49d926f721d065a429c1")
        );
    }

    #[test]
    fn argon2_rfc9106() {
        // RFC 9106 5.3 (Argon2id) without secret and associated data is not given there;
        // check the memory path against the crate's own allocating API instead, and the
        // limits.
        let kdf = Kdf::Argon2 {
            id: true,
            time: 2,
            memory: 64,
            cpus: 2,
            salt: b"somesaltsomesalt".to_vec(),
        };
        let mut a = [0u8; 32];
        kdf.derive(b"pw", &mut a, &Limits::default()).unwrap();
        let p = Params::new(64, 2, 2, Some(32)).unwrap();
        let mut blocks = alloc::vec![Block::new(); p.block_count()];
        let mut b = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
            .hash_password_into_with_memory(b"pw", b"somesaltsomesalt", &mut b, &mut blocks[..])
            .unwrap();
        assert_eq!(a, b);
        let tight = Limits {
            max_argon2_memory_kib: 32,
            ..Limits::default()
        };
        let e = kdf.derive(b"pw", &mut a, &tight).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge);
        assert!(e.message.contains("needs 1 MiB"), "{e}");
    }

    #[test]
    fn absurd_kdf_refused() {
        for k in [
            Kdf::Argon2 {
                id: true,
                time: 4,
                memory: MAX_ARGON2_MEMORY_KIB + 1,
                cpus: 1,
                salt: alloc::vec![0; 32],
            },
            Kdf::Argon2 {
                id: false,
                time: 0,
                memory: 1024,
                cpus: 1,
                salt: alloc::vec![0; 32],
            },
            Kdf::Argon2 {
                id: false,
                time: 1,
                memory: 1024,
                cpus: 1000,
                salt: alloc::vec![0; 32],
            },
            Kdf::Pbkdf2 {
                hash: Hash::Sha256,
                iterations: u32::MAX,
                salt: alloc::vec![0; 32],
            },
        ] {
            let e = k
                .derive(b"x", &mut [0u8; 32], &Limits::default())
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
        }
    }

    #[test]
    fn af_round_trip() {
        // Split by the definition (random stripes, last = key ^ diffused accumulator)
        // and merge back.
        let key: Vec<u8> = (0..32u8).collect();
        let stripes = 10u32;
        let mut material = Vec::new();
        let mut d = alloc::vec![0u8; 32];
        for i in 0..stripes - 1 {
            let s: Vec<u8> = (0..32u8)
                .map(|j| j.wrapping_mul(7).wrapping_add(i as u8))
                .collect();
            xor_into(&mut d, &s);
            diffuse(&mut d, Hash::Sha1);
            material.extend_from_slice(&s);
        }
        let last: Vec<u8> = d.iter().zip(&key).map(|(a, b)| a ^ b).collect();
        material.extend_from_slice(&last);
        let mut out = alloc::vec![0u8; 32];
        af_merge(&material, stripes, Hash::Sha1, &mut out).unwrap();
        assert_eq!(out, key);
        assert!(af_merge(&material[..100], stripes, Hash::Sha1, &mut out).is_err());
    }
}
