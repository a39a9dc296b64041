//! skiff for Python: look inside and change VM disk images through a tiny appliance.
//!
//! ```python
//! import skiff
//! with skiff.launch(drives=["guest.img"]) as g:
//!     print(g.read_file("/etc/hostname").decode())
//! ```
//!
//! Every call releases the GIL while the appliance works. File data is `bytes`, guest
//! paths are `str`, host paths `str` or `os.PathLike`. Failures raise subclasses of
//! `skiff.SkiffError` mirroring the library's `skiff::Error`.

mod convert;
mod errors;

use convert::{
    Device, DirEntry, Filesystem, Mount, Partition, Stat, StatVfs, data_arg, json_to_py,
};
use errors::to_pyerr;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use skiff::inspect::MountSpec;
use skiff::{
    Appliance, Backend, BackingPolicy, Builder, DriveOptions, Format, MountOptions, Pool,
    PoolOptions, PooledSession, Session,
};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::Duration;

/// One disk for `launch()` or `Pool.acquire()`.
///
/// `Drive("guest.qcow2")`, `Drive("disk.img", format="raw", readonly=False)`,
/// `Drive("overlay.qcow2", backing=True)` (follow the image's backing chain, checked and
/// opened by skiff; refused by default). `readonly=None` takes the launch's `readonly`.
#[pyclass(module = "skiff", frozen, get_all)]
#[derive(Clone)]
struct Drive {
    path: PathBuf,
    format: Option<String>,
    readonly: Option<bool>,
    backing: bool,
}

#[pymethods]
impl Drive {
    #[new]
    #[pyo3(signature = (path, format=None, readonly=None, backing=false))]
    fn new(
        path: PathBuf,
        format: Option<String>,
        readonly: Option<bool>,
        backing: bool,
    ) -> PyResult<Self> {
        if let Some(f) = &format {
            f.parse::<Format>()
                .map_err(|e| errors::InvalidArgument::new_err(format!("format={f}: {e}")))?;
        }
        Ok(Drive {
            path,
            format,
            readonly,
            backing,
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "Drive({:?}, format={}, readonly={}, backing={})",
            self.path.display().to_string(),
            convert::py_opt(&self.format),
            self.readonly.map_or("None".into(), convert::py_bool),
            convert::py_bool(self.backing)
        )
    }
}

impl Drive {
    fn options(&self, default_readonly: bool) -> PyResult<DriveOptions> {
        let format = match &self.format {
            Some(f) => Some(
                f.parse::<Format>()
                    .map_err(|e| errors::InvalidArgument::new_err(format!("format={f}: {e}")))?,
            ),
            None => None,
        };
        Ok(DriveOptions {
            format,
            readonly: self.readonly.unwrap_or(default_readonly),
            backing: if self.backing {
                BackingPolicy::Allow
            } else {
                BackingPolicy::Refuse
            },
        })
    }
}

/// `drives`: a path, a `Drive`, or a list of them.
fn drives_arg(drives: &Bound<'_, PyAny>, readonly: bool) -> PyResult<Vec<(PathBuf, DriveOptions)>> {
    let one = |d: &Bound<'_, PyAny>| -> PyResult<(PathBuf, DriveOptions)> {
        if let Ok(drive) = d.cast::<Drive>() {
            let drive = drive.get();
            return Ok((drive.path.clone(), drive.options(readonly)?));
        }
        let path: PathBuf = d.extract().map_err(|_| {
            errors::InvalidArgument::new_err("a drive is a path (str, os.PathLike) or skiff.Drive")
        })?;
        Ok((
            path,
            DriveOptions {
                readonly,
                ..DriveOptions::default()
            },
        ))
    };
    if d_is_single(drives) {
        return Ok(vec![one(drives)?]);
    }
    let mut out = Vec::new();
    for d in drives.try_iter()? {
        out.push(one(&d?)?);
    }
    Ok(out)
}

/// A str, bytes path, os.PathLike or Drive (rather than a list of them).
fn d_is_single(d: &Bound<'_, PyAny>) -> bool {
    d.is_instance_of::<pyo3::types::PyString>()
        || d.is_instance_of::<PyBytes>()
        || d.cast::<Drive>().is_ok()
        || d.hasattr("__fspath__").unwrap_or(false)
}

/// `mounts`: `["/dev/sda2", "/dev/sda1:/boot"]` or `[("/dev/sda1", "/boot")]`.
fn mounts_arg(mounts: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<MountSpec>> {
    let Some(mounts) = mounts else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for m in mounts.try_iter()? {
        let m = m?;
        if let Ok(s) = m.extract::<String>() {
            out.push(MountSpec::parse(&s).map_err(to_pyerr)?);
        } else {
            let (device, mountpoint): (String, String) = m.extract().map_err(|_| {
                errors::InvalidArgument::new_err(
                    "a mount is \"DEV[:MOUNTPOINT]\" or a (device, mountpoint) pair",
                )
            })?;
            out.push(MountSpec::parse(&format!("{device}:{mountpoint}")).map_err(to_pyerr)?);
        }
    }
    Ok(out)
}

/// Launch settings shared by `launch()` and `Pool()`.
#[allow(clippy::too_many_arguments)]
fn builder(
    backend: &str,
    connect: Option<String>,
    memory_mib: u32,
    timeout: f64,
    call_timeout: f64,
    verbose: bool,
    append: Option<String>,
) -> PyResult<Builder> {
    let secs = |name: &str, v: f64| -> PyResult<Duration> {
        if v.is_finite() && v > 0.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(errors::InvalidArgument::new_err(format!(
                "{name} must be a positive number of seconds"
            )))
        }
    };
    let mut b = Appliance::builder()
        .memory_mib(memory_mib)
        .timeout(secs("timeout", timeout)?)
        .call_timeout(secs("call_timeout", call_timeout)?)
        .verbose(verbose)
        .backend(Backend::parse(backend, connect).map_err(to_pyerr)?);
    if let Some(a) = append {
        b = b.kernel_cmdline(a);
    }
    Ok(b)
}

/// Mounts the guest as `mounts` says, or the way it mounts itself; `NoMountPlan`
/// speaks of this API's arguments.
fn mount_guest(
    s: &mut Session,
    mounts: &[MountSpec],
    readonly: bool,
) -> skiff::Result<Vec<String>> {
    match skiff::inspect::mount_guest(s, mounts, readonly) {
        Ok(m) => Ok(m.warnings),
        Err(skiff::Error::NoMountPlan(msg)) => Err(skiff::Error::NoMountPlan(
            msg.replace(
                "use -m DEV[:MOUNTPOINT]",
                "pass mounts=[\"DEV[:MOUNTPOINT]\"], or mount=False",
            )
            .replace(
                "choose with -m DEV[:MOUNTPOINT] (e.g. -m ",
                "choose with mounts=[...] (e.g. mounts=[",
            ),
        )),
        Err(e) => Err(e),
    }
}

/// Reports the warnings of an optional mount that failed, as Python warnings.
fn warn_all(py: Python<'_>, warnings: Vec<String>) -> PyResult<()> {
    for w in warnings {
        let category = py.get_type::<pyo3::exceptions::PyUserWarning>();
        PyErr::warn(
            py,
            &category,
            &std::ffi::CString::new(w).unwrap_or_default(),
            1,
        )?;
    }
    Ok(())
}

/// Boots an appliance with `drives` attached and returns a `Guest`.
///
/// drives: a path, a `skiff.Drive`, or a list of them (`/dev/sda`, `/dev/sdb`, ...).
/// readonly: attach the drives read-only (default) unless a `Drive` says otherwise.
/// mount: mount the guest's filesystems: as `mounts` names them (`"DEV[:MOUNTPOINT]"`
///     strings or `(device, mountpoint)` pairs), or, without `mounts`, the one
///     filesystem at `/`, or the operating system found the way it mounts itself (as
///     the `skiff` command does without `-m`). `mount=False` mounts nothing.
/// backend: `"direct"` (qemu as a child, default) or `"libvirt"` (a transient domain;
///     `connect` is the URI, e.g. `"qemu:///system"`).
/// memory_mib, timeout (boot, seconds), call_timeout (one call, seconds), verbose
///     (echo qemu's and the appliance's log to stderr), append (appliance kernel
///     command line).
///
/// Use it as a context manager: the appliance is shut down (filesystems synced and
/// unmounted, disks flushed) when the block ends, even on an exception.
#[pyfunction]
#[pyo3(signature = (drives, *, readonly=true, mounts=None, mount=true, backend="direct",
                    connect=None, memory_mib=128, timeout=20.0, call_timeout=60.0,
                    verbose=false, append=None))]
#[allow(clippy::too_many_arguments)]
fn launch(
    py: Python<'_>,
    drives: &Bound<'_, PyAny>,
    readonly: bool,
    mounts: Option<&Bound<'_, PyAny>>,
    mount: bool,
    backend: &str,
    connect: Option<String>,
    memory_mib: u32,
    timeout: f64,
    call_timeout: f64,
    verbose: bool,
    append: Option<String>,
) -> PyResult<Guest> {
    let drives = drives_arg(drives, readonly)?;
    let mounts = mounts_arg(mounts)?;
    let mut b = builder(
        backend,
        connect,
        memory_mib,
        timeout,
        call_timeout,
        verbose,
        append,
    )?;
    for (path, options) in drives {
        b = b.add_drive(path, options);
    }
    let (session, warnings) = py
        .detach(|| -> skiff::Result<(Session, Vec<String>)> {
            let mut s = b.launch()?;
            let w = if mount {
                mount_guest(&mut s, &mounts, readonly)?
            } else {
                Vec::new()
            };
            Ok((s, w))
        })
        .map_err(to_pyerr)?;
    warn_all(py, warnings)?;
    Ok(Guest::new(Held::Own(session)))
}

/// The session a `Guest` holds: launched by it, or from a pool.
enum Held {
    Own(Session),
    Pooled(PooledSession),
}

impl Held {
    fn session(&mut self) -> &mut Session {
        match self {
            Held::Own(s) => s,
            Held::Pooled(p) => p,
        }
    }

    fn shutdown(self) -> skiff::Result<()> {
        match self {
            Held::Own(s) => s.shutdown(),
            Held::Pooled(p) => p.shutdown(),
        }
    }
}

/// A running appliance with disks attached: file, device and inspection calls.
///
/// Returned by `skiff.launch()` and `Pool.acquire()`. Guest paths are absolute paths in
/// the appliance's mount tree (`/etc/hostname` once a filesystem is mounted at `/`).
/// `shutdown()` (or leaving the `with` block) syncs, unmounts, flushes the disks and
/// powers the appliance off; a `Guest` that is garbage-collected unclosed kills it.
#[pyclass(module = "skiff")]
struct Guest {
    held: Mutex<Option<Held>>,
}

impl Guest {
    fn new(held: Held) -> Guest {
        Guest {
            held: Mutex::new(Some(held)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the session with the GIL released.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Session) -> skiff::Result<T> + Send,
    ) -> PyResult<T> {
        py.detach(|| match self.lock().as_mut() {
            Some(h) => f(h.session()),
            None => Err(skiff::Error::Closed),
        })
        .map_err(to_pyerr)
    }
}

fn bytes<'py>(py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, data)
}

#[pymethods]
impl Guest {
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Shuts the appliance down; an error of the shutdown is raised only when the
    /// block did not raise already.
    #[pyo3(signature = (exc_type=None, _exc_value=None, _traceback=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc_value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let r = self.shutdown(py);
        if exc_type.is_none_or(|t| t.is_none()) {
            r?;
        }
        Ok(false)
    }

    /// Syncs and unmounts the filesystems, flushes the disks, powers the appliance off
    /// and waits for it to end; then checks that no writable image's header changed.
    /// Calling it again does nothing.
    fn shutdown(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| match self.lock().take() {
            Some(h) => h.shutdown(),
            None => Ok(()),
        })
        .map_err(to_pyerr)
    }

    /// Same as `shutdown()`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.shutdown(py)
    }

    /// True once shut down (or closed by a fatal error).
    #[getter]
    fn closed(&self) -> bool {
        self.lock().is_none()
    }

    fn __repr__(&self) -> String {
        match self.lock().as_mut() {
            Some(h) => {
                let names: Vec<String> = h
                    .session()
                    .devices()
                    .iter()
                    .map(|d| d.name.clone())
                    .collect();
                format!("<skiff.Guest {}>", names.join(" "))
            }
            None => "<skiff.Guest (shut down)>".into(),
        }
    }

    // ---- devices ----

    /// The whole-disk devices (`/dev/sda`, ...) as `Device` objects.
    fn devices(&self, py: Python<'_>) -> PyResult<Vec<Device>> {
        self.with(py, |s| Ok(s.devices().iter().map(Device::from).collect()))
    }

    /// The partitions of every disk (MBR and GPT), libguestfs numbering.
    fn partitions(&self, py: Python<'_>) -> PyResult<Vec<Partition>> {
        self.with(py, |s| {
            Ok(s.partitions()?.iter().map(Partition::from).collect())
        })
    }

    /// Every disk and partition with its filesystem type, label, UUID and size
    /// (`virt-filesystems --all --long`).
    fn filesystems(&self, py: Python<'_>) -> PyResult<Vec<Filesystem>> {
        self.with(py, |s| {
            Ok(s.filesystems()?.iter().map(Filesystem::from).collect())
        })
    }

    /// `length` bytes of `device` (`/dev/sda`, `/dev/sda1`) at `offset`, as bytes.
    fn pread_device<'py>(
        &self,
        py: Python<'py>,
        device: String,
        offset: u64,
        length: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let d = self.with(py, |s| s.pread_device(&device, offset, length))?;
        Ok(bytes(py, &d))
    }

    /// Writes `data` to `device` at `offset` (the drive must be writable).
    fn pwrite_device(
        &self,
        py: Python<'_>,
        device: String,
        offset: u64,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let data = data_arg(data)?;
        self.with(py, |s| s.pwrite_device(&device, offset, &data))
    }

    // ---- mounts ----

    /// Mounts the filesystem on `device` at `mountpoint` (`/` first); read-only when
    /// `readonly` (default: as the drive is attached). `fstype` forces a type.
    #[pyo3(signature = (device, mountpoint="/".to_string(), readonly=None, fstype=None))]
    fn mount(
        &self,
        py: Python<'_>,
        device: String,
        mountpoint: String,
        readonly: Option<bool>,
        fstype: Option<String>,
    ) -> PyResult<()> {
        self.with(py, |s| {
            let readonly = match readonly {
                Some(r) => r,
                None => {
                    let disk = device.trim_end_matches(|c: char| c.is_ascii_digit());
                    s.devices().iter().any(|d| d.name == disk && d.readonly)
                }
            };
            s.mount(&device, &mountpoint, MountOptions { readonly, fstype })
        })
    }

    /// Mounts the guest the way `launch(mount=True)` does: as `mounts` names them, or
    /// the way it mounts itself. Returns the warnings of optional mounts that failed.
    #[pyo3(signature = (mounts=None, readonly=true))]
    fn mount_guest(
        &self,
        py: Python<'_>,
        mounts: Option<&Bound<'_, PyAny>>,
        readonly: bool,
    ) -> PyResult<Vec<String>> {
        let mounts = mounts_arg(mounts)?;
        self.with(py, |s| mount_guest(s, &mounts, readonly))
    }

    /// Syncs and unmounts the filesystem at `mountpoint`.
    fn umount(&self, py: Python<'_>, mountpoint: String) -> PyResult<()> {
        self.with(py, |s| s.umount(&mountpoint))
    }

    /// The current mounts, as `Mount` objects.
    fn mounts(&self, py: Python<'_>) -> PyResult<Vec<Mount>> {
        self.with(py, |s| Ok(s.mounts()?.iter().map(Mount::from).collect()))
    }

    // ---- inspection ----

    /// The operating systems on the disks (libguestfs `inspect_os`), one dict each:
    /// `root`, `type`, `distro`, `version`, `major_version`, `minor_version`,
    /// `product_name`, `hostname`, `arch`, `package_format`, `fstab` (list of dicts:
    /// `spec`, `mountpoint`, `fstype`, `device`). What is mounted is unmounted for the
    /// inspection and mounted again afterwards.
    fn inspect_os<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let found = self.with(py, |s| {
            let mounted = s.mounts()?;
            for m in mounted.iter().rev() {
                s.umount(&m.mountpoint)?;
            }
            let found = skiff::inspect::inspect_os(s);
            for m in &mounted {
                s.mount(
                    &m.device,
                    &m.mountpoint,
                    MountOptions {
                        readonly: m.readonly,
                        fstype: Some(m.fstype.clone()),
                    },
                )?;
            }
            let found = found?;
            serde_json::to_value(&found).map_err(|e| skiff::Error::BadFrame(e.to_string()))
        })?;
        json_to_py(py, &found)
    }

    /// The installed software of the guest mounted at `root` (package databases: dpkg,
    /// rpm, pacman, apk; Windows' Uninstall keys), as a dict: `applications` (list of
    /// dicts: name, version, release, arch, ...), `databases`.
    #[pyo3(signature = (root="/".to_string()))]
    fn applications<'py>(&self, py: Python<'py>, root: String) -> PyResult<Bound<'py, PyAny>> {
        let v = self.with(py, |s| {
            let a = s.applications(&root)?;
            serde_json::to_value(&a).map_err(|e| skiff::Error::BadFrame(e.to_string()))
        })?;
        json_to_py(py, &v)
    }

    // ---- files ----

    /// The whole file at `path`, as bytes.
    fn read_file<'py>(&self, py: Python<'py>, path: String) -> PyResult<Bound<'py, PyBytes>> {
        let d = self.with(py, |s| s.read_file(&path))?;
        Ok(bytes(py, &d))
    }

    /// Up to `length` bytes of the file at `offset` (short only at its end).
    fn pread<'py>(
        &self,
        py: Python<'py>,
        path: String,
        offset: u64,
        length: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let d = self.with(py, |s| s.pread(&path, offset, length))?;
        Ok(bytes(py, &d))
    }

    /// Creates or replaces the file at `path` with `data` (bytes; a str is written as
    /// UTF-8). New files get mode 0644.
    fn write_file(&self, py: Python<'_>, path: String, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = data_arg(data)?;
        self.with(py, |s| s.write_file(&path, &data))
    }

    /// Writes `data` at `offset` of the file (created if missing), not truncating it.
    fn pwrite(
        &self,
        py: Python<'_>,
        path: String,
        offset: u64,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let data = data_arg(data)?;
        self.with(py, |s| s.pwrite(&path, offset, &data))
    }

    /// Appends `data` to the file (created if missing).
    fn append(&self, py: Python<'_>, path: String, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = data_arg(data)?;
        self.with(py, |s| s.append(&path, &data))
    }

    /// Copies the host file `host_path` into the guest as `path`, streamed; returns
    /// the size.
    fn upload(&self, py: Python<'_>, host_path: PathBuf, path: String) -> PyResult<u64> {
        self.with(py, |s| {
            let mut f = std::fs::File::open(&host_path)?;
            s.upload(&mut f, &path)
        })
    }

    /// Copies the guest file `path` to the host file `host_path`, streamed; returns the
    /// size.
    fn download(&self, py: Python<'_>, path: String, host_path: PathBuf) -> PyResult<u64> {
        self.with(py, |s| {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&host_path)?);
            let n = s.download(&path, &mut f)?;
            std::io::Write::flush(&mut f)?;
            Ok(n)
        })
    }

    /// The names in the directory `path` (sorted, without `.` and `..`).
    fn ls(&self, py: Python<'_>, path: String) -> PyResult<Vec<String>> {
        self.with(py, |s| s.ls(&path))
    }

    /// The entries of the directory `path` with their attributes (`DirEntry`: `name`,
    /// `stat`), sorted by name.
    fn readdir(&self, py: Python<'_>, path: String) -> PyResult<Vec<DirEntry>> {
        self.with(py, |s| {
            Ok(s.read_dir(&path)?.iter().map(DirEntry::from).collect())
        })
    }

    /// Every path below the directory `path`, relative to it (depth first, sorted).
    fn find(&self, py: Python<'_>, path: String) -> PyResult<Vec<String>> {
        self.with(py, |s| s.find(&path))
    }

    /// Attributes of `path`, following a final symlink.
    fn stat(&self, py: Python<'_>, path: String) -> PyResult<Stat> {
        self.with(py, |s| s.stat(&path)).map(|st| Stat::from(&st))
    }

    /// Attributes of `path` itself (a symlink is not followed).
    fn lstat(&self, py: Python<'_>, path: String) -> PyResult<Stat> {
        self.with(py, |s| s.lstat(&path)).map(|st| Stat::from(&st))
    }

    /// The target of the symlink `path`.
    fn readlink(&self, py: Python<'_>, path: String) -> PyResult<String> {
        self.with(py, |s| s.readlink(&path))
    }

    /// Statistics of the filesystem holding `path`.
    fn statvfs(&self, py: Python<'_>, path: String) -> PyResult<StatVfs> {
        self.with(py, |s| s.statvfs(&path))
            .map(|v| StatVfs::from(&v))
    }

    /// Does `path` exist (a dangling symlink does)?
    fn exists(&self, py: Python<'_>, path: String) -> PyResult<bool> {
        self.with(py, |s| s.exists(&path))
    }

    /// Is `path` a regular file (following symlinks)?
    fn is_file(&self, py: Python<'_>, path: String) -> PyResult<bool> {
        self.with(py, |s| s.is_file(&path))
    }

    /// Is `path` a directory (following symlinks)?
    fn is_dir(&self, py: Python<'_>, path: String) -> PyResult<bool> {
        self.with(py, |s| s.is_dir(&path))
    }

    /// Creates the directory `path` (mode 0755 unless `mode`); with `parents`, also
    /// the missing parents, and no error if it exists.
    #[pyo3(signature = (path, parents=false, mode=None))]
    fn mkdir(
        &self,
        py: Python<'_>,
        path: String,
        parents: bool,
        mode: Option<u32>,
    ) -> PyResult<()> {
        self.with(py, |s| match (parents, mode) {
            (true, _) => s.mkdir_p(&path),
            (false, Some(m)) => s.mkdir_mode(&path, m),
            (false, None) => s.mkdir(&path),
        })
    }

    /// Removes a file or symlink; with `recursive`, a directory and everything below.
    #[pyo3(signature = (path, recursive=false))]
    fn rm(&self, py: Python<'_>, path: String, recursive: bool) -> PyResult<()> {
        self.with(py, |s| {
            if recursive {
                s.rm_rf(&path)
            } else {
                s.rm(&path)
            }
        })
    }

    /// Removes the empty directory `path`.
    fn rmdir(&self, py: Python<'_>, path: String) -> PyResult<()> {
        self.with(py, |s| s.rmdir(&path))
    }

    /// Renames (moves) `src` to `dst` within one filesystem.
    fn rename(&self, py: Python<'_>, src: String, dst: String) -> PyResult<()> {
        self.with(py, |s| s.rename(&src, &dst))
    }

    /// Sets the permission bits of `path` (`0o755`).
    fn chmod(&self, py: Python<'_>, path: String, mode: u32) -> PyResult<()> {
        self.with(py, |s| s.chmod(&path, mode))
    }

    /// Changes the owner of `path` (a final symlink itself).
    fn chown(&self, py: Python<'_>, path: String, uid: u32, gid: u32) -> PyResult<()> {
        self.with(py, |s| s.chown(&path, uid, gid))
    }

    /// Creates the symlink `linkpath` pointing at `target` (`ln -s target linkpath`).
    fn symlink(&self, py: Python<'_>, target: String, linkpath: String) -> PyResult<()> {
        self.with(py, |s| s.ln_s(&target, &linkpath))
    }

    /// Sets the size of the file `path` (shrinks, or extends with zeros).
    fn truncate(&self, py: Python<'_>, path: String, size: u64) -> PyResult<()> {
        self.with(py, |s| s.truncate(&path, size))
    }

    /// Sets the access and modification times of `path` (seconds since the epoch).
    fn utimens(&self, py: Python<'_>, path: String, atime: i64, mtime: i64) -> PyResult<()> {
        self.with(py, |s| s.utimens(&path, atime, mtime))
    }

    /// Creates `path` empty when missing and sets its times to now (`touch`).
    fn touch(&self, py: Python<'_>, path: String) -> PyResult<()> {
        self.with(py, |s| s.touch(&path))
    }

    /// The value of extended attribute `name` of `path`, as bytes.
    fn getxattr<'py>(
        &self,
        py: Python<'py>,
        path: String,
        name: String,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let d = self.with(py, |s| s.getxattr(&path, &name))?;
        Ok(bytes(py, &d))
    }

    /// The extended attribute names of `path`.
    fn listxattrs(&self, py: Python<'_>, path: String) -> PyResult<Vec<String>> {
        self.with(py, |s| s.listxattrs(&path))
    }

    /// Creates or replaces extended attribute `name` of `path`.
    fn setxattr(
        &self,
        py: Python<'_>,
        path: String,
        name: String,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let value = data_arg(value)?;
        self.with(py, |s| s.setxattr(&path, &name, &value))
    }

    /// Removes extended attribute `name` of `path`.
    fn removexattr(&self, py: Python<'_>, path: String, name: String) -> PyResult<()> {
        self.with(py, |s| s.removexattr(&path, &name))
    }

    /// Syncs every mounted filesystem and flushes the disks.
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |s| s.sync())
    }

    /// What the appliance (and qemu) printed so far.
    fn log(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |s| Ok(s.log()))
    }

    /// qemu's process id (direct backend).
    #[getter]
    fn qemu_pid(&self, py: Python<'_>) -> PyResult<Option<u32>> {
        self.with(py, |s| Ok(s.qemu_pid()))
    }
}

/// Appliances booted ahead of time: `acquire()` attaches disks to a ready one
/// (hotplug), which is much faster than `launch()`. Each acquired `Guest` is its own
/// appliance, destroyed at `shutdown()`; the pool boots another in the background.
///
/// `Pool(size=2)`; keyword arguments as for `launch()` (`memory_mib`, `timeout`,
/// `call_timeout`, `backend`, `connect`, `verbose`) and `acquire_timeout` (seconds
/// `acquire()` waits for a ready appliance). Use it as a context manager, or `close()`.
#[pyclass(module = "skiff", name = "Pool")]
struct PyPool {
    pool: RwLock<Option<Pool>>,
}

#[pymethods]
impl PyPool {
    #[new]
    #[pyo3(signature = (size=1, *, memory_mib=128, timeout=20.0, call_timeout=60.0,
                        backend="direct", connect=None, verbose=false, acquire_timeout=60.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        size: usize,
        memory_mib: u32,
        timeout: f64,
        call_timeout: f64,
        backend: &str,
        connect: Option<String>,
        verbose: bool,
        acquire_timeout: f64,
    ) -> PyResult<Self> {
        let b = builder(
            backend,
            connect,
            memory_mib,
            timeout,
            call_timeout,
            verbose,
            None,
        )?;
        if !(acquire_timeout.is_finite() && acquire_timeout > 0.0) {
            return Err(errors::InvalidArgument::new_err(
                "acquire_timeout must be a positive number of seconds",
            ));
        }
        let opts = PoolOptions::new(size)
            .builder(b)
            .acquire_timeout(Duration::from_secs_f64(acquire_timeout));
        let pool = py.detach(|| Pool::new(opts)).map_err(to_pyerr)?;
        Ok(PyPool {
            pool: RwLock::new(Some(pool)),
        })
    }

    /// A `Guest` with `drives` attached to a ready appliance, mounted as with
    /// `launch()` (`readonly`, `mounts`, `mount`).
    #[pyo3(signature = (drives, *, readonly=true, mounts=None, mount=true))]
    fn acquire(
        &self,
        py: Python<'_>,
        drives: &Bound<'_, PyAny>,
        readonly: bool,
        mounts: Option<&Bound<'_, PyAny>>,
        mount: bool,
    ) -> PyResult<Guest> {
        let drives = drives_arg(drives, readonly)?;
        let mounts = mounts_arg(mounts)?;
        let (session, warnings) = py
            .detach(|| -> skiff::Result<(PooledSession, Vec<String>)> {
                let guard = self.pool.read().unwrap_or_else(|p| p.into_inner());
                let pool = guard.as_ref().ok_or(skiff::Error::Closed)?;
                let mut s = pool.acquire(&drives)?;
                let w = if mount {
                    mount_guest(&mut s, &mounts, readonly)?
                } else {
                    Vec::new()
                };
                Ok((s, w))
            })
            .map_err(to_pyerr)?;
        warn_all(py, warnings)?;
        Ok(Guest::new(Held::Pooled(session)))
    }

    /// How many appliances are booted and waiting.
    fn ready(&self) -> usize {
        self.pool
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, Pool::ready)
    }

    /// Waits up to `timeout` seconds until `n` appliances are ready; True if they are.
    #[pyo3(signature = (n=1, timeout=60.0))]
    fn wait_ready(&self, py: Python<'_>, n: usize, timeout: f64) -> bool {
        let t = Duration::from_secs_f64(timeout.clamp(0.0, 1e9));
        py.detach(|| {
            self.pool
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .is_some_and(|pool| pool.wait_ready(n, t))
        })
    }

    /// Stops the pool: the appliances waiting are destroyed (acquired ones are not).
    fn close(&self, py: Python<'_>) {
        py.detach(|| {
            let pool = self.pool.write().unwrap_or_else(|p| p.into_inner()).take();
            drop(pool);
        });
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (_exc_type=None, _exc_value=None, _traceback=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc_value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        self.close(py);
        false
    }
}

/// The `skiff` module.
#[pymodule]
#[pyo3(name = "skiff")]
fn skiff_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(launch, m)?)?;
    m.add_class::<Drive>()?;
    m.add_class::<Guest>()?;
    m.add_class::<PyPool>()?;
    m.add_class::<Stat>()?;
    m.add_class::<DirEntry>()?;
    m.add_class::<Device>()?;
    m.add_class::<Partition>()?;
    m.add_class::<Filesystem>()?;
    m.add_class::<Mount>()?;
    m.add_class::<StatVfs>()?;
    errors::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("libvirt_available", Backend::libvirt_available())?;
    Ok(())
}
