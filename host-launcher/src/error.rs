//! The library's one error type: every way a launch or a call can fail, typed.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong between the caller and the appliance.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The qemu binary (`qemu-system-x86_64`, or `$SKIFF_QEMU`) could not be run.
    #[error("qemu not found: cannot run {binary:?} (install qemu-system-x86, or set SKIFF_QEMU)")]
    QemuNotFound { binary: PathBuf },

    /// A disk's header could not be read to find its format.
    #[error("cannot find the format of {path:?}: {message}")]
    FormatProbe { path: PathBuf, message: String },

    /// A disk image given to the builder does not exist (checked before qemu is spawned).
    #[error("disk image not found: {path:?}")]
    DiskNotFound { path: PathBuf },

    /// A disk image (or a file of its backing chain) is refused before qemu starts: not a
    /// regular file or block device, or its header names files skiff does not follow.
    #[error("refusing {}: {reason}", path.display())]
    ImageRefused { path: PathBuf, reason: String },

    /// After a write session, an image's header names other files than when it was
    /// opened: something in the appliance or qemu re-pointed it.
    #[error("{}: the image header changed during the session: {detail}", path.display())]
    ImageTampered { path: PathBuf, detail: String },

    /// A disk image is in a format skiff does not attach (only raw and qcow2 are).
    #[error("{path:?}: unsupported disk format {format:?} (skiff attaches raw and qcow2 only)")]
    UnknownFormat { path: PathBuf, format: String },

    /// The machine profile or the builder's settings cannot make a qemu command line.
    #[error("bad configuration: {0}")]
    Config(String),

    /// This binary was built with `SKIFF_NO_APPLIANCE=1` and `$SKIFF_APPLIANCE` is unset.
    #[error(
        "no appliance kernel: this skiff was built with SKIFF_NO_APPLIANCE=1; \
         set SKIFF_APPLIANCE=/path/to/appliance-kernel or rebuild"
    )]
    NoAppliance,

    /// A caller's argument is out of range (e.g. offset + length overflows).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The appliance did not say `Hello` in time (qemu is still running; it was killed).
    #[error("the appliance did not come up within {0:?}")]
    LaunchTimeout(Duration),

    /// A call got no reply in time (qemu was killed; the session is closed).
    #[error("the appliance did not answer within {0:?}")]
    CallTimeout(Duration),

    /// The appliance panicked.
    #[error("the appliance crashed: {}", one_line(message))]
    ApplianceCrashed { message: String },

    /// qemu exited (or closed the channel) when it should not have.
    #[error("qemu exited unexpectedly ({status}){}", log_tail(log))]
    ApplianceExited { status: String, log: String },

    /// A frame from the appliance is oversized, malformed or unexpected.
    #[error("bad frame from the appliance: {0}")]
    BadFrame(String),

    /// The appliance speaks another protocol version.
    #[error(
        "appliance speaks protocol version {got}, this skiff speaks {expected} (rebuild skiff)"
    )]
    VersionMismatch { expected: u32, got: u32 },

    /// The appliance answered the call with an error.
    #[error("{0}")]
    Remote(wire::Error),

    /// A write to a device of a read-only session or drive.
    #[error("{device}: read-only (launch with the drive writable to change it)")]
    ReadOnly { device: String },

    /// The session was shut down, or an earlier fatal error closed it.
    #[error("the session is closed")]
    Closed,

    /// Every hotplug root port of the session holds a disk already.
    #[error("no free hotplug port: all {ports} root ports hold a disk (remove one first)")]
    NoFreePort { ports: usize },

    /// The session was launched without hotplug (`Builder::hotplug(true)`), or the
    /// device named was not hot-added.
    #[error("hotplug: {0}")]
    NotHotpluggable(String),

    /// A writable drive offered to a session that only takes read-only drives.
    #[error("{path:?}: this session takes read-only drives only")]
    ReadOnlySession { path: PathBuf },

    /// qemu refused a QMP command (its own message).
    #[error("qemu refused {command}: {message}")]
    Qmp { command: String, message: String },

    /// qemu did not finish unplugging a disk in time (no DEVICE_DELETED event).
    #[error("{device}: qemu did not unplug it within {timeout:?}")]
    UnplugTimeout { device: String, timeout: Duration },

    /// No pooled appliance became ready in time.
    #[error("no pooled appliance was ready within {timeout:?}{}", last_error.as_ref().map(|e| format!(" (last launch failure: {e})")).unwrap_or_default())]
    PoolEmpty {
        timeout: Duration,
        last_error: Option<String>,
    },

    /// The appliance did not find a hot-added disk after rescanning.
    #[error("{device}: the appliance did not find the hot-added disk")]
    HotplugNotSeen { device: String },

    /// The libvirt backend: a libvirt call failed, or a guest/volume cannot be used.
    #[error("libvirt: {0}")]
    Libvirt(String),

    /// None of the keys given (or typed) for an encrypted device or image opens it.
    #[error("{device}: wrong key or passphrase: {detail}")]
    WrongKey { device: String, detail: String },

    /// Unlocking a LUKS device needs more appliance memory than this appliance has (its
    /// key derivation is Argon2 with a large memory cost): relaunch with
    /// `Builder::memory_mib(needed_mib)` ([`crate::Builder::launch_unlocked`] does).
    #[error(
        "{device}: unlocking needs about {needed_mib} MiB of appliance memory (Argon2 \
         key derivation), this appliance has {have_mib} MiB (--memory {needed_mib})"
    )]
    NeedsMemory {
        device: String,
        needed_mib: u32,
        have_mib: u32,
    },

    /// Unlocking a LUKS device needs more memory than any appliance can have.
    #[error(
        "{device}: unlocking needs about {needed_mib} MiB of appliance memory (Argon2 \
         key derivation), more than the {max_mib} MiB an appliance can map"
    )]
    MemoryLimit {
        device: String,
        needed_mib: u32,
        max_mib: u32,
    },

    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// A customize or sysprep operation failed; `op` is the operation as given
    /// (`--ssh-inject alice`, `sysprep machine-id`), secrets redacted.
    #[error("{op}: {error}")]
    Operation { op: String, error: Box<Error> },
    /// No mounts were named and the disks do not say what to mount: no filesystem, or
    /// several and no operating system among them ([`crate::inspect::plan_mounts`]).
    #[error("{0}")]
    NoMountPlan(String),

    /// A mount that had to succeed failed ([`crate::inspect::mount_guest`]); `error`
    /// says why.
    #[error("mounting {device} at {mountpoint}: {error}")]
    Mount {
        device: String,
        mountpoint: String,
        error: Box<Error>,
    },
}

/// Result alias for the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A multi-line message (a panic's location, then its text) joined for one-line output.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last few lines of the appliance log, for one-line error messages.
fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(3);
    format!("; last log lines: {}", lines[start..].join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exited_message_is_one_line_with_log_tail() {
        let e = Error::ApplianceExited {
            status: "exit status 1".into(),
            log: "a\n\nb\nc\nqemu: bad thing\n".into(),
        };
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        assert!(s.ends_with("b | c | qemu: bad thing"), "{s}");
    }

    #[test]
    fn crash_message_is_one_line() {
        let e = Error::ApplianceCrashed {
            message: "panicked at a.rs:1:2:\nboom\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "the appliance crashed: panicked at a.rs:1:2: boom"
        );
    }
}
