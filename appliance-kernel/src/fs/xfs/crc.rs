//! CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every XFS v5
//! metadata structure and log record. XFS stores it inverted-and-little-endian in a
//! 4-byte field of the structure, computed with that field taken as zero.
//!
//! The CRC engine is [`crate::fs::crc32c`] (shared with ext4's direct reader).

pub use crate::fs::crc32c::update;

/// CRC-32C of `data`.
#[cfg(test)]
pub fn crc32c(data: &[u8]) -> u32 {
    !update(!0, data)
}

/// The XFS checksum of `buf` with the 4-byte field at `off` taken as zero, as XFS stores
/// it: the CRC inverted, read little-endian (so the value compares directly with
/// `u32::from_le_bytes(field)`).
pub fn xfs_cksum(buf: &[u8], off: usize) -> u32 {
    let head = buf.get(..off).unwrap_or(buf);
    let tail = off.checked_add(4).and_then(|e| buf.get(e..)).unwrap_or(&[]);
    let c = update(!0, head);
    let c = update(c, &[0u8; 4]);
    !update(c, tail)
}

/// True when the checksum stored at `off` in `buf` matches its contents.
pub fn verify(buf: &[u8], off: usize) -> bool {
    let Some(stored) = off
        .checked_add(4)
        .and_then(|e| buf.get(off..e))
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
    else {
        return false;
    };
    u32::from_le_bytes(stored) == xfs_cksum(buf, off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values() {
        // The CRC-32C check value (RFC 3720 appendix B.4 and the "123456789" convention).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        // Slice-by-8 and the byte loop agree on every length and alignment.
        let data: Vec<u8> = (0..100u32).map(|i| (i * 37 + 11) as u8).collect();
        for start in 0..9 {
            for end in start..data.len() {
                let mut c = !0u32;
                for &b in &data[start..end] {
                    c = crate::fs::crc32c::t(0, c ^ u32::from(b)) ^ (c >> 8);
                }
                assert_eq!(!c, crc32c(&data[start..end]));
            }
        }
    }

    #[test]
    fn field_taken_as_zero() {
        let mut buf = vec![0x5Au8; 64];
        let c = xfs_cksum(&buf, 8);
        buf[8..12].copy_from_slice(&c.to_le_bytes());
        assert!(verify(&buf, 8));
        buf[40] ^= 1;
        assert!(!verify(&buf, 8));
        assert!(!verify(&buf, 62));
    }
}
