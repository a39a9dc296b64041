//! `skiff mount` and `skiff umount`, like `guestmount` and `guestunmount`: the guest's
//! filesystems as a FUSE filesystem on the host ([`fs`]), served by one appliance.
//!
//! `skiff mount` launches the appliance, mounts the guest (`-m`, or the way the guest
//! mounts itself), mounts the FUSE filesystem and serves it until it is unmounted
//! (`skiff umount`, `umount`, `fusermount -u`) or the process gets SIGTERM, SIGINT or
//! SIGHUP (it then unmounts itself); then it sends what writes it held back, and shuts
//! the appliance down (the guest filesystems are synced and unmounted, the disks
//! flushed). A SIGKILL leaves the mountpoint to `fusermount -u`; the appliance powers
//! itself off when its channel closes.
//!
//! Without `-f` the command returns once the filesystem is mounted, leaving a process
//! in the background: itself again (`--daemon-child`), which says "ready" on a pipe
//! when mounted (or prints its error and exits), then leaves the terminal.
//!
//! The FUSE source is `skiff:PID` (`findmnt`, `/proc/mounts`), of type `fuse` (`fuse.skiff` when
//! mounted through fusermount3):
//! `skiff umount` finds the serving process there and waits for it to finish.

mod fs;

use crate::launch::{LaunchArgs, launch};
use crate::warnings;
use anyhow::{Context, Result, bail};
use clap::Args;
use fs::{FsOptions, SkiffFs, State};
use fuser::{MountOption, SessionACL};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `skiff mount` options (the launch options -a, -m, --rw, ... are shared).
#[derive(Args)]
pub struct MountArgs {
    /// Where to mount: an existing directory.
    pub mountpoint: PathBuf,
    /// Stay in the foreground (default: go to the background once mounted).
    #[arg(short = 'f', long, visible_alias = "no-fork")]
    pub foreground: bool,
    /// Write the serving process's id to FILE once mounted (removed when it ends).
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Show every file as owned by this user id.
    #[arg(long, value_name = "UID")]
    pub uid: Option<u32>,
    /// Show every file as owned by this group id.
    #[arg(long, value_name = "GID")]
    pub gid: Option<u32>,
    /// Seconds the kernel may cache names and attributes (default: 60 read-only, 1
    /// with --rw).
    #[arg(long, value_name = "SECS")]
    pub cache_timeout: Option<f64>,
    /// A FUSE mount option: allow_other, allow_root, or one passed to the kernel as
    /// it is (repeatable).
    #[arg(short = 'o', long = "option", value_name = "OPTION")]
    pub options: Vec<String>,
    /// Internal: the background process a `skiff mount` without -f starts.
    #[arg(long, hide = true)]
    pub daemon_child: bool,
}

/// `skiff umount` options.
#[derive(Args)]
pub struct UmountArgs {
    /// The mountpoint of a `skiff mount`.
    pub mountpoint: PathBuf,
    /// Seconds to wait for the serving process to shut the appliance down.
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    pub wait: f64,
    /// Do not retry while the filesystem is busy.
    #[arg(long)]
    pub no_retry: bool,
}

/// `skiff mount`.
pub fn run(a: &LaunchArgs, m: MountArgs) -> Result<()> {
    if !m.foreground && !m.daemon_child {
        return spawn_background();
    }
    if m.daemon_child {
        // Out of the caller's session: no terminal signals, no hangup.
        nix::unistd::setsid().context("setsid")?;
    }
    let mountpoint = m
        .mountpoint
        .canonicalize()
        .with_context(|| format!("mountpoint {}", m.mountpoint.display()))?;
    if !mountpoint.is_dir() {
        bail!("{}: not a directory", mountpoint.display());
    }
    let ttl = match m.cache_timeout {
        Some(t) if t.is_finite() && t >= 0.0 => Duration::from_secs_f64(t),
        Some(_) => bail!("--cache-timeout must be a number of seconds"),
        None if a.rw => Duration::from_secs(1),
        None => Duration::from_secs(60),
    };

    let mut s = launch(a)?;
    let done = skiff::inspect::mount_guest(&mut s, &a.mounts, !a.rw)?;
    for w in done.warnings {
        warnings::warn(w);
    }
    let mountpoints = s
        .mounts()?
        .into_iter()
        .map(|m| m.mountpoint)
        .filter(|m| m != "/")
        .collect();
    let state = Arc::new(Mutex::new(State::new(s)));
    let opts = FsOptions {
        readonly: !a.rw,
        ttl,
        uid: m.uid,
        gid: m.gid,
        mountpoints,
    };
    let config = fuse_config(a.rw, &m.options);
    let mut session =
        match fuser::Session::new(SkiffFs::new(state.clone(), opts), &mountpoint, &config) {
            Ok(s) => s,
            Err(e) => {
                let _ = shut_down(&state);
                return Err(e).with_context(|| format!("mounting on {}", mountpoint.display()));
            }
        };
    let mut unmounter = session.unmount_callable();
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .context("signal handlers")?;
    let handle = signals.handle();
    let mp = mountpoint.clone();
    let signal_thread = std::thread::spawn(move || {
        let mut signals = signals;
        for _ in signals.forever() {
            // A busy filesystem cannot be unmounted: detach it (it goes when the last
            // user leaves, and this process then finishes).
            if unmounter.unmount().is_err() {
                let _ = nix::mount::umount2(&mp, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    });
    // Absolute: the process leaves its working directory below.
    let pid_file = match &m.pid_file {
        Some(p) => Some(std::path::absolute(p).with_context(|| format!("{}", p.display()))?),
        None => None,
    };
    if let Some(p) = &pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if m.daemon_child {
        become_daemon()?;
    }
    // Hold no directory the user may want to unmount.
    let _ = std::env::set_current_dir("/");

    let served = session.run();
    handle.close();
    let _ = signal_thread.join();
    let r = shut_down(&state);
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    served.context("serving the FUSE filesystem")?;
    r
}

/// The FUSE mount options: read-only unless `rw`, the kernel checking permissions, the
/// source naming this process, and the user's `-o` options.
fn fuse_config(rw: bool, extra: &[String]) -> fuser::Config {
    let mut c = fuser::Config::default();
    c.mount_options = vec![
        MountOption::FSName(format!("skiff:{}", std::process::id())),
        MountOption::Subtype("skiff".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        if rw { MountOption::RW } else { MountOption::RO },
    ];
    for o in extra
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
    {
        match o {
            "allow_other" => c.acl = SessionACL::All,
            "allow_root" => c.acl = SessionACL::RootAndOwner,
            "ro" | "rw" => {} // --rw says
            "default_permissions" => {}
            o => c.mount_options.push(MountOption::CUSTOM(o.to_string())),
        }
    }
    c.n_threads = Some(1);
    c
}

/// Sends held-back writes and shuts the appliance down (syncing and unmounting the
/// guest's filesystems, flushing the disks).
fn shut_down(state: &Arc<Mutex<State>>) -> Result<()> {
    let (session, flushed) = state.lock().unwrap_or_else(|p| p.into_inner()).finish();
    let r = match session {
        Some(s) => s.shutdown().context("shutting the appliance down"),
        None => Ok(()),
    };
    if flushed.is_err() {
        bail!("writing held-back data failed: {:?}", flushed.err());
    }
    r
}

/// Starts this command again as the background process and waits until it says the
/// filesystem is mounted (exit 0), or fails (its error is on stderr already; exit as
/// it did).
fn spawn_background() -> Result<()> {
    let exe = std::env::current_exe().context("finding the skiff executable")?;
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    args.push("--daemon-child".into());
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the background process")?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if line.trim() == "ready" {
        return Ok(());
    }
    let status = child.wait()?;
    std::process::exit(status.code().filter(|&c| c != 0).unwrap_or(1));
}

/// In the background process, once mounted: tells the waiting `skiff mount` (on
/// stdout), then lets go of its stdout and stderr.
fn become_daemon() -> Result<()> {
    let mut out = std::io::stdout();
    writeln!(out, "ready")?;
    out.flush()?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    nix::unistd::dup2_stdout(&null)?;
    nix::unistd::dup2_stderr(&null)?;
    Ok(())
}

/// `skiff umount`: unmounts (retrying a few times while busy, as `guestunmount` does)
/// and waits for the serving process to shut its appliance down, so the disk images
/// are complete when this returns. Exit status 2 when nothing is mounted there.
pub fn umount(u: UmountArgs) -> Result<()> {
    let mp = u
        .mountpoint
        .canonicalize()
        .unwrap_or_else(|_| u.mountpoint.clone());
    let Some(entry) = find_mount(&mp)? else {
        eprintln!("skiff: {}: not mounted", mp.display());
        std::process::exit(2);
    };
    if !entry.fstype.starts_with("fuse") {
        bail!(
            "{}: not a FUSE filesystem (type {})",
            mp.display(),
            entry.fstype
        );
    }
    let pid = entry
        .source
        .strip_prefix("skiff:")
        .and_then(|p| p.parse::<u32>().ok());
    let tries = if u.no_retry { 1 } else { 6 };
    let mut delay = Duration::from_millis(100);
    for i in 0..tries {
        let out = Command::new(fusermount())
            .arg("-u")
            .arg(&mp)
            .stdin(Stdio::null())
            .output()
            .context("running fusermount3 (install fuse3)")?;
        if out.status.success() {
            break;
        }
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if i + 1 == tries || !err.contains("busy") {
            bail!("{}: {err}", mp.display());
        }
        std::thread::sleep(delay);
        delay *= 2;
    }
    if let Some(pid) = pid {
        wait_for_exit(pid, Duration::from_secs_f64(u.wait.max(0.0)))?;
    }
    Ok(())
}

/// `fusermount3`, else `fusermount`.
fn fusermount() -> &'static str {
    let found = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
    };
    if found("fusermount3") || !found("fusermount") {
        "fusermount3"
    } else {
        "fusermount"
    }
}

/// Waits until process `pid` (a skiff) has ended.
fn wait_for_exit(pid: u32, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let is_skiff = || {
        std::fs::read_to_string(proc_dir.join("comm")).is_ok_and(|c| c.trim() == "skiff")
            && !std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
    };
    while is_skiff() {
        if start.elapsed() > timeout {
            bail!("unmounted, but skiff (pid {pid}) has not finished within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// One line of /proc/self/mountinfo.
struct MountEntry {
    fstype: String,
    source: String,
}

/// The mount at `mp` (the last one there), from /proc/self/mountinfo.
fn find_mount(mp: &Path) -> Result<Option<MountEntry>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse_mountinfo(&info, &mp.to_string_lossy()))
}

/// Finds the last mount at `mp` in mountinfo text.
fn parse_mountinfo(info: &str, mp: &str) -> Option<MountEntry> {
    let mut found = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        if f.get(4).map(|m| unescape(m)).as_deref() != Some(mp) {
            continue;
        }
        if let (Some(fstype), Some(source)) = (f.get(sep + 1), f.get(sep + 2)) {
            found = Some(MountEntry {
                fstype: fstype.to_string(),
                source: unescape(source),
            });
        }
    }
    found
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let info = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    90 22 0:50 / /tmp/a\\040b rw,nosuid,nodev shared:2 - fuse.skiff skiff:1234 ro,user_id=0\n";
        let e = parse_mountinfo(info, "/tmp/a b").unwrap();
        assert_eq!(e.fstype, "fuse.skiff");
        assert_eq!(e.source, "skiff:1234");
        assert!(parse_mountinfo(info, "/tmp").is_none());
        assert_eq!(unescape("a\\134b"), "a\\b");
    }

    #[test]
    fn fuse_options() {
        let c = fuse_config(false, &["allow_other,max_read=1048576".into()]);
        assert_eq!(c.acl, SessionACL::All);
        assert!(c.mount_options.contains(&MountOption::RO));
        assert!(
            c.mount_options
                .contains(&MountOption::CUSTOM("max_read=1048576".into()))
        );
        assert!(
            fuse_config(true, &[])
                .mount_options
                .contains(&MountOption::RW)
        );
    }
}
