//! Disk formats: raw and qcow2 only, always explicit on the qemu command line. When the
//! caller does not name one, `qemu-img info` finds it on the host; qemu never probes
//! (CVE-2010-3851).

use crate::error::{Error, Result};
use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;

/// A disk image format skiff attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    Qcow2,
}

impl Format {
    /// The qemu block driver name.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }

    /// Finds the format of `path` with `qemu-img info --output=json` (`$SKIFF_QEMU_IMG`
    /// overrides the binary). Only raw and qcow2 are accepted.
    pub fn detect(path: &Path) -> Result<Format> {
        let qemu_img = std::env::var_os("SKIFF_QEMU_IMG").unwrap_or_else(|| "qemu-img".into());
        let out = Command::new(&qemu_img)
            .args(["info", "--output=json", "--"])
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::QemuImg {
                path: path.into(),
                message: format!("cannot run {qemu_img:?}: {e}"),
            })?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(Error::QemuImg {
                path: path.into(),
                message: if msg.is_empty() {
                    out.status.to_string()
                } else {
                    msg
                },
            });
        }
        let name = format_from_info_json(&out.stdout).map_err(|message| Error::QemuImg {
            path: path.into(),
            message,
        })?;
        name.parse().map_err(|_| Error::UnknownFormat {
            path: path.into(),
            format: name,
        })
    }
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

/// The `"format"` field of `qemu-img info --output=json`.
fn format_from_info_json(json: &[u8]) -> std::result::Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Info {
        format: String,
    }
    serde_json::from_slice::<Info>(json)
        .map(|i| i.format)
        .map_err(|e| format!("unexpected qemu-img output: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qemu_img(args: &[&str]) {
        let st = Command::new("qemu-img")
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("qemu-img is installed");
        assert!(st.success(), "qemu-img {args:?}");
    }

    #[test]
    fn parses_info_json() {
        let j = br#"{"virtual-size": 1048576, "filename": "x", "format": "qcow2", "dirty-flag": false}"#;
        assert_eq!(format_from_info_json(j).unwrap(), "qcow2");
        assert!(format_from_info_json(b"not json").is_err());
    }

    #[test]
    fn detects_real_images() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
        std::fs::write(p("a.img"), vec![7u8; 65536]).unwrap();
        qemu_img(&["create", "-q", "-f", "qcow2", &p("b.qcow2"), "1M"]);
        qemu_img(&["create", "-q", "-f", "vdi", &p("c.vdi"), "1M"]);
        assert_eq!(Format::detect(p("a.img").as_ref()).unwrap(), Format::Raw);
        assert_eq!(
            Format::detect(p("b.qcow2").as_ref()).unwrap(),
            Format::Qcow2
        );
        match Format::detect(p("c.vdi").as_ref()) {
            Err(Error::UnknownFormat { format, .. }) => assert_eq!(format, "vdi"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Format::detect(p("missing").as_ref()),
            Err(Error::QemuImg { .. })
        ));
    }

    #[test]
    fn from_str() {
        assert_eq!("raw".parse::<Format>().unwrap(), Format::Raw);
        assert!("vmdk".parse::<Format>().is_err());
    }
}
