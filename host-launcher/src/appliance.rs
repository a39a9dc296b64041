//! The launch builder: which disks, how much memory, which timeouts, which backend.
//! [`Builder::launch`] has the backend boot the appliance ([`crate::backend`]) and the
//! session wait for its Hello ([`crate::session`]).

use crate::backend::Backend;
use crate::backend::accel::Accel;
use crate::error::{Error, Result};
use crate::images::format::Format;
use crate::images::{BackingPolicy, OpenedImage};
use crate::session::Session;
use crate::volumes::KeySet;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

pub use crate::backend::direct::describe_chain;

/// Entry point: `Appliance::builder()`.
pub struct Appliance;

impl Appliance {
    pub fn builder() -> Builder {
        Builder::default()
    }
}

/// How one disk is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriveOptions {
    /// `None`: found on the host from the image header ([`Format::detect`]; qemu never probes).
    pub format: Option<Format>,
    /// Read-only unless the caller asks for write.
    pub readonly: bool,
    /// Whether the image may name a backing file or an external data file (refused by
    /// default; see [`crate::images`]).
    pub backing: BackingPolicy,
}

impl Default for DriveOptions {
    fn default() -> Self {
        DriveOptions {
            format: None,
            readonly: true,
            backing: BackingPolicy::Refuse,
        }
    }
}

impl DriveOptions {
    /// Read-only, format detected on the host.
    pub fn readonly() -> Self {
        Self::default()
    }

    /// Writable, format detected on the host.
    pub fn writable() -> Self {
        DriveOptions {
            readonly: false,
            ..Self::default()
        }
    }

    pub fn format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }

    /// Follow the image's backing chain (and external data file), checked and opened by
    /// skiff ([`BackingPolicy::Allow`]).
    pub fn allow_backing(mut self) -> Self {
        self.backing = BackingPolicy::Allow;
        self
    }

    /// Opens the image at `path` as these options say (see [`OpenedImage::open`]).
    pub fn open(&self, path: &Path) -> Result<OpenedImage> {
        OpenedImage::open(path, self.format, !self.readonly, self.backing)
    }

    /// [`DriveOptions::open`] with keys for an encrypted qcow2, for the disk that will be
    /// `device` (see [`OpenedImage::open_keyed`]).
    pub fn open_keyed(
        &self,
        path: &Path,
        keys: &KeySet,
        device: Option<&str>,
    ) -> Result<OpenedImage> {
        OpenedImage::open_keyed(
            path,
            self.format,
            !self.readonly,
            self.backing,
            keys,
            device,
        )
    }
}

/// Everything a launch needs; reusable for many launches.
#[derive(Debug, Clone)]
pub struct Builder {
    pub(crate) drives: Vec<(PathBuf, DriveOptions)>,
    pub(crate) memory_mib: u32,
    pub(crate) timeout: Duration,
    pub(crate) call_timeout: Duration,
    pub(crate) verbose: bool,
    pub(crate) cmdline: Option<String>,
    pub(crate) profile: Option<PathBuf>,
    pub(crate) accel: Option<Accel>,
    pub(crate) qemu: Option<PathBuf>,
    /// Where the appliance runs: a qemu child (default) or a libvirt domain.
    pub(crate) backend: Backend,
    /// Launch with the hotplug profile and a QMP monitor ([`Builder::hotplug`]).
    pub(crate) hotplug: bool,
    /// Root ports added to a hotplug launch ([`Builder::hotplug_ports`]).
    pub(crate) hotplug_ports: usize,
    /// Keys for encrypted qcow2 images ([`Builder::keys`]).
    pub(crate) keys: KeySet,
}

/// How long one call may take unless [`Builder::call_timeout`] says otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Root ports of a hotplug launch unless [`Builder::hotplug_ports`] says otherwise.
pub const DEFAULT_HOTPLUG_PORTS: usize = 8;
/// The most root ports one launch may have (pcie.0 slots 3..=30).
pub const MAX_HOTPLUG_PORTS: usize = 28;

impl Default for Builder {
    fn default() -> Self {
        Builder {
            drives: Vec::new(),
            memory_mib: 128,
            // TCG is slow on a first boot (cold page cache, busy machine).
            timeout: Duration::from_secs(20),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            verbose: false,
            cmdline: None,
            profile: None,
            accel: None,
            qemu: None,
            backend: Backend::Direct,
            hotplug: false,
            hotplug_ports: DEFAULT_HOTPLUG_PORTS,
            keys: KeySet::new(),
        }
    }
}

impl Builder {
    /// Adds a disk; they become `/dev/sda`, `/dev/sdb`, ... in the order added.
    pub fn add_drive(mut self, path: impl Into<PathBuf>, options: DriveOptions) -> Self {
        self.drives.push((path.into(), options));
        self
    }

    /// Guest RAM (default 128 MiB).
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// How long the appliance may take to say Hello (default 20 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// How long one call may take (default [`DEFAULT_CALL_TIMEOUT`], 60 s).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = d;
        self
    }

    /// Print qemu's command line and echo the appliance log to stderr.
    pub fn verbose(mut self, on: bool) -> Self {
        self.verbose = on;
        self
    }

    /// The appliance's kernel command line (`-append`), e.g. test knobs `skiff.test=...`.
    pub fn kernel_cmdline(mut self, s: impl Into<String>) -> Self {
        self.cmdline = Some(s.into()).filter(|s| !s.is_empty());
        self
    }

    /// Use this machine profile instead of the built-in `qemu-configs/microvm.args` (and,
    /// for hotplug launches, `microvm-hotplug.args`); default: `$SKIFF_PROFILE` if set.
    pub fn profile(mut self, path: impl Into<PathBuf>) -> Self {
        self.profile = Some(path.into());
        self
    }

    /// Force an accelerator (default: `$SKIFF_ACCEL`, else detected).
    pub fn accel(mut self, accel: Accel) -> Self {
        self.accel = Some(accel);
        self
    }

    /// The qemu binary (default: `$SKIFF_QEMU`, else `qemu-system-x86_64` from `PATH`).
    pub fn qemu_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.qemu = Some(path.into());
        self
    }

    /// Launch with PCIe root ports and a QMP monitor so that disks can be added and removed
    /// after launch ([`Session::add_drive`], [`Session::remove_drive`]). Uses the built-in
    /// `qemu-configs/microvm-hotplug.args` unless a profile is set (which must then have
    /// `{qmp_fd}` and `pcie-root-port,id=rp<K>` devices).
    pub fn hotplug(mut self, on: bool) -> Self {
        self.hotplug = on;
        self
    }

    /// How many PCIe root ports a hotplug launch gets, i.e. how many disks can be
    /// hot-added at once (default [`DEFAULT_HOTPLUG_PORTS`], at most
    /// [`MAX_HOTPLUG_PORTS`]). Each port costs every launch some boot time and memory
    /// in qemu, so an appliance that will take one disk should ask for one.
    /// A custom profile that lists its own `pcie-root-port,id=rp<K>` devices keeps them.
    pub fn hotplug_ports(mut self, n: usize) -> Self {
        self.hotplug_ports = n;
        self
    }

    /// Keys for the disks: an encrypted qcow2 image (qemu's LUKS encryption) is opened
    /// with the key naming its path or its device (`/dev/sda`), else an `all` key; qemu
    /// reads it from a memfd (never its command line). The same keys unlock LUKS
    /// devices in [`Builder::launch_unlocked`].
    pub fn keys(mut self, keys: KeySet) -> Self {
        self.keys = keys;
        self
    }

    /// Run the appliance as a qemu child (default) or as a transient libvirt domain.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Boots the appliance and waits for its Hello.
    pub fn launch(&self) -> Result<Session> {
        let launched = self.backend.launch(self)?;
        let mut s = Session::launched(launched, self.timeout, self.call_timeout)
            .map_err(|e| self.key_error(e))?;
        s.set_memory_mib(self.memory_mib);
        s.keys = self.keys.clone();
        Ok(s)
    }

    /// qemu refusing an encrypted image's key at startup (it exits before the Hello) as
    /// [`Error::WrongKey`] naming the image; other errors as they are.
    fn key_error(&self, e: Error) -> Error {
        let Error::ApplianceExited { log, .. } = &e else {
            return e;
        };
        let Some(line) = log.lines().find(|l| {
            l.contains("Invalid password, cannot unlock any keyslot")
                || l.contains("cannot unlock any keyslot")
        }) else {
            return e;
        };
        // qemu's message quotes the -blockdev (or names the node): "node-name":"dN".
        let slot = line
            .split("\"node-name\":\"d")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|n| n.parse::<usize>().ok());
        let device = match slot.and_then(|i| self.drives.get(i)) {
            Some((path, _)) => path.display().to_string(),
            None => "an encrypted qcow2 image".into(),
        };
        Error::WrongKey {
            device,
            detail: "qemu cannot unlock the image with the key given".into(),
        }
    }

    /// Boots qemu exactly as [`Builder::launch`] would with the direct backend, but does
    /// not speak the protocol: waits (up to the launch timeout) for qemu to exit and
    /// returns its status. For measuring the qemu floor with a kernel that exits at
    /// once, and for tests.
    pub fn run_to_exit(&self) -> Result<ExitStatus> {
        crate::backend::direct::run_to_exit(self)
    }

    /// The qemu binary and arguments this builder would run with the direct backend.
    /// The kernel and RPC fd numbers in it are placeholders (`/proc/self/fd/K`, fd 3);
    /// the image fds are this call's own (closed when it returns).
    pub fn command_line(&self) -> Result<(PathBuf, Vec<String>)> {
        crate::backend::direct::command_line(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_disk_is_reported_before_spawning() {
        let b = Appliance::builder()
            .qemu_binary("/nonexistent/qemu")
            .add_drive("/nonexistent/disk.img", DriveOptions::default());
        match b.launch() {
            Err(Error::DiskNotFound { path }) => {
                assert_eq!(path, Path::new("/nonexistent/disk.img"))
            }
            other => panic!("{:?}", other.err()),
        }
    }

    #[test]
    fn command_line_has_explicit_formats_and_readonly() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.img");
        std::fs::write(&a, vec![0u8; 4096]).unwrap();
        let q = dir.path().join("b.qcow2");
        let made = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&q)
            .arg("1M")
            .status()
            .unwrap();
        assert!(made.success());
        let (_, args) = Appliance::builder()
            .accel(Accel::Tcg)
            .add_drive(&a, DriveOptions::default())
            .add_drive(&q, DriveOptions::writable().format(Format::Qcow2))
            .kernel_cmdline("skiff.test=panic")
            .memory_mib(96)
            .command_line()
            .unwrap();
        let blockdevs: Vec<serde_json::Value> = args
            .windows(2)
            .filter(|w| w[0] == "-blockdev")
            .map(|w| serde_json::from_str(&w[1]).unwrap())
            .collect();
        assert_eq!(blockdevs.len(), 2);
        assert_eq!(blockdevs[0]["driver"], "raw");
        assert_eq!(blockdevs[0]["read-only"], true);
        assert_eq!(blockdevs[1]["driver"], "qcow2");
        assert_eq!(blockdevs[1]["read-only"], false);
        // qemu opens no path: both files are fds in fd sets 1 and 2.
        assert_eq!(blockdevs[0]["file"]["filename"], "/dev/fdset/1");
        assert_eq!(blockdevs[1]["file"]["filename"], "/dev/fdset/2");
        assert!(blockdevs[1]["backing"].is_null());
        let add_fds: Vec<&String> = args
            .windows(2)
            .filter(|w| w[0] == "-add-fd")
            .map(|w| &w[1])
            .collect();
        assert_eq!(add_fds.len(), 2);
        assert!(add_fds[0].ends_with(",set=1") && add_fds[1].ends_with(",set=2"));
        assert!(!args.iter().any(|x| x.contains(a.to_str().unwrap())));
        assert!(args.contains(&"virtio-blk-pci,drive=d1,serial=skiff1".to_string()));
        assert!(args.contains(&"skiff.test=panic".to_string()));
        assert!(args.contains(&"96".to_string()));
        assert!(
            args.iter()
                .any(|a| a.starts_with("microvm,accel=tcg,pcie=on,"))
        );
    }

    #[test]
    fn missing_qemu_is_a_clear_error() {
        // The error is QemuNotFound unless this build has no appliance at all.
        let b = Appliance::builder().qemu_binary("/nonexistent/qemu-system-x86_64");
        match b.launch() {
            Err(Error::QemuNotFound { binary }) => {
                assert_eq!(binary, Path::new("/nonexistent/qemu-system-x86_64"))
            }
            Err(Error::NoAppliance) => assert!(crate::backend::kernel::EMBEDDED.is_empty()),
            other => panic!("{:?}", other.err()),
        }
    }
}
