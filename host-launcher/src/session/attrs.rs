//! Ownership, times and extended attributes of guest files (`chown`, `utimens`,
//! `touch`, `getxattr`, ...), and the host's clock the appliance stamps changes with.
//! Writable filesystems with owners (ext4, XFS) take them; FAT answers `Unsupported`,
//! and the filesystems skiff does not write (btrfs, NTFS) answer `ReadOnly` naming
//! themselves.

use crate::error::Result;
use crate::session::{Session, unexpected};
use wire::{Bytes, Reply, Request};

/// One extended attribute: its name (`user.comment`, `security.selinux`) and value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Xattr {
    pub name: String,
    #[serde(serialize_with = "lossy")]
    pub value: Vec<u8>,
}

fn lossy<S: serde::Serializer>(v: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(v))
}

impl Session {
    fn unit_call(&mut self, request: Request) -> Result<()> {
        match self.call(request)? {
            Reply::Unit => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Sets the owner of `path` (not following a final symlink, like `lchown`).
    ///
    /// ```no_run
    /// # let mut s = skiff::Appliance::builder().add_drive("disk.img", skiff::DriveOptions::writable()).launch()?;
    /// # s.mount("/dev/sda", "/", skiff::MountOptions::writable())?;
    /// s.mkdir_p("/home/user/.ssh")?;
    /// s.write_file("/home/user/.ssh/authorized_keys", b"ssh-ed25519 AAAA... me\n")?;
    /// for p in ["/home/user/.ssh", "/home/user/.ssh/authorized_keys"] {
    ///     s.chown(p, 1000, 1000)?;
    /// }
    /// s.shutdown()?;
    /// # Ok::<(), skiff::Error>(())
    /// ```
    pub fn chown(&mut self, path: &str, uid: u32, gid: u32) -> Result<()> {
        self.unit_call(Request::Chown {
            path: path.into(),
            uid,
            gid,
        })
    }

    /// Sets the access and modification times of `path` (seconds since the epoch).
    pub fn utimens(&mut self, path: &str, atime: i64, mtime: i64) -> Result<()> {
        self.unit_call(Request::Utimens {
            path: path.into(),
            atime,
            mtime,
        })
    }

    /// Creates `path` empty (mode 0644) if it does not exist, then sets its times to now
    /// (the host's clock), like `touch`.
    pub fn touch(&mut self, path: &str) -> Result<()> {
        self.unit_call(Request::Touch { path: path.into() })
    }

    /// The value of the extended attribute `name` of `path`.
    pub fn getxattr(&mut self, path: &str, name: &str) -> Result<Vec<u8>> {
        match self.call(Request::Getxattr {
            path: path.into(),
            name: name.into(),
        })? {
            Reply::Data(Bytes(d)) => Ok(d),
            other => Err(unexpected(&other)),
        }
    }

    /// The extended attribute names of `path` (not following a final symlink).
    pub fn listxattrs(&mut self, path: &str) -> Result<Vec<String>> {
        match self.call(Request::Listxattrs { path: path.into() })? {
            Reply::Names(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    /// Every extended attribute of `path` with its value (guestfish's `lgetxattrs`).
    pub fn lgetxattrs(&mut self, path: &str) -> Result<Vec<Xattr>> {
        let names = self.listxattrs(path)?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let value = self.getxattr(path, &name)?;
            out.push(Xattr { name, value });
        }
        Ok(out)
    }

    /// Creates or replaces the extended attribute `name` of `path`.
    pub fn setxattr(&mut self, path: &str, name: &str, value: &[u8]) -> Result<()> {
        self.unit_call(Request::Setxattr {
            path: path.into(),
            name: name.into(),
            value: Bytes(value.to_vec()),
        })
    }

    /// Removes the extended attribute `name` of `path`.
    pub fn removexattr(&mut self, path: &str, name: &str) -> Result<()> {
        self.unit_call(Request::Removexattr {
            path: path.into(),
            name: name.into(),
        })
    }

    /// Gives the appliance the time to stamp changes with (seconds since the epoch).
    /// The session sends the host's clock by itself before changes; this is for a
    /// caller that wants another time (reproducible images).
    pub fn set_clock(&mut self, now: i64) -> Result<()> {
        let id = self.submit(Request::SetClock { now })?;
        match self.complete(id)? {
            Reply::Unit => {
                // Keep this time for the next changes instead of the host's.
                self.clock_fixed = true;
                Ok(())
            }
            other => Err(unexpected(&other)),
        }
    }
}
