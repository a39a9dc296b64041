//! CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), raw: no initial or final
//! inversion, so callers chain it as their format does (ext4 metadata checksums, XFS v5
//! metadata and log records).
//!
//! Slice-by-8 tables built at compile time: eight table lookups per 8 input bytes, which
//! matters under TCG where every guest instruction is expensive.

const POLY: u32 = 0x82F6_3B78;

const fn make_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { POLY ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c; // OK to index: constant bounds, evaluated at compile time.
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i]; // OK to index: constant bounds, compile time.
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize]; // OK to index: ditto.
            i += 1;
        }
        s += 1;
    }
    t
}

static T: [[u32; 256]; 8] = make_tables();

/// Table entry `b` (always < 256) of table `k` (always < 8).
#[inline(always)]
pub(crate) fn t(k: usize, b: u32) -> u32 {
    T.get(k)
        .and_then(|row| row.get((b & 0xFF) as usize))
        .copied()
        .unwrap_or(0)
}

/// Feeds `data` into a running (non-inverted) CRC state.
pub fn update(mut c: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(8);
    for ch in &mut chunks {
        let x = <[u8; 8]>::try_from(ch).map_or(0, u64::from_le_bytes);
        let lo = (x as u32) ^ c;
        let hi = (x >> 32) as u32;
        c = t(7, lo)
            ^ t(6, lo >> 8)
            ^ t(5, lo >> 16)
            ^ t(4, lo >> 24)
            ^ t(3, hi)
            ^ t(2, hi >> 8)
            ^ t(1, hi >> 16)
            ^ t(0, hi >> 24);
    }
    for &b in chunks.remainder() {
        c = t(0, c ^ u32::from(b)) ^ (c >> 8);
    }
    c
}
