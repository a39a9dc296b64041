//! LVM2: physical volumes, volume groups and logical volumes, read from the PV labels and
//! the VG text metadata; LVs are offered as block devices over the PV devices.
//!
//! [`Scan::new`] looks at every candidate device (whole disks without a partition table,
//! partitions), reads each PV's label and metadata areas, keeps for each VG the metadata
//! with the highest `seqno`, matches the VG's PVs to devices by UUID and works out each
//! LV's layout. Problems are confined as narrowly as the format allows: a corrupt label or
//! metadata area is reported for that device, an LV whose segments lie beyond their PV,
//! overlap another LV's extents or need a missing PV fails alone with an error naming the
//! reason, and the rest of the VG still works.
//!
//! Supported for reading and writing: `linear` and `striped` segments (any stripe count),
//! `raid1` and `mirror` (reads from the first healthy leg, writes go to every leg and are
//! refused when a leg is missing). Thin pools and volumes, snapshots, cache, VDO,
//! raid4/5/6/10 and integrity are listed but opening them is `Unsupported` naming the
//! type. A snapshot's origin is readable, but read-only (a write would bypass the
//! snapshot's copy-on-write).

pub mod config;
pub mod label;
mod lv;
pub mod meta;
#[cfg(test)]
pub(crate) mod tests;

pub use label::PvLabel;
pub use lv::LvDevice;
pub use meta::{LvMeta, PvMeta, SegKind, VgMeta};

use crate::block::{SharedDevice, shared};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use label::{Area, corrupt};
use lv::{Mapping, Piece, Target};
use wire::{Error, ErrorKind, LogicalVolume, PhysicalVolume, VolumeGroup};

/// Deepest LV stacking followed (raid1 → image → linear is 2).
const MAX_LV_DEPTH: usize = 4;
/// Most metadata areas read per PV (LVM writes at most 2).
const MAX_MDAS: usize = 4;

/// A device that may hold a PV: a whole disk without a partition table, or a partition.
#[derive(Clone)]
pub struct Source {
    /// `/dev/sda2`.
    pub name: String,
    /// The whole disk it is on, `/dev/sda`.
    pub disk: String,
    pub dev: SharedDevice,
}

/// A PV label found on a device.
pub struct FoundPv {
    pub name: String,
    pub disk: String,
    pub dev: SharedDevice,
    pub label: PvLabel,
    /// Index in [`Scan::vgs`] of the VG that lists this PV.
    pub vg: Option<usize>,
    /// Metadata areas holding a usable text.
    pub mda_used: usize,
}

/// One volume group: its chosen metadata and what the scan made of it.
pub struct Vg {
    pub meta: VgMeta,
    /// For each entry of `meta.pvs`: the index in [`Scan::pvs`] of its device; `None` when
    /// the PV is missing.
    pub pv_found: Vec<Option<usize>>,
    /// For each entry of `meta.lvs`: its layout, or why it cannot be opened.
    pub layouts: Vec<Result<Rc<Mapping>, Error>>,
    /// Metadata areas (on present PVs) that carried this VG.
    pub mda_count: usize,
    /// PV key (`pv0`) → index in `meta.pvs`.
    pv_keys: BTreeMap<String, usize>,
    /// Per entry of `meta.pvs`: extents allocated to LVs.
    pv_alloc: Vec<u64>,
    /// Per entry of `meta.lvs`: whether `lvs` shows it without `-a`.
    visible: Vec<bool>,
}

impl Vg {
    fn new(meta: VgMeta, pv_found: Vec<Option<usize>>, mda_count: usize) -> Vg {
        let pv_keys: BTreeMap<String, usize> = meta
            .pvs
            .iter()
            .enumerate()
            .map(|(i, p)| (p.key.clone(), i))
            .collect();
        let mut pv_alloc = vec![0u64; meta.pvs.len()];
        for lv in &meta.lvs {
            for s in &lv.segments {
                if let SegKind::Striped { areas, .. } = &s.kind {
                    let per = s.extent_count / (areas.len().max(1) as u64);
                    for (k, _) in areas {
                        if let Some(a) = pv_keys.get(k).and_then(|&i| pv_alloc.get_mut(i)) {
                            *a = a.saturating_add(per);
                        }
                    }
                }
            }
        }
        // A snapshot's COW LV is hidden in the metadata but listed as the snapshot when
        // its origin is visible.
        let mut visible: Vec<bool> = meta.lvs.iter().map(LvMeta::visible).collect();
        let idx: BTreeMap<&str, usize> = meta
            .lvs
            .iter()
            .enumerate()
            .map(|(i, l)| (l.name.as_str(), i))
            .collect();
        for lv in &meta.lvs {
            for s in &lv.segments {
                if let SegKind::Snapshot { origin, cow } = &s.kind
                    && idx
                        .get(origin.as_str())
                        .and_then(|&o| meta.lvs.get(o))
                        .is_some_and(LvMeta::visible)
                    && let Some(v) = idx.get(cow.as_str()).and_then(|&c| visible.get_mut(c))
                {
                    *v = true;
                }
            }
        }
        Vg {
            meta,
            pv_found,
            layouts: Vec::new(),
            mda_count,
            pv_keys,
            pv_alloc,
            visible,
        }
    }

    /// Index in `meta.pvs` of the PV the segments call `key`.
    pub fn pv_index(&self, key: &str) -> Option<usize> {
        self.pv_keys.get(key).copied()
    }

    /// Whether LV `i` is user-visible (listed by `lvs` without `-a`, named `/dev/VG/LV`).
    pub fn lv_visible(&self, i: usize) -> bool {
        self.visible.get(i).copied().unwrap_or(false)
    }
}

/// The result of scanning every device for LVM.
#[derive(Default)]
pub struct Scan {
    pub pvs: Vec<FoundPv>,
    pub vgs: Vec<Vg>,
    /// Devices whose LVM label or metadata could not be read, with why.
    pub errors: Vec<(String, Error)>,
}

/// `/dev/mapper` name of an LV: dashes inside each name doubled, joined by one dash.
pub fn mapper_name(vg: &str, lv: &str) -> String {
    format!(
        "/dev/mapper/{}-{}",
        vg.replace('-', "--"),
        lv.replace('-', "--")
    )
}

/// What kind of sub-LV or user of the segments an LV is, for `lv_attr` and for deciding
/// whether it is listed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Plain,
    RaidImage,
    RaidMeta,
    MirrorImage,
    MirrorLog,
    PoolData,
    PoolMeta,
    Origin,
    SnapshotCow,
    Other,
}

impl Scan {
    /// Scans `sources` for PVs and assembles their VGs. Never fails: what cannot be read
    /// is recorded in [`Scan::errors`] (or on the LV concerned).
    pub fn new(sources: Vec<Source>) -> Scan {
        let mut scan = Scan::default();
        // Candidate VG metadata: VG id → (metadata, mdas that carried it).
        let mut best: BTreeMap<String, (VgMeta, usize)> = BTreeMap::new();
        let mut parsed: Vec<(u32, usize, Result<VgMeta, Error>)> = Vec::new();
        for src in sources {
            let label = match label::read_label(&src.dev) {
                Ok(Some(l)) => l,
                Ok(None) => continue,
                Err(e) => {
                    scan.errors.push((src.name, e));
                    continue;
                }
            };
            if scan.pvs.iter().any(|p| p.label.uuid == label.uuid) {
                scan.errors.push((
                    src.name.clone(),
                    corrupt(format!(
                        "lvm: duplicate PV UUID {} (also on another device): ignored",
                        label.uuid
                    )),
                ));
                continue;
            }
            let mut mda_used = 0;
            for area in label.metadata_areas.iter().take(MAX_MDAS) {
                let text = match label::read_mda(&src.dev, *area, config::MAX_TEXT) {
                    Ok(Some(t)) => t,
                    Ok(None) => continue,
                    Err(e) => {
                        scan.errors.push((src.name.clone(), e));
                        continue;
                    }
                };
                let sum = label::crc(&text.text);
                let vg = match parsed
                    .iter()
                    .find(|(c, l, _)| *c == sum && *l == text.text.len())
                {
                    Some((_, _, r)) => r.clone(),
                    None => {
                        let r = config::parse(&text.text).and_then(|t| meta::parse_vg(&t));
                        parsed.push((sum, text.text.len(), r.clone()));
                        r
                    }
                };
                match vg {
                    Ok(vg) => {
                        mda_used += 1;
                        match best.get_mut(&vg.id) {
                            Some((b, n)) if b.seqno == vg.seqno => *n += 1,
                            Some((b, n)) if b.seqno < vg.seqno => {
                                *b = vg;
                                *n = 1;
                            }
                            Some(_) => {}
                            None => {
                                best.insert(vg.id.clone(), (vg, 1));
                            }
                        }
                    }
                    Err(e) => scan.errors.push((src.name.clone(), e)),
                }
            }
            scan.pvs.push(FoundPv {
                name: src.name,
                disk: src.disk,
                dev: src.dev,
                label,
                vg: None,
                mda_used,
            });
        }
        let mut vgs: Vec<(VgMeta, usize)> = best.into_values().collect();
        vgs.sort_by(|a, b| a.0.name.cmp(&b.0.name).then(a.0.id.cmp(&b.0.id)));
        for (meta, mda_count) in vgs {
            let vg_index = scan.vgs.len();
            let mut pv_found = Vec::with_capacity(meta.pvs.len());
            for p in &meta.pvs {
                let found = scan
                    .pvs
                    .iter()
                    .position(|f| f.label.uuid == p.id && f.vg.is_none_or(|v| v == vg_index));
                if let Some(i) = found
                    && let Some(f) = scan.pvs.get_mut(i)
                {
                    f.vg = Some(vg_index);
                }
                pv_found.push(found);
            }
            let mut vg = Vg::new(meta, pv_found, mda_count);
            vg.layouts = Layouts::new(&scan.pvs, &vg).all();
            scan.vgs.push(vg);
        }
        scan
    }

    /// Finds an LV by `/dev/VG/LV` or `/dev/mapper/VG-LV` (hidden LVs only by the mapper
    /// name, as on Linux): (VG index, LV index).
    pub fn find(&self, name: &str) -> Option<(usize, usize)> {
        if let Some(rest) = name.strip_prefix("/dev/mapper/") {
            if rest.is_empty() {
                return None;
            }
            for (vi, vg) in self.vgs.iter().enumerate() {
                for (li, lv) in vg.meta.lvs.iter().enumerate() {
                    if mapper_name(&vg.meta.name, &lv.name) == name {
                        return Some((vi, li));
                    }
                }
            }
            return None;
        }
        let rest = name.strip_prefix("/dev/")?;
        let (vgn, lvn) = rest.split_once('/')?;
        let vi = self.vgs.iter().position(|v| v.meta.name == vgn)?;
        let vg = self.vgs.get(vi)?;
        let li = vg
            .meta
            .lvs
            .iter()
            .enumerate()
            .position(|(i, l)| l.name == lvn && vg.lv_visible(i))?;
        Some((vi, li))
    }

    /// Opens an LV found with [`Scan::find`] as a block device.
    pub fn open(&self, vg: usize, lv: usize) -> Result<SharedDevice, Error> {
        let v = self
            .vgs
            .get(vg)
            .ok_or_else(|| Error::new(ErrorKind::NotFound, "lvm: no such VG"))?;
        let layout = v
            .layouts
            .get(lv)
            .ok_or_else(|| Error::new(ErrorKind::NotFound, "lvm: no such LV"))?
            .clone()?;
        let devs = self.pvs.iter().map(|p| p.dev.clone()).collect();
        Ok(shared(LvDevice::new(layout, devs)))
    }

    /// Opens `/dev/VG/LV` or `/dev/mapper/VG-LV`; `None` when no LV has that name.
    pub fn open_name(&self, name: &str) -> Option<Result<SharedDevice, Error>> {
        let (vg, lv) = self.find(name)?;
        Some(self.open(vg, lv))
    }

    /// The LVs `filesystems` lists: visible ones except thin pools, as
    /// (`/dev/VG/LV`, opened device or why not, size from the metadata).
    pub fn listed_lvs(&self) -> Vec<(String, Result<SharedDevice, Error>, u64)> {
        let mut out = Vec::new();
        for (vi, vg) in self.vgs.iter().enumerate() {
            for (li, lv) in vg.meta.lvs.iter().enumerate() {
                if !vg.lv_visible(li) || lv.segtype() == "thin-pool" {
                    continue;
                }
                let size = lv
                    .extent_count()
                    .saturating_mul(vg.meta.extent_size)
                    .saturating_mul(512);
                out.push((
                    format!("/dev/{}/{}", vg.meta.name, lv.name),
                    self.open(vi, li),
                    size,
                ));
            }
        }
        // `lvs` order: by VG then LV name.
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Disks (`/dev/sda`) whose PVs an LV's VG uses: mounts of its LVs depend on them.
    pub fn vg_disks(&self, vg: usize) -> Vec<String> {
        let mut out: Vec<String> = self
            .pvs
            .iter()
            .filter(|p| p.vg == Some(vg))
            .map(|p| p.disk.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// PV extents allocated (to any LV, hidden ones included) of meta PV `key` in `vg`.
    fn allocated(vg: &Vg, key: &str) -> u64 {
        vg.pv_index(key)
            .and_then(|i| vg.pv_alloc.get(i))
            .copied()
            .unwrap_or(0)
    }

    fn ext_bytes(vg: &Vg) -> u64 {
        vg.meta.extent_size.saturating_mul(512)
    }

    /// `pvs`: every PV found, then PVs a VG lists but that are missing (named by UUID).
    pub fn pv_report(&self) -> Vec<PhysicalVolume> {
        let mut out = Vec::new();
        for p in &self.pvs {
            let vg = p.vg.and_then(|i| self.vgs.get(i));
            let meta = vg.and_then(|v| v.meta.pvs.iter().find(|m| m.id == p.label.uuid));
            let dev_size = p.dev.borrow().size();
            let pe_start = meta.map_or_else(
                || p.label.data_areas.first().map_or(0, |a| a.offset),
                |m| m.pe_start.saturating_mul(512),
            );
            let (size, free, used, pe_count, alloc) = match (vg, meta) {
                (Some(v), Some(m)) => {
                    let e = Self::ext_bytes(v);
                    let a = Self::allocated(v, &m.key);
                    (
                        m.pe_count.saturating_mul(e),
                        m.pe_count.saturating_sub(a).saturating_mul(e),
                        a.saturating_mul(e),
                        m.pe_count,
                        a,
                    )
                }
                _ => (p.label.device_size, p.label.device_size, 0, 0, 0),
            };
            let allocatable = meta.is_some_and(|m| m.status.iter().any(|s| s == "ALLOCATABLE"));
            let exported = vg.is_some_and(|v| v.meta.status.iter().any(|s| s == "EXPORTED"));
            out.push(PhysicalVolume {
                name: p.name.clone(),
                uuid: p.label.uuid.clone(),
                fmt: String::from("lvm2"),
                vg: vg.map(|v| v.meta.name.clone()).unwrap_or_default(),
                size,
                dev_size,
                free,
                used,
                attr: format!(
                    "{}{}-",
                    if allocatable { 'a' } else { '-' },
                    if exported { 'x' } else { '-' }
                ),
                pe_count,
                pe_alloc_count: alloc,
                pe_start,
                mda_count: p.label.metadata_areas.len() as u32,
                tags: meta.map(|m| m.tags.clone()).unwrap_or_default(),
            });
        }
        for v in &self.vgs {
            for (m, f) in v.meta.pvs.iter().zip(&v.pv_found) {
                if f.is_some() {
                    continue;
                }
                let e = Self::ext_bytes(v);
                let a = Self::allocated(v, &m.key);
                out.push(PhysicalVolume {
                    name: String::from("[unknown]"),
                    uuid: m.id.clone(),
                    fmt: String::from("lvm2"),
                    vg: v.meta.name.clone(),
                    size: m.pe_count.saturating_mul(e),
                    dev_size: m.dev_size.saturating_mul(512),
                    free: m.pe_count.saturating_sub(a).saturating_mul(e),
                    used: a.saturating_mul(e),
                    attr: String::from("a-m"),
                    pe_count: m.pe_count,
                    pe_alloc_count: a,
                    pe_start: m.pe_start.saturating_mul(512),
                    mda_count: 0,
                    tags: m.tags.clone(),
                });
            }
        }
        out
    }

    /// `vgs`.
    pub fn vg_report(&self) -> Vec<VolumeGroup> {
        self.vgs
            .iter()
            .map(|v| {
                let m = &v.meta;
                let e = Self::ext_bytes(v);
                let count = m.pvs.iter().fold(0u64, |a, p| a.saturating_add(p.pe_count));
                let alloc = m
                    .pvs
                    .iter()
                    .fold(0u64, |a, p| a.saturating_add(Self::allocated(v, &p.key)));
                let free = count.saturating_sub(alloc);
                let partial = v.pv_found.iter().any(Option::is_none);
                let has = |s: &str| m.status.iter().any(|x| x == s);
                let attr = format!(
                    "{}{}{}{}{}{}",
                    if has("WRITE") { 'w' } else { 'r' },
                    if has("RESIZEABLE") { 'z' } else { '-' },
                    if has("EXPORTED") { 'x' } else { '-' },
                    if partial { 'p' } else { '-' },
                    alloc_char(&m.alloc),
                    if has("CLUSTERED") { 'c' } else { '-' },
                );
                VolumeGroup {
                    name: m.name.clone(),
                    uuid: m.id.clone(),
                    fmt: String::from("lvm2"),
                    attr,
                    size: count.saturating_mul(e),
                    free: free.saturating_mul(e),
                    extent_size: e,
                    extent_count: count,
                    free_count: free,
                    max_lv: m.max_lv,
                    max_pv: m.max_pv,
                    pv_count: m.pvs.len() as u64,
                    lv_count: (0..m.lvs.len()).filter(|&i| v.lv_visible(i)).count() as u64,
                    snap_count: m.lvs.iter().filter(|l| l.segtype() == "snapshot").count() as u64,
                    seqno: m.seqno,
                    tags: m.tags.clone(),
                    mda_count: v.mda_count as u64,
                    missing_pvs: m
                        .pvs
                        .iter()
                        .zip(&v.pv_found)
                        .filter(|(_, f)| f.is_none())
                        .map(|(p, _)| p.id.clone())
                        .collect(),
                }
            })
            .collect()
    }

    /// `lvs -a`: every LV, hidden ones included (`hidden` set).
    pub fn lv_report(&self) -> Vec<LogicalVolume> {
        let mut out = Vec::new();
        for v in &self.vgs {
            let roles = roles(&v.meta);
            let partial = partial_lvs(v);
            // Snapshot COW LV → its origin.
            let cow_origin: BTreeMap<&str, &str> = v
                .meta
                .lvs
                .iter()
                .filter_map(|l| match l.segments.first().map(|s| &s.kind) {
                    Some(SegKind::Snapshot { origin, cow }) => {
                        Some((cow.as_str(), origin.as_str()))
                    }
                    _ => None,
                })
                .collect();
            let zero_pools: alloc::collections::BTreeSet<&str> = v
                .meta
                .lvs
                .iter()
                .filter(|l| {
                    matches!(
                        l.segments.first().map(|s| &s.kind),
                        Some(SegKind::ThinPool { zero: true, .. })
                    )
                })
                .map(|l| l.name.as_str())
                .collect();
            for (li, ((lv, layout), role)) in
                v.meta.lvs.iter().zip(&v.layouts).zip(&roles).enumerate()
            {
                // The internal snapshot LV: `lvs` shows the snapshot as its COW LV.
                if lv.segtype() == "snapshot" {
                    continue;
                }
                let snap_of_cow = cow_origin.get(lv.name.as_str()).map(|o| String::from(*o));
                let first = lv.segments.first().map(|s| &s.kind);
                let (pool, thin_origin) = match first {
                    Some(SegKind::Thin { pool, origin }) => (Some(pool.clone()), origin.clone()),
                    _ => (None, None),
                };
                let mirror_log = match first {
                    Some(SegKind::Mirror { log, .. }) => log.clone(),
                    _ => None,
                };
                let segtype = if *role == Role::SnapshotCow {
                    String::from("linear")
                } else {
                    lv.segtype().to_string()
                };
                out.push(LogicalVolume {
                    name: format!("/dev/{}/{}", v.meta.name, lv.name),
                    lv_name: lv.name.clone(),
                    vg: v.meta.name.clone(),
                    uuid: lv.id.clone(),
                    attr: lv_attr(
                        lv,
                        *role,
                        partial.get(li).copied().unwrap_or(false),
                        zero_pools.contains(lv.name.as_str())
                            || pool.as_deref().is_some_and(|p| zero_pools.contains(p)),
                    ),
                    size: lv.extent_count().saturating_mul(Self::ext_bytes(v)),
                    segtype,
                    seg_count: lv.segments.len() as u64,
                    origin: snap_of_cow.or(thin_origin),
                    pool,
                    mirror_log,
                    tags: lv.tags.clone(),
                    hidden: !v.lv_visible(li),
                    devices: lv_devices(v, &self.pvs, lv),
                    error: layout.as_ref().err().map(|e| e.message.clone()),
                });
            }
        }
        out
    }
}

fn alloc_char(policy: &str) -> char {
    match policy {
        "contiguous" => 'c',
        "cling" | "cling_by_tags" => 'l',
        "anywhere" => 'a',
        "inherit" => 'i',
        _ => 'n',
    }
}

/// The role of every LV of a VG, from the segments that reference it.
fn roles(m: &VgMeta) -> Vec<Role> {
    let mut roles = vec![Role::Plain; m.lvs.len()];
    let idx: BTreeMap<&str, usize> = m
        .lvs
        .iter()
        .enumerate()
        .map(|(i, l)| (l.name.as_str(), i))
        .collect();
    let mut set = |name: &str, r: Role| {
        if let Some(i) = idx.get(name).copied()
            && let Some(slot) = roles.get_mut(i)
        {
            *slot = r;
        }
    };
    for lv in &m.lvs {
        for s in &lv.segments {
            match &s.kind {
                SegKind::Raid1 { images, metas } => {
                    images.iter().for_each(|n| set(n, Role::RaidImage));
                    metas.iter().for_each(|n| set(n, Role::RaidMeta));
                }
                SegKind::Mirror { legs, log } => {
                    legs.iter().for_each(|(n, _)| set(n, Role::MirrorImage));
                    if let Some(l) = log {
                        set(l, Role::MirrorLog);
                    }
                }
                SegKind::ThinPool { data, metadata, .. } => {
                    set(data, Role::PoolData);
                    set(metadata, Role::PoolMeta);
                }
                SegKind::Snapshot { origin, cow } => {
                    set(origin, Role::Origin);
                    set(cow, Role::SnapshotCow);
                }
                SegKind::Other { refs } | SegKind::Cache { refs } => {
                    for n in refs {
                        if n.contains("_rmeta_") || n.ends_with("_cmeta") || n.ends_with("_tmeta") {
                            set(n, Role::RaidMeta);
                        } else if n.contains("_rimage_") {
                            set(n, Role::RaidImage);
                        } else {
                            set(n, Role::Other);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for (lv, r) in m.lvs.iter().zip(roles.iter_mut()) {
        if *r == Role::Plain && lv.name.ends_with("_pmspare") {
            *r = Role::PoolMeta;
        }
    }
    roles
}

/// `lv_attr` as `lvs` prints it, for what the metadata tells (state, open and health
/// positions are `-`: nothing is activated here).
/// `zero`: new blocks are zeroed (a thin pool's `zero_new_blocks`, shown by its thin
/// volumes too).
fn lv_attr(lv: &LvMeta, role: Role, partial: bool, zero: bool) -> String {
    let t = lv.segtype();
    let raid = t.starts_with("raid");
    let kind = match role {
        Role::RaidImage | Role::MirrorImage => 'i',
        Role::RaidMeta | Role::PoolMeta => 'e',
        Role::MirrorLog => 'l',
        Role::PoolData => 'T',
        Role::Origin => 'o',
        Role::SnapshotCow => 's',
        _ => match t {
            "mirror" => 'm',
            _ if raid => 'r',
            "thin-pool" => 't',
            "thin" => 'V',
            "cache" | "writecache" => 'C',
            "cache-pool" => 'C',
            "vdo-pool" => 'd',
            "vdo" => 'v',
            "error" | "zero" => 'v',
            _ => '-',
        },
    };
    let has = |s: &str| lv.status.iter().any(|x| x == s);
    let mut policy = alloc_char(lv.alloc.as_deref().unwrap_or("inherit"));
    if has("LOCKED") {
        policy = policy.to_ascii_uppercase();
    }
    // The target type: what the LV or the LV it is part of maps to.
    // Raid legs (LVM names them `_rimage_N`, `_rmeta_N`) map to the raid target.
    let parent_raid = matches!(role, Role::RaidImage | Role::RaidMeta)
        && (lv.name.contains("_rimage_") || lv.name.contains("_rmeta_"));
    let target = match role {
        Role::Origin | Role::SnapshotCow => 's',
        Role::MirrorImage | Role::MirrorLog => 'm',
        _ if raid || parent_raid => 'r',
        _ => match t {
            "mirror" => 'm',
            "thin" | "thin-pool" => 't',
            "cache" | "cache-pool" | "writecache" => 'C',
            "vdo" | "vdo-pool" => 'v',
            "linear" | "striped" => '-',
            _ if role == Role::Plain => 'u',
            _ => '-',
        },
    };

    let skip = lv
        .status
        .iter()
        .chain(&lv.flags)
        .any(|s| s == "ACTIVATION_SKIP");
    format!(
        "{kind}{}{policy}---{target}{}{}{}",
        if has("WRITE") { 'w' } else { 'r' },
        if zero { 'z' } else { '-' },
        if partial { 'p' } else { '-' },
        if skip { 'k' } else { '-' },
    )
}

/// Per LV of a VG: whether some of its data lies (directly or through sub-LVs) on a
/// missing PV. Each LV is looked at once (memoised, cycles and over-deep stacks count as
/// not partial), so hostile stacking cannot blow up.
fn partial_lvs(v: &Vg) -> Vec<bool> {
    let m = &v.meta;
    let idx: BTreeMap<&str, usize> = m
        .lvs
        .iter()
        .enumerate()
        .map(|(i, l)| (l.name.as_str(), i))
        .collect();
    // 0: not looked at, 1: in progress, 2: complete, 3: partial.
    let mut state = vec![0u8; m.lvs.len()];
    fn visit(
        v: &Vg,
        idx: &BTreeMap<&str, usize>,
        state: &mut Vec<u8>,
        i: usize,
        depth: usize,
    ) -> bool {
        match state.get(i).copied() {
            Some(2) | Some(1) | None => return false,
            Some(3) => return true,
            _ => {}
        }
        if depth > MAX_LV_DEPTH {
            return false;
        }
        if let Some(s) = state.get_mut(i) {
            *s = 1;
        }
        let missing = |k: &str| {
            v.pv_index(k)
                .is_none_or(|p| v.pv_found.get(p).is_none_or(Option::is_none))
        };
        let mut partial = false;
        if let Some(lv) = v.meta.lvs.get(i) {
            for s in &lv.segments {
                match &s.kind {
                    SegKind::Striped { areas, .. } => {
                        partial |= areas.iter().any(|(k, _)| missing(k));
                    }
                    other => {
                        for n in other.sub_lvs() {
                            if let Some(&sub) = idx.get(n) {
                                partial |= visit(v, idx, state, sub, depth + 1);
                            }
                        }
                    }
                }
            }
        }
        if let Some(s) = state.get_mut(i) {
            *s = if partial { 3 } else { 2 };
        }
        partial
    }
    (0..m.lvs.len())
        .map(|i| visit(v, &idx, &mut state, i, 0))
        .collect()
}

/// `devices` as `lvs -o devices` prints it: `/dev/sda2(0)` per area (the PV's device,
/// `[unknown]` when missing, and its first PE), or `sub_lv(le)` for raid1 and mirror legs.
fn lv_devices(v: &Vg, pvs: &[FoundPv], lv: &LvMeta) -> Vec<String> {
    let mut out = Vec::new();
    for s in &lv.segments {
        match &s.kind {
            SegKind::Striped { areas, .. } => {
                for (k, pe) in areas {
                    let dev = v
                        .pv_index(k)
                        .and_then(|i| v.pv_found.get(i).copied().flatten())
                        .and_then(|f| pvs.get(f))
                        .map_or("[unknown]", |f| f.name.as_str());
                    out.push(format!("{dev}({pe})"));
                }
            }
            SegKind::Raid1 { images, .. } => {
                for i in images {
                    out.push(format!("{i}(0)"));
                }
            }
            SegKind::Mirror { legs, .. } => {
                for (l, le) in legs {
                    out.push(format!("{l}({le})"));
                }
            }
            SegKind::ThinPool { data, .. } => out.push(format!("{data}(0)")),
            _ => {}
        }
    }
    out
}

/// Works out the layouts of a VG's LVs: checks extents (within each PV's data area and
/// size, no two LVs on the same PV extent), then maps each LV.
/// A worked-out layout; `None` while being worked out.
type Memo = Option<Result<Rc<Mapping>, Error>>;

struct Layouts<'a> {
    pvs: &'a [FoundPv],
    vg: &'a Vg,
    roles: Vec<Role>,
    /// Per LV: an extent problem found by [`Layouts::check_extents`].
    bad: Vec<Option<Error>>,
    /// Per LV: its layout once worked out (`Some(None)` while being worked out: a cycle).
    memo: core::cell::RefCell<Vec<Option<Memo>>>,
}

impl<'a> Layouts<'a> {
    fn new(pvs: &'a [FoundPv], vg: &'a Vg) -> Self {
        let n = vg.meta.lvs.len();
        let mut l = Layouts {
            pvs,
            vg,
            roles: roles(&vg.meta),
            bad: vec![None; n],
            memo: core::cell::RefCell::new(vec![None; n]),
        };
        l.check_extents();
        l
    }

    fn all(&self) -> Vec<Result<Rc<Mapping>, Error>> {
        (0..self.vg.meta.lvs.len())
            .map(|i| self.layout(i, 0))
            .collect()
    }

    /// The layout of LV `li`, worked out once.
    fn layout(&self, li: usize, depth: usize) -> Result<Rc<Mapping>, Error> {
        let state = self.memo.borrow().get(li).cloned().flatten();
        match state {
            Some(Some(r)) => return r,
            Some(None) => {
                return Err(corrupt(format!(
                    "lvm: LV {}: its legs refer back to it",
                    self.lv_name(li)
                )));
            }
            None => {}
        }
        if let Some(slot) = self.memo.borrow_mut().get_mut(li) {
            *slot = Some(None);
        }
        let r = self.resolve(li, depth).map(Rc::new);
        if let Some(slot) = self.memo.borrow_mut().get_mut(li) {
            *slot = Some(Some(r.clone()));
        }
        r
    }

    fn lv_name(&self, i: usize) -> String {
        let n = self.vg.meta.lvs.get(i).map_or("?", |l| l.name.as_str());
        format!("{}/{}", self.vg.meta.name, n)
    }

    /// The usable byte range of a found PV's data: from its data area's start (or 0) to the
    /// area's end (or the device's).
    fn data_range(&self, found: usize) -> Option<(u64, u64)> {
        let f = self.pvs.get(found)?;
        let dev_size = f.dev.borrow().size();
        let da = f
            .label
            .data_areas
            .first()
            .copied()
            .unwrap_or(Area { offset: 0, size: 0 });
        let end = if da.size == 0 {
            dev_size
        } else {
            da.offset.checked_add(da.size)?.min(dev_size)
        };
        Some((da.offset, end))
    }

    fn check_extents(&mut self) {
        let m = &self.vg.meta;
        // (PV index in meta, first PE, end PE, LV index)
        let mut spans: Vec<(usize, u64, u64, usize)> = Vec::new();
        let ext = m.extent_size;
        for (li, lv) in m.lvs.iter().enumerate() {
            let mut problem = None;
            for (si, s) in lv.segments.iter().enumerate() {
                let SegKind::Striped { areas, .. } = &s.kind else {
                    continue;
                };
                let per = s.extent_count / (areas.len().max(1) as u64);
                for (k, pe) in areas {
                    let Some(pi) = self.vg.pv_index(k) else {
                        problem.get_or_insert_with(|| {
                            corrupt(format!(
                                "lvm: LV {}: segment {} names unknown PV {k}",
                                self.lv_name(li),
                                si + 1
                            ))
                        });
                        continue;
                    };
                    let Some(p) = m.pvs.get(pi) else { continue };
                    let end = pe.checked_add(per);
                    if end.is_none_or(|e| e > p.pe_count) {
                        problem.get_or_insert_with(|| {
                            corrupt(format!(
                                "lvm: LV {}: segment {} uses extents {pe}+{per} beyond PV {} ({} extents)",
                                self.lv_name(li),
                                si + 1,
                                p.id,
                                p.pe_count
                            ))
                        });
                        continue;
                    }
                    let end = end.unwrap_or(u64::MAX);
                    // The bytes must lie in the PV's data area on the device we have.
                    if let Some(Some(found)) = self.vg.pv_found.get(pi)
                        && let Some((lo, hi)) = self.data_range(*found)
                    {
                        let first = p
                            .pe_start
                            .checked_add(pe.saturating_mul(ext))
                            .and_then(|s| s.checked_mul(512));
                        let last = p
                            .pe_start
                            .checked_add(end.saturating_mul(ext))
                            .and_then(|s| s.checked_mul(512));
                        let ok = matches!((first, last), (Some(a), Some(b))
                            if a >= lo && b <= hi && end.checked_mul(ext).is_some());
                        if !ok {
                            problem.get_or_insert_with(|| {
                                corrupt(format!(
                                    "lvm: LV {}: segment {} extents {pe}+{per} lie beyond PV {}'s data area ({lo}..{hi} on {})",
                                    self.lv_name(li),
                                    si + 1,
                                    p.id,
                                    self.pvs.get(*found).map_or("?", |f| f.name.as_str())
                                ))
                            });
                            continue;
                        }
                    }
                    spans.push((pi, *pe, end, li));
                }
            }
            if let (Some(slot), Some(e)) = (self.bad.get_mut(li), problem) {
                *slot = Some(e);
            }
        }
        spans.sort_unstable();
        let mut cur: Option<(usize, u64, usize)> = None; // (pv, max end, its LV)
        for &(pv, start, end, li) in &spans {
            match cur {
                Some((cpv, cend, cli)) if cpv == pv && start < cend => {
                    let pvid = m.pvs.get(pv).map_or("?", |p| p.id.as_str());
                    for (a, b) in [(li, cli), (cli, li)] {
                        let msg = if a == b {
                            format!(
                                "lvm: LV {}: its segments overlap on PV {pvid} (extent {start})",
                                self.lv_name(a)
                            )
                        } else {
                            format!(
                                "lvm: LV {}: extents overlap LV {} on PV {pvid} (extent {start})",
                                self.lv_name(a),
                                self.lv_name(b)
                            )
                        };
                        if let Some(slot) = self.bad.get_mut(a) {
                            slot.get_or_insert_with(|| corrupt(msg));
                        }
                    }
                    if end > cend {
                        cur = Some((pv, end, li));
                    }
                }
                _ => cur = Some((pv, end, li)),
            }
        }
    }

    /// The layout of LV `li`.
    fn resolve(&self, li: usize, depth: usize) -> Result<Mapping, Error> {
        let m = &self.vg.meta;
        let lv = m
            .lvs
            .get(li)
            .ok_or_else(|| corrupt("lvm: LV index out of range"))?;
        let name = self.lv_name(li);
        if depth > MAX_LV_DEPTH {
            return Err(corrupt(format!("lvm: LV {name}: LVs stacked too deep")));
        }
        if let Some(e) = &lv.error {
            return Err(e.clone());
        }
        if let Some(Some(e)) = self.bad.get(li) {
            return Err(e.clone());
        }
        // Types that are not plain data mappings.
        let role = self.roles.get(li).copied().unwrap_or(Role::Plain);
        if role == Role::SnapshotCow {
            return Err(meta::unsupported(&m.name, &lv.name, "snapshot"));
        }
        let ext = m
            .extent_size
            .checked_mul(512)
            .ok_or_else(|| corrupt(format!("lvm: VG {}: extent size overflows", m.name)))?;
        let mut pieces = Vec::with_capacity(lv.segments.len());
        let mut ro_reason = None;
        if role == Role::Origin {
            ro_reason = Some(format!(
                "lvm: LV {name} is a snapshot origin: writes are not supported"
            ));
        }
        if !lv.status.iter().any(|s| s == "WRITE") || !m.status.iter().any(|s| s == "WRITE") {
            ro_reason.get_or_insert_with(|| format!("lvm: LV {name} is read-only"));
        }
        for s in &lv.segments {
            let start = s
                .start_extent
                .checked_mul(ext)
                .ok_or_else(|| corrupt(format!("lvm: LV {name}: extent offset overflows")))?;
            let len = s
                .extent_count
                .checked_mul(ext)
                .ok_or_else(|| corrupt(format!("lvm: LV {name}: extent count overflows")))?;
            start
                .checked_add(len)
                .ok_or_else(|| corrupt(format!("lvm: LV {name}: size overflows")))?;
            let target = match &s.kind {
                SegKind::Striped { stripe_size, areas } => {
                    let mut out = Vec::with_capacity(areas.len());
                    for (k, pe) in areas {
                        let (pi, p) = self
                            .vg
                            .pv_index(k)
                            .and_then(|i| Some((i, m.pvs.get(i)?)))
                            .ok_or_else(|| corrupt(format!("lvm: LV {name}: unknown PV {k}")))?;
                        let missing = p.flags.iter().any(|f| f == "MISSING");
                        let found = self
                            .vg
                            .pv_found
                            .get(pi)
                            .copied()
                            .flatten()
                            .filter(|_| !missing)
                            .ok_or_else(|| {
                                Error::new(
                                    ErrorKind::NotFound,
                                    format!("lvm: LV {name} needs PV {} which is missing", p.id),
                                )
                            })?;
                        let off = pe
                            .checked_mul(m.extent_size)
                            .and_then(|x| x.checked_add(p.pe_start))
                            .and_then(|x| x.checked_mul(512))
                            .ok_or_else(|| {
                                corrupt(format!("lvm: LV {name}: PV offset overflows"))
                            })?;
                        if self
                            .pvs
                            .get(found)
                            .is_some_and(|f| f.dev.borrow().readonly())
                        {
                            ro_reason.get_or_insert_with(|| {
                                format!("lvm: LV {name} lies on a read-only disk")
                            });
                        }
                        out.push((found, off));
                    }
                    let stripe = stripe_size
                        .checked_mul(512)
                        .ok_or_else(|| corrupt(format!("lvm: LV {name}: stripe size overflows")))?;
                    Target::Striped { stripe, areas: out }
                }
                SegKind::Raid1 { images, .. } => {
                    let legs: Vec<(String, u64)> =
                        images.iter().map(|i| (i.clone(), s.start_extent)).collect();
                    self.mirror_target(&name, &legs, ext, len, depth, &mut ro_reason)?
                }
                SegKind::Mirror { legs, .. } => {
                    self.mirror_target(&name, legs, ext, len, depth, &mut ro_reason)?
                }
                SegKind::ThinPool { .. } => {
                    return Err(meta::unsupported(&m.name, &lv.name, "thin-pool"));
                }
                SegKind::Thin { .. } => return Err(meta::unsupported(&m.name, &lv.name, "thin")),
                SegKind::Snapshot { .. } => {
                    return Err(meta::unsupported(&m.name, &lv.name, "snapshot"));
                }
                SegKind::Cache { .. } | SegKind::Other { .. } => {
                    let what = format!("segment type {:?}", s.type_name);
                    return Err(meta::unsupported(&m.name, &lv.name, &what));
                }
            };
            pieces.push(Piece { start, len, target });
        }
        let size = pieces
            .last()
            .map_or(0, |p: &Piece| p.start.saturating_add(p.len));
        Ok(Mapping {
            name,
            size,
            pieces,
            ro_reason,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn mirror_target(
        &self,
        name: &str,
        legs: &[(String, u64)],
        ext: u64,
        len: u64,
        depth: usize,
        ro_reason: &mut Option<String>,
    ) -> Result<Target, Error> {
        let m = &self.vg.meta;
        let mut ok = Vec::new();
        let mut first_err = None;
        for (leg, le) in legs {
            let r = m
                .lvs
                .iter()
                .position(|l| &l.name == leg)
                .ok_or_else(|| corrupt(format!("lvm: LV {name}: leg {leg} does not exist")))
                .and_then(|i| self.layout(i, depth + 1))
                .and_then(|map| {
                    // The leg's bytes for this segment: from its LE `le`, `len` bytes.
                    let off = le.checked_mul(ext).ok_or_else(|| {
                        corrupt(format!("lvm: LV {name}: leg {leg} offset overflows"))
                    })?;
                    if off.checked_add(len).is_none_or(|e| e > map.size) {
                        return Err(corrupt(format!(
                            "lvm: LV {name}: leg {leg} is shorter than the LV"
                        )));
                    }
                    Ok((map, off))
                });
            match r {
                Ok(l) => ok.push(l),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if ok.is_empty() {
            return Err(
                first_err.unwrap_or_else(|| corrupt(format!("lvm: LV {name}: no usable leg")))
            );
        }
        if let Some(e) = first_err {
            ro_reason.get_or_insert_with(|| {
                format!(
                    "lvm: LV {name}: a leg is unavailable ({}): writes refused",
                    e.message
                )
            });
        }
        for (leg, _) in &ok {
            if let Some(r) = &leg.ro_reason {
                ro_reason.get_or_insert_with(|| r.clone());
            }
        }
        Ok(Target::Mirror { legs: ok })
    }
}
