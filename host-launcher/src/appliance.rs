//! The launch builder: checks the disks, picks the accelerator and firmware, builds the
//! qemu command line from the machine profile, spawns qemu with the RPC socketpair and
//! the kernel memfd, and waits for the appliance's Hello.

use crate::backend::accel::Accel;
use crate::backend::direct::qemu::{self, Profile, Vars};
use crate::backend::kernel::Kernel;
use crate::confine::process::Qemu;
use crate::error::{Error, Result};
use crate::images::format::Format;
use crate::images::{BackingPolicy, OpenedImage};
use crate::session::Session;
use crate::session::channel::{self, Channel};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

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
}

/// Everything a launch needs; reusable for many launches.
#[derive(Debug, Clone)]
pub struct Builder {
    drives: Vec<(PathBuf, DriveOptions)>,
    memory_mib: u32,
    timeout: Duration,
    call_timeout: Duration,
    verbose: bool,
    cmdline: Option<String>,
    profile: Option<PathBuf>,
    accel: Option<Accel>,
    qemu: Option<PathBuf>,
    /// Where the appliance runs: a qemu child (default) or a libvirt domain.
    backend: crate::backend::libvirt::Backend,
    /// Launch with the hotplug profile and a QMP monitor ([`Builder::hotplug`]).
    hotplug: bool,
    /// Root ports added to a hotplug launch ([`Builder::hotplug_ports`]).
    hotplug_ports: usize,
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
            backend: crate::backend::libvirt::Backend::Direct,
            hotplug: false,
            hotplug_ports: DEFAULT_HOTPLUG_PORTS,
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

    /// The disks added so far.
    pub(crate) fn drives(&self) -> &[(PathBuf, DriveOptions)] {
        &self.drives
    }

    /// Boots the appliance and waits for its Hello.
    pub fn launch(&self) -> Result<Session> {
        if let crate::backend::libvirt::Backend::Libvirt { uri } = &self.backend {
            return crate::backend::libvirt::launch(self, uri.as_deref());
        }
        let mut spawned = self.spawn()?;
        let readonly = self.drives.iter().map(|(_, o)| o.readonly).collect();
        let images = std::mem::take(&mut spawned.images);
        let qmp = spawned.qmp.take();
        let ports = std::mem::take(&mut spawned.ports);
        let mut session = Session::start(
            Channel::new(spawned.channel),
            Some(spawned.qemu),
            readonly,
            spawned.started + self.timeout,
            self.timeout,
            self.call_timeout,
            wire::MAX_CHUNK,
        )?;
        session.images = images.into_iter().map(Some).collect();
        if let Some(qmp) = qmp {
            let deadline = spawned.started + self.timeout;
            crate::backend::direct::hotplug::attach(&mut session, qmp, ports, deadline)?;
        }
        Ok(session)
    }

    /// Boots qemu exactly as [`Builder::launch`] would, but does not speak the protocol:
    /// waits (up to the launch timeout) for qemu to exit and returns its status. For
    /// measuring the qemu floor with a kernel that exits at once, and for tests.
    pub fn run_to_exit(&self) -> Result<ExitStatus> {
        let mut spawned = self.spawn()?;
        match spawned.qemu.wait_timeout(self.timeout) {
            Some(s) => Ok(s),
            None => {
                spawned.qemu.kill();
                Err(Error::LaunchTimeout(self.timeout))
            }
        }
    }

    /// The qemu binary and arguments this builder would run. The kernel and RPC fd
    /// numbers in it are placeholders (`/proc/self/fd/K`, fd 3); the image fds are this
    /// call's own (closed when it returns).
    pub fn command_line(&self) -> Result<(PathBuf, Vec<String>)> {
        let drives = self.open_drives()?;
        let kernel = Kernel {
            path: "/proc/self/fd/K".into(),
            inherit_fd: None,
        };
        let args = self.args(&drives, &kernel, 3, self.hotplug.then_some(4))?;
        Ok((self.qemu_path(), args))
    }

    fn qemu_path(&self) -> PathBuf {
        self.qemu
            .clone()
            .or_else(|| std::env::var_os("SKIFF_QEMU").map(PathBuf::from))
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64"))
    }

    /// Opens every disk and its checked chain (before anything is spawned).
    fn open_drives(&self) -> Result<Vec<OpenedImage>> {
        self.drives.iter().map(|(path, o)| o.open(path)).collect()
    }

    fn args(
        &self,
        drives: &[OpenedImage],
        kernel: &Kernel,
        rpc_fd: i32,
        qmp_fd: Option<i32>,
    ) -> Result<Vec<String>> {
        if self.memory_mib < 16 {
            return Err(Error::Config(format!(
                "{} MiB of guest memory is too little",
                self.memory_mib
            )));
        }
        let accel = match self.accel {
            Some(a) => a,
            None => Accel::from_env_or_detect()?,
        };
        let env_profile = std::env::var_os("SKIFF_PROFILE")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        let profile = match self.profile.as_ref().or(env_profile.as_ref()) {
            Some(p) => Profile::load(p)?,
            None if self.hotplug => Profile::hotplug(),
            None => Profile::default(),
        };
        if self.hotplug && !profile.uses_qmp() {
            return Err(Error::Config(
                "hotplug needs a profile with a QMP monitor on {qmp_fd}".into(),
            ));
        }
        let vars = Vars {
            accel: accel.as_str().into(),
            cpu: accel.cpu().into(),
            memory_mib: self.memory_mib,
            kernel: kernel.path.clone(),
            rpc_fd,
            bios: qemu::default_bios(),
            cmdline: self.cmdline.clone(),
            qmp_fd,
        };
        let mut args = profile.expand(&vars)?;
        if self.hotplug && crate::backend::direct::hotplug::root_ports(&args).is_empty() {
            args.extend(root_port_args(self.hotplug_ports)?);
        }
        args.extend(crate::confine::args(&self.qemu_path())?);
        args.extend(qemu::plan_drives(drives)?.args);
        Ok(args)
    }

    fn spawn(&self) -> Result<Spawned> {
        let drives = self.open_drives()?;
        let kernel = Kernel::locate()?;
        let (ours, theirs) = UnixStream::pair()?;
        channel::enlarge_send_buffer(&theirs);
        let qmp_pair = if self.hotplug {
            Some(UnixStream::pair()?)
        } else {
            None
        };
        let qmp_fd = qmp_pair.as_ref().map(|(_, t)| t.as_raw_fd());
        let args = self.args(&drives, &kernel, theirs.as_raw_fd(), qmp_fd)?;
        let ports = crate::backend::direct::hotplug::root_ports(&args);
        let binary = self.qemu_path();
        if self.verbose {
            eprintln!(
                "skiff: {}",
                qemu::shell_words(&binary.to_string_lossy(), &args)
            );
            for (i, img) in drives.iter().enumerate() {
                eprintln!("skiff: {}: {}", wire::disk_name(i), describe_chain(img));
            }
        }
        let mut fds = vec![theirs.as_raw_fd()];
        fds.extend(kernel.inherit_fd);
        fds.extend(qmp_fd);
        fds.extend(qemu::plan_drives(&drives)?.fds);
        let started = Instant::now();
        let qemu = Qemu::spawn(&binary, &args, &fds, self.verbose)?;
        // qemu holds its end now; ours must go so that its exit reads as EOF here.
        drop(theirs);
        let qmp = qmp_pair.map(|(ours, theirs)| {
            drop(theirs);
            ours
        });
        Ok(Spawned {
            qemu,
            channel: ours,
            started,
            qmp,
            ports,
            images: drives,
        })
    }
}

/// The backend choice and what the libvirt backend reads of a builder (unused in a build
/// without the `libvirt` feature).
#[cfg_attr(not(feature = "libvirt"), allow(dead_code))]
impl Builder {
    /// Run the appliance as a qemu child (default) or as a transient libvirt domain.
    pub fn backend(mut self, backend: crate::backend::libvirt::Backend) -> Self {
        self.backend = backend;
        self
    }

    pub(crate) fn drive_list(&self) -> &[(PathBuf, DriveOptions)] {
        &self.drives
    }

    pub(crate) fn memory(&self) -> u32 {
        self.memory_mib
    }

    pub(crate) fn timeouts(&self) -> (Duration, Duration) {
        (self.timeout, self.call_timeout)
    }

    pub(crate) fn is_verbose(&self) -> bool {
        self.verbose
    }

    pub(crate) fn cmdline(&self) -> Option<&str> {
        self.cmdline.as_deref()
    }

    pub(crate) fn forced_accel(&self) -> Option<Accel> {
        self.accel
    }

    pub(crate) fn wants_hotplug(&self) -> bool {
        self.hotplug
    }

    pub(crate) fn hotplug_port_count(&self) -> usize {
        self.hotplug_ports
    }
}

struct Spawned {
    qemu: Qemu,
    channel: UnixStream,
    started: Instant,
    /// Our end of the QMP socketpair (hotplug launches).
    qmp: Option<UnixStream>,
    /// The profile's hotplug root port ids (`rp0`, ...).
    ports: Vec<String>,
    /// The opened images, slot by slot (qemu has copies of their fds).
    images: Vec<OpenedImage>,
}

/// `top.qcow2 (qcow2) -> base.raw (raw)`, for `--verbose`.
pub fn describe_chain(img: &OpenedImage) -> String {
    img.chain()
        .iter()
        .map(|c| {
            let data = c
                .data_file
                .as_ref()
                .map(|d| format!(" + data file {}", d.display()))
                .unwrap_or_default();
            format!("{} ({}){data}", c.path.display(), c.format)
        })
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// `-device pcie-root-port,...` for `n` ports `rp0..`, on pcie.0 slots 3 and up.
fn root_port_args(n: usize) -> Result<Vec<String>> {
    if !(1..=MAX_HOTPLUG_PORTS).contains(&n) {
        return Err(Error::Config(format!(
            "a hotplug launch needs 1 to {MAX_HOTPLUG_PORTS} root ports, not {n}"
        )));
    }
    Ok((0..n)
        .flat_map(|k| {
            [
                "-device".to_string(),
                format!(
                    "pcie-root-port,id=rp{k},bus=pcie.0,chassis={},addr={:#x}",
                    k + 1,
                    k + 3
                ),
            ]
        })
        .collect())
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
