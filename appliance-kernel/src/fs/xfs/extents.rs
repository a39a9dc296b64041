//! Data fork block maps: the extent list of an extents-format fork, or a window of a
//! btree-format fork (bmbt) loaded around the blocks asked for. Windows of the last few
//! inodes used are cached, so chunked sequential reads of a big fragmented file walk
//! the tree once per few thousand extents rather than once per read.

use super::XfsFs;
use super::ondisk::bmap::{self, BtreeBlock, Extent, NULL_FSBLOCK};
use super::ondisk::corrupt;
use super::ondisk::inode::{FMT_BTREE, FMT_EXTENTS, Inode};
use crate::fs::FsResult;
use alloc::rc::Rc;
use alloc::vec::Vec;

/// Extents a window gathers beyond those the request needs, for the reads that follow
/// (from at most `EXTRA_LEAVES` more leaf blocks).
const WINDOW_TARGET: usize = 4096;
const EXTRA_LEAVES: usize = 64;
/// Extents one window may hold at most: a request needs at most one per block (a 4 MiB
/// read of 512-byte blocks: 8192; a 64 KiB directory block: 128), plus the extras.
const WINDOW_MAX: usize = 16384;
/// Windows cached.
const MAX_WINDOWS: usize = 4;

/// Every extent of one inode's data fork that starts in `lo..hi`, in order; extents
/// starting before `lo` that reach into it are included too.
#[derive(Debug, Clone)]
pub struct Window {
    pub ino: u64,
    pub lo: u64,
    pub hi: u64,
    pub exts: Vec<Extent>,
}

impl Window {
    fn covers(&self, ino: u64, from: u64, to: u64) -> bool {
        self.ino == ino && self.lo <= from && to <= self.hi
    }

    /// The extents overlapping file blocks `from..to`.
    pub fn overlapping(&self, from: u64, to: u64) -> impl Iterator<Item = &Extent> {
        let start = self.exts.partition_point(|e| e.end() <= from);
        self.exts
            .get(start..)
            .unwrap_or(&[])
            .iter()
            .take_while(move |e| e.off < to)
    }

    /// The first extent ending after file block `from`, if the window knows it.
    pub fn next_from(&self, from: u64) -> Option<&Extent> {
        let i = self.exts.partition_point(|e| e.end() <= from);
        self.exts.get(i)
    }
}

impl XfsFs {
    /// A window of `inode`'s data fork map covering file blocks `from..to`.
    pub(super) fn extents(&mut self, inode: &Inode, from: u64, to: u64) -> FsResult<Rc<Window>> {
        if let Some(w) = self.windows.iter().find(|w| w.covers(inode.ino, from, to)) {
            return Ok(w.clone());
        }
        let w = Rc::new(self.load_window(inode, from, to)?);
        if self.windows.len() >= MAX_WINDOWS {
            self.windows.remove(0);
        }
        self.windows.push(w.clone());
        Ok(w)
    }

    fn load_window(&mut self, inode: &Inode, from: u64, to: u64) -> FsResult<Window> {
        let ino = inode.ino;
        match inode.format {
            FMT_EXTENTS => {
                let n = usize::try_from(inode.nextents).unwrap_or(usize::MAX);
                let exts = bmap::parse_records(&self.sb, ino, &inode.fork, n, 0)?;
                Ok(Window {
                    ino,
                    lo: 0,
                    hi: u64::MAX,
                    exts,
                })
            }
            FMT_BTREE => self.bmbt_window(inode, from, to),
            f => Err(corrupt(format_args!(
                "inode {ino}: data fork format {f} has no block map"
            ))),
        }
    }

    /// Reads bmbt block `fsb` (at `level`) of inode `ino`.
    fn bmbt_block(&mut self, ino: u64, fsb: u64, level: u16, after: u64) -> FsResult<BtreeBlock> {
        let off = self
            .sb
            .fsb_to_byte(fsb)
            .ok_or_else(|| corrupt(format_args!("inode {ino}: bad block map block {fsb}")))?;
        self.check_ag_of_fsb(fsb)?;
        let buf = self.io.meta(off, self.sb.block_size as usize)?;
        bmap::parse_block(&self.sb, ino, fsb, &buf, level, after)
    }

    /// Descends the bmbt to the leaf holding file block `from`, then gathers leaves to
    /// the right until `to` is covered and (for later reads) `WINDOW_TARGET` extents.
    fn bmbt_window(&mut self, inode: &Inode, from: u64, to: u64) -> FsResult<Window> {
        let ino = inode.ino;
        #[cfg(test)]
        {
            self.window_loads += 1;
        }
        let mut node = bmap::parse_root(&self.sb, ino, &inode.fork)?;
        let (mut exts, mut right) = loop {
            let i = node.child_for(from);
            let fsb = *node
                .ptrs
                .get(i)
                .ok_or_else(|| corrupt(format_args!("inode {ino}: empty block map node")))?;
            // Levels fall by one per step from at most MAX_LEVELS: the loop ends.
            match self.bmbt_block(ino, fsb, node.level - 1, 0)? {
                BtreeBlock::Node { node: child, .. } => node = child,
                BtreeBlock::Leaf { recs, right } => break (recs, right),
            }
        };
        let lo = exts.first().map_or(from, |e| e.off.min(from));
        let mut extra_leaves = 0usize;
        loop {
            let end = exts.last().map_or(0, Extent::end);
            if right == NULL_FSBLOCK {
                return Ok(Window {
                    ino,
                    lo,
                    hi: u64::MAX,
                    exts,
                });
            }
            if end >= to {
                extra_leaves += 1;
            }
            if end >= to && (exts.len() >= WINDOW_TARGET || extra_leaves > EXTRA_LEAVES) {
                return Ok(Window {
                    ino,
                    lo,
                    hi: end,
                    exts,
                });
            }
            if exts.len() >= WINDOW_MAX {
                if end >= to {
                    return Ok(Window {
                        ino,
                        lo,
                        hi: end,
                        exts,
                    });
                }
                return Err(corrupt(format_args!(
                    "inode {ino}: block map has more than {WINDOW_MAX} extents in one read"
                )));
            }
            // Records must keep increasing across leaves, so a sibling cycle is caught
            // as out-of-order records and the walk always ends.
            match self.bmbt_block(ino, right, 0, end)? {
                BtreeBlock::Leaf { recs, right: r } => {
                    exts.extend(recs);
                    right = r;
                }
                BtreeBlock::Node { .. } => {
                    return Err(corrupt(format_args!(
                        "inode {ino}: block map leaf sibling is not a leaf"
                    )));
                }
            }
        }
    }

    /// The first file block after the last mapped one (0 for an empty fork).
    pub(super) fn last_mapped(&mut self, inode: &Inode) -> FsResult<u64> {
        let ino = inode.ino;
        match inode.format {
            FMT_EXTENTS => {
                let w = self.extents(inode, 0, 1)?;
                Ok(w.exts.last().map_or(0, Extent::end))
            }
            FMT_BTREE => {
                let mut node = bmap::parse_root(&self.sb, ino, &inode.fork)?;
                loop {
                    let fsb = *node.ptrs.last().ok_or_else(|| {
                        corrupt(format_args!("inode {ino}: empty block map node"))
                    })?;
                    let after = node.keys.last().copied().unwrap_or(0);
                    match self.bmbt_block(ino, fsb, node.level - 1, after)? {
                        BtreeBlock::Node { node: child, .. } => node = child,
                        BtreeBlock::Leaf { recs, .. } => {
                            return Ok(recs.last().map_or(0, Extent::end));
                        }
                    }
                }
            }
            f => Err(corrupt(format_args!(
                "inode {ino}: data fork format {f} has no block map"
            ))),
        }
    }
}
