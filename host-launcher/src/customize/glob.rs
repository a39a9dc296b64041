//! Shell glob patterns over guest paths (`/var/log/*.log*`, `/home/*/.ssh`): `*`, `?`
//! and `[...]` (with `!`/`^` negation and ranges) within one path component, as
//! `fnmatch(3)` with `FNM_PATHNAME | FNM_PERIOD`: a wildcard never matches `/`, and a
//! leading `.` of a name must be matched literally. Expansion lists directories through
//! the appliance (symlinked directories are not walked into) and is bounded.

use super::guest::Guest;
use crate::error::Result;
use wire::FileType;

/// The most paths one pattern expands to.
pub const MAX_MATCHES: usize = 100_000;

/// Does `pattern` hold a wildcard?
pub fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Does the name `name` match the one-component pattern `pat`?
pub fn matches(pat: &str, name: &str) -> bool {
    if name.starts_with('.') && !pat.starts_with('.') {
        return false;
    }
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

/// Iterative wildcard matching with one backtrack point for the last `*` (linear in
/// practice, never exponential).
fn match_from(p: &[char], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => {
                pi += 1;
                ni += 1;
                continue;
            }
            Some('[') => {
                if let Some((ok, len)) = class(&p[pi..], n[ni])
                    && ok
                {
                    pi += len;
                    ni += 1;
                    continue;
                }
                // An unterminated '[' matches itself.
                if class(&p[pi..], n[ni]).is_none() && n[ni] == '[' {
                    pi += 1;
                    ni += 1;
                    continue;
                }
            }
            Some('\\') if p.get(pi + 1) == Some(&n[ni]) => {
                pi += 2;
                ni += 1;
                continue;
            }
            Some(c) if *c == n[ni] => {
                pi += 1;
                ni += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A bracket expression at the start of `p`: whether `c` matches it and how many
/// pattern characters it spans; `None` when it is not terminated.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(1), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|e| *e != ']') {
            let hi = *p.get(i + 2)?;
            if ch <= c && c <= hi {
                hit = true;
            }
            i += 3;
        } else {
            if ch == c {
                hit = true;
            }
            i += 1;
        }
    }
}

/// Every existing guest path matching the absolute `pattern`, sorted. A pattern without
/// wildcards is itself when it exists (a dangling symlink exists).
pub fn expand(g: &mut Guest, pattern: &str) -> Result<Vec<String>> {
    let comps: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let mut current = vec![String::from("/")];
    for (i, comp) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let mut next = Vec::new();
        for dir in &current {
            if !has_wildcard(comp) {
                let p = join(dir, comp);
                if last {
                    if g.exists(&p)? {
                        next.push(p);
                    }
                } else if g.is_real_dir(&p)? {
                    next.push(p);
                }
                continue;
            }
            if !g.is_real_dir(dir)? {
                continue;
            }
            for e in g.read_dir(dir)? {
                if !matches(comp, &e.name) {
                    continue;
                }
                let p = join(dir, &e.name);
                if last || e.stat.file_type == FileType::Directory {
                    next.push(p);
                }
                if next.len() > MAX_MATCHES {
                    return Err(crate::Error::InvalidArgument(format!(
                        "{pattern}: more than {MAX_MATCHES} matches"
                    )));
                }
            }
        }
        current = next;
        if current.is_empty() {
            break;
        }
    }
    if comps.is_empty() {
        return Ok(Vec::new());
    }
    current.sort();
    current.dedup();
    Ok(current)
}

/// `dir` + `/` + `name`.
pub fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{}/{name}", dir.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(matches("*.log*", "syslog.log.1"));
        assert!(matches("*.log*", "a.log"));
        assert!(!matches("*.log*", "alog"));
        assert!(matches("btmp*", "btmp"));
        assert!(matches("*_host_*", "ssh_host_rsa_key.pub"));
        assert!(!matches("*", ".hidden"));
        assert!(matches(".*", ".hidden"));
        assert!(matches("ifcfg-?th0", "ifcfg-eth0"));
        assert!(matches("[a-c]x", "bx"));
        assert!(!matches("[!a-c]x", "bx"));
        assert!(matches("[!a-c]x", "dx"));
        assert!(matches("[]]", "]"));
        assert!(matches("a[b", "a[b"));
        assert!(matches("*a*a*a*a*b", &"a".repeat(40).replace("aa", "ab")));
        assert!(!matches("*a*a*a*a*c", &"a".repeat(200)));
        assert!(matches("*", "x"));
        assert!(matches("**", ""));
    }
}
