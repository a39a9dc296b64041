//! Customize and sysprep: prepare guest images before they boot (virt-customize and
//! virt-sysprep, file changes only: skiff never runs guest binaries).
//!
//! ```no_run
//! use skiff::customize::{customize, Op, Options};
//! use skiff::{Appliance, DriveOptions, MountOptions};
//! let mut s = Appliance::builder().add_drive("guest.img", DriveOptions::writable()).launch()?;
//! s.mount("/dev/sda1", "/", MountOptions::writable())?;
//! let ops = vec![
//!     Op::parse("hostname", "web1")?,
//!     Op::parse("ssh-inject", "root:string:ssh-ed25519 AAAA... me@host")?,
//!     Op::parse("root-password", "password:secret")?,
//! ];
//! let report = customize(&mut s, &ops, &Options::default())?;
//! for c in &report.changes {
//!     println!("{}: {:?} {}", c.operation, c.action, c.path);
//! }
//! s.shutdown()?;
//! # Ok::<(), skiff::Error>(())
//! ```
//!
//! - [`Op`]: one virt-customize operation, parsed from its option name and value.
//! - [`customize`]: runs operations in order on a mounted guest; [`sysprep`](mod@sysprep):
//!   virt-sysprep's file operations.
//! - Every run goes twice over the operations: first as a dry run (nothing written;
//!   every check — users, files, types — made against the image and what the earlier
//!   operations would have done), then for real. Bad input is found before the first
//!   write; `--dry-run` stops after the first pass and reports what would change.
//! - [`guest`]: how a change is made (whole-file replacement keeping attributes and
//!   SELinux labels, no writing through symlinks); [`passwd`]: users and shadow;
//!   [`selinux`]: labels for new files; [`firstboot`]: first-boot scripts.

pub mod firstboot;
pub mod glob;
pub mod guest;
mod ops;
pub mod passwd;
pub mod selinux;
pub mod sysprep;

use crate::error::{Error, Result};
use crate::session::Session;
use guest::Guest;
use serde::Serialize;
use std::path::PathBuf;

pub use ops::Prepared;

/// The most bytes read from a small host file (a key, a password file, a script).
pub const MAX_HOST_SMALL_FILE: u64 = 1 << 20;

/// One customize operation, as virt-customize names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `--hostname NAME`: `/etc/hostname`, `/etc/hosts`, `/etc/sysconfig/network`.
    Hostname(String),
    /// `--ssh-inject USER[:file:PATH|:string:KEY]`.
    SshInject { user: String, key: SshKey },
    /// `--root-password SELECTOR` (user `root`) and `--password USER:SELECTOR`.
    Password {
        user: String,
        password: PasswordSpec,
    },
    /// `--timezone TZ`.
    Timezone(String),
    /// `--write FILE:CONTENT`.
    Write { path: String, content: String },
    /// `--append-line FILE:LINE`.
    AppendLine { path: String, line: String },
    /// `--upload HOSTFILE:GUESTPATH` (a guest directory: the file keeps its name).
    Upload { host: PathBuf, guest: String },
    /// `--copy-in HOSTPATH:GUESTDIR` (recursive).
    CopyIn { host: PathBuf, guest_dir: String },
    /// `--mkdir DIR` (`mkdir -p`).
    Mkdir(String),
    /// `--delete PATH` (`rm -rf`, glob patterns allowed).
    Delete(String),
    /// `--move SOURCE:DEST`.
    Move { from: String, to: String },
    /// `--chmod PERMISSIONS:FILE` (octal with a leading 0, else decimal: virt-customize's rule).
    Chmod { mode: u32, path: String },
    /// `--link TARGET:LINK[:LINK...]`.
    Link { target: String, links: Vec<String> },
    /// `--touch FILE`.
    Touch(String),
    /// `--truncate FILE`.
    Truncate(String),
    /// `--firstboot SCRIPT` (a host file).
    Firstboot(PathBuf),
    /// `--firstboot-command CMD`.
    FirstbootCommand(String),
    /// `--selinux-relabel`: `/.autorelabel` (skiff cannot run `setfiles`).
    SelinuxRelabel,
}

/// Where `--ssh-inject` takes the key from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshKey {
    /// The invoking user's newest `~/.ssh/id*.pub` (ssh-copy-id's default).
    Default,
    File(PathBuf),
    String(String),
}

/// A password selector (virt-builder's "USERS AND PASSWORDS").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSpec {
    /// `password:PW`.
    Password(String),
    /// `file:PATH`: the file's first line.
    File(PathBuf),
    /// `random`: a new random password, printed.
    Random,
    /// `disabled`: `*`.
    Disabled,
    /// `locked[:SELECTOR]`: `!` before the password (`locked`, `locked:disabled`: `!*`).
    Locked(Box<PasswordSpec>),
}

impl PasswordSpec {
    pub fn parse(s: &str) -> Result<PasswordSpec> {
        if let Some(rest) = s.strip_prefix("locked") {
            let inner = match rest.strip_prefix(':') {
                None if rest.is_empty() => PasswordSpec::Disabled,
                Some(r) => PasswordSpec::parse(r)?,
                None => return Err(bad_selector(s)),
            };
            if matches!(inner, PasswordSpec::Locked(_)) {
                return Err(bad_selector(s));
            }
            return Ok(PasswordSpec::Locked(Box::new(inner)));
        }
        if let Some(pw) = s.strip_prefix("password:") {
            return Ok(PasswordSpec::Password(pw.to_string()));
        }
        if let Some(f) = s.strip_prefix("file:") {
            return Ok(PasswordSpec::File(f.into()));
        }
        match s {
            "random" => Ok(PasswordSpec::Random),
            "disabled" => Ok(PasswordSpec::Disabled),
            _ => Err(bad_selector(s)),
        }
    }

    /// The selector as shown in messages: the password itself never.
    fn shown(&self) -> String {
        match self {
            PasswordSpec::Password(_) => "password:***".into(),
            PasswordSpec::File(p) => format!("file:{}", p.display()),
            PasswordSpec::Random => "random".into(),
            PasswordSpec::Disabled => "disabled".into(),
            PasswordSpec::Locked(inner) => format!("locked:{}", inner.shown()),
        }
    }
}

fn bad_selector(s: &str) -> Error {
    // Never echo what might be a password: only a known selector word is named.
    let kind = s.split(':').next().unwrap_or("");
    let known = ["password", "file", "random", "disabled", "locked"].contains(&kind);
    let shown = if known {
        format!(" {kind:?}...")
    } else {
        String::new()
    };
    Error::InvalidArgument(format!(
        "bad password selector{shown}: expected password:PW, file:PATH, random, disabled, locked or locked:SELECTOR"
    ))
}

/// `A:B` split at the first colon, both parts non-empty.
fn pair<'a>(option: &str, value: &'a str, what: &str) -> Result<(&'a str, &'a str)> {
    match value.split_once(':') {
        Some((a, b)) if !a.is_empty() => Ok((a, b)),
        _ => Err(Error::InvalidArgument(format!(
            "--{option}: expected {what}"
        ))),
    }
}

/// virt-customize's `--chmod` number: octal with a leading `0`, else decimal.
pub fn parse_mode(s: &str) -> Result<u32> {
    let r = if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8)
    } else {
        s.parse()
    };
    match r {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(Error::InvalidArgument(format!(
            "{s:?}: not a permission number (0755 is octal; without a leading 0 it is decimal)"
        ))),
    }
}

impl Op {
    /// The operation for option `--NAME VALUE` (the name without dashes, as
    /// virt-customize spells it: `hostname`, `ssh-inject`, `root-password`, ...).
    pub fn parse(name: &str, value: &str) -> Result<Op> {
        let v = value;
        let op = match name {
            "hostname" => Op::Hostname(v.into()),
            "ssh-inject" => {
                let (user, key) = match v.split_once(':') {
                    None => (v, SshKey::Default),
                    Some((u, sel)) => {
                        let key = if let Some(f) = sel.strip_prefix("file:") {
                            SshKey::File(f.into())
                        } else if let Some(k) = sel.strip_prefix("string:") {
                            SshKey::String(k.into())
                        } else {
                            return Err(Error::InvalidArgument(
                                "--ssh-inject: expected USER, USER:file:PATH or USER:string:KEY"
                                    .into(),
                            ));
                        };
                        (u, key)
                    }
                };
                Op::SshInject {
                    user: user.into(),
                    key,
                }
            }
            "root-password" => Op::Password {
                user: "root".into(),
                password: PasswordSpec::parse(v)?,
            },
            "password" => {
                let (user, sel) = pair(name, v, "USER:SELECTOR")?;
                Op::Password {
                    user: user.into(),
                    password: PasswordSpec::parse(sel)?,
                }
            }
            "timezone" => Op::Timezone(v.into()),
            "write" => {
                let (p, c) = pair(name, v, "FILE:CONTENT")?;
                Op::Write {
                    path: p.into(),
                    content: c.into(),
                }
            }
            "append-line" => {
                let (p, l) = pair(name, v, "FILE:LINE")?;
                Op::AppendLine {
                    path: p.into(),
                    line: l.into(),
                }
            }
            "upload" => {
                let (h, g) = pair(name, v, "FILE:DEST")?;
                Op::Upload {
                    host: h.into(),
                    guest: g.into(),
                }
            }
            "copy-in" => {
                let (h, g) = pair(name, v, "LOCALPATH:REMOTEDIR")?;
                Op::CopyIn {
                    host: h.into(),
                    guest_dir: g.into(),
                }
            }
            "mkdir" => Op::Mkdir(v.into()),
            "delete" => Op::Delete(v.into()),
            "move" => {
                let (f, t) = pair(name, v, "SOURCE:DEST")?;
                Op::Move {
                    from: f.into(),
                    to: t.into(),
                }
            }
            "chmod" => {
                let (m, p) = pair(name, v, "PERMISSIONS:FILE")?;
                Op::Chmod {
                    mode: parse_mode(m)?,
                    path: p.into(),
                }
            }
            "link" => {
                let mut parts = v.split(':');
                let target = parts.next().unwrap_or_default().to_string();
                let links: Vec<String> = parts.map(String::from).collect();
                if target.is_empty() || links.is_empty() || links.iter().any(String::is_empty) {
                    return Err(Error::InvalidArgument(
                        "--link: expected TARGET:LINK[:LINK...]".into(),
                    ));
                }
                Op::Link { target, links }
            }
            "touch" => Op::Touch(v.into()),
            "truncate" => Op::Truncate(v.into()),
            "firstboot" => Op::Firstboot(v.into()),
            "firstboot-command" => Op::FirstbootCommand(v.into()),
            "selinux-relabel" => Op::SelinuxRelabel,
            "run" | "run-command" | "install" | "update" | "uninstall" | "firstboot-install"
            | "edit" | "scrub" | "sm-register" | "sm-attach" | "sm-remove" | "sm-unregister" => {
                return Err(not_offered(name));
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "--{other}: not a customize operation"
                )));
            }
        };
        op.check()?;
        Ok(op)
    }

    /// Checks what can be checked without the guest or host files.
    fn check(&self) -> Result<()> {
        use guest::check_path;
        match self {
            Op::Hostname(h) => check_hostname(h),
            Op::SshInject { user, key } => {
                passwd::check_user_name(user)?;
                if let SshKey::String(k) = key {
                    ops::check_key_line(k)?;
                }
                Ok(())
            }
            Op::Password { user, .. } => passwd::check_user_name(user),
            Op::Timezone(tz) => check_timezone(tz),
            Op::Write { path, .. }
            | Op::AppendLine { path, .. }
            | Op::Mkdir(path)
            | Op::Delete(path)
            | Op::Chmod { path, .. }
            | Op::Touch(path)
            | Op::Truncate(path) => check_path(path),
            Op::Upload { guest, .. } => check_path(guest),
            Op::CopyIn { guest_dir, .. } => check_path(guest_dir),
            Op::Move { from, to } => check_path(from).and(check_path(to)),
            Op::Link { links, .. } => links.iter().try_for_each(|l| check_path(l)),
            Op::Firstboot(_) | Op::SelinuxRelabel => Ok(()),
            Op::FirstbootCommand(c) => {
                if c.contains('\0') {
                    return Err(Error::InvalidArgument("NUL in a command".into()));
                }
                Ok(())
            }
        }
    }

    /// The option as given, for messages and the change log (passwords redacted).
    pub fn shown(&self) -> String {
        match self {
            Op::Hostname(h) => format!("--hostname {h}"),
            Op::SshInject { user, key } => match key {
                SshKey::Default => format!("--ssh-inject {user}"),
                SshKey::File(p) => format!("--ssh-inject {user}:file:{}", p.display()),
                SshKey::String(_) => format!("--ssh-inject {user}:string:..."),
            },
            Op::Password { user, password } if user == "root" => {
                format!("--root-password {}", password.shown())
            }
            Op::Password { user, password } => format!("--password {user}:{}", password.shown()),
            Op::Timezone(t) => format!("--timezone {t}"),
            Op::Write { path, .. } => format!("--write {path}"),
            Op::AppendLine { path, .. } => format!("--append-line {path}"),
            Op::Upload { host, guest } => format!("--upload {}:{guest}", host.display()),
            Op::CopyIn { host, guest_dir } => {
                format!("--copy-in {}:{guest_dir}", host.display())
            }
            Op::Mkdir(p) => format!("--mkdir {p}"),
            Op::Delete(p) => format!("--delete {p}"),
            Op::Move { from, to } => format!("--move {from}:{to}"),
            Op::Chmod { mode, path } => format!("--chmod 0{mode:o}:{path}"),
            Op::Link { target, links } => format!("--link {target}:{}", links.join(":")),
            Op::Touch(p) => format!("--touch {p}"),
            Op::Truncate(p) => format!("--truncate {p}"),
            Op::Firstboot(p) => format!("--firstboot {}", p.display()),
            Op::FirstbootCommand(c) => format!("--firstboot-command {c}"),
            Op::SelinuxRelabel => "--selinux-relabel".into(),
        }
    }
}

/// Why `--run`, `--install` and friends are not there.
pub fn not_offered(name: &str) -> Error {
    Error::InvalidArgument(format!(
        "--{name} is not offered: skiff never runs guest binaries (it changes files only); \
         use --firstboot-command 'CMD' to run it at the guest's first boot"
    ))
}

/// A hostname (or FQDN) as RFC 1123 allows.
fn check_hostname(h: &str) -> Result<()> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{h:?}: not a valid hostname"
        )))
    }
}

/// A zoneinfo name: `Europe/London`, `UTC`, `America/Argentina/Buenos_Aires`.
fn check_timezone(tz: &str) -> Result<()> {
    let ok = !tz.is_empty()
        && tz.len() <= 255
        && !tz.starts_with('/')
        && tz
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && tz
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{tz:?}: not a timezone name (like Europe/London)"
        )))
    }
}

/// What a change did.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Replace,
    Append,
    Remove,
    Empty,
    Mkdir,
    Symlink,
    Move,
    Chmod,
    Chown,
    Touch,
    Truncate,
}

impl Action {
    /// The verb for text output (`would ...` in a dry run).
    pub fn verb(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Replace => "replace",
            Action::Append => "append to",
            Action::Remove => "remove",
            Action::Empty => "empty",
            Action::Mkdir => "mkdir",
            Action::Symlink => "symlink",
            Action::Move => "move",
            Action::Chmod => "chmod",
            Action::Chown => "chown",
            Action::Touch => "touch",
            Action::Truncate => "truncate",
        }
    }
}

/// One change made (or, in a dry run, that would be made). JSON field names are stable.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The operation as given (`--hostname web1`, `machine-id`).
    pub operation: String,
    pub action: Action,
    pub path: String,
    /// Size written, new mode, owner, symlink target, destination...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What a run did.
#[derive(Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Nothing was written: what would change.
    pub dry_run: bool,
    pub changes: Vec<Change>,
    /// Things to tell the user (a random password chosen, ...).
    pub notes: Vec<String>,
}

/// How a run goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Check and report only; write nothing (the session may be read-only).
    pub dry_run: bool,
}

/// Runs `ops` in order on the guest mounted at `/` in `s` (read-write unless a dry
/// run). Host files are read and every operation is checked against the guest before
/// the first write; an operation that fails is [`Error::Operation`] naming it.
pub fn customize(s: &mut Session, ops: &[Op], opts: &Options) -> Result<Report> {
    let prepared = Prepared::new(ops)?;
    run(s, &prepared, None, opts)
}

/// The two passes (check, then write) over sysprep operations and customize steps.
pub(crate) fn run(
    s: &mut Session,
    prepared: &Prepared,
    sysprep_ops: Option<&[&'static sysprep::Operation]>,
    opts: &Options,
) -> Result<Report> {
    let passes: &[bool] = if opts.dry_run {
        &[true]
    } else {
        &[true, false]
    };
    let mut report = Report::default();
    for &dry in passes {
        let mut g = Guest::new(s, dry)?;
        match sysprep_ops {
            None => prepared.apply(&mut g)?,
            Some(ops) => sysprep::apply(&mut g, ops, prepared)?,
        }
        let relabel = prepared.wants_relabel();
        let (changes, mut notes) = g.finish(relabel)?;
        for (user, pw) in prepared.random_passwords() {
            notes.push(format!("random password for {user}: {pw}"));
        }
        report = Report {
            dry_run: dry,
            changes,
            notes,
        };
    }
    Ok(report)
}

/// Wraps `e` as the failure of operation `op`.
pub(crate) fn failed(op: &str, e: Error) -> Error {
    match e {
        e @ Error::Operation { .. } => e,
        e => Error::Operation {
            op: op.to_string(),
            error: Box::new(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_virt_customize_options() {
        assert_eq!(
            Op::parse("hostname", "web1.example.com").unwrap(),
            Op::Hostname("web1.example.com".into())
        );
        assert!(Op::parse("hostname", "bad_name").is_err());
        assert!(Op::parse("hostname", "-x").is_err());
        assert_eq!(
            Op::parse("ssh-inject", "alice:string:ssh-ed25519 AAAA a@b").unwrap(),
            Op::SshInject {
                user: "alice".into(),
                key: SshKey::String("ssh-ed25519 AAAA a@b".into())
            }
        );
        assert_eq!(
            Op::parse("ssh-inject", "root").unwrap(),
            Op::SshInject {
                user: "root".into(),
                key: SshKey::Default
            }
        );
        assert!(Op::parse("ssh-inject", "root:bogus:x").is_err());
        assert!(Op::parse("ssh-inject", "root:string:a\nb").is_err());
        assert_eq!(
            Op::parse("root-password", "password:s3:cr:et").unwrap(),
            Op::Password {
                user: "root".into(),
                password: PasswordSpec::Password("s3:cr:et".into())
            }
        );
        assert_eq!(
            Op::parse("password", "bob:locked").unwrap(),
            Op::Password {
                user: "bob".into(),
                password: PasswordSpec::Locked(Box::new(PasswordSpec::Disabled))
            }
        );
        assert_eq!(
            Op::parse("password", "bob:locked:password:x").unwrap(),
            Op::Password {
                user: "bob".into(),
                password: PasswordSpec::Locked(Box::new(PasswordSpec::Password("x".into())))
            }
        );
        assert!(Op::parse("password", "bob:lockedx").is_err());
        assert!(Op::parse("root-password", "hunter2").is_err());
        let e = Op::parse("root-password", "hunter2:x")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("x\""), "{e}");
        assert_eq!(
            Op::parse("write", "/etc/motd:hello: world").unwrap(),
            Op::Write {
                path: "/etc/motd".into(),
                content: "hello: world".into()
            }
        );
        assert!(Op::parse("write", "etc/motd:x").is_err());
        assert_eq!(
            Op::parse("chmod", "0700:/x").unwrap(),
            Op::Chmod {
                mode: 0o700,
                path: "/x".into()
            }
        );
        assert_eq!(
            Op::parse("chmod", "448:/x").unwrap(),
            Op::Chmod {
                mode: 0o700,
                path: "/x".into()
            }
        );
        assert!(Op::parse("chmod", "0999:/x").is_err());
        assert_eq!(
            Op::parse("link", "/a:/b:/c").unwrap(),
            Op::Link {
                target: "/a".into(),
                links: vec!["/b".into(), "/c".into()]
            }
        );
        assert!(Op::parse("link", "/a").is_err());
        assert!(Op::parse("timezone", "Europe/London").is_ok());
        assert!(Op::parse("timezone", "../../etc/shadow").is_err());
        let e = Op::parse("run", "x.sh").unwrap_err().to_string();
        assert!(e.contains("--firstboot-command"), "{e}");
        assert!(Op::parse("install", "vim").is_err());
        assert!(Op::parse("frobnicate", "x").is_err());
    }

    /// Deterministic mutations of `seed` (bit flips, truncations, byte insertions).
    pub(crate) fn mutations(seed: &[u8], n: usize) -> Vec<Vec<u8>> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut out = Vec::new();
        for _ in 0..n {
            let mut v = seed.to_vec();
            for _ in 0..(next() % 8 + 1) {
                if v.is_empty() {
                    break;
                }
                let i = (next() as usize) % v.len();
                match next() % 4 {
                    0 => v[i] ^= 1 << (next() % 8),
                    1 => v.truncate(i),
                    2 => v.insert(i, b":\n\r\0#*!$"[(next() % 8) as usize]),
                    _ => v[i] = next() as u8,
                }
            }
            out.push(v);
        }
        out
    }

    /// Hostile guest text (passwd, shadow, hosts, SELinux config) never panics the
    /// host-side parsers, and a shadow rewrite keeps every other byte.
    #[test]
    fn hostile_guest_text_never_panics() {
        let passwd_seed =
            b"root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:A,,,:/home/alice:/bin/sh\n";
        let shadow_seed = b"root:*:19000:0:99999:7:::\n# c\nalice:!:1:0:99999:7:::";
        for m in mutations(passwd_seed, 3000) {
            let _ = passwd::find_user(&m, "alice");
            let _ = passwd::users(&m);
        }
        for m in mutations(shadow_seed, 3000) {
            if let Some(out) = passwd::set_shadow_password(&m, "alice", "$6$s$h") {
                // Only alice's field changed: the bytes before her line are the same.
                let i = m.windows(6).position(|w| w == b"alice:").unwrap_or(0);
                assert_eq!(&out[..i], &m[..i]);
            }
        }
        let hosts = b"127.0.0.1 localhost\n127.0.1.1 old.example old # old\n";
        for m in mutations(hosts, 2000) {
            let t = String::from_utf8_lossy(&m);
            let _ = ops::rewrite_hosts(&t, "old.example", "new");
            let _ = ops::set_shell_var(&t, "HOSTNAME", "new");
            let _ = selinux::parse_config(&t);
            for pat in ["*.log*", "[!a-", "[]", "?*?"] {
                let _ = glob::matches(pat, &t);
            }
        }
    }

    #[test]
    fn secrets_are_not_shown() {
        let op = Op::parse("password", "bob:locked:password:hunter2").unwrap();
        assert!(!op.shown().contains("hunter2"), "{}", op.shown());
        let op = Op::parse("root-password", "password:hunter2").unwrap();
        assert_eq!(op.shown(), "--root-password password:***");
    }
}
