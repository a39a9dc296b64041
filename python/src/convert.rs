//! The library's records as Python objects (read-only attributes, a `repr`, equality),
//! JSON-shaped facts (inspection) as dicts and lists, and data arguments as bytes.

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyMemoryView, PyString};
use skiff::wire;

/// Python's repr of a value, for the records' `__repr__`.
pub trait PyRepr {
    fn py_repr(&self) -> String;
}

impl PyRepr for String {
    fn py_repr(&self) -> String {
        let mut s = String::from("'");
        for c in self.chars() {
            match c {
                '\'' => s.push_str("\\'"),
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                c if c.is_control() => s.push_str(&format!("\\x{:02x}", c as u32)),
                c => s.push(c),
            }
        }
        s.push('\'');
        s
    }
}

macro_rules! repr_display {
    ($($t:ty),*) => {
        $(impl PyRepr for $t {
            fn py_repr(&self) -> String {
                self.to_string()
            }
        })*
    };
}
repr_display!(u32, u64, i64);

impl PyRepr for bool {
    fn py_repr(&self) -> String {
        py_bool(*self)
    }
}

impl<T: PyRepr> PyRepr for Option<T> {
    fn py_repr(&self) -> String {
        self.as_ref().map_or_else(|| "None".into(), PyRepr::py_repr)
    }
}

pub fn py_bool(b: bool) -> String {
    if b { "True" } else { "False" }.into()
}

pub fn py_opt(s: &Option<String>) -> String {
    s.py_repr()
}

/// A record class: read-only fields, `repr` like a dataclass's, `==`.
macro_rules! record {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }
     $(methods { $($extra:item)* })?) => {
        $(#[$doc])*
        #[pyclass(module = "skiff", frozen, get_all, eq)]
        #[derive(Clone, PartialEq)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: $ty),*
        }

        #[pymethods]
        impl $name {
            fn __repr__(&self) -> String {
                let fields: Vec<String> = vec![
                    $(format!("{}={}", stringify!($field), self.$field.py_repr())),*
                ];
                format!("{}({})", stringify!($name), fields.join(", "))
            }
            $($($extra)*)?
        }

        impl PyRepr for $name {
            fn py_repr(&self) -> String {
                self.__repr__()
            }
        }
    };
}

record!(
    /// Attributes of a file: `file_type` (`"regular"`, `"directory"`, `"symlink"`,
    /// `"char_device"`, `"block_device"`, `"fifo"`, `"socket"`, `"unknown"`), `mode`
    /// (permission bits, `0o644`), `uid`, `gid`, `size`, `nlink`, `ino`, and `mtime`,
    /// `atime`, `ctime` in seconds since the epoch.
    Stat {
        file_type: String,
        mode: u32,
        uid: u32,
        gid: u32,
        size: u64,
        nlink: u32,
        ino: u64,
        mtime: i64,
        atime: i64,
        ctime: i64,
    }
    methods {
    /// True for a directory.
    #[getter]
    fn is_dir(&self) -> bool {
        self.file_type == "directory"
    }

    /// True for a regular file.
    #[getter]
    fn is_file(&self) -> bool {
        self.file_type == "regular"
    }

    /// True for a symlink.
    #[getter]
    fn is_symlink(&self) -> bool {
        self.file_type == "symlink"
    }
    }
);

impl From<&wire::Stat> for Stat {
    fn from(s: &wire::Stat) -> Stat {
        Stat {
            file_type: match s.file_type {
                wire::FileType::Regular => "regular",
                wire::FileType::Directory => "directory",
                wire::FileType::Symlink => "symlink",
                wire::FileType::CharDevice => "char_device",
                wire::FileType::BlockDevice => "block_device",
                wire::FileType::Fifo => "fifo",
                wire::FileType::Socket => "socket",
                wire::FileType::Unknown => "unknown",
            }
            .into(),
            mode: s.mode & 0o7777,
            uid: s.uid,
            gid: s.gid,
            size: s.size,
            nlink: s.nlink,
            ino: s.ino,
            mtime: s.mtime,
            atime: s.atime,
            ctime: s.ctime,
        }
    }
}

record!(
    /// One directory entry: `name` and its `stat` (not following symlinks).
    DirEntry {
        name: String,
        stat: Stat,
    }
);

impl From<&wire::DirEntry> for DirEntry {
    fn from(e: &wire::DirEntry) -> DirEntry {
        DirEntry {
            name: e.name.clone(),
            stat: Stat::from(&e.stat),
        }
    }
}

record!(
    /// A whole disk: `name` (`/dev/sda`), `size` in bytes, `readonly`.
    Device {
        name: String,
        size: u64,
        readonly: bool,
    }
);

impl From<&wire::Device> for Device {
    fn from(d: &wire::Device) -> Device {
        Device {
            name: d.name.clone(),
            size: d.size,
            readonly: d.readonly,
        }
    }
}

record!(
    /// A partition: `name` (`/dev/sda1`), `disk`, `table` (`"mbr"`, `"gpt"`), `number`,
    /// `start` and `size` in bytes, `part_type` (MBR type byte or GPT type GUID),
    /// `label` and `uuid` (GPT).
    Partition {
        name: String,
        disk: String,
        table: String,
        number: u32,
        start: u64,
        size: u64,
        part_type: String,
        label: Option<String>,
        uuid: Option<String>,
    }
);

impl From<&wire::Partition> for Partition {
    fn from(p: &wire::Partition) -> Partition {
        Partition {
            name: p.name.clone(),
            disk: p.disk.clone(),
            table: match p.table {
                wire::TableKind::Mbr => "mbr",
                wire::TableKind::Gpt => "gpt",
            }
            .into(),
            number: p.number,
            start: p.start,
            size: p.size,
            part_type: p.part_type.clone(),
            label: p.label.clone(),
            uuid: p.uuid.clone(),
        }
    }
}

record!(
    /// A disk or partition and its filesystem: `device`, `fstype` (`"ext4"`, `"vfat"`,
    /// ..., `"unknown"`), `label`, `uuid`, `size`.
    Filesystem {
        device: String,
        fstype: String,
        label: Option<String>,
        uuid: Option<String>,
        size: u64,
    }
);

impl From<&wire::Filesystem> for Filesystem {
    fn from(f: &wire::Filesystem) -> Filesystem {
        Filesystem {
            device: f.device.clone(),
            fstype: f.fstype.clone(),
            label: f.label.clone(),
            uuid: f.uuid.clone(),
            size: f.size,
        }
    }
}

record!(
    /// A mount in the appliance: `device`, `mountpoint`, `fstype`, `readonly`.
    Mount {
        device: String,
        mountpoint: String,
        fstype: String,
        readonly: bool,
    }
);

impl From<&wire::Mount> for Mount {
    fn from(m: &wire::Mount) -> Mount {
        Mount {
            device: m.device.clone(),
            mountpoint: m.mountpoint.clone(),
            fstype: m.fstype.clone(),
            readonly: m.readonly,
        }
    }
}

record!(
    /// Filesystem statistics: `block_size`, `blocks`, `blocks_free`, `blocks_avail`,
    /// `files`, `files_free`, `name_max`.
    StatVfs {
        block_size: u64,
        blocks: u64,
        blocks_free: u64,
        blocks_avail: u64,
        files: u64,
        files_free: u64,
        name_max: u64,
    }
);

impl From<&wire::StatVfs> for StatVfs {
    fn from(v: &wire::StatVfs) -> StatVfs {
        StatVfs {
            block_size: v.block_size,
            blocks: v.blocks,
            blocks_free: v.blocks_free,
            blocks_avail: v.blocks_avail,
            files: v.files,
            files_free: v.files_free,
            name_max: v.name_max,
        }
    }
}

/// A JSON value as Python dicts, lists, str, int, float, bool and None.
pub fn json_to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(a) => {
            let l = PyList::empty(py);
            for x in a {
                l.append(json_to_py(py, x)?)?;
            }
            l.into_any()
        }
        Value::Object(o) => {
            let d = PyDict::new(py);
            for (k, x) in o {
                d.set_item(k, json_to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}

/// File data given by the caller: bytes, bytearray, memoryview, or str (as UTF-8).
pub fn data_arg(data: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(b) = data.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    if let Ok(s) = data.cast::<PyString>() {
        return Ok(s.to_str()?.as_bytes().to_vec());
    }
    if data.cast::<PyMemoryView>().is_ok() {
        let b = data.call_method0("tobytes")?;
        return Ok(b.cast::<PyBytes>()?.as_bytes().to_vec());
    }
    Err(crate::errors::InvalidArgument::new_err(format!(
        "data must be bytes, bytearray, memoryview or str, not {}",
        data.get_type().name()?
    )))
}
