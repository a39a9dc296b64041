//! SELinux labels for what customize creates. A guest uses SELinux when its
//! `/etc/selinux/config` says `SELINUX=enforcing` or `permissive`. A replaced file keeps
//! its label (all of its extended attributes, see [`super::guest`]); a new file gets the
//! label the guest's policy gives its path, read from the policy's text
//! `file_contexts` (with `.homedirs`, `.local` and the path substitutions), the way
//! `restorecon` would pick it: an exact (wildcard-free) entry over a regular expression,
//! and among several, the last one. When the label cannot be derived (no text
//! `file_contexts`, a pattern this matcher does not understand, `<<none>>`),
//! `/.autorelabel` is created at the end so the guest relabels itself at boot
//! (`virt-customize --selinux-relabel`'s fallback).
//!
//! The policy files are guest bytes: read bounded, parsed line by line with nothing
//! kept beyond the entries, patterns compiled with the `regex` crate's size limits (and
//! only those whose literal stem is a prefix of the path asked about).

use super::guest::Guest;
use crate::error::Result;
use regex::Regex;
use std::collections::HashMap;
use wire::FileType;

/// The most bytes read from one policy file.
const MAX_POLICY_FILE: u64 = 16 << 20;
/// The most `file_contexts` entries kept.
const MAX_ENTRIES: usize = 200_000;

/// One `file_contexts` line: `REGEX [TYPE] CONTEXT`.
#[derive(Debug, Clone)]
struct Entry {
    pattern: String,
    /// The pattern's literal prefix (up to its first regex metacharacter).
    stem: String,
    /// Does the pattern hold regex metacharacters?
    regex: bool,
    /// `--` regular, `-d` directory, `-l` symlink, ...; `None`: any.
    file_type: Option<char>,
    /// `None` for `<<none>>`.
    context: Option<String>,
}

/// Labels for new paths, from the guest's policy; `None` from [`Labeler::load`] when the
/// guest does not use SELinux.
pub struct Labeler {
    /// `Some` when a text `file_contexts` was read.
    entries: Option<Vec<Entry>>,
    subs: Vec<(String, String)>,
    compiled: HashMap<usize, Option<Regex>>,
}

/// `SELINUX=` and `SELINUXTYPE=` of `/etc/selinux/config`.
pub fn parse_config(text: &str) -> (Option<String>, Option<String>) {
    let mut mode = None;
    let mut kind = None;
    for line in text.lines().take(10_000) {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let unquote = |v: &str| v.trim().trim_matches('"').trim_matches('\'').to_string();
        if let Some(v) = line.strip_prefix("SELINUX=") {
            mode = Some(unquote(v).to_ascii_lowercase());
        } else if let Some(v) = line.strip_prefix("SELINUXTYPE=") {
            kind = Some(unquote(v));
        }
    }
    (mode, kind)
}

/// Is `c` a regex metacharacter (ends a pattern's literal stem)?
fn is_meta(c: char) -> bool {
    matches!(
        c,
        '.' | '^' | '$' | '?' | '*' | '+' | '|' | '[' | '(' | '{' | '\\'
    )
}

/// Parses `file_contexts` text (bounded); malformed lines are skipped.
fn parse_file_contexts(text: &str, out: &mut Vec<Entry>) {
    for line in text.lines() {
        if out.len() >= MAX_ENTRIES {
            break;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (pattern, ftype, ctx) = match fields.as_slice() {
            [p, c] => (*p, None, *c),
            [p, t, c] => (*p, Some(*t), *c),
            _ => continue,
        };
        let file_type = match ftype {
            None => None,
            Some(t) => match t.strip_prefix('-').and_then(|r| r.chars().next()) {
                Some(c) if t.len() == 2 && "-dlbcps".contains(c) => Some(c),
                _ => continue,
            },
        };
        let stem: String = pattern.chars().take_while(|c| !is_meta(*c)).collect();
        out.push(Entry {
            pattern: pattern.to_string(),
            regex: stem.len() != pattern.len(),
            stem,
            file_type,
            context: (ctx != "<<none>>").then(|| ctx.to_string()),
        });
    }
}

fn type_char(t: FileType) -> char {
    match t {
        FileType::Regular => '-',
        FileType::Directory => 'd',
        FileType::Symlink => 'l',
        FileType::BlockDevice => 'b',
        FileType::CharDevice => 'c',
        FileType::Fifo => 'p',
        FileType::Socket => 's',
        FileType::Unknown => '?',
    }
}

impl Labeler {
    /// Reads the guest's SELinux configuration: `None` when SELinux is not used.
    pub fn load(g: &mut Guest) -> Result<Option<Labeler>> {
        let Some(cfg) = g.read_optional_soft("/etc/selinux/config", 1 << 20)? else {
            return Ok(None);
        };
        let (mode, kind) = parse_config(&String::from_utf8_lossy(&cfg));
        if !matches!(mode.as_deref(), Some("enforcing" | "permissive")) {
            return Ok(None);
        }
        let kind = kind.unwrap_or_else(|| "targeted".into());
        let mut labeler = Labeler {
            entries: None,
            subs: Vec::new(),
            compiled: HashMap::new(),
        };
        if kind.is_empty() || kind.contains('/') || kind.starts_with('.') {
            return Ok(Some(labeler));
        }
        let base = format!("/etc/selinux/{kind}/contexts/files");
        if let Some(main) =
            g.read_optional_soft(&format!("{base}/file_contexts"), MAX_POLICY_FILE)?
        {
            let mut entries = Vec::new();
            parse_file_contexts(&String::from_utf8_lossy(&main), &mut entries);
            for extra in ["file_contexts.homedirs", "file_contexts.local"] {
                if let Some(t) =
                    g.read_optional_soft(&format!("{base}/{extra}"), MAX_POLICY_FILE)?
                {
                    parse_file_contexts(&String::from_utf8_lossy(&t), &mut entries);
                }
            }
            labeler.entries = Some(entries);
        }
        for subs in ["file_contexts.subs_dist", "file_contexts.subs"] {
            if let Some(t) = g.read_optional_soft(&format!("{base}/{subs}"), 1 << 20)? {
                for line in String::from_utf8_lossy(&t).lines().take(10_000) {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    if let [alias, real] = f.as_slice()
                        && alias.starts_with('/')
                        && real.starts_with('/')
                    {
                        labeler.subs.push((alias.to_string(), real.to_string()));
                    }
                }
            }
        }
        Ok(Some(labeler))
    }

    /// A labeler over `file_contexts` text (tests).
    #[cfg(test)]
    fn from_text(text: &str) -> Labeler {
        let mut entries = Vec::new();
        parse_file_contexts(text, &mut entries);
        Labeler {
            entries: Some(entries),
            subs: Vec::new(),
            compiled: HashMap::new(),
        }
    }

    /// The label the policy gives a new `t` at `path`; `None` when it cannot say.
    pub fn label_for(&mut self, path: &str, t: FileType) -> Option<String> {
        let mut path = path.to_string();
        for (alias, real) in &self.subs {
            if let Some(rest) = path.strip_prefix(alias.as_str())
                && (rest.is_empty() || rest.starts_with('/'))
            {
                path = format!("{real}{rest}");
                break;
            }
        }
        let entries = self.entries.as_ref()?;
        let tc = type_char(t);
        let mut best_exact: Option<usize> = None;
        let mut best_regex: Option<usize> = None;
        for (i, e) in entries.iter().enumerate() {
            if !path.starts_with(&e.stem) {
                continue;
            }
            if e.file_type.is_some_and(|f| f != tc) {
                continue;
            }
            if !e.regex {
                if e.pattern == path {
                    best_exact = Some(i);
                }
                continue;
            }
            let re = self.compiled.entry(i).or_insert_with(|| {
                regex::RegexBuilder::new(&format!("^(?:{})$", e.pattern))
                    .size_limit(1 << 20)
                    .build()
                    .ok()
            });
            match re {
                Some(re) if re.is_match(&path) => best_regex = Some(i),
                Some(_) => {}
                // A pattern we cannot read might have been the one: do not guess.
                None => return None,
            }
        }
        let i = best_exact.or(best_regex)?;
        entries.get(i)?.context.clone()
    }
}

impl Guest<'_> {
    /// [`Guest::read_optional`] where an unreadable file (not regular, too large) is
    /// `None` too.
    pub fn read_optional_soft(&mut self, path: &str, max: u64) -> Result<Option<Vec<u8>>> {
        match self.read_optional(path, max) {
            Ok(v) => Ok(v),
            Err(crate::Error::Remote(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hostile `file_contexts` text: parsed and matched without a panic.
    #[test]
    fn hostile_file_contexts_never_panic() {
        let seed = b"/etc(/.*)?\tsystem_u:object_r:etc_t:s0\n/etc/hostname\t--\tsystem_u:object_r:hostname_etc_t:s0\n/root/\\.ssh(/.*)?\t<<none>>\n";
        for m in super::super::tests::mutations(seed, 1500) {
            let mut l = Labeler::from_text(&String::from_utf8_lossy(&m));
            for p in ["/etc/hostname", "/etc/x", "/root/.ssh/k", "/"] {
                let _ = l.label_for(p, FileType::Regular);
                let _ = l.label_for(p, FileType::Directory);
            }
        }
    }

    const FC: &str = "\
/.*\t\t\tsystem_u:object_r:default_t:s0
/etc(/.*)?\t\tsystem_u:object_r:etc_t:s0
/etc/shadow.*\t--\tsystem_u:object_r:shadow_t:s0
/root(/.*)?\t\tsystem_u:object_r:admin_home_t:s0
/root/\\.ssh(/.*)?\tunconfined_u:object_r:ssh_home_t:s0
/home/[^/]+/\\.ssh(/.*)?\tunconfined_u:object_r:ssh_home_t:s0
/etc/hostname\t--\tsystem_u:object_r:hostname_etc_t:s0
/etc/localtime\t--\tsystem_u:object_r:locale_t:s0
/tmp/x\t\t<<none>>
";

    #[test]
    fn labels_follow_restorecon_rules() {
        let mut l = Labeler::from_text(FC);
        let r = FileType::Regular;
        assert_eq!(
            l.label_for("/etc/motd", r).unwrap(),
            "system_u:object_r:etc_t:s0"
        );
        assert_eq!(
            l.label_for("/etc/shadow", r).unwrap(),
            "system_u:object_r:shadow_t:s0"
        );
        // The file-type field restricts the entry.
        assert_eq!(
            l.label_for("/etc/shadow", FileType::Directory).unwrap(),
            "system_u:object_r:etc_t:s0"
        );
        // An exact entry wins over a later regex.
        assert_eq!(
            l.label_for("/etc/hostname", r).unwrap(),
            "system_u:object_r:hostname_etc_t:s0"
        );
        assert_eq!(
            l.label_for("/root/.ssh/authorized_keys", r).unwrap(),
            "unconfined_u:object_r:ssh_home_t:s0"
        );
        assert_eq!(
            l.label_for("/home/alice/.ssh", FileType::Directory)
                .unwrap(),
            "unconfined_u:object_r:ssh_home_t:s0"
        );
        assert_eq!(
            l.label_for("/srv/x", r).unwrap(),
            "system_u:object_r:default_t:s0"
        );
        assert_eq!(l.label_for("/tmp/x", r), None);
    }

    #[test]
    fn unreadable_patterns_give_no_label() {
        let mut l = Labeler::from_text(
            "/etc(/.*)?\tsystem_u:object_r:etc_t:s0\n/etc/(?<=x)y\tsystem_u:object_r:x_t:s0\n",
        );
        assert_eq!(l.label_for("/etc/y", FileType::Regular), None);
        assert_eq!(
            l.label_for("/usr", FileType::Regular),
            None,
            "nothing matches"
        );
    }

    #[test]
    fn config() {
        let (m, t) = parse_config("# c\nSELINUX=enforcing\nSELINUXTYPE=targeted\n");
        assert_eq!(m.as_deref(), Some("enforcing"));
        assert_eq!(t.as_deref(), Some("targeted"));
        let (m, _) = parse_config("SELINUX=disabled\n");
        assert_eq!(m.as_deref(), Some("disabled"));
    }
}
