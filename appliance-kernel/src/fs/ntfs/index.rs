//! Directory indexes ($I30): index nodes (in the $INDEX_ROOT value or an INDX block of
//! $INDEX_ALLOCATION) and the $UpCase collation Windows sorts and looks names up with.

use super::corrupt;
use super::raw::{le16, le32, le64, utf16_units};
use crate::fs::FsResult;
use alloc::format;
use alloc::vec::Vec;
use core::cmp::Ordering;

/// $FILE_NAME namespaces.
pub const NS_DOS: u8 = 2;

const ENTRY_SUBNODE: u16 = 0x01;
const ENTRY_LAST: u16 = 0x02;

/// One index entry of a $I30 node.
#[derive(Debug, Clone)]
pub struct Entry {
    /// MFT record number the entry names (sequence number dropped).
    pub record: u64,
    pub name: Vec<u16>,
    pub namespace: u8,
    /// VCN of the child node holding the names sorted before this one.
    pub subnode: Option<u64>,
    /// The end marker (no name).
    pub last: bool,
}

/// The entries of the node whose header starts at `node` in `buf`, up to and including
/// the end entry (a node without one is `Corrupt`).
pub fn parse_node(buf: &[u8], node: usize, what: &str) -> FsResult<Vec<Entry>> {
    let bad = |m: &str| corrupt(format!("{what}: {m}"));
    let first = le32(buf, node).ok_or_else(|| bad("truncated index node header"))? as usize;
    let used = le32(buf, node + 4).ok_or_else(|| bad("truncated index node header"))? as usize;
    let start = node
        .checked_add(first)
        .ok_or_else(|| bad("bad entries offset"))?;
    let end = node
        .checked_add(used)
        .ok_or_else(|| bad("bad index length"))?;
    if end > buf.len() || start > end {
        return Err(bad("index entries outside the node"));
    }
    let mut out = Vec::new();
    let mut pos = start;
    while pos < end {
        let len = usize::from(le16(buf, pos + 8).ok_or_else(|| bad("truncated entry"))?);
        let key_len = usize::from(le16(buf, pos + 10).ok_or_else(|| bad("truncated entry"))?);
        let flags = le16(buf, pos + 12).ok_or_else(|| bad("truncated entry"))?;
        let entry_end = pos
            .checked_add(len)
            .ok_or_else(|| bad("bad entry length"))?;
        if len < 16 || entry_end > end {
            return Err(bad("bad index entry length"));
        }
        let subnode = if flags & ENTRY_SUBNODE != 0 {
            if len < 24 {
                return Err(bad("bad index entry length"));
            }
            Some(le64(buf, entry_end - 8).ok_or_else(|| bad("truncated entry"))?)
        } else {
            None
        };
        if flags & ENTRY_LAST != 0 {
            out.push(Entry {
                record: 0,
                name: Vec::new(),
                namespace: 0,
                subnode,
                last: true,
            });
            return Ok(out);
        }
        let key = buf
            .get(pos + 16..pos + 16 + key_len)
            .filter(|_| 16 + key_len <= len)
            .ok_or_else(|| bad("index key outside its entry"))?;
        let name_len = usize::from(*key.get(0x40).ok_or_else(|| bad("short file name key"))?);
        let namespace = *key.get(0x41).ok_or_else(|| bad("short file name key"))?;
        let name = key
            .get(0x42..0x42 + 2 * name_len)
            .ok_or_else(|| bad("file name outside its key"))?;
        out.push(Entry {
            record: le64(buf, pos).ok_or_else(|| bad("truncated entry"))? & 0x0000_FFFF_FFFF_FFFF,
            name: utf16_units(name),
            namespace,
            subnode,
            last: false,
        });
        pos = entry_end;
    }
    // No end marker: the node is cut short.
    Err(bad("index node without an end entry"))
}

/// Windows' file name collation: code units compared after mapping through $UpCase.
pub fn cmp_ci(a: &[u16], b: &[u16], upcase: &[u16]) -> Ordering {
    let up = |u: u16| upcase.get(usize::from(u)).copied().unwrap_or(u);
    for (x, y) in a.iter().zip(b.iter()) {
        match up(*x).cmp(&up(*y)) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    #[test]
    fn collation() {
        // A table that only upcases ASCII.
        let up: Vec<u16> = (0..=0xFFFFu32)
            .map(|c| {
                let c = c as u16;
                if (b'a' as u16..=b'z' as u16).contains(&c) {
                    c - 32
                } else {
                    c
                }
            })
            .collect();
        assert_eq!(cmp_ci(&u("Config"), &u("CONFIG"), &up), Ordering::Equal);
        assert_eq!(cmp_ci(&u("abc"), &u("ABD"), &up), Ordering::Less);
        assert_eq!(cmp_ci(&u("ab"), &u("ABC"), &up), Ordering::Less);
        // '_' (0x5F) sorts after upcased letters, as on Windows.
        assert_eq!(cmp_ci(&u("a_"), &u("AZ"), &up), Ordering::Greater);
        // An empty table is the identity.
        assert_eq!(cmp_ci(&u("a"), &u("A"), &[]), Ordering::Greater);
    }

    #[test]
    fn hostile_nodes() {
        let mut b = vec![0u8; 64];
        // entries at 16, used 64: the entry has length 0.
        b[0] = 16;
        b[4] = 64;
        assert!(parse_node(&b, 0, "t").is_err());
        // used beyond the buffer.
        b[4] = 200;
        assert!(parse_node(&b, 0, "t").is_err());
        // A bare end entry.
        b[4] = 32;
        b[16 + 8] = 16;
        b[16 + 12] = ENTRY_LAST as u8;
        let e = parse_node(&b, 0, "t").unwrap();
        assert!(e.len() == 1 && e[0].last && e[0].subnode.is_none());
        assert!(parse_node(&b, 60, "t").is_err());
        assert!(parse_node(&b, usize::MAX - 2, "t").is_err());
    }
}
