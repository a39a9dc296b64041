//! The appliance kernel: embedded in this binary at build time (build.rs) and handed to
//! qemu as a sealed memfd (`-kernel /proc/self/fd/N`), so no temporary file is needed.
//! `$SKIFF_APPLIANCE=/path` runs another kernel instead (development).

use crate::error::{Error, Result};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The appliance ELF built by build.rs (empty when built with `SKIFF_NO_APPLIANCE=1`).
pub static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/appliance-kernel.elf"));

/// The embedded kernel in a sealed memfd, made once per process and shared by launches.
static MEMFD: OnceLock<OwnedFd> = OnceLock::new();

/// Where qemu finds the kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The `-kernel` argument.
    pub path: String,
    /// An fd qemu must inherit for `path` to resolve (the memfd), if any.
    pub inherit_fd: Option<RawFd>,
}

impl Kernel {
    /// `$SKIFF_APPLIANCE` if set, else the embedded kernel.
    pub fn locate() -> Result<Kernel> {
        if let Some(p) = std::env::var_os("SKIFF_APPLIANCE").filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            if !p.is_file() {
                return Err(Error::Config(format!(
                    "SKIFF_APPLIANCE={p:?} is not a file"
                )));
            }
            let path = p
                .to_str()
                .ok_or_else(|| Error::Config(format!("SKIFF_APPLIANCE={p:?} is not UTF-8")))?
                .to_string();
            return Ok(Kernel {
                path,
                inherit_fd: None,
            });
        }
        if EMBEDDED.is_empty() {
            return Err(Error::NoAppliance);
        }
        let fd = match MEMFD.get() {
            Some(fd) => fd,
            None => {
                let fd = embedded_memfd()?;
                // Another thread may have won the race; its memfd is as good as ours.
                MEMFD.get_or_init(|| fd)
            }
        };
        let raw = fd.as_raw_fd();
        Ok(Kernel {
            path: format!("/proc/self/fd/{raw}"),
            inherit_fd: Some(raw),
        })
    }
}

/// A close-on-exec memfd holding [`EMBEDDED`], sealed against any change.
fn embedded_memfd() -> Result<OwnedFd> {
    // SAFETY: the name is a valid NUL-terminated C string; memfd_create has no other
    // memory-safety preconditions.
    let raw = unsafe {
        libc::memfd_create(
            c"skiff-appliance".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: `raw` is a freshly created fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut file = File::from(fd);
    file.write_all(EMBEDDED)?;
    let fd = OwnedFd::from(file);
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on an fd we own, with an integer argument; no pointers involved.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memfd_holds_the_embedded_bytes_and_is_sealed() {
        let fd = embedded_memfd().unwrap();
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        assert_eq!(std::fs::read(&path).unwrap(), EMBEDDED);
        // Sealed: even a read-write reopen cannot change it.
        let w = std::fs::OpenOptions::new().write(true).open(&path);
        if let Ok(mut w) = w {
            assert!(w.write_all(b"x").is_err());
        }
    }
}
