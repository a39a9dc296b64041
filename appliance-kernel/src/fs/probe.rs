//! Filesystem probing (like blkid): type, label and UUID from a device's superblock.
//!
//! Follows libblkid's rules: ext2/3/4 from the superblock feature flags (an ext2/ext3
//! driver could not mount it → ext4), vfat label and serial from the extended BPB, swap
//! label and UUID from the v1 swap header. xfs, btrfs, ntfs, exfat, iso9660, LUKS and LVM
//! are recognised by their magic. Never fails and never panics: short or unreadable
//! devices are `unknown`.

use crate::block::SharedDevice;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// `ext2`, `ext3`, `ext4`, `vfat`, `swap`, ... or `unknown`.
    pub fstype: String,
    pub label: Option<String>,
    pub uuid: Option<String>,
}

impl Probe {
    fn new(fstype: &str, label: Option<String>, uuid: Option<String>) -> Self {
        Probe {
            fstype: fstype.to_string(),
            label,
            uuid,
        }
    }
}

/// `len` bytes at `offset`, or `None` when the device is too small or the read fails.
fn read(dev: &SharedDevice, offset: u64, len: usize) -> Option<Vec<u8>> {
    let mut d = dev.try_borrow_mut().ok()?;
    if offset.checked_add(len as u64)? > d.size() {
        return None;
    }
    let mut buf = vec![0u8; len];
    d.read_at(offset, &mut buf).ok()?;
    Some(buf)
}

fn le16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([*s.first()?, *s.get(1)?]))
}

fn le32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Some(u32::from_le_bytes(a))
}

/// A label from a fixed-size field: up to the first NUL, trailing spaces trimmed, `None`
/// when empty.
fn label_from(field: Option<&[u8]>) -> Option<String> {
    let f = field?;
    let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
    let s = String::from_utf8_lossy(f.get(..end)?);
    let s = s.trim_end_matches(' ');
    (!s.is_empty()).then(|| s.to_string())
}

/// A 16-byte UUID as lower-case 8-4-4-4-12; `None` for the all-zero UUID.
fn uuid_from(field: Option<&[u8]>) -> Option<String> {
    let u = field?.get(..16)?;
    if u.iter().all(|&b| b == 0) {
        return None;
    }
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    Some(s)
}

/// Never fails: what cannot be read is `unknown`.
pub fn probe(dev: &SharedDevice) -> Probe {
    let probes: [fn(&SharedDevice) -> Option<Probe>; 10] =
        [ext, xfs, btrfs, luks, lvm, iso9660, swap, ntfs, exfat, vfat];
    probes
        .iter()
        .find_map(|p| p(dev))
        .unwrap_or_else(|| Probe::new("unknown", None, None))
}

// ext2/3/4 feature bits (e2fsprogs lib/ext2fs/ext2_fs.h).
const COMPAT_HAS_JOURNAL: u32 = 0x0004;
const INCOMPAT_FILETYPE: u32 = 0x0002;
const INCOMPAT_RECOVER: u32 = 0x0004;
const INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
const INCOMPAT_META_BG: u32 = 0x0010;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x0001;
const RO_COMPAT_LARGE_FILE: u32 = 0x0002;
const RO_COMPAT_BTREE_DIR: u32 = 0x0004;

fn ext(dev: &SharedDevice) -> Option<Probe> {
    let sb = read(dev, 1024, 1024)?;
    if le16(&sb, 0x38)? != 0xEF53 {
        return None;
    }
    let compat = le32(&sb, 0x5C)?;
    let incompat = le32(&sb, 0x60)?;
    let ro_compat = le32(&sb, 0x64)?;
    let label = label_from(sb.get(0x78..0x88));
    let uuid = uuid_from(sb.get(0x68..0x78));
    // What an ext3 driver understands; anything more needs ext4 (blkid's rule).
    let ext3_incompat = INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_META_BG;
    let ext3_ro = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_BTREE_DIR;
    let fstype = if incompat & INCOMPAT_JOURNAL_DEV != 0 {
        "jbd"
    } else if incompat & !ext3_incompat != 0 || ro_compat & !ext3_ro != 0 {
        "ext4"
    } else if compat & COMPAT_HAS_JOURNAL != 0 {
        "ext3"
    } else {
        "ext2"
    };
    Some(Probe::new(fstype, label, uuid))
}

fn xfs(dev: &SharedDevice) -> Option<Probe> {
    let sb = read(dev, 0, 512)?;
    if sb.get(..4)? != b"XFSB" {
        return None;
    }
    Some(Probe::new(
        "xfs",
        label_from(sb.get(108..120)),
        uuid_from(sb.get(32..48)),
    ))
}

fn btrfs(dev: &SharedDevice) -> Option<Probe> {
    let sb = read(dev, 65536, 4096)?;
    if sb.get(64..72)? != b"_BHRfS_M" {
        return None;
    }
    Some(Probe::new(
        "btrfs",
        label_from(sb.get(0x12B..0x22B)),
        uuid_from(sb.get(0x20..0x30)),
    ))
}

fn luks(dev: &SharedDevice) -> Option<Probe> {
    let h = read(dev, 0, 512)?;
    if h.get(..6)? != b"LUKS\xba\xbe" {
        return None;
    }
    let uuid = label_from(h.get(168..208));
    Some(Probe::new("crypto_LUKS", None, uuid))
}

fn lvm(dev: &SharedDevice) -> Option<Probe> {
    let h = read(dev, 512, 512)?;
    if h.get(..8)? != b"LABELONE" || h.get(24..32)? != b"LVM2 001" {
        return None;
    }
    Some(Probe::new("LVM2_member", None, None))
}

fn iso9660(dev: &SharedDevice) -> Option<Probe> {
    let pvd = read(dev, 32768, 2048)?;
    if pvd.get(1..6)? != b"CD001" {
        return None;
    }
    Some(Probe::new("iso9660", label_from(pvd.get(40..72)), None))
}

fn swap(dev: &SharedDevice) -> Option<Probe> {
    // The signature ends the first page; try the usual page sizes.
    for page in [4096u64, 8192, 16384, 65536] {
        let Some(magic) = read(dev, page - 10, 10) else {
            continue;
        };
        if magic != b"SWAPSPACE2" && magic != b"SWAP-SPACE" {
            continue;
        }
        if magic == b"SWAP-SPACE" {
            // Version 0 swap has no label or UUID.
            return Some(Probe::new("swap", None, None));
        }
        let h = read(dev, 1024, 512)?;
        return Some(Probe::new(
            "swap",
            label_from(h.get(28..44)),
            uuid_from(h.get(12..28)),
        ));
    }
    None
}

fn ntfs(dev: &SharedDevice) -> Option<Probe> {
    let b = read(dev, 0, 512)?;
    if b.get(3..11)? != b"NTFS    " {
        return None;
    }
    let serial = b.get(0x48..0x50)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(serial);
    let uuid = format!("{:016X}", u64::from_le_bytes(a));
    Some(Probe::new(
        "ntfs",
        super::ntfs::volume_label(dev),
        Some(uuid),
    ))
}

fn exfat(dev: &SharedDevice) -> Option<Probe> {
    let b = read(dev, 0, 512)?;
    if b.get(3..11)? != b"EXFAT   " {
        return None;
    }
    let serial = le32(&b, 100)?;
    let uuid = format!("{:04X}-{:04X}", serial >> 16, serial & 0xFFFF);
    Some(Probe::new("exfat", None, Some(uuid)))
}

fn vfat(dev: &SharedDevice) -> Option<Probe> {
    let b = read(dev, 0, 512)?;
    let jump = (*b.first()?, *b.get(2)?);
    if !(jump.0 == 0xEB && jump.1 == 0x90 || jump.0 == 0xE9) {
        return None;
    }
    // A plausible BIOS parameter block (as blkid checks it).
    let bytes_per_sector = le16(&b, 11)?;
    let per_cluster = *b.get(13)?;
    let reserved = le16(&b, 14)?;
    let fats = *b.get(16)?;
    if !bytes_per_sector.is_power_of_two()
        || !(512..=4096).contains(&bytes_per_sector)
        || !per_cluster.is_power_of_two()
        || reserved == 0
        || fats == 0
        || fats > 4
    {
        return None;
    }
    let media = *b.get(21)?;
    if media != 0xF0 && media < 0xF8 {
        return None;
    }
    let fat16_sectors = le16(&b, 22)?;
    // FAT32 keeps its extended BPB at 64, FAT12/16 at 36.
    let ext = if fat16_sectors == 0 && le32(&b, 36)? != 0 {
        64
    } else {
        36
    };
    let sig = *b.get(ext + 2)?;
    let (label, uuid) = if sig == 0x29 || sig == 0x28 {
        let serial = le32(&b, ext + 3)?;
        let uuid = format!("{:04X}-{:04X}", serial >> 16, serial & 0xFFFF);
        let label = if sig == 0x29 {
            label_from(b.get(ext + 7..ext + 18)).filter(|l| l != "NO NAME")
        } else {
            None
        };
        (label, Some(uuid))
    } else {
        (None, None)
    };
    Some(Probe::new("vfat", label, uuid))
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{MemDisk, shared};
    use crate::part::testutil::{TempDir, TempImage, blkid, run};

    fn check_against_blkid(img: &TempImage, p: &Probe) {
        let b = blkid(img.path());
        assert_eq!(Some(&p.fstype), b.get("TYPE"), "{b:?}");
        assert_eq!(p.label.as_ref(), b.get("LABEL"), "{b:?}");
        assert_eq!(p.uuid.as_ref(), b.get("UUID"), "{b:?}");
    }

    #[test]
    fn ext_variants() {
        let src = TempDir::new("probe-src");
        std::fs::write(src.0.join("hello"), b"hi").unwrap();
        for (args, fstype) in [
            (&["-t", "ext4", "-b", "1024"][..], "ext4"),
            (&["-t", "ext4", "-b", "4096"][..], "ext4"),
            (&["-t", "ext3"][..], "ext3"),
            (&["-t", "ext2"][..], "ext2"),
        ] {
            let img = TempImage::new("probe-ext", 16 << 20);
            let mut a = vec!["-q", "-F", "-L", "rootfs", "-d", src.path()];
            a.extend_from_slice(args);
            a.push(img.path());
            run("mke2fs", &a, None);
            let p = probe(&img.disk());
            assert_eq!(p.fstype, fstype);
            assert_eq!(p.label.as_deref(), Some("rootfs"));
            check_against_blkid(&img, &p);
            // Cross-check the UUID with dumpe2fs.
            let h = run("dumpe2fs", &["-h", img.path()], None);
            let line = h
                .lines()
                .find(|l| l.starts_with("Filesystem UUID:"))
                .unwrap();
            assert_eq!(
                p.uuid.as_deref(),
                Some(line["Filesystem UUID:".len()..].trim())
            );
        }
    }

    #[test]
    fn vfat_variants() {
        for bits in ["12", "16", "32"] {
            let img = TempImage::new("probe-fat", 40 << 20);
            run(
                "mkfs.vfat",
                &["-F", bits, "-n", "MYDISK", "-i", "1a2b3c4d", img.path()],
                None,
            );
            let p = probe(&img.disk());
            assert_eq!(p.fstype, "vfat");
            assert_eq!(p.label.as_deref(), Some("MYDISK"));
            assert_eq!(p.uuid.as_deref(), Some("1A2B-3C4D"));
            check_against_blkid(&img, &p);
        }
        // No label: "NO NAME" in the BPB → None.
        let img = TempImage::new("probe-fat-nolabel", 32 << 20);
        run("mkfs.vfat", &["-F", "16", img.path()], None);
        let p = probe(&img.disk());
        assert_eq!(p.fstype, "vfat");
        assert_eq!(p.label, None);
        check_against_blkid(&img, &p);
    }

    #[test]
    fn swap_with_label() {
        let img = TempImage::new("probe-swap", 4 << 20);
        run(
            "mkswap",
            &[
                "-L",
                "swappy",
                "-U",
                "0e1d2c3b-4a59-6877-8695-a4b3c2d1e0f0",
                img.path(),
            ],
            None,
        );
        let p = probe(&img.disk());
        assert_eq!(p.fstype, "swap");
        assert_eq!(p.label.as_deref(), Some("swappy"));
        assert_eq!(
            p.uuid.as_deref(),
            Some("0e1d2c3b-4a59-6877-8695-a4b3c2d1e0f0")
        );
        check_against_blkid(&img, &p);
    }

    #[test]
    fn unknown_and_tiny() {
        for len in [0usize, 100, 1500, 2048, 1 << 20] {
            let p = probe(&shared(MemDisk::new(vec![0; len], true)));
            assert_eq!(p.fstype, "unknown");
            assert_eq!((p.label, p.uuid), (None, None));
        }
        // An ext superblock cut short: still no panic.
        let mut d = vec![0u8; 1024 + 60];
        d[1024 + 56] = 0x53;
        d[1024 + 57] = 0xEF;
        assert_eq!(probe(&shared(MemDisk::new(d, true))).fstype, "unknown");
        // Random garbage never panics.
        let mut x = 0x1234_5678u32;
        let junk: Vec<u8> = (0..70000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let _ = probe(&shared(MemDisk::new(junk, true)));
    }
}
