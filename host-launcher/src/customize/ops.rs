//! The customize operations: host inputs read once ([`Prepared::new`]), then each
//! operation applied to a [`Guest`].

use super::guest::{Guest, NewAttrs};
use super::{MAX_HOST_SMALL_FILE, Op, PasswordSpec, SshKey, failed, firstboot, glob, passwd};
use crate::error::{Error, Result};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use wire::{ErrorKind, FileType};

/// The most bytes of `/etc/passwd`, `/etc/shadow`, `authorized_keys` and similar read.
const MAX_GUEST_TEXT: u64 = 16 << 20;
/// Deepest host tree `--copy-in` descends, and the most entries it copies.
const MAX_COPY_DEPTH: usize = 128;
const MAX_COPY_ENTRIES: usize = 1_000_000;

fn remote(kind: ErrorKind, message: String) -> Error {
    Error::Remote(wire::Error::new(kind, message))
}

/// A public key line: one line, printable, not empty.
pub fn check_key_line(k: &str) -> Result<()> {
    let k = k.trim();
    if k.is_empty() || k.len() > 16384 || k.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(
            "the ssh key must be one non-empty line of printable text".into(),
        ));
    }
    Ok(())
}

/// The first line of `data` that is not blank or a comment.
fn first_key_line(data: &[u8], from: &Path) -> Result<String> {
    let text = String::from_utf8_lossy(data);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| Error::InvalidArgument(format!("{}: no key in the file", from.display())))?
        .to_string();
    check_key_line(&line)?;
    Ok(line)
}

/// A small host file, bounded.
fn read_host_small(p: &Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(p)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", p.display())))?;
    let mut data = Vec::new();
    f.take(MAX_HOST_SMALL_FILE + 1).read_to_end(&mut data)?;
    if data.len() as u64 > MAX_HOST_SMALL_FILE {
        return Err(Error::InvalidArgument(format!(
            "{}: larger than {MAX_HOST_SMALL_FILE} bytes",
            p.display()
        )));
    }
    Ok(data)
}

/// ssh-copy-id's default: the newest `~/.ssh/id*.pub` of the invoking user.
fn default_public_key() -> Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .ok_or_else(|| Error::InvalidArgument("HOME is not set: give the key".into()))?;
    let dir = Path::new(&home).join(".ssh");
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("id") && name.ends_with(".pub")) {
                continue;
            }
            let Ok(m) = e.metadata() else { continue };
            let t = m.modified().unwrap_or(std::time::UNIX_EPOCH);
            if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
                best = Some((t, e.path()));
            }
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "no public key (id*.pub) in {}: give USER:file:PATH or USER:string:KEY",
            dir.display()
        ))
    })
}

/// A host file to upload: what it is, checked before the guest is touched.
#[derive(Debug, Clone)]
struct HostFile {
    size: u64,
    attrs: NewAttrs,
}

fn host_file(p: &Path) -> Result<HostFile> {
    let m = std::fs::metadata(p)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", p.display())))?;
    if !m.is_file() {
        return Err(Error::InvalidArgument(format!(
            "{}: not a regular file",
            p.display()
        )));
    }
    Ok(HostFile {
        size: m.len(),
        attrs: NewAttrs {
            mode: m.permissions().mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        },
    })
}

/// What an operation needs from the host, read once before any pass.
#[derive(Debug, Clone)]
enum Input {
    None,
    Key(String),
    /// The password field to write, as a function of a fresh salt: `None` password:
    /// disabled (`*`).
    Password {
        plain: Option<String>,
        locked: bool,
    },
    Script {
        name: String,
        content: Vec<u8>,
    },
    Upload(HostFile),
}

/// Operations with their host inputs read and checked: ready to run (twice).
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    steps: Vec<(Op, String, Input)>,
}

impl Prepared {
    /// Reads every host input `ops` need (keys, password files, scripts) and checks
    /// files to upload exist. Random passwords are chosen here, once.
    pub fn new(ops: &[Op]) -> Result<Prepared> {
        let mut steps = Vec::new();
        for op in ops {
            let shown = op.shown();
            let input = prepare(op).map_err(|e| failed(&shown, e))?;
            steps.push((op.clone(), shown, input));
        }
        Ok(Prepared { steps })
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Was `--selinux-relabel` asked for?
    pub fn wants_relabel(&self) -> bool {
        self.steps
            .iter()
            .any(|(op, _, _)| matches!(op, Op::SelinuxRelabel))
    }

    /// Runs every operation in order.
    pub fn apply(&self, g: &mut Guest) -> Result<()> {
        for (op, shown, input) in &self.steps {
            g.op = shown.clone();
            apply(g, op, input).map_err(|e| failed(shown, e))?;
        }
        Ok(())
    }

    /// Random passwords chosen (user, password), to tell the user.
    pub fn random_passwords(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (op, _, input) in &self.steps {
            if let (
                Op::Password {
                    user,
                    password: PasswordSpec::Random,
                },
                Input::Password { plain: Some(p), .. },
            ) = (op, input)
            {
                out.push((user.clone(), p.clone()));
            }
        }
        out
    }
}

fn resolve_password(spec: &PasswordSpec) -> Result<(Option<String>, bool)> {
    Ok(match spec {
        PasswordSpec::Password(p) => (Some(p.clone()), false),
        PasswordSpec::File(f) => {
            let data = read_host_small(f)?;
            let text = String::from_utf8(data)
                .map_err(|_| Error::InvalidArgument(format!("{}: not UTF-8 text", f.display())))?;
            let line = text.lines().next().unwrap_or("").to_string();
            (Some(line), false)
        }
        PasswordSpec::Random => (Some(passwd::random_password()?), false),
        PasswordSpec::Disabled => (None, false),
        PasswordSpec::Locked(inner) => (resolve_password(inner)?.0, true),
    })
}

fn prepare(op: &Op) -> Result<Input> {
    Ok(match op {
        Op::SshInject { key, .. } => Input::Key(match key {
            SshKey::String(k) => k.trim().to_string(),
            SshKey::File(p) => first_key_line(&read_host_small(p)?, p)?,
            SshKey::Default => {
                let p = default_public_key()?;
                first_key_line(&read_host_small(&p)?, &p)?
            }
        }),
        Op::Password { password, .. } => {
            let (plain, locked) = resolve_password(password)?;
            Input::Password { plain, locked }
        }
        Op::Firstboot(p) => Input::Script {
            name: p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            content: read_host_small(p)?,
        },
        Op::FirstbootCommand(c) => Input::Script {
            name: c.clone(),
            content: firstboot::command_script(c).into_bytes(),
        },
        Op::Upload { host, .. } => Input::Upload(host_file(host)?),
        Op::CopyIn { host, .. } => {
            std::fs::symlink_metadata(host)
                .map_err(|e| Error::InvalidArgument(format!("{}: {e}", host.display())))?;
            Input::None
        }
        _ => Input::None,
    })
}

fn apply(g: &mut Guest, op: &Op, input: &Input) -> Result<()> {
    match (op, input) {
        (Op::Hostname(h), _) => hostname(g, h),
        (Op::SshInject { user, .. }, Input::Key(k)) => ssh_inject(g, user, k),
        (Op::Password { user, .. }, Input::Password { plain, locked }) => {
            set_password(g, user, plain.as_deref(), *locked)
        }
        (Op::Timezone(tz), _) => timezone(g, tz),
        (Op::Write { path, content }, _) => {
            g.replace(path, content.as_bytes(), NewAttrs::root(0o644))
        }
        (Op::AppendLine { path, line }, _) => append_line(g, path, line),
        (Op::Upload { host, guest }, Input::Upload(hf)) => upload(g, host, guest, hf),
        (Op::CopyIn { host, guest_dir }, _) => copy_in(g, host, guest_dir),
        (Op::Mkdir(p), _) => g.mkdir_p(p, NewAttrs::root(0o755)),
        (Op::Delete(p), _) => {
            let paths = if glob::has_wildcard(p) {
                glob::expand(g, p)?
            } else {
                vec![p.clone()]
            };
            for path in paths {
                g.remove(&path)?;
            }
            Ok(())
        }
        (Op::Move { from, to }, _) => g.rename(from, to),
        (Op::Chmod { mode, path }, _) => g.chmod(path, *mode),
        (Op::Link { target, links }, _) => {
            for l in links {
                g.symlink(target, l)?;
            }
            Ok(())
        }
        (Op::Touch(p), _) => g.touch(p),
        (Op::Truncate(p), _) => g.truncate(p),
        (Op::Firstboot(_) | Op::FirstbootCommand(_), Input::Script { name, content }) => {
            firstboot::add(g, name, content).map(|_| ())
        }
        (Op::SelinuxRelabel, _) => Ok(()),
        _ => Err(Error::InvalidArgument("operation not prepared".into())),
    }
}

// ---- hostname ----

/// `line` with every whitespace-separated token equal to one of `from` replaced by the
/// matching `to`; separators kept.
fn replace_tokens(line: &str, map: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(line.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        match map.iter().find(|(f, _)| *f == token) {
            Some((_, t)) => out.push_str(t),
            None => out.push_str(token),
        }
        token.clear();
    };
    for c in line.chars() {
        if c.is_whitespace() {
            flush(&mut token, &mut out);
            out.push(c);
        } else {
            token.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// Is `name` one of the loopback names (`localhost`, `localhost.localdomain`,
/// `localhost6`, ...)? A guest that never had a hostname of its own (RHEL's default is
/// `localhost.localdomain`) lists these in `/etc/hosts` for 127.0.0.1 and ::1.
fn is_localhost(name: &str) -> bool {
    let short = name.split('.').next().unwrap_or(name);
    matches!(short, "localhost" | "localhost4" | "localhost6")
}

/// `/etc/hosts` with the old host names replaced by the new ones (comments kept). The
/// loopback names are never replaced: an old hostname `localhost.localdomain` leaves
/// the file as it is (virt-customize does the same), or `localhost` would stop
/// resolving.
pub fn rewrite_hosts(hosts: &str, old: &str, new: &str) -> String {
    let old_short = old.split('.').next().unwrap_or(old);
    let new_short = new.split('.').next().unwrap_or(new);
    let mut map: Vec<(&str, &str)> = if old == old_short {
        vec![(old, new_short)]
    } else {
        vec![(old, new), (old_short, new_short)]
    };
    map.retain(|(o, _)| !is_localhost(o));
    if map.is_empty() {
        return hosts.to_string();
    }
    hosts
        .split_inclusive('\n')
        .map(|l| {
            let (body, comment) = match l.find('#') {
                Some(i) => (&l[..i], &l[i..]),
                None => (l, ""),
            };
            format!("{}{comment}", replace_tokens(body, &map))
        })
        .collect()
}

/// `KEY=value` set in shell-variable text (replaced in place, or appended).
pub fn set_shell_var(text: &str, key: &str, value: &str) -> String {
    let mut out = String::new();
    let mut done = false;
    for l in text.split_inclusive('\n') {
        let trimmed = l.trim_start();
        if !done && trimmed.starts_with(&format!("{key}=")) {
            out.push_str(&format!("{key}={value}\n"));
            done = true;
        } else {
            out.push_str(l);
        }
    }
    if !done {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("{key}={value}\n"));
    }
    out
}

fn text_file(g: &mut Guest, path: &str) -> Result<Option<String>> {
    Ok(g.read_optional(path, MAX_GUEST_TEXT)?
        .map(|d| String::from_utf8_lossy(&d).into_owned()))
}

fn hostname(g: &mut Guest, name: &str) -> Result<()> {
    let old = text_file(g, "/etc/hostname")?
        .and_then(|t| t.lines().next().map(|l| l.trim().to_string()))
        .filter(|h| !h.is_empty() && h.len() <= 253);
    g.replace(
        "/etc/hostname",
        format!("{name}\n").as_bytes(),
        NewAttrs::root(0o644),
    )?;
    if let Some(hosts) = text_file(g, "/etc/hosts")?
        && let Some(old) = &old
        && old != name
    {
        let new = rewrite_hosts(&hosts, old, name);
        if new != hosts {
            g.replace("/etc/hosts", new.as_bytes(), NewAttrs::root(0o644))?;
        }
    }
    if let Some(net) = text_file(g, "/etc/sysconfig/network")? {
        let new = set_shell_var(&net, "HOSTNAME", name);
        if new != net {
            g.replace(
                "/etc/sysconfig/network",
                new.as_bytes(),
                NewAttrs::root(0o644),
            )?;
        }
    }
    Ok(())
}

// ---- users ----

fn user(g: &mut Guest, name: &str) -> Result<passwd::User> {
    let pw = g
        .read_optional("/etc/passwd", MAX_GUEST_TEXT)?
        .ok_or_else(|| remote(ErrorKind::NotFound, "the guest has no /etc/passwd".into()))?;
    passwd::find_user(&pw, name).ok_or_else(|| {
        remote(
            ErrorKind::NotFound,
            format!("no user {name} in /etc/passwd"),
        )
    })
}

fn ssh_inject(g: &mut Guest, name: &str, key: &str) -> Result<()> {
    let u = user(g, name)?;
    if !u.home.starts_with('/') || u.home.len() > 4096 {
        return Err(remote(
            ErrorKind::InvalidArgument,
            format!(
                "{name}'s home directory {:?} is not an absolute path",
                u.home
            ),
        ));
    }
    if !g.is_dir(&u.home)? {
        return Err(remote(
            ErrorKind::NotFound,
            format!("{name}'s home directory {} does not exist", u.home),
        ));
    }
    let ssh = glob::join(&u.home, ".ssh");
    let owner = |mode| NewAttrs {
        mode,
        uid: u.uid,
        gid: u.gid,
    };
    match g.lstat(&ssh)? {
        None => g.mkdir(&ssh, owner(0o700))?,
        Some(st) if st.file_type == FileType::Directory => {}
        Some(_) => {
            return Err(remote(
                ErrorKind::InvalidArgument,
                format!("{ssh} is not a directory (a symlink is refused)"),
            ));
        }
    }
    let ak = format!("{ssh}/authorized_keys");
    if let Some(st) = g.lstat(&ak)?
        && st.file_type != FileType::Regular
    {
        return Err(remote(
            ErrorKind::InvalidArgument,
            format!("{ak} is not a regular file (a symlink is refused)"),
        ));
    }
    let old = g.read_optional(&ak, MAX_GUEST_TEXT)?;
    match old {
        None => g.replace(&ak, format!("{key}\n").as_bytes(), owner(0o600)),
        Some(data) => {
            let present = String::from_utf8_lossy(&data)
                .lines()
                .any(|l| l.trim() == key);
            if present {
                return Ok(());
            }
            let mut new = data;
            if !new.is_empty() && !new.ends_with(b"\n") {
                new.push(b'\n');
            }
            new.extend_from_slice(key.as_bytes());
            new.push(b'\n');
            g.replace(&ak, &new, owner(0o600))
        }
    }
}

fn set_password(g: &mut Guest, name: &str, plain: Option<&str>, locked: bool) -> Result<()> {
    let shadow = "/etc/shadow";
    let data = g
        .read_optional(shadow, MAX_GUEST_TEXT)?
        .ok_or_else(|| remote(ErrorKind::NotFound, "the guest has no /etc/shadow".into()))?;
    let hash = match plain {
        Some(p) => passwd::sha512_crypt(p.as_bytes(), &passwd::random_salt(16)?),
        None => "*".to_string(),
    };
    let field = if locked { format!("!{hash}") } else { hash };
    let new = passwd::set_shadow_password(&data, name, &field).ok_or_else(|| {
        remote(
            ErrorKind::NotFound,
            format!("no user {name} in /etc/shadow"),
        )
    })?;
    g.replace(shadow, &new, NewAttrs::root(0o640))
}

// ---- timezone ----

fn timezone(g: &mut Guest, tz: &str) -> Result<()> {
    let zone = format!("/usr/share/zoneinfo/{tz}");
    match g.stat(&zone)? {
        Some(st) if st.file_type == FileType::Regular => {}
        _ => {
            return Err(remote(
                ErrorKind::NotFound,
                format!("no timezone {tz} in the guest ({zone} is missing)"),
            ));
        }
    }
    g.symlink(&zone, "/etc/localtime")?;
    if g.lstat("/etc/timezone")?.is_some() {
        g.replace(
            "/etc/timezone",
            format!("{tz}\n").as_bytes(),
            NewAttrs::root(0o644),
        )?;
    }
    if let Some(clock) = text_file(g, "/etc/sysconfig/clock")? {
        let new = set_shell_var(&clock, "ZONE", &format!("\"{tz}\""));
        if new != clock {
            g.replace(
                "/etc/sysconfig/clock",
                new.as_bytes(),
                NewAttrs::root(0o644),
            )?;
        }
    }
    Ok(())
}

// ---- files ----

fn append_line(g: &mut Guest, path: &str, line: &str) -> Result<()> {
    let st = g.lstat(path)?;
    let Some(st) = st.filter(|s| s.file_type == FileType::Regular && s.size > 0) else {
        return g.append(path, format!("{line}\n").as_bytes(), NewAttrs::root(0o644));
    };
    // The line ending in use, from the end of the file.
    let tail_len = st.size.min(4096);
    let tail = if g.dry_run() && st.ino == 0 {
        Vec::new()
    } else {
        g.session().pread(path, st.size - tail_len, tail_len)?
    };
    let nl = if tail.windows(2).any(|w| w == b"\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut data = String::new();
    if !tail.is_empty() && !tail.ends_with(b"\n") {
        data.push_str(nl);
    }
    data.push_str(line);
    data.push_str(nl);
    g.append(path, data.as_bytes(), NewAttrs::root(0o644))
}

fn upload(g: &mut Guest, host: &Path, guest: &str, hf: &HostFile) -> Result<()> {
    let dest = if g.is_dir(guest)? {
        let name = host
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::InvalidArgument(format!("{}: no file name", host.display())))?;
        glob::join(guest, &name)
    } else {
        guest.to_string()
    };
    let mut f = std::fs::File::open(host)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", host.display())))?;
    g.replace_from_with_attrs(&dest, &mut f, hf.size, hf.attrs)
}

fn copy_in(g: &mut Guest, host: &Path, guest_dir: &str) -> Result<()> {
    if !g.is_dir(guest_dir)? {
        return Err(remote(
            ErrorKind::NotFound,
            format!("{guest_dir} is not a directory in the guest"),
        ));
    }
    let name = host
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::InvalidArgument(format!("{}: no file name", host.display())))?;
    let mut count = 0usize;
    copy_tree(g, host, &glob::join(guest_dir, &name), 0, &mut count)
}

fn copy_tree(
    g: &mut Guest,
    host: &Path,
    dest: &str,
    depth: usize,
    count: &mut usize,
) -> Result<()> {
    *count += 1;
    if depth > MAX_COPY_DEPTH || *count > MAX_COPY_ENTRIES {
        return Err(Error::InvalidArgument(format!(
            "{}: tree too deep or too large to copy",
            host.display()
        )));
    }
    let m = std::fs::symlink_metadata(host)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", host.display())))?;
    let attrs = NewAttrs {
        mode: m.permissions().mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
    };
    let ft = m.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(host)?;
        return g.symlink(&target.to_string_lossy(), dest);
    }
    if ft.is_file() {
        let mut f = std::fs::File::open(host)?;
        return g.replace_from_with_attrs(dest, &mut f, m.len(), attrs);
    }
    if ft.is_dir() {
        if !g.is_real_dir(dest)? {
            g.mkdir(dest, attrs)?;
        }
        let mut names: Vec<_> = std::fs::read_dir(host)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for n in names {
            let child = host.join(&n);
            let d = glob::join(dest, &n.to_string_lossy());
            copy_tree(g, &child, &d, depth + 1, count)?;
        }
        return Ok(());
    }
    g.note(format!(
        "--copy-in: {} skipped (not a file, directory or symlink)",
        host.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_rewrite() {
        let hosts = "127.0.0.1\tlocalhost\n127.0.1.1\told.example.com\told\n# old stays in comments\n::1 localhost ip6-localhost\n10.0.0.5 oldish old\n";
        let got = rewrite_hosts(hosts, "old.example.com", "new.example.org");
        assert_eq!(
            got,
            "127.0.0.1\tlocalhost\n127.0.1.1\tnew.example.org\tnew\n# old stays in comments\n::1 localhost ip6-localhost\n10.0.0.5 oldish new\n"
        );
        let got = rewrite_hosts("127.0.1.1 debian\n", "debian", "web1.corp");
        assert_eq!(got, "127.0.1.1 web1\n");
        // RHEL's default hostname: the loopback names stay.
        let rhel = "127.0.0.1   localhost localhost.localdomain localhost4\n\
                    ::1         localhost localhost.localdomain localhost6\n";
        assert_eq!(rewrite_hosts(rhel, "localhost.localdomain", "web1"), rhel);
        assert_eq!(rewrite_hosts(rhel, "localhost", "web1.corp"), rhel);
        // A name that only starts like one is replaced as usual.
        assert_eq!(
            rewrite_hosts(
                "10.0.0.1 localhostx.corp localhostx\n",
                "localhostx.corp",
                "a.b"
            ),
            "10.0.0.1 a.b a\n"
        );
    }

    #[test]
    fn shell_vars() {
        assert_eq!(
            set_shell_var("NETWORKING=yes\nHOSTNAME=\"x\"\n", "HOSTNAME", "web1"),
            "NETWORKING=yes\nHOSTNAME=web1\n"
        );
        assert_eq!(
            set_shell_var("NETWORKING=yes", "HOSTNAME", "web1"),
            "NETWORKING=yes\nHOSTNAME=web1\n"
        );
    }

    #[test]
    fn key_lines() {
        assert_eq!(
            first_key_line(b"# c\n\nssh-ed25519 AAAA x@y\nother\n", Path::new("k")).unwrap(),
            "ssh-ed25519 AAAA x@y"
        );
        assert!(first_key_line(b"# only\n", Path::new("k")).is_err());
        assert!(check_key_line("a\u{1b}b").is_err());
    }
}
