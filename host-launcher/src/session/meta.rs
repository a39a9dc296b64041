//! Ownership, times, extended attributes and the appliance's clock on a [`Session`];
//! files and directories created with a given mode; `sync`. The calls front-ends such as
//! `skiff mount` (FUSE) and the Python bindings map their own operations to.
//!
//! The appliance has no clock: what it stamps on the files it changes is the time the
//! host last sent ([`Session::set_clock`], [`Session::set_clock_now`]).

use super::{Session, unexpected};
use crate::error::{Error, Result};
use std::time::{SystemTime, UNIX_EPOCH};
use wire::{Bytes, Reply, Request};

/// Seconds since the epoch, now (negative before 1970).
pub fn unix_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

impl Session {
    fn meta_unit(&mut self, request: Request) -> Result<()> {
        match self.call(request)? {
            Reply::Unit => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Changes the owner of `path` (a final symlink itself, like `lchown`). Filesystems
    /// without owners (FAT) answer `Unsupported`.
    pub fn chown(&mut self, path: &str, uid: u32, gid: u32) -> Result<()> {
        self.meta_unit(Request::Chown {
            path: path.into(),
            uid,
            gid,
        })
    }

    /// Sets the access and modification times of `path` (seconds since the epoch).
    pub fn utimens(&mut self, path: &str, atime: i64, mtime: i64) -> Result<()> {
        self.meta_unit(Request::Utimens {
            path: path.into(),
            atime,
            mtime,
        })
    }

    /// `touch`: creates `path` empty (mode 0644) when missing, then sets its times to the
    /// appliance clock. Sends the host's time first ([`Session::set_clock_now`]).
    pub fn touch(&mut self, path: &str) -> Result<()> {
        self.set_clock_now()?;
        self.meta_unit(Request::Touch { path: path.into() })
    }

    /// Tells the appliance the time (seconds since the epoch): stamped on what it
    /// changes from now on.
    pub fn set_clock(&mut self, now: i64) -> Result<()> {
        self.meta_unit(Request::SetClock { now })
    }

    /// [`Session::set_clock`] with the host's clock.
    pub fn set_clock_now(&mut self) -> Result<()> {
        self.set_clock(unix_now())
    }

    /// Syncs every mounted filesystem and flushes every disk (the data is in the image
    /// files when this returns).
    pub fn sync(&mut self) -> Result<()> {
        self.meta_unit(Request::Sync)
    }

    /// Creates the file `path` empty with permission bits `mode` if it does not exist;
    /// an existing file is left as it is (with `truncate`, emptied). Its parent must
    /// exist.
    pub fn create_file(&mut self, path: &str, mode: u32, truncate: bool) -> Result<()> {
        match self.call(Request::WriteFile {
            path: path.into(),
            offset: 0,
            data: Bytes(Vec::new()),
            truncate,
            mode: mode & 0o7777,
        })? {
            Reply::Written(0) => Ok(()),
            Reply::Written(n) => Err(Error::BadFrame(format!("wrote {n} of 0 bytes"))),
            other => Err(unexpected(&other)),
        }
    }

    /// Creates the directory `path` with permission bits `mode`; its parent must exist.
    pub fn mkdir_mode(&mut self, path: &str, mode: u32) -> Result<()> {
        self.meta_unit(Request::Mkdir {
            path: path.into(),
            parents: false,
            mode: mode & 0o7777,
        })
    }

    /// The value of extended attribute `name` (`user.x`, `security.selinux`) of `path`.
    pub fn getxattr(&mut self, path: &str, name: &str) -> Result<Vec<u8>> {
        match self.call(Request::Getxattr {
            path: path.into(),
            name: name.into(),
        })? {
            Reply::Data(Bytes(d)) => Ok(d),
            other => Err(unexpected(&other)),
        }
    }

    /// The extended attribute names of `path`.
    pub fn listxattrs(&mut self, path: &str) -> Result<Vec<String>> {
        match self.call(Request::Listxattrs { path: path.into() })? {
            Reply::Names(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    /// Creates or replaces extended attribute `name` of `path`.
    pub fn setxattr(&mut self, path: &str, name: &str, value: &[u8]) -> Result<()> {
        self.meta_unit(Request::Setxattr {
            path: path.into(),
            name: name.into(),
            value: Bytes(value.to_vec()),
        })
    }

    /// Removes extended attribute `name` of `path`.
    pub fn removexattr(&mut self, path: &str, name: &str) -> Result<()> {
        self.meta_unit(Request::Removexattr {
            path: path.into(),
            name: name.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_after_2020() {
        assert!(unix_now() > 1_577_836_800);
    }
}
