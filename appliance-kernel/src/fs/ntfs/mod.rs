//! NTFS, read-only: our own reader (the `ntfs` crate 0.4 has no compression, no reparse
//! points and slices records with unchecked indexing; see the commit that added this).
//!
//! What is read: resident, non-resident, sparse and LZNT1-compressed data, attribute lists
//! (files and a fragmented $MFT), $I30 directory indexes (root + allocation), Interix
//! symlinks (what ntfs-3g creates) and reparse-point symlinks and junctions.
//! Update sequence arrays are checked on every MFT record and index block.
//!
//! Presentation follows ntfs-3g with default mount options (what libguestfs shows):
//! - mode 0777 for files, directories and symlinks; uid/gid 0;
//! - `ino` is the MFT record number; `nlink` is the record's link count (a DOS 8.3 alias
//!   counts, as ntfs-3g shows it), 1 for directories (as ntfs-3g reports);
//! - mtime/atime/ctime are $STANDARD_INFORMATION's data change, access and MFT change
//!   times (100 ns since 1601 → Unix seconds);
//! - a directory's size is its $I30 index allocation's size (0 when the index is only
//!   resident), a symlink's the length of its target;
//! - listings hide DOS-only (8.3) names and the metafiles (records below 16: `$MFT`,
//!   `$Extend`, the root's `.`), as ntfs-3g and ntfsls do; lookups still find 8.3 names
//!   and metafiles by name;
//! - names are looked up case-insensitively through the volume's $UpCase table, an exact
//!   case match winning over other case-insensitive matches; listings show the real case;
//! - symlink targets: relative symlinks keep their path with `/` separators; junctions and
//!   absolute symlinks to `\??\X:\path` are taken to point into this volume (ntfs-3g
//!   maps a junction to `<mountpoint>/path`) and shown as the relative path from the link's
//!   directory to `/path`, which resolves the same wherever the volume is mounted; other
//!   targets keep their text without the `\??\` prefix and with `/` separators
//!   (`Volume{guid}/dir`, a UNC path as `//server/share/path`): dangling links.
//!   Other reparse tags (dedup, WOF, cloud files) are shown as the plain file or directory.
//!
//! Caches, all bounded: 64 KiB chunks of the MFT (16), parsed MFT records (32), index
//! blocks (32), the last decompressed compression unit, $UpCase (read once at mount), the
//! free-space counts (once), and the file last read.

mod index;
mod lznt1;
mod raw;
#[cfg(test)]
mod tests;

use super::{FileSystem, FsResult};
use crate::block::SharedDevice;
use alloc::boxed::Box;
use alloc::collections::{BTreeSet, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use index::{Entry, NS_DOS, cmp_ci, parse_node};
use raw::*;
use wire::{DirEntry, Error, ErrorKind, FileType, Stat, StatVfs};

/// `Corrupt` with the structure named.
pub(crate) fn corrupt(msg: impl core::fmt::Display) -> Error {
    Error::new(ErrorKind::Corrupt, format!("ntfs: {msg}"))
}

fn read_only() -> Error {
    Error::new(
        ErrorKind::ReadOnly,
        "ntfs: filesystem is read-only (skiff does not write NTFS)",
    )
}

const ROOT: u64 = 5;
const MFT_BITMAP_FILE: u64 = 6;
const UPCASE_FILE: u64 = 10;
const VOLUME_FILE: u64 = 3;
/// Records below this are metafiles, hidden from listings.
const FIRST_USER: u64 = 16;
const I30: [u16; 4] = [b'$' as u16, b'I' as u16, b'3' as u16, b'0' as u16];

const TAG_SYMLINK: u32 = 0xA000_000C;
const TAG_MOUNT_POINT: u32 = 0xA000_0003;
const SYMLINK_RELATIVE: u32 = 1;
const INTERIX_LINK: &[u8; 8] = b"IntxLNK\x01";

/// MFT bytes read and cached per device request.
const MFT_CHUNK: u64 = 64 * 1024;
/// Extension records one file may have (its attribute list).
const MAX_EXTENSIONS: usize = 4096;
/// Files with more runs than this are not kept in the record cache.
const MAX_CACHED_RUNS: usize = 4096;
/// Largest metadata value read whole (attribute lists, reparse data, $UpCase).
const MAX_META: u64 = 1 << 20;
/// Most entries one directory may list.
const MAX_DIR_ENTRIES: usize = 1 << 18;
/// Symlinks followed while resolving one path.
const MAX_HOPS: usize = 40;
/// Largest compression unit (Windows uses 16 clusters of at most 4 KiB).
const MAX_UNIT: u64 = 1 << 20;
/// Bytes per device request when counting bitmap bits.
const BITMAP_CHUNK: usize = 256 * 1024;

/// A tiny least-recently-used cache (front = newest).
struct Lru<K, V> {
    cap: usize,
    items: VecDeque<(K, V)>,
}

impl<K: PartialEq, V> Lru<K, V> {
    fn new(cap: usize) -> Self {
        Lru {
            cap,
            items: VecDeque::new(),
        }
    }
    fn get(&mut self, k: &K) -> Option<&V> {
        let i = self.items.iter().position(|(key, _)| key == k)?;
        let item = self.items.remove(i)?;
        self.items.push_front(item);
        self.items.front().map(|(_, v)| v)
    }
    fn put(&mut self, k: K, v: V) {
        if let Some(i) = self.items.iter().position(|(key, _)| *key == k) {
            self.items.remove(i);
        }
        self.items.push_front((k, v));
        self.items.truncate(self.cap);
    }
    fn clear(&mut self) {
        self.items.clear();
    }
}

/// A non-resident attribute value: the merged run list of all its extents.
#[derive(Debug, Clone)]
struct NonRes {
    runs: Vec<Run>,
    size: u64,
    init: u64,
    /// log2 of clusters per compression unit, 0 when not compressed.
    cu: u8,
}

#[derive(Debug, Clone)]
enum Stream {
    Resident(Vec<u8>),
    NonResident(NonRes),
}

impl Stream {
    fn size(&self) -> u64 {
        match self {
            Stream::Resident(v) => v.len() as u64,
            Stream::NonResident(n) => n.size,
        }
    }
}

/// One file: the attributes of its base record and extension records, non-resident
/// extents merged.
struct Inode {
    rec: u64,
    flags: u16,
    link_count: u16,
    attrs: Vec<RawAttr>,
}

/// What a file is shown as.
enum Kind {
    Dir,
    File,
    Symlink(String),
}

impl Inode {
    fn attr(&self, ty: u32, name: &[u16]) -> Option<&RawAttr> {
        self.attrs.iter().find(|a| a.ty == ty && a.name == name)
    }

    fn is_dir(&self) -> bool {
        self.flags & MFT_DIRECTORY != 0
    }

    fn what(&self) -> String {
        format!("MFT record {}", self.rec)
    }

    /// An attribute's value as a stream.
    fn stream(&self, ty: u32, name: &[u16]) -> FsResult<Option<Stream>> {
        let Some(a) = self.attr(ty, name) else {
            return Ok(None);
        };
        Ok(Some(match &a.value {
            RawValue::Resident(v) => Stream::Resident(v.clone()),
            RawValue::NonResident {
                runs,
                data_size,
                init_size,
                compression_unit,
                ..
            } => {
                let cu = if a.flags & ATTR_COMPRESSED != 0 {
                    if *compression_unit == 0 {
                        return Err(corrupt(format!(
                            "{}: compressed attribute without a compression unit",
                            self.what()
                        )));
                    }
                    *compression_unit
                } else {
                    0
                };
                Stream::NonResident(NonRes {
                    runs: runs.clone(),
                    size: *data_size,
                    init: (*init_size).min(*data_size),
                    cu,
                })
            }
        }))
    }

    /// $STANDARD_INFORMATION: (mtime, atime, ctime, file attributes).
    fn std_info(&self) -> (i64, i64, i64, u32) {
        let v = match self.attr(AT_STANDARD_INFORMATION, &[]).map(|a| &a.value) {
            Some(RawValue::Resident(v)) => v.as_slice(),
            _ => &[],
        };
        let t = |o| le64(v, o).map_or(0, ntfs_time_to_unix);
        (t(0x08), t(0x18), t(0x10), le32(v, 0x20).unwrap_or(0))
    }

    /// The link count ntfs-3g shows: the record's, at least 1.
    fn nlink(&self) -> u32 {
        u32::from(self.link_count.max(1))
    }
}

/// Merges non-resident extents (split over extension records) into their attribute.
fn merge(attrs: Vec<RawAttr>, what: &str) -> FsResult<Vec<RawAttr>> {
    let mut out: Vec<RawAttr> = Vec::new();
    let mut ext: Vec<RawAttr> = Vec::new();
    for a in attrs {
        match &a.value {
            RawValue::NonResident { lowest_vcn, .. } if *lowest_vcn != 0 => ext.push(a),
            _ => out.push(a),
        }
    }
    ext.sort_by_key(|a| match &a.value {
        RawValue::NonResident { lowest_vcn, .. } => *lowest_vcn,
        RawValue::Resident(_) => 0,
    });
    for e in ext {
        let RawValue::NonResident {
            lowest_vcn,
            runs: more,
            end_vcn: more_end,
            ..
        } = e.value
        else {
            continue;
        };
        let target = out.iter_mut().find(|a| {
            a.ty == e.ty
                && a.name == e.name
                && matches!(&a.value, RawValue::NonResident { end_vcn, .. } if *end_vcn == lowest_vcn)
        });
        let Some(RawAttr {
            value: RawValue::NonResident { runs, end_vcn, .. },
            ..
        }) = target
        else {
            return Err(corrupt(format!(
                "{what}: extent at VCN {lowest_vcn} of attribute {:#x} continues nothing",
                e.ty
            )));
        };
        if runs.len() + more.len() > MAX_RUNS {
            return Err(corrupt(format!("{what}: too many runs")));
        }
        runs.extend(more);
        *end_vcn = more_end;
    }
    Ok(out)
}

/// Reads `buf.len()` bytes of a run list's clusters starting at byte `off` of the
/// stream: each run's part in one device request, holes as zeros.
fn read_runs(
    dev: &SharedDevice,
    geo: &Geometry,
    runs: &[Run],
    off: u64,
    buf: &mut [u8],
    what: &str,
) -> FsResult<()> {
    let cs = geo.cluster_size;
    let mut pos = off;
    let mut done = 0usize;
    while done < buf.len() {
        let vcn = pos / cs;
        let within = pos % cs;
        let i = runs.partition_point(|r| r.end() <= vcn);
        let run = runs
            .get(i)
            .filter(|r| r.vcn <= vcn)
            .ok_or_else(|| corrupt(format!("{what}: VCN {vcn} is not mapped by the run list")))?;
        let left_in_run = (run.end() - vcn).saturating_mul(cs).saturating_sub(within);
        let n = usize::try_from(left_in_run).map_or(buf.len() - done, |l| l.min(buf.len() - done));
        let dst = buf
            .get_mut(done..done + n)
            .ok_or_else(|| corrupt(format!("{what}: read range")))?;
        match run.lcn {
            None => dst.fill(0),
            Some(lcn) => {
                let byte = (lcn + (vcn - run.vcn))
                    .checked_mul(cs)
                    .and_then(|b| b.checked_add(within))
                    .ok_or_else(|| corrupt(format!("{what}: cluster offset overflows")))?;
                dev.borrow_mut().read_at(byte, dst)?;
            }
        }
        done += n;
        pos += n as u64;
    }
    Ok(())
}

/// Reads an uncompressed stream range (the caller clipped it to the stream's size):
/// bytes past the initialized size read as zeros.
fn read_plain(
    dev: &SharedDevice,
    geo: &Geometry,
    s: &Stream,
    off: u64,
    buf: &mut [u8],
    what: &str,
) -> FsResult<()> {
    match s {
        Stream::Resident(v) => {
            let start = usize::try_from(off).unwrap_or(usize::MAX);
            let src = start
                .checked_add(buf.len())
                .and_then(|e| v.get(start..e))
                .ok_or_else(|| corrupt(format!("{what}: read past a resident value")))?;
            buf.copy_from_slice(src);
            Ok(())
        }
        Stream::NonResident(n) => {
            let init_left = n.init.saturating_sub(off);
            let real = usize::try_from(init_left).map_or(buf.len(), |l| l.min(buf.len()));
            let (head, tail) = buf.split_at_mut(real);
            tail.fill(0);
            read_runs(dev, geo, &n.runs, off, head, what)
        }
    }
}

/// Bits set in the first `nbits` bits of `bytes` (a bitmap chunk).
fn count_bits(bytes: &[u8], nbits: u64) -> u64 {
    let full = usize::try_from(nbits / 8)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let (whole, _) = bytes.split_at(full);
    let mut n: u64 = 0;
    let words = whole.chunks_exact(8);
    let rest = words.remainder();
    for w in words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        n += u64::from(u64::from_le_bytes(a).count_ones());
    }
    n += rest.iter().map(|b| u64::from(b.count_ones())).sum::<u64>();
    let extra = nbits % 8;
    if extra != 0
        && let Some(b) = bytes.get(full)
    {
        n += u64::from((b & ((1u8 << extra) - 1)).count_ones());
    }
    n
}

/// Converts a reparse point's substitute name to the target shown (see the module docs).
/// `depth`: how many directories the link's directory lies below the root.
fn translate_target(sub: &str, relative: bool, depth: usize) -> String {
    if relative {
        return sub.replace('\\', "/");
    }
    let s = sub
        .strip_prefix("\\??\\")
        .or_else(|| sub.strip_prefix("\\\\?\\"))
        .unwrap_or(sub);
    let b = s.as_bytes();
    let drive = b.first().is_some_and(u8::is_ascii_alphabetic)
        && b.get(1) == Some(&b':')
        && matches!(b.get(2), None | Some(b'\\'));
    if drive {
        let rest: Vec<&str> = s
            .get(2..)
            .unwrap_or("")
            .split('\\')
            .filter(|c| !c.is_empty())
            .collect();
        let mut out = "../".repeat(depth);
        out.push_str(&rest.join("/"));
        let out = out.trim_end_matches('/');
        return if out.is_empty() {
            String::from(".")
        } else {
            out.to_string()
        };
    }
    if let Some(unc) = s.strip_prefix("UNC\\") {
        return format!("//{}", unc.replace('\\', "/"));
    }
    s.replace('\\', "/")
}

/// The target of a symlink or junction reparse buffer; `None` for other tags.
fn reparse_target(buf: &[u8], depth: usize) -> Option<String> {
    let tag = le32(buf, 0)?;
    let len = usize::from(le16(buf, 4)?);
    let data = buf.get(8..8 + len)?;
    let (paths, relative) = match tag {
        TAG_SYMLINK => (data.get(12..)?, le32(data, 8)? & SYMLINK_RELATIVE != 0),
        TAG_MOUNT_POINT => (data.get(8..)?, false),
        _ => return None,
    };
    let name = |o: usize| -> Option<String> {
        let off = usize::from(le16(data, o)?);
        let n = usize::from(le16(data, o + 2)?);
        let units = utf16_units(paths.get(off..off.checked_add(n)?)?);
        Some(utf16_to_string(&units))
    };
    let sub = name(0).filter(|s| !s.is_empty()).or_else(|| name(4))?;
    let sub = sub.trim_end_matches('\0');
    if sub.is_empty() {
        return None;
    }
    Some(translate_target(sub, relative, depth))
}

/// A mounted NTFS volume.
pub struct NtfsFs {
    dev: SharedDevice,
    geo: Geometry,
    /// $MFT's unnamed $DATA.
    mft: NonRes,
    upcase: Vec<u16>,
    label: Option<String>,
    mft_chunks: Lru<u64, Vec<u8>>,
    inodes: Lru<u64, Rc<Inode>>,
    blocks: Lru<(u64, u64), Rc<Vec<u8>>>,
    /// (record, unit index) → decompressed bytes.
    unit: Option<((u64, u64), Vec<u8>)>,
    statvfs: Option<StatVfs>,
    /// The file last read: path → its inode.
    last_read: Option<(String, Rc<Inode>)>,
}

/// Mounts an NTFS volume read-only (NTFS is never written).
pub fn mount(dev: SharedDevice, _readonly: bool) -> FsResult<Box<dyn FileSystem>> {
    Ok(Box::new(NtfsFs::open(dev)?))
}

/// The volume label as blkid reports it (from $Volume's $VOLUME_NAME), read the way blkid
/// does: the $Volume record at its fixed place after the start of the MFT.
pub fn volume_label(dev: &SharedDevice) -> Option<String> {
    let mut boot = [0u8; 512];
    dev.try_borrow_mut().ok()?.read_at(0, &mut boot).ok()?;
    let geo = Geometry::parse(&boot).ok()?;
    let rs = geo.record_size as u64;
    let off = geo
        .mft_lcn
        .checked_mul(geo.cluster_size)?
        .checked_add(VOLUME_FILE * rs)?;
    let mut rec = vec![0u8; geo.record_size];
    dev.try_borrow_mut().ok()?.read_at(off, &mut rec).ok()?;
    apply_fixups(&mut rec, b"FILE", "$Volume").ok()?;
    let mut attrs = Vec::new();
    parse_attrs(&rec, geo.total_clusters, &mut attrs, "$Volume").ok()?;
    label_of(&attrs)
}

fn label_of(attrs: &[RawAttr]) -> Option<String> {
    let a = attrs.iter().find(|a| a.ty == AT_VOLUME_NAME)?;
    match &a.value {
        RawValue::Resident(v) => {
            let s = utf16_to_string(&utf16_units(v));
            (!s.is_empty()).then_some(s)
        }
        RawValue::NonResident { .. } => None,
    }
}

impl NtfsFs {
    /// Opens the volume: boot sector, $MFT (with its attribute list), $UpCase, the root.
    pub fn open(dev: SharedDevice) -> FsResult<Self> {
        let mut boot = [0u8; 512];
        dev.borrow_mut().read_at(0, &mut boot)?;
        let geo = Geometry::parse(&boot)?;
        // Record 0 from its fixed place gives the first extent of $MFT's data.
        let mut rec0 = vec![0u8; geo.record_size];
        let off = geo
            .mft_lcn
            .checked_mul(geo.cluster_size)
            .ok_or_else(|| corrupt("boot sector: MFT offset overflows"))?;
        dev.borrow_mut().read_at(off, &mut rec0)?;
        apply_fixups(&mut rec0, b"FILE", "MFT record 0")?;
        let mut attrs = Vec::new();
        parse_attrs(&rec0, geo.total_clusters, &mut attrs, "MFT record 0")?;
        let first = attrs
            .iter()
            .find_map(|a| match &a.value {
                RawValue::NonResident {
                    lowest_vcn: 0,
                    runs,
                    data_size,
                    init_size,
                    ..
                } if a.ty == AT_DATA && a.name.is_empty() => Some(NonRes {
                    runs: runs.clone(),
                    size: *data_size,
                    init: *init_size,
                    cu: 0,
                }),
                _ => None,
            })
            .ok_or_else(|| corrupt("$MFT has no non-resident data"))?;
        let mut fs = NtfsFs {
            dev,
            geo,
            mft: first,
            upcase: Vec::new(),
            label: None,
            mft_chunks: Lru::new(16),
            inodes: Lru::new(32),
            blocks: Lru::new(32),
            unit: None,
            statvfs: None,
            last_read: None,
        };
        // The whole $MFT (extension records are read through the first extent).
        let mft = fs.inode(0)?;
        match mft.stream(AT_DATA, &[])? {
            Some(Stream::NonResident(n)) if n.cu == 0 => fs.mft = n,
            _ => return Err(corrupt("$MFT data is resident or compressed")),
        }
        fs.mft_chunks.clear();
        fs.inodes.clear();
        if fs.mft.size < FIRST_USER * fs.geo.record_size as u64 {
            return Err(corrupt("$MFT is smaller than its metafiles"));
        }
        let up = fs.inode(UPCASE_FILE)?;
        let up = fs.read_meta(&up, AT_DATA, &[], "$UpCase")?;
        fs.upcase = utf16_units(&up);
        fs.upcase.truncate(0x10000);
        let vol = fs.inode(VOLUME_FILE)?;
        fs.label = label_of(&vol.attrs);
        if !fs.inode(ROOT)?.is_dir() {
            return Err(corrupt("root directory (record 5) is not a directory"));
        }
        Ok(fs)
    }

    /// The volume label ($Volume's $VOLUME_NAME).
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The volume serial number (blkid's UUID).
    pub fn serial(&self) -> u64 {
        self.geo.serial
    }

    /// One MFT record, fixed up, through the MFT chunk cache.
    fn record(&mut self, n: u64) -> FsResult<Vec<u8>> {
        let rs = self.geo.record_size as u64;
        let what = format!("MFT record {n}");
        let off = n
            .checked_mul(rs)
            .filter(|o| o.checked_add(rs).is_some_and(|e| e <= self.mft.size))
            .ok_or_else(|| corrupt(format!("{what}: beyond the end of $MFT")))?;
        let chunk = off / MFT_CHUNK;
        if self.mft_chunks.get(&chunk).is_none() {
            let start = chunk * MFT_CHUNK;
            let len = MFT_CHUNK.min(self.mft.size - start);
            // OK to cast: at most MFT_CHUNK.
            let mut buf = vec![0u8; len as usize];
            let s = Stream::NonResident(self.mft.clone());
            read_plain(&self.dev, &self.geo, &s, start, &mut buf, "$MFT")?;
            self.mft_chunks.put(chunk, buf);
        }
        let data = self
            .mft_chunks
            .get(&chunk)
            .ok_or_else(|| corrupt("MFT cache"))?;
        // OK to cast: off % MFT_CHUNK < 64 KiB.
        let within = (off % MFT_CHUNK) as usize;
        let mut rec = data
            .get(within..within + self.geo.record_size)
            .ok_or_else(|| corrupt(format!("{what}: beyond the end of $MFT")))?
            .to_vec();
        apply_fixups(&mut rec, b"FILE", &what)?;
        Ok(rec)
    }

    /// A file's attributes: its base record plus, through $ATTRIBUTE_LIST, its
    /// extension records.
    fn inode(&mut self, n: u64) -> FsResult<Rc<Inode>> {
        if let Some(i) = self.inodes.get(&n) {
            return Ok(i.clone());
        }
        let what = format!("MFT record {n}");
        let rec = self.record(n)?;
        let h = record_header(&rec).ok_or_else(|| corrupt(format!("{what}: short")))?;
        if h.flags & MFT_IN_USE == 0 {
            return Err(corrupt(format!("{what}: not in use")));
        }
        if h.base != 0 {
            return Err(corrupt(format!(
                "{what}: is an extension record of {}",
                h.base
            )));
        }
        let mut attrs = Vec::new();
        parse_attrs(&rec, self.geo.total_clusters, &mut attrs, &what)?;
        if attrs.iter().any(|a| a.ty == AT_ATTRIBUTE_LIST) {
            let partial = Inode {
                rec: n,
                flags: h.flags,
                link_count: h.link_count,
                attrs: attrs.clone(),
            };
            let list = self.read_meta(&partial, AT_ATTRIBUTE_LIST, &[], &what)?;
            for r in attribute_list_records(&list, MAX_EXTENSIONS, &what)? {
                if r == n {
                    continue;
                }
                let ext_what = format!("MFT record {r} (extension of {n})");
                let ext = self.record(r)?;
                let eh =
                    record_header(&ext).ok_or_else(|| corrupt(format!("{ext_what}: short")))?;
                if eh.flags & MFT_IN_USE == 0 || eh.base != n {
                    return Err(corrupt(format!(
                        "{ext_what}: not an extension record of {n}"
                    )));
                }
                parse_attrs(&ext, self.geo.total_clusters, &mut attrs, &ext_what)?;
                if attrs.len() > MAX_EXTENSIONS * 8 {
                    return Err(corrupt(format!("{what}: too many attributes")));
                }
            }
        }
        let inode = Rc::new(Inode {
            rec: n,
            flags: h.flags,
            link_count: h.link_count,
            attrs: merge(attrs, &what)?,
        });
        // Files with huge run lists are not kept (the cache must stay a few MiB).
        let runs: usize = inode
            .attrs
            .iter()
            .map(|a| match &a.value {
                RawValue::NonResident { runs, .. } => runs.len(),
                RawValue::Resident(_) => 0,
            })
            .sum();
        if runs <= MAX_CACHED_RUNS {
            self.inodes.put(n, inode.clone());
        }
        Ok(inode)
    }

    /// A small attribute value read whole (bounded by [`MAX_META`]).
    fn read_meta(&mut self, ino: &Inode, ty: u32, name: &[u16], what: &str) -> FsResult<Vec<u8>> {
        let s = ino
            .stream(ty, name)?
            .ok_or_else(|| corrupt(format!("{what}: attribute {ty:#x} missing")))?;
        let size = s.size();
        if size > MAX_META {
            return Err(corrupt(format!(
                "{what}: attribute {ty:#x} of {size} bytes"
            )));
        }
        // OK to cast: bounded by MAX_META.
        let mut buf = vec![0u8; size as usize];
        self.read_stream(ino.rec, &s, 0, &mut buf, what)?;
        Ok(buf)
    }

    /// Reads a stream range (clipped by the caller to the stream's size).
    fn read_stream(
        &mut self,
        rec: u64,
        s: &Stream,
        off: u64,
        buf: &mut [u8],
        what: &str,
    ) -> FsResult<()> {
        match s {
            Stream::NonResident(n) if n.cu != 0 => self.read_compressed(rec, n, off, buf, what),
            _ => read_plain(&self.dev, &self.geo, s, off, buf, what),
        }
    }

    fn read_compressed(
        &mut self,
        rec: u64,
        n: &NonRes,
        off: u64,
        buf: &mut [u8],
        what: &str,
    ) -> FsResult<()> {
        let cs = self.geo.cluster_size;
        let clusters = 1u64
            .checked_shl(u32::from(n.cu))
            .filter(|c| c.checked_mul(cs).is_some_and(|u| u <= MAX_UNIT))
            .ok_or_else(|| corrupt(format!("{what}: compression unit of 2^{} clusters", n.cu)))?;
        let unit = clusters * cs;
        let mut pos = off;
        let mut done = 0usize;
        while done < buf.len() {
            let u = pos / unit;
            // OK to cast: below `unit`, at most 1 MiB.
            let within = (pos % unit) as usize;
            if self.unit.as_ref().is_none_or(|(k, _)| *k != (rec, u)) {
                let data = self.unit_bytes(n, u, clusters, what)?;
                self.unit = Some(((rec, u), data));
            }
            let data = self.unit.as_ref().map(|(_, d)| d.as_slice()).unwrap_or(&[]);
            let src = data.get(within..).unwrap_or(&[]);
            let k = src.len().min(buf.len() - done);
            if k == 0 {
                return Err(corrupt(format!("{what}: compression unit {u}")));
            }
            buf.get_mut(done..done + k)
                .ok_or_else(|| corrupt("read range"))?
                .copy_from_slice(src.get(..k).unwrap_or(&[]));
            done += k;
            pos += k as u64;
        }
        Ok(())
    }

    /// The uncompressed bytes of compression unit `u`: stored as is when all its clusters
    /// are allocated, zeros when none are, LZNT1 in the allocated clusters otherwise.
    fn unit_bytes(&mut self, n: &NonRes, u: u64, clusters: u64, what: &str) -> FsResult<Vec<u8>> {
        let cs = self.geo.cluster_size;
        let vcn0 = u
            .checked_mul(clusters)
            .ok_or_else(|| corrupt(format!("{what}: VCN overflows")))?;
        let vend = vcn0.saturating_add(clusters);
        // The allocated pieces of the unit, in VCN order.
        let mut pieces: Vec<(u64, u64)> = Vec::new();
        let mut allocated = 0u64;
        let mut vcn = vcn0;
        let mut i = n.runs.partition_point(|r| r.end() <= vcn0);
        while vcn < vend {
            let Some(r) = n.runs.get(i).filter(|r| r.vcn <= vcn) else {
                if n.runs.last().is_none_or(|r| r.end() <= vcn) {
                    // Past the run list: the tail of the last unit is unallocated.
                    break;
                }
                return Err(corrupt(format!("{what}: VCN {vcn} is not mapped")));
            };
            let take = r.end().min(vend).saturating_sub(vcn);
            if take == 0 {
                return Err(corrupt(format!(
                    "{what}: run list out of order at VCN {vcn}"
                )));
            }
            if let Some(lcn) = r.lcn {
                pieces.push((lcn + (vcn - r.vcn), take));
                allocated += take;
            }
            vcn += take;
            i += 1;
        }
        // OK to cast: clusters * cs <= MAX_UNIT.
        let unit = (clusters * cs) as usize;
        let mut out = vec![0u8; unit];
        if allocated == 0 {
            return Ok(out);
        }
        // OK to cast: allocated <= clusters, so the product is at most MAX_UNIT.
        let mut src = vec![0u8; (allocated * cs) as usize];
        let mut at = 0usize;
        for (lcn, len) in pieces {
            // OK to cast: len <= clusters.
            let bytes = (len * cs) as usize;
            let dst = src
                .get_mut(at..at + bytes)
                .ok_or_else(|| corrupt(format!("{what}: compression unit {u}")))?;
            let byte = lcn
                .checked_mul(cs)
                .ok_or_else(|| corrupt(format!("{what}: cluster offset overflows")))?;
            self.dev.borrow_mut().read_at(byte, dst)?;
            at += bytes;
        }
        if allocated == clusters {
            return Ok(src);
        }
        lznt1::decompress(&src, &mut out)
            .map_err(|e| corrupt(format!("{what}: compression unit {u}: {}", e.0)))?;
        Ok(out)
    }

    /// How a file is shown; `depth` is its directory's depth below the root.
    fn kind(&mut self, ino: &Inode, depth: usize) -> FsResult<Kind> {
        let what = ino.what();
        if ino.attr(AT_REPARSE_POINT, &[]).is_some() {
            let data = self.read_meta(ino, AT_REPARSE_POINT, &[], &what)?;
            if let Some(t) = reparse_target(&data, depth) {
                return Ok(Kind::Symlink(t));
            }
        }
        if ino.is_dir() {
            return Ok(Kind::Dir);
        }
        let (_, _, _, fattr) = ino.std_info();
        // An Interix symlink: a system file holding a signature and a UTF-16 target.
        if fattr & FILE_ATTR_SYSTEM != 0
            && let Some(s) = ino.stream(AT_DATA, &[])?
            && (10..=8 + 2 * 4096).contains(&s.size())
        {
            let data = self.read_meta(ino, AT_DATA, &[], &what)?;
            if let Some(t) = data.strip_prefix(INTERIX_LINK.as_slice()) {
                return Ok(Kind::Symlink(utf16_to_string(&utf16_units(t))));
            }
        }
        Ok(Kind::File)
    }

    fn stat_inode(&mut self, ino: &Inode, depth: usize) -> FsResult<Stat> {
        let (mtime, atime, ctime, _) = ino.std_info();
        let (file_type, size, nlink) = match self.kind(ino, depth)? {
            Kind::Dir => {
                let size = ino
                    .stream(AT_INDEX_ALLOCATION, &I30)?
                    .map_or(0, |s| s.size());
                (FileType::Directory, size, 1)
            }
            Kind::Symlink(t) => (FileType::Symlink, t.len() as u64, ino.nlink()),
            Kind::File => {
                let size = ino.stream(AT_DATA, &[])?.map_or(0, |s| s.size());
                (FileType::Regular, size, ino.nlink())
            }
        };
        Ok(Stat {
            file_type,
            mode: 0o777,
            uid: 0,
            gid: 0,
            size,
            nlink,
            ino: ino.rec,
            mtime,
            atime,
            ctime,
        })
    }

    /// The $I30 index of a directory: (root value, allocation stream, block size).
    fn dir_index(&mut self, dir: &Inode) -> FsResult<(Vec<u8>, Option<NonRes>, usize)> {
        let what = dir.what();
        let root = match dir.attr(AT_INDEX_ROOT, &I30).map(|a| &a.value) {
            Some(RawValue::Resident(v)) => v.clone(),
            _ => {
                return Err(corrupt(format!(
                    "{what}: directory without a $I30 index root"
                )));
            }
        };
        if le32(&root, 0) != Some(u32::from(AT_FILE_NAME as u16)) {
            return Err(corrupt(format!("{what}: $I30 does not index file names")));
        }
        let bs = le32(&root, 8).unwrap_or(0) as usize;
        if !bs.is_power_of_two() || !(512..=65536).contains(&bs) {
            return Err(corrupt(format!("{what}: bad index block size {bs}")));
        }
        let alloc = match dir.stream(AT_INDEX_ALLOCATION, &I30)? {
            Some(Stream::NonResident(n)) if n.cu == 0 => Some(n),
            Some(_) => return Err(corrupt(format!("{what}: bad $I30 index allocation"))),
            None => None,
        };
        Ok((root, alloc, bs))
    }

    /// The entries of index block `vcn` of a directory.
    fn index_block(
        &mut self,
        dir: u64,
        alloc: &NonRes,
        bs: usize,
        vcn: u64,
    ) -> FsResult<Vec<Entry>> {
        let what = format!("MFT record {dir}: index block {vcn}");
        let buf = match self.blocks.get(&(dir, vcn)) {
            Some(b) => b.clone(),
            None => {
                let unit = if bs as u64 >= self.geo.cluster_size {
                    self.geo.cluster_size
                } else {
                    512
                };
                let off = vcn
                    .checked_mul(unit)
                    .filter(|o| o.checked_add(bs as u64).is_some_and(|e| e <= alloc.size))
                    .ok_or_else(|| corrupt(format!("{what}: outside the index allocation")))?;
                let mut buf = vec![0u8; bs];
                let s = Stream::NonResident(alloc.clone());
                read_plain(&self.dev, &self.geo, &s, off, &mut buf, &what)?;
                apply_fixups(&mut buf, b"INDX", &what)?;
                if le64(&buf, 0x10) != Some(vcn) {
                    return Err(corrupt(format!("{what}: block says it is another VCN")));
                }
                let b = Rc::new(buf);
                self.blocks.put((dir, vcn), b.clone());
                b
            }
        };
        parse_node(&buf, 0x18, &what)
    }

    /// Most index blocks a directory can hold (a bound for walks).
    fn max_blocks(alloc: &Option<NonRes>, bs: usize) -> u64 {
        alloc.as_ref().map_or(0, |a| a.size / bs as u64)
    }

    /// Finds `name` in a directory: an exact match, else the first case-insensitive one.
    fn lookup(&mut self, dir: &Inode, name: &str) -> FsResult<Option<u64>> {
        let key: Vec<u16> = name.encode_utf16().collect();
        if key.is_empty() || key.len() > 255 {
            return Ok(None);
        }
        let (root, alloc, bs) = self.dir_index(dir)?;
        let what = dir.what();
        let mut queue: Vec<u64> = Vec::new();
        let mut found: Option<u64> = None;
        let mut entries = parse_node(&root, 0x10, &format!("{what}: $I30 root"))?;
        let mut seen = BTreeSet::new();
        let max = Self::max_blocks(&alloc, bs);
        loop {
            for e in &entries {
                if e.last {
                    queue.extend(e.subnode);
                    break;
                }
                match cmp_ci(&key, &e.name, &self.upcase) {
                    core::cmp::Ordering::Less => {
                        queue.extend(e.subnode);
                        break;
                    }
                    core::cmp::Ordering::Equal => {
                        if e.name == key {
                            return Ok(Some(e.record));
                        }
                        found.get_or_insert(e.record);
                        queue.extend(e.subnode);
                    }
                    core::cmp::Ordering::Greater => {}
                }
            }
            let Some(vcn) = queue.pop() else { break };
            let Some(a) = alloc.as_ref() else {
                return Err(corrupt(format!(
                    "{what}: $I30 has subnodes but no allocation"
                )));
            };
            if !seen.insert(vcn) || seen.len() as u64 > max {
                return Err(corrupt(format!("{what}: $I30 index has a cycle")));
            }
            entries = self.index_block(dir.rec, a, bs, vcn)?;
        }
        if found.is_none() && name.contains(char::REPLACEMENT_CHARACTER) {
            // A name with unpaired surrogates is listed with U+FFFD: match it as listed.
            for (n, r) in self.dir_entries(dir)? {
                if n == name {
                    return Ok(Some(r));
                }
            }
        }
        Ok(found)
    }

    /// Every listed (name, record) of a directory, in index order.
    fn dir_entries(&mut self, dir: &Inode) -> FsResult<Vec<(String, u64)>> {
        let (root, alloc, bs) = self.dir_index(dir)?;
        let what = dir.what();
        let max = Self::max_blocks(&alloc, bs);
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut stack = vec![parse_node(&root, 0x10, &format!("{what}: $I30 root"))?];
        while let Some(entries) = stack.pop() {
            for e in entries {
                if let Some(vcn) = e.subnode {
                    let Some(a) = alloc.as_ref() else {
                        return Err(corrupt(format!(
                            "{what}: $I30 has subnodes but no allocation"
                        )));
                    };
                    if !seen.insert(vcn) || seen.len() as u64 > max {
                        return Err(corrupt(format!("{what}: $I30 index has a cycle")));
                    }
                    stack.push(self.index_block(dir.rec, a, bs, vcn)?);
                }
                if e.last || e.namespace == NS_DOS || e.record < FIRST_USER {
                    continue;
                }
                if out.len() >= MAX_DIR_ENTRIES {
                    return Err(corrupt(format!(
                        "{what}: more than {MAX_DIR_ENTRIES} directory entries"
                    )));
                }
                out.push((utf16_to_string(&e.name), e.record));
            }
        }
        Ok(out)
    }

    /// Resolves a path inside the volume. Returns the inode and the depth of the
    /// directory holding it (0 for the root and its children). Symlinks in the middle
    /// are followed (inside this volume), the last one when `follow`.
    fn walk(&mut self, path: &str, follow: bool) -> FsResult<(Rc<Inode>, usize)> {
        let mut comps: VecDeque<String> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        let mut stack: Vec<u64> = vec![ROOT];
        let mut hops = 0usize;
        while let Some(c) = comps.pop_front() {
            if c == "." {
                continue;
            }
            if c == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let cur = self.inode(*stack.last().unwrap_or(&ROOT))?;
            if !cur.is_dir() {
                return Err(Error::new(
                    ErrorKind::NotADirectory,
                    format!("{path}: a component is not a directory"),
                ));
            }
            let child = self
                .lookup(&cur, &c)?
                .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("{path}: not found")))?;
            let ino = self.inode(child)?;
            let last = comps.is_empty();
            let depth = stack.len() - 1;
            if (!last || follow)
                && let Kind::Symlink(t) = self.kind(&ino, depth)?
            {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(Error::new(
                        ErrorKind::Loop,
                        format!("{path}: too many levels of symbolic links"),
                    ));
                }
                if t.starts_with('/') {
                    stack.truncate(1);
                }
                for part in t.split('/').rev().filter(|p| !p.is_empty()) {
                    comps.push_front(String::from(part));
                }
                if comps.len() > 4096 {
                    return Err(Error::new(ErrorKind::Loop, format!("{path}: too long")));
                }
                continue;
            }
            if last {
                return Ok((ino, depth));
            }
            stack.push(child);
        }
        let top = *stack.last().unwrap_or(&ROOT);
        Ok((self.inode(top)?, stack.len().saturating_sub(2)))
    }
}

impl FileSystem for NtfsFs {
    fn fstype(&self) -> &str {
        "ntfs"
    }

    fn readonly(&self) -> bool {
        true
    }

    fn stat(&mut self, path: &str, follow: bool) -> FsResult<Stat> {
        let (ino, depth) = self.walk(path, follow)?;
        self.stat_inode(&ino, depth)
    }

    fn read_dir(&mut self, path: &str) -> FsResult<Vec<DirEntry>> {
        let (dir, depth) = self.walk(path, true)?;
        if !dir.is_dir() {
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("{path} is not a directory"),
            ));
        }
        let child_depth = if dir.rec == ROOT { 0 } else { depth + 1 };
        let mut out = Vec::new();
        for (name, rec) in self.dir_entries(&dir)? {
            let ino = self.inode(rec)?;
            let stat = self.stat_inode(&ino, child_depth)?;
            out.push(DirEntry { name, stat });
        }
        Ok(out)
    }

    fn read_link(&mut self, path: &str) -> FsResult<String> {
        let (ino, depth) = self.walk(path, false)?;
        match self.kind(&ino, depth)? {
            Kind::Symlink(t) => Ok(t),
            _ => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{path} is not a symbolic link"),
            )),
        }
    }

    fn read(&mut self, path: &str, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        let ino = match &self.last_read {
            Some((p, i)) if p == path => i.clone(),
            _ => {
                let (i, _) = self.walk(path, true)?;
                self.last_read = Some((String::from(path), i.clone()));
                i
            }
        };
        if ino.is_dir() {
            return Err(Error::new(
                ErrorKind::IsADirectory,
                format!("{path} is a directory"),
            ));
        }
        let Some(s) = ino.stream(AT_DATA, &[])? else {
            return Ok(Vec::new());
        };
        let encrypted = ino
            .attr(AT_DATA, &[])
            .is_some_and(|a| a.flags & ATTR_ENCRYPTED != 0)
            || ino.std_info().3 & FILE_ATTR_ENCRYPTED != 0;
        if encrypted {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("ntfs: {path} is encrypted (EFS)"),
            ));
        }
        let size = s.size();
        if offset >= size || len == 0 {
            return Ok(Vec::new());
        }
        let want = usize::try_from(size - offset).map_or(len, |l| l.min(len));
        let mut buf = vec![0u8; want];
        let what = format!("{path} (MFT record {})", ino.rec);
        self.read_stream(ino.rec, &s, offset, &mut buf, &what)?;
        Ok(buf)
    }

    fn statvfs(&mut self) -> FsResult<StatVfs> {
        if let Some(s) = &self.statvfs {
            return Ok(s.clone());
        }
        let total = self.geo.total_clusters;
        let bitmap = self.inode(MFT_BITMAP_FILE)?;
        let used = self.count_set(&bitmap, AT_DATA, total, "$Bitmap")?;
        let files = self.mft.size / self.geo.record_size as u64;
        let mft = self.inode(0)?;
        let files_used = self.count_set(&mft, AT_BITMAP, files, "$MFT bitmap")?;
        let free = total.saturating_sub(used);
        let s = StatVfs {
            block_size: self.geo.cluster_size,
            blocks: total,
            blocks_free: free,
            blocks_avail: free,
            files,
            files_free: files.saturating_sub(files_used),
            name_max: 255,
        };
        self.statvfs = Some(s.clone());
        Ok(s)
    }

    fn write(&mut self, _: &str, _: u64, _: &[u8], _: bool, _: u32) -> FsResult<u64> {
        Err(read_only())
    }
    fn mkdir(&mut self, _: &str, _: u32) -> FsResult<()> {
        Err(read_only())
    }
    fn unlink(&mut self, _: &str) -> FsResult<()> {
        Err(read_only())
    }
    fn rmdir(&mut self, _: &str) -> FsResult<()> {
        Err(read_only())
    }
    fn rename(&mut self, _: &str, _: &str) -> FsResult<()> {
        Err(read_only())
    }
    fn chmod(&mut self, _: &str, _: u32) -> FsResult<()> {
        Err(read_only())
    }
    fn symlink(&mut self, _: &str, _: &str) -> FsResult<()> {
        Err(read_only())
    }
    fn truncate(&mut self, _: &str, _: u64) -> FsResult<()> {
        Err(read_only())
    }
}

impl NtfsFs {
    /// Set bits among the first `nbits` of a bitmap attribute, read in chunks.
    fn count_set(&mut self, ino: &Inode, ty: u32, nbits: u64, what: &str) -> FsResult<u64> {
        let s = ino
            .stream(ty, &[])?
            .ok_or_else(|| corrupt(format!("{what}: missing")))?;
        let bytes = nbits.div_ceil(8).min(s.size());
        let mut n = 0u64;
        let mut off = 0u64;
        let mut buf = vec![0u8; BITMAP_CHUNK];
        while off < bytes {
            // OK to cast: at most BITMAP_CHUNK.
            let k = (bytes - off).min(BITMAP_CHUNK as u64) as usize;
            let chunk = buf.get_mut(..k).ok_or_else(|| corrupt(what))?;
            self.read_stream(ino.rec, &s, off, chunk, what)?;
            let bits = nbits.saturating_sub(off * 8).min(k as u64 * 8);
            n += count_bits(chunk, bits);
            off += k as u64;
        }
        Ok(n)
    }
}
