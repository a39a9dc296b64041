//! Extended attributes: the attribute fork in shortform (inside the inode) and leaf
//! form (one `ATTR_LEAF` block, values too large for it in remote value blocks) are
//! read and written; node-form attribute forks (a hash btree of leaves) are read only.
//!
//! A change loads every attribute, changes the list and writes the fork afresh:
//! shortform when it fits beside the data fork (the fork offset moving to make room,
//! as XFS's attr2 layout does), else one leaf block; a fork that empties is removed.
//! Names carry their namespace: `user.`, `trusted.` and `security.` map to XFS's
//! namespaces; `system.` (POSIX ACLs, stored in XFS's own format) is refused.

use super::bmapw::FMap;
use super::iwrite;
use super::ondisk::dir::hashname;
use super::ondisk::inode::{FMT_BTREE, FMT_DEV, FMT_EXTENTS, FMT_LOCAL};
use super::ondisk::{be16, be32, corrupt, put_bytes, put8, put16, put32, put64, u8_at};
use super::space::{Owner, Want};
use super::trans::Kind;
use super::write::Ctx;
use crate::fs::FsResult;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

/// Namespace flags.
const ATTR_LOCAL: u8 = 0x01;
const ATTR_ROOT: u8 = 0x02;
const ATTR_SECURE: u8 = 0x04;
const ATTR_INCOMPLETE: u8 = 0x80;
const NS_MASK: u8 = ATTR_ROOT | ATTR_SECURE | 0x08;
/// Longest value (Linux's XATTR_SIZE_MAX).
pub const MAX_VALUE: usize = 65536;
/// Attributes one inode may have for skiff to read them.
const MAX_ATTRS: usize = 1 << 16;
const RMT_MAGIC: u32 = 0x5841_524D; // "XARM"
const RMT_HDR: usize = 56;
/// Versionnum bit: some inode has attributes (v4).
const VERSION_ATTRBIT: u16 = 0x0010;

/// One attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ns: u8,
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// Splits `user.foo` into (namespace flags, `foo`).
pub fn split_name(full: &str) -> FsResult<(u8, Vec<u8>)> {
    let bad = |m: &str| Error::new(ErrorKind::InvalidArgument, alloc::format!("xfs: {m}"));
    let (ns, rest) = full
        .split_once('.')
        .ok_or_else(|| bad("attribute names need a namespace (user., trusted., security.)"))?;
    let flags = match ns {
        "user" => 0,
        "trusted" => ATTR_ROOT,
        "security" => ATTR_SECURE,
        "system" => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                alloc::format!(
                    "xfs: extended attribute {full}: system.* (POSIX ACLs) is not supported"
                ),
            ));
        }
        _ => return Err(bad("unknown attribute namespace")),
    };
    if rest.is_empty() || rest.len() > 255 {
        return Err(bad("attribute names are 1 to 255 bytes"));
    }
    Ok((flags, rest.as_bytes().to_vec()))
}

/// `namespace.name` of an attribute (`None` for internal namespaces).
pub fn full_name(ns: u8, name: &[u8]) -> Option<String> {
    let p = match ns & NS_MASK {
        0 => "user.",
        ATTR_ROOT => "trusted.",
        ATTR_SECURE => "security.",
        _ => return None,
    };
    Some(alloc::format!("{p}{}", String::from_utf8_lossy(name)))
}

fn round4(n: usize) -> usize {
    (n + 3) & !3
}

fn entsize_local(nl: usize, vl: usize) -> usize {
    round4(3 + nl + vl)
}

/// `sizeof(xfs_attr_leaf_name_remote) - 1 + namelen`: the struct is padded to 12.
fn entsize_remote(nl: usize) -> usize {
    round4(11 + nl)
}

impl Ctx<'_> {
    fn attr_leaf_hdr(&self) -> usize {
        if self.g.v5 { 80 } else { 32 }
    }

    fn attr_rmt_room(&self) -> usize {
        self.g.bs as usize - if self.g.v5 { RMT_HDR } else { 0 }
    }

    /// Every attribute of `ino`.
    pub fn attr_list(&mut self, ino: u64) -> FsResult<Vec<Attr>> {
        let g = self.g;
        let raw = self.inode_copy(ino)?;
        if iwrite::forkoff(&raw) == 0 {
            return Ok(Vec::new());
        }
        match iwrite::aformat(&raw) {
            FMT_LOCAL => parse_sf(ino, iwrite::afork(g, &raw)),
            FMT_EXTENTS | FMT_BTREE => {
                let map = self.load_fmap(ino, true)?;
                if map.exts.is_empty() {
                    return Ok(Vec::new());
                }
                let root = self.attr_block(&map, 0)?;
                let magic = be16(&root, 8);
                if magic == 0x3BEE || magic == 0xFBEE {
                    return self.leaf_attrs(&map, &root);
                }
                // Node form: down the left edge, then along the leaves.
                let mut blk = root;
                for _ in 0..super::ondisk::dir::MAX_DA_DEPTH {
                    let m = be16(&blk, 8);
                    if m == 0x3BEE || m == 0xFBEE {
                        break;
                    }
                    if m != 0x3EBE && m != 0xFEBE {
                        return Err(corrupt(format_args!("inode {ino}: bad attribute node")));
                    }
                    let first = be32(&blk, self.da_hdr() + 4);
                    blk = self.attr_block(&map, u64::from(first))?;
                }
                let mut out = Vec::new();
                for _ in 0..(1 << 16) {
                    let m = be16(&blk, 8);
                    if m != 0x3BEE && m != 0xFBEE {
                        return Err(corrupt(format_args!("inode {ino}: bad attribute leaf")));
                    }
                    out.extend(self.leaf_attrs(&map, &blk)?);
                    if out.len() > MAX_ATTRS {
                        return Err(Error::new(ErrorKind::TooLarge, "xfs: too many attributes"));
                    }
                    let forw = be32(&blk, 0);
                    if forw == 0 {
                        return Ok(out);
                    }
                    blk = self.attr_block(&map, u64::from(forw))?;
                }
                Err(corrupt(format_args!("inode {ino}: attribute leaves loop")))
            }
            f => Err(corrupt(format_args!(
                "inode {ino}: attribute fork format {f}"
            ))),
        }
    }

    fn da_hdr(&self) -> usize {
        super::ondisk::dir::da_hdr_len(self.sb)
    }

    /// Block `ablk` of the attribute fork (one filesystem block), checked.
    fn attr_block(&mut self, map: &FMap, ablk: u64) -> FsResult<Vec<u8>> {
        let ino = map.ino;
        let e = map.find(ablk).ok_or_else(|| {
            corrupt(format_args!(
                "inode {ino}: attribute block {ablk} not mapped"
            ))
        })?;
        let off = self
            .sb
            .fsb_to_byte(e.block + (ablk - e.off))
            .ok_or_else(|| corrupt(format_args!("inode {ino}: bad attribute map")))?;
        let bs = self.g.bs as usize;
        let v5 = self.g.v5;
        let uuid = self.g.uuid;
        let b = self
            .tx
            .get_checked(self.io, off, bs, Kind::Meta, |b, trusted| {
                if v5
                    && (!(trusted || super::crc::verify(b, 12))
                        || super::ondisk::be64(b, 16) != off >> 9
                        || super::ondisk::uuid_at(b, 32) != uuid
                        || super::ondisk::be64(b, 48) != ino)
                {
                    return Err(corrupt(format_args!(
                        "inode {ino}: attribute block {ablk}: bad CRC or header"
                    )));
                }
                Ok(())
            })?;
        Ok(b.clone())
    }

    /// The attributes of one leaf block.
    fn leaf_attrs(&mut self, map: &FMap, b: &[u8]) -> FsResult<Vec<Attr>> {
        let ino = map.ino;
        let v5 = self.g.v5;
        let h = self.attr_leaf_hdr();
        let count = usize::from(be16(b, if v5 { 56 } else { 12 }));
        let bs = b.len();
        if h + 8 * count > bs {
            return Err(corrupt(format_args!(
                "inode {ino}: attribute leaf overfilled"
            )));
        }
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let e = h + 8 * i;
            let idx = usize::from(be16(b, e + 4));
            let flags = u8_at(b, e + 6);
            if flags & ATTR_INCOMPLETE != 0 {
                continue;
            }
            if idx < h + 8 * count || idx >= bs {
                return Err(corrupt(format_args!(
                    "inode {ino}: attribute entry outside its leaf"
                )));
            }
            if flags & ATTR_LOCAL != 0 {
                let vl = usize::from(be16(b, idx));
                let nl = usize::from(u8_at(b, idx + 2));
                let name = b.get(idx + 3..idx + 3 + nl);
                let value = b.get(idx + 3 + nl..idx + 3 + nl + vl);
                let (Some(name), Some(value)) = (name, value) else {
                    return Err(corrupt(format_args!(
                        "inode {ino}: attribute overruns its leaf"
                    )));
                };
                out.push(Attr {
                    ns: flags & NS_MASK,
                    name: name.to_vec(),
                    value: value.to_vec(),
                });
            } else {
                let vblk = u64::from(be32(b, idx));
                let vl = be32(b, idx + 4) as usize;
                let nl = usize::from(u8_at(b, idx + 8));
                let name = b
                    .get(idx + 9..idx + 9 + nl)
                    .ok_or_else(|| {
                        corrupt(format_args!("inode {ino}: attribute overruns its leaf"))
                    })?
                    .to_vec();
                if vl > MAX_VALUE {
                    return Err(corrupt(format_args!(
                        "inode {ino}: attribute value too long"
                    )));
                }
                let value = self.read_remote(map, vblk, vl)?;
                out.push(Attr {
                    ns: flags & NS_MASK,
                    name,
                    value,
                });
            }
        }
        Ok(out)
    }

    /// A remote value of `len` bytes from attribute block `vblk` on.
    fn read_remote(&mut self, map: &FMap, vblk: u64, len: usize) -> FsResult<Vec<u8>> {
        let ino = map.ino;
        let room = self.attr_rmt_room();
        let blocks = len.div_ceil(room).max(1) as u64;
        let bs = self.g.bs as usize;
        let mut out = Vec::with_capacity(len);
        for i in 0..blocks {
            let ablk = vblk + i;
            let e = map
                .find(ablk)
                .ok_or_else(|| corrupt(format_args!("inode {ino}: attribute value not mapped")))?;
            let off = self
                .sb
                .fsb_to_byte(e.block + (ablk - e.off))
                .ok_or_else(|| corrupt(format_args!("inode {ino}: bad attribute map")))?;
            let b = self.io.read_vec(off, bs)?;
            let want = (len - out.len()).min(room);
            let hdr = if self.g.v5 {
                if be32(&b, 0) != RMT_MAGIC
                    || !super::crc::verify(&b, 12)
                    || be32(&b, 8) as usize != want
                    || super::ondisk::be64(&b, 16 + 16) != ino
                {
                    return Err(corrupt(format_args!(
                        "inode {ino}: bad attribute value block"
                    )));
                }
                RMT_HDR
            } else {
                0
            };
            out.extend_from_slice(b.get(hdr..hdr + want).unwrap_or(&[]));
        }
        Ok(out)
    }

    /// The value of attribute `name` in namespace `ns`.
    pub fn attr_get(&mut self, ino: u64, ns: u8, name: &[u8]) -> FsResult<Option<Vec<u8>>> {
        Ok(self
            .attr_list(ino)?
            .into_iter()
            .find(|a| a.ns == ns && a.name == name)
            .map(|a| a.value))
    }

    /// Sets (`Some`) or removes (`None`) attribute `name`; false when removing one that
    /// does not exist.
    pub fn attr_change(
        &mut self,
        ino: u64,
        ns: u8,
        name: &[u8],
        value: Option<&[u8]>,
    ) -> FsResult<bool> {
        if !self.g.attr2 {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "xfs: writing extended attributes on a v4 filesystem without attr2",
            ));
        }
        if let Some(v) = value
            && v.len() > MAX_VALUE
        {
            return Err(Error::new(
                ErrorKind::TooLarge,
                "xfs: attribute values hold at most 64 KiB",
            ));
        }
        let raw = self.inode_copy(ino)?;
        if iwrite::forkoff(&raw) != 0
            && iwrite::aformat(&raw) != FMT_LOCAL
            && iwrite::aformat(&raw) != FMT_EXTENTS
        {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "xfs: changing a btree-format attribute fork",
            ));
        }
        let mut attrs = self.attr_list(ino)?;
        if iwrite::forkoff(&raw) != 0 && iwrite::aformat(&raw) == FMT_EXTENTS {
            let map = self.load_fmap(ino, true)?;
            if map.end() > 0 && {
                let b = self.attr_block(&map, 0)?;
                let m = be16(&b, 8);
                m != 0x3BEE && m != 0xFBEE
            } {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "xfs: changing a node-form attribute fork",
                ));
            }
        }
        let pos = attrs.iter().position(|a| a.ns == ns && a.name == name);
        match (value, pos) {
            (None, None) => return Ok(false),
            (None, Some(i)) => {
                attrs.remove(i);
            }
            (Some(v), Some(i)) => {
                if let Some(a) = attrs.get_mut(i) {
                    a.value = v.to_vec();
                }
            }
            (Some(v), None) => attrs.push(Attr {
                ns,
                name: name.to_vec(),
                value: v.to_vec(),
            }),
        }
        self.store_attrs(ino, &attrs)?;
        let (g, now) = (self.g, self.now);
        iwrite::touch(g, self.inode(ino)?, iwrite::Times::changed(now));
        if !g.v5 {
            let sb = self.sbuf()?;
            let v = be16(sb, 0x64);
            if v & VERSION_ATTRBIT == 0 {
                put16(sb, 0x64, v | VERSION_ATTRBIT);
            }
        }
        Ok(true)
    }

    /// Bytes the data fork needs at least, given its contents.
    fn data_fork_need(&mut self, ino: u64) -> FsResult<usize> {
        let g = self.g;
        let raw = self.inode(ino)?;
        Ok(match iwrite::format(raw) {
            FMT_DEV => 8,
            FMT_LOCAL => (iwrite::size(raw) as usize).div_ceil(8) * 8,
            FMT_EXTENTS => {
                ((iwrite::nextents(g, raw) as usize) * 16)
                    .max(56)
                    .div_ceil(8)
                    * 8
            }
            _ => 56,
        })
    }

    /// The fork offset (bytes) leaving `bytes` for the attribute fork, if the data fork
    /// still fits.
    fn fit_forkoff(&mut self, ino: u64, bytes: usize) -> FsResult<Option<usize>> {
        let lit = self.g.lit;
        let need = self.data_fork_need(ino)?;
        let Some(off) = lit.checked_sub(bytes.max(40)) else {
            return Ok(None);
        };
        let off = off / 8 * 8;
        Ok((off >= need && off > 0).then_some(off))
    }

    /// Sets the fork offset; a btree data fork is laid out again for its new size.
    fn set_forkoff(&mut self, ino: u64, off: usize) -> FsResult<()> {
        let g = self.g;
        let raw = self.inode(ino)?;
        let old = iwrite::forkoff(raw);
        if old == off {
            return Ok(());
        }
        let fmt = iwrite::format(raw);
        let mut dmap = if fmt == FMT_BTREE || fmt == FMT_EXTENTS {
            Some(self.load_fmap(ino, false)?)
        } else {
            None
        };
        let raw = self.inode(ino)?;
        // Keep the data fork's bytes while its area moves.
        let data = iwrite::dfork(g, raw).to_vec();
        put8(raw, iwrite::DI_FORKOFF, (off / 8) as u8);
        let d = iwrite::dfork_mut(g, raw);
        d.fill(0);
        let n = d.len().min(data.len());
        put_bytes(d, 0, data.get(..n).unwrap_or(&[]));
        if let Some(af) = raw.get_mut(g.core + off.max(1)..g.core + g.lit)
            && off > 0
        {
            af.fill(0);
        }
        if let Some(m) = dmap.as_mut() {
            m.dirty = true;
            self.store_fmap(m)?;
        }
        Ok(())
    }

    /// Frees the attribute fork of `ino` (blocks and all).
    pub fn drop_attr_fork(&mut self, ino: u64) -> FsResult<()> {
        let g = self.g;
        let raw = self.inode(ino)?;
        if iwrite::forkoff(raw) == 0 {
            return Ok(());
        }
        if iwrite::aformat(raw) != FMT_LOCAL {
            let mut map = self.load_fmap(ino, true)?;
            let mut freed = 0i64;
            for p in map.unmap(0, u64::MAX >> 12) {
                let off = self.sb.fsb_to_byte(p.block).unwrap_or(0);
                self.tx.forget(off, p.len << g.blog);
                self.free_extent(p.block, p.len as u32, Owner::attr(ino, p.off))?;
                freed += p.len as i64;
            }
            self.store_fmap(&mut map)?;
            iwrite::add_nblocks(self.inode(ino)?, -freed)?;
        }
        let raw = self.inode(ino)?;
        iwrite::afork_mut(g, raw).fill(0);
        iwrite::set_anextents(g, raw, 0)?;
        put8(raw, iwrite::DI_AFORMAT, FMT_EXTENTS);
        put8(raw, iwrite::DI_FORKOFF, 0);
        Ok(())
    }

    /// Writes `attrs` as the attribute fork of `ino`.
    fn store_attrs(&mut self, ino: u64, attrs: &[Attr]) -> FsResult<()> {
        let g = self.g;
        self.drop_attr_fork(ino)?;
        if attrs.is_empty() {
            return Ok(());
        }
        // Shortform, if every entry is small enough and the fork fits.
        let sf_ok = attrs
            .iter()
            .all(|a| a.name.len() < 255 && a.value.len() < 255);
        let sf_size = 4 + attrs
            .iter()
            .map(|a| 3 + a.name.len() + a.value.len())
            .sum::<usize>();
        if sf_ok && let Some(off) = self.fit_forkoff(ino, sf_size)? {
            self.set_forkoff(ino, off)?;
            let raw = self.inode(ino)?;
            let af = iwrite::afork_mut(g, raw);
            put16(af, 0, sf_size as u16);
            put8(af, 2, attrs.len() as u8);
            let mut at = 4;
            for a in attrs {
                put8(af, at, a.name.len() as u8);
                put8(af, at + 1, a.value.len() as u8);
                put8(af, at + 2, a.ns);
                put_bytes(af, at + 3, &a.name);
                put_bytes(af, at + 3 + a.name.len(), &a.value);
                at += 3 + a.name.len() + a.value.len();
            }
            put8(raw, iwrite::DI_AFORMAT, FMT_LOCAL);
            return Ok(());
        }
        // One leaf block (values too big for it go to remote blocks after it).
        let bs = g.bs as usize;
        let h = self.attr_leaf_hdr();
        let local_max = bs / 2;
        let mut ents: Vec<(u32, usize, bool)> = Vec::new(); // (hash, attr index, local)
        let mut used = 0usize;
        for (i, a) in attrs.iter().enumerate() {
            let ls = entsize_local(a.name.len(), a.value.len());
            let local = ls < local_max;
            used += if local {
                ls
            } else {
                entsize_remote(a.name.len())
            };
            ents.push((hashname(&a.name), i, local));
        }
        if h + 8 * ents.len() + used > bs {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "xfs: attributes needing more than one attribute leaf block",
            ));
        }
        let Some(off) = self.fit_forkoff(ino, 16)? else {
            return Err(Error::new(
                ErrorKind::NoSpace,
                "xfs: no room in the inode for an attribute fork",
            ));
        };
        self.set_forkoff(ino, off)?;
        let mut map = self.load_fmap(ino, true)?;
        // Remote values first: their blocks follow the leaf (block 0).
        let room = self.attr_rmt_room();
        let mut vblk_of: Vec<u32> = vec![0; attrs.len()];
        let mut next = 1u64;
        let agno = (ino >> self.sb.agino_log()) as u32;
        let mut nblocks = 0i64;
        for &(_, i, local) in &ents {
            if local {
                continue;
            }
            let a = attrs.get(i).ok_or_else(|| corrupt("attribute index"))?;
            let blocks = a.value.len().div_ceil(room).max(1) as u64;
            let start = next;
            let mut done = 0u64;
            while done < blocks {
                let got = self.alloc(
                    Want {
                        agno,
                        near: None,
                        minlen: 1,
                        maxlen: (blocks - done) as u32,
                        align: 1,
                        data: true,
                        same_ag: false,
                    },
                    Owner::attr(ino, start + done),
                )?;
                let Some((fsb, len)) = got else {
                    return Err(Error::new(
                        ErrorKind::NoSpace,
                        "xfs: no space for an attribute value",
                    ));
                };
                map.map(start + done, fsb, u64::from(len), false)?;
                nblocks += i64::from(len);
                for k in 0..u64::from(len) {
                    let vi = done + k;
                    let lo = vi as usize * room;
                    let chunk = a
                        .value
                        .get(lo..(lo + room).min(a.value.len()))
                        .unwrap_or(&[]);
                    let mut b = vec![0u8; bs];
                    let daddr = self
                        .sb
                        .fsb_to_byte(fsb + k)
                        .ok_or_else(|| corrupt("attribute block outside the filesystem"))?;
                    if g.v5 {
                        put32(&mut b, 0, RMT_MAGIC);
                        put32(&mut b, 4, lo as u32);
                        put32(&mut b, 8, chunk.len() as u32);
                        put_bytes(&mut b, 16, &g.uuid);
                        put64(&mut b, 32, ino);
                        put64(&mut b, 40, daddr >> 9);
                        put64(&mut b, 48, u64::MAX);
                        put_bytes(&mut b, RMT_HDR, chunk);
                        super::trans::reseal(&mut b, 12);
                    } else {
                        put_bytes(&mut b, 0, chunk);
                    }
                    // Values are written unlogged, like file data, before the commit.
                    self.io.write(daddr, &b)?;
                }
                done += u64::from(len);
            }
            if let Some(v) = vblk_of.get_mut(i) {
                *v = start as u32;
            }
            next += blocks;
        }
        // The leaf.
        let got = self.alloc(
            Want {
                agno,
                near: None,
                minlen: 1,
                maxlen: 1,
                align: 1,
                data: false,
                same_ag: false,
            },
            Owner::attr(ino, 0),
        )?;
        let Some((lfsb, _)) = got else {
            return Err(Error::new(
                ErrorKind::NoSpace,
                "xfs: no space for an attribute leaf",
            ));
        };
        map.map(0, lfsb, 1, false)?;
        nblocks += 1;
        let loff = self
            .sb
            .fsb_to_byte(lfsb)
            .ok_or_else(|| corrupt("attribute leaf outside the filesystem"))?;
        let mut b = vec![0u8; bs];
        put16(&mut b, 8, if g.v5 { 0x3BEE } else { 0xFBEE });
        if g.v5 {
            put64(&mut b, 16, loff >> 9);
            put_bytes(&mut b, 32, &g.uuid);
            put64(&mut b, 48, ino);
        }
        ents.sort_unstable();
        let mut top = bs;
        for (k, &(hash, i, local)) in ents.iter().enumerate() {
            let a = attrs.get(i).ok_or_else(|| corrupt("attribute index"))?;
            let size = if local {
                entsize_local(a.name.len(), a.value.len())
            } else {
                entsize_remote(a.name.len())
            };
            top -= size;
            if local {
                put16(&mut b, top, a.value.len() as u16);
                put8(&mut b, top + 2, a.name.len() as u8);
                put_bytes(&mut b, top + 3, &a.name);
                put_bytes(&mut b, top + 3 + a.name.len(), &a.value);
            } else {
                put32(&mut b, top, vblk_of.get(i).copied().unwrap_or(0));
                put32(&mut b, top + 4, a.value.len() as u32);
                put8(&mut b, top + 8, a.name.len() as u8);
                put_bytes(&mut b, top + 9, &a.name);
            }
            let e = h + 8 * k;
            put32(&mut b, e, hash);
            put16(&mut b, e + 4, top as u16);
            put8(&mut b, e + 6, a.ns | if local { ATTR_LOCAL } else { 0 });
        }
        let (cnt, usedb, first, fmap) = if g.v5 {
            (56, 58, 60, 64)
        } else {
            (12, 14, 16, 20)
        };
        put16(&mut b, cnt, ents.len() as u16);
        put16(&mut b, usedb, (bs - top) as u16);
        put16(&mut b, first, if top == 65536 { 0 } else { top as u16 });
        let base = h + 8 * ents.len();
        put16(&mut b, fmap, base as u16);
        put16(&mut b, fmap + 2, (top - base) as u16);
        self.tx.new_buf(loff, bs, Kind::Meta)?.copy_from_slice(&b);
        put8(self.inode(ino)?, iwrite::DI_AFORMAT, FMT_EXTENTS);
        self.store_fmap(&mut map)?;
        iwrite::add_nblocks(self.inode(ino)?, nblocks)?;
        Ok(())
    }
}

/// Parses a shortform attribute fork.
fn parse_sf(ino: u64, af: &[u8]) -> FsResult<Vec<Attr>> {
    let total = usize::from(be16(af, 0));
    let count = usize::from(u8_at(af, 2));
    if total < 4 || total > af.len() {
        return Err(corrupt(format_args!(
            "inode {ino}: shortform attributes overrun"
        )));
    }
    let mut out = Vec::with_capacity(count);
    let mut at = 4;
    for _ in 0..count {
        let nl = usize::from(u8_at(af, at));
        let vl = usize::from(u8_at(af, at + 1));
        let flags = u8_at(af, at + 2);
        let end = at + 3 + nl + vl;
        if nl == 0 || end > total {
            return Err(corrupt(format_args!(
                "inode {ino}: shortform attribute overruns"
            )));
        }
        out.push(Attr {
            ns: flags & NS_MASK,
            name: af.get(at + 3..at + 3 + nl).unwrap_or(&[]).to_vec(),
            value: af.get(at + 3 + nl..end).unwrap_or(&[]).to_vec(),
        });
        at = end;
    }
    Ok(out)
}
