//! Launching the appliance as a transient libvirt domain: connect, make the kernel
//! readable where libvirtd runs, describe the disks, create the domain paused with
//! AUTODESTROY, open the RPC channel as a stream, resume, wait for Hello. The domain is
//! destroyed when the session ends (and by libvirtd if our connection closes first).

use super::hotplug::VirtHotplug;
use super::stream;
use super::xml::{self, Disk, DomainSpec, Source};
use crate::appliance::{Builder, DriveOptions};
use crate::backend::accel::Accel;
use crate::backend::kernel::EMBEDDED;
use crate::backend::{BackendHandle, Hotplug, Launched};
use crate::error::{Error, Result};
use crate::images::format::Format;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;
use virt::sys;

/// Where libvirt's qemu driver writes a domain's log (qemu's stdout: the appliance's
/// debug port), on the host where libvirtd runs.
const QEMU_LOG_DIR: &str = "/var/log/libvirt/qemu";
// The firmware used when it is installed (local connections only).
use crate::backend::QBOOT;

/// A libvirt error as ours, with what we were doing.
pub(crate) fn verr(what: impl std::fmt::Display, e: virt::error::Error) -> Error {
    Error::Libvirt(format!("{what}: {}", e.message()))
}

/// qemu refusing an encrypted qcow2's key (libvirt passes its message on) is a
/// [`Error::WrongKey`] naming the image, as with the direct backend.
fn wrong_key(spec: &xml::DomainSpec, e: &virt::error::Error) -> Option<Error> {
    if !e.message().contains("cannot unlock any keyslot") {
        return None;
    }
    let encrypted: Vec<&str> = spec
        .disks
        .iter()
        .filter(|d| d.encryption.is_some())
        .map(|d| d.source.path())
        .collect();
    Some(Error::WrongKey {
        device: match encrypted.as_slice() {
            [one] => one.to_string(),
            _ => "an encrypted qcow2 image".into(),
        },
        detail: "qemu cannot unlock the image with the key given".into(),
    })
}

/// libvirt prints every error on stderr by default; ours are returned instead.
pub(crate) fn quiet() {
    static ONCE: Once = Once::new();
    ONCE.call_once(virt::error::clear_error_callback);
}

/// Opens `uri` (`None`: libvirt's default), with a clear error.
pub(crate) fn connect(uri: Option<&str>) -> Result<Connect> {
    quiet();
    Connect::open(uri).map_err(|e| {
        verr(
            format_args!("cannot connect to {}", uri.unwrap_or("the default URI")),
            e,
        )
    })
}

/// True when the connection's libvirtd runs on this machine (no host in its URI).
pub(crate) fn is_local(conn: &Connect) -> bool {
    conn.uri().map(|u| uri_host(&u).is_empty()).unwrap_or(false)
}

/// The host part of a libvirt URI (`qemu+ssh://user@host:22/system` → `user@host:22`).
pub(crate) fn uri_host(uri: &str) -> &str {
    match uri.split_once("://") {
        Some((_, rest)) => rest.split(['/', '?']).next().unwrap_or(""),
        None => "",
    }
}

/// `$SKIFF_LIBVIRT_TRACE=1`: the time each step of a launch and of its end takes, on
/// stderr (for bench/libvirt.sh and for finding where launches spend their time).
pub(crate) struct Trace {
    on: bool,
    last: Instant,
}

impl Trace {
    pub(crate) fn new() -> Trace {
        Trace {
            on: std::env::var("SKIFF_LIBVIRT_TRACE").is_ok_and(|v| v == "1"),
            last: Instant::now(),
        }
    }

    /// Prints how long `what` took since the previous step.
    pub(crate) fn step(&mut self, what: &str) {
        if self.on {
            let now = Instant::now();
            eprintln!(
                "skiff: libvirt: {what:<16} {:8.1} ms",
                (now - self.last).as_secs_f64() * 1e3
            );
            self.last = now;
        }
    }
}

/// Creates the appliance domain for `builder` and opens its channel; the session waits
/// for the Hello.
pub(crate) fn launch(builder: &Builder, uri: Option<&str>) -> Result<Launched> {
    let started = Instant::now();
    let mut trace = Trace::new();
    let conn = connect(uri)?;
    trace.step("connect");
    let local = is_local(&conn);
    let mut secrets = Secrets::default();
    let disks = builder
        .drives
        .iter()
        .enumerate()
        .map(|(i, (path, o))| {
            let dev = wire::disk_name(i);
            disk(
                &conn,
                local,
                path,
                *o,
                &builder.keys,
                Some(&dev),
                &mut secrets,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    trace.step("disks");
    // qemu derives encrypted images' keys before the guest starts (see the direct
    // backend): that time does not count against the boot timeout.
    let grace = if secrets.0.is_empty() {
        std::time::Duration::ZERO
    } else {
        std::time::Duration::from_secs(60)
    };
    let kernel = kernel_path(&conn, local)?;
    trace.step("kernel placement");
    if local {
        remove_stale_logs(&conn, Path::new(QEMU_LOG_DIR));
    }
    let accel = match builder.accel {
        Some(a) => a,
        None if local => Accel::from_env_or_detect()?,
        None => match std::env::var("SKIFF_ACCEL") {
            Ok(v) if !v.is_empty() => Accel::parse(&v)?,
            // The remote host's CPU is unknown here: TCG always works.
            _ => Accel::Tcg,
        },
    };
    if builder.memory_mib < 16 {
        return Err(Error::Config(format!(
            "{} MiB of guest memory is too little",
            builder.memory_mib
        )));
    }
    let spec = DomainSpec {
        name: domain_name(),
        kvm: accel == Accel::Kvm,
        memory_mib: builder.memory_mib,
        kernel,
        cmdline: builder.cmdline.clone(),
        loader: (local && Path::new(QBOOT).exists()).then(|| QBOOT.to_string()),
        disks,
        passthrough: true,
        hotplug_ports: if builder.hotplug {
            builder.hotplug_ports
        } else {
            0
        },
    };
    let xml = xml::domain_xml(&spec).map_err(Error::Config)?;
    if builder.verbose {
        eprintln!("skiff: libvirt domain on {}:\n{xml}", conn_uri(&conn));
    }
    // Paused first: the channel must be open before the appliance says Hello (qemu drops
    // what the guest writes to an unconnected port).
    let flags = sys::VIR_DOMAIN_START_AUTODESTROY | sys::VIR_DOMAIN_START_PAUSED;
    let dom = conn.create_domain_xml(&xml, flags).map_err(|e| {
        wrong_key(&spec, &e).unwrap_or_else(|| verr("cannot create the appliance domain", e))
    })?;
    trace.step("createXML");
    let guard = VirtGuest {
        dom,
        conn: conn.clone(),
        local,
        log: local.then(|| Path::new(QEMU_LOG_DIR).join(format!("{}.log", spec.name))),
        verbose: builder.verbose,
        gone: false,
        hot: (spec.hotplug_ports > 0)
            .then(|| VirtHotplug::new(spec.hotplug_ports, spec.disks.len())),
        trace: Trace::new(),
        ended: None,
        secrets,
    };
    let st = Stream::new(&conn, 0).map_err(|e| verr("cannot make a stream", e))?;
    guard
        .dom
        .open_channel(Some(xml::CHANNEL_NAME), &st, 0)
        .map_err(|e| verr("cannot open the appliance channel", e))?;
    let (sock, ended) = stream::bridge(st)?;
    trace.step("open channel");
    guard
        .dom
        .resume()
        .map_err(|e| verr("cannot start the appliance domain", e))?;
    trace.step("resume");
    let readonly = spec.disks.iter().map(|d| d.readonly).collect();
    let mut guard = guard;
    guard.trace = trace;
    guard.ended = Some(ended);
    Ok(Launched {
        stream: sock,
        handle: Box::new(guard),
        readonly,
        images: Vec::new(),
        deadline: started + builder.timeout + grace,
    })
}

fn conn_uri(conn: &Connect) -> String {
    conn.uri().unwrap_or_else(|_| "?".into())
}

/// A name unique on the libvirt host: `skiff-<pid>-<n>-<time>`.
fn domain_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("skiff-{}-{n}-{t:08x}", std::process::id())
}

/// The libvirt secrets a session defined for its encrypted disks: ephemeral and
/// private, undefined when the session ends (and with the connection, by libvirtd).
#[derive(Default)]
pub(crate) struct Secrets(Vec<virt::secret::Secret>);

impl Secrets {
    /// Defines a secret holding `key`; returns its UUID.
    fn define(
        &mut self,
        conn: &Connect,
        key: &crate::volumes::Secret,
        what: &str,
    ) -> Result<String> {
        let sec = conn
            .define_secret_xml(&xml::secret_xml(&format!("skiff: key of {what}")), 0)
            .map_err(|e| verr("cannot define a libvirt secret", e))?;
        let uuid = sec.uuid_string();
        let set = sec.set_value(key.expose(), 0);
        self.0.push(sec);
        set.map_err(|e| verr("cannot set the libvirt secret's value", e))?;
        uuid.map_err(|e| verr("libvirt secret UUID", e))
    }
}

impl Drop for Secrets {
    fn drop(&mut self) {
        for s in self.0.drain(..) {
            let _ = s.undefine();
        }
    }
}

/// A disk as libvirt sees it: a file or a block device, an explicit format (detected on
/// this host when local, else from the storage volume at that path on the libvirt host).
/// An encrypted qcow2 (local only) gets an ephemeral libvirt secret with its key, kept
/// in `secrets`.
pub(crate) fn disk(
    conn: &Connect,
    local: bool,
    path: &Path,
    o: DriveOptions,
    keys: &crate::volumes::KeySet,
    device: Option<&str>,
    secrets: &mut Secrets,
) -> Result<Disk> {
    // libvirtd resolves paths against its own directory, not the caller's: a local
    // disk is named by its absolute path.
    let abs;
    let path = if local {
        abs = std::path::absolute(path)?;
        abs.as_path()
    } else {
        path
    };
    let p = path
        .to_str()
        .ok_or_else(|| Error::Config(format!("disk path {path:?} is not UTF-8")))?
        .to_string();
    let mut backing = Some(Vec::new());
    let mut encryption = None;
    let (block, format) = if local {
        // The same checks as a direct launch (file kind, backing chain, data file); the
        // chain skiff accepted is spelled out for libvirt. libvirt opens the files itself
        // (its qemu runs as its own user under sVirt), so the fds are closed again here.
        let img = o.open_keyed(path, keys, device)?;
        if img.layers.iter().skip(1).any(|l| l.secret.is_some()) {
            return Err(Error::ImageRefused {
                path: path.to_path_buf(),
                reason: "the libvirt backend attaches encrypted qcow2 images without \
                         encrypted backing files only (use the direct backend)"
                    .into(),
            });
        }
        if let Some(sec) = &img.top().secret {
            encryption = Some(secrets.define(conn, sec.key(), &path.display().to_string())?);
        }
        if img.top().data_file.is_some() {
            return Err(Error::ImageRefused {
                path: path.to_path_buf(),
                reason: "the libvirt backend does not attach qcow2 images with an external \
                         data file (use the direct backend)"
                    .into(),
            });
        }
        for l in img.layers.iter().skip(1) {
            let abs = std::path::absolute(&l.path)?;
            let p = abs
                .to_str()
                .ok_or_else(|| Error::Config(format!("backing file {abs:?} is not UTF-8")))?;
            backing
                .get_or_insert_with(Vec::new)
                .push((p.to_string(), l.format));
        }
        let meta = img.top().file.metadata()?;
        (meta.file_type().is_block_device(), img.format())
    } else {
        // Remote: the path is on the libvirt host; a storage volume there tells its kind
        // and format.
        let vol = conn.lookup_storage_vol_by_path(&p).ok();
        let info = vol
            .and_then(|v| v.xml_desc(0).ok())
            .and_then(|x| xml::volume_info(&x).ok());
        let format = match (o.format, info.as_ref().and_then(|i| i.format.as_deref())) {
            (Some(f), _) => f,
            (None, Some(f)) => parse_format(path, f)?,
            (None, None) => {
                return Err(Error::Config(format!(
                    "{p}: not a storage volume on the remote host; give its format \
                     (-a PATH,format=raw|qcow2)"
                )));
            }
        };
        if o.backing == crate::BackingPolicy::Allow {
            backing = None;
        }
        (info.is_some_and(|i| i.block), format)
    };
    Ok(Disk {
        source: if block {
            Source::Block(p)
        } else {
            Source::File(p)
        },
        format,
        readonly: o.readonly,
        backing,
        encryption,
    })
}

pub(crate) fn parse_format(path: &Path, f: &str) -> Result<Format> {
    f.parse().map_err(|_| Error::UnknownFormat {
        path: path.into(),
        format: f.into(),
    })
}

/// The appliance ELF's bytes: `$SKIFF_APPLIANCE` or the embedded one.
fn kernel_bytes() -> Result<Vec<u8>> {
    if let Some(p) = std::env::var_os("SKIFF_APPLIANCE").filter(|p| !p.is_empty()) {
        return std::fs::read(&p).map_err(|e| Error::Config(format!("SKIFF_APPLIANCE={p:?}: {e}")));
    }
    if EMBEDDED.is_empty() {
        return Err(Error::NoAppliance);
    }
    Ok(EMBEDDED.to_vec())
}

/// A content-addressed file name for the kernel (same bytes, same name).
fn kernel_name(bytes: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: stable for a given build of skiff.
    let mut h = std::hash::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("skiff-appliance-{:016x}-{}.elf", h.finish(), bytes.len())
}

/// Where libvirtd's qemu can read the kernel: a local file, or (remote, or with
/// `$SKIFF_LIBVIRT_UPLOAD=1`) a storage volume uploaded over the connection.
fn kernel_path(conn: &Connect, local: bool) -> Result<String> {
    let bytes = kernel_bytes()?;
    let name = kernel_name(&bytes);
    let upload = !local || std::env::var("SKIFF_LIBVIRT_UPLOAD").is_ok_and(|v| v == "1");
    if upload {
        return upload_kernel(conn, &name, &bytes);
    }
    let mut dirs = vec![PathBuf::from("/var/lib/libvirt/boot")];
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d).join("skiff"));
    } else if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(h).join(".cache/skiff"));
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    dirs.push(std::env::temp_dir().join(format!("skiff-libvirt-{uid}")));
    let mut last = None;
    for d in dirs {
        match place(&d, &name, &bytes) {
            Ok(p) => return Ok(p),
            Err(e) => last = Some(format!("{}: {e}", d.display())),
        }
    }
    Err(Error::Config(format!(
        "cannot place the appliance kernel where libvirt's qemu can read it ({})",
        last.unwrap_or_default()
    )))
}

/// Writes `bytes` to `dir/name` (0644, atomically) unless it is there already.
fn place(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<String> {
    let path = dir.join(name);
    let s = path
        .to_str()
        .ok_or_else(|| std::io::Error::other("path is not UTF-8"))?
        .to_string();
    if std::fs::read(&path).is_ok_and(|b| b == bytes) {
        return Ok(s);
    }
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, &path)?;
    Ok(s)
}

/// Uploads the kernel into a storage volume (`$SKIFF_LIBVIRT_POOL`, default `default`)
/// named after its contents, unless it is there already; returns the volume's path.
fn upload_kernel(conn: &Connect, name: &str, bytes: &[u8]) -> Result<String> {
    let pool_name = std::env::var("SKIFF_LIBVIRT_POOL")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "default".into());
    let pool = conn.lookup_storage_pool_by_name(&pool_name).map_err(|e| {
        verr(
            format_args!(
                "the appliance kernel is uploaded into storage pool '{pool_name}' \
                 (set SKIFF_LIBVIRT_POOL)"
            ),
            e,
        )
    })?;
    if let Ok(vol) = pool.lookup_storage_vol_by_name(name)
        && vol.info().is_ok_and(|i| i.capacity == bytes.len() as u64)
    {
        return vol.path().map_err(|e| verr("kernel volume path", e));
    }
    let vxml = format!(
        "<volume><name>{}</name><capacity unit='bytes'>{}</capacity>\
         <target><format type='raw'/><permissions><mode>0644</mode></permissions></target>\
         </volume>",
        xml::esc(name),
        bytes.len()
    );
    let vol = StorageVol::create_xml(&pool, &vxml, 0)
        .map_err(|e| verr(format_args!("cannot create volume {pool_name}/{name}"), e))?;
    let result = (|| -> std::result::Result<(), virt::error::Error> {
        let st = Stream::new(conn, 0)?;
        vol.upload(&st, 0, bytes.len() as u64, 0)?;
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = st.send(rest)?;
            rest = &rest[usize::try_from(n).unwrap_or(0).min(rest.len())..];
            if n <= 0 {
                break;
            }
        }
        st.finish()
    })();
    if let Err(e) = result {
        let _ = vol.delete(0);
        return Err(verr("cannot upload the appliance kernel", e));
    }
    vol.path().map_err(|e| verr("kernel volume path", e))
}

/// Removes the logs libvirt left of earlier appliance domains that are gone. A session
/// removes its domain's log when it ends, but libvirtd appends its last line ("shutting
/// down") while it tears the domain down after that, recreating the file; a killed
/// client leaves its log too. Logs of live skiff processes other than this one are left
/// alone (their domains may be running).
fn remove_stale_logs(conn: &Connect, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let me = std::process::id();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(domain) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        let Some(pid) = domain
            .strip_prefix("skiff-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let gone = if pid == me {
            conn.lookup_domain_by_name(domain).is_err()
        } else {
            !Path::new(&format!("/proc/{pid}")).exists()
                && conn.lookup_domain_by_name(domain).is_err()
        };
        if gone {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The appliance domain, held by the session.
pub(crate) struct VirtGuest {
    pub(crate) dom: Domain,
    /// Keeps the connection (and so the AUTODESTROY domain) alive with the session.
    pub(crate) conn: Connect,
    /// Does libvirtd run on this machine?
    pub(crate) local: bool,
    /// The domain's log file, when libvirtd is local.
    log: Option<PathBuf>,
    verbose: bool,
    gone: bool,
    /// Root ports and hot-added disks of a hotplug launch.
    pub(crate) hot: Option<VirtHotplug>,
    trace: Trace,
    /// Disconnects when the channel's stream has ended: qemu exited.
    ended: Option<Receiver<()>>,
    /// The secrets of encrypted disks, undefined when the domain goes.
    pub(crate) secrets: Secrets,
}

impl VirtGuest {
    /// `virDomainDetachDeviceAlias` (live): asks qemu to unplug the device and returns
    /// (the `virt` crate has no wrapper for it).
    pub(crate) fn detach_alias(&self, alias: &str) -> std::result::Result<(), virt::error::Error> {
        let c = std::ffi::CString::new(alias).expect("aliases have no NUL");
        // SAFETY: the domain pointer is valid while `self.dom` lives; the alias is a
        // NUL-terminated string that outlives the call; libvirt copies what it keeps.
        let r = unsafe {
            sys::virDomainDetachDeviceAlias(
                self.dom.as_ptr(),
                c.as_ptr(),
                sys::VIR_DOMAIN_AFFECT_LIVE,
            )
        };
        if r < 0 {
            return Err(virt::error::Error::last_error());
        }
        Ok(())
    }
}

impl BackendHandle for VirtGuest {
    fn ready(&mut self, _deadline: Instant) -> Result<(), crate::backend::Failure> {
        self.trace.step("Hello");
        Ok(())
    }

    /// Waits until qemu has exited after the appliance's poweroff (the disks were flushed
    /// before it answered Shutdown; libvirt stops qemu for `on_poweroff` destroy): the
    /// channel's stream ends when qemu's end of it closes. Not waiting for libvirtd to
    /// finish its bookkeeping (reaping qemu, restoring labels, removing cgroups) saves
    /// that time; libvirtd completes it on its own, and AUTODESTROY covers a connection
    /// that closes first.
    /// An appliance that does not power off in time is destroyed (no error: its disks
    /// were flushed before it answered Shutdown).
    fn wait_poweroff(&mut self, limit: Duration) -> Result<()> {
        self.trace.step("calls, Shutdown");
        let powered_off = match self.ended.as_ref() {
            None => false,
            Some(ended) => match ended.recv_timeout(limit) {
                Err(RecvTimeoutError::Timeout) => false,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                    self.gone = true;
                    self.trace.step("poweroff wait");
                    true
                }
            },
        };
        if !powered_off {
            self.kill();
        }
        Ok(())
    }

    fn kill(&mut self) {
        if !self.gone {
            let _ = self.dom.destroy();
            self.gone = true;
        }
    }

    fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn hotplug(&mut self) -> Option<&mut dyn Hotplug> {
        if self.hot.is_some() { Some(self) } else { None }
    }

    fn hotplug_ref(&self) -> Option<&dyn Hotplug> {
        if self.hot.is_some() { Some(self) } else { None }
    }
}

impl Drop for VirtGuest {
    fn drop(&mut self) {
        self.kill();
        self.trace.step("destroy");
        if let Some(p) = &self.log {
            if self.verbose {
                eprint!("{}", self.log());
            }
            // One log file per launch otherwise piles up in /var/log/libvirt/qemu.
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_hosts() {
        assert_eq!(uri_host("qemu:///system"), "");
        assert_eq!(uri_host("qemu+ssh://root@h:22/system"), "root@h:22");
        assert_eq!(uri_host("qemu+tcp://h/system?x=1"), "h");
        assert_eq!(uri_host("test:///default"), "");
    }

    #[test]
    fn kernel_names_follow_contents() {
        assert_eq!(kernel_name(b"abc"), kernel_name(b"abc"));
        assert_ne!(kernel_name(b"abc"), kernel_name(b"abd"));
        assert!(kernel_name(b"abc").ends_with("-3.elf"));
    }

    #[test]
    fn place_is_idempotent_and_readable() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("k");
        let p = place(&dir, "x.elf", b"kernel").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"kernel");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(place(&dir, "x.elf", b"kernel").unwrap(), p);
        // Different bytes under the same name are replaced.
        place(&dir, "x.elf", b"other").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"other");
    }
}
