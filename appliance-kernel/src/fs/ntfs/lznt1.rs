//! LZNT1 decompression (Microsoft's [MS-XCA] section 2.5), as NTFS stores compressed
//! attributes: a compression unit is a sequence of chunks, each a 2-byte header
//! (bits 0-11: stored size - 3, bit 15: compressed) and at most 4096 bytes of output.
//! A chunk that stops short of 4096 bytes leaves the rest of its slot zero.

use super::raw::le16;

/// Uncompressed bytes per chunk.
pub const CHUNK: usize = 4096;

/// Why a unit could not be decompressed (the caller names the file).
#[derive(Debug, PartialEq, Eq)]
pub struct Bad(pub &'static str);

/// Decompresses `src` into `dst`, which the caller has zero-filled (holes stay zero).
/// Chunk `i` lands at `dst[i * 4096..]`; chunks beyond `dst` are an error.
pub fn decompress(src: &[u8], dst: &mut [u8]) -> Result<(), Bad> {
    let mut sp = 0usize;
    let mut slot = 0usize;
    while let Some(h) = le16(src, sp) {
        if h == 0 {
            break;
        }
        let size = usize::from(h & 0x0FFF) + 1;
        let data = src
            .get(sp + 2..sp + 2 + size)
            .ok_or(Bad("chunk runs past the compressed data"))?;
        let start = slot * CHUNK;
        if start >= dst.len() {
            return Err(Bad("more chunks than the compression unit holds"));
        }
        let end = (start + CHUNK).min(dst.len());
        let out = dst
            .get_mut(start..end)
            .ok_or(Bad("chunk outside the unit"))?;
        if h & 0x8000 == 0 {
            // Stored: copied as is.
            let n = data.len().min(out.len());
            out.get_mut(..n)
                .ok_or(Bad("stored chunk"))?
                .copy_from_slice(data.get(..n).ok_or(Bad("stored chunk"))?);
        } else {
            chunk(data, out)?;
        }
        sp += 2 + size;
        slot += 1;
    }
    Ok(())
}

/// One compressed chunk: flag bytes, each followed by 8 tokens (literal byte or a
/// 2-byte back reference whose length/offset split depends on the output position).
fn chunk(src: &[u8], out: &mut [u8]) -> Result<(), Bad> {
    let mut ip = 0usize;
    let mut op = 0usize;
    while let Some(&flags) = src.get(ip) {
        ip += 1;
        for bit in 0..8 {
            if ip >= src.len() {
                return Ok(());
            }
            if flags & (1 << bit) == 0 {
                let b = *src.get(ip).ok_or(Bad("literal"))?;
                *out.get_mut(op)
                    .ok_or(Bad("chunk decompresses past 4096 bytes"))? = b;
                ip += 1;
                op += 1;
                continue;
            }
            let token = usize::from(le16(src, ip).ok_or(Bad("truncated back reference"))?);
            ip += 2;
            if op == 0 {
                return Err(Bad("back reference at the start of a chunk"));
            }
            let mut shift = 12u32;
            let mut p = op - 1;
            while p >= 0x10 {
                shift -= 1;
                p >>= 1;
            }
            let len = (token & ((1 << shift) - 1)) + 3;
            let disp = (token >> shift) + 1;
            if disp > op {
                return Err(Bad("back reference before the start of the chunk"));
            }
            if op + len > out.len() {
                return Err(Bad("chunk decompresses past 4096 bytes"));
            }
            // An overlapping copy repeats the last `disp` bytes: copy in period-sized
            // pieces rather than byte by byte.
            let mut left = len;
            while left > 0 {
                let n = left.min(disp);
                let from = op - disp;
                out.copy_within(from..from + n, op);
                op += n;
                left -= n;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_and_literal_chunks() {
        // A stored chunk of 4096 bytes, then a compressed one with literals only.
        let mut src = vec![0xFF, 0x3F]; // size 4096, not compressed
        src.extend((0..4096).map(|i| i as u8));
        src.extend([0x04, 0xB0, 0x00, b'a', b'b', b'c', b'd']); // 5 bytes + 2 header
        let mut dst = vec![0u8; 3 * CHUNK];
        decompress(&src, &mut dst).unwrap();
        assert_eq!(dst[4095], 255);
        assert_eq!(&dst[4096..4100], b"abcd");
        assert!(dst[4100..].iter().all(|&b| b == 0));
    }

    #[test]
    fn back_reference_repeats() {
        // "ab" then a reference (disp 2, len 6) → "abababab".
        // At op=2: shift 12, token = ((2-1) << 12) | (6-3) = 0x1003.
        let body = [0b0000_0100u8, b'a', b'b', 0x03, 0x10];
        let mut src = vec![];
        let h = 0xB000u16 | (body.len() as u16 - 1);
        src.extend(h.to_le_bytes());
        src.extend(body);
        let mut dst = vec![0u8; CHUNK];
        decompress(&src, &mut dst).unwrap();
        assert_eq!(&dst[..8], b"abababab");
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let mut dst = vec![0u8; CHUNK];
        // Reference at position 0.
        assert!(decompress(&[0x02, 0xB0, 0x01, 0x00, 0x00], &mut dst).is_err());
        // Chunk longer than the input.
        assert!(decompress(&[0xFF, 0xBF, 1, 2], &mut dst).is_err());
        // Too many chunks for the unit.
        let mut two = vec![0x00, 0xB0, 0x00];
        two.extend([0x00, 0xB0, 0x00]);
        assert!(decompress(&two, &mut dst).is_err());
        // Random input never panics.
        let mut x = 0x9E37_79B9u32;
        for _ in 0..2000 {
            let src: Vec<u8> = (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = decompress(&src, &mut dst);
        }
    }
}
