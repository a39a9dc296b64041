//! The checksums btrfs puts on tree blocks, the superblock and data sectors
//! (`mkfs.btrfs --csum crc32c|xxhash|sha256|blake2`), and the directory name hash.

use super::unsupported;
use crate::fs::FsResult;
use alloc::format;
use blake2::Blake2b256;
use blake2::digest::Digest;
use crc::{CRC_32_ISCSI, Crc, Table};
use sha2::Sha256;
use twox_hash::XxHash64;

/// CRC-32C (Castagnoli), slice-by-16 tables.
const CRC32C: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);

/// Largest checksum btrfs stores.
pub const MAX_CSUM: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsumType {
    Crc32c,
    XxHash64,
    Sha256,
    Blake2b,
}

impl CsumType {
    pub fn from_disk(t: u16) -> FsResult<Self> {
        Ok(match t {
            0 => CsumType::Crc32c,
            1 => CsumType::XxHash64,
            2 => CsumType::Sha256,
            3 => CsumType::Blake2b,
            other => return Err(unsupported(format!("checksum type {other}"))),
        })
    }

    /// Bytes of a stored checksum.
    pub fn size(self) -> usize {
        match self {
            CsumType::Crc32c => 4,
            CsumType::XxHash64 => 8,
            CsumType::Sha256 | CsumType::Blake2b => 32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CsumType::Crc32c => "crc32c",
            CsumType::XxHash64 => "xxhash64",
            CsumType::Sha256 => "sha256",
            CsumType::Blake2b => "blake2b",
        }
    }

    /// The checksum of `data` as btrfs stores it (little-endian for the integer ones),
    /// zero-padded to [`MAX_CSUM`]; the first [`CsumType::size`] bytes are significant.
    pub fn compute(self, data: &[u8]) -> [u8; MAX_CSUM] {
        let mut out = [0u8; MAX_CSUM];
        let fill = |out: &mut [u8; MAX_CSUM], bytes: &[u8]| {
            for (o, b) in out.iter_mut().zip(bytes) {
                *o = *b;
            }
        };
        match self {
            CsumType::Crc32c => fill(&mut out, &CRC32C.checksum(data).to_le_bytes()),
            CsumType::XxHash64 => fill(&mut out, &XxHash64::oneshot(0, data).to_le_bytes()),
            CsumType::Sha256 => fill(&mut out, &Sha256::digest(data)),
            CsumType::Blake2b => fill(&mut out, &Blake2b256::digest(data)),
        }
        out
    }

    /// True when `stored` (at least [`CsumType::size`] bytes) is the checksum of `data`.
    pub fn verify(self, data: &[u8], stored: &[u8]) -> bool {
        let n = self.size();
        let c = self.compute(data);
        match (c.get(..n), stored.get(..n)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

/// The directory name hash: CRC-32C seeded with `~1`, without the final inversion.
pub fn name_hash(name: &[u8]) -> u32 {
    // The crc crate reflects a custom initial value and inverts the result; undo both
    // so the register starts at 0xFFFF_FFFE and ends un-inverted.
    let mut d = CRC32C.digest_with_initial(0xFFFF_FFFEu32.reverse_bits());
    d.update(name);
    !d.finalize()
}
