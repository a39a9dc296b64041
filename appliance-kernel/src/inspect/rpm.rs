//! rpm package headers as the rpm databases store them (the "header blob"): a
//! big-endian index count `il` and data length `dl`, `il` 16-byte index entries
//! (tag, type, offset, count) and `dl` bytes of data store. Strings are NUL-terminated in
//! the store; an I18N string's first entry is the C locale's. Every offset and length is
//! checked against the blob.

use alloc::format;
use alloc::string::String;
use wire::{Application, Error, ErrorKind};

use super::clean;

pub const TAG_NAME: u32 = 1000;
pub const TAG_VERSION: u32 = 1001;
pub const TAG_RELEASE: u32 = 1002;
pub const TAG_EPOCH: u32 = 1003;
pub const TAG_SUMMARY: u32 = 1004;
pub const TAG_DESCRIPTION: u32 = 1005;
pub const TAG_INSTALLTIME: u32 = 1008;
pub const TAG_VENDOR: u32 = 1011;
pub const TAG_URL: u32 = 1020;
pub const TAG_ARCH: u32 = 1022;
pub const TAG_SOURCERPM: u32 = 1044;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// rpm's own bounds: at most 0xffff index entries and 256 MiB of data.
const MAX_ENTRIES: u32 = 0xffff;
const MAX_DATA: u32 = 0x0fff_ffff;
/// The largest header blob read from a database.
pub const MAX_BLOB: usize = 16 << 20;

fn corrupt(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Corrupt, what.into())
}

/// A parsed header blob: its index and store.
pub struct Header<'a> {
    index: &'a [u8],
    store: &'a [u8],
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes(s.try_into().ok()?))
}

impl<'a> Header<'a> {
    /// Checks the blob's framing (`il`, `dl`, sizes).
    pub fn parse(blob: &'a [u8]) -> Result<Self, Error> {
        let il = be32(blob, 0).ok_or_else(|| corrupt("rpm header: shorter than 8 bytes"))?;
        let dl = be32(blob, 4).ok_or_else(|| corrupt("rpm header: shorter than 8 bytes"))?;
        if il == 0 || il > MAX_ENTRIES || dl > MAX_DATA {
            return Err(corrupt(format!(
                "rpm header: {il} index entries, {dl} data bytes"
            )));
        }
        let ilen = (il as usize) * 16;
        let end = 8usize
            .checked_add(ilen)
            .and_then(|x| x.checked_add(dl as usize))
            .ok_or_else(|| corrupt("rpm header: size overflow"))?;
        if end > blob.len() {
            return Err(corrupt(format!(
                "rpm header: needs {end} bytes, the blob has {}",
                blob.len()
            )));
        }
        Ok(Header {
            index: blob.get(8..8 + ilen).ok_or_else(|| corrupt("rpm header"))?,
            store: blob
                .get(8 + ilen..end)
                .ok_or_else(|| corrupt("rpm header"))?,
        })
    }

    /// The first entry with `tag`: (type, offset, count).
    fn entry(&self, tag: u32) -> Option<(u32, usize, u32)> {
        self.index.chunks_exact(16).find_map(|e| {
            (be32(e, 0)? == tag).then(|| Some((be32(e, 4)?, be32(e, 8)? as usize, be32(e, 12)?)))?
        })
    }

    /// A string tag (STRING, or the first of an I18N string / string array).
    pub fn string(&self, tag: u32) -> Option<&'a [u8]> {
        let (ty, off, count) = self.entry(tag)?;
        if !matches!(ty, TYPE_STRING | TYPE_I18NSTRING | TYPE_STRING_ARRAY) || count == 0 {
            return None;
        }
        let s = self.store.get(off..)?;
        let n = s.iter().position(|&b| b == 0)?;
        s.get(..n)
    }

    /// The first value of an INT32 tag.
    pub fn int32(&self, tag: u32) -> Option<u32> {
        let (ty, off, count) = self.entry(tag)?;
        if ty != TYPE_INT32 || count == 0 {
            return None;
        }
        be32(self.store, off)
    }

    /// The application this header describes; `None` without a name, version and
    /// release.
    pub fn application(&self) -> Option<Application> {
        let s = |tag| {
            self.string(tag)
                .map(|b| clean(b, false))
                .unwrap_or_default()
        };
        let name = s(TAG_NAME);
        let version = s(TAG_VERSION);
        let release = s(TAG_RELEASE);
        if name.is_empty()
            || self.string(TAG_VERSION).is_none()
            || self.string(TAG_RELEASE).is_none()
        {
            return None;
        }
        Some(Application {
            name,
            epoch: self.int32(TAG_EPOCH).unwrap_or(0),
            version,
            release,
            arch: s(TAG_ARCH),
            url: s(TAG_URL),
            source_package: s(TAG_SOURCERPM),
            summary: s(TAG_SUMMARY),
            description: self
                .string(TAG_DESCRIPTION)
                .map(|b| clean(b, true))
                .unwrap_or_default(),
            vendor: s(TAG_VENDOR),
            install_time: self.int32(TAG_INSTALLTIME).map(i64::from),
            ..Application::default()
        })
    }
}

/// Parses a header blob into an application: `Err` when the blob is malformed, `Ok(None)`
/// when it lacks a name, version or release.
pub fn application(blob: &[u8]) -> Result<Option<Application>, Error> {
    Ok(Header::parse(blob)?.application())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A header blob with the given (tag, type, data) entries.
    pub fn blob(entries: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut store = Vec::new();
        for (tag, ty, data) in entries {
            while *ty == TYPE_INT32 && store.len() % 4 != 0 {
                store.push(0);
            }
            index.extend(tag.to_be_bytes());
            index.extend(ty.to_be_bytes());
            index.extend((store.len() as u32).to_be_bytes());
            index.extend(1u32.to_be_bytes());
            store.extend_from_slice(data);
        }
        let mut b = Vec::new();
        b.extend((entries.len() as u32).to_be_bytes());
        b.extend((store.len() as u32).to_be_bytes());
        b.extend(index);
        b.extend(store);
        b
    }

    #[test]
    fn header_fields_and_bounds() {
        let b = blob(&[
            (TAG_NAME, TYPE_STRING, b"bash\0"),
            (TAG_VERSION, TYPE_STRING, b"5.2\0"),
            (TAG_RELEASE, TYPE_STRING, b"1.fc40\0"),
            (TAG_EPOCH, TYPE_INT32, &2u32.to_be_bytes()),
            (TAG_SUMMARY, TYPE_I18NSTRING, b"The shell\0"),
        ]);
        let a = application(&b).unwrap().unwrap();
        assert_eq!(
            (
                a.name.as_str(),
                a.version.as_str(),
                a.release.as_str(),
                a.epoch
            ),
            ("bash", "5.2", "1.fc40", 2)
        );
        assert_eq!(a.summary, "The shell");
        for cut in 0..b.len() {
            let _ = application(&b[..cut]);
        }
        assert!(application(&b[..b.len() - 1]).is_err());
        // An offset beyond the store: the field is absent, not a panic.
        let mut bad = b.clone();
        bad[8 + 8..8 + 12].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        assert!(application(&bad).unwrap().is_none());
    }
}
