//! Partition-table tests against images made by `sfdisk` and `sgdisk`.

use super::testutil::{TempImage, run};
use super::*;
use crate::block::{MemDisk, shared};

/// Extracts `"key":value` (number or string) from one line of `sfdisk -J` output.
fn json_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let i = line.find(&pat)? + pat.len();
    let rest = line[i..].trim_start();
    if let Some(r) = rest.strip_prefix('"') {
        Some(&r[..r.find('"')?])
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(rest[..end].trim())
    }
}

#[test]
fn mbr_primary_extended_logical() {
    let img = TempImage::new("mbr", 64 << 20);
    run(
        "sfdisk",
        &["--quiet", "--no-reread", "--no-tell-kernel", img.path()],
        Some(
            "label: dos\nlabel-id: 0x1234abcd\n\
             start=2048, size=20480, type=83\n\
             start=22528, size=10240, type=c\n\
             start=32768, size=90112, type=5\n\
             start=34816, size=20480, type=83\n\
             start=57344, size=30720, type=82\n",
        ),
    );
    let parts = scan(&img.disk()).unwrap();
    let numbers: Vec<u32> = parts.iter().map(|p| p.number).collect();
    assert_eq!(numbers, [1, 2, 3, 5, 6]);

    // Compare with what sfdisk itself reports.
    let json = run("sfdisk", &["-J", img.path()], None);
    let tool: Vec<(u32, u64, u64, String)> = json
        .split("\"node\"")
        .skip(1)
        .map(|chunk| {
            let l = format!("\"node\"{}", &chunk[..chunk.find('}').unwrap()]);
            let l = l.as_str();
            let node = json_field(l, "node").unwrap();
            let num: u32 = node[img.path().len()..].parse().unwrap();
            let start: u64 = json_field(l, "start").unwrap().parse().unwrap();
            let size: u64 = json_field(l, "size").unwrap().parse().unwrap();
            (
                num,
                start * 512,
                size * 512,
                json_field(l, "type").unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(tool.len(), parts.len());
    for (p, (num, start, size, ty)) in parts.iter().zip(&tool) {
        assert_eq!(p.number, *num);
        assert_eq!(p.start, *start, "start of {num}");
        assert_eq!(p.size, *size, "size of {num}");
        assert_eq!(
            p.part_type,
            format!("0x{:02x}", u8::from_str_radix(ty, 16).unwrap())
        );
        assert_eq!(p.table, TableKind::Mbr);
        assert_eq!(
            p.uuid.as_deref(),
            Some(format!("1234abcd-{:02x}", p.number).as_str())
        );
    }
    assert_eq!(parts[2].part_type, "0x05");
    assert_eq!(parts[4].part_type, "0x82");
}

#[test]
fn mbr_logical_loop_is_corrupt() {
    let img = TempImage::new("mbrloop", 16 << 20);
    run(
        "sfdisk",
        &["--quiet", "--no-reread", "--no-tell-kernel", img.path()],
        Some("label: dos\nstart=2048, size=20480, type=5\nstart=4096, size=2048, type=83\n"),
    );
    let mut data = std::fs::read(&img.0).unwrap();
    // The first EBR is at sector 2048: make its "next" link point back at itself
    // (relative start 0 within the extended partition).
    let ebr = 2048 * 512;
    let link = ebr + 446 + 16;
    data[link + 4] = 0x05;
    data[link + 8..link + 12].copy_from_slice(&0u32.to_le_bytes());
    data[link + 12..link + 16].copy_from_slice(&100u32.to_le_bytes());
    let e = scan(&shared(MemDisk::new(data, true))).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
    assert!(e.message.contains("loop"), "{e}");
}

#[test]
fn mbr_partition_past_end_is_corrupt() {
    let img = TempImage::new("mbrtrunc", 16 << 20);
    run(
        "sfdisk",
        &["--quiet", "--no-reread", "--no-tell-kernel", img.path()],
        Some("label: dos\nstart=2048, size=28000, type=83\n"),
    );
    let mut data = std::fs::read(&img.0).unwrap();
    data.truncate(8 << 20);
    let e = scan(&shared(MemDisk::new(data, true))).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Corrupt);
}

#[test]
fn no_table() {
    assert_eq!(
        scan(&shared(MemDisk::new(vec![0; 1 << 20], true))).unwrap(),
        []
    );
    assert_eq!(scan(&shared(MemDisk::new(vec![0; 100], true))).unwrap(), []);
    // A FAT boot sector ends in 0x55AA too but is not a partition table.
    let img = TempImage::new("fat", 32 << 20);
    run("mkfs.vfat", &["-F", "16", img.path()], None);
    assert_eq!(scan(&img.disk()).unwrap(), []);
}

fn sgdisk_field(info: &str, key: &str) -> String {
    let line = info
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("{key} not in {info}"));
    line[key.len()..].trim().to_string()
}

fn make_gpt() -> TempImage {
    let img = TempImage::new("gpt", 64 << 20);
    run(
        "sgdisk",
        &[
            "-n",
            "1:2048:+8M",
            "-t",
            "1:EF00",
            "-c",
            "1:EFI system",
            "-n",
            "2:0:+16M",
            "-t",
            "2:8300",
            "-c",
            "2:root",
            "-n",
            "3:0:+4M",
            "-t",
            "3:8200",
            "-c",
            "3:swäp",
            img.path(),
        ],
        None,
    );
    img
}

fn check_gpt(img: &TempImage, parts: &[PartEntry]) {
    assert_eq!(parts.len(), 3);
    for p in parts {
        let info = run("sgdisk", &["-i", &p.number.to_string(), img.path()], None);
        let code = sgdisk_field(&info, "Partition GUID code:");
        assert_eq!(p.part_type, code.split(' ').next().unwrap());
        assert_eq!(
            p.uuid.as_deref(),
            Some(sgdisk_field(&info, "Partition unique GUID:").as_str())
        );
        let first: u64 = sgdisk_field(&info, "First sector:")
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let last: u64 = sgdisk_field(&info, "Last sector:")
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(p.start, first * 512);
        assert_eq!(p.size, (last - first + 1) * 512);
        let name = sgdisk_field(&info, "Partition name:");
        assert_eq!(p.label.as_deref(), Some(name.trim_matches('\'')));
        assert_eq!(p.table, TableKind::Gpt);
    }
    assert_eq!(parts[0].part_type, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    assert_eq!(parts[1].part_type, "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    assert_eq!(parts[2].label.as_deref(), Some("swäp"));
}

#[test]
fn gpt_three_named_partitions() {
    let img = make_gpt();
    let parts = scan(&img.disk()).unwrap();
    check_gpt(&img, &parts);
}

#[test]
fn gpt_backup_header_used_and_both_bad_corrupt() {
    let img = make_gpt();
    let good = scan(&img.disk()).unwrap();
    let mut data = std::fs::read(&img.0).unwrap();
    // Zero the primary header.
    data[512..1024].fill(0);
    let from_backup = scan(&shared(MemDisk::new(data.clone(), true))).unwrap();
    assert_eq!(from_backup, good);
    // Damage the primary entry array only (header intact): the backup is used too.
    let mut data2 = std::fs::read(&img.0).unwrap();
    data2[1024 + 130] ^= 0xFF;
    assert_eq!(scan(&shared(MemDisk::new(data2, true))).unwrap(), good);
    // Also corrupt the backup header (last sector): Corrupt.
    let n = data.len();
    data[n - 512 + 20] ^= 0x55;
    let e = scan(&shared(MemDisk::new(data, true))).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
}

#[test]
fn gpt_guid_byte_order() {
    // EFI system partition type as stored on disk.
    let raw = [
        0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9,
        0x3B,
    ];
    assert_eq!(
        guid_string(&raw).unwrap(),
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    );
    assert_eq!(guid_string(&raw[..15]), None);
}
