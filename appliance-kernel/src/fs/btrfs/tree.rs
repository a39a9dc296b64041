//! Tree blocks: reading them through the chunk map (trying every local copy until one
//! checksums), validating them once, caching them (bounded, keyed by logical address),
//! and searching B-trees.
//!
//! Every block is checked before use: checksum, its own address, the filesystem UUID,
//! level, item count and strictly ascending keys; a leaf's item data must lie inside the
//! block. Descending, a child must have the level below its parent, the generation the
//! parent recorded, a first key equal to the parent's key for it and a last key below
//! the parent's next key. Levels strictly decrease, so a walk is at most 8 blocks deep
//! and a pointer cycle (a block pointing at itself or an ancestor) is a level mismatch.

use super::chunk::ChunkMap;
use super::corrupt;
use super::csum::CsumType;
use super::ondisk::*;
use crate::block::SharedDevice;
use crate::fs::FsResult;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::vec;
use wire::{Error, ErrorKind};

/// Bytes of tree blocks kept in the cache.
const CACHE_BYTES: usize = 4 << 20;

/// Where a tree starts.
#[derive(Clone, Copy, Debug)]
pub struct TreeRoot {
    pub bytenr: u64,
    pub level: u8,
    /// The generation the root block must carry (from the superblock or the root item).
    pub generation: u64,
}

/// A validated tree block.
#[derive(Clone)]
pub struct Node {
    pub buf: Rc<[u8]>,
    pub level: u8,
    pub nritems: usize,
    pub generation: u64,
}

impl Node {
    pub fn key(&self, i: usize) -> Option<Key> {
        let stride = if self.level == 0 {
            ITEM_SIZE
        } else {
            KEY_PTR_SIZE
        };
        Key::parse(&self.buf, HEADER_SIZE.checked_add(i.checked_mul(stride)?)?)
    }

    /// (block pointer, generation) of an internal node's child `i`.
    pub fn child(&self, i: usize) -> Option<(u64, u64)> {
        let off = HEADER_SIZE.checked_add(i.checked_mul(KEY_PTR_SIZE)?)?;
        Some((le64(&self.buf, off + 17)?, le64(&self.buf, off + 25)?))
    }

    /// Byte range of a leaf item's data within the block.
    pub fn item_range(&self, i: usize) -> Option<(usize, usize)> {
        let off = HEADER_SIZE.checked_add(i.checked_mul(ITEM_SIZE)?)?;
        let data_off = le32(&self.buf, off + 17)? as usize;
        let size = le32(&self.buf, off + 21)? as usize;
        let start = HEADER_SIZE.checked_add(data_off)?;
        let end = start.checked_add(size)?;
        (end <= self.buf.len()).then_some((start, end))
    }

    /// Index of the last key <= `key`, if any (keys are validated ascending).
    fn last_le(&self, key: &Key) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.nritems);
        // Invariant: keys before `lo` are <= key, keys from `hi` on are > key.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key(mid) {
                Some(k) if k <= *key => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo.checked_sub(1)
    }
}

/// An item found by a search: its key and its data inside a cached block.
pub struct Item {
    pub key: Key,
    node: Rc<[u8]>,
    start: usize,
    end: usize,
}

impl Item {
    pub fn data(&self) -> &[u8] {
        self.node.get(self.start..self.end).unwrap_or(&[])
    }
}

/// Least-recently-used cache of validated blocks.
struct NodeCache {
    map: BTreeMap<u64, (Node, u64)>,
    tick: u64,
    cap: usize,
}

impl NodeCache {
    fn get(&mut self, bytenr: u64) -> Option<Node> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(&bytenr).map(|(n, t)| {
            *t = tick;
            n.clone()
        })
    }

    fn insert(&mut self, bytenr: u64, node: Node) {
        if self.map.len() >= self.cap {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.map.remove(&k);
            }
        }
        self.tick += 1;
        self.map.insert(bytenr, (node, self.tick));
    }
}

/// Reads blocks and data of one btrfs device.
pub struct Reader {
    pub dev: SharedDevice,
    pub chunks: ChunkMap,
    pub csum: CsumType,
    pub nodesize: usize,
    pub sectorsize: usize,
    metadata_uuid: [u8; 16],
    cache: NodeCache,
}

impl Reader {
    pub fn new(
        dev: SharedDevice,
        chunks: ChunkMap,
        csum: CsumType,
        nodesize: usize,
        sectorsize: usize,
        metadata_uuid: [u8; 16],
    ) -> Self {
        Reader {
            dev,
            chunks,
            csum,
            nodesize,
            sectorsize,
            metadata_uuid,
            cache: NodeCache {
                map: BTreeMap::new(),
                tick: 0,
                cap: (CACHE_BYTES / nodesize).max(16),
            },
        }
    }

    /// Reads `buf.len()` bytes at `logical` from copy `mirror`, in as few device requests
    /// as the chunk layout allows.
    pub fn read_logical(&mut self, logical: u64, buf: &mut [u8], mirror: usize) -> FsResult<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = logical
                .checked_add(done as u64)
                .ok_or_else(|| corrupt("logical address overflows"))?;
            let want = (buf.len() - done) as u64;
            let m = self.chunks.map(at, want, mirror)?;
            // `m.len` <= `want`, which fits in the rest of `buf`.
            let n = m.len as usize;
            if n == 0 {
                return Err(corrupt(format!("chunk mapping of {at} is empty")));
            }
            let piece = buf
                .get_mut(done..done + n)
                .ok_or_else(|| corrupt(format!("chunk mapping of {at} is too long")))?;
            self.dev
                .borrow_mut()
                .read_at(m.physical, piece)
                .map_err(|e| {
                    Error::new(ErrorKind::Io, format!("btrfs: reading {at}: {}", e.message))
                })?;
            done += n;
        }
        Ok(())
    }

    /// The block at `logical`, checked against the level and generation its referrer
    /// expects. Tries every copy on this device before reporting a bad checksum.
    pub fn read_node(&mut self, logical: u64, level: u8, generation: u64) -> FsResult<Node> {
        let node = match self.cache.get(logical) {
            Some(n) => n,
            None => {
                let n = self.read_node_uncached(logical)?;
                self.cache.insert(logical, n.clone());
                n
            }
        };
        if node.level != level {
            return Err(corrupt(format!(
                "tree block {logical}: level {} where {level} was expected",
                node.level
            )));
        }
        if node.generation != generation {
            return Err(corrupt(format!(
                "tree block {logical}: generation {} where {generation} was expected",
                node.generation
            )));
        }
        Ok(node)
    }

    fn read_node_uncached(&mut self, logical: u64) -> FsResult<Node> {
        let copies = self.chunks.copies(logical);
        let mut first_err = None;
        for mirror in 0..copies.max(1) {
            let mut buf = vec![0u8; self.nodesize];
            let r = self
                .read_logical(logical, &mut buf, mirror)
                .and_then(|_| self.validate(logical, &buf));
            match r {
                Ok(node) => return Ok(node),
                Err(e) => {
                    // A copy on a missing device: try the next one.
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| corrupt(format!("tree block {logical}: unreadable"))))
    }

    fn validate(&self, logical: u64, buf: &[u8]) -> FsResult<Node> {
        let bad = |what: &str| corrupt(format!("tree block {logical}: {what}"));
        let stored = buf.get(..32).ok_or_else(|| bad("truncated"))?;
        let body = buf.get(32..).ok_or_else(|| bad("truncated"))?;
        if !self.csum.verify(body, stored) {
            return Err(bad(&format!("{} checksum mismatch", self.csum.name())));
        }
        let h = Header::parse(buf).ok_or_else(|| bad("truncated header"))?;
        if h.bytenr != logical {
            return Err(bad(&format!("header records address {}", h.bytenr)));
        }
        if h.fsid != self.metadata_uuid {
            return Err(bad("belongs to another filesystem"));
        }
        if h.level >= MAX_LEVEL {
            return Err(bad(&format!("level {}", h.level)));
        }
        let n = h.nritems as usize;
        let stride = if h.level == 0 {
            ITEM_SIZE
        } else {
            KEY_PTR_SIZE
        };
        if n.checked_mul(stride)
            .and_then(|x| x.checked_add(HEADER_SIZE))
            .is_none_or(|end| end > buf.len())
        {
            return Err(bad(&format!("{n} items do not fit")));
        }
        if h.level > 0 && n == 0 {
            return Err(bad("empty internal node"));
        }
        let node = Node {
            buf: Rc::from(buf),
            level: h.level,
            nritems: n,
            generation: h.generation,
        };
        let table_end = HEADER_SIZE + n * stride;
        let mut prev: Option<Key> = None;
        for i in 0..n {
            let k = node.key(i).ok_or_else(|| bad("truncated key"))?;
            if prev.is_some_and(|p| p >= k) {
                return Err(bad(&format!("keys out of order at item {i}")));
            }
            prev = Some(k);
            if h.level == 0 {
                match node.item_range(i) {
                    Some((s, _)) if s >= table_end => {}
                    _ => return Err(bad(&format!("item {i} data outside the block"))),
                }
            }
        }
        Ok(node)
    }

    /// Checks that `child` (reached through `parent`'s slot `i`) holds exactly the key
    /// range its parent assigns it: first key equal to the slot's key, last key below
    /// `hi` (the parent's next key, or the bound the parent itself had).
    fn check_child(&self, child: &Node, first: &Key, hi: Option<&Key>, at: u64) -> FsResult<()> {
        if child.nritems == 0 {
            return Err(corrupt(format!("tree block {at}: empty non-root block")));
        }
        if child.key(0).as_ref() != Some(first) {
            return Err(corrupt(format!(
                "tree block {at}: first key does not match its parent"
            )));
        }
        if let Some(hi) = hi
            && child.key(child.nritems - 1).is_none_or(|k| k >= *hi)
        {
            return Err(corrupt(format!(
                "tree block {at}: keys beyond its parent's range"
            )));
        }
        Ok(())
    }

    /// The item with the greatest key <= `key`.
    pub fn find_le(&mut self, root: &TreeRoot, key: &Key) -> FsResult<Option<Item>> {
        let mut node = self.read_node(root.bytenr, root.level, root.generation)?;
        let mut hi: Option<Key> = None;
        loop {
            let Some(i) = node.last_le(key) else {
                return Ok(None);
            };
            if node.level == 0 {
                let (start, end) = node
                    .item_range(i)
                    .ok_or_else(|| corrupt("leaf item outside its block"))?;
                let k = node.key(i).ok_or_else(|| corrupt("truncated key"))?;
                return Ok(Some(Item {
                    key: k,
                    node: node.buf.clone(),
                    start,
                    end,
                }));
            }
            let first = node.key(i).ok_or_else(|| corrupt("truncated key"))?;
            if let Some(next) = node.key(i + 1).filter(|_| i + 1 < node.nritems) {
                hi = Some(next);
            }
            let (ptr, generation) = node
                .child(i)
                .ok_or_else(|| corrupt("truncated key pointer"))?;
            let child = self.read_node(ptr, node.level - 1, generation)?;
            self.check_child(&child, &first, hi.as_ref(), ptr)?;
            node = child;
        }
    }

    /// The item with exactly `key`.
    pub fn lookup(&mut self, root: &TreeRoot, key: &Key) -> FsResult<Option<Item>> {
        Ok(self.find_le(root, key)?.filter(|it| it.key == *key))
    }

    /// Calls `f` on every item with `min <= key <= max`, in key order, until it returns
    /// `false`.
    pub fn walk(
        &mut self,
        root: &TreeRoot,
        min: &Key,
        max: &Key,
        f: &mut dyn FnMut(&Key, &[u8]) -> FsResult<bool>,
    ) -> FsResult<()> {
        let node = self.read_node(root.bytenr, root.level, root.generation)?;
        self.walk_node(&node, None, min, max, f).map(|_| ())
    }

    fn walk_node(
        &mut self,
        node: &Node,
        hi: Option<&Key>,
        min: &Key,
        max: &Key,
        f: &mut dyn FnMut(&Key, &[u8]) -> FsResult<bool>,
    ) -> FsResult<bool> {
        let n = node.nritems;
        if node.level == 0 {
            let start = node.last_le(min).unwrap_or(0);
            for i in start..n {
                let k = node.key(i).ok_or_else(|| corrupt("truncated key"))?;
                if k < *min {
                    continue;
                }
                if k > *max {
                    return Ok(false);
                }
                let (s, e) = node
                    .item_range(i)
                    .ok_or_else(|| corrupt("leaf item outside its block"))?;
                let data = node.buf.get(s..e).unwrap_or(&[]);
                if !f(&k, data)? {
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        let start = node.last_le(min).unwrap_or(0);
        for i in start..n {
            let first = node.key(i).ok_or_else(|| corrupt("truncated key"))?;
            if first > *max {
                return Ok(false);
            }
            let next = if i + 1 < n { node.key(i + 1) } else { None };
            let child_hi = next.as_ref().or(hi);
            let (ptr, generation) = node
                .child(i)
                .ok_or_else(|| corrupt("truncated key pointer"))?;
            let child = self.read_node(ptr, node.level - 1, generation)?;
            self.check_child(&child, &first, child_hi, ptr)?;
            if !self.walk_node(&child, child_hi, min, max, f)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
