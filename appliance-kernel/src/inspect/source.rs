//! Random access to the bytes of one guest file (or of a buffer, in tests and fuzzing),
//! through a small chunk cache: the database and hive readers ask for pages and cells at
//! scattered offsets; the cache turns those into large reads and keeps at most
//! [`CACHE_CHUNKS`] × [`CHUNK`] bytes.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

pub type Result<T> = core::result::Result<T, Error>;

/// Bytes one underlying read asks for.
pub const CHUNK: usize = 64 * 1024;
/// Chunks kept (2 MiB).
pub const CACHE_CHUNKS: usize = 32;
/// The largest single read a parser may ask for.
pub const MAX_READ: usize = 4 << 20;
/// Bytes a parser may read in all, beyond [`READ_FACTOR`] times the file's size: a
/// structure that makes a parser read the same bytes over and over (many records
/// sharing one big cell or overflow chain) ends with an error instead of running for
/// hours.
pub const READ_SLACK: u64 = 64 << 20;
pub const READ_FACTOR: u64 = 4;

/// A file's bytes: its size and reads at an offset.
pub trait Source {
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`; the range lies within `size()`. A short read is an
    /// error.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()>;
}

impl Source for &[u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = usize::try_from(offset).map_err(|_| short())?;
        let end = start.checked_add(buf.len()).ok_or_else(short)?;
        buf.copy_from_slice(self.get(start..end).ok_or_else(short)?);
        Ok(())
    }
}

fn short() -> Error {
    Error::new(ErrorKind::Corrupt, "read past the end of the file")
}

/// A [`Source`] with a bounded chunk cache.
pub struct Reader<'a> {
    src: &'a mut dyn Source,
    size: u64,
    /// (chunk index, last use, bytes)
    chunks: Vec<(u64, u64, Vec<u8>)>,
    tick: u64,
    /// Bytes handed out so far, and the bound.
    delivered: u64,
    budget: u64,
}

impl<'a> Reader<'a> {
    pub fn new(src: &'a mut dyn Source) -> Self {
        let size = src.size();
        Reader {
            src,
            size,
            chunks: Vec::new(),
            tick: 0,
            delivered: 0,
            budget: size.saturating_mul(READ_FACTOR).saturating_add(READ_SLACK),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The chunk `idx`, read (and cached) on first use.
    fn chunk(&mut self, idx: u64) -> Result<&[u8]> {
        self.tick += 1;
        let tick = self.tick;
        if let Some(pos) = self.chunks.iter().position(|c| c.0 == idx) {
            let c = self.chunks.get_mut(pos).ok_or_else(short)?;
            c.1 = tick;
            return Ok(&c.2);
        }
        let start = idx.checked_mul(CHUNK as u64).ok_or_else(short)?;
        if start >= self.size {
            return Err(short());
        }
        let len = (self.size - start).min(CHUNK as u64) as usize;
        let mut buf = vec![0u8; len];
        self.src.read_at(start, &mut buf)?;
        if self.chunks.len() >= CACHE_CHUNKS {
            // Evict the least recently used chunk.
            if let Some(old) = self
                .chunks
                .iter()
                .enumerate()
                .min_by_key(|(_, c)| c.1)
                .map(|(i, _)| i)
            {
                self.chunks.swap_remove(old);
            }
        }
        self.chunks.push((idx, tick, buf));
        let last = self.chunks.last().ok_or_else(short)?;
        Ok(&last.2)
    }

    /// Fills `buf` with the bytes at `offset`; `Corrupt` when they lie past the end.
    pub fn read_into(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "read of {} bytes at {offset} past the end of the file ({} bytes)",
                        buf.len(),
                        self.size
                    ),
                )
            })?;
        self.delivered = self.delivered.saturating_add(buf.len() as u64);
        if self.delivered > self.budget {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "more than {} bytes read from a {}-byte file (a structure read over and over)",
                    self.budget, self.size
                ),
            ));
        }
        let mut pos = offset;
        let mut done = 0usize;
        while pos < end {
            let idx = pos / CHUNK as u64;
            let within = (pos % CHUNK as u64) as usize;
            let chunk = self.chunk(idx)?;
            let avail = chunk.get(within..).ok_or_else(short)?;
            let want = ((end - pos) as usize).min(avail.len());
            if want == 0 {
                return Err(short());
            }
            let dst = buf.get_mut(done..done + want).ok_or_else(short)?;
            dst.copy_from_slice(avail.get(..want).ok_or_else(short)?);
            done += want;
            pos += want as u64;
        }
        Ok(())
    }

    /// `len` bytes at `offset`, `len` at most [`MAX_READ`].
    pub fn read(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        if len > MAX_READ {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("a read of {len} bytes exceeds the {MAX_READ}-byte bound"),
            ));
        }
        let mut v = vec![0u8; len];
        self.read_into(offset, &mut v)?;
        Ok(v)
    }

    /// Up to `len` bytes at `offset`, fewer at the end of the file.
    pub fn read_upto(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let avail = self.size.saturating_sub(offset);
        let n = (len as u64).min(avail) as usize;
        self.read(offset, n)
    }

    pub fn u8_at(&mut self, offset: u64) -> Result<u8> {
        let mut b = [0u8; 1];
        self.read_into(offset, &mut b)?;
        let [x] = b;
        Ok(x)
    }
    pub fn le16(&mut self, offset: u64) -> Result<u16> {
        let mut b = [0u8; 2];
        self.read_into(offset, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    pub fn le32(&mut self, offset: u64) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read_into(offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    pub fn be16(&mut self, offset: u64) -> Result<u16> {
        let mut b = [0u8; 2];
        self.read_into(offset, &mut b)?;
        Ok(u16::from_be_bytes(b))
    }
    pub fn be32(&mut self, offset: u64) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read_into(offset, &mut b)?;
        Ok(u32::from_be_bytes(b))
    }
}

/// Lines of a text file read in chunks: each line without its `\n` (and a `\r` before
/// it), lossy UTF-8; a line longer than `max_line` bytes is cut there (the rest of it
/// is skipped).
pub struct Lines<'r, 'a> {
    r: &'r mut Reader<'a>,
    pos: u64,
    max_line: usize,
}

impl<'r, 'a> Lines<'r, 'a> {
    pub fn new(r: &'r mut Reader<'a>, max_line: usize) -> Self {
        Lines {
            r,
            pos: 0,
            max_line,
        }
    }

    /// The next line, `None` at the end of the file.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>> {
        let size = self.r.size();
        if self.pos >= size {
            return Ok(None);
        }
        let mut line = Vec::new();
        loop {
            if self.pos >= size {
                break;
            }
            let idx = self.pos / CHUNK as u64;
            let within = (self.pos % CHUNK as u64) as usize;
            let chunk = self.r.chunk(idx)?;
            let rest = chunk.get(within..).ok_or_else(short)?;
            if rest.is_empty() {
                return Err(short());
            }
            match rest.iter().position(|&b| b == b'\n') {
                Some(n) => {
                    let room = self.max_line.saturating_sub(line.len());
                    line.extend_from_slice(rest.get(..n.min(room)).unwrap_or_default());
                    self.pos += n as u64 + 1;
                    break;
                }
                None => {
                    let room = self.max_line.saturating_sub(line.len());
                    line.extend_from_slice(rest.get(..rest.len().min(room)).unwrap_or_default());
                    self.pos += rest.len() as u64;
                }
            }
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(Some(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_across_chunks_and_evicts() {
        let data: Vec<u8> = (0..(CHUNK * (CACHE_CHUNKS + 3)))
            .map(|i| (i % 251) as u8)
            .collect();
        let mut s: &[u8] = &data;
        let mut r = Reader::new(&mut s);
        for off in [
            0u64,
            65530,
            (CHUNK * 7 - 3) as u64,
            (data.len() - 10) as u64,
        ] {
            let v = r.read(off, 10).unwrap();
            assert_eq!(v, data[off as usize..off as usize + 10]);
        }
        for i in 0..(CACHE_CHUNKS + 3) {
            r.read((i * CHUNK) as u64, 1).unwrap();
        }
        assert!(r.chunks.len() <= CACHE_CHUNKS);
        assert!(r.read(data.len() as u64 - 1, 2).is_err());
        assert!(r.read(u64::MAX - 1, 4).is_err());
        assert_eq!(r.read_upto(data.len() as u64 - 3, 10).unwrap().len(), 3);
    }

    #[test]
    fn read_budget() {
        let data = vec![7u8; 1024];
        let mut s: &[u8] = &data;
        let mut r = Reader::new(&mut s);
        let mut n = 0u64;
        let e = loop {
            match r.read(0, 1024) {
                Ok(_) => n += 1024,
                Err(e) => break e,
            }
        };
        assert_eq!(e.kind, ErrorKind::TooLarge);
        assert_eq!(n, READ_FACTOR * 1024 + READ_SLACK);
    }

    #[test]
    fn lines_split_and_cut() {
        let mut text = b"a\r\nbb\n\nlong".to_vec();
        text.extend(core::iter::repeat_n(b'x', CHUNK * 2));
        text.extend(b"\nend");
        let mut s: &[u8] = &text;
        let mut r = Reader::new(&mut s);
        let mut l = Lines::new(&mut r, 8);
        let mut got = Vec::new();
        while let Some(x) = l.next_line().unwrap() {
            got.push(x);
        }
        assert_eq!(
            got,
            [&b"a"[..], b"bb", b"", b"longxxxx", b"end"].map(|s| s.to_vec())
        );
    }
}
