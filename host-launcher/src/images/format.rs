//! Disk formats: raw and qcow2 only, always explicit on the qemu command line. When the
//! caller does not name one, skiff reads the image's header on the host and recognises it
//! by the same magic numbers qemu's format probes use; qemu itself never probes
//! (CVE-2010-3851). An image in another format qemu knows (vmdk, vdi, vhdx, ...) is
//! refused by name; anything unrecognised is raw, which is the safe reading: a raw disk
//! never makes qemu open another file (a qcow2 header could name a backing file).
//!
//! Doing this in-process rather than with `qemu-img info` saves a process per image:
//! ~10 ms of CPU, which is a tenth of a whole launch → mount → cat under TCG.

use crate::error::{Error, Result};
use std::fmt;
use std::fs::File;
use std::path::Path;
use std::str::FromStr;

/// A disk image format skiff attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    Qcow2,
}

/// How much of the start of an image the probe reads (qemu's probes look at 2 KiB).
pub(crate) const HEAD: usize = 2048;
/// The footer some formats keep in the last 512 bytes.
pub(crate) const TAIL: usize = 512;

impl Format {
    /// The qemu block driver name.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }

    /// Finds the format of `path` from its first 2 KiB and last 512 bytes. Only raw and
    /// qcow2 are accepted; another known format is [`Error::UnknownFormat`] with qemu's
    /// name for it.
    pub fn detect(path: &Path) -> Result<Format> {
        let mut f = File::open(path).map_err(|e| Error::FormatProbe {
            path: path.into(),
            message: e.to_string(),
        })?;
        crate::images::detect_format(&mut f, path)
    }
}

/// The format for qemu's probe verdict `name` on `path`: raw and qcow2 are attached,
/// anything else is [`Error::UnknownFormat`] with qemu's name for it. A disk that is one
/// LUKS volume (qemu's "luks") is raw: the appliance opens LUKS itself, with `--key`.
pub(crate) fn from_probe(path: &Path, name: &str) -> Result<Format> {
    match name {
        "raw" | "luks" => Ok(Format::Raw),
        "qcow2" => Ok(Format::Qcow2),
        other => Err(Error::UnknownFormat {
            path: path.into(),
            format: other.to_string(),
        }),
    }
}

/// qemu's name for the format of an image that starts with `head` (up to 2 KiB) and, when
/// the image is longer than that, ends with `tail` (512 bytes): the magic numbers of
/// qemu's `bdrv_probe` functions, "raw" when none matches.
pub fn probe(head: &[u8], tail: Option<&[u8]>) -> &'static str {
    let at = |off: usize, magic: &[u8]| head.get(off..off + magic.len()) == Some(magic);
    let be32 = |off: usize| {
        head.get(off..off + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let le32 = |off: usize| {
        head.get(off..off + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if at(0, b"QFI\xfb") {
        // The version decides: 1 is the old qcow, 2 and 3 are qcow2.
        return match be32(4) {
            Some(2 | 3) => "qcow2",
            Some(1) => "qcow",
            _ => "qcow2-unknown-version",
        };
    }
    if at(0, b"QED\0") {
        return "qed";
    }
    if le32(0x40) == Some(0xbeda_107f) {
        return "vdi";
    }
    if at(0, b"KDMV") || at(0, b"COWD") || at(0, b"# Disk DescriptorFile") {
        return "vmdk";
    }
    if at(0, b"vhdxfile") {
        return "vhdx";
    }
    if at(0, b"conectix") {
        return "vpc";
    }
    if at(0, b"WithoutFreeSpace") || at(0, b"WithouFreSpacExt") {
        return "parallels";
    }
    if at(0, b"Bochs Virtual HD Image") {
        return "bochs";
    }
    if at(0, b"#!/bin/sh\n#V2.0 Format\n") {
        return "cloop";
    }
    if at(0, b"LUKS\xba\xbe") {
        return "luks";
    }
    if tail.is_some_and(|t| t.starts_with(b"koly")) {
        return "dmg";
    }
    "raw"
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Format, String> {
        match s {
            "raw" => Ok(Format::Raw),
            "qcow2" => Ok(Format::Qcow2),
            other => Err(format!(
                "unsupported disk format {other:?} (expected raw or qcow2)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qemu_img(args: &[&str]) -> Vec<u8> {
        let out = std::process::Command::new("qemu-img")
            .args(args)
            .output()
            .expect("qemu-img is installed");
        assert!(out.status.success(), "qemu-img {args:?}: {out:?}");
        out.stdout
    }

    /// qemu-img's own verdict, the oracle.
    fn qemu_img_format(path: &str) -> String {
        let json: serde_json::Value =
            serde_json::from_slice(&qemu_img(&["info", "--output=json", path])).unwrap();
        json["format"].as_str().unwrap().to_string()
    }

    #[test]
    fn agrees_with_qemu_img() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
        let mut files = Vec::new();
        for (name, fmt, opts) in [
            ("a.qcow2", "qcow2", ""),
            ("a-v2.qcow2", "qcow2", "compat=0.10"),
            ("a.qcow", "qcow", ""),
            ("a.qed", "qed", ""),
            ("a.vdi", "vdi", ""),
            ("a.vmdk", "vmdk", ""),
            ("a-flat.vmdk", "vmdk", "subformat=monolithicFlat"),
            ("a.vhdx", "vhdx", ""),
            ("a.vpc", "vpc", ""),
            ("fixed.vpc", "vpc", "subformat=fixed"),
            ("a.parallels", "parallels", ""),
            ("a.raw", "raw", ""),
        ] {
            let mut args = vec!["create", "-q", "-f", fmt];
            if !opts.is_empty() {
                args.extend(["-o", opts]);
            }
            let path = p(name);
            args.extend([path.as_str(), "4M"]);
            qemu_img(&args);
            files.push(path);
        }
        for (name, bytes) in [
            ("empty", Vec::new()),
            ("short", b"QFI".to_vec()),
            ("zeros", vec![0u8; 1 << 20]),
            (
                "pattern",
                (0..70000u32).map(|i| (i * 7 % 251) as u8).collect(),
            ),
        ] {
            std::fs::write(p(name), bytes).unwrap();
            files.push(p(name));
        }
        for f in &files {
            let want = qemu_img_format(f);
            let got = match Format::detect(f.as_ref()) {
                Ok(fmt) => fmt.as_str().to_string(),
                Err(Error::UnknownFormat { format, .. }) => format,
                Err(e) => panic!("{f}: {e}"),
            };
            assert_eq!(got, want, "{f}");
        }
        assert!(matches!(
            Format::detect(p("missing").as_ref()),
            Err(Error::FormatProbe { .. })
        ));
        assert!(matches!(
            Format::detect(dir.path()),
            Err(Error::FormatProbe { .. })
        ));
    }

    #[test]
    fn probe_magics() {
        let mut h = vec![0u8; 2048];
        assert_eq!(probe(&h, None), "raw");
        h[..8].copy_from_slice(b"QFI\xfb\0\0\0\x03");
        assert_eq!(probe(&h, None), "qcow2");
        h[7] = 9;
        assert_eq!(probe(&h, None), "qcow2-unknown-version");
        assert_eq!(probe(b"QFI\xfb", None), "qcow2-unknown-version");
        assert_eq!(probe(b"LUKS\xba\xbe\0\x01", None), "luks");
        assert_eq!(probe(&[0u8; 16], Some(b"koly\0\0\0\x04")), "dmg");
        assert_eq!(
            from_probe(Path::new("d"), "luks").ok(),
            Some(Format::Raw),
            "a whole-disk LUKS volume is a raw disk"
        );
        assert_eq!(probe(b"", None), "raw");
    }

    #[test]
    fn from_str() {
        assert_eq!("raw".parse::<Format>().unwrap(), Format::Raw);
        assert!("vmdk".parse::<Format>().is_err());
    }
}
