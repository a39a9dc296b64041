//! Python exceptions mirroring `skiff::Error`: `SkiffError` is the base of all of them.
//!
//! | `skiff::Error` | exception | attributes |
//! |---|---|---|
//! | `Remote` (the appliance refused one call) | `RemoteError` | `kind` (`"not found"`, `"read-only"`, ...), `message`, `errno` |
//! | `ApplianceCrashed` | `ApplianceCrashed` | |
//! | `ApplianceExited` | `ApplianceExited` | |
//! | `LaunchTimeout`, `CallTimeout` | `LaunchTimeout`, `CallTimeout` (both `SkiffTimeout`) | |
//! | `ImageRefused`, `ImageTampered`, `DiskNotFound`, `UnknownFormat`/`FormatProbe` | `ImageRefused`, `ImageTampered`, `DiskNotFound`, `FormatError` | `path` |
//! | `ReadOnly` | `ReadOnlyError` | `device` |
//! | `Closed` | `SessionClosed` | |
//! | `InvalidArgument` | `InvalidArgument` | |
//! | `QemuNotFound`, `NoAppliance`, `Config` | `LaunchError` | |
//! | `BadFrame`, `VersionMismatch` | `ProtocolError` | |
//! | hotplug errors, `Qmp` | `HotplugError` | |
//! | `PoolEmpty` | `PoolEmpty` | |
//! | `Libvirt` | `LibvirtError` | |
//! | `NoMountPlan` | `NoMountPlan` | |
//! | `Mount` (a mount that had to succeed) | the class of its cause | `device`, `mountpoint` too |
//! | `Io` (on the host) | `HostIOError` | `errno` |

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use skiff::wire::ErrorKind;

create_exception!(skiff, SkiffError, PyException, "Base of every skiff error.");
create_exception!(
    skiff,
    RemoteError,
    SkiffError,
    "The appliance refused one call (the session stays usable): `.kind` is \"not found\", \
     \"read-only\", \"not a directory\", \"is a directory\", \"already exists\", \
     \"directory not empty\", \"unsupported\", \"corrupt\", ...; `.message` the detail; \
     `.errno` the matching errno number."
);
create_exception!(
    skiff,
    ApplianceCrashed,
    SkiffError,
    "The appliance panicked (its message is the exception's); the session is closed."
);
create_exception!(
    skiff,
    ApplianceExited,
    SkiffError,
    "qemu exited unexpectedly; the session is closed."
);
create_exception!(
    skiff,
    SkiffTimeout,
    SkiffError,
    "A launch or a call took too long."
);
create_exception!(
    skiff,
    LaunchTimeout,
    SkiffTimeout,
    "The appliance did not boot in time."
);
create_exception!(
    skiff,
    CallTimeout,
    SkiffTimeout,
    "One call did not finish in time; the session is closed."
);
create_exception!(
    skiff,
    ImageRefused,
    SkiffError,
    "skiff refused to open a disk image (a backing or data file not allowed, a protocol, \
     a loop, ...); `.path`."
);
create_exception!(
    skiff,
    ImageTampered,
    SkiffError,
    "A writable image's header changed during the session; `.path`."
);
create_exception!(
    skiff,
    DiskNotFound,
    SkiffError,
    "A disk image does not exist; `.path`."
);
create_exception!(
    skiff,
    FormatError,
    SkiffError,
    "A disk image's format is unknown or could not be determined; `.path`."
);
create_exception!(
    skiff,
    ReadOnlyError,
    SkiffError,
    "A write to a drive attached read-only; `.device`."
);
create_exception!(
    skiff,
    SessionClosed,
    SkiffError,
    "The session was shut down, or an earlier fatal error closed it."
);
create_exception!(
    skiff,
    InvalidArgument,
    SkiffError,
    "An argument is out of range."
);
create_exception!(
    skiff,
    LaunchError,
    SkiffError,
    "The appliance could not be started (qemu missing, no appliance kernel, bad settings)."
);
create_exception!(
    skiff,
    ProtocolError,
    SkiffError,
    "The appliance sent something unexpected (or speaks another protocol version)."
);
create_exception!(
    skiff,
    HotplugError,
    SkiffError,
    "Adding or removing a disk failed."
);
create_exception!(
    skiff,
    PoolEmpty,
    SkiffError,
    "No pooled appliance was ready in time."
);
create_exception!(skiff, LibvirtError, SkiffError, "A libvirt call failed.");
create_exception!(
    skiff,
    NoMountPlan,
    SkiffError,
    "No mounts were named and the disks do not say what to mount."
);
create_exception!(
    skiff,
    HostIOError,
    SkiffError,
    "An I/O error on the host; `.errno`."
);

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    macro_rules! add {
        ($($e:ident),*) => { $( m.add(stringify!($e), py.get_type::<$e>())?; )* };
    }
    add!(
        SkiffError,
        RemoteError,
        ApplianceCrashed,
        ApplianceExited,
        SkiffTimeout,
        LaunchTimeout,
        CallTimeout,
        ImageRefused,
        ImageTampered,
        DiskNotFound,
        FormatError,
        ReadOnlyError,
        SessionClosed,
        InvalidArgument,
        LaunchError,
        ProtocolError,
        HotplugError,
        PoolEmpty,
        LibvirtError,
        NoMountPlan,
        HostIOError
    );
    Ok(())
}

/// The errno number matching an appliance error kind.
fn errno_of(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::NotFound => 2,                                      // ENOENT
        ErrorKind::NotADirectory => 20,                                // ENOTDIR
        ErrorKind::IsADirectory => 21,                                 // EISDIR
        ErrorKind::ReadOnly => 30,                                     // EROFS
        ErrorKind::NoSpace => 28,                                      // ENOSPC
        ErrorKind::Unsupported => 95,                                  // EOPNOTSUPP
        ErrorKind::InvalidArgument => 22,                              // EINVAL
        ErrorKind::AlreadyExists => 17,                                // EEXIST
        ErrorKind::NotEmpty => 39,                                     // ENOTEMPTY
        ErrorKind::Busy => 16,                                         // EBUSY
        ErrorKind::NotMounted => 22,                                   // EINVAL
        ErrorKind::TooLarge => 27,                                     // EFBIG
        ErrorKind::Loop => 40,                                         // ELOOP
        ErrorKind::PermissionDenied => 13,                             // EACCES
        ErrorKind::Corrupt | ErrorKind::Io | ErrorKind::Internal => 5, // EIO
    }
}

/// The Python exception for a library error.
pub fn to_pyerr(e: skiff::Error) -> PyErr {
    Python::attach(|py| {
        let message = e.to_string();
        let (err, attrs) = classify(&e, message);
        for (k, v) in attrs {
            let _ = err.value(py).setattr(k, v.bind(py));
        }
        err
    })
}

type Attrs = Vec<(&'static str, Py<PyAny>)>;

/// The exception (with `message` as its text) and its attributes for `e`.
fn classify(e: &skiff::Error, message: String) -> (PyErr, Attrs) {
    use skiff::Error as E;
    Python::attach(|py| {
        let s = |v: &str| -> Py<PyAny> { pyo3::types::PyString::new(py, v).into_any().unbind() };
        let path = |p: &std::path::Path| s(&p.display().to_string());
        match e {
            E::Remote(r) => (
                RemoteError::new_err(message),
                vec![
                    ("kind", s(r.kind.as_str())),
                    ("message", s(&r.message)),
                    (
                        "errno",
                        errno_of(r.kind)
                            .into_pyobject(py)
                            .map(|o| o.into_any().unbind())
                            .unwrap_or_else(|_| py.None()),
                    ),
                ],
            ),
            E::Mount {
                device,
                mountpoint,
                error,
            } => {
                let (err, mut attrs) = classify(error, message);
                attrs.push(("device", s(device)));
                attrs.push(("mountpoint", s(mountpoint)));
                (err, attrs)
            }
            E::ApplianceCrashed { .. } => (ApplianceCrashed::new_err(message), vec![]),
            E::ApplianceExited { .. } => (ApplianceExited::new_err(message), vec![]),
            E::LaunchTimeout(_) => (LaunchTimeout::new_err(message), vec![]),
            E::CallTimeout(_) => (CallTimeout::new_err(message), vec![]),
            E::ImageRefused { path: p, .. } => {
                (ImageRefused::new_err(message), vec![("path", path(p))])
            }
            E::ImageTampered { path: p, .. } => {
                (ImageTampered::new_err(message), vec![("path", path(p))])
            }
            E::DiskNotFound { path: p } => {
                (DiskNotFound::new_err(message), vec![("path", path(p))])
            }
            E::UnknownFormat { path: p, .. } | E::FormatProbe { path: p, .. } => {
                (FormatError::new_err(message), vec![("path", path(p))])
            }
            E::ReadOnly { device } => {
                (ReadOnlyError::new_err(message), vec![("device", s(device))])
            }
            E::Closed => (SessionClosed::new_err(message), vec![]),
            E::InvalidArgument(_) => (InvalidArgument::new_err(message), vec![]),
            E::QemuNotFound { .. } | E::NoAppliance | E::Config(_) => {
                (LaunchError::new_err(message), vec![])
            }
            E::BadFrame(_) | E::VersionMismatch { .. } => (ProtocolError::new_err(message), vec![]),
            E::NoFreePort { .. }
            | E::NotHotpluggable(_)
            | E::ReadOnlySession { .. }
            | E::Qmp { .. }
            | E::UnplugTimeout { .. }
            | E::HotplugNotSeen { .. } => (HotplugError::new_err(message), vec![]),
            E::PoolEmpty { .. } => (PoolEmpty::new_err(message), vec![]),
            E::Libvirt(_) => (LibvirtError::new_err(message), vec![]),
            E::NoMountPlan(_) => (NoMountPlan::new_err(message), vec![]),
            E::Io(io) => (
                HostIOError::new_err(message),
                vec![(
                    "errno",
                    io.raw_os_error()
                        .and_then(|n| n.into_pyobject(py).ok())
                        .map_or_else(|| py.None(), |o| o.into_any().unbind()),
                )],
            ),
            #[allow(unreachable_patterns)]
            _ => (SkiffError::new_err(message), vec![]),
        }
    })
}
