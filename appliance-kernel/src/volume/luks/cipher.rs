//! dm-crypt ciphers for LUKS: AES in XTS or CBC mode with plain64, plain (32-bit) or
//! ESSIV sector IVs, over the `aes` crate.
//!
//! XTS and CBC are written here on top of the block cipher so that every sector goes
//! through the `aes` crate's batch API (`encrypt_blocks`/`decrypt_blocks`): its software
//! (fixsliced) backend, the one the bare-metal appliance runs, processes 4 blocks per
//! call for the price of about one, and its AES-NI backend 8. CBC encryption is
//! inherently sequential and goes a block at a time (writes only).

use super::crypto::{Hash, printable};
use super::err;
use aes::cipher::array::Array;
use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use aes::{Aes128, Aes192, Aes256, Block};
use alloc::format;
use alloc::string::String;
use wire::{Error, ErrorKind};

/// Largest encryption sector size LUKS2 allows.
pub const MAX_SECTOR: usize = 4096;
const MAX_BLOCKS: usize = MAX_SECTOR / 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Xts,
    Cbc,
}

/// How a sector's IV comes from its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IvGen {
    /// Little-endian 64-bit sector number.
    Plain64,
    /// Little-endian 32-bit sector number (truncated).
    Plain,
    /// The plain64 block encrypted with AES keyed by hash(volume key).
    Essiv(Hash),
}

/// A parsed cipher specification (`aes-xts-plain64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipherSpec {
    pub mode: Mode,
    pub iv: IvGen,
    name: String,
}

impl CipherSpec {
    /// Parses dm-crypt notation `cipher-mode-iv[:ivopts]`. Anything other than AES in
    /// XTS or CBC mode with plain64/plain/ESSIV IVs is `Unsupported`, naming it.
    pub fn parse(spec: &str) -> Result<CipherSpec, Error> {
        let unsupported = || {
            err(
                ErrorKind::Unsupported,
                format!("cipher {:?} is not supported", printable(spec)),
            )
        };
        let mut parts = spec.splitn(3, '-');
        let (Some(cipher), Some(mode), Some(iv)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(unsupported());
        };
        if cipher != "aes" {
            return Err(unsupported());
        }
        let mode = match mode {
            "xts" => Mode::Xts,
            "cbc" => Mode::Cbc,
            _ => return Err(unsupported()),
        };
        let iv = match iv {
            "plain64" => IvGen::Plain64,
            "plain" => IvGen::Plain,
            _ => match iv.strip_prefix("essiv:") {
                Some(h) if mode == Mode::Cbc => {
                    let h = Hash::parse(h).map_err(|_| unsupported())?;
                    if !matches!(h.len(), 16 | 24 | 32) {
                        return Err(unsupported());
                    }
                    IvGen::Essiv(h)
                }
                _ => return Err(unsupported()),
            },
        };
        Ok(CipherSpec {
            mode,
            iv,
            name: String::from(spec),
        })
    }

    /// dm-crypt notation, as parsed.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks a key size (bytes) for this cipher: XTS takes two AES keys (32, 48 or 64
    /// bytes), CBC one (16, 24 or 32).
    pub fn check_key_size(&self, n: usize) -> Result<(), Error> {
        let ok = match self.mode {
            Mode::Xts => matches!(n, 32 | 48 | 64),
            Mode::Cbc => matches!(n, 16 | 24 | 32),
        };
        if ok {
            Ok(())
        } else {
            Err(err(
                ErrorKind::Corrupt,
                format!("key size {} bits is invalid for {}", n * 8, self.name),
            ))
        }
    }
}

/// AES with any of its key sizes. The key schedules are zeroized on drop (the `aes`
/// crate's `zeroize` feature).
enum Aes {
    A128(Aes128),
    A192(Aes192),
    A256(Aes256),
}

impl Aes {
    fn new(key: &[u8]) -> Result<Aes, Error> {
        let bad = || err(ErrorKind::Internal, "bad AES key length");
        Ok(match key.len() {
            16 => Aes::A128(Aes128::new_from_slice(key).map_err(|_| bad())?),
            24 => Aes::A192(Aes192::new_from_slice(key).map_err(|_| bad())?),
            32 => Aes::A256(Aes256::new_from_slice(key).map_err(|_| bad())?),
            _ => return Err(bad()),
        })
    }
    fn encrypt_blocks(&self, b: &mut [Block]) {
        match self {
            Aes::A128(c) => c.encrypt_blocks(b),
            Aes::A192(c) => c.encrypt_blocks(b),
            Aes::A256(c) => c.encrypt_blocks(b),
        }
    }
    fn decrypt_blocks(&self, b: &mut [Block]) {
        match self {
            Aes::A128(c) => c.decrypt_blocks(b),
            Aes::A192(c) => c.decrypt_blocks(b),
            Aes::A256(c) => c.decrypt_blocks(b),
        }
    }
}

/// A keyed sector cipher.
pub struct SectorCipher {
    mode: Mode,
    iv: IvGen,
    data: Aes,
    /// XTS: the tweak key (second half); CBC with ESSIV: AES keyed by hash(key).
    aux: Option<Aes>,
}

/// Sectors whose IVs are prepared in one batch.
const IV_BATCH: usize = 64;

impl SectorCipher {
    /// Keys `spec` with `key` (whose size must pass [`CipherSpec::check_key_size`]).
    pub fn new(spec: &CipherSpec, key: &[u8]) -> Result<SectorCipher, Error> {
        spec.check_key_size(key.len())?;
        let (data, aux) = match spec.mode {
            Mode::Xts => {
                let (k1, k2) = key.split_at(key.len() / 2);
                (Aes::new(k1)?, Some(Aes::new(k2)?))
            }
            Mode::Cbc => {
                let aux = match spec.iv {
                    IvGen::Essiv(h) => {
                        let mut salt = zeroize::Zeroizing::new([0u8; 64]);
                        h.digest_into(&[key], &mut salt[..]);
                        Some(Aes::new(salt.get(..h.len()).unwrap_or_default())?)
                    }
                    _ => None,
                };
                (Aes::new(key)?, aux)
            }
        };
        Ok(SectorCipher {
            mode: spec.mode,
            iv: spec.iv,
            data,
            aux,
        })
    }

    /// The IV blocks of `n` sectors starting at IV number `first`, stepping by `step`.
    /// For XTS they are encrypted with the tweak key (the initial tweaks); for ESSIV with
    /// the ESSIV key.
    fn ivs(&self, out: &mut [Block], first: u64, step: u64) {
        let mut iv = first;
        for b in out.iter_mut() {
            let n = match self.iv {
                IvGen::Plain => u128::from(iv as u32),
                IvGen::Plain64 | IvGen::Essiv(_) => u128::from(iv),
            };
            *b = Array(n.to_le_bytes());
            iv = iv.wrapping_add(step);
        }
        if let Some(aux) = &self.aux {
            aux.encrypt_blocks(out);
        }
    }

    /// Decrypts `buf` (whole sectors of `sector_size` bytes) in place; the first sector's
    /// IV number is `first_iv` and each next one adds `iv_step`.
    pub fn decrypt(&self, buf: &mut [u8], sector_size: usize, first_iv: u64, iv_step: u64) {
        self.run(buf, sector_size, first_iv, iv_step, false);
    }

    /// Encrypts `buf` in place; as [`SectorCipher::decrypt`].
    pub fn encrypt(&self, buf: &mut [u8], sector_size: usize, first_iv: u64, iv_step: u64) {
        self.run(buf, sector_size, first_iv, iv_step, true);
    }

    fn run(&self, buf: &mut [u8], sector_size: usize, first_iv: u64, step: u64, enc: bool) {
        if sector_size == 0 || sector_size > MAX_SECTOR || !sector_size.is_multiple_of(16) {
            return;
        }
        let mut ivs = [Block::default(); IV_BATCH];
        let mut iv = first_iv;
        for group in buf.chunks_mut(sector_size * IV_BATCH) {
            let n = group.len() / sector_size;
            let ivs = ivs.get_mut(..n).unwrap_or_default();
            self.ivs(ivs, iv, step);
            iv = iv.wrapping_add(step.wrapping_mul(n as u64));
            for (sector, iv) in group.chunks_exact_mut(sector_size).zip(ivs.iter()) {
                let (blocks, _) = Array::slice_as_chunks_mut(sector);
                let iv = u128::from_le_bytes(iv.0);
                match (self.mode, enc) {
                    (Mode::Xts, _) => self.xts_sector(blocks, iv, enc),
                    (Mode::Cbc, false) => self.cbc_decrypt_sector(blocks, iv),
                    (Mode::Cbc, true) => self.cbc_encrypt_sector(blocks, iv),
                }
            }
        }
    }

    /// XTS (IEEE 1619) on one sector: C = E(P ^ T) ^ T, T multiplied by x in GF(2^128)
    /// from block to block.
    fn xts_sector(&self, blocks: &mut [Block], tweak: u128, enc: bool) {
        let mut tweaks = [0u128; MAX_BLOCKS];
        let mut t = tweak;
        for (b, slot) in blocks.iter_mut().zip(tweaks.iter_mut()) {
            *slot = t;
            xor_block(b, t);
            t = (t << 1) ^ (if t >> 127 != 0 { 0x87 } else { 0 });
        }
        if enc {
            self.data.encrypt_blocks(blocks);
        } else {
            self.data.decrypt_blocks(blocks);
        }
        for (b, t) in blocks.iter_mut().zip(tweaks.iter()) {
            xor_block(b, *t);
        }
    }

    /// CBC decryption of one sector: all blocks through AES at once, then each XORed
    /// with the previous ciphertext block (the IV for the first).
    fn cbc_decrypt_sector(&self, blocks: &mut [Block], iv: u128) {
        let mut prev = [0u128; MAX_BLOCKS];
        let mut p = iv;
        for (b, slot) in blocks.iter().zip(prev.iter_mut()) {
            *slot = p;
            p = u128::from_le_bytes(b.0);
        }
        self.data.decrypt_blocks(blocks);
        for (b, p) in blocks.iter_mut().zip(prev.iter()) {
            xor_block(b, *p);
        }
    }

    fn cbc_encrypt_sector(&self, blocks: &mut [Block], iv: u128) {
        let mut prev = iv;
        for b in blocks.iter_mut() {
            xor_block(b, prev);
            self.data.encrypt_blocks(core::slice::from_mut(b));
            prev = u128::from_le_bytes(b.0);
        }
    }
}

fn xor_block(b: &mut Block, t: u128) {
    b.0 = (u128::from_le_bytes(b.0) ^ t).to_le_bytes();
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn parse_specs() {
        assert_eq!(
            CipherSpec::parse("aes-xts-plain64").unwrap().mode,
            Mode::Xts
        );
        let c = CipherSpec::parse("aes-cbc-essiv:sha256").unwrap();
        assert_eq!(c.iv, IvGen::Essiv(Hash::Sha256));
        assert_eq!(CipherSpec::parse("aes-xts-plain").unwrap().iv, IvGen::Plain);
        for bad in [
            "serpent-xts-plain64",
            "aes-ecb",
            "aes-xts-essiv:sha256",
            "aes-cbc-essiv:sha512",
            "aes-cbc-benbi",
            "aes",
            "",
            "twofish-cbc-plain",
        ] {
            let e = CipherSpec::parse(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Unsupported, "{bad}");
            assert!(e.message.contains(bad), "{e}");
        }
        let x = CipherSpec::parse("aes-xts-plain64").unwrap();
        assert!(x.check_key_size(64).is_ok() && x.check_key_size(32).is_ok());
        assert!(x.check_key_size(16).is_err() && x.check_key_size(1000).is_err());
    }

    #[test]
    fn cbc_round_trip_and_iv_steps() {
        let key: Vec<u8> = (100..132).collect();
        for spec in ["aes-cbc-essiv:sha256", "aes-cbc-plain64", "aes-cbc-plain"] {
            let c = SectorCipher::new(&CipherSpec::parse(spec).unwrap(), &key).unwrap();
            let orig: Vec<u8> = (0..4096 * 3).map(|i| (i * 7) as u8).collect();
            let mut buf = orig.clone();
            c.encrypt(&mut buf, 4096, 5, 8);
            assert_ne!(buf, orig);
            // Sector by sector gives the same as the whole buffer.
            let mut second = orig[4096..8192].to_vec();
            c.encrypt(&mut second, 4096, 13, 8);
            assert_eq!(second, buf[4096..8192]);
            c.decrypt(&mut buf, 4096, 5, 8);
            assert_eq!(buf, orig);
        }
    }
}
