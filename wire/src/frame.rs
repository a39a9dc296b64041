//! Frames: a little-endian `u32` body length, then a postcard body of that length.
//!
//! Each side treats the other as untrusted: a length over [`MAX_FRAME`] is refused before
//! anything is allocated, and a body that does not decode is an error, never a panic.

use alloc::vec::Vec;
use core::fmt;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest frame body either side accepts: one [`crate::MAX_CHUNK`] of data plus room
/// for the message around it (paths, listings).
pub const MAX_FRAME: u32 = crate::MAX_CHUNK + (1 << 20);

/// Size of the length prefix.
pub const HEADER: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix announces more than [`MAX_FRAME`] bytes.
    TooLarge(u32),
    /// The body is not a valid message.
    Malformed,
    /// The message is too large to send (encodes to more than [`MAX_FRAME`]).
    Encode,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge(n) => {
                write!(f, "frame of {n} bytes exceeds the {MAX_FRAME}-byte limit")
            }
            FrameError::Malformed => f.write_str("malformed frame body"),
            FrameError::Encode => f.write_str("message cannot be encoded in one frame"),
        }
    }
}

impl core::error::Error for FrameError {}

/// Encodes `msg` as a whole frame (length prefix included).
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0; HEADER]);
    let mut out = postcard::to_extend(msg, out).map_err(|_| FrameError::Encode)?;
    let body = out.len() - HEADER;
    let len = u32::try_from(body)
        .ok()
        .filter(|&n| n <= MAX_FRAME)
        .ok_or(FrameError::Encode)?;
    out[..HEADER].copy_from_slice(&len.to_le_bytes());
    Ok(out)
}

/// The frame of `ToHost::Reply { id, result: Ok(Reply::Data(data)) }` up to the data
/// bytes, for a `len`-byte `data`: the sender transmits this prefix and then the data
/// from wherever it lies (the appliance: straight from the buffer the disk was read
/// into), so bulk bytes are never copied into an encoded frame. The concatenation is
/// exactly [`encode_frame`] of the whole message.
pub fn data_reply_prefix(id: u64, len: usize) -> Result<Vec<u8>, FrameError> {
    let empty = crate::ToHost::Reply {
        id,
        result: Ok(crate::Reply::Data(crate::Bytes(Vec::new()))),
    };
    let mut out = encode_frame(&empty)?;
    // The message ends with the data's length, a varint 0: one byte.
    if out.pop() != Some(0) {
        return Err(FrameError::Encode);
    }
    let mut n = len;
    loop {
        // Low 7 bits first, high bit set while more follow (postcard's varint).
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    let body = (out.len() - HEADER)
        .checked_add(len)
        .and_then(|b| u32::try_from(b).ok())
        .filter(|&b| b <= MAX_FRAME)
        .ok_or(FrameError::Encode)?;
    out[..HEADER].copy_from_slice(&body.to_le_bytes());
    Ok(out)
}

/// Checks a length prefix before the body is read or allocated.
pub fn check_len(header: [u8; HEADER]) -> Result<usize, FrameError> {
    let n = u32::from_le_bytes(header);
    if n > MAX_FRAME {
        return Err(FrameError::TooLarge(n));
    }
    // OK: MAX_FRAME fits in usize on every target we build for (>= 32-bit).
    Ok(n as usize)
}

/// Decodes a frame body. Trailing bytes after the message are refused too.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let (msg, rest) = postcard::take_from_bytes(body).map_err(|_| FrameError::Malformed)?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed);
    }
    Ok(msg)
}

/// Incremental frame reassembly for a byte stream that arrives in pieces (the appliance's
/// console queue). Push bytes in; take whole bodies out.
#[derive(Default)]
pub struct FrameReader {
    header: [u8; HEADER],
    have_header: usize,
    body: Vec<u8>,
    want: usize,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes bytes from `input` until one frame is complete or `input` is exhausted.
    /// Returns how many bytes were used and the body when a frame completed. After an
    /// error the stream is out of sync and the reader must not be used again.
    pub fn push(&mut self, input: &[u8]) -> Result<(usize, Option<Vec<u8>>), FrameError> {
        let mut used = 0;
        if self.have_header < HEADER {
            let take = (HEADER - self.have_header).min(input.len());
            self.header[self.have_header..self.have_header + take].copy_from_slice(&input[..take]);
            self.have_header += take;
            used += take;
            if self.have_header < HEADER {
                return Ok((used, None));
            }
            self.want = check_len(self.header)?;
            self.body = Vec::new();
            // Allocation happens here only after the length passed the check.
            self.body.reserve_exact(self.want);
        }
        let rest = &input[used..];
        let take = (self.want - self.body.len()).min(rest.len());
        self.body.extend_from_slice(&rest[..take]);
        used += take;
        if self.body.len() == self.want {
            self.have_header = 0;
            return Ok((used, Some(core::mem::take(&mut self.body))));
        }
        Ok((used, None))
    }

    /// True when no partial frame is buffered.
    pub fn is_idle(&self) -> bool {
        self.have_header == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn roundtrip<T: Serialize + DeserializeOwned + PartialEq + core::fmt::Debug>(msg: T) {
        let f = encode_frame(&msg).unwrap();
        let n = check_len(f[..4].try_into().unwrap()).unwrap();
        assert_eq!(n, f.len() - 4);
        assert_eq!(decode::<T>(&f[4..]).unwrap(), msg);
    }

    #[test]
    fn data_reply_prefix_matches_encode() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 1 << 20] {
            for id in [0u64, 1, 300, u64::MAX] {
                let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let whole = encode_frame(&ToHost::Reply {
                    id,
                    result: Ok(Reply::Data(Bytes(data.clone()))),
                })
                .unwrap();
                let mut parts = data_reply_prefix(id, len).unwrap();
                parts.extend_from_slice(&data);
                assert_eq!(parts, whole, "len {len} id {id}");
            }
        }
        assert!(data_reply_prefix(1, MAX_FRAME as usize).is_err());
    }

    #[test]
    fn messages_roundtrip() {
        roundtrip(Call {
            id: 7,
            request: Request::PreadDevice {
                device: "/dev/sda".to_string(),
                offset: 1 << 40,
                len: 4096,
            },
        });
        roundtrip(ToHost::Hello(Hello {
            version: PROTOCOL_VERSION,
            devices: vec![Device {
                name: "/dev/sda".to_string(),
                size: 10 << 20,
                readonly: true,
            }],
        }));
        roundtrip(ToHost::Reply {
            id: 3,
            result: Ok(Reply::Data(Bytes(vec![1, 2, 3, 255]))),
        });
        roundtrip(ToHost::Reply {
            id: 4,
            result: Err(Error::new(ErrorKind::NotFound, "/etc/nope")),
        });
        roundtrip(ToHost::Panic("boom".to_string()));
    }

    #[test]
    fn bytes_encode_as_length_plus_payload() {
        let data = vec![0xAB; 1000];
        let f = encode_frame(&Reply::Data(Bytes(data))).unwrap();
        // header + variant tag + 2-byte varint length + payload
        assert_eq!(f.len(), 4 + 1 + 2 + 1000);
    }

    #[test]
    fn oversize_length_refused_before_allocation() {
        let mut r = FrameReader::new();
        let hdr = (MAX_FRAME + 1).to_le_bytes();
        assert_eq!(r.push(&hdr), Err(FrameError::TooLarge(MAX_FRAME + 1)));
        assert_eq!(
            check_len(u32::MAX.to_le_bytes()),
            Err(FrameError::TooLarge(u32::MAX))
        );
    }

    #[test]
    fn truncated_frame_is_incomplete_not_an_error() {
        let f = encode_frame(&Call {
            id: 1,
            request: Request::Devices,
        })
        .unwrap();
        let mut r = FrameReader::new();
        let (used, got) = r.push(&f[..f.len() - 1]).unwrap();
        assert_eq!(used, f.len() - 1);
        assert!(got.is_none());
        assert!(!r.is_idle());
        // A truncated body handed to decode is malformed, not a panic.
        assert_eq!(
            decode::<Call>(&f[4..f.len() - 1]),
            Err(FrameError::Malformed)
        );
    }

    #[test]
    fn frames_split_anywhere_reassemble() {
        let a = encode_frame(&Call {
            id: 1,
            request: Request::Ping,
        })
        .unwrap();
        let b = encode_frame(&Call {
            id: 2,
            request: Request::WriteFile {
                path: "/x".to_string(),
                offset: 0,
                data: Bytes(vec![9; 300]),
                truncate: true,
                mode: 0o644,
            },
        })
        .unwrap();
        let stream: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        for chunk in 1..stream.len() {
            let mut r = FrameReader::new();
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                let mut piece = piece;
                while !piece.is_empty() {
                    let (used, got) = r.push(piece).unwrap();
                    piece = &piece[used..];
                    if let Some(body) = got {
                        out.push(decode::<Call>(&body).unwrap().id);
                    }
                }
            }
            assert_eq!(out, vec![1, 2], "chunk size {chunk}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        // Deterministic pseudo-random garbage through every decoder.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..2000usize {
            let mut buf = Vec::with_capacity(len % 97);
            for _ in 0..(len % 97) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            let _ = decode::<Call>(&buf);
            let _ = decode::<ToHost>(&buf);
            let mut r = FrameReader::new();
            let _ = r.push(&buf);
        }
    }

    #[test]
    fn trailing_bytes_refused() {
        let mut f = encode_frame(&Call {
            id: 1,
            request: Request::Ping,
        })
        .unwrap();
        f.push(0);
        assert_eq!(decode::<Call>(&f[4..]), Err(FrameError::Malformed));
    }
}
