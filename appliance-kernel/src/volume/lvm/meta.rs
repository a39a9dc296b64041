//! The volume group model, read from a parsed metadata text: the VG's extent size, its
//! PVs (by UUID), its LVs with their segments. Shape problems that concern one LV (a
//! segment of an unknown form, bad numbers) are recorded on that LV, so the rest of the VG
//! still works; problems with the VG itself fail the VG.

use super::config::{Section, Value};
use super::label::corrupt;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

/// Most PVs in one VG.
pub const MAX_PVS: usize = 4096;
/// Most LVs (hidden ones included) in one VG.
pub const MAX_LVS: usize = 16384;
/// Most segments in one LV.
pub const MAX_SEGMENTS: usize = 65536;
/// Most stripes (or legs) in one segment: LVM's own limit is 128.
pub const MAX_STRIPES: usize = 128;
/// Largest extent size accepted, in sectors (LVM allows up to 16 GiB).
pub const MAX_EXTENT_SECTORS: u64 = 1 << 25;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VgMeta {
    pub name: String,
    pub id: String,
    pub seqno: u64,
    /// In 512-byte sectors.
    pub extent_size: u64,
    pub status: Vec<String>,
    pub flags: Vec<String>,
    pub tags: Vec<String>,
    pub max_lv: u64,
    pub max_pv: u64,
    pub alloc: String,
    pub pvs: Vec<PvMeta>,
    pub lvs: Vec<LvMeta>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvMeta {
    /// The key the segments use (`pv0`).
    pub key: String,
    pub id: String,
    /// The device the PV was on when the metadata was written (a hint only).
    pub device_hint: Option<String>,
    pub status: Vec<String>,
    pub flags: Vec<String>,
    pub tags: Vec<String>,
    /// In sectors.
    pub dev_size: u64,
    pub pe_start: u64,
    pub pe_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvMeta {
    pub name: String,
    pub id: String,
    pub status: Vec<String>,
    pub flags: Vec<String>,
    pub tags: Vec<String>,
    pub alloc: Option<String>,
    pub segments: Vec<SegMeta>,
    /// Why this LV's description is unusable (it is still listed).
    pub error: Option<Error>,
}

impl LvMeta {
    pub fn visible(&self) -> bool {
        self.status.iter().any(|s| s == "VISIBLE")
    }
    /// Segment type of the first segment (`linear` for one-stripe `striped`).
    pub fn segtype(&self) -> &str {
        self.segments.first().map_or("", |s| s.type_name())
    }
    pub fn extent_count(&self) -> u64 {
        self.segments
            .iter()
            .fold(0u64, |a, s| a.saturating_add(s.extent_count))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegMeta {
    pub start_extent: u64,
    pub extent_count: u64,
    /// The `type` string as written.
    pub type_name: String,
    pub kind: SegKind,
}

impl SegMeta {
    pub fn type_name(&self) -> &str {
        match &self.kind {
            SegKind::Striped { areas, .. } if areas.len() == 1 => "linear",
            _ => &self.type_name,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegKind {
    /// `striped` (one stripe: linear). `stripe_size` in sectors; areas are (PV key,
    /// first PE).
    Striped {
        stripe_size: u64,
        areas: Vec<(String, u64)>,
    },
    /// `raid1`: image LVs (with their metadata LVs).
    Raid1 {
        images: Vec<String>,
        metas: Vec<String>,
    },
    /// `mirror`: legs as (LV, first LE), and the log LV.
    Mirror {
        legs: Vec<(String, u64)>,
        log: Option<String>,
    },
    ThinPool {
        data: String,
        metadata: String,
        /// `zero_new_blocks`.
        zero: bool,
    },
    Thin {
        pool: String,
        origin: Option<String>,
    },
    Snapshot {
        origin: String,
        cow: String,
    },
    /// `cache`, `cache-pool`, `writecache`: the origin/pool/data LVs it references.
    Cache {
        refs: Vec<String>,
    },
    /// Anything else (`vdo`, `raid5`, `integrity`, ...), with the LVs it references.
    Other {
        refs: Vec<String>,
    },
}

impl SegKind {
    /// LVs this segment is built on.
    pub fn sub_lvs(&self) -> Vec<&str> {
        match self {
            SegKind::Striped { .. } => Vec::new(),
            SegKind::Raid1 { images, metas } => {
                images.iter().chain(metas).map(String::as_str).collect()
            }
            SegKind::Mirror { legs, log } => legs
                .iter()
                .map(|(l, _)| l.as_str())
                .chain(log.as_deref())
                .collect(),
            SegKind::ThinPool { data, metadata, .. } => {
                alloc::vec![data.as_str(), metadata.as_str()]
            }
            SegKind::Thin { .. } => Vec::new(),
            SegKind::Snapshot { cow, .. } => alloc::vec![cow.as_str()],
            SegKind::Cache { refs } | SegKind::Other { refs } => {
                refs.iter().map(String::as_str).collect()
            }
        }
    }
}

fn num(sec: &Section, key: &str, what: &str) -> Result<u64, Error> {
    let n = sec
        .int(key)
        .ok_or_else(|| corrupt(format!("lvm: {what}: {key} missing or not a number")))?;
    u64::try_from(n).map_err(|_| corrupt(format!("lvm: {what}: {key} is negative")))
}

fn strings(sec: &Section, key: &str) -> Vec<String> {
    sec.strings(key).into_iter().map(str::to_string).collect()
}

/// LVM's name rules: `[A-Za-z0-9+_.-]`, not starting with `-`, not `.`/`..`, at most 127
/// characters. Names reach device paths, so anything else is refused.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'_' | b'.' | b'-'))
}

/// Parses a VG from the top-level section of a metadata text: the first section holding
/// `id` and `extent_size` is the VG.
pub fn parse_vg(top: &Section) -> Result<VgMeta, Error> {
    let vg = top
        .sections()
        .find(|s| s.get("id").is_some() && s.get("extent_size").is_some())
        .ok_or_else(|| corrupt("lvm: metadata text holds no volume group"))?;
    if !valid_name(&vg.name) {
        return Err(corrupt(format!("lvm: bad volume group name {:?}", vg.name)));
    }
    let what = format!("VG {}", vg.name);
    let id = vg
        .str("id")
        .ok_or_else(|| corrupt(format!("lvm: {what}: id missing")))?
        .to_string();
    let seqno = num(vg, "seqno", &what)?;
    let extent_size = num(vg, "extent_size", &what)?;
    if extent_size == 0 || extent_size > MAX_EXTENT_SECTORS {
        return Err(corrupt(format!(
            "lvm: {what}: extent size {extent_size} sectors out of range"
        )));
    }
    let mut pvs = Vec::new();
    if let Some(list) = vg.section("physical_volumes") {
        for p in list.sections() {
            if pvs.len() >= MAX_PVS {
                return Err(corrupt(format!("lvm: {what}: more than {MAX_PVS} PVs")));
            }
            let pw = format!("{what} PV {}", p.name);
            let pv = PvMeta {
                key: p.name.clone(),
                id: p
                    .str("id")
                    .ok_or_else(|| corrupt(format!("lvm: {pw}: id missing")))?
                    .to_string(),
                device_hint: p.str("device").map(str::to_string),
                status: strings(p, "status"),
                flags: strings(p, "flags"),
                tags: strings(p, "tags"),
                dev_size: p
                    .int("dev_size")
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
                pe_start: num(p, "pe_start", &pw)?,
                pe_count: num(p, "pe_count", &pw)?,
            };
            pvs.push(pv);
        }
    }
    let mut lvs = Vec::new();
    if let Some(list) = vg.section("logical_volumes") {
        for l in list.sections() {
            if lvs.len() >= MAX_LVS {
                return Err(corrupt(format!("lvm: {what}: more than {MAX_LVS} LVs")));
            }
            lvs.push(parse_lv(&vg.name, l));
        }
    }
    Ok(VgMeta {
        name: vg.name.clone(),
        id,
        seqno,
        extent_size,
        status: strings(vg, "status"),
        flags: strings(vg, "flags"),
        tags: strings(vg, "tags"),
        max_lv: vg
            .int("max_lv")
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        max_pv: vg
            .int("max_pv")
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        alloc: vg.str("allocation_policy").unwrap_or("normal").to_string(),
        pvs,
        lvs,
    })
}

fn parse_lv(vg: &str, l: &Section) -> LvMeta {
    let mut lv = LvMeta {
        name: l.name.clone(),
        id: l.str("id").unwrap_or_default().to_string(),
        status: strings(l, "status"),
        flags: strings(l, "flags"),
        tags: strings(l, "tags"),
        alloc: l.str("allocation_policy").map(str::to_string),
        segments: Vec::new(),
        error: None,
    };
    let what = format!("LV {vg}/{}", l.name);
    if !valid_name(&l.name) {
        lv.error = Some(corrupt(format!("lvm: {what}: bad LV name")));
        return lv;
    }
    match parse_segments(l, &what) {
        Ok(s) => lv.segments = s,
        Err(e) => lv.error = Some(e),
    }
    lv
}

fn parse_segments(l: &Section, what: &str) -> Result<Vec<SegMeta>, Error> {
    let mut segs = Vec::new();
    for s in l.sections().filter(|s| s.name.starts_with("segment")) {
        if segs.len() >= MAX_SEGMENTS {
            return Err(corrupt(format!(
                "lvm: {what}: more than {MAX_SEGMENTS} segments"
            )));
        }
        let sw = format!("{what} {}", s.name);
        let start_extent = num(s, "start_extent", &sw)?;
        let extent_count = num(s, "extent_count", &sw)?;
        let type_name = s
            .str("type")
            .ok_or_else(|| corrupt(format!("lvm: {sw}: type missing")))?
            .to_string();
        let kind = parse_kind(s, &type_name, extent_count, &sw)?;
        segs.push(SegMeta {
            start_extent,
            extent_count,
            type_name,
            kind,
        });
    }
    if segs.is_empty() {
        return Err(corrupt(format!("lvm: {what}: no segments")));
    }
    segs.sort_by_key(|s| s.start_extent);
    // Segments must tile the LV from extent 0 without gaps or overlaps.
    let mut next = 0u64;
    for s in &segs {
        if s.start_extent != next || s.extent_count == 0 {
            return Err(corrupt(format!(
                "lvm: {what}: segments do not tile the LV (segment at extent {} of {}, expected {next})",
                s.start_extent, s.extent_count
            )));
        }
        next = next
            .checked_add(s.extent_count)
            .ok_or_else(|| corrupt(format!("lvm: {what}: extent count overflows")))?;
    }
    Ok(segs)
}

/// `[ "name", n, "name", n ]` → pairs.
fn pairs(list: &[Value], sw: &str, key: &str) -> Result<Vec<(String, u64)>, Error> {
    if !list.len().is_multiple_of(2) || list.len() / 2 > MAX_STRIPES {
        return Err(corrupt(format!(
            "lvm: {sw}: {key} has {} entries",
            list.len()
        )));
    }
    list.chunks(2)
        .map(|c| match c {
            [Value::Str(n), Value::Int(pe)] => u64::try_from(*pe)
                .map(|pe| (n.clone(), pe))
                .map_err(|_| corrupt(format!("lvm: {sw}: negative extent in {key}"))),
            _ => Err(corrupt(format!("lvm: {sw}: malformed {key}"))),
        })
        .collect()
}

fn names(list: &[Value]) -> Vec<String> {
    list.iter()
        .filter_map(|v| match v {
            Value::Str(s) => Some(s.clone()),
            _ => None,
        })
        .take(MAX_STRIPES * 2)
        .collect()
}

fn parse_kind(s: &Section, t: &str, extent_count: u64, sw: &str) -> Result<SegKind, Error> {
    let str_of = |k: &str| s.str(k).map(str::to_string);
    let need = |k: &str| str_of(k).ok_or_else(|| corrupt(format!("lvm: {sw}: {k} missing")));
    Ok(match t {
        "striped" => {
            let count = num(s, "stripe_count", sw)?;
            let areas = pairs(s.list("stripes").unwrap_or(&[]), sw, "stripes")?;
            if count == 0 || count != areas.len() as u64 {
                return Err(corrupt(format!(
                    "lvm: {sw}: stripe_count {count} but {} stripes",
                    areas.len()
                )));
            }
            if !extent_count.is_multiple_of(count) {
                return Err(corrupt(format!(
                    "lvm: {sw}: {extent_count} extents do not divide into {count} stripes"
                )));
            }
            let stripe_size = if count > 1 {
                let ss = num(s, "stripe_size", sw)?;
                if ss == 0 || !ss.is_power_of_two() {
                    return Err(corrupt(format!("lvm: {sw}: stripe size {ss} sectors")));
                }
                ss
            } else {
                0
            };
            SegKind::Striped { stripe_size, areas }
        }
        "raid1" => {
            let list = names(s.list("raids").unwrap_or(&[]));
            if list.is_empty() || !list.len().is_multiple_of(2) {
                return Err(corrupt(format!("lvm: {sw}: malformed raids")));
            }
            let (mut metas, mut images) = (Vec::new(), Vec::new());
            for c in list.chunks(2) {
                if let [m, i] = c {
                    metas.push(m.clone());
                    images.push(i.clone());
                }
            }
            SegKind::Raid1 { images, metas }
        }
        "mirror" => {
            let legs = pairs(s.list("mirrors").unwrap_or(&[]), sw, "mirrors")?;
            if legs.is_empty() {
                return Err(corrupt(format!("lvm: {sw}: mirror without legs")));
            }
            SegKind::Mirror {
                legs,
                log: str_of("mirror_log"),
            }
        }
        "thin-pool" => SegKind::ThinPool {
            data: need("pool")?,
            metadata: need("metadata")?,
            zero: s.int("zero_new_blocks").is_some_and(|z| z != 0),
        },
        "thin" => SegKind::Thin {
            pool: need("thin_pool")?,
            origin: str_of("origin"),
        },
        "snapshot" => SegKind::Snapshot {
            origin: need("origin")?,
            cow: need("cow_store")?,
        },
        "cache" | "cache-pool" | "writecache" => SegKind::Cache {
            refs: ["cache_pool", "origin", "data", "metadata", "writecache"]
                .iter()
                .filter_map(|k| str_of(k))
                .collect(),
        },
        _ => {
            let mut refs: Vec<String> = ["vdo_pool", "data", "metadata", "origin", "pool"]
                .iter()
                .filter_map(|k| str_of(k))
                .collect();
            if let Some(l) = s.list("raids") {
                refs.extend(names(l));
            }
            SegKind::Other { refs }
        }
    })
}

/// `Unsupported` naming the LV and its type.
pub fn unsupported(vg: &str, lv: &str, what: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!("lvm: LV {vg}/{lv}: {what} volumes are not supported"),
    )
}
