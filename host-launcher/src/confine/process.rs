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
    ///
    /// qemu dies with this process: it is spawned by one thread that lives as long as
    /// the process ([`spawn_from_keeper`]) with `PR_SET_PDEATHSIG` = SIGKILL, so a
    /// `kill -9` of the client takes its appliances with it, whichever thread launched
    /// them (the parent-death signal follows the thread that forked, and pool refill
    /// threads come and go). A qemu that drops to another uid (see [`crate::confine`])
    /// loses that signal at the uid change; the appliance then powers itself off when
    /// the host end of its channel closes.
    pub fn spawn(binary: &PathBuf, args: &[String], fds: &[RawFd], verbose: bool) -> Result<Qemu> {
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C (SIGINT to the terminal's foreground
            // group) reaches skiff, which shuts the appliance down cleanly, not qemu,
            // which would end it mid-write. It still dies with skiff (below).
            .process_group(0);
        inherit_fds(&mut cmd, fds.to_vec());
        die_with_parent(&mut cmd);
        let mut child = spawn_from_keeper(cmd).map_err(|e| match e.kind() {
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

/// Makes the process `cmd` spawns get SIGKILL when the thread that spawns it ends (and
/// so, spawned from the keeper thread, when this process ends). A parent already gone by
/// the time the child runs is caught by comparing `getppid` with the pid before fork.
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl,
    // getppid and _exit, which are async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

type SpawnJob = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` from the keeper: one thread, started on first use, that lives as long as
/// this process and does nothing but spawn. Children whose parent-death signal is set
/// (see [`die_with_parent`]) then die with the process, not with whichever short-lived
/// thread asked for them.
pub fn spawn_from_keeper(cmd: Command) -> std::io::Result<Child> {
    static KEEPER: Mutex<Option<std::sync::mpsc::Sender<SpawnJob>>> = Mutex::new(None);
    let (tx, rx) = std::sync::mpsc::channel();
    let job = (cmd, tx);
    let job = {
        let mut keeper = KEEPER.lock().unwrap_or_else(|p| p.into_inner());
        let sender = keeper.get_or_insert_with(|| {
            let (jobs, queue) = std::sync::mpsc::channel::<SpawnJob>();
            // The keeper never returns while the process runs: `jobs` lives in KEEPER.
            let _ = std::thread::Builder::new()
                .name("skiff-spawner".into())
                .spawn(move || {
                    for (mut cmd, reply) in queue {
                        let _ = reply.send(cmd.spawn());
                    }
                });
            jobs
        });
        match sender.send(job) {
            Ok(()) => None,
            Err(std::sync::mpsc::SendError(job)) => Some(job),
        }
    };
    if let Some((mut cmd, _)) = job {
        // The keeper could not be started (out of threads): spawn here.
        return cmd.spawn();
    }
    rx.recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("the spawner thread is gone")))
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
