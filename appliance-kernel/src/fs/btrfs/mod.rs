//! btrfs, read-only: our own reader of the on-disk format.
//!
//! Opening reads the primary superblock (checksum verified), the system chunk array and
//! the chunk tree (logical → physical for the one attached device: single, DUP, the
//! RAID1 family and RAID0/10 when the needed stripe is on this device), then the root
//! tree. A mount shows one subvolume at `/`: the default one (the `default` entry of the
//! root tree directory) or one named by path from the top level; nested subvolumes
//! appear as directories (inode 256 of their own tree), as Linux shows them.
//!
//! Files: inline, regular and preallocated extents, holes, and zlib / lzo / zstd
//! compressed extents (decompressed to at most 128 KiB each). Tree blocks are verified
//! with the filesystem's checksum (crc32c, xxhash64, sha256 or blake2b), and so is file
//! data wherever the csum tree holds checksums for it; a mismatch on every copy is
//! `Corrupt` naming the block or the file.
//!
//! Not handled: the log tree (data fsynced after the last commit is not replayed, as
//! with Linux's `nologreplay`), RAID5/6, zoned and extent-tree-v2 filesystems, and
//! multi-device filesystems beyond what lies on the attached device. Writes are refused.
//!
//! `statvfs` follows Linux's `btrfs_statfs` for a read-write mount; see [`BtrfsFs`]'s
//! `statvfs` for the formula.

mod chunk;
mod compress;
mod csum;
mod lzo;
mod ondisk;
mod tree;

#[cfg(test)]
mod tests;

use super::{FileSystem, FsResult};
use crate::block::SharedDevice;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use chunk::ChunkMap;
use csum::{CsumType, MAX_CSUM, name_hash};
use ondisk::*;
use tree::{Reader, TreeRoot};
use wire::{DirEntry, Error, ErrorKind, FileType, Stat, StatVfs};

pub use compress::MAX_UNCOMPRESSED;

/// Symlinks followed while resolving one path before giving up with `Loop` (Linux's
/// `MAXSYMLINKS`).
const MAX_SYMLINK_HOPS: u32 = 40;
/// Path components handled for one path (guards against huge crafted symlink chains).
const MAX_COMPONENTS: usize = 4096;
/// Longest symlink target (Linux `PATH_MAX` less the NUL).
const MAX_SYMLINK_TARGET: u64 = 4095;
/// Entries listed for one directory at most.
const MAX_DIR_ENTRIES: usize = 1 << 20;
/// File extent items handled for one read at most.
const MAX_EXTENTS_PER_READ: usize = 1 << 16;
/// btrfs stores at most 128 KiB of compressed data per extent.
const MAX_COMPRESSED_DISK: u64 = 128 * 1024;
/// Subvolumes listed at most, and nesting followed when building their paths.
const MAX_SUBVOLUMES: usize = 1 << 16;
const MAX_NESTING: usize = 4096;
/// Directory back-reference lookups made while building all subvolume paths.
const MAX_PATH_LOOKUPS: usize = 1 << 18;
/// Inline extent bytes gathered for one read at most (a legitimate file has one inline
/// extent, smaller than a tree block).
const MAX_INLINE_PER_READ: usize = 1 << 20;
/// Subvolume roots remembered.
const ROOT_CACHE: usize = 1024;

fn corrupt(msg: impl core::fmt::Display) -> Error {
    Error::new(ErrorKind::Corrupt, format!("btrfs: {msg}"))
}

fn unsupported(msg: impl core::fmt::Display) -> Error {
    Error::new(ErrorKind::Unsupported, format!("btrfs: {msg}"))
}

fn not_found(msg: impl core::fmt::Display) -> Error {
    Error::new(ErrorKind::NotFound, format!("{msg}"))
}

fn read_only() -> Error {
    Error::new(
        ErrorKind::ReadOnly,
        "btrfs is mounted read-only: skiff does not write btrfs",
    )
}

/// One subvolume, as `btrfs subvolume list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subvolume {
    pub id: u64,
    /// The subvolume it lives in (`top level` in `btrfs subvolume list`; 5 is the top).
    pub parent_id: u64,
    /// Generation of its root item (`gen`).
    pub generation: u64,
    /// Path from the top-level subvolume, e.g. `home`, `var/lib/machines`.
    pub path: String,
    pub readonly: bool,
}

/// Mounts the default subvolume read-only (btrfs is never written: `readonly` is
/// accepted for symmetry with the other filesystems).
pub fn mount(dev: SharedDevice, readonly: bool) -> FsResult<Box<dyn FileSystem>> {
    mount_subvol(dev, readonly, None)
}

/// Mounts a subvolume read-only: the default one for `None`, else the subvolume at that
/// path from the top level (`"home"`, `"/var/lib/machines"`; `"/"` is the top level).
pub fn mount_subvol(
    dev: SharedDevice,
    _readonly: bool,
    subvol: Option<&str>,
) -> FsResult<Box<dyn FileSystem>> {
    Ok(Box::new(BtrfsFs::open(dev, subvol)?))
}

/// Every subvolume and snapshot of the filesystem on `dev`, by id.
pub fn list_subvolumes(dev: SharedDevice) -> FsResult<Vec<Subvolume>> {
    Volume::open(dev)?.subvolumes()
}

/// A subvolume's tree and the inode number of its top directory.
#[derive(Clone, Copy, Debug)]
struct SubvolRoot {
    tree: TreeRoot,
    root_dirid: u64,
}

/// An inode: which subvolume tree, which objectid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loc {
    subvol: u64,
    ino: u64,
}

/// The filesystem below any mounted subvolume: device, chunks, root tree.
struct Volume {
    r: Reader,
    sb: Superblock,
    root_tree: TreeRoot,
    csum_root: Option<TreeRoot>,
    dev_items: Vec<DevItem>,
    roots: BTreeMap<u64, Option<SubvolRoot>>,
}

impl Volume {
    fn open(dev: SharedDevice) -> FsResult<Volume> {
        let dev_size = dev.borrow().size();
        if dev_size < SUPER_OFFSET + SUPER_SIZE as u64 {
            return Err(corrupt("device too small for a superblock"));
        }
        let mut raw = vec![0u8; SUPER_SIZE];
        dev.borrow_mut().read_at(SUPER_OFFSET, &mut raw)?;
        let sb = Superblock::parse(&raw)?;
        let csum = CsumType::from_disk(sb.csum_type)?;
        let (stored, body) = (raw.get(..32).unwrap_or(&[]), raw.get(32..).unwrap_or(&[]));
        if !csum.verify(body, stored) {
            return Err(corrupt(format!(
                "superblock: {} checksum mismatch",
                csum.name()
            )));
        }
        let unknown = sb.incompat_flags & !INCOMPAT_SUPPORTED;
        if unknown != 0 {
            let what = if unknown & INCOMPAT_ZONED != 0 {
                "zoned mode".to_string()
            } else if unknown & INCOMPAT_EXTENT_TREE_V2 != 0 {
                "extent tree v2".to_string()
            } else if unknown & INCOMPAT_RAID_STRIPE_TREE != 0 {
                "the raid stripe tree".to_string()
            } else {
                format!("incompat features {unknown:#x}")
            };
            return Err(unsupported(what));
        }
        let mut chunks = ChunkMap::new(sb.dev_item.devid, dev_size);
        chunk::load_sys_array(&mut chunks, &sb.sys_chunk_array)?;
        let mut r = Reader::new(
            dev,
            chunks,
            csum,
            sb.nodesize as usize,
            sb.sectorsize as usize,
            sb.metadata_uuid,
        );
        // The chunk tree: every chunk, and the devices.
        let chunk_root = TreeRoot {
            bytenr: sb.chunk_root,
            level: sb.chunk_root_level,
            generation: sb.chunk_root_generation,
        };
        let mut found = Vec::new();
        let mut dev_items = Vec::new();
        r.walk(
            &chunk_root,
            &Key::new(0, 0, 0),
            &Key::new(u64::MAX, u8::MAX, u64::MAX),
            &mut |k, d| {
                if let Some(c) = chunk::parse_chunk_leaf_item(k, d)? {
                    if found.len() >= chunk::MAX_CHUNKS {
                        return Err(corrupt("chunk tree: too many chunks"));
                    }
                    found.push(c);
                } else if let Some(di) = chunk::parse_dev_item(k, d)? {
                    if dev_items.len() >= 4096 {
                        return Err(corrupt("chunk tree: too many devices"));
                    }
                    dev_items.push(di);
                }
                Ok(true)
            },
        )?;
        for (logical, item) in found {
            r.chunks.insert(logical, item)?;
        }
        let root_tree = TreeRoot {
            bytenr: sb.root,
            level: sb.root_level,
            generation: sb.generation,
        };
        let mut v = Volume {
            r,
            sb,
            root_tree,
            csum_root: None,
            dev_items,
            roots: BTreeMap::new(),
        };
        v.csum_root = v.tree_root_item(CSUM_TREE_OBJECTID)?.map(|s| s.tree);
        Ok(v)
    }

    /// The root item of tree `id` in the root tree, if any.
    fn tree_root_item(&mut self, id: u64) -> FsResult<Option<SubvolRoot>> {
        let rt = self.root_tree;
        let Some(it) = self
            .r
            .find_le(&rt, &Key::new(id, ROOT_ITEM_KEY, u64::MAX))?
        else {
            return Ok(None);
        };
        if it.key.objectid != id || it.key.ty != ROOT_ITEM_KEY {
            return Ok(None);
        }
        let ri = RootItem::parse(it.data())
            .ok_or_else(|| corrupt(format!("root item of tree {id}: truncated")))?;
        if ri.level >= MAX_LEVEL {
            return Err(corrupt(format!(
                "root item of tree {id}: level {}",
                ri.level
            )));
        }
        Ok(Some(SubvolRoot {
            tree: TreeRoot {
                bytenr: ri.bytenr,
                level: ri.level,
                generation: ri.generation,
            },
            root_dirid: ri.root_dirid,
        }))
    }

    /// A subvolume's root (cached); `None` when it has no root item (deleted).
    fn subvol_root(&mut self, id: u64) -> FsResult<Option<SubvolRoot>> {
        if let Some(r) = self.roots.get(&id) {
            return Ok(*r);
        }
        let r = self.tree_root_item(id)?;
        if let Some(s) = &r
            && s.root_dirid < FIRST_FREE_OBJECTID
        {
            return Err(corrupt(format!(
                "subvolume {id}: root directory {}",
                s.root_dirid
            )));
        }
        if self.roots.len() >= ROOT_CACHE {
            self.roots.clear();
        }
        self.roots.insert(id, r);
        Ok(r)
    }

    fn subvol_tree(&mut self, id: u64) -> FsResult<TreeRoot> {
        self.subvol_root(id)?
            .map(|s| s.tree)
            .ok_or_else(|| corrupt(format!("subvolume {id} has no root")))
    }

    /// The default subvolume (the `default` entry of the root tree directory), or the
    /// top level when there is none.
    fn default_subvol(&mut self) -> FsResult<u64> {
        let rt = self.root_tree;
        let key = Key::new(
            ROOT_TREE_DIR_OBJECTID,
            DIR_ITEM_KEY,
            name_hash(b"default").into(),
        );
        let Some(it) = self.r.lookup(&rt, &key)? else {
            return Ok(FS_TREE_OBJECTID);
        };
        for d in parse_dir_items(it.data())? {
            if d.name == b"default" {
                return Ok(d.location.objectid);
            }
        }
        Ok(FS_TREE_OBJECTID)
    }

    fn inode(&mut self, loc: Loc) -> FsResult<InodeItem> {
        if loc.ino == EMPTY_SUBVOL_DIR_OBJECTID {
            // A subvolume whose root is gone: Linux shows an empty directory.
            return Ok(InodeItem {
                mode: 0o040755,
                nlink: 1,
                ..InodeItem::default()
            });
        }
        let tree = self.subvol_tree(loc.subvol)?;
        let it = self
            .r
            .lookup(&tree, &Key::new(loc.ino, INODE_ITEM_KEY, 0))?
            .ok_or_else(|| {
                corrupt(format!(
                    "inode {} of subvolume {} is missing",
                    loc.ino, loc.subvol
                ))
            })?;
        InodeItem::parse(it.data()).ok_or_else(|| {
            corrupt(format!(
                "inode {} of subvolume {}: truncated inode item",
                loc.ino, loc.subvol
            ))
        })
    }

    /// Where a directory entry's location key leads: an inode of the same tree, or the
    /// top directory of another subvolume.
    fn entry_loc(&mut self, dir: Loc, location: &Key) -> FsResult<Loc> {
        match location.ty {
            INODE_ITEM_KEY => Ok(Loc {
                subvol: dir.subvol,
                ino: location.objectid,
            }),
            ROOT_ITEM_KEY => {
                let id = location.objectid;
                Ok(match self.subvol_root(id)? {
                    Some(r) => Loc {
                        subvol: id,
                        ino: r.root_dirid,
                    },
                    None => Loc {
                        subvol: id,
                        ino: EMPTY_SUBVOL_DIR_OBJECTID,
                    },
                })
            }
            t => Err(corrupt(format!(
                "directory {} of subvolume {}: entry pointing at key type {t}",
                dir.ino, dir.subvol
            ))),
        }
    }

    /// The entry `name` of directory `dir` (by the name hash).
    fn lookup_child(&mut self, dir: Loc, name: &str) -> FsResult<Option<Loc>> {
        if dir.ino == EMPTY_SUBVOL_DIR_OBJECTID || name.len() > NAME_MAX {
            return Ok(None);
        }
        let tree = self.subvol_tree(dir.subvol)?;
        let key = Key::new(dir.ino, DIR_ITEM_KEY, name_hash(name.as_bytes()).into());
        let Some(it) = self.r.lookup(&tree, &key)? else {
            return Ok(None);
        };
        let mut location = None;
        for d in parse_dir_items(it.data())? {
            if d.name == name.as_bytes() {
                location = Some(d.location);
                break;
            }
        }
        match location {
            Some(l) => self.entry_loc(dir, &l).map(Some),
            None => Ok(None),
        }
    }

    /// Name and parent directory of directory `ino` in `subvol` (its INODE_REF, or
    /// INODE_EXTREF).
    fn parent_of(&mut self, subvol: u64, ino: u64) -> FsResult<(u64, String)> {
        let tree = self.subvol_tree(subvol)?;
        let bad = || {
            corrupt(format!(
                "inode {ino} of subvolume {subvol}: bad back reference"
            ))
        };
        if let Some(it) = self
            .r
            .find_le(&tree, &Key::new(ino, INODE_REF_KEY, u64::MAX))?
            .filter(|it| it.key.objectid == ino && it.key.ty == INODE_REF_KEY)
        {
            let (_, name) = parse_inode_ref(it.data()).ok_or_else(bad)?;
            return Ok((it.key.offset, String::from_utf8_lossy(name).into_owned()));
        }
        const INODE_EXTREF_KEY: u8 = 13;
        if let Some(it) = self
            .r
            .find_le(&tree, &Key::new(ino, INODE_EXTREF_KEY, u64::MAX))?
            .filter(|it| it.key.objectid == ino && it.key.ty == INODE_EXTREF_KEY)
        {
            let d = it.data();
            let parent = le64(d, 0).ok_or_else(bad)?;
            let len = le16(d, 16).ok_or_else(bad)? as usize;
            let name = d.get(18..18 + len).ok_or_else(bad)?;
            return Ok((parent, String::from_utf8_lossy(name).into_owned()));
        }
        Err(bad())
    }

    /// Path of directory `dirid` inside subvolume `subvol`, relative to its top. Each
    /// step up costs one of `budget`'s lookups.
    fn dir_path(&mut self, subvol: u64, dirid: u64, budget: &mut usize) -> FsResult<String> {
        let top = self
            .subvol_root(subvol)?
            .ok_or_else(|| corrupt(format!("subvolume {subvol} has no root")))?
            .root_dirid;
        let mut parts = Vec::new();
        let mut cur = dirid;
        while cur != top {
            if parts.len() >= MAX_NESTING {
                return Err(corrupt(format!(
                    "subvolume {subvol}: directory {dirid} nested too deeply (a cycle?)"
                )));
            }
            *budget = budget.checked_sub(1).ok_or_else(|| {
                corrupt("too many directory lookups while building subvolume paths")
            })?;
            let (parent, name) = self.parent_of(subvol, cur)?;
            parts.push(name);
            cur = parent;
        }
        parts.reverse();
        Ok(parts.join("/"))
    }

    /// Every subvolume with a root item and a back reference, like `btrfs subvolume list`.
    fn subvolumes(&mut self) -> FsResult<Vec<Subvolume>> {
        // (id, root item generation, flags) and (id → parent, dirid, name).
        let mut items: Vec<(u64, u64, u64)> = Vec::new();
        let mut backrefs: BTreeMap<u64, (u64, u64, String)> = BTreeMap::new();
        let rt = self.root_tree;
        r_walk(
            &mut self.r,
            &rt,
            &Key::new(FIRST_FREE_OBJECTID, 0, 0),
            &Key::new(LAST_FREE_OBJECTID, u8::MAX, u64::MAX),
            &mut |k, d| {
                if items.len() + backrefs.len() >= 2 * MAX_SUBVOLUMES {
                    return Err(corrupt("root tree: too many subvolumes"));
                }
                match k.ty {
                    ROOT_ITEM_KEY => {
                        let ri = RootItem::parse(d).ok_or_else(|| {
                            corrupt(format!("root item of tree {}: truncated", k.objectid))
                        })?;
                        // Snapshots repeat the id with another offset: keep the last.
                        if items.last().is_some_and(|l| l.0 == k.objectid) {
                            items.pop();
                        }
                        items.push((k.objectid, ri.generation, ri.flags));
                    }
                    ROOT_BACKREF_KEY => {
                        let (dirid, name) = parse_root_ref(d).ok_or_else(|| {
                            corrupt(format!("root backref of tree {}: truncated", k.objectid))
                        })?;
                        backrefs.entry(k.objectid).or_insert((
                            k.offset,
                            dirid,
                            String::from_utf8_lossy(name).into_owned(),
                        ));
                    }
                    _ => {}
                }
                Ok(true)
            },
        )?;
        let mut paths: BTreeMap<u64, String> = BTreeMap::new();
        let mut budget = MAX_PATH_LOOKUPS;
        let mut out = Vec::new();
        for (id, generation, flags) in items {
            let Some((parent, _, _)) = backrefs.get(&id) else {
                continue; // Deleted, not yet cleaned: `btrfs subvolume list` skips it too.
            };
            let parent = *parent;
            let path = self.subvol_path(id, &backrefs, &mut paths, &mut budget)?;
            out.push(Subvolume {
                id,
                parent_id: parent,
                generation,
                path,
                readonly: flags & ROOT_SUBVOL_RDONLY != 0,
            });
        }
        Ok(out)
    }

    /// Path of subvolume `id` from the top level, following back references upwards.
    fn subvol_path(
        &mut self,
        id: u64,
        backrefs: &BTreeMap<u64, (u64, u64, String)>,
        memo: &mut BTreeMap<u64, String>,
        budget: &mut usize,
    ) -> FsResult<String> {
        // The chain from `id` up to the top level (or a subvolume already known).
        let mut chain = Vec::new();
        let mut cur = id;
        while cur != FS_TREE_OBJECTID && !memo.contains_key(&cur) {
            if chain.len() >= MAX_NESTING || chain.contains(&cur) {
                return Err(corrupt(format!("subvolume {id}: parent chain loops")));
            }
            chain.push(cur);
            cur = backrefs
                .get(&cur)
                .map(|b| b.0)
                .ok_or_else(|| corrupt(format!("subvolume {cur} has no back reference")))?;
        }
        let mut base = memo.get(&cur).cloned().unwrap_or_default();
        for &sv in chain.iter().rev() {
            let Some((parent, dirid, name)) = backrefs.get(&sv) else {
                return Err(corrupt(format!("subvolume {sv} has no back reference")));
            };
            let dir = self.dir_path(*parent, *dirid, budget)?;
            let mut p = base.clone();
            for part in [dir.as_str(), name.as_str()] {
                if part.is_empty() {
                    continue;
                }
                if !p.is_empty() {
                    p.push('/');
                }
                p.push_str(part);
            }
            memo.insert(sv, p.clone());
            base = p;
        }
        Ok(base)
    }

    /// Resolves a subvolume path from the top level (no symlinks followed); it must name
    /// a subvolume.
    fn subvol_by_path(&mut self, path: &str) -> FsResult<u64> {
        let top = self
            .subvol_root(FS_TREE_OBJECTID)?
            .ok_or_else(|| corrupt("the top-level subvolume has no root"))?;
        let mut loc = Loc {
            subvol: FS_TREE_OBJECTID,
            ino: top.root_dirid,
        };
        for c in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if c == ".." {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("btrfs subvolume path {path:?} contains \"..\""),
                ));
            }
            loc = self
                .lookup_child(loc, c)?
                .ok_or_else(|| not_found(format!("btrfs: no subvolume {path:?}")))?;
        }
        let is_root = match self.subvol_root(loc.subvol)? {
            Some(r) => r.root_dirid == loc.ino,
            None => false,
        };
        if !is_root {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("btrfs: {path:?} is not a subvolume"),
            ));
        }
        Ok(loc.subvol)
    }

    /// The data checksums for sectors `[start, end)` (logical, sector-aligned), where the
    /// csum tree has them.
    fn data_csums(&mut self, start: u64, end: u64) -> FsResult<Vec<Option<[u8; MAX_CSUM]>>> {
        let ss = self.r.sectorsize as u64;
        let n = ((end - start) / ss) as usize;
        let mut out = vec![None; n];
        let Some(root) = self.csum_root else {
            return Ok(out);
        };
        let cs = self.r.csum.size();
        let first = self
            .r
            .find_le(
                &root,
                &Key::new(EXTENT_CSUM_OBJECTID, EXTENT_CSUM_KEY, start),
            )?
            .filter(|it| it.key.objectid == EXTENT_CSUM_OBJECTID && it.key.ty == EXTENT_CSUM_KEY)
            .map_or(start, |it| it.key.offset);
        r_walk(
            &mut self.r,
            &root,
            &Key::new(EXTENT_CSUM_OBJECTID, EXTENT_CSUM_KEY, first),
            &Key::new(EXTENT_CSUM_OBJECTID, EXTENT_CSUM_KEY, end - 1),
            &mut |k, d| {
                let item_start = k.offset;
                if !item_start.is_multiple_of(ss) {
                    return Err(corrupt(format!(
                        "csum item at {item_start}: not sector aligned"
                    )));
                }
                let count = (d.len() / cs) as u64;
                // Sectors of this item inside [start, end).
                let lo = start.saturating_sub(item_start) / ss;
                let hi = count.min(end.saturating_sub(item_start).div_ceil(ss));
                for j in lo..hi {
                    let Some(sector) = j.checked_mul(ss).and_then(|x| x.checked_add(item_start))
                    else {
                        break;
                    };
                    if sector < start || sector >= end {
                        continue;
                    }
                    let idx = ((sector - start) / ss) as usize;
                    let off = (j as usize) * cs;
                    let mut c = [0u8; MAX_CSUM];
                    let src = d.get(off..off + cs).unwrap_or(&[]);
                    for (o, b) in c.iter_mut().zip(src) {
                        *o = *b;
                    }
                    if let Some(slot) = out.get_mut(idx) {
                        *slot = Some(c);
                    }
                }
                Ok(true)
            },
        )?;
        Ok(out)
    }

    /// Reads `buf.len()` bytes of file data at `logical`, verifying the data checksums
    /// of every whole sector read (when `verify`), trying every copy before `Corrupt`.
    /// `logical` and the length must be sector-aligned.
    fn read_data_verified(
        &mut self,
        logical: u64,
        buf: &mut [u8],
        verify: bool,
        what: &dyn Fn() -> String,
    ) -> FsResult<()> {
        let ss = self.r.sectorsize;
        let csums = if verify {
            let end = logical
                .checked_add(buf.len() as u64)
                .ok_or_else(|| corrupt(format!("{}: extent address overflows", what())))?;
            self.data_csums(logical, end)?
        } else {
            Vec::new()
        };
        let copies = self.r.chunks.copies(logical).max(1);
        let mut last_err = None;
        for mirror in 0..copies {
            if let Err(e) = self.r.read_logical(logical, buf, mirror) {
                last_err = Some(e);
                continue;
            }
            let bad = csums.iter().enumerate().find_map(|(i, c)| {
                let c = c.as_ref()?;
                let sector = buf.get(i * ss..(i + 1) * ss)?;
                (!self.r.csum.verify(sector, c)).then_some(i)
            });
            match bad {
                None => return Ok(()),
                Some(i) => {
                    last_err = Some(corrupt(format!(
                        "{}: data {} checksum mismatch at logical {}",
                        what(),
                        self.r.csum.name(),
                        logical + (i * ss) as u64
                    )));
                }
            }
        }
        Err(last_err.unwrap_or_else(|| corrupt(format!("{}: unreadable", what()))))
    }
}

/// `Reader::walk` with a closure (keeps call sites short).
fn r_walk(
    r: &mut Reader,
    root: &TreeRoot,
    min: &Key,
    max: &Key,
    f: &mut dyn FnMut(&Key, &[u8]) -> FsResult<bool>,
) -> FsResult<()> {
    r.walk(root, min, max, f)
}

/// One extent of a file, as far as a read needs it.
struct Extent {
    file_off: u64,
    fe: FileExtent,
    /// Inline data (still compressed when the extent is).
    inline: Vec<u8>,
}

/// A mounted btrfs subvolume.
pub struct BtrfsFs {
    v: Volume,
    subvol: u64,
    root: Loc,
    /// The file last read: sequential chunked reads skip the path walk.
    last_file: Option<(String, Loc, InodeItem)>,
    /// The compressed extent last decompressed: (disk_bytenr, disk_num_bytes, data).
    last_extent: Option<(u64, u64, Rc<[u8]>)>,
}

fn file_type(mode: u32) -> FileType {
    match mode & 0o170000 {
        0o040000 => FileType::Directory,
        0o100000 => FileType::Regular,
        0o120000 => FileType::Symlink,
        0o020000 => FileType::CharDevice,
        0o060000 => FileType::BlockDevice,
        0o010000 => FileType::Fifo,
        0o140000 => FileType::Socket,
        _ => FileType::Unknown,
    }
}

fn to_stat(loc: Loc, i: &InodeItem) -> Stat {
    Stat {
        file_type: file_type(i.mode),
        mode: i.mode & 0o7777,
        uid: i.uid,
        gid: i.gid,
        size: i.size,
        nlink: i.nlink,
        ino: loc.ino,
        mtime: i.mtime,
        atime: i.atime,
        ctime: i.ctime,
    }
}

impl BtrfsFs {
    /// Opens the filesystem on `dev` and selects a subvolume (see [`mount_subvol`]).
    pub fn open(dev: SharedDevice, subvol: Option<&str>) -> FsResult<Self> {
        let mut v = Volume::open(dev)?;
        let id = match subvol {
            None => v.default_subvol()?,
            Some(p) => v.subvol_by_path(p)?,
        };
        let root = v
            .subvol_root(id)?
            .ok_or_else(|| not_found(format!("btrfs: subvolume {id} does not exist")))?;
        let root_loc = Loc {
            subvol: id,
            ino: root.root_dirid,
        };
        // The top directory must be there and be a directory.
        let top = v.inode(root_loc)?;
        if file_type(top.mode) != FileType::Directory {
            return Err(corrupt(format!(
                "subvolume {id}: top inode is not a directory"
            )));
        }
        Ok(BtrfsFs {
            v,
            subvol: id,
            root: root_loc,
            last_file: None,
            last_extent: None,
        })
    }

    /// Id of the mounted subvolume.
    pub fn subvolume_id(&self) -> u64 {
        self.subvol
    }

    /// Every subvolume of the filesystem (see [`list_subvolumes`]).
    pub fn subvolumes(&mut self) -> FsResult<Vec<Subvolume>> {
        self.v.subvolumes()
    }

    /// Filesystem label from the superblock.
    pub fn label(&self) -> &str {
        &self.v.sb.label
    }

    /// Filesystem UUID (what `blkid` reports as `UUID`).
    pub fn uuid(&self) -> String {
        uuid_string(&self.v.sb.fsid)
    }

    /// Resolves `path` (absolute within the mounted subvolume) to an inode. Symlinks in
    /// the middle are always followed, a final one when `follow`.
    fn resolve(&mut self, path: &str, follow: bool) -> FsResult<(Loc, InodeItem)> {
        let mut stack: Vec<(Loc, InodeItem)> = Vec::new();
        let root_inode = self.v.inode(self.root)?;
        stack.push((self.root, root_inode));
        // Components still to walk, last first.
        let mut pending: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(String::from)
            .collect();
        if pending.len() > MAX_COMPONENTS {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{path}: too many components"),
            ));
        }
        let mut hops = 0u32;
        while let Some(c) = pending.pop() {
            if c == "." {
                continue;
            }
            if c == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let Some(&(dir, dir_inode)) = stack.last() else {
                return Err(corrupt("path walk lost its root"));
            };
            if file_type(dir_inode.mode) != FileType::Directory {
                return Err(Error::new(
                    ErrorKind::NotADirectory,
                    format!("{path}: a component is not a directory"),
                ));
            }
            let child = self
                .v
                .lookup_child(dir, &c)?
                .ok_or_else(|| not_found(format!("{path}: no such file or directory")))?;
            let inode = self.v.inode(child)?;
            let last = pending.is_empty();
            if file_type(inode.mode) == FileType::Symlink && (!last || follow) {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(Error::new(
                        ErrorKind::Loop,
                        format!("{path}: too many levels of symbolic links"),
                    ));
                }
                let target = self.link_target(child, &inode, path)?;
                if target.starts_with('/') {
                    stack.truncate(1);
                }
                pending.extend(
                    target
                        .split('/')
                        .filter(|c| !c.is_empty())
                        .rev()
                        .map(String::from),
                );
                if pending.len() > MAX_COMPONENTS {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        format!("{path}: too many components through symlinks"),
                    ));
                }
                continue;
            }
            if stack.len() > MAX_COMPONENTS {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("{path}: too deep"),
                ));
            }
            stack.push((child, inode));
        }
        stack
            .pop()
            .ok_or_else(|| corrupt("path walk lost its root"))
    }

    fn link_target(&mut self, loc: Loc, inode: &InodeItem, path: &str) -> FsResult<String> {
        if inode.size > MAX_SYMLINK_TARGET {
            return Err(corrupt(format!(
                "{path}: symlink target of {} bytes",
                inode.size
            )));
        }
        let data = self.read_data(loc, inode, 0, inode.size as usize, path)?;
        if data.contains(&0) {
            return Err(corrupt(format!("{path}: symlink target contains NUL")));
        }
        Ok(String::from_utf8_lossy(&data).into_owned())
    }

    /// Reads up to `len` bytes at `offset` of a file's data (zeros for holes and
    /// preallocated ranges).
    fn read_data(
        &mut self,
        loc: Loc,
        inode: &InodeItem,
        offset: u64,
        len: usize,
        path: &str,
    ) -> FsResult<Vec<u8>> {
        let size = inode.size;
        if offset >= size || len == 0 || loc.ino == EMPTY_SUBVOL_DIR_OBJECTID {
            return Ok(Vec::new());
        }
        let end = size.min(offset.saturating_add(len as u64));
        // OK to cast: at most `len` bytes.
        let mut out = vec![0u8; (end - offset) as usize];
        let tree = self.v.subvol_tree(loc.subvol)?;
        let ino = loc.ino;
        // The extent holding `offset` starts at or before it.
        let first = self
            .v
            .r
            .find_le(&tree, &Key::new(ino, EXTENT_DATA_KEY, offset))?
            .filter(|it| it.key.objectid == ino && it.key.ty == EXTENT_DATA_KEY)
            .map_or(0, |it| it.key.offset);
        let mut extents: Vec<Extent> = Vec::new();
        let mut inline_bytes = 0usize;
        r_walk(
            &mut self.v.r,
            &tree,
            &Key::new(ino, EXTENT_DATA_KEY, first),
            &Key::new(ino, EXTENT_DATA_KEY, end - 1),
            &mut |k, d| {
                if extents.len() >= MAX_EXTENTS_PER_READ {
                    return Err(corrupt(format!("{path}: too many extents")));
                }
                let fe = FileExtent::parse(d)
                    .ok_or_else(|| corrupt(format!("{path}: truncated file extent item")))?;
                let inline = if fe.ty == FILE_EXTENT_INLINE {
                    // Only an inline extent reaching into the read is needed.
                    if k.offset.saturating_add(fe.ram_bytes) <= offset {
                        return Ok(true);
                    }
                    let data = d.get(FILE_EXTENT_INLINE_DATA..).unwrap_or(&[]);
                    inline_bytes = inline_bytes.saturating_add(data.len());
                    if inline_bytes > MAX_INLINE_PER_READ {
                        return Err(corrupt(format!("{path}: too many inline extents")));
                    }
                    data.to_vec()
                } else {
                    Vec::new()
                };
                extents.push(Extent {
                    file_off: k.offset,
                    fe,
                    inline,
                });
                Ok(true)
            },
        )?;
        let verify = inode.flags & INODE_NODATASUM == 0;
        for e in extents {
            self.copy_extent(&e, offset, end, &mut out, verify, path)?;
        }
        Ok(out)
    }

    /// Copies the part of extent `e` inside `[offset, end)` into `out` (which starts at
    /// `offset`).
    fn copy_extent(
        &mut self,
        e: &Extent,
        offset: u64,
        end: u64,
        out: &mut [u8],
        verify: bool,
        path: &str,
    ) -> FsResult<()> {
        let fe = &e.fe;
        let what = || format!("{path}: extent at file offset {}", e.file_off);
        if fe.encryption != 0 || fe.other_encoding != 0 {
            return Err(unsupported(format!("{}: encrypted or encoded", what())));
        }
        let ext_len = match fe.ty {
            FILE_EXTENT_INLINE => fe.ram_bytes,
            FILE_EXTENT_REG | FILE_EXTENT_PREALLOC => fe.num_bytes,
            t => return Err(corrupt(format!("{}: unknown type {t}", what()))),
        };
        let ext_end = e
            .file_off
            .checked_add(ext_len)
            .ok_or_else(|| corrupt(format!("{}: length overflows", what())))?;
        let a = e.file_off.max(offset);
        let b = ext_end.min(end);
        if a >= b {
            return Ok(());
        }
        // OK to cast: both lie within `out`, whose length is a usize.
        let dest = out
            .get_mut((a - offset) as usize..(b - offset) as usize)
            .ok_or_else(|| corrupt(format!("{}: range outside the read", what())))?;
        let within = a - e.file_off;
        match fe.ty {
            FILE_EXTENT_INLINE => {
                let data: Vec<u8>;
                let src: &[u8] = if fe.compression == COMPRESS_NONE {
                    &e.inline
                } else {
                    let ram = usize::try_from(fe.ram_bytes).unwrap_or(usize::MAX);
                    data =
                        compress::decompress(fe.compression, &e.inline, ram, self.v.r.sectorsize)
                            .map_err(|m| corrupt(format!("{}: {m}", what())))?;
                    &data
                };
                copy_from(dest, src, within);
                Ok(())
            }
            FILE_EXTENT_PREALLOC => Ok(()),
            _ if fe.disk_bytenr == 0 => Ok(()), // a hole
            _ if fe.compression != COMPRESS_NONE => {
                let limit = fe.offset.checked_add(fe.num_bytes);
                if limit.is_none_or(|l| l > fe.ram_bytes) {
                    return Err(corrupt(format!(
                        "{}: {}+{} beyond its {} uncompressed bytes",
                        what(),
                        fe.offset,
                        fe.num_bytes,
                        fe.ram_bytes
                    )));
                }
                let data = self.compressed_extent(fe, verify, &what)?;
                copy_from(dest, &data, fe.offset + within);
                Ok(())
            }
            _ => {
                if fe
                    .offset
                    .checked_add(fe.num_bytes)
                    .is_none_or(|l| l > fe.disk_num_bytes)
                {
                    return Err(corrupt(format!(
                        "{}: {}+{} beyond its {} bytes on disk",
                        what(),
                        fe.offset,
                        fe.num_bytes,
                        fe.disk_num_bytes
                    )));
                }
                let logical = fe
                    .disk_bytenr
                    .checked_add(fe.offset + within)
                    .ok_or_else(|| corrupt(format!("{}: address overflows", what())))?;
                self.read_plain(logical, dest, verify, &what)
            }
        }
    }

    /// Reads uncompressed file data at `logical` into `dest`: one device request for the
    /// sector-aligned span (straight into `dest` when it is aligned already).
    fn read_plain(
        &mut self,
        logical: u64,
        dest: &mut [u8],
        verify: bool,
        what: &dyn Fn() -> String,
    ) -> FsResult<()> {
        let ss = self.v.r.sectorsize as u64;
        let len = dest.len() as u64;
        let start = logical - logical % ss;
        let end = logical
            .checked_add(len)
            .and_then(|e| e.checked_next_multiple_of(ss))
            .ok_or_else(|| corrupt(format!("{}: address overflows", what())))?;
        if start == logical && end - start == len {
            return self.v.read_data_verified(start, dest, verify, what);
        }
        // OK to cast: at most `dest.len()` plus two sectors.
        let mut buf = vec![0u8; (end - start) as usize];
        self.v.read_data_verified(start, &mut buf, verify, what)?;
        copy_from(dest, &buf, logical - start);
        Ok(())
    }

    /// A compressed extent's data, decompressed (the last one is cached).
    fn compressed_extent(
        &mut self,
        fe: &FileExtent,
        verify: bool,
        what: &dyn Fn() -> String,
    ) -> FsResult<Rc<[u8]>> {
        if let Some((b, n, d)) = &self.last_extent
            && *b == fe.disk_bytenr
            && *n == fe.disk_num_bytes
            && d.len() as u64 == fe.ram_bytes
        {
            return Ok(d.clone());
        }
        if fe.disk_num_bytes == 0 || fe.disk_num_bytes > MAX_COMPRESSED_DISK {
            return Err(corrupt(format!(
                "{}: {} compressed bytes on disk",
                what(),
                fe.disk_num_bytes
            )));
        }
        if fe.ram_bytes > MAX_UNCOMPRESSED as u64 {
            return Err(corrupt(format!(
                "{}: {} bytes once decompressed",
                what(),
                fe.ram_bytes
            )));
        }
        let ss = self.v.r.sectorsize as u64;
        if !fe.disk_bytenr.is_multiple_of(ss) {
            return Err(corrupt(format!("{}: unaligned on disk", what())));
        }
        let span = fe.disk_num_bytes.next_multiple_of(ss);
        // OK to cast: bounded by MAX_COMPRESSED_DISK above.
        let mut raw = vec![0u8; span as usize];
        self.v
            .read_data_verified(fe.disk_bytenr, &mut raw, verify, what)?;
        raw.truncate(fe.disk_num_bytes as usize);
        let data = compress::decompress(fe.compression, &raw, fe.ram_bytes as usize, ss as usize)
            .map_err(|m| {
            corrupt(format!(
                "{}: {} extent at logical {}: {m}",
                what(),
                compress::name(fe.compression),
                fe.disk_bytenr
            ))
        })?;
        let data: Rc<[u8]> = Rc::from(data);
        self.last_extent = Some((fe.disk_bytenr, fe.disk_num_bytes, data.clone()));
        Ok(data)
    }

    /// Sums the block group items for `statvfs`: (bytes used on disk across all block
    /// groups, bytes free in data block groups on disk, data profile factor).
    fn space(&mut self) -> FsResult<(u64, u64, u64)> {
        let bg_tree_id = if self.v.sb.compat_ro_flags & COMPAT_RO_BLOCK_GROUP_TREE != 0 {
            BLOCK_GROUP_TREE_OBJECTID
        } else {
            EXTENT_TREE_OBJECTID
        };
        let tree = self
            .v
            .tree_root_item(bg_tree_id)?
            .ok_or_else(|| corrupt(format!("tree {bg_tree_id} (block groups) is missing")))?
            .tree;
        let chunks: Vec<(u64, u64, u64, usize)> = self
            .v
            .r
            .chunks
            .chunks()
            .map(|c| (c.logical, c.item.length, c.item.ty, c.copies()))
            .collect();
        let (mut used, mut data_free) = (0u64, 0u64);
        // Linux takes the data factor from the last data profile in its raid table order.
        let order = [
            BG_RAID10, BG_RAID1, BG_DUP, BG_RAID0, 0, BG_RAID5, BG_RAID6, BG_RAID1C3, BG_RAID1C4,
        ];
        let mut data_profile: Option<usize> = None;
        for (logical, length, ty, copies) in chunks {
            let Some(it) = self
                .v
                .r
                .lookup(&tree, &Key::new(logical, BLOCK_GROUP_ITEM_KEY, length))?
            else {
                return Err(corrupt(format!(
                    "chunk at {logical} has no block group item"
                )));
            };
            let bg_used = le64(it.data(), 0)
                .ok_or_else(|| corrupt(format!("block group {logical}: truncated")))?;
            let factor = copies as u64;
            let disk_used = bg_used.saturating_mul(factor);
            let disk_total = length.saturating_mul(factor);
            used = used.saturating_add(disk_used);
            if ty & BG_DATA != 0 {
                data_free = data_free.saturating_add(disk_total.saturating_sub(disk_used));
                let p = ty & BG_PROFILE_MASK;
                if let Some(i) = order.iter().position(|&o| o == p) {
                    data_profile = Some(data_profile.map_or(i, |d| d.max(i)));
                }
            }
        }
        let factor = match data_profile.and_then(|i| order.get(i)) {
            Some(&BG_RAID1) | Some(&BG_DUP) | Some(&BG_RAID10) => 2,
            Some(&BG_RAID1C3) => 3,
            Some(&BG_RAID1C4) => 4,
            _ => 1,
        };
        Ok((used, data_free, factor))
    }

    /// Linux's global block reserve estimate (what `df` counts as used on top of the
    /// block groups): the bytes used by the extent, csum and free space trees (and the
    /// block group tree), but at least room to insert a few items into each of them
    /// plus an unlink's worth of items and delayed references; at most 512 MiB.
    fn global_reserve(&mut self) -> FsResult<u64> {
        let nodesize = self.v.r.nodesize as u64;
        // Bytes to insert `n` items: a path of 8 blocks, twice over (COW and split).
        let insert = |n: u64| nodesize * u64::from(MAX_LEVEL) * 2 * n;
        let mut roots = vec![
            EXTENT_TREE_OBJECTID,
            CSUM_TREE_OBJECTID,
            FREE_SPACE_TREE_OBJECTID,
        ];
        if self.v.sb.compat_ro_flags & COMPAT_RO_BLOCK_GROUP_TREE != 0 {
            roots.push(BLOCK_GROUP_TREE_OBJECTID);
        }
        let mut min_items = 1u64;
        let mut used = 0u64;
        for id in roots {
            if let Some(ri) = self.global_root_used(id)? {
                used = used.saturating_add(ri);
                min_items += 1;
            }
        }
        const UNLINK_ITEMS: u64 = 6;
        let mut delayed_refs = insert(UNLINK_ITEMS);
        if self.v.sb.compat_ro_flags & COMPAT_RO_FREE_SPACE_TREE != 0 {
            delayed_refs *= 2;
        }
        let need = insert(min_items + UNLINK_ITEMS) + delayed_refs;
        Ok(used.max(need).min(512 << 20))
    }

    fn global_root_used(&mut self, id: u64) -> FsResult<Option<u64>> {
        let rt = self.v.root_tree;
        let Some(it) = self
            .v
            .r
            .find_le(&rt, &Key::new(id, ROOT_ITEM_KEY, u64::MAX))?
            .filter(|it| it.key.objectid == id && it.key.ty == ROOT_ITEM_KEY)
        else {
            return Ok(None);
        };
        Ok(RootItem::parse(it.data()).map(|r| r.bytes_used))
    }

    /// The inode at `path` and the stat for it, from the last-read cache when it is
    /// the same path.
    fn file(&mut self, path: &str) -> FsResult<(Loc, InodeItem)> {
        if let Some((p, loc, inode)) = &self.last_file
            && p == path
        {
            return Ok((*loc, *inode));
        }
        let (loc, inode) = self.resolve(path, true)?;
        self.last_file = Some((path.to_string(), loc, inode));
        Ok((loc, inode))
    }
}

/// Copies `src[from..]` into `dest` (as much as both have; the rest of `dest` keeps its
/// zeros).
fn copy_from(dest: &mut [u8], src: &[u8], from: u64) {
    let Ok(from) = usize::try_from(from) else {
        return;
    };
    let Some(s) = src.get(from..) else {
        return;
    };
    let n = s.len().min(dest.len());
    if let (Some(d), Some(s)) = (dest.get_mut(..n), s.get(..n)) {
        d.copy_from_slice(s);
    }
}

impl FileSystem for BtrfsFs {
    fn fstype(&self) -> &str {
        "btrfs"
    }

    fn readonly(&self) -> bool {
        true
    }

    fn stat(&mut self, path: &str, follow: bool) -> FsResult<Stat> {
        let (loc, inode) = self.resolve(path, follow)?;
        Ok(to_stat(loc, &inode))
    }

    fn read_dir(&mut self, path: &str) -> FsResult<Vec<DirEntry>> {
        let (dir, inode) = self.resolve(path, true)?;
        if file_type(inode.mode) != FileType::Directory {
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("{path} is not a directory"),
            ));
        }
        if dir.ino == EMPTY_SUBVOL_DIR_OBJECTID {
            return Ok(Vec::new());
        }
        let tree = self.v.subvol_tree(dir.subvol)?;
        let mut raw: Vec<(String, Key)> = Vec::new();
        r_walk(
            &mut self.v.r,
            &tree,
            &Key::new(dir.ino, DIR_INDEX_KEY, 0),
            &Key::new(dir.ino, DIR_INDEX_KEY, u64::MAX),
            &mut |_, d| {
                if raw.len() >= MAX_DIR_ENTRIES {
                    return Err(corrupt(format!(
                        "{path}: more than {MAX_DIR_ENTRIES} entries"
                    )));
                }
                let items = parse_dir_items(d)?;
                let Some(item) = items.first() else {
                    return Err(corrupt(format!("{path}: empty directory index item")));
                };
                if item.name.contains(&b'/')
                    || item.name.contains(&0)
                    || item.name == b"."
                    || item.name == b".."
                {
                    return Err(corrupt(format!("{path}: invalid name in directory")));
                }
                raw.push((
                    String::from_utf8_lossy(item.name).into_owned(),
                    item.location,
                ));
                Ok(true)
            },
        )?;
        let mut out = Vec::with_capacity(raw.len());
        for (name, location) in raw {
            let loc = self.v.entry_loc(dir, &location)?;
            let inode = self.v.inode(loc)?;
            out.push(DirEntry {
                name,
                stat: to_stat(loc, &inode),
            });
        }
        Ok(out)
    }

    fn read_link(&mut self, path: &str) -> FsResult<String> {
        let (loc, inode) = self.resolve(path, false)?;
        if file_type(inode.mode) != FileType::Symlink {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{path} is not a symbolic link"),
            ));
        }
        self.link_target(loc, &inode, path)
    }

    fn read(&mut self, path: &str, offset: u64, len: usize) -> FsResult<Vec<u8>> {
        let (loc, inode) = self.file(path)?;
        if file_type(inode.mode) == FileType::Directory {
            return Err(Error::new(
                ErrorKind::IsADirectory,
                format!("{path} is a directory"),
            ));
        }
        self.read_data(loc, &inode, offset, len, path)
    }

    /// Like Linux's `btrfs_statfs` for a read-write mount, with `factor` the copies the
    /// data profile keeps (2 for DUP/RAID1) and `bits` the sector size:
    /// - `blocks = total_bytes / factor`;
    /// - `bfree = blocks - used / factor - global_reserve`, where `used` sums every
    ///   block group's used bytes times its own profile's copies;
    /// - `bavail = (free bytes in data block groups + unallocated device space) / factor`,
    ///   the unallocated space of each device less its first MiB, rounded down to 64 KiB.
    ///
    /// (A read-only Linux mount reports less `bavail`: it leaves out the free space
    /// inside data block groups. Linux also reports `bavail = 0` once metadata is full,
    /// which needs runtime state this reader does not have.)
    fn statvfs(&mut self) -> FsResult<StatVfs> {
        let ss = u64::from(self.v.sb.sectorsize);
        let (used, data_free, factor) = self.space()?;
        let reserve = self.global_reserve()?;
        let blocks = self.v.sb.total_bytes / factor / ss;
        let bfree = blocks
            .saturating_sub(used / factor / ss)
            .saturating_sub(reserve / ss);
        let mut unallocated = 0u64;
        let devs: Vec<DevItem> = if self.v.dev_items.is_empty() {
            vec![self.v.sb.dev_item.clone()]
        } else {
            self.v.dev_items.clone()
        };
        for d in devs {
            let free = d.total_bytes.saturating_sub(d.bytes_used);
            let free = free.saturating_sub(1 << 20);
            let free = free - free % (64 << 10);
            if free >= 1 << 20 {
                unallocated = unallocated.saturating_add(free);
            }
        }
        let bavail = (data_free / factor + unallocated / factor) / ss;
        Ok(StatVfs {
            block_size: ss,
            blocks,
            blocks_free: bfree,
            blocks_avail: bavail,
            files: 0,
            files_free: 0,
            name_max: NAME_MAX as u64,
        })
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

/// For fuzzing and mutation tests: recomputes, in a raw image of a single-device btrfs,
/// the superblock's checksum and that of every node-size-aligned block that carries this
/// filesystem's UUID (the tree blocks), so that mutated bytes reach the parsers behind
/// the checksums instead of stopping at them. Does nothing to an image without a
/// readable superblock.
pub fn reseal_checksums(image: &mut [u8]) {
    let sb_range = SUPER_OFFSET as usize..SUPER_OFFSET as usize + SUPER_SIZE;
    let Some(Ok(sb)) = image.get(sb_range.clone()).map(Superblock::parse) else {
        return;
    };
    let Ok(csum) = CsumType::from_disk(sb.csum_type) else {
        return;
    };
    let seal = |block: &mut [u8]| {
        let c = csum.compute(block.get(32..).unwrap_or(&[]));
        if let Some(head) = block.get_mut(..csum.size()) {
            for (o, b) in head.iter_mut().zip(c.iter()) {
                *o = *b;
            }
        }
    };
    let ns = sb.nodesize as usize;
    let mut off = 0usize;
    while let Some(block) = image.get_mut(off..off.saturating_add(ns)) {
        if block.get(0x20..0x30) == Some(&sb.metadata_uuid[..]) {
            seal(block);
        }
        off += ns;
    }
    if let Some(block) = image.get_mut(sb_range) {
        seal(block);
    }
}
