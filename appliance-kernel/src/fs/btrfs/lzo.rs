//! An LZO1X decompressor, written from the stream format description (the Linux kernel's
//! `Documentation/staging/lzo.rst`, which documents what an LZO1X stream may contain).
//!
//! Every read of the input and every back-reference is bounds-checked and the output is
//! capped by the caller, so a hostile stream ends in an error, never a panic or an
//! unbounded allocation. Matches are copied in runs (`extend_from_within`), not byte by
//! byte, so overlapping copies cost one call per period.

use alloc::vec::Vec;

/// Why a stream could not be decoded.
pub type LzoError = &'static str;

struct Input<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> Result<u8, LzoError> {
        let v = *self.b.get(self.pos).ok_or("input overrun")?;
        self.pos += 1;
        Ok(v)
    }

    fn le16(&mut self) -> Result<usize, LzoError> {
        let lo = self.byte()? as usize;
        let hi = self.byte()? as usize;
        Ok(lo | (hi << 8))
    }

    fn take(&mut self, n: usize) -> Result<&[u8], LzoError> {
        let end = self.pos.checked_add(n).ok_or("input overrun")?;
        let s = self.b.get(self.pos..end).ok_or("input overrun")?;
        self.pos = end;
        Ok(s)
    }

    /// A length continued in extra bytes: each zero byte adds 255, then one non-zero byte
    /// adds its value.
    fn long_length(&mut self, base: usize) -> Result<usize, LzoError> {
        let mut len = base;
        loop {
            let b = self.byte()?;
            if b != 0 {
                return len.checked_add(b as usize).ok_or("length overflow");
            }
            len = len.checked_add(255).ok_or("length overflow")?;
        }
    }
}

struct Output<'a> {
    out: &'a mut Vec<u8>,
    /// Where this stream's output began (back-references may not reach before it).
    start: usize,
    /// Absolute length `out` may not exceed.
    limit: usize,
}

impl Output<'_> {
    fn room(&self, n: usize) -> Result<(), LzoError> {
        match self.out.len().checked_add(n) {
            Some(end) if end <= self.limit => Ok(()),
            _ => Err("output overrun"),
        }
    }

    fn literals(&mut self, input: &mut Input<'_>, n: usize) -> Result<(), LzoError> {
        if n == 0 {
            return Ok(());
        }
        self.room(n)?;
        let s = input.take(n)?;
        self.out.extend_from_slice(s);
        Ok(())
    }

    fn copy_match(&mut self, dist: usize, len: usize) -> Result<(), LzoError> {
        let produced = self.out.len() - self.start;
        if dist == 0 || dist > produced {
            return Err("back-reference before the start of the output");
        }
        self.room(len)?;
        let from = self.out.len() - dist;
        let mut left = len;
        // Overlapping copies repeat the last `dist` bytes: copy in growing runs.
        while left > 0 {
            let n = left.min(self.out.len() - from);
            self.out.extend_from_within(from..from + n);
            left -= n;
        }
        Ok(())
    }
}

/// Decodes one LZO1X stream from `src`, appending at most `max_out` bytes to `out`.
/// Returns the number of input bytes consumed (up to and including the end marker).
pub fn decompress(src: &[u8], out: &mut Vec<u8>, max_out: usize) -> Result<usize, LzoError> {
    let mut input = Input { b: src, pos: 0 };
    let start = out.len();
    let mut output = Output {
        out,
        start,
        limit: start.checked_add(max_out).ok_or("output overrun")?,
    };
    // Literals copied by the previous instruction: 0, 1..3, or 4 for "4 or more".
    let mut state: usize;
    let first = *src.first().ok_or("empty input")?;
    if first > 17 {
        input.pos = 1;
        let n = (first - 17) as usize;
        output.literals(&mut input, n)?;
        state = n.min(4);
    } else {
        state = 0;
    }
    loop {
        let inst = input.byte()? as usize;
        let (dist, len, next_literals) = if inst < 16 {
            match state {
                0 => {
                    // A run of literals.
                    let len = if inst == 0 {
                        input.long_length(15)?
                    } else {
                        inst
                    };
                    output.literals(&mut input, len + 3)?;
                    state = 4;
                    continue;
                }
                1..=3 => {
                    // Two bytes from at most 1 KiB back.
                    let h = input.byte()? as usize;
                    ((h << 2) + (inst >> 2) + 1, 2, inst & 3)
                }
                _ => {
                    // Three bytes from 2..3 KiB back.
                    let h = input.byte()? as usize;
                    ((h << 2) + (inst >> 2) + 2049, 3, inst & 3)
                }
            }
        } else if inst < 32 {
            // 0001HLLL: 16..48 KiB back; distance 16384 ends the stream.
            let len = match inst & 7 {
                0 => input.long_length(7)?,
                l => l,
            } + 2;
            let v = input.le16()?;
            let dist = 16384 + ((inst & 8) << 11) + (v >> 2);
            if dist == 16384 {
                return Ok(input.pos);
            }
            (dist, len, v & 3)
        } else if inst < 64 {
            // 001LLLLL: up to 16 KiB back.
            let len = match inst & 31 {
                0 => input.long_length(31)?,
                l => l,
            } + 2;
            let v = input.le16()?;
            ((v >> 2) + 1, len, v & 3)
        } else {
            // 01LDDDSS (3..4 bytes) or 1LLDDDSS (5..8 bytes), up to 2 KiB back.
            let h = input.byte()? as usize;
            let len = if inst < 128 {
                3 + ((inst >> 5) & 1)
            } else {
                5 + ((inst >> 5) & 3)
            };
            ((h << 3) + ((inst >> 2) & 7) + 1, len, inst & 3)
        };
        output.copy_match(dist, len)?;
        output.literals(&mut input, next_literals)?;
        state = next_literals;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn literal_only_stream() {
        // First byte 17+5: five literals, then the end marker 0x11 0x00 0x00.
        let s = [22, b'h', b'e', b'l', b'l', b'o', 0x11, 0, 0];
        let mut out = Vec::new();
        assert_eq!(decompress(&s, &mut out, 100).unwrap(), s.len());
        assert_eq!(out, b"hello");
    }

    #[test]
    fn overlapping_match() {
        // "ab" literals (first byte 17+2 → state 2), then an M2 copy of 8 bytes from 2 back:
        // 1LLDDDSS with L=3 (len 5+3), D=1 (dist 1 + 1 + (0 << 3)), S=0.
        let inst = 0x80 | (3 << 5) | (1 << 2);
        let s = [19, b'a', b'b', inst, 0, 0x11, 0, 0];
        let mut out = Vec::new();
        decompress(&s, &mut out, 100).unwrap();
        assert_eq!(out, b"ababababab");
    }

    #[test]
    fn hostile_streams_error() {
        let mut out = Vec::new();
        // A match before any output.
        assert!(decompress(&[0x80 | (1 << 2), 0, 0x11, 0, 0], &mut out, 100).is_err());
        // Truncated literal run, truncated operands, empty input.
        assert!(decompress(&[30, 1, 2], &mut out, 100).is_err());
        assert!(decompress(&[0], &mut out, 100).is_err());
        assert!(decompress(&[], &mut out, 100).is_err());
        // Output limit.
        out.clear();
        assert!(decompress(&[22, 1, 2, 3, 4, 5, 0x11, 0, 0], &mut out, 4).is_err());
        // Long zero-length runs never overflow or hang.
        let mut s = vec![0u8; 100_000];
        s.push(1);
        assert!(decompress(&s, &mut out, 1 << 20).is_err());
    }
}
