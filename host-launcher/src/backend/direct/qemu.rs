//! The qemu command line: a machine profile from `qemu-configs/` (one argument per line,
//! `{placeholders}`) plus one `-blockdev`/`-device` pair per disk slot.

use crate::error::{Error, Result};
use crate::images::format::Format;
use crate::images::{Layer, OpenedImage, raw_fd};
use std::os::fd::RawFd;
use std::path::Path;

/// The built-in profile, `qemu-configs/microvm.args`.
pub const DEFAULT_PROFILE: &str = include_str!("../../../../qemu-configs/microvm.args");

/// The hotplug profile, `qemu-configs/microvm-hotplug.args`: PCIe root ports with native
/// hotplug and a QMP monitor on `{qmp_fd}` (used by `Builder::hotplug(true)`).
pub const HOTPLUG_PROFILE: &str = include_str!("../../../../qemu-configs/microvm-hotplug.args");

pub use crate::backend::QBOOT;

/// A machine profile: qemu arguments with `{placeholders}`.
#[derive(Debug, Clone)]
pub struct Profile {
    lines: Vec<String>,
}

/// The values a profile's placeholders expand to.
#[derive(Debug, Clone)]
pub struct Vars {
    pub accel: String,
    pub cpu: String,
    pub memory_mib: u32,
    pub kernel: String,
    pub rpc_fd: i32,
    pub bios: Option<String>,
    pub cmdline: Option<String>,
    /// The QMP socket's fd: required by a profile that uses `{qmp_fd}`.
    pub qmp_fd: Option<i32>,
}

/// One file of a drive as qemu gets it: an fd in an fd set (`/dev/fdset/N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileArg {
    /// The fd set qemu finds the file in.
    pub fdset: u32,
    pub readonly: bool,
    /// A block device (qemu's `host_device` driver) rather than a regular file.
    pub block: bool,
}

/// One layer of a drive's chain (top first), with its files in fd sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerArg {
    pub format: Format,
    pub file: FileArg,
    /// A qcow2 layer's external data file.
    pub data_file: Option<FileArg>,
    /// An encrypted qcow2 layer: the id of the `secret` object holding its key
    /// (`"encrypt": {"format": "luks", "key-secret": ID}`).
    pub key_secret: Option<String>,
}

/// One disk slot: the chain qemu is given, node by node. qemu opens no path: every file
/// is an fd the launcher opened, and a qcow2 layer without a backing layer gets
/// `"backing": null`, so a name in its header is never followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveArg {
    pub layers: Vec<LayerArg>,
    pub readonly: bool,
}

impl Default for Profile {
    fn default() -> Self {
        Profile::parse(DEFAULT_PROFILE)
    }
}

impl Profile {
    /// Parses profile text: one argument per line, `#` comments and blank lines ignored.
    /// Leading and trailing whitespace of a line is not part of the argument.
    pub fn parse(text: &str) -> Profile {
        let lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect();
        Profile { lines }
    }

    /// The hotplug profile ([`HOTPLUG_PROFILE`]).
    pub fn hotplug() -> Profile {
        Profile::parse(HOTPLUG_PROFILE)
    }

    /// Does this profile take a QMP socket (`{qmp_fd}`)?
    pub fn uses_qmp(&self) -> bool {
        self.lines.iter().any(|l| l.contains("{qmp_fd}"))
    }

    /// Reads a profile file (an override of the built-in one).
    pub fn load(path: &Path) -> Result<Profile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read profile {path:?}: {e}")))?;
        Ok(Profile::parse(&text))
    }

    /// The arguments with every placeholder filled in. An optional placeholder that has no
    /// value drops its argument and the option (`-x`) right before it.
    pub fn expand(&self, vars: &Vars) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::with_capacity(self.lines.len());
        for line in &self.lines {
            match expand_line(line, vars)? {
                Some(arg) => out.push(arg),
                None => {
                    if out.last().is_some_and(|o| o.starts_with('-')) {
                        out.pop();
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Expands one line; `None` when an optional placeholder in it has no value.
fn expand_line(line: &str, vars: &Vars) -> Result<Option<String>> {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            return Err(Error::Config(format!("unclosed placeholder in {line:?}")));
        };
        let name = &after[..end];
        let value: Option<String> = match name {
            "accel" => Some(vars.accel.clone()),
            "cpu" => Some(vars.cpu.clone()),
            "memory" => Some(vars.memory_mib.to_string()),
            "kernel" => Some(vars.kernel.clone()),
            "rpc_fd" => Some(vars.rpc_fd.to_string()),
            "bios" => vars.bios.clone(),
            "cmdline" => vars.cmdline.clone(),
            "qmp_fd" => match vars.qmp_fd {
                Some(fd) => Some(fd.to_string()),
                None => {
                    return Err(Error::Config(format!(
                        "the profile line {line:?} needs a QMP socket"
                    )));
                }
            },
            other => {
                return Err(Error::Config(format!(
                    "unknown placeholder {{{other}}} in {line:?}"
                )));
            }
        };
        match value {
            Some(v) => out.push_str(&v),
            None => return Ok(None),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

fn file_json(f: &FileArg) -> serde_json::Value {
    serde_json::json!({
        "driver": if f.block { "host_device" } else { "file" },
        "filename": format!("/dev/fdset/{}", f.fdset),
        "read-only": f.readonly,
    })
}

/// The blockdev options of layer `k` and everything below it.
fn layer_json(layers: &[LayerArg], k: usize) -> Result<serde_json::Value> {
    let l = layers
        .get(k)
        .ok_or_else(|| Error::Config(format!("drive chain has no layer {k}")))?;
    let mut v = serde_json::json!({
        "driver": l.format.as_str(),
        "read-only": l.file.readonly,
        "file": file_json(&l.file),
    });
    if l.format == Format::Qcow2 {
        v["backing"] = if k + 1 < layers.len() {
            layer_json(layers, k + 1)?
        } else {
            serde_json::Value::Null
        };
        if let Some(d) = &l.data_file {
            v["data-file"] = file_json(d);
        }
        if let Some(id) = &l.key_secret {
            v["encrypt"] = serde_json::json!({"format": "luks", "key-secret": id});
        }
    } else if k + 1 < layers.len() {
        return Err(Error::Config(format!(
            "a {} layer cannot have a backing file",
            l.format
        )));
    }
    Ok(v)
}

/// The `-blockdev` JSON of disk slot `i` (node `d<i>`). JSON needs no comma escaping; the
/// format of every layer is explicit and read-only is set on format and file nodes.
pub fn blockdev_json(i: usize, d: &DriveArg) -> Result<serde_json::Value> {
    let mut v = layer_json(&d.layers, 0)?;
    v["node-name"] = format!("d{i}").into();
    Ok(v)
}

/// `-blockdev` and `-device` for disk slot `i` (the appliance maps `serial=skiff<i>` to
/// `/dev/sd<a+i>`).
pub fn drive_args(i: usize, d: &DriveArg) -> Result<[String; 4]> {
    Ok([
        "-blockdev".into(),
        blockdev_json(i, d)?.to_string(),
        "-device".into(),
        format!("virtio-blk-pci,drive=d{i},serial=skiff{i}"),
    ])
}

/// `-add-fd fd=FD,set=SET`: qemu finds the inherited `fd` in fd set `set`.
pub fn add_fd_args(fd: i32, set: u32) -> [String; 2] {
    ["-add-fd".into(), format!("fd={fd},set={set}")]
}

/// The id of the `secret` object with the key of layer `k` of disk slot `slot`.
pub fn secret_id(slot: usize, k: usize) -> String {
    format!("key{slot}l{k}")
}

impl DriveArg {
    /// The drive in slot `slot` for an opened image whose files are in fd sets
    /// `fdset(file)`.
    pub fn for_image(
        slot: usize,
        img: &OpenedImage,
        mut fdset: impl FnMut(&Layer) -> u32,
    ) -> DriveArg {
        let layers = img
            .layers
            .iter()
            .enumerate()
            .map(|(k, l)| LayerArg {
                key_secret: l.secret.as_ref().map(|_| secret_id(slot, k)),
                format: l.format,
                file: FileArg {
                    fdset: fdset(l),
                    readonly: !l.writable,
                    block: l.is_block(),
                },
                data_file: l.data_file.as_deref().map(|d| FileArg {
                    fdset: fdset(d),
                    readonly: !d.writable,
                    block: d.is_block(),
                }),
            })
            .collect();
        DriveArg {
            layers,
            readonly: !img.top().writable,
        }
    }
}

/// Cold-plugged drives as qemu gets them: every file in its own fd set (numbered from 1).
#[derive(Debug, Default)]
pub struct DrivePlan {
    /// `-add-fd` for every file, then `-blockdev`/`-device` per drive.
    pub args: Vec<String>,
    /// The fds qemu must inherit.
    pub fds: Vec<RawFd>,
}

/// The arguments for `images` in slots 0, 1, ...
pub fn plan_drives(images: &[OpenedImage]) -> Result<DrivePlan> {
    let mut plan = DrivePlan::default();
    let mut next = 1u32;
    let mut blockdevs = Vec::new();
    for (i, img) in images.iter().enumerate() {
        // Keys: `-object secret,file=/proc/self/fd/N` on the memfd holding each (qemu
        // reads it at startup, before any chroot).
        for (k, l) in img.layers.iter().enumerate() {
            if let Some(sec) = &l.secret {
                plan.fds.push(sec.raw_fd());
                plan.args.push("-object".into());
                plan.args.push(format!(
                    "secret,id={},format=raw,file=/proc/self/fd/{}",
                    secret_id(i, k),
                    sec.raw_fd()
                ));
            }
        }
        let drive = DriveArg::for_image(i, img, |l| {
            let set = next;
            next += 1;
            let fd = raw_fd(l);
            plan.fds.push(fd);
            plan.args.extend(add_fd_args(fd, set));
            set
        });
        blockdevs.extend(drive_args(i, &drive)?);
    }
    plan.args.extend(blockdevs);
    Ok(plan)
}

/// The firmware to pass with `-bios`: qboot where installed, else none (SeaBIOS).
pub fn default_bios() -> Option<String> {
    Path::new(QBOOT).exists().then(|| QBOOT.to_string())
}

/// A command line as a shell would need it typed, for `--verbose`.
pub fn shell_words(program: &str, args: &[String]) -> String {
    let quote = |s: &str| -> String {
        if !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_=.,/:@+%".contains(&b))
        {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            accel: "tcg".into(),
            cpu: "qemu64".into(),
            memory_mib: 128,
            kernel: "/proc/self/fd/5".into(),
            rpc_fd: 7,
            bios: Some(QBOOT.into()),
            cmdline: None,
            qmp_fd: None,
        }
    }

    fn pair(args: &[String], opt: &str) -> Option<String> {
        let i = args.iter().position(|a| a == opt)?;
        args.get(i + 1).cloned()
    }

    #[test]
    fn default_profile_expands() {
        let args = Profile::default().expand(&vars()).unwrap();
        assert_eq!(&args[..2], ["-nodefaults", "-no-user-config"]);
        assert_eq!(
            pair(&args, "-machine").unwrap(),
            "microvm,accel=tcg,pcie=on,acpi=on,rtc=off,pit=off,pic=off,isa-serial=off,ioapic2=off"
        );
        assert_eq!(pair(&args, "-cpu").unwrap(), "qemu64");
        assert_eq!(pair(&args, "-m").unwrap(), "128");
        assert_eq!(pair(&args, "-bios").unwrap(), QBOOT);
        assert_eq!(pair(&args, "-kernel").unwrap(), "/proc/self/fd/5");
        assert!(!args.iter().any(|a| a == "-append"), "{args:?}");
        assert!(args.contains(&"socket,id=rpc,fd=7".to_string()));
        assert!(args.contains(&"isa-debug-exit,iobase=0xf4,iosize=0x04".to_string()));
        assert!(args.contains(&"isa-debugcon,iobase=0xe9,chardev=log".to_string()));
        assert!(args.contains(&"virtserialport,chardev=rpc,nr=1".to_string()));
        assert!(!args.iter().any(|a| a.contains('{') || a.starts_with('#')));
    }

    #[test]
    fn optional_placeholders() {
        let mut v = vars();
        v.bios = None;
        v.cmdline = Some("skiff.test=panic quiet".into());
        let args = Profile::default().expand(&v).unwrap();
        assert!(!args.iter().any(|a| a == "-bios"));
        assert_eq!(pair(&args, "-append").unwrap(), "skiff.test=panic quiet");
        // Every option that takes a value still has it: the one after -kernel is the path.
        assert_eq!(pair(&args, "-kernel").unwrap(), "/proc/self/fd/5");
    }

    #[test]
    fn bad_placeholders_are_errors() {
        let v = vars();
        assert!(matches!(
            Profile::parse("-x\n{nope}\n").expand(&v),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Profile::parse("a{accel").expand(&v),
            Err(Error::Config(_))
        ));
        let args = Profile::parse("  # c\n\n x{accel}-{cpu} \n")
            .expand(&v)
            .unwrap();
        assert_eq!(args, ["xtcg-qemu64"]);
    }

    fn file(fdset: u32, readonly: bool) -> FileArg {
        FileArg {
            fdset,
            readonly,
            block: false,
        }
    }

    #[test]
    fn drive_json_names_fds_and_the_whole_chain() {
        let d = DriveArg {
            layers: vec![LayerArg {
                format: Format::Qcow2,
                file: file(3, true),
                data_file: None,
                key_secret: Some("key2l0".into()),
            }],
            readonly: true,
        };
        let a = drive_args(2, &d).unwrap();
        assert_eq!(a[0], "-blockdev");
        let v: serde_json::Value = serde_json::from_str(&a[1]).unwrap();
        assert_eq!(v["driver"], "qcow2");
        assert_eq!(v["node-name"], "d2");
        assert_eq!(v["read-only"], true);
        assert_eq!(v["file"]["driver"], "file");
        assert_eq!(v["file"]["filename"], "/dev/fdset/3");
        assert_eq!(v["file"]["read-only"], true);
        assert_eq!(v["encrypt"]["format"], "luks");
        assert_eq!(v["encrypt"]["key-secret"], "key2l0");
        // No backing layer: the header's name (if any) is never followed.
        assert!(v["backing"].is_null() && v.get("backing").is_some());
        assert_eq!(a[2], "-device");
        assert_eq!(a[3], "virtio-blk-pci,drive=d2,serial=skiff2");

        // A writable qcow2 over a read-only qcow2 over raw, with a data file.
        let d = DriveArg {
            layers: vec![
                LayerArg {
                    format: Format::Qcow2,
                    file: file(1, false),
                    data_file: Some(file(2, false)),
                    key_secret: None,
                },
                LayerArg {
                    format: Format::Qcow2,
                    file: file(3, true),
                    data_file: None,
                    key_secret: None,
                },
                LayerArg {
                    format: Format::Raw,
                    file: file(4, true),
                    data_file: None,
                    key_secret: None,
                },
            ],
            readonly: false,
        };
        let v = blockdev_json(0, &d).unwrap();
        assert_eq!(v["read-only"], false);
        assert_eq!(v["file"]["filename"], "/dev/fdset/1");
        assert_eq!(v["data-file"]["filename"], "/dev/fdset/2");
        assert_eq!(v["backing"]["driver"], "qcow2");
        assert_eq!(v["backing"]["read-only"], true);
        assert_eq!(v["backing"]["file"]["filename"], "/dev/fdset/3");
        assert_eq!(v["backing"]["backing"]["driver"], "raw");
        assert_eq!(v["backing"]["backing"]["file"]["filename"], "/dev/fdset/4");
        assert!(v["backing"]["backing"].get("backing").is_none());
        assert!(v.get("encrypt").is_none());
        assert_eq!(add_fd_args(7, 3), ["-add-fd", "fd=7,set=3"]);
        // A raw layer cannot carry a backing layer.
        let mut bad = d.clone();
        bad.layers.remove(0);
        bad.layers.swap(0, 1);
        assert!(blockdev_json(0, &bad).is_err());
    }

    #[test]
    fn shell_quoting() {
        let s = shell_words("qemu", &["-m".into(), "128".into(), "{\"a\": 1}".into()]);
        assert_eq!(s, "qemu -m 128 '{\"a\": 1}'");
    }
}
