//! Shared (reflinked) blocks: the reference count btree records every range of an AG
//! that more than one file maps (ranges used once have no record). Dropping one
//! file's mapping of a range decrements what is shared (a record reaching 1 goes) and
//! frees only what was not; neighbouring records left with the same count are merged,
//! as XFS keeps them. Writing into shared blocks copies them first (see `fileops`).

use super::btree::{Bt, Tree};
use super::ondisk::{be32, corrupt, put32};
use super::write::Ctx;
use crate::fs::FsResult;
use alloc::vec::Vec;

/// Copy-on-write staging records live above this (a separate key domain).
const COW_FLAG: u32 = 0x8000_0000;

fn rec(start: u32, len: u32, count: u32) -> Vec<u8> {
    let mut r = alloc::vec![0u8; 12];
    put32(&mut r, 0, start);
    put32(&mut r, 4, len);
    put32(&mut r, 8, count);
    r
}

/// A decoded record: (start, length, count).
type Refc = (u32, u32, u32);

impl Ctx<'_> {
    /// Shared-domain records meeting blocks `lo..=hi` of `agno`, in order.
    fn refcs(&mut self, agno: u32, lo: u32, hi: u32) -> FsResult<Vec<Refc>> {
        let bt = Bt::new(Tree::Refc, agno);
        let mut v: Vec<Refc> = bt
            .query_blocks(self, lo, hi)?
            .iter()
            .map(|r| (be32(r, 0), be32(r, 4), be32(r, 8)))
            .filter(|r| r.0 & COW_FLAG == 0)
            .collect();
        v.sort_unstable();
        let ag_len = self.ag_len(agno);
        for (i, r) in v.iter().enumerate() {
            let end = r.0.checked_add(r.1).filter(|&e| e <= ag_len);
            let overlaps = v.get(i + 1).is_some_and(|n| end.is_some_and(|e| n.0 < e));
            if r.1 == 0 || r.2 < 2 || end.is_none() || overlaps {
                return Err(corrupt(format_args!(
                    "AG {agno} reference count btree: bad record {}+{} x{}",
                    r.0, r.1, r.2
                )));
            }
        }
        Ok(v)
    }

    fn refc_delete(&mut self, agno: u32, r: Refc) -> FsResult<()> {
        let bt = Bt::new(Tree::Refc, agno);
        let (path, _) = bt.find_eq(self, &rec(r.0, r.1, r.2))?.ok_or_else(|| {
            corrupt(format_args!(
                "AG {agno} reference count btree: record missing"
            ))
        })?;
        bt.delete(self, &path)
    }

    /// Drops one mapping of blocks `agbno..+len` of `agno`: shared parts lose a
    /// reference; returns the parts nobody else maps (to be freed by the caller).
    pub fn refc_decrease(&mut self, agno: u32, agbno: u32, len: u32) -> FsResult<Vec<(u32, u32)>> {
        if !self.g.reflink || len == 0 {
            return Ok(alloc::vec![(agbno, len)]);
        }
        let end = agbno
            .checked_add(len)
            .ok_or_else(|| corrupt("reference count range overflows"))?;
        let recs = self.refcs(agno, agbno, end - 1)?;
        if recs.is_empty() {
            return Ok(alloc::vec![(agbno, len)]);
        }
        let mut free = Vec::new();
        let mut at = agbno;
        let mut new_recs: Vec<Refc> = Vec::new();
        for &(s, l, n) in &recs {
            let e = s + l;
            if s > at {
                free.push((at, s.min(end) - at));
            }
            self.refc_delete(agno, (s, l, n))?;
            if s < agbno {
                new_recs.push((s, agbno - s, n));
            }
            let a = s.max(agbno);
            let b = e.min(end);
            if n > 2 {
                new_recs.push((a, b - a, n - 1));
            }
            if e > end {
                new_recs.push((end, e - end, n));
            }
            at = b;
        }
        if at < end {
            free.push((at, end - at));
        }
        for r in new_recs {
            Bt::new(Tree::Refc, agno).insert(self, &rec(r.0, r.1, r.2))?;
        }
        self.refc_merge(agno, agbno.saturating_sub(1), end)?;
        Ok(free)
    }

    /// Merges contiguous records of equal count meeting blocks `lo..=hi`.
    fn refc_merge(&mut self, agno: u32, lo: u32, hi: u32) -> FsResult<()> {
        let recs = self.refcs(agno, lo, hi)?;
        let mut merged: Vec<Refc> = Vec::new();
        for r in &recs {
            match merged.last_mut() {
                Some(m) if m.0 + m.1 == r.0 && m.2 == r.2 && m.1.checked_add(r.1).is_some() => {
                    m.1 += r.1
                }
                _ => merged.push(*r),
            }
        }
        if merged.len() == recs.len() {
            return Ok(());
        }
        for r in recs {
            self.refc_delete(agno, r)?;
        }
        for r in merged {
            Bt::new(Tree::Refc, agno).insert(self, &rec(r.0, r.1, r.2))?;
        }
        Ok(())
    }
}
