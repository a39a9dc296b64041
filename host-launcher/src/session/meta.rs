//! Files and directories created with a given mode, `sync`, and the host's clock sent
//! now: calls front-ends such as `skiff mount` (FUSE) and the Python bindings map their
//! own operations to (ownership, times and xattrs are in [`super::attrs`]).
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

    /// [`Session::set_clock`] with the host's clock.
    /// (Unlike [`Session::set_clock`], the session goes on sending the host's clock
    /// itself.)
    pub fn set_clock_now(&mut self) -> Result<()> {
        self.meta_unit(Request::SetClock { now: unix_now() })
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_after_2020() {
        assert!(unix_now() > 1_577_836_800);
    }
}
