//! The JSON documents of the CLI's `--json` mode for the device and filesystem commands:
//! one `Serialize` struct per command, with stable snake_case field names (documented
//! in the README's CLI reference). The wire types are mapped to these rather than
//! serialized directly: their enums (`FileType`, `TableKind`) would render as Rust
//! variant names, and the wire layout may grow without changing these documents.
//!
//! ```
//! use skiff::json::{StatDoc, file_type_name};
//! use skiff::wire::{FileType, Stat};
//! let st = Stat {
//!     file_type: FileType::Regular, mode: 0o644, uid: 0, gid: 0, size: 6, nlink: 1,
//!     ino: 12, mtime: 0, atime: 0, ctime: 0,
//! };
//! let doc = StatDoc::new("/etc/hostname", &st);
//! assert_eq!(doc.attrs.file_type, "regular");
//! assert_eq!(doc.attrs.mode_string, "-rw-r--r--");
//! assert_eq!(file_type_name(FileType::Symlink), "symlink");
//! ```

use crate::session::fs::mode_string;
use serde::Serialize;
use wire::{
    Device, FileType, Filesystem, LogicalVolume, Mount, Partition, PhysicalVolume, Stat, StatVfs,
    TableKind, VolumeGroup,
};

/// A file type as JSON spells it: `regular`, `directory`, `symlink`, `char_device`,
/// `block_device`, `fifo`, `socket` or `unknown`.
pub fn file_type_name(t: FileType) -> &'static str {
    match t {
        FileType::Regular => "regular",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::CharDevice => "char_device",
        FileType::BlockDevice => "block_device",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::Unknown => "unknown",
    }
}

/// A partition table kind as JSON spells it: `mbr` or `gpt`.
pub fn table_name(t: TableKind) -> &'static str {
    match t {
        TableKind::Mbr => "mbr",
        TableKind::Gpt => "gpt",
    }
}

/// `devices`: `{"devices": [{name, size, readonly, chain}]}`.
#[derive(Serialize, Debug, Clone)]
pub struct DevicesDoc {
    pub devices: Vec<DeviceDoc>,
}

/// One disk of `devices`: `chain` lists the image and its backing files as skiff opened
/// them, top first (`[{path, format, data_file?}]`; empty when this process did not open
/// the image itself, e.g. an appliance handed down by `each --pool`).
#[derive(Serialize, Debug, Clone)]
pub struct DeviceDoc {
    pub name: String,
    pub size: u64,
    pub readonly: bool,
    pub chain: Vec<crate::images::ChainEntry>,
}

impl DevicesDoc {
    pub fn new(devices: &[Device], chains: &[(String, Vec<crate::images::ChainEntry>)]) -> Self {
        DevicesDoc {
            devices: devices
                .iter()
                .map(|d| DeviceDoc {
                    name: d.name.clone(),
                    size: d.size,
                    readonly: d.readonly,
                    chain: chains
                        .iter()
                        .find(|(n, _)| *n == d.name)
                        .map(|(_, c)| c.clone())
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// One partition of `partitions`.
#[derive(Serialize, Debug, Clone)]
pub struct PartitionDoc {
    pub name: String,
    pub disk: String,
    /// `mbr` or `gpt`.
    pub table: &'static str,
    pub number: u32,
    /// Byte offset on the disk.
    pub start: u64,
    /// Bytes.
    pub size: u64,
    /// MBR: the type byte as `0x83`; GPT: the type GUID.
    pub part_type: String,
    /// GPT partition name.
    pub label: Option<String>,
    /// GPT unique partition GUID (PARTUUID); MBR `disk-id`-`number`.
    pub uuid: Option<String>,
}

impl From<&Partition> for PartitionDoc {
    fn from(p: &Partition) -> Self {
        PartitionDoc {
            name: p.name.clone(),
            disk: p.disk.clone(),
            table: table_name(p.table),
            number: p.number,
            start: p.start,
            size: p.size,
            part_type: p.part_type.clone(),
            label: p.label.clone(),
            uuid: p.uuid.clone(),
        }
    }
}

/// `partitions`: `{"partitions": [...]}`.
#[derive(Serialize, Debug, Clone)]
pub struct PartitionsDoc {
    pub partitions: Vec<PartitionDoc>,
}

/// `filesystems`: `{"filesystems": [{device, fstype, label, uuid, size}]}`.
#[derive(Serialize, Debug, Clone)]
pub struct FilesystemsDoc<'a> {
    pub filesystems: &'a [Filesystem],
}

/// `mounts` (shell): `{"mounts": [{device, mountpoint, fstype, readonly}]}`.
#[derive(Serialize, Debug, Clone)]
pub struct MountsDoc<'a> {
    pub mounts: &'a [Mount],
}

/// `ls` and `find`: `{"path": DIR, "names": [...]}` (`find`: paths relative to DIR).
#[derive(Serialize, Debug, Clone)]
pub struct NamesDoc<'a> {
    pub path: &'a str,
    pub names: Vec<String>,
}

/// The attributes of one file, as `stat`/`lstat` print them and each `ll` entry holds.
#[derive(Serialize, Debug, Clone)]
pub struct Attrs {
    /// See [`file_type_name`].
    #[serde(rename = "type")]
    pub file_type: &'static str,
    /// Permission, set-id and sticky bits (no file-type bits), as a number: 0o644 = 420.
    pub mode: u32,
    /// `ls -l` style: `-rw-r--r--`.
    pub mode_string: String,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u32,
    pub ino: u64,
    /// Seconds since the epoch.
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
}

impl From<&Stat> for Attrs {
    fn from(st: &Stat) -> Self {
        Attrs {
            file_type: file_type_name(st.file_type),
            mode: st.mode,
            mode_string: mode_string(st.file_type, st.mode),
            uid: st.uid,
            gid: st.gid,
            size: st.size,
            nlink: st.nlink,
            ino: st.ino,
            atime: st.atime,
            mtime: st.mtime,
            ctime: st.ctime,
        }
    }
}

/// `stat`, `lstat`: `{"path", ...attributes}`.
#[derive(Serialize, Debug, Clone)]
pub struct StatDoc {
    pub path: String,
    #[serde(flatten)]
    pub attrs: Attrs,
}

impl StatDoc {
    pub fn new(path: &str, st: &Stat) -> Self {
        StatDoc {
            path: path.to_string(),
            attrs: st.into(),
        }
    }
}

/// One entry of `ll`: its name, attributes and a symlink's target.
#[derive(Serialize, Debug, Clone)]
pub struct LlEntry {
    pub name: String,
    #[serde(flatten)]
    pub attrs: Attrs,
    /// A symlink's target (null for other types, or when it could not be read).
    pub link_target: Option<String>,
}

/// `ll`: `{"path": DIR, "entries": [...]}`.
#[derive(Serialize, Debug, Clone)]
pub struct LlDoc<'a> {
    pub path: &'a str,
    pub entries: Vec<LlEntry>,
}

/// `readlink`: `{"path", "target"}`.
#[derive(Serialize, Debug, Clone)]
pub struct ReadlinkDoc<'a> {
    pub path: &'a str,
    pub target: &'a str,
}

/// `statvfs`: `{"path", block_size, blocks, blocks_free, blocks_avail, files, files_free,
/// name_max}` (blocks in units of `block_size` bytes).
#[derive(Serialize, Debug, Clone)]
pub struct StatvfsDoc<'a> {
    pub path: &'a str,
    #[serde(flatten)]
    pub statvfs: &'a StatVfs,
}

/// `exists`, `is-file`, `is-dir`: `{"path", "exists"|"is_file"|"is_dir": bool}`.
#[derive(Serialize, Debug, Clone)]
pub struct TestDoc<'a> {
    pub path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_file: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_dir: Option<bool>,
}

/// Commands that change something or copy to a host file (`write`, `mkdir`, `mv`,
/// `download FILE`, `mount`, ...): `{"ok": true}`, plus `"bytes": N` where data moved
/// (`write`, `append`, `upload`, `download` to a file, `pwrite-device`).
#[derive(Serialize, Debug, Clone, Copy)]
pub struct DoneDoc {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

impl DoneDoc {
    pub fn ok() -> Self {
        DoneDoc {
            ok: true,
            bytes: None,
        }
    }
    pub fn bytes(n: u64) -> Self {
        DoneDoc {
            ok: true,
            bytes: Some(n),
        }
    }
}

/// One LVM physical volume of `pvs --json` / `pvs-full`, with libguestfs' `lvm_pv`
/// field names (sizes in bytes), plus the volume group it belongs to.
#[derive(Serialize, Debug, Clone)]
pub struct PvDoc {
    pub pv_name: String,
    pub pv_uuid: String,
    pub pv_fmt: String,
    /// Empty for an orphan.
    pub vg_name: String,
    pub pv_size: u64,
    pub dev_size: u64,
    pub pv_free: u64,
    pub pv_used: u64,
    pub pv_attr: String,
    pub pv_pe_count: u64,
    pub pv_pe_alloc_count: u64,
    pub pv_tags: Vec<String>,
    pub pe_start: u64,
    pub pv_mda_count: u32,
}

impl From<&PhysicalVolume> for PvDoc {
    fn from(p: &PhysicalVolume) -> Self {
        PvDoc {
            pv_name: p.name.clone(),
            pv_uuid: p.uuid.clone(),
            pv_fmt: p.fmt.clone(),
            vg_name: p.vg.clone(),
            pv_size: p.size,
            dev_size: p.dev_size,
            pv_free: p.free,
            pv_used: p.used,
            pv_attr: p.attr.clone(),
            pv_pe_count: p.pe_count,
            pv_pe_alloc_count: p.pe_alloc_count,
            pv_tags: p.tags.clone(),
            pe_start: p.pe_start,
            pv_mda_count: p.mda_count,
        }
    }
}

/// One volume group of `vgs --json` / `vgs-full` (libguestfs' `lvm_vg` names), plus the
/// UUIDs of the physical volumes it lists that are missing.
#[derive(Serialize, Debug, Clone)]
pub struct VgDoc {
    pub vg_name: String,
    pub vg_uuid: String,
    pub vg_fmt: String,
    pub vg_attr: String,
    pub vg_size: u64,
    pub vg_free: u64,
    pub vg_extent_size: u64,
    pub vg_extent_count: u64,
    pub vg_free_count: u64,
    pub max_lv: u64,
    pub max_pv: u64,
    pub pv_count: u64,
    pub lv_count: u64,
    pub snap_count: u64,
    pub vg_seqno: u64,
    pub vg_tags: Vec<String>,
    pub vg_mda_count: u64,
    pub missing_pvs: Vec<String>,
}

impl From<&VolumeGroup> for VgDoc {
    fn from(v: &VolumeGroup) -> Self {
        VgDoc {
            vg_name: v.name.clone(),
            vg_uuid: v.uuid.clone(),
            vg_fmt: v.fmt.clone(),
            vg_attr: v.attr.clone(),
            vg_size: v.size,
            vg_free: v.free,
            vg_extent_size: v.extent_size,
            vg_extent_count: v.extent_count,
            vg_free_count: v.free_count,
            max_lv: v.max_lv,
            max_pv: v.max_pv,
            pv_count: v.pv_count,
            lv_count: v.lv_count,
            snap_count: v.snap_count,
            vg_seqno: v.seqno,
            vg_tags: v.tags.clone(),
            vg_mda_count: v.mda_count,
            missing_pvs: v.missing_pvs.clone(),
        }
    }
}

/// One logical volume of `lvs --json` / `lvs-full` (libguestfs' `lvm_lv` names: `lv_name`
/// is the bare name), with its path, type and whether it can be opened.
#[derive(Serialize, Debug, Clone)]
pub struct LvDoc {
    /// `/dev/VG/LV`: the device name every command takes.
    pub lv_path: String,
    pub lv_name: String,
    pub vg_name: String,
    pub lv_uuid: String,
    pub lv_attr: String,
    pub lv_size: u64,
    pub seg_count: u64,
    /// `linear`, `striped`, `raid1`, `thin`, ...
    pub segtype: String,
    pub origin: Option<String>,
    pub pool_lv: Option<String>,
    pub mirror_log: Option<String>,
    pub lv_tags: Vec<String>,
    /// Not listed by `lvs` (raid legs, pool data and metadata).
    pub hidden: bool,
    /// `lvs -o devices`: `/dev/sda2(0)`.
    pub devices: Vec<String>,
    /// Why it cannot be opened (unsupported type, missing PV), if it cannot.
    pub error: Option<String>,
}

impl From<&LogicalVolume> for LvDoc {
    fn from(l: &LogicalVolume) -> Self {
        LvDoc {
            lv_path: l.name.clone(),
            lv_name: l.lv_name.clone(),
            vg_name: l.vg.clone(),
            lv_uuid: l.uuid.clone(),
            lv_attr: l.attr.clone(),
            lv_size: l.size,
            seg_count: l.seg_count,
            segtype: l.segtype.clone(),
            origin: l.origin.clone(),
            pool_lv: l.pool.clone(),
            mirror_log: l.mirror_log.clone(),
            lv_tags: l.tags.clone(),
            hidden: l.hidden,
            devices: l.devices.clone(),
            error: l.error.clone(),
        }
    }
}

/// `pvs`: `{"pvs": [...]}`.
#[derive(Serialize, Debug, Clone)]
pub struct PvsDoc {
    pub pvs: Vec<PvDoc>,
}

/// `vgs`: `{"vgs": [...]}`.
#[derive(Serialize, Debug, Clone)]
pub struct VgsDoc {
    pub vgs: Vec<VgDoc>,
}

/// `lvs`: `{"lvs": [...]}` (visible LVs; `lvs-full`: hidden ones too).
#[derive(Serialize, Debug, Clone)]
pub struct LvsDoc {
    pub lvs: Vec<LvDoc>,
}

/// `lgetxattrs`: `{"path", "xattrs": [{name, value}]}` (values as UTF-8, lossy).
#[derive(Serialize, Debug, Clone)]
pub struct XattrsDoc<'a> {
    pub path: &'a str,
    pub xattrs: &'a [crate::session::attrs::Xattr],
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stat(t: FileType, mode: u32) -> Stat {
        Stat {
            file_type: t,
            mode,
            uid: 1,
            gid: 2,
            size: 3,
            nlink: 4,
            ino: 5,
            mtime: 6,
            atime: 7,
            ctime: 8,
        }
    }

    #[test]
    fn stat_fields() {
        let v =
            serde_json::to_value(StatDoc::new("/x", &stat(FileType::Directory, 0o755))).unwrap();
        assert_eq!(
            v,
            json!({"path": "/x", "type": "directory", "mode": 0o755, "mode_string": "drwxr-xr-x",
                   "uid": 1, "gid": 2, "size": 3, "nlink": 4, "ino": 5,
                   "atime": 7, "mtime": 6, "ctime": 8})
        );
        let e = LlEntry {
            name: "l".into(),
            attrs: (&stat(FileType::Symlink, 0o777)).into(),
            link_target: Some("t".into()),
        };
        let v = serde_json::to_value(e).unwrap();
        assert_eq!(v["type"], "symlink");
        assert_eq!(v["link_target"], "t");
        assert_eq!(v["name"], "l");
    }

    #[test]
    fn partition_and_small_docs() {
        let p = Partition {
            name: "/dev/sda1".into(),
            disk: "/dev/sda".into(),
            table: TableKind::Gpt,
            number: 1,
            start: 1 << 20,
            size: 2 << 20,
            part_type: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B".into(),
            label: Some("esp".into()),
            uuid: None,
        };
        let v = serde_json::to_value(PartitionDoc::from(&p)).unwrap();
        assert_eq!(v["table"], "gpt");
        assert_eq!(v["start"], 1 << 20);
        assert_eq!(v["uuid"], serde_json::Value::Null);
        assert_eq!(
            serde_json::to_value(DoneDoc::ok()).unwrap(),
            json!({"ok": true})
        );
        assert_eq!(
            serde_json::to_value(DoneDoc::bytes(5)).unwrap(),
            json!({"ok": true, "bytes": 5})
        );
        let t = TestDoc {
            path: "/a",
            exists: None,
            is_file: Some(false),
            is_dir: None,
        };
        assert_eq!(
            serde_json::to_value(t).unwrap(),
            json!({"path": "/a", "is_file": false})
        );
    }
}
