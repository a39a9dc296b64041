//! The qemu process: spawned with chosen fds inherited, its stdout (the appliance's debug
//! port log) and stderr (qemu's own messages) collected by two threads, killed on drop.

use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// qemu's exit status after the appliance writes 0x10 to isa-debug-exit (`(v << 1) | 1`).
pub const EXIT_CLEAN: i32 = 33;
/// ... and after it writes 0x11 (panic).
pub const EXIT_PANIC: i32 = 35;

/// The most log kept per qemu; beyond it the oldest half is dropped (a misbehaving
/// appliance must not grow the host's memory without bound).
const LOG_CAP: usize = 1 << 20;

/// A running (or exited, not yet dropped) qemu.
pub struct Qemu {
    child: Child,
    status: Option<ExitStatus>,
    log: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Qemu {
    /// Spawns `binary args...` with stdin from /dev/null, letting it inherit `fds` (which
    /// are close-on-exec in this process). `verbose` echoes its output to our stderr.
    pub fn spawn(binary: &PathBuf, args: &[String], fds: &[RawFd], verbose: bool) -> Result<Qemu> {
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        inherit_fds(&mut cmd, fds.to_vec());
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                Error::QemuNotFound {
                    binary: binary.clone(),
                }
            }
            _ => Error::Io(e),
        })?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(collect(out, log.clone(), verbose));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(collect(err, log.clone(), verbose));
        }
        Ok(Qemu {
            child,
            status: None,
            log,
            readers,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if qemu has exited (reaps it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `limit` for qemu to exit.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        let mut nap = Duration::from_micros(200);
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            std::thread::sleep(nap.min(deadline - now));
            nap = (nap * 2).min(Duration::from_millis(5));
        }
    }

    /// Kills qemu (if still running) and reaps it.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
        self.status
    }

    /// What qemu printed so far (appliance log, then qemu's messages as they came).
    pub fn log(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&log).into_owned()
    }

    /// The whole log once qemu has exited: waits (briefly) for the reader threads to see
    /// the pipes close.
    pub fn final_log(&mut self) -> String {
        if self.status.is_some() {
            let deadline = Instant::now() + Duration::from_secs(1);
            while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.log()
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Lets the process that `cmd` spawns inherit `fds` (close-on-exec in this process, and
/// so in every other child it spawns) under the same numbers.
pub(crate) fn inherit_fds(cmd: &mut Command, fds: Vec<RawFd>) {
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl,
    // which is async-signal-safe; it allocates nothing (`fds` was moved in beforehand)
    // and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Takes ownership of the Unix socket a parent process handed down as fd `fd` (see
/// [`crate::Session::inherit_into`]), after checking that `fd` is open and a socket.
/// Call it once per fd: the returned stream closes it when dropped.
pub fn inherited_socket(fd: RawFd) -> Result<UnixStream> {
    let bad = |why: &str| Error::Config(format!("inherited appliance fd {fd}: {why}"));
    if fd <= 2 {
        return Err(bad("not a socket (a standard stream)"));
    }
    // SAFETY: fcntl(F_GETFD) only reads the descriptor flags; an fd that is not open
    // gives EBADF and no other effect.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(bad("not open"));
    }
    // SAFETY: `fd` is open (checked just above) and, by this function's contract, was
    // handed to this process for the session alone: nothing else here owns or closes it.
    let stream = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    if let Err(e) = stream.local_addr() {
        // Not a socket: give the descriptor back untouched rather than closing it.
        std::mem::forget(stream);
        return Err(bad(&e.to_string()));
    }
    // Close-on-exec from now on: our own children must not hold the channel.
    // SAFETY: fcntl(F_SETFD) on a descriptor this stream owns.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(stream)
}

/// A thread that appends everything from `r` to `log` (and to stderr when verbose).
fn collect(
    mut r: impl Read + Send + 'static,
    log: Arc<Mutex<Vec<u8>>>,
    verbose: bool,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if verbose {
                        let _ = std::io::stderr().write_all(&buf[..n]);
                    }
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    log.extend_from_slice(&buf[..n]);
                    if log.len() > LOG_CAP {
                        let drop_to = log.len() - LOG_CAP / 2;
                        log.drain(..drop_to);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    })
}

/// A human description of an exit status ("exit status 1", "killed by signal 9").
pub fn describe(status: Option<ExitStatus>) -> String {
    match status {
        None => "still running".into(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(EXIT_CLEAN), _) => format!("exit status {EXIT_CLEAN}: the appliance powered off"),
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => s.to_string(),
        },
    }
}
