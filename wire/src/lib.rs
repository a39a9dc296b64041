//! skiff's wire protocol between the host launcher and the appliance.
//!
//! Both directions carry postcard-encoded messages inside frames: a little-endian `u32`
//! body length followed by the body ([`frame`]). The appliance speaks first with
//! [`ToHost::Hello`]; the host then sends [`Call`]s and the appliance answers each with a
//! [`ToHost::Reply`] echoing the call's id.
//!
//! postcard is not self-describing: enum variants are identified by their position, so
//! **variants are only ever appended**, never reordered or removed, and a change in the
//! meaning of a message bumps [`PROTOCOL_VERSION`].
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod bytes;
pub mod frame;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

pub use bytes::Bytes;
pub use frame::{FrameError, FrameReader, MAX_FRAME, data_reply_prefix, decode, encode_frame};

/// Exchanged at boot in [`Hello`]; the host refuses an appliance that speaks another version.
pub const PROTOCOL_VERSION: u32 = 2;

/// The name of the disk in slot `index` (its virtio `serial=skiff<index>`): `/dev/sda`,
/// ..., `/dev/sdz`, `/dev/sdaa`, ... (Linux's naming). The host and the appliance both
/// name disks with this, so the names agree.
pub fn disk_name(index: usize) -> String {
    let mut letters = Vec::new();
    let mut n = index + 1;
    while n > 0 {
        n -= 1;
        letters.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
    }
    let mut name = String::from("/dev/sd");
    name.extend(letters.iter().rev());
    name
}

/// The inverse of [`disk_name`]: `/dev/sda` → 0, `/dev/sdaa` → 26; `None` for anything
/// else (partitions included).
pub fn disk_slot(disk: &str) -> Option<usize> {
    let letters = disk.strip_prefix("/dev/sd")?;
    if letters.is_empty() || !letters.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let mut n: usize = 0;
    for b in letters.bytes() {
        n = n.checked_mul(26)?.checked_add(usize::from(b - b'a') + 1)?;
    }
    Some(n - 1)
}

/// The largest data payload in one request or reply (file contents, device bytes).
/// Larger transfers are split into calls of at most this size.
pub const MAX_CHUNK: u32 = 1 << 20;

/// The first frame the appliance sends, once it is ready to serve calls.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u32,
    pub devices: Vec<Device>,
}

/// A whole block device (one disk) as the appliance sees it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// `/dev/sda`, `/dev/sdb`, ...: the n-th disk the host added, stable while attached.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// The device refuses writes (the host attached it read-only).
    pub readonly: bool,
}

/// A request from the host, with the id its reply will echo.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub id: u64,
    pub request: Request,
}

/// Every message the appliance sends.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ToHost {
    Hello(Hello),
    Reply {
        id: u64,
        result: Result<Reply, Error>,
    },
    /// The appliance panicked; this is its last frame.
    Panic(String),
}

/// What the host can ask. Append only.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Does nothing; answers [`Reply::Unit`].
    Ping,
    /// The current device list: [`Reply::Devices`].
    Devices,
    /// Raw bytes of a device (whole disk or partition): [`Reply::Data`].
    PreadDevice {
        device: String,
        offset: u64,
        len: u32,
    },
    /// Raw write to a device: [`Reply::Written`].
    PwriteDevice {
        device: String,
        offset: u64,
        data: Bytes,
    },
    /// Flush every device's write cache to the disk file: [`Reply::Unit`].
    Sync,
    /// Unmount everything, flush, answer [`Reply::Unit`], then power off.
    Shutdown,

    // ---- partitions and filesystems ----
    /// [`Reply::Partitions`] for every disk.
    Partitions,
    /// [`Reply::Filesystems`]: one entry per device and partition.
    Filesystems,
    Mount {
        device: String,
        mountpoint: String,
        readonly: bool,
        /// `None`: detect.
        fstype: Option<String>,
    },
    Umount {
        mountpoint: String,
    },
    /// [`Reply::Mounts`].
    Mounts,
    /// [`Reply::DirEntries`] of one directory (not recursive), with their attributes.
    ReadDir {
        path: String,
    },
    /// [`Reply::Stat`], following symlinks.
    Stat {
        path: String,
    },
    /// [`Reply::Stat`] of the path itself.
    Lstat {
        path: String,
    },
    /// [`Reply::Text`].
    Readlink {
        path: String,
    },
    /// [`Reply::Data`]: up to `len` bytes at `offset` (short at end of file).
    Pread {
        path: String,
        offset: u64,
        len: u32,
    },
    /// [`Reply::StatVfs`] of the filesystem holding `path`.
    StatVfs {
        path: String,
    },
    /// [`Reply::Names`]: every path below `path`, relative to it, depth first.
    Find {
        path: String,
    },
    /// Write `data` at `offset`, creating the file (with `mode`) if missing; `truncate`
    /// first empties an existing file. [`Reply::Written`].
    WriteFile {
        path: String,
        offset: u64,
        data: Bytes,
        truncate: bool,
        mode: u32,
    },
    /// Append to an existing or new file: [`Reply::Written`].
    Append {
        path: String,
        data: Bytes,
    },
    Mkdir {
        path: String,
        parents: bool,
        mode: u32,
    },
    Remove {
        path: String,
        recursive: bool,
    },
    Rmdir {
        path: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    Symlink {
        target: String,
        linkpath: String,
    },
    Truncate {
        path: String,
        size: u64,
    },

    // ---- hotplug ----
    /// Rescan the PCI buses for added or removed disks: [`Reply::Devices`].
    Rescan,

    // ---- LVM ----
    /// [`Reply::Pvs`]: every LVM physical volume (like `pvs-full`).
    Pvs,
    /// [`Reply::Vgs`]: every LVM volume group (like `vgs-full`).
    Vgs,
    /// [`Reply::Lvs`]: every LVM logical volume, hidden ones included (like `lvs-full`).
    Lvs,
    // ---- LUKS ----
    /// Unlock the LUKS device `device` with the passphrase `key` and map it as
    /// `/dev/mapper/<name>` (default `luks-<UUID>`, libguestfs' name): [`Reply::Text`]
    /// with the mapped device's name. A wrong key is [`ErrorKind::PermissionDenied`].
    LuksOpen {
        device: String,
        key: Bytes,
        name: Option<String>,
    },
    /// Drop the mapping `/dev/mapper/<name>` (`name` with or without the prefix):
    /// [`Reply::Unit`]. Refused while it is mounted.
    LuksClose {
        name: String,
    },
    /// [`Reply::LuksInfo`]: every LUKS device on the disks and partitions, so the host
    /// can ask for keys and size the appliance's memory.
    LuksInfo,
    // ---- ownership, times, extended attributes, the clock ----
    /// Changes the owner of `path` (not following a final symlink, like `lchown`):
    /// [`Reply::Unit`]. Filesystems without owners (FAT) answer `Unsupported`.
    Chown {
        path: String,
        uid: u32,
        gid: u32,
    },
    /// Sets the access and modification times of `path` (seconds since the epoch):
    /// [`Reply::Unit`].
    Utimens {
        path: String,
        atime: i64,
        mtime: i64,
    },
    /// Creates `path` empty (mode 0644) when it does not exist, then sets its times to
    /// the appliance clock ([`Request::SetClock`]): [`Reply::Unit`]. Like `touch`.
    Touch {
        path: String,
    },
    /// The value of extended attribute `name` (`user.x`, `security.selinux`, ...) of
    /// `path`: [`Reply::Data`].
    Getxattr {
        path: String,
        name: String,
    },
    /// The extended attribute names of `path`: [`Reply::Names`].
    Listxattrs {
        path: String,
    },
    /// Creates or replaces extended attribute `name` of `path`: [`Reply::Unit`].
    Setxattr {
        path: String,
        name: String,
        value: Bytes,
    },
    /// Removes extended attribute `name` of `path`: [`Reply::Unit`].
    Removexattr {
        path: String,
        name: String,
    },
    /// The host's wall clock (seconds since the epoch): stamped on what the appliance
    /// changes from now on (the appliance has no clock of its own). [`Reply::Unit`].
    SetClock {
        now: i64,
    },
    // ---- inspection ----
    /// [`Reply::Applications`]: the installed software of the guest whose root
    /// filesystem is mounted at `root` (usually `/`), read from every package database
    /// found below it (dpkg, rpm in its sqlite, BerkeleyDB and ndb forms, pacman, apk)
    /// and, for Windows, from the SOFTWARE hive's Uninstall keys. A database that cannot
    /// be read is reported in the reply, not as a failed call. The list comes in pages
    /// that each fit a frame: `start` is the index of the first application wanted (0
    /// reads the databases afresh; a later page comes from the appliance's copy of that
    /// reading, see [`Applications::next`]).
    Applications {
        root: String,
        start: u32,
    },
    /// [`Reply::WindowsFacts`]: what the SOFTWARE and SYSTEM hives and `cmd.exe` of the
    /// Windows installation mounted at `root` say (libguestfs' Windows inspection).
    /// `NotFound` when `root` holds no Windows system root.
    WindowsFacts {
        root: String,
    },

    // ---- trees, checksums, bulk writes ----
    /// [`Reply::Text`]: the lowercase hex digest of the regular file at `path` (symlinks
    /// followed), computed in the appliance, like guestfish `checksum`. `algo`: `md5`,
    /// `sha1`, `sha224`, `sha256`, `sha384` or `sha512`.
    Checksum {
        algo: String,
        path: String,
    },
    /// [`Reply::Checksums`]: the digest of every regular file below the directory `dir`
    /// (like guestfish `checksums-out`; symlinks are not followed), depth first with
    /// each directory's entries sorted, paths relative to `dir`. One reply holds a page:
    /// `after` resumes after that relative path (from the previous reply's `next`).
    ChecksumsOut {
        algo: String,
        dir: String,
        after: Option<String>,
    },
    /// [`Reply::Count`]: disk usage of `path` and everything below it in KiB, like
    /// `du -s` (guestfish `du`): allocated blocks, each inode counted once, symlinks not
    /// followed.
    Du {
        path: String,
    },
    /// Copies `from` to `to` inside the guest (`cp`, with `recursive` `cp -r`), across
    /// filesystems too: a file onto a file or into a directory, a directory (recursive
    /// only) to a new path or into an existing directory. Mode, owner and times are kept
    /// where the target filesystem can hold them; symlinks below a copied directory are
    /// copied as symlinks. [`Reply::Unit`].
    Copy {
        from: String,
        to: String,
        recursive: bool,
    },
    /// [`Reply::Tree`]: like [`Request::Find`], each path with its attributes (not
    /// following symlinks) and a symlink's target, for copy-out, tar-out and du. One
    /// reply holds a page: `after` resumes after that relative path.
    FindStat {
        path: String,
        after: Option<String>,
    },
    /// One piece of a file the host streams in order (upload, copy-in): like
    /// [`Request::WriteFile`], but the appliance may hold the piece and write it with the
    /// pieces that follow (one metadata update for many pieces). A `first` piece starts a
    /// stream (and may `truncate` the file first); every other piece must start where the
    /// previous one ended, else it is refused (`InvalidArgument`: so pieces still in
    /// flight after a failure are never written). A piece that is not `last` is answered
    /// [`Reply::Written`] once accepted; the `last` piece's reply comes once every piece
    /// is written, or is the error that stopped them. A failure while writing held pieces
    /// is the reply to the piece being handled then, and ends the stream; so does any
    /// other request (held pieces are written before it is served).
    WriteStream {
        path: String,
        offset: u64,
        data: Bytes,
        first: bool,
        truncate: bool,
        mode: u32,
        last: bool,
    },
    /// Many changes to the filesystem holding `path` follow (a tree copied in): it may
    /// keep one write state open (ext4: one mount and one journal commit) until
    /// [`Request::EndBatch`], a sync or an unmount, instead of committing after each
    /// call. Reads meanwhile see the changes. A filesystem without such a state, or a
    /// read-only one, ignores it. [`Reply::Unit`].
    BeginBatch {
        path: String,
    },
    /// Commits what was changed since [`Request::BeginBatch`] on the filesystem holding
    /// `path`; afterwards it is as consistent as after any single call. [`Reply::Unit`].
    EndBatch {
        path: String,
    },
}

/// Successful answers. Append only.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Unit,
    Devices(Vec<Device>),
    Data(Bytes),
    Written(u64),
    Partitions(Vec<Partition>),
    Filesystems(Vec<Filesystem>),
    Mounts(Vec<Mount>),
    DirEntries(Vec<DirEntry>),
    Stat(Stat),
    Text(String),
    StatVfs(StatVfs),
    Names(Vec<String>),
    Bool(bool),
    Pvs(Vec<PhysicalVolume>),
    Vgs(Vec<VolumeGroup>),
    Lvs(Vec<LogicalVolume>),
    LuksInfo(Vec<LuksVolume>),
    Applications(Applications),
    WindowsFacts(Box<WindowsFacts>),
    /// A count ([`Request::Du`]: KiB).
    Count(u64),
    /// A page of [`Request::ChecksumsOut`]; `next`: ask again with `after: next`.
    Checksums {
        sums: Vec<FileChecksum>,
        next: Option<String>,
    },
    /// A page of [`Request::FindStat`]; `next`: ask again with `after: next`.
    Tree {
        entries: Vec<TreeEntry>,
        next: Option<String>,
    },
}

/// One file's digest ([`Request::ChecksumsOut`]).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FileChecksum {
    /// Lowercase hex.
    pub hash: String,
    /// Relative to the directory asked about.
    pub path: String,
}

/// One path below a directory ([`Request::FindStat`]).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Relative to the directory asked about.
    pub path: String,
    /// Not following symlinks.
    pub stat: Stat,
    /// A symlink's target.
    pub link: Option<String>,
}

/// Which kind of partition table a disk carries.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Mbr,
    Gpt,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// `/dev/sda1`, ... (libguestfs numbering: MBR logicals start at 5).
    pub name: String,
    /// The whole disk it lives on, `/dev/sda`.
    pub disk: String,
    pub table: TableKind,
    pub number: u32,
    /// Byte offset and size on the disk.
    pub start: u64,
    pub size: u64,
    /// MBR: the type byte as `0x83`; GPT: the type GUID.
    pub part_type: String,
    /// GPT partition name, if any.
    pub label: Option<String>,
    /// GPT unique partition GUID (PARTUUID), MBR `disk-id`-`number` as blkid spells it.
    pub uuid: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Filesystem {
    pub device: String,
    /// `ext2`, `ext3`, `ext4`, `vfat`, `unknown`, ...
    pub fstype: String,
    pub label: Option<String>,
    pub uuid: Option<String>,
    /// Size of the device in bytes.
    pub size: u64,
}

/// An LVM physical volume (`pvs -o pv_all`). Sizes in bytes.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PhysicalVolume {
    /// The device it is on, `/dev/sda2`; `[unknown]` for a PV its VG lists but that is
    /// missing.
    pub name: String,
    pub uuid: String,
    /// `lvm2`.
    pub fmt: String,
    /// The VG it belongs to; empty for an orphan.
    pub vg: String,
    /// Usable size (its extents), or the device size for an orphan.
    pub size: u64,
    pub dev_size: u64,
    pub free: u64,
    pub used: u64,
    /// `pv_attr`: (a)llocatable, e(x)ported, (m)issing.
    pub attr: String,
    pub pe_count: u64,
    pub pe_alloc_count: u64,
    /// Offset of the first extent on the device.
    pub pe_start: u64,
    pub mda_count: u32,
    pub tags: Vec<String>,
}

/// An LVM volume group (`vgs -o vg_all`). Sizes in bytes.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct VolumeGroup {
    pub name: String,
    pub uuid: String,
    pub fmt: String,
    /// `vg_attr`: `wz--n-` and the like.
    pub attr: String,
    pub size: u64,
    pub free: u64,
    pub extent_size: u64,
    pub extent_count: u64,
    pub free_count: u64,
    pub max_lv: u64,
    pub max_pv: u64,
    pub pv_count: u64,
    /// Visible LVs.
    pub lv_count: u64,
    pub snap_count: u64,
    pub seqno: u64,
    pub tags: Vec<String>,
    /// Metadata areas (on present PVs) holding the current metadata.
    pub mda_count: u64,
    /// UUIDs of the PVs the VG lists that were not found.
    pub missing_pvs: Vec<String>,
}

/// An LVM logical volume (`lvs -a -o lv_all`). Sizes in bytes.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LogicalVolume {
    /// `/dev/VG/LV`.
    pub name: String,
    /// The LV's own name, `LV`.
    pub lv_name: String,
    pub vg: String,
    pub uuid: String,
    /// `lv_attr` (activation state, open and health positions are `-`).
    pub attr: String,
    pub size: u64,
    /// Of the first segment: `linear`, `striped`, `raid1`, `thin`, ...
    pub segtype: String,
    pub seg_count: u64,
    /// Snapshot (or thin snapshot) origin.
    pub origin: Option<String>,
    /// Thin pool of a thin volume.
    pub pool: Option<String>,
    pub mirror_log: Option<String>,
    pub tags: Vec<String>,
    /// Hidden (raid and mirror legs, pool data/metadata): not listed as a filesystem.
    pub hidden: bool,
    /// `lvs -o devices`: `/dev/sda2(0)`, or `LV_rimage_0(0)`.
    pub devices: Vec<String>,
    /// Why the LV cannot be opened (unsupported type, missing PV, corrupt layout).
    pub error: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    pub readonly: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
    Unknown,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub file_type: FileType,
    /// Permission bits and set-id/sticky bits (no file-type bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u32,
    pub ino: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    pub atime: i64,
    pub ctime: i64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub stat: Stat,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StatVfs {
    pub block_size: u64,
    pub blocks: u64,
    pub blocks_free: u64,
    /// Free blocks available to unprivileged users.
    pub blocks_avail: u64,
    pub files: u64,
    pub files_free: u64,
    pub name_max: u64,
}

/// A LUKS device found on a disk or partition ([`Request::LuksInfo`]).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LuksVolume {
    /// `/dev/sda2`, ...
    pub device: String,
    /// The header's UUID (empty when the header could not be read).
    pub uuid: String,
    /// 1 or 2 (0 when the header could not be read).
    pub version: u32,
    /// LUKS2 label, if any.
    pub label: Option<String>,
    /// dm-crypt notation: `aes-xts-plain64`, `aes-cbc-essiv:sha256`, ...
    pub cipher: String,
    /// Volume key size in bits.
    pub key_bits: u32,
    /// Encryption sector size in bytes (512 for LUKS1).
    pub sector_size: u32,
    /// Byte offset of the encrypted payload on the device.
    pub payload_offset: u64,
    /// The active keyslots.
    pub keyslots: Vec<LuksKeyslot>,
    /// Bytes of appliance memory an unlock needs at most (the largest Argon2 keyslot
    /// plus working buffers).
    pub required_memory: u64,
    /// `/dev/mapper/<name>` when this device is open.
    pub mapped: Option<String>,
    /// Why the header could not be read, if it could not.
    pub error: Option<String>,
}

/// One active LUKS keyslot and its key-derivation parameters.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LuksKeyslot {
    pub slot: u32,
    /// `pbkdf2`, `argon2i` or `argon2id`.
    pub kdf: String,
    /// PBKDF2's hash (`sha256`, ...); `None` for Argon2.
    pub hash: Option<String>,
    /// PBKDF2 iterations or Argon2 time cost.
    pub iterations: u32,
    /// Argon2 memory cost in KiB (0 for PBKDF2).
    pub memory_kib: u32,
    /// Argon2 lanes (1 for PBKDF2).
    pub parallel: u32,
    /// LUKS2 priority: 0 ignore, 1 normal, 2 prefer (1 for LUKS1).
    pub priority: u32,
}

/// One installed application or package, with what `virt-inspector --xml` carries for
/// it (libguestfs' `application2`). Strings are empty when the source has no such
/// field (virt-inspector omits empty elements); every string is cleaned of control
/// characters (newlines are kept in `description`) and bounded in length.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Application {
    /// Package name (`coreutils`); for Windows the Uninstall subkey's name.
    pub name: String,
    /// Windows `DisplayName`; empty for Linux packages.
    pub display_name: String,
    /// 0 when the package has none.
    pub epoch: u32,
    /// Upstream version (`9.1`); Windows `DisplayVersion`.
    pub version: String,
    /// Package release (`3`, `1.fc40`, `r0` → `0` for apk, as libguestfs strips the `r`).
    pub release: String,
    /// `x86_64`, `amd64`, `noarch`, `all`, ...
    pub arch: String,
    /// Windows `InstallLocation`.
    pub install_path: String,
    /// Windows `Publisher`.
    pub publisher: String,
    /// Home page: dpkg `Homepage`, rpm `URL`, pacman `%URL%`, apk `U:`, Windows
    /// `URLInfoAbout`.
    pub url: String,
    /// dpkg `Source` (name only), rpm `SOURCERPM` (the file name, e.g.
    /// `bash-5.2-1.src.rpm`; libguestfs leaves it empty for rpm).
    pub source_package: String,
    /// One-line summary: dpkg's first `Description` line, rpm `SUMMARY`.
    pub summary: String,
    /// Long description: dpkg's continuation lines (leading space removed, joined with
    /// newlines), rpm `DESCRIPTION`, pacman `%DESC%`, apk `T:`, Windows `Comments`.
    pub description: String,
    /// rpm `VENDOR`; empty elsewhere (not in virt-inspector's XML).
    pub vendor: String,
    /// Install time in seconds since the epoch: rpm `INSTALLTIME`, pacman
    /// `%INSTALLDATE%`, Windows `InstallDate` (`YYYYMMDD`, at 00:00 UTC). Not in
    /// virt-inspector's XML.
    pub install_time: Option<i64>,
}

/// A package database format.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageFormat {
    /// `/var/lib/dpkg/status`.
    Dpkg,
    /// rpm `rpmdb.sqlite` (Fedora ≥ 33, RHEL 9).
    RpmSqlite,
    /// rpm BerkeleyDB `Packages` (RHEL ≤ 8, older Fedora and SUSE).
    RpmBerkeleyDb,
    /// rpm ndb `Packages.db` (SUSE ≥ 15.3).
    RpmNdb,
    /// `/var/lib/pacman/local/*/desc`.
    Pacman,
    /// `/lib/apk/db/installed`.
    Apk,
    /// The Windows SOFTWARE hive's Uninstall keys.
    WindowsRegistry,
}

impl PackageFormat {
    /// The package format as virt-inspector's `<package_format>` names it.
    pub fn package_format(self) -> &'static str {
        match self {
            PackageFormat::Dpkg => "deb",
            PackageFormat::RpmSqlite | PackageFormat::RpmBerkeleyDb | PackageFormat::RpmNdb => {
                "rpm"
            }
            PackageFormat::Pacman => "pacman",
            PackageFormat::Apk => "apk",
            PackageFormat::WindowsRegistry => "windows",
        }
    }
}

/// One package database found under the root, and what reading it gave.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PackageDatabase {
    pub format: PackageFormat,
    /// Its path below the root (`/var/lib/rpm/rpmdb.sqlite`).
    pub path: String,
    /// Applications read from it (before the list-wide bound).
    pub count: u64,
    /// Why it could not be read (in full or in part): a corrupt page, a truncated
    /// file, an unsupported variant. Entries read before the error are kept.
    pub error: Option<String>,
    /// Entries skipped as unreadable (a corrupt header, a field out of bounds).
    pub skipped: u64,
}

/// [`Reply::Applications`]: one page of the applications found, sorted by name (then
/// version, release, arch), and the databases they came from.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Applications {
    /// Applications `start..start + applications.len()` of the whole list.
    pub applications: Vec<Application>,
    /// Every database found (on every page).
    pub databases: Vec<PackageDatabase>,
    /// How many applications the whole list has.
    pub total: u32,
    /// The `start` of the next page; `None` on the last page.
    pub next: Option<u32>,
    /// The list was cut at the appliance's bounds (100 000 applications, 24 MiB of
    /// strings).
    pub truncated: bool,
}

/// Where a Windows drive letter points (`HKLM\SYSTEM\MountedDevices`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum DriveTarget {
    /// An MBR partition: the disk's 32-bit signature (bytes 440..444 of the MBR, as a
    /// little-endian number) and the partition's byte offset on the disk.
    Mbr { disk_signature: u32, offset: u64 },
    /// A GPT partition: its unique partition GUID, lowercase (`DMIO:ID:` blobs).
    Gpt { partition_guid: String },
    /// Anything else (a volume GUID path, a CD-ROM, a removable device): the raw value,
    /// lowercase hex, bounded.
    Other { data: String },
}

/// One `\DosDevices\X:` mapping.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DriveMapping {
    /// The drive letter, uppercase: `C`.
    pub letter: char,
    pub target: DriveTarget,
    /// The partition it names on the attached disks (`/dev/sda2`), when one matches:
    /// by disk signature and start offset (MBR) or by partition GUID (GPT), as
    /// libguestfs maps them.
    pub device: Option<String>,
}

/// [`Reply::WindowsFacts`]: the Windows facts libguestfs' inspection computes. Strings
/// are cleaned of control characters and bounded.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct WindowsFacts {
    /// The Windows directory below the root, with the guest's own spelling
    /// (`/Windows`, `/WINNT`), found case-insensitively.
    pub systemroot: String,
    /// `<systemroot>/System32/config/SOFTWARE` with the guest's spelling, if present.
    pub software_hive: Option<String>,
    /// `<systemroot>/System32/config/SYSTEM`, if present.
    pub system_hive: Option<String>,
    /// From the PE header of `<systemroot>/System32/cmd.exe`: `i386`, `x86_64`,
    /// `aarch64`, `arm`, `ia64`.
    pub arch: Option<String>,
    /// SOFTWARE `Microsoft\Windows NT\CurrentVersion` `ProductName`.
    pub product_name: Option<String>,
    /// `InstallationType` (`Client`, `Server`, `Server Core`): libguestfs' product
    /// variant.
    pub product_variant: Option<String>,
    /// `EditionID` (`Professional`, `ServerStandard`); not in virt-inspector's XML.
    pub edition_id: Option<String>,
    /// `CurrentMajorVersionNumber`/`CurrentMinorVersionNumber` when both exist, else
    /// `CurrentVersion` (`6.1`) split at the dot.
    pub major_version: Option<u32>,
    pub minor_version: Option<u32>,
    /// `CurrentBuildNumber` (else `CurrentBuild`): `19045`.
    pub build: Option<String>,
    /// `ControlSet001`: from SYSTEM `Select\Current`.
    pub current_control_set: Option<String>,
    /// SYSTEM `<ControlSet>\Services\Tcpip\Parameters` `Hostname` (libguestfs'
    /// source), else `<ControlSet>\Control\ComputerName\ComputerName` `ComputerName`.
    pub hostname: Option<String>,
    /// `MountedDevices` `\DosDevices\X:` entries, by letter.
    pub drive_mappings: Vec<DriveMapping>,
    /// A hive read was dirty (its two sequence numbers differ: the transaction logs,
    /// which skiff does not replay, hold newer data); the facts are what the hive file
    /// itself says.
    pub dirty_hives: Vec<String>,
    /// Facts that could not be read and why (a missing hive, a corrupt cell, ...).
    pub warnings: Vec<String>,
}

/// An errno-like failure class. Append only.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    NotADirectory,
    IsADirectory,
    ReadOnly,
    NoSpace,
    Unsupported,
    Corrupt,
    InvalidArgument,
    Io,
    AlreadyExists,
    NotEmpty,
    Busy,
    NotMounted,
    TooLarge,
    Loop,
    Internal,
    /// A key or passphrase was refused (a LUKS unlock with a wrong key).
    PermissionDenied,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::NotADirectory => "not a directory",
            ErrorKind::IsADirectory => "is a directory",
            ErrorKind::ReadOnly => "read-only",
            ErrorKind::NoSpace => "no space left",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::Io => "I/O error",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::NotEmpty => "directory not empty",
            ErrorKind::Busy => "busy",
            ErrorKind::NotMounted => "not mounted",
            ErrorKind::TooLarge => "too large",
            ErrorKind::Loop => "too many levels of symbolic links",
            ErrorKind::Internal => "internal error",
            ErrorKind::PermissionDenied => "permission denied",
        }
    }
}

/// A failed call: its class and a human-readable message.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(self.kind.as_str())
        } else {
            write!(f, "{}: {}", self.kind.as_str(), self.message)
        }
    }
}

impl core::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_names_round_trip() {
        assert_eq!(disk_name(0), "/dev/sda");
        assert_eq!(disk_name(25), "/dev/sdz");
        assert_eq!(disk_name(26), "/dev/sdaa");
        assert_eq!(disk_name(27), "/dev/sdab");
        for i in 0..800 {
            assert_eq!(disk_slot(&disk_name(i)), Some(i));
        }
        for bad in ["/dev/sda1", "/dev/sd", "/dev/sdA", "/dev/vda", "sda"] {
            assert_eq!(disk_slot(bad), None, "{bad}");
        }
    }

    #[test]
    fn luks_requests_round_trip_and_hide_the_key() {
        let call = Call {
            id: 7,
            request: Request::LuksOpen {
                device: "/dev/sda2".into(),
                key: Bytes(b"s3cret-passphrase".to_vec()),
                name: None,
            },
        };
        let frame = encode_frame(&call).unwrap();
        let back: Call = decode(&frame[4..]).unwrap();
        assert_eq!(back, call);
        assert!(!format!("{call:?}").contains("s3cret"));
        let e = Error::new(ErrorKind::PermissionDenied, "/dev/sda2: no key");
        assert_eq!(e.to_string(), "permission denied: /dev/sda2: no key");
    }
}
