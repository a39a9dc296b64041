//! What a Unix root says about itself, decided the way libguestfs decides it: the
//! release files tried in libguestfs' order (`/etc/os-release`, `/etc/lsb-release`,
//! the `*-release` files of each family, `/etc/debian_version`, ...), each either
//! settling the question or leaving what it read for the next one; the architecture from
//! the first of libguestfs' binaries that is an ELF file; the hostname; and the package
//! format, package manager and libosinfo short id that follow from distro and version.
//!
//! The names are libguestfs': `distro` is one of `debian`, `ubuntu`, `fedora`, `rhel`,
//! `centos`, `rocky`, `archlinux`, `alpinelinux`, `opensuse`, `sles`, `coreos`,
//! `redhat-based`, ... (never an os-release `ID` libguestfs does not know); versions are
//! `major.minor` numbers. Everything read is cleaned ([`super::clean`]).

use super::files::GuestFiles;
use super::{clean, elf_arch, nonempty};
use crate::error::Result;

/// The facts gathered for one root (or one `/usr`), libguestfs' inspection data.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct OsData {
    pub distro: Option<&'static str>,
    pub product_name: Option<String>,
    pub product_variant: Option<String>,
    pub version: Option<(u32, u32)>,
    /// The text the version was read from (`VERSION_ID`, `DISTRIB_RELEASE`, the number
    /// in a release line).
    pub version_text: Option<String>,
    pub arch: Option<String>,
    pub hostname: Option<String>,
}

/// The distro an os-release `ID` names, as libguestfs maps them (`None`: unknown to
/// libguestfs, which then falls back to the other release files).
pub fn distro_of_os_release_id(id: &str) -> Option<&'static str> {
    Some(match id {
        "alpine" => "alpinelinux",
        "altlinux" => "altlinux",
        "arch" => "archlinux",
        "centos" => "centos",
        "coreos" => "coreos",
        "debian" => "debian",
        "fedora" => "fedora",
        "frugalware" => "frugalware",
        "gentoo" => "gentoo",
        "kali" => "kalilinux",
        "kylin" => "kylin",
        "mageia" => "mageia",
        "neokylin" => "neokylin",
        "openmandriva" => "openmandriva",
        "opensuse" => "opensuse",
        s if s.starts_with("opensuse-") => "opensuse",
        "pardus" => "pardus",
        "pld" => "pldlinux",
        "rhel" => "rhel",
        "rocky" => "rocky",
        "sles" | "sled" => "sles",
        "ubuntu" => "ubuntu",
        "void" => "voidlinux",
        _ => return None,
    })
}

/// The distro an lsb-release `DISTRIB_ID` names.
fn distro_of_lsb_id(id: &str) -> Option<&'static str> {
    Some(match id {
        "CoreOS" => "coreos",
        "LinuxMint" => "linuxmint",
        "Mageia" => "mageia",
        "Ubuntu" => "ubuntu",
        _ => return None,
    })
}

/// Leading ASCII digits of `s` as a number (`None` if there are none or it overflows).
fn leading_number(s: &str) -> Option<(u32, &str)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

/// libguestfs' `parse_version_from_major_minor`: the first `N.M` in `s`, else the first
/// `N` (as `N.0`); the matched text comes along.
pub fn version_from(s: &str) -> Option<((u32, u32), String)> {
    let starts = || {
        s.char_indices()
            .filter(|(_, c)| c.is_ascii_digit())
            .map(|(i, _)| i)
    };
    for i in starts() {
        if let Some((a, rest)) = leading_number(&s[i..])
            && let Some(rest) = rest.strip_prefix('.')
            && let Some((b, tail)) = leading_number(rest)
        {
            let len = s.len() - i - tail.len();
            return Some(((a, b), s[i..i + len].to_string()));
        }
    }
    let i = starts().next()?;
    let (a, tail) = leading_number(&s[i..])?;
    Some(((a, 0), s[i..s.len() - tail.len()].to_string()))
}

fn set_version(data: &mut OsData, s: &str) {
    if let Some((v, text)) = version_from(s) {
        data.version = Some(v);
        data.version_text = Some(text);
    }
}

/// Removes shell quoting from an os-release value: `"..."` (with `\"`, `\\`, `\$`, `` \` ``
/// escapes) or `'...'`; anything else as written.
pub fn shell_unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].to_string();
    }
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        let inner = &v[1..v.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut it = inner.chars().peekable();
        while let Some(c) = it.next() {
            if c == '\\'
                && let Some(&n) = it.peek()
                && matches!(n, '"' | '\\' | '$' | '`')
            {
                out.push(n);
                it.next();
                continue;
            }
            out.push(c);
        }
        return out;
    }
    v.to_string()
}

/// Removes one pair of surrounding `"` or `'` (lsb-release).
fn simple_unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2
            && let Some(inner) = v.strip_prefix(q).and_then(|x| x.strip_suffix(q))
        {
            return inner;
        }
    }
    v
}

/// `KEY=value` lines (comments and lines without `=` skipped), bounded.
fn key_values(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .take(1024)
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
}

/// `/etc/os-release` (or a `/usr`'s `/lib/os-release`): true when it settles the
/// question (distro, product name and a usable version all found).
pub fn parse_os_release(text: &str, data: &mut OsData) -> bool {
    for (k, v) in key_values(text) {
        let v = clean(&shell_unquote(v));
        match k {
            "ID" => {
                if let Some(d) = distro_of_os_release_id(&v) {
                    data.distro = Some(d);
                }
            }
            "PRETTY_NAME" => data.product_name = Some(v),
            "VERSION_ID" => {
                // NeoKylin: `V7Update6`.
                if let Some(rest) = v.strip_prefix('V')
                    && let Some((a, rest)) = leading_number(rest)
                    && let Some(rest) = rest.strip_prefix("Update")
                    && let Some((b, "")) = leading_number(rest)
                {
                    data.version = Some((a, b));
                    data.version_text = Some(v.clone());
                } else if let Some((ver, _)) = version_from(&v) {
                    data.version = Some(ver);
                    data.version_text = Some(v.clone());
                }
            }
            _ => {}
        }
    }
    if data.distro.is_none() || data.product_name.is_none() {
        return false;
    }
    match (data.distro, data.version) {
        // Debian's and CentOS's os-release give only the major version: the release
        // files have the full one.
        (Some("debian" | "centos"), Some((_, 0))) => false,
        // Void Linux is rolling and says so by having no version.
        (Some("voidlinux"), None) => {
            data.version = Some((0, 0));
            true
        }
        (_, None) => false,
        _ => true,
    }
}

/// `/etc/lsb-release`: true when it named a known distro or a description.
pub fn parse_lsb_release(text: &str, data: &mut OsData) -> bool {
    let mut ok = false;
    for (k, v) in key_values(text) {
        let v = simple_unquote(v);
        match k {
            "DISTRIB_ID" => {
                if let Some(d) = distro_of_lsb_id(v) {
                    ok = true;
                    data.distro = Some(d);
                }
            }
            "DISTRIB_RELEASE" => {
                if let Some((ver, _)) = version_from(v) {
                    data.version = Some(ver);
                    data.version_text = Some(clean(v));
                }
            }
            "DISTRIB_DESCRIPTION" => {
                ok = true;
                data.product_name = Some(clean(v));
            }
            _ => {}
        }
    }
    ok
}

/// `/etc/SuSE-release`: the first line is the product, then `VERSION = N` and
/// `PATCHLEVEL = N` for SLES, the version for openSUSE.
fn parse_suse_release(text: &str, data: &mut OsData) -> bool {
    let lines: Vec<&str> = text.lines().take(16).collect();
    let Some(first) = lines.first() else {
        return false;
    };
    let product = clean(first);
    data.product_name = Some(product.clone());
    let field = |i: usize, key: &str| {
        lines
            .get(i)
            .and_then(|l| l.strip_prefix(key))
            .and_then(leading_number)
            .map(|(n, _)| n)
    };
    if product.starts_with("SUSE Linux Enterprise ")
        || product.starts_with("SUSE LINUX Enterprise ")
        || product.starts_with("Novell Linux Desktop ")
    {
        data.version = match (field(1, "VERSION = "), field(2, "PATCHLEVEL = ")) {
            (Some(a), Some(b)) => Some((a, b)),
            (Some(a), None) => Some((a, 0)),
            _ => None,
        };
        data.version_text = data.version.map(|(a, b)| format!("{a}.{b}"));
        data.distro = Some("sles");
    } else if ["openSUSE ", "SuSE Linux ", "SUSE LINUX "]
        .iter()
        .any(|p| product.starts_with(p))
    {
        if let Some(l) = lines.get(1) {
            set_version(data, l);
        }
        data.distro = Some("opensuse");
    }
    true
}

/// The regular expressions libguestfs matches release lines with.
#[derive(Clone, Copy, Debug)]
enum Rex {
    /// `Fedora release (\d+)`.
    Fedora,
    /// `VENDOR.*release (\d+).*Update (\d+)`.
    Old(&'static str),
    /// `VENDOR.*release (\d+)\.(\d+)`.
    MajorMinor(&'static str),
    /// `VENDOR.*release (\d+)`.
    NoMinor(&'static str),
    /// `Frugalware (\d+)\.(\d+)`.
    Frugalware,
    /// `(\d+)\.(\d+) PLD Linux`.
    Pld,
}

/// `(\d+)\.(\d+)` at the start of `s`.
fn major_minor_at(s: &str) -> Option<(u32, u32, &str)> {
    let (a, rest) = leading_number(s)?;
    let (b, rest) = leading_number(rest.strip_prefix('.')?)?;
    Some((a, b, rest))
}

impl Rex {
    /// The (major, minor) groups when the line matches.
    fn matches(self, line: &str) -> Option<(u32, Option<u32>)> {
        match self {
            Rex::Fedora => {
                for (i, _) in line.match_indices("Fedora release ") {
                    if let Some((a, _)) = leading_number(&line[i + 15..]) {
                        return Some((a, None));
                    }
                }
                None
            }
            Rex::Old(v) | Rex::MajorMinor(v) | Rex::NoMinor(v) => {
                let start = line.find(v)? + v.len();
                // `.*` is greedy: the last "release N" that lets the rest match.
                let cands: Vec<usize> = line[start..]
                    .match_indices("release ")
                    .map(|(i, _)| start + i + 8)
                    .collect();
                for &p in cands.iter().rev() {
                    let rest = &line[p..];
                    match self {
                        Rex::NoMinor(_) => {
                            if let Some((a, _)) = leading_number(rest) {
                                return Some((a, None));
                            }
                        }
                        Rex::MajorMinor(_) => {
                            if let Some((a, b, _)) = major_minor_at(rest) {
                                return Some((a, Some(b)));
                            }
                        }
                        _ => {
                            if let Some((a, tail)) = leading_number(rest) {
                                let upd = tail
                                    .match_indices("Update ")
                                    .filter_map(|(i, _)| leading_number(&tail[i + 7..]))
                                    .last();
                                if let Some((b, _)) = upd {
                                    return Some((a, Some(b)));
                                }
                            }
                        }
                    }
                }
                None
            }
            Rex::Frugalware => line
                .match_indices("Frugalware ")
                .find_map(|(i, _)| major_minor_at(&line[i + 11..]))
                .map(|(a, b, _)| (a, Some(b))),
            Rex::Pld => line.char_indices().find_map(|(i, _)| {
                let (a, b, rest) = major_minor_at(&line[i..])?;
                rest.starts_with(" PLD Linux").then_some((a, Some(b)))
            }),
        }
    }
}

/// libguestfs' `parse_generic`: the first line is the product name and the distro is
/// `distro`; with a pattern, the line must match it (and gives the version), without
/// one the version is looked for anywhere in the line.
fn parse_generic(distro: &'static str, rex: Option<Rex>, text: &str, data: &mut OsData) -> bool {
    let first = clean(text.lines().next().unwrap_or(""));
    if first.is_empty() {
        return false;
    }
    data.product_name = Some(first.clone());
    data.distro = Some(distro);
    match rex {
        Some(rex) => match rex.matches(&first) {
            Some((a, b)) => {
                data.version = Some((a, b.unwrap_or(0)));
                data.version_text = Some(match b {
                    Some(b) => format!("{a}.{b}"),
                    None => a.to_string(),
                });
                true
            }
            None => false,
        },
        None => {
            set_version(data, &first);
            true
        }
    }
}

/// One of libguestfs' release-file tests.
#[derive(Clone, Copy, Debug)]
enum Test {
    OsRelease,
    Lsb,
    Generic(&'static str, Option<Rex>),
    /// The file's existence sets the distro.
    Exists(&'static str),
    Suse,
    /// `/etc/br-version`: cirros when `/usr/share/cirros/logo` exists, else buildroot.
    Buildroot,
}

/// libguestfs' Linux root tests, in its order: the first test whose file exists and
/// whose parser says "done" ends the search.
const LINUX_TESTS: &[(&str, Test)] = &[
    ("/etc/os-release", Test::OsRelease),
    ("/etc/lsb-release", Test::Lsb),
    (
        "/etc/oracle-release",
        Test::Generic("oraclelinux", Some(Rex::Old("Oracle Linux"))),
    ),
    (
        "/etc/oracle-release",
        Test::Generic("oraclelinux", Some(Rex::MajorMinor("Oracle Linux"))),
    ),
    (
        "/etc/oracle-release",
        Test::Generic("oraclelinux", Some(Rex::NoMinor("Oracle Linux"))),
    ),
    (
        "/etc/centos-release",
        Test::Generic("centos", Some(Rex::Old("CentOS"))),
    ),
    (
        "/etc/centos-release",
        Test::Generic("centos", Some(Rex::MajorMinor("CentOS"))),
    ),
    (
        "/etc/centos-release",
        Test::Generic("centos", Some(Rex::NoMinor("CentOS"))),
    ),
    ("/etc/altlinux-release", Test::Generic("altlinux", None)),
    (
        "/etc/redhat-release",
        Test::Generic("fedora", Some(Rex::Fedora)),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("rhel", Some(Rex::Old("Red Hat"))),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("rhel", Some(Rex::MajorMinor("Red Hat"))),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("rhel", Some(Rex::NoMinor("Red Hat"))),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("centos", Some(Rex::Old("CentOS"))),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("centos", Some(Rex::MajorMinor("CentOS"))),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("centos", Some(Rex::NoMinor("CentOS"))),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("scientificlinux", Some(Rex::Old("Scientific Linux"))),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("scientificlinux", Some(Rex::MajorMinor("Scientific Linux"))),
    ),
    (
        "/etc/redhat-release",
        Test::Generic("scientificlinux", Some(Rex::NoMinor("Scientific Linux"))),
    ),
    ("/etc/redhat-release", Test::Generic("redhat-based", None)),
    ("/etc/redhat-release", Test::Exists("redhat-based")),
    ("/etc/debian_version", Test::Generic("debian", None)),
    ("/etc/pardus-release", Test::Generic("pardus", None)),
    ("/etc/arch-release", Test::Exists("archlinux")),
    ("/etc/gentoo-release", Test::Generic("gentoo", None)),
    ("/etc/meego-release", Test::Generic("meego", None)),
    ("/etc/slackware-version", Test::Generic("slackware", None)),
    ("/etc/ttylinux-target", Test::Generic("ttylinux", None)),
    ("/etc/SuSE-release", Test::Suse),
    ("/etc/SuSE-release", Test::Exists("suse-based")),
    ("/etc/cirros/version", Test::Generic("cirros", None)),
    ("/etc/br-version", Test::Buildroot),
    ("/etc/alpine-release", Test::Generic("alpinelinux", None)),
    (
        "/etc/frugalware-release",
        Test::Generic("frugalware", Some(Rex::Frugalware)),
    ),
    (
        "/etc/pld-release",
        Test::Generic("pldlinux", Some(Rex::Pld)),
    ),
];

/// The Hurd's tests.
const HURD_TESTS: &[(&str, Test)] = &[
    ("/etc/os-release", Test::OsRelease),
    ("/etc/debian_version", Test::Generic("debian", None)),
];

fn run_tests(f: &mut dyn GuestFiles, tests: &[(&str, Test)], data: &mut OsData) -> Result<()> {
    for (path, test) in tests {
        if !f.is_file(path, true)? {
            continue;
        }
        let text = match test {
            Test::Exists(_) => String::new(),
            _ => f.read(path)?.unwrap_or_default(),
        };
        let done = match *test {
            Test::OsRelease => parse_os_release(&text, data),
            Test::Lsb => parse_lsb_release(&text, data),
            Test::Generic(d, rex) => parse_generic(d, rex, &text, data),
            Test::Exists(d) => {
                data.distro = Some(d);
                true
            }
            Test::Suse => parse_suse_release(&text, data),
            Test::Buildroot => {
                let d = if f.is_file("/usr/share/cirros/logo", true)? {
                    "cirros"
                } else {
                    "buildroot"
                };
                parse_generic(d, None, &text, data)
            }
        };
        if done {
            break;
        }
    }
    Ok(())
}

/// libguestfs' binaries for the architecture, tried in order.
const ARCH_BINARIES: &[&str] = &["/bin/bash", "/bin/ls", "/bin/echo", "/bin/rm", "/bin/sh"];

/// The architecture of the first of [`ARCH_BINARIES`] that is an ELF file.
pub fn check_arch(f: &mut dyn GuestFiles) -> Result<Option<String>> {
    for b in ARCH_BINARIES {
        if let Some(head) = f.head(b, 64)?
            && let Some(a) = elf_arch(&head)
        {
            return Ok(Some(a.to_string()));
        }
    }
    Ok(None)
}

/// `/etc/HOSTNAME`, `/etc/hostname` (first line), else `HOSTNAME=` in
/// `/etc/sysconfig/network`.
pub fn check_hostname(f: &mut dyn GuestFiles) -> Result<Option<String>> {
    for p in ["/etc/HOSTNAME", "/etc/hostname"] {
        if let Some(t) = f.read(p)?
            && let Some(h) = t.lines().next().map(clean).and_then(nonempty)
        {
            return Ok(Some(h));
        }
    }
    if f.is_file("/etc/sysconfig/network", false)?
        && let Some(t) = f.read("/etc/sysconfig/network")?
    {
        return Ok(key_values(&t)
            .find_map(|(k, v)| (k.trim() == "HOSTNAME").then(|| clean(&shell_unquote(v.trim())))));
    }
    Ok(None)
}

/// A Linux (or Hurd) root: release files, architecture, hostname.
pub fn check_unix_root(f: &mut dyn GuestFiles, hurd: bool) -> Result<OsData> {
    let mut data = OsData::default();
    run_tests(f, if hurd { HURD_TESTS } else { LINUX_TESTS }, &mut data)?;
    data.arch = check_arch(f)?;
    data.hostname = check_hostname(f)?;
    Ok(data)
}

/// A CoreOS root with its `/usr` mounted at `/usr`: the distro is CoreOS, the version
/// and product come from the `/usr`'s os-release (or lsb-release).
pub fn check_coreos_root(f: &mut dyn GuestFiles) -> Result<OsData> {
    let mut data = OsData {
        distro: Some("coreos"),
        ..OsData::default()
    };
    if f.is_file("/usr/lib/os-release", true)? {
        let t = f.read("/usr/lib/os-release")?.unwrap_or_default();
        parse_os_release(&t, &mut data);
    } else if f.is_file("/usr/share/coreos/lsb-release", true)? {
        let t = f.read("/usr/share/coreos/lsb-release")?.unwrap_or_default();
        parse_lsb_release(&t, &mut data);
    }
    data.distro = Some("coreos");
    data.arch = check_arch(f)?;
    data.hostname = check_hostname(f)?;
    Ok(data)
}

/// The package format that follows from the distro (libguestfs decides it from the
/// distro alone).
pub fn package_format(distro: Option<&str>) -> Option<&'static str> {
    Some(match distro? {
        "altlinux" | "centos" | "fedora" | "mageia" | "mandriva" | "meego" | "neokylin"
        | "openmandriva" | "opensuse" | "oraclelinux" | "redhat-based" | "rhel" | "rocky"
        | "scientificlinux" | "sles" | "suse-based" => "rpm",
        "debian" | "kalilinux" | "linuxmint" | "ubuntu" => "deb",
        "archlinux" => "pacman",
        "gentoo" => "ebuild",
        "pardus" => "pisi",
        "alpinelinux" => "apk",
        "voidlinux" => "xbps",
        _ => return None,
    })
}

/// The package manager that follows from the distro and major version (and, for
/// Fedora 22+, whether `/usr/bin/dnf` exists: `has_dnf`).
pub fn package_management(distro: Option<&str>, major: u32, has_dnf: bool) -> Option<&'static str> {
    Some(match distro? {
        "meego" => "yum",
        "fedora" if major >= 22 && has_dnf => "dnf",
        "fedora" if major >= 1 => "yum",
        "fedora" => return None,
        "neokylin" | "openmandriva" => "dnf",
        "centos" | "oraclelinux" | "redhat-based" | "rhel" | "rocky" | "scientificlinux" => {
            match major {
                8.. => "dnf",
                5..=7 => "yum",
                2..=4 => "up2date",
                _ => return None,
            }
        }
        "altlinux" | "debian" | "kalilinux" | "linuxmint" | "ubuntu" => "apt",
        "archlinux" => "pacman",
        "gentoo" => "portage",
        "pardus" => "pisi",
        "mageia" | "mandriva" => "urpmi",
        "opensuse" | "sles" | "suse-based" => "zypper",
        "alpinelinux" => "apk",
        "voidlinux" => "xbps",
        _ => return None,
    })
}

/// What the libosinfo short id is computed from.
pub struct OsinfoInput<'a> {
    /// `linux`, `windows`, `hurd`, ...
    pub os_type: &'a str,
    pub distro: Option<&'a str>,
    pub major: u32,
    pub minor: u32,
    pub product_name: Option<&'a str>,
    pub product_variant: Option<&'a str>,
    /// Windows `CurrentBuildNumber`.
    pub build: Option<&'a str>,
}

/// The libosinfo short id (`debian12`, `fedora40`, `rhel9.4`, `ubuntu22.04`, `win10`,
/// `win2k22`, ...) as libguestfs computes it; `None` for "unknown".
pub fn osinfo(i: &OsinfoInput) -> Option<String> {
    let (major, minor) = (i.major, i.minor);
    let distro = i.distro.unwrap_or("unknown");
    match i.os_type {
        "linux" => {
            let special = match distro {
                "centos" if major >= 8 => Some(format!("centos{major}")),
                "centos" if major == 7 => Some("centos7.0".to_string()),
                "centos" if major == 6 => Some(format!("centos6.{minor}")),
                "circle" | "rocky" if major >= 8 => Some(format!("{distro}{major}")),
                "debian" if major >= 4 => Some(format!("debian{major}")),
                "fedora" | "mageia" => Some(format!("{distro}{major}")),
                "sles" if minor == 0 => Some(format!("sles{major}")),
                "sles" => Some(format!("sles{major}sp{minor}")),
                "ubuntu" => Some(format!("ubuntu{major}.{minor:02}")),
                "archlinux" | "gentoo" | "voidlinux" => Some(distro.to_string()),
                "altlinux" if major >= 8 => Some(format!("alt{major}.{minor}")),
                "altlinux" => Some(format!("altlinux{major}.{minor}")),
                _ => None,
            };
            special.or_else(|| {
                (distro != "unknown" && (major > 0 || minor > 0))
                    .then(|| format!("{distro}{major}.{minor}"))
            })
        }
        "freebsd" | "netbsd" | "openbsd" => Some(format!("{distro}{major}.{minor}")),
        "dos" if distro == "msdos" => Some("msdos6.22".to_string()),
        "windows" => {
            let name = i.product_name.unwrap_or("");
            let server = i.product_variant.unwrap_or("").contains("Server");
            Some(
                match (major, minor) {
                    (5, 1) => "winxp",
                    (5, 2) if name.contains("XP") => "winxp",
                    (5, 2) if name.contains("R2") => "win2k3r2",
                    (5, 2) => "win2k3",
                    (6, 0) if server => "win2k8",
                    (6, 0) => "winvista",
                    (6, 1) if server => "win2k8r2",
                    (6, 1) => "win7",
                    (6, 2) if server => "win2k12",
                    (6, 2) => "win8",
                    (6, 3) if server => "win2k12r2",
                    (6, 3) => "win8.1",
                    (10, 0) if server && name.contains("2025") => "win2k25",
                    (10, 0) if server && name.contains("2022") => "win2k22",
                    (10, 0) if server && name.contains("2019") => "win2k19",
                    (10, 0) if server => "win2k16",
                    (10, 0) => {
                        let build: u32 = i.build?.trim().parse().ok()?;
                        if build >= 22000 { "win11" } else { "win10" }
                    }
                    _ => return None,
                }
                .to_string(),
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::files::testing::Tree;
    use super::*;

    fn linux(t: &mut Tree) -> OsData {
        check_unix_root(t, false).unwrap()
    }

    #[test]
    fn versions_like_libguestfs() {
        assert_eq!(version_from("12.7").unwrap().0, (12, 7));
        assert_eq!(version_from("3.19.1").unwrap(), ((3, 19), "3.19".into()));
        assert_eq!(version_from("40").unwrap(), ((40, 0), "40".into()));
        assert_eq!(version_from("bookworm/sid"), None);
        assert_eq!(version_from("release 7 and 8.2").unwrap().0, (8, 2));
        assert_eq!(version_from("V10 SP1").unwrap().0, (10, 0));
        assert_eq!(shell_unquote(r#""a \"b\" \$c""#), r#"a "b" $c"#);
        assert_eq!(shell_unquote("'x y'"), "x y");
        assert_eq!(shell_unquote("plain"), "plain");
    }

    #[test]
    fn release_patterns() {
        let m = |r: Rex, s: &str| r.matches(s);
        assert_eq!(
            m(Rex::Fedora, "Fedora release 39 (Thirty Nine)"),
            Some((39, None))
        );
        let rh = "Red Hat Enterprise Linux release 9.4 (Plow)";
        assert_eq!(m(Rex::Old("Red Hat"), rh), None);
        assert_eq!(m(Rex::MajorMinor("Red Hat"), rh), Some((9, Some(4))));
        let old = "Red Hat Enterprise Linux AS release 4 (Nahant Update 9)";
        assert_eq!(m(Rex::Old("Red Hat"), old), Some((4, Some(9))));
        assert_eq!(m(Rex::MajorMinor("Red Hat"), old), None);
        assert_eq!(m(Rex::NoMinor("Red Hat"), old), Some((4, None)));
        assert_eq!(
            m(
                Rex::MajorMinor("CentOS"),
                "CentOS Linux release 7.9.2009 (Core)"
            ),
            Some((7, Some(9)))
        );
        assert_eq!(m(Rex::Frugalware, "Frugalware 2.1 (x)"), Some((2, Some(1))));
        assert_eq!(m(Rex::Pld, "3.0 PLD Linux (Th)"), Some((3, Some(0))));
    }

    #[test]
    fn debian_falls_back_to_debian_version() {
        let mut t = Tree::new();
        t.file(
            "/etc/os-release",
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n",
        )
        .file("/etc/debian_version", "12.7\n")
        .file("/etc/hostname", "deb\n");
        let d = linux(&mut t);
        assert_eq!(d.distro, Some("debian"));
        assert_eq!(d.product_name.as_deref(), Some("12.7"));
        assert_eq!(d.version, Some((12, 7)));
        assert_eq!(d.hostname.as_deref(), Some("deb"));
        // Without debian_version, what os-release said stays.
        let mut t = Tree::new();
        t.file(
            "/etc/os-release",
            "PRETTY_NAME=\"Debian 12\"\nVERSION_ID=12\nID=debian\n",
        );
        let d = linux(&mut t);
        assert_eq!((d.distro, d.version), (Some("debian"), Some((12, 0))));
        assert_eq!(d.product_name.as_deref(), Some("Debian 12"));
    }

    #[test]
    fn families() {
        let mut t = Tree::new();
        t.link("/etc/os-release", "../usr/lib/os-release").file(
            "/usr/lib/os-release",
            "ID=arch\nPRETTY_NAME=\"Arch Linux\"\nBUILD_ID=rolling\n",
        );
        t.file("/etc/arch-release", "");
        let d = linux(&mut t);
        assert_eq!((d.distro, d.version), (Some("archlinux"), None));
        assert_eq!(d.product_name.as_deref(), Some("Arch Linux"));

        // An os-release ID libguestfs does not know: the redhat-release chain decides.
        let mut t = Tree::new();
        t.file(
            "/etc/os-release",
            "ID=almalinux\nVERSION_ID=9.4\nPRETTY_NAME=\"AlmaLinux 9.4 (Seafoam Ocelot)\"\n",
        )
        .file(
            "/etc/redhat-release",
            "AlmaLinux release 9.4 (Seafoam Ocelot)\n",
        );
        let d = linux(&mut t);
        assert_eq!(d.distro, Some("redhat-based"));
        assert_eq!(d.version, Some((9, 4)));
        assert_eq!(
            d.product_name.as_deref(),
            Some("AlmaLinux release 9.4 (Seafoam Ocelot)")
        );

        let mut t = Tree::new();
        t.file(
            "/etc/redhat-release",
            "CentOS Linux release 7.9.2009 (Core)\n",
        )
        .file("/etc/sysconfig/network", "HOSTNAME=\"c7\"\n");
        let d = linux(&mut t);
        assert_eq!((d.distro, d.version), (Some("centos"), Some((7, 9))));
        assert_eq!(d.hostname.as_deref(), Some("c7"));

        let mut t = Tree::new();
        t.file(
            "/etc/lsb-release",
            "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\nDISTRIB_DESCRIPTION=\"Ubuntu 22.04.3 LTS\"\n",
        );
        let d = linux(&mut t);
        assert_eq!((d.distro, d.version), (Some("ubuntu"), Some((22, 4))));

        let mut t = Tree::new();
        t.file(
            "/etc/SuSE-release",
            "SUSE Linux Enterprise Server 11 (x86_64)\nVERSION = 11\nPATCHLEVEL = 4\n",
        );
        let d = linux(&mut t);
        assert_eq!((d.distro, d.version), (Some("sles"), Some((11, 4))));
    }

    #[test]
    fn arch_from_the_first_elf_binary() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[18] = 183;
        let mut t = Tree::new();
        t.file("/bin/bash", "#!/not/elf\n")
            .link("/bin/ls", "/usr/bin/busybox")
            .bytes("/usr/bin/busybox", &elf);
        assert_eq!(check_arch(&mut t).unwrap().as_deref(), Some("aarch64"));
    }

    #[test]
    fn package_managers_and_osinfo() {
        assert_eq!(package_format(Some("rocky")), Some("rpm"));
        assert_eq!(package_management(Some("fedora"), 40, true), Some("dnf"));
        assert_eq!(package_management(Some("fedora"), 40, false), Some("yum"));
        assert_eq!(package_management(Some("rhel"), 9, false), Some("dnf"));
        assert_eq!(package_management(Some("centos"), 7, false), Some("yum"));
        assert_eq!(package_management(Some("coreos"), 7, false), None);
        let o = |t, d, a, b| {
            osinfo(&OsinfoInput {
                os_type: t,
                distro: Some(d),
                major: a,
                minor: b,
                product_name: None,
                product_variant: None,
                build: None,
            })
        };
        assert_eq!(o("linux", "debian", 12, 7).as_deref(), Some("debian12"));
        assert_eq!(o("linux", "rhel", 9, 4).as_deref(), Some("rhel9.4"));
        assert_eq!(o("linux", "rocky", 9, 3).as_deref(), Some("rocky9"));
        assert_eq!(o("linux", "ubuntu", 22, 4).as_deref(), Some("ubuntu22.04"));
        assert_eq!(o("linux", "centos", 7, 9).as_deref(), Some("centos7.0"));
        assert_eq!(o("linux", "archlinux", 0, 0).as_deref(), Some("archlinux"));
        assert_eq!(
            o("linux", "coreos", 2345, 3).as_deref(),
            Some("coreos2345.3")
        );
        assert_eq!(
            o("linux", "alpinelinux", 3, 19).as_deref(),
            Some("alpinelinux3.19")
        );
        assert_eq!(o("linux", "redhat-based", 0, 0), None);
        let w = |name, variant, build| {
            osinfo(&OsinfoInput {
                os_type: "windows",
                distro: Some("windows"),
                major: 10,
                minor: 0,
                product_name: Some(name),
                product_variant: Some(variant),
                build: Some(build),
            })
        };
        assert_eq!(
            w("Windows 10 Pro", "Client", "19045").as_deref(),
            Some("win10")
        );
        assert_eq!(
            w("Windows 10 Pro", "Client", "22631").as_deref(),
            Some("win11")
        );
        assert_eq!(
            w("Windows Server 2022 Standard", "Server", "20348").as_deref(),
            Some("win2k22")
        );
        assert_eq!(
            w("Windows Server 2016", "Server Core", "1").as_deref(),
            Some("win2k16")
        );
    }
}
