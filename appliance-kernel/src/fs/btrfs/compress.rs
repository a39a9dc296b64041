//! Compressed extents: zlib (`miniz_oxide`), zstd (`ruzstd`) and lzo (our LZO1X decoder
//! inside btrfs's own segment framing). Output is always capped at the extent's
//! `ram_bytes`, itself capped at [`MAX_UNCOMPRESSED`] by the caller.

use super::lzo;
use super::ondisk::{COMPRESS_LZO, COMPRESS_ZLIB, COMPRESS_ZSTD, le32};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// btrfs compresses at most 128 KiB of file data into one extent.
pub const MAX_UNCOMPRESSED: usize = 128 * 1024;
/// zstd's window for btrfs is at most 128 KiB (window log 17); allow some slack.
const ZSTD_MAX_WINDOW: u64 = 256 * 1024;

pub fn name(compression: u8) -> &'static str {
    match compression {
        COMPRESS_ZLIB => "zlib",
        COMPRESS_LZO => "lzo",
        COMPRESS_ZSTD => "zstd",
        _ => "unknown",
    }
}

/// Decompresses `src` into exactly `ram_bytes` bytes (zero-filled past the end of the
/// stream, as Linux does). `sectorsize` frames lzo segments. Errors are plain messages
/// for the caller to wrap with the file and extent.
pub fn decompress(
    compression: u8,
    src: &[u8],
    ram_bytes: usize,
    sectorsize: usize,
) -> Result<Vec<u8>, String> {
    if ram_bytes > MAX_UNCOMPRESSED {
        return Err(format!(
            "claims {ram_bytes} uncompressed bytes (the limit is {MAX_UNCOMPRESSED})"
        ));
    }
    let mut out = match compression {
        COMPRESS_ZLIB => zlib(src, ram_bytes)?,
        COMPRESS_ZSTD => zstd(src, ram_bytes)?,
        COMPRESS_LZO => lzo_segments(src, ram_bytes, sectorsize)?,
        other => return Err(format!("unknown compression type {other}")),
    };
    out.resize(ram_bytes, 0);
    Ok(out)
}

fn zlib(src: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    use miniz_oxide::inflate::{TINFLStatus, decompress_to_vec_zlib_with_limit};
    match decompress_to_vec_zlib_with_limit(src, limit) {
        Ok(v) => Ok(v),
        // More output than the extent holds: keep what fits (the extent says how much
        // of it is file data).
        Err(e) if e.status == TINFLStatus::HasMoreOutput => Ok(e.output),
        Err(e) => Err(format!("zlib: {:?}", e.status)),
    }
}

fn zstd(src: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
    use ruzstd::io::Read;
    let mut dec = FrameDecoder::new();
    dec.set_max_window_size(ZSTD_MAX_WINDOW);
    let mut input = src;
    dec.init(&mut input).map_err(|e| format!("zstd: {e}"))?;
    let mut out = alloc::vec![0u8; limit];
    let mut filled = 0usize;
    // One zstd block is at most 128 KiB, so asking for one block at a time keeps the
    // decoder's buffer bounded whatever the frame claims.
    while filled < limit {
        let done = dec
            .decode_blocks(&mut input, BlockDecodingStrategy::UptoBlocks(1))
            .map_err(|e| format!("zstd: {e}"))?;
        while let Some(rest) = out.get_mut(filled..).filter(|r| !r.is_empty()) {
            let n = dec.read(rest).map_err(|e| format!("zstd: {e:?}"))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if done {
            break;
        }
    }
    out.truncate(filled);
    Ok(out)
}

/// btrfs lzo: a LE32 total length, then segments of (LE32 length, LZO1X stream), each
/// decoding to at most one sector; a segment header never straddles a sector boundary
/// (up to 3 zero bytes pad the sector instead).
fn lzo_segments(src: &[u8], limit: usize, sectorsize: usize) -> Result<Vec<u8>, String> {
    let total = le32(src, 0).ok_or("lzo: missing header")? as usize;
    if total < 4 || total > src.len() {
        return Err(format!(
            "lzo: total length {total} outside the {} stored bytes",
            src.len()
        ));
    }
    let mut out = Vec::with_capacity(limit + sectorsize);
    let mut pos = 4usize;
    while pos < total && out.len() < limit {
        let left_in_sector = sectorsize - pos % sectorsize;
        if left_in_sector < 4 {
            pos += left_in_sector;
            continue;
        }
        let seg = le32(src, pos).ok_or("lzo: truncated segment header")? as usize;
        pos += 4;
        let end = pos
            .checked_add(seg)
            .filter(|&e| e <= total && seg > 0)
            .ok_or_else(|| format!("lzo: segment of {seg} bytes at {pos} overruns the extent"))?;
        let data = src.get(pos..end).ok_or("lzo: truncated segment")?;
        // Each segment decodes to at most one sector; the last may hold more than the
        // file needs, which the caller's truncation drops.
        lzo::decompress(data, &mut out, sectorsize)
            .map_err(|e| format!("lzo: segment at {pos}: {e}"))?;
        pos = end;
    }
    out.truncate(limit);
    Ok(out)
}
