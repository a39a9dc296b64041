//! Disk images as the launcher hands them to qemu: opened by skiff, never by qemu.
//!
//! Every image and every file of its backing chain is opened here, with the caller's own
//! credentials, and given to qemu as a file descriptor (`-add-fd` + `/dev/fdset/N`), with
//! the whole chain spelled out node by node. qemu is never left to decide which files it
//! opens: a qcow2 header can name any host path (`/etc/shadow`), a `json:{...}`
//! pseudo-protocol or a network URL (`nbd://`, `http://`) as its backing file or external
//! data file — the classic image-backing-file attack.
//!
//! The policy (the storage-service and fd-passing seeds):
//! - By default an image whose header names a backing file or an external data file is
//!   refused, with an error that names it.
//! - With [`BackingPolicy::Allow`] the chain is read here (qcow2 header and header
//!   extensions), relative names are resolved the way qemu resolves them (against the
//!   directory of the image that names them), and the chain is refused when a name is a
//!   protocol or `json:`, a backing format is missing or not raw/qcow2, the chain loops,
//!   is deeper than [`MAX_CHAIN`], names something that is not a regular file, or names a
//!   file skiff cannot open itself.
//! - The path given for a disk must be a regular file or a block device: a directory,
//!   FIFO, socket, character device or dangling symlink is refused before qemu starts.
//!   Files are opened with `O_NONBLOCK` and checked with `fstat` afterwards, so a path
//!   swapped for a FIFO between the check and the open cannot hang the launch.
//! - After a write session the header of every writable image is read again
//!   ([`OpenedImage::verify_unchanged`]): a changed backing name, backing format or data
//!   file is an error (a compromised appliance or qemu must not re-point an image).

pub mod format;

use crate::error::{Error, Result};
use crate::volumes::KeySet;
use format::Format;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The deepest backing chain accepted (the image itself is layer 0).
pub const MAX_CHAIN: usize = 16;

/// The longest backing or data file name qemu accepts in a qcow2 header.
const MAX_NAME: u32 = 1023;
/// The furthest into the file header extensions are looked for (qemu reads them from the
/// first cluster; clusters are at most 2 MiB).
const MAX_HEADER: u64 = 2 << 20;

/// qcow2 header extension types.
const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_DATA_FILE: u32 = 0x4441_5441;
/// qcow2 incompatible feature bit: the guest data lives in an external data file.
const INCOMPAT_DATA_FILE: u64 = 1 << 2;

/// Whether a drive's image may name other files (backing files, an external data file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackingPolicy {
    /// Refuse an image whose header names another file (the default).
    #[default]
    Refuse,
    /// Follow the chain, checked and opened by skiff (`-a PATH,backing=allow`).
    Allow,
}

/// One file of a drive: the image itself (layer 0), a backing file, or a data file.
#[derive(Debug)]
pub struct Layer {
    /// The path as resolved (layer 0: as the caller gave it).
    pub path: PathBuf,
    pub format: Format,
    /// The open file qemu gets a copy of.
    pub file: File,
    /// Opened (and handed to qemu) writable.
    pub writable: bool,
    /// The external data file of a qcow2 layer (opened like the layer).
    pub data_file: Option<Box<Layer>>,
    /// The key of an encrypted qcow2 layer (qemu's LUKS encryption), in a sealed memfd
    /// qemu reads at startup; dropped once the appliance is up
    /// ([`OpenedImage::forget_secrets`]).
    pub secret: Option<SecretFile>,
}

/// A key in a sealed, close-on-exec memfd: qemu gets it as `-object
/// secret,file=/proc/self/fd/N` (its command line names only the fd) or, hot-added,
/// over QMP; the key is in no file, argument, environment or log.
#[derive(Debug)]
pub struct SecretFile {
    fd: std::os::fd::OwnedFd,
    /// Kept for QMP's `object-add` (hot-added disks cannot read a file any more).
    key: crate::volumes::Secret,
}

impl SecretFile {
    /// A sealed memfd holding `key`.
    pub fn new(key: &crate::volumes::Secret) -> Result<SecretFile> {
        use std::io::Write;
        use std::os::fd::{FromRawFd, OwnedFd};
        // SAFETY: the name is a valid NUL-terminated C string; memfd_create has no other
        // memory-safety preconditions.
        let raw = unsafe {
            libc::memfd_create(
                c"skiff-key".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: `raw` is a freshly created fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut file = File::from(fd);
        file.write_all(key.expose())?;
        let fd = OwnedFd::from(file);
        let seals =
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on an fd we own, with an integer argument.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(SecretFile {
            fd,
            key: key.clone(),
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The key itself (for QMP's `object-add`).
    pub fn key(&self) -> &crate::volumes::Secret {
        &self.key
    }
}

/// What a qcow2 header says about other files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderRefs {
    /// The backing file name exactly as stored.
    pub backing: Option<String>,
    /// The backing format extension, when present.
    pub backing_format: Option<String>,
    /// The external data file name (extension), when present.
    pub data_file: Option<String>,
    /// The incompatible-features bit for an external data file is set.
    pub has_data_file_bit: bool,
    /// The image is encrypted (`crypt_method` != 0).
    pub encrypted: bool,
    /// qcow2's `crypt_method`: 0 none, 1 the old AES-CBC, 2 LUKS.
    pub crypt_method: u32,
}

/// qcow2 `crypt_method` of qemu's LUKS encryption.
pub const CRYPT_LUKS: u32 = 2;
/// ... and of the old, broken AES-CBC encryption qemu itself no longer opens.
pub const CRYPT_AES: u32 = 1;

/// An image opened for a drive, with its checked chain (top first).
#[derive(Debug)]
pub struct OpenedImage {
    /// Layer 0 is the image named by the caller; then its backing file, and so on.
    pub layers: Vec<Layer>,
    /// What the top image's header said when it was opened (for [`Self::verify_unchanged`]).
    refs: HeaderRefs,
}

/// One layer of a chain as `devices --json` and `--verbose` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainEntry {
    pub path: PathBuf,
    pub format: String,
    /// The external data file of this layer, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_file: Option<PathBuf>,
}

fn refused(path: &Path, why: impl Into<String>) -> Error {
    Error::ImageRefused {
        path: path.to_path_buf(),
        reason: why.into(),
    }
}

/// qemu's test for a protocol prefix (`path_has_protocol`): a `:` before the first `/`.
pub fn has_protocol(name: &str) -> bool {
    match name.find([':', '/']) {
        Some(i) => name.as_bytes().get(i) == Some(&b':'),
        None => false,
    }
}

/// Resolves a backing name the way qemu does: absolute names as they are, relative names
/// against the directory of the image that names them (the path as given, not
/// canonicalised).
pub fn resolve_relative(backed: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match backed.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

/// Opens `path` for a drive: refuses what is not a regular file or block device before
/// anything could block on it, then checks the opened file again with `fstat`.
pub fn open_disk_file(path: &Path, writable: bool) -> Result<File> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::DiskNotFound {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(refused(path, format!("cannot read it: {e}"))),
    };
    if meta.file_type().is_symlink() {
        match std::fs::metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let target = std::fs::read_link(path)
                    .map(|t| format!(" (to {t:?})"))
                    .unwrap_or_default();
                return Err(refused(
                    path,
                    format!("it is a dangling symbolic link{target}"),
                ));
            }
            Err(e) => return Err(refused(path, format!("cannot read it: {e}"))),
        }
    }
    let meta =
        std::fs::metadata(path).map_err(|e| refused(path, format!("cannot read it: {e}")))?;
    check_kind(path, &meta)?;
    let file = OpenOptions::new()
        .read(true)
        .write(writable)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            let how = if writable {
                "for writing"
            } else {
                "for reading"
            };
            refused(path, format!("cannot open it {how}: {e}"))
        })?;
    // The path may have been swapped since the check: the open file is what counts.
    let meta = file
        .metadata()
        .map_err(|e| refused(path, format!("cannot read it: {e}")))?;
    check_kind(path, &meta)?;
    set_blocking(&file).map_err(|e| refused(path, format!("cannot use it: {e}")))?;
    Ok(file)
}

/// Regular files and block devices are disks; anything else is refused by name.
fn check_kind(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    let t = meta.file_type();
    let what = if t.is_file() || t.is_block_device() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else {
        "not a regular file or block device"
    };
    Err(refused(
        path,
        format!("it is {what}; a disk must be a regular file or a block device"),
    ))
}

fn set_blocking(f: &File) -> std::io::Result<()> {
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor `f` owns; F_GETFL/F_SETFL only read and change its
    // status flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Reads `len` bytes at `offset` (fewer at end of file).
fn read_at(f: &mut File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(len);
    f.take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// What a qcow2 header names: backing file, backing format, external data file. A header
/// too damaged to read these safely is refused (qemu would refuse it too, or worse,
/// follow a name skiff did not see).
pub fn qcow2_refs(f: &mut File, path: &Path) -> Result<HeaderRefs> {
    let bad = |why: &str| refused(path, format!("its qcow2 header is unreadable: {why}"));
    let head = read_at(f, 0, 112).map_err(|e| bad(&e.to_string()))?;
    if head.get(..4) != Some(b"QFI\xfb") {
        return Err(bad("no qcow2 magic"));
    }
    let version = be32(&head, 4).ok_or_else(|| bad("short header"))?;
    let backing_offset = be64(&head, 8).ok_or_else(|| bad("short header"))?;
    let backing_size = be32(&head, 16).ok_or_else(|| bad("short header"))?;
    let cluster_bits = be32(&head, 20).ok_or_else(|| bad("short header"))?;
    let crypt = be32(&head, 32).ok_or_else(|| bad("short header"))?;
    let (incompat, header_len) = match version {
        2 => (0, 72u64),
        3 => (
            be64(&head, 72).ok_or_else(|| bad("short header"))?,
            u64::from(be32(&head, 100).ok_or_else(|| bad("short header"))?),
        ),
        v => return Err(bad(&format!("version {v}"))),
    };
    if !(9..=21).contains(&cluster_bits) {
        return Err(bad(&format!("cluster_bits {cluster_bits}")));
    }
    let cluster = 1u64 << cluster_bits;
    if header_len < 72 || header_len > cluster.min(MAX_HEADER) {
        return Err(bad(&format!("header length {header_len}")));
    }
    let mut refs = HeaderRefs {
        has_data_file_bit: incompat & INCOMPAT_DATA_FILE != 0,
        encrypted: crypt != 0,
        crypt_method: crypt,
        ..HeaderRefs::default()
    };
    if backing_offset != 0 {
        if backing_size == 0 || backing_size > MAX_NAME {
            return Err(bad(&format!("backing file name length {backing_size}")));
        }
        let name =
            read_at(f, backing_offset, backing_size as usize).map_err(|e| bad(&e.to_string()))?;
        if name.len() != backing_size as usize {
            return Err(bad("backing file name past the end of the file"));
        }
        refs.backing = Some(String::from_utf8_lossy(&name).into_owned());
    }
    // Header extensions: from the end of the header to the end of the first cluster.
    let area =
        read_at(f, header_len, (cluster - header_len) as usize).map_err(|e| bad(&e.to_string()))?;
    let mut off = 0usize;
    // Each extension takes at least 8 bytes, so this ends.
    while off + 8 <= area.len() {
        let (Some(kind), Some(len)) = (be32(&area, off), be32(&area, off + 4)) else {
            break;
        };
        if kind == EXT_END {
            break;
        }
        let start = off + 8;
        let end = start
            .checked_add(len as usize)
            .filter(|&e| e <= area.len())
            .ok_or_else(|| bad(&format!("header extension {kind:#x} overruns the cluster")))?;
        let data = area.get(start..end).unwrap_or_default();
        let text = || {
            String::from_utf8_lossy(data)
                .trim_end_matches('\0')
                .to_string()
        };
        match kind {
            EXT_BACKING_FORMAT => refs.backing_format = Some(text()),
            EXT_DATA_FILE => refs.data_file = Some(text()),
            _ => {}
        }
        off = start + (len as usize).next_multiple_of(8);
    }
    Ok(refs)
}

/// Finds the format of an open disk file (see [`Format::detect`]).
pub fn detect_format(f: &mut File, path: &Path) -> Result<Format> {
    let failed = |e: std::io::Error| Error::FormatProbe {
        path: path.into(),
        message: e.to_string(),
    };
    let head = read_at(f, 0, format::HEAD).map_err(failed)?;
    let len = f.seek(SeekFrom::End(0)).map_err(failed)?;
    let tail = if len >= (format::HEAD + format::TAIL) as u64 {
        Some(read_at(f, len - format::TAIL as u64, format::TAIL).map_err(failed)?)
    } else {
        None
    };
    format::from_probe(path, format::probe(&head, tail.as_deref()))
}

impl OpenedImage {
    /// Opens the image at `path` and, when `policy` allows it, its whole chain; checks
    /// everything listed in the module documentation. An encrypted qcow2 is refused:
    /// see [`OpenedImage::open_keyed`].
    pub fn open(
        path: &Path,
        format: Option<Format>,
        writable: bool,
        policy: BackingPolicy,
    ) -> Result<OpenedImage> {
        Self::open_keyed(path, format, writable, policy, &KeySet::new(), None)
    }

    /// [`OpenedImage::open`], with keys for encrypted qcow2 layers (qemu's LUKS
    /// encryption): a layer takes the first key [`KeySet::for_image`] gives for its
    /// path (the top layer also for `device`, the `/dev/sdX` it will be). qemu checks
    /// the key when it opens the image; a layer without a key, or encrypted with the
    /// old AES method, is refused.
    pub fn open_keyed(
        path: &Path,
        format: Option<Format>,
        writable: bool,
        policy: BackingPolicy,
        keys: &KeySet,
        device: Option<&str>,
    ) -> Result<OpenedImage> {
        let mut file = open_disk_file(path, writable)?;
        let format = match format {
            Some(f) => f,
            None => detect_format(&mut file, path)?,
        };
        let refs = match format {
            Format::Qcow2 => qcow2_refs(&mut file, path)?,
            Format::Raw => HeaderRefs::default(),
        };
        let mut seen = vec![file_id(&file, path)?];
        let top_refs = refs.clone();
        let top_secret = layer_secret(path, &refs, keys, device)?;
        let mut layers = vec![Layer {
            path: path.to_path_buf(),
            format,
            file,
            writable,
            data_file: None,
            secret: top_secret,
        }];
        let mut refs = refs;
        loop {
            let backed_path = layers
                .last()
                .map(|l| l.path.clone())
                .unwrap_or_else(|| path.to_path_buf());
            check_header(&backed_path, &refs, policy)?;
            if let Some(name) = refs.data_file.clone() {
                let p = checked_name(&backed_path, &name, "data file")?;
                let data = open_chain_file(&p, &backed_path, "data file", writable_of(&layers))?;
                seen_check(&mut seen, &data, &p)?;
                if let Some(l) = layers.last_mut() {
                    l.data_file = Some(Box::new(Layer {
                        path: p,
                        format: Format::Raw,
                        file: data,
                        writable: l.writable,
                        data_file: None,
                        secret: None,
                    }));
                }
            }
            let Some(name) = refs.backing.clone() else {
                break;
            };
            if layers.len() > MAX_CHAIN {
                return Err(refused(
                    path,
                    format!("its backing chain is deeper than {MAX_CHAIN} images"),
                ));
            }
            let p = checked_name(&backed_path, &name, "backing file")?;
            let fmt_name = refs.backing_format.clone().ok_or_else(|| {
                refused(
                    &backed_path,
                    format!(
                        "its backing file {name:?} has no format in the header; qemu would \
                         have to probe it (set one with qemu-img rebase -F raw|qcow2)"
                    ),
                )
            })?;
            let bformat: Format = fmt_name.parse().map_err(|_| {
                refused(
                    &backed_path,
                    format!("its backing file {name:?} has format {fmt_name:?} (only raw and qcow2 are attached)"),
                )
            })?;
            let mut f = open_chain_file(&p, &backed_path, "backing file", false)?;
            seen_check(&mut seen, &f, &p)?;
            refs = match bformat {
                Format::Qcow2 => qcow2_refs(&mut f, &p)?,
                Format::Raw => HeaderRefs::default(),
            };
            let secret = layer_secret(&p, &refs, keys, None)?;
            layers.push(Layer {
                path: p,
                format: bformat,
                file: f,
                writable: false,
                data_file: None,
                secret,
            });
        }
        Ok(OpenedImage {
            layers,
            refs: top_refs,
        })
    }

    /// Drops the memfds holding the keys of encrypted layers (qemu has read them).
    pub fn forget_secrets(&mut self) {
        for l in &mut self.layers {
            l.secret = None;
        }
    }

    /// Is any layer encrypted (qemu's LUKS encryption)?
    pub fn is_encrypted(&self) -> bool {
        self.layers.iter().any(|l| l.secret.is_some())
    }

    /// The top image.
    pub fn top(&self) -> &Layer {
        // OK to index: an OpenedImage always has its top layer.
        &self.layers[0]
    }

    pub fn format(&self) -> Format {
        self.top().format
    }

    /// The chain as shown by `devices --json` and `--verbose`.
    pub fn chain(&self) -> Vec<ChainEntry> {
        self.layers
            .iter()
            .map(|l| ChainEntry {
                path: l.path.clone(),
                format: l.format.as_str().to_string(),
                data_file: l.data_file.as_ref().map(|d| d.path.clone()),
            })
            .collect()
    }

    /// Every open file of the drive (layers and data files), top first.
    pub fn files(&self) -> Vec<&Layer> {
        let mut out = Vec::new();
        for l in &self.layers {
            out.push(l);
            if let Some(d) = &l.data_file {
                out.push(d);
            }
        }
        out
    }

    /// Reads the top image's header again (after a write session) and fails when what it
    /// names (backing file, backing format, data file) changed since it was opened.
    pub fn verify_unchanged(&self) -> Result<()> {
        let top = self.top();
        if top.format != Format::Qcow2 {
            return Ok(());
        }
        let mut f = top.file.try_clone()?;
        let now = qcow2_refs(&mut f, &top.path)?;
        let was = &self.refs;
        let changed = now.backing != was.backing
            || now.backing_format != was.backing_format
            || now.data_file != was.data_file
            || now.has_data_file_bit != was.has_data_file_bit;
        if changed {
            return Err(Error::ImageTampered {
                path: top.path.clone(),
                detail: format!(
                    "backing file {:?} (format {:?}), data file {:?} when opened; now backing \
                     file {:?} (format {:?}), data file {:?}",
                    was.backing,
                    was.backing_format,
                    was.data_file,
                    now.backing,
                    now.backing_format,
                    now.data_file
                ),
            });
        }
        Ok(())
    }
}

fn writable_of(layers: &[Layer]) -> bool {
    layers.last().is_some_and(|l| l.writable)
}

/// The key of a layer: `None` for an unencrypted one; an encrypted one needs a key
/// (qemu's LUKS method; the old AES one is refused).
fn layer_secret(
    path: &Path,
    refs: &HeaderRefs,
    keys: &KeySet,
    device: Option<&str>,
) -> Result<Option<SecretFile>> {
    match refs.crypt_method {
        0 => Ok(None),
        CRYPT_AES => Err(refused(
            path,
            "it is encrypted with qcow2's old AES-CBC method (crypt_method 1), which is \
             insecure and which skiff refuses; convert it with qemu-img convert -O qcow2 \
             -o encrypt.format=luks",
        )),
        CRYPT_LUKS => match keys.for_image(device, path).first() {
            Some(k) => Ok(Some(SecretFile::new(k)?)),
            None => Err(refused(
                path,
                format!(
                    "it is an encrypted qcow2 image (LUKS) and no key was given for it \
                     (--key {}:key:PASSPHRASE or --key {}:file:FILE)",
                    device.unwrap_or("/dev/sdX"),
                    path.display()
                ),
            )),
        },
        m => Err(refused(
            path,
            format!("its qcow2 header names an unknown encryption method ({m})"),
        )),
    }
}

/// The default policy refuses any reference.
fn check_header(path: &Path, refs: &HeaderRefs, policy: BackingPolicy) -> Result<()> {
    if refs.has_data_file_bit && refs.data_file.is_none() {
        return Err(refused(
            path,
            "its header says it has an external data file but does not name it",
        ));
    }
    if policy == BackingPolicy::Refuse {
        if let Some(b) = &refs.backing {
            return Err(refused(
                path,
                format!(
                    "its header names backing file {b:?}; pass backing=allow (-a PATH,backing=allow) \
                     to open the chain, checked by skiff"
                ),
            ));
        }
        if let Some(d) = &refs.data_file {
            return Err(refused(
                path,
                format!(
                    "its header names external data file {d:?}; pass backing=allow (-a PATH,backing=allow) \
                     to open it, checked by skiff"
                ),
            ));
        }
    }
    Ok(())
}

/// A backing/data file name that is not a protocol, resolved against `backed`.
fn checked_name(backed: &Path, name: &str, what: &str) -> Result<PathBuf> {
    if name.is_empty() {
        return Err(refused(backed, format!("its {what} name is empty")));
    }
    if name.contains('\0') {
        return Err(refused(
            backed,
            format!("its {what} name contains a NUL byte"),
        ));
    }
    if has_protocol(name) {
        return Err(refused(
            backed,
            format!(
                "its {what} {name:?} is a protocol or pseudo-protocol name; only local files are followed"
            ),
        ));
    }
    Ok(resolve_relative(backed, name))
}

/// Opens a backing or data file: it must be a regular file skiff can open itself.
fn open_chain_file(p: &Path, backed: &Path, what: &str, writable: bool) -> Result<File> {
    let meta = std::fs::metadata(p)
        .map_err(|e| refused(backed, format!("its {what} {p:?} cannot be opened: {e}")))?;
    if !meta.file_type().is_file() {
        return Err(refused(
            backed,
            format!("its {what} {p:?} is not a regular file"),
        ));
    }
    let f = open_disk_file(p, writable)
        .map_err(|e| refused(backed, format!("its {what} {p:?} cannot be opened: {e}")))?;
    if !f.metadata()?.file_type().is_file() {
        return Err(refused(
            backed,
            format!("its {what} {p:?} is not a regular file"),
        ));
    }
    Ok(f)
}

/// The identity of an open file (device, inode) for loop detection.
fn file_id(f: &File, path: &Path) -> Result<(u64, u64)> {
    let m = f
        .metadata()
        .map_err(|e| refused(path, format!("cannot read it: {e}")))?;
    Ok((m.dev(), m.ino()))
}

fn seen_check(seen: &mut Vec<(u64, u64)>, f: &File, p: &Path) -> Result<()> {
    let id = file_id(f, p)?;
    if seen.contains(&id) {
        return Err(refused(
            p,
            "the backing chain loops (this file appears in it twice)",
        ));
    }
    seen.push(id);
    Ok(())
}

impl Layer {
    /// Is the file a block device (qemu's `host_device` driver)?
    pub fn is_block(&self) -> bool {
        self.file
            .metadata()
            .is_ok_and(|m| m.file_type().is_block_device())
    }
}

/// The raw fd of a layer's file.
pub fn raw_fd(l: &Layer) -> RawFd {
    l.file.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn qemu_img(args: &[&str]) {
        let out = Command::new("qemu-img").args(args).output().unwrap();
        assert!(out.status.success(), "qemu-img {args:?}: {out:?}");
    }

    fn reason(e: Error) -> String {
        match e {
            Error::ImageRefused { reason, .. } => reason,
            other => panic!("expected ImageRefused, got {other:?}"),
        }
    }

    #[test]
    fn protocols() {
        for p in [
            "json:{}",
            "nbd://x",
            "nbd:unix:/s",
            "http://h/x",
            "ssh://h/x",
            "a:b",
        ] {
            assert!(has_protocol(p), "{p}");
        }
        for p in ["/etc/shadow", "./a:b", "base.img", "dir/x:y", "/a:b"] {
            assert!(!has_protocol(p), "{p}");
        }
        assert_eq!(
            resolve_relative(Path::new("sub/top.qcow2"), "base.raw"),
            Path::new("sub/base.raw")
        );
        assert_eq!(
            resolve_relative(Path::new("top.qcow2"), "base.raw"),
            Path::new("base.raw")
        );
        assert_eq!(
            resolve_relative(Path::new("/x/top.qcow2"), "/y/base"),
            Path::new("/y/base")
        );
    }

    #[test]
    fn refusals_name_what_the_header_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let s = |n: &str| p(n).to_str().unwrap().to_string();
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "/etc/shadow",
            "-F",
            "raw",
            &s("evil.qcow2"),
        ]);
        let e =
            OpenedImage::open(&p("evil.qcow2"), None, false, BackingPolicy::Refuse).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("\"/etc/shadow\"") && msg.contains("backing=allow"),
            "{msg}"
        );
        assert!(msg.contains("evil.qcow2"), "{msg}");
        // Allowed: /etc/shadow is a regular file skiff (root) can open, so the chain opens;
        // but a json: or nbd: name is never followed.
        for name in [
            "json:{\"driver\":\"file\",\"filename\":\"/etc/shadow\"}",
            "nbd://localhost:10809/x",
        ] {
            let img = s("proto.qcow2");
            let _ = std::fs::remove_file(&img);
            qemu_img(&[
                "create", "-q", "-f", "qcow2", "-u", "-b", name, "-F", "raw", &img, "1M",
            ]);
            let r = reason(
                OpenedImage::open(Path::new(&img), None, false, BackingPolicy::Allow).unwrap_err(),
            );
            assert!(r.contains("protocol"), "{r}");
        }
        // No backing format.
        qemu_img(&["create", "-q", "-f", "raw", &s("base.raw"), "1M"]);
        // qemu-img no longer writes one without a format: take the backing format
        // extension out of the header (an unknown extension type is skipped).
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "base.raw",
            "-F",
            "raw",
            &s("nofmt.qcow2"),
        ]);
        let mut bytes = std::fs::read(p("nofmt.qcow2")).unwrap();
        let at = bytes
            .windows(4)
            .position(|w| w == [0xe2, 0x79, 0x2a, 0xca])
            .unwrap();
        bytes[at..at + 4].copy_from_slice(&[0x11, 0x22, 0x33, 0x44]);
        std::fs::write(p("nofmt.qcow2"), bytes).unwrap();
        let r = reason(
            OpenedImage::open(&p("nofmt.qcow2"), None, false, BackingPolicy::Allow).unwrap_err(),
        );
        assert!(r.contains("no format"), "{r}");
        // A loop a -> b -> a.
        qemu_img(&["create", "-q", "-f", "qcow2", &s("a.qcow2"), "1M"]);
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "a.qcow2",
            "-F",
            "qcow2",
            &s("b.qcow2"),
        ]);
        qemu_img(&[
            "rebase",
            "-q",
            "-u",
            "-f",
            "qcow2",
            "-b",
            "b.qcow2",
            "-F",
            "qcow2",
            &s("a.qcow2"),
        ]);
        let r = reason(
            OpenedImage::open(&p("a.qcow2"), None, false, BackingPolicy::Allow).unwrap_err(),
        );
        assert!(r.contains("loops"), "{r}");
        // A chain of 3 with relative names, opened from another directory.
        std::fs::create_dir(p("sub")).unwrap();
        qemu_img(&["create", "-q", "-f", "raw", &s("sub/l0.raw"), "1M"]);
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "l0.raw",
            "-F",
            "raw",
            &s("sub/l1.qcow2"),
        ]);
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "l1.qcow2",
            "-F",
            "qcow2",
            &s("sub/l2.qcow2"),
        ]);
        let img = OpenedImage::open(&p("sub/l2.qcow2"), None, false, BackingPolicy::Allow).unwrap();
        let chain: Vec<_> = img
            .chain()
            .into_iter()
            .map(|c| (c.path, c.format))
            .collect();
        assert_eq!(
            chain,
            vec![
                (p("sub/l2.qcow2"), "qcow2".to_string()),
                (p("sub/l1.qcow2"), "qcow2".to_string()),
                (p("sub/l0.raw"), "raw".to_string()),
            ]
        );
        // A missing backing file.
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-u",
            "-b",
            "gone.raw",
            "-F",
            "raw",
            &s("orphan.qcow2"),
            "1M",
        ]);
        let r = reason(
            OpenedImage::open(&p("orphan.qcow2"), None, false, BackingPolicy::Allow).unwrap_err(),
        );
        assert!(
            r.contains("gone.raw") && r.contains("cannot be opened"),
            "{r}"
        );
        // A backing file that is a directory or a FIFO.
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-u",
            "-b",
            "sub",
            "-F",
            "raw",
            &s("dirback.qcow2"),
            "1M",
        ]);
        let r = reason(
            OpenedImage::open(&p("dirback.qcow2"), None, false, BackingPolicy::Allow).unwrap_err(),
        );
        assert!(r.contains("not a regular file"), "{r}");
        // An external data file.
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            &format!("data_file={}", s("data.raw")),
            &s("ext.qcow2"),
            "1M",
        ]);
        let r = reason(
            OpenedImage::open(&p("ext.qcow2"), None, false, BackingPolicy::Refuse).unwrap_err(),
        );
        assert!(
            r.contains("external data file") && r.contains("data.raw"),
            "{r}"
        );
        let img = OpenedImage::open(&p("ext.qcow2"), None, false, BackingPolicy::Allow).unwrap();
        assert_eq!(
            img.chain()[0].data_file.as_deref(),
            Some(p("data.raw").as_path())
        );
    }

    #[test]
    fn bad_paths() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        assert!(
            Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let r = reason(OpenedImage::open(&fifo, None, false, BackingPolicy::Refuse).unwrap_err());
        assert!(r.contains("FIFO"), "{r}");
        let r =
            reason(OpenedImage::open(dir.path(), None, false, BackingPolicy::Refuse).unwrap_err());
        assert!(r.contains("directory"), "{r}");
        let r = reason(
            OpenedImage::open(Path::new("/dev/zero"), None, false, BackingPolicy::Refuse)
                .unwrap_err(),
        );
        assert!(r.contains("character device"), "{r}");
        let sock = dir.path().join("sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let r = reason(OpenedImage::open(&sock, None, false, BackingPolicy::Refuse).unwrap_err());
        assert!(r.contains("socket"), "{r}");
        let link = dir.path().join("dangling");
        std::os::unix::fs::symlink("/nonexistent/x.img", &link).unwrap();
        let r = reason(OpenedImage::open(&link, None, false, BackingPolicy::Refuse).unwrap_err());
        assert!(r.contains("dangling"), "{r}");
        assert!(matches!(
            OpenedImage::open(
                &dir.path().join("missing"),
                None,
                false,
                BackingPolicy::Refuse
            ),
            Err(Error::DiskNotFound { .. })
        ));
    }

    #[test]
    fn tampering_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("top.qcow2");
        let t = top.to_str().unwrap();
        qemu_img(&["create", "-q", "-f", "qcow2", t, "1M"]);
        let img = OpenedImage::open(&top, None, true, BackingPolicy::Refuse).unwrap();
        img.verify_unchanged().unwrap();
        qemu_img(&[
            "rebase",
            "-q",
            "-u",
            "-f",
            "qcow2",
            "-b",
            "/etc/passwd",
            "-F",
            "raw",
            t,
        ]);
        let e = img.verify_unchanged().unwrap_err();
        assert!(matches!(e, Error::ImageTampered { .. }), "{e}");
        assert!(e.to_string().contains("/etc/passwd"), "{e}");
    }
}
