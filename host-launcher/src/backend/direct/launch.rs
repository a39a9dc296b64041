//! Launching qemu as a child: checks and opens the disks, picks the accelerator and
//! firmware, builds the command line from the machine profile (confinement, `-add-fd`
//! image fds, hotplug root ports), and spawns qemu with the RPC socketpair, the kernel
//! memfd and (for hotplug) the QMP socketpair.

use super::DirectHandle;
use super::hotplug::root_ports;
use super::qemu::{self, Profile, Vars};
use crate::appliance::{Builder, MAX_HOTPLUG_PORTS};
use crate::backend::Launched;
use crate::backend::accel::Accel;
use crate::backend::kernel::Kernel;
use crate::confine::process::Qemu;
use crate::error::{Error, Result};
use crate::images::OpenedImage;
use crate::session::channel;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// Extra boot time when qemu opens encrypted qcow2 images (see [`launch`]).
const KEY_DERIVATION_GRACE: Duration = Duration::from_secs(60);

/// Spawns qemu for `b`; the session waits for the Hello on the returned channel.
pub(crate) fn launch(b: &Builder) -> Result<Launched> {
    let spawned = spawn(b)?;
    let readonly = b.drives.iter().map(|(_, o)| o.readonly).collect();
    // qemu derives the keys of encrypted images (PBKDF2, sized by `qemu-img` for its
    // host) before the guest starts: that time does not count against the boot timeout.
    let grace = if spawned.images.iter().any(OpenedImage::is_encrypted) {
        KEY_DERIVATION_GRACE
    } else {
        Duration::ZERO
    };
    Ok(Launched {
        stream: spawned.channel,
        handle: Box::new(DirectHandle::new(
            spawned.qemu,
            spawned.qmp.map(|q| (q, spawned.ports)),
            b.drives.len(),
            b.verbose,
        )),
        readonly,
        images: spawned.images,
        deadline: spawned.started + b.timeout + grace,
    })
}

/// See [`Builder::run_to_exit`].
pub(crate) fn run_to_exit(b: &Builder) -> Result<ExitStatus> {
    let mut spawned = spawn(b)?;
    match spawned.qemu.wait_timeout(b.timeout) {
        Some(s) => Ok(s),
        None => {
            spawned.qemu.kill();
            Err(Error::LaunchTimeout(b.timeout))
        }
    }
}

/// See [`Builder::command_line`].
pub(crate) fn command_line(b: &Builder) -> Result<(PathBuf, Vec<String>)> {
    let drives = open_drives(b)?;
    let kernel = Kernel {
        path: "/proc/self/fd/K".into(),
        inherit_fd: None,
    };
    let args = args(b, &drives, &kernel, 3, b.hotplug.then_some(4))?;
    Ok((qemu_path(b), args))
}

/// The qemu binary: the builder's, else `$SKIFF_QEMU`, else `qemu-system-x86_64`.
fn qemu_path(b: &Builder) -> PathBuf {
    b.qemu
        .clone()
        .or_else(|| std::env::var_os("SKIFF_QEMU").map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64"))
}

/// Opens every disk and its checked chain (before anything is spawned), with the
/// builder's keys for encrypted qcow2 images.
fn open_drives(b: &Builder) -> Result<Vec<OpenedImage>> {
    b.drives
        .iter()
        .enumerate()
        .map(|(i, (path, o))| o.open_keyed(path, &b.keys, Some(&wire::disk_name(i))))
        .collect()
}

fn args(
    b: &Builder,
    drives: &[OpenedImage],
    kernel: &Kernel,
    rpc_fd: i32,
    qmp_fd: Option<i32>,
) -> Result<Vec<String>> {
    if b.memory_mib < 16 {
        return Err(Error::Config(format!(
            "{} MiB of guest memory is too little",
            b.memory_mib
        )));
    }
    let accel = match b.accel {
        Some(a) => a,
        None => Accel::from_env_or_detect()?,
    };
    let env_profile = std::env::var_os("SKIFF_PROFILE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let profile = match b.profile.as_ref().or(env_profile.as_ref()) {
        Some(p) => Profile::load(p)?,
        None if b.hotplug => Profile::hotplug(),
        None => Profile::default(),
    };
    if b.hotplug && !profile.uses_qmp() {
        return Err(Error::Config(
            "hotplug needs a profile with a QMP monitor on {qmp_fd}".into(),
        ));
    }
    let vars = Vars {
        accel: accel.as_str().into(),
        cpu: accel.cpu().into(),
        memory_mib: b.memory_mib,
        kernel: kernel.path.clone(),
        rpc_fd,
        bios: qemu::default_bios(),
        cmdline: b.cmdline.clone(),
        qmp_fd,
    };
    let mut args = profile.expand(&vars)?;
    if b.hotplug && root_ports(&args).is_empty() {
        args.extend(root_port_args(b.hotplug_ports)?);
    }
    args.extend(crate::confine::args(&qemu_path(b))?);
    args.extend(qemu::plan_drives(drives)?.args);
    Ok(args)
}

fn spawn(b: &Builder) -> Result<Spawned> {
    let drives = open_drives(b)?;
    let kernel = Kernel::locate()?;
    let (ours, theirs) = UnixStream::pair()?;
    channel::enlarge_send_buffer(&theirs);
    let qmp_pair = if b.hotplug {
        Some(UnixStream::pair()?)
    } else {
        None
    };
    let qmp_fd = qmp_pair.as_ref().map(|(_, t)| t.as_raw_fd());
    let args = args(b, &drives, &kernel, theirs.as_raw_fd(), qmp_fd)?;
    let ports = root_ports(&args);
    let binary = qemu_path(b);
    if b.verbose {
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
    let qemu = Qemu::spawn(&binary, &args, &fds, b.verbose)?;
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
