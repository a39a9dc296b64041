//! `/etc/passwd` lookups and `/etc/shadow` password changes. Guest bytes: parsed line
//! by line with bounds, never trusted beyond the fields read; the shadow file is
//! rewritten with only the changed entry's password field replaced, every other byte
//! (odd lines, comments, missing final newline, CRLF) kept as it was. Passwords are
//! hashed with sha512-crypt (RustCrypto `sha-crypt`), in the `$6$SALT$HASH` form glibc
//! writes (default 5000 rounds, 16 salt characters).

use crate::error::{Error, Result};

/// The most lines of `/etc/passwd` or `/etc/shadow` looked at.
const MAX_LINES: usize = 1_000_000;

/// One `/etc/passwd` entry (the fields customize needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// The entry for `user` in `/etc/passwd` text.
pub fn find_user(passwd: &[u8], user: &str) -> Option<User> {
    for line in passwd.split(|b| *b == b'\n').take(MAX_LINES) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut f = line.split(|b| *b == b':');
        let name = f.next()?;
        if name != user.as_bytes() {
            continue;
        }
        let _pw = f.next();
        let uid = std::str::from_utf8(f.next()?).ok()?.parse().ok()?;
        let gid = std::str::from_utf8(f.next()?).ok()?.parse().ok()?;
        let _gecos = f.next();
        let home = String::from_utf8(f.next()?.to_vec()).ok()?;
        return Some(User {
            name: user.to_string(),
            uid,
            gid,
            home,
        });
    }
    None
}

/// Every `/etc/passwd` entry with a usable home directory.
pub fn users(passwd: &[u8]) -> Vec<User> {
    let mut out = Vec::new();
    for line in passwd.split(|b| *b == b'\n').take(MAX_LINES) {
        let Some(name) = line.split(|b| *b == b':').next() else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if name.is_empty() || name.starts_with(['#', '+', '-']) {
            continue;
        }
        if let Some(u) = find_user(line, name) {
            out.push(u);
        }
    }
    out
}

/// A user name as `useradd` accepts it (what customize will look for).
pub fn check_user_name(user: &str) -> Result<()> {
    let ok = !user.is_empty()
        && user.len() <= 256
        && !user.starts_with('-')
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("{user:?}: not a user name")))
    }
}

/// `shadow` with the password field of `user`'s entry set to `field`; every other byte
/// kept. `None` when no entry names `user`.
pub fn set_shadow_password(shadow: &[u8], user: &str, field: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(shadow.len() + field.len());
    let mut found = false;
    let mut rest = shadow;
    let mut lines = 0usize;
    while !rest.is_empty() {
        lines += 1;
        if lines > MAX_LINES {
            return None;
        }
        let (line, tail) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..=i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = tail;
        let name_end = line.iter().position(|b| *b == b':');
        let is_user = !found && name_end.is_some_and(|i| &line[..i] == user.as_bytes());
        if !is_user {
            out.extend_from_slice(line);
            continue;
        }
        found = true;
        let i = name_end.unwrap_or(0);
        out.extend_from_slice(&line[..=i]);
        let after = &line[i + 1..];
        let pw_end = after
            .iter()
            .position(|b| matches!(b, b':' | b'\n' | b'\r'))
            .unwrap_or(after.len());
        out.extend_from_slice(field.as_bytes());
        out.extend_from_slice(&after[pw_end..]);
    }
    found.then_some(out)
}

/// The crypt(3) base64 alphabet.
const CRYPT64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `count` random salt characters from the crypt alphabet (the host's `/dev/urandom`).
pub fn random_salt(count: usize) -> Result<String> {
    let bytes = random_bytes(count)?;
    Ok(bytes
        .iter()
        .map(|b| CRYPT64[(b & 63) as usize] as char)
        .collect())
}

/// `n` bytes from the host's `/dev/urandom`.
pub fn random_bytes(n: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

/// sha512-crypt of `password` with `salt` (at most 16 characters used), default rounds:
/// `$6$SALT$HASH`, as glibc's `crypt(3)` and `openssl passwd -6 -salt SALT` write it.
pub fn sha512_crypt(password: &[u8], salt: &str) -> String {
    let salt: String = salt.chars().take(16).collect();
    let params = sha_crypt::Params::RECOMMENDED;
    let raw = sha_crypt::sha512_crypt(password, salt.as_bytes(), params);
    // The byte order of the output encoding (Drepper's "Unix crypt using SHA-256 and
    // SHA-512" specification): groups of three bytes, then the last byte alone.
    const ORDER: [(usize, usize, usize); 21] = [
        (0, 21, 42),
        (22, 43, 1),
        (44, 2, 23),
        (3, 24, 45),
        (25, 46, 4),
        (47, 5, 26),
        (6, 27, 48),
        (28, 49, 7),
        (50, 8, 29),
        (9, 30, 51),
        (31, 52, 10),
        (53, 11, 32),
        (12, 33, 54),
        (34, 55, 13),
        (56, 14, 35),
        (15, 36, 57),
        (37, 58, 16),
        (59, 17, 38),
        (18, 39, 60),
        (40, 61, 19),
        (62, 20, 41),
    ];
    let mut out = format!("$6${salt}$");
    let mut push = |w: u32, n: usize| {
        let mut w = w;
        for _ in 0..n {
            out.push(CRYPT64[(w & 63) as usize] as char);
            w >>= 6;
        }
    };
    for (a, b, c) in ORDER {
        let w = (u32::from(raw[a]) << 16) | (u32::from(raw[b]) << 8) | u32::from(raw[c]);
        push(w, 4);
    }
    push(u32::from(raw[63]), 2);
    out
}

/// A random password of about 120 bits, from an unambiguous alphabet.
pub fn random_password() -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    // 21 characters of a 57-letter alphabet: about 122 bits; rejection sampling keeps it
    // uniform.
    let mut out = String::new();
    while out.len() < 21 {
        for b in random_bytes(64)? {
            let limit = 256 - 256 % ALPHABET.len();
            if (b as usize) < limit && out.len() < 21 {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's own test vectors.
    #[test]
    fn sha512_crypt_vectors() {
        assert_eq!(
            sha512_crypt(b"Hello world!", "saltstring"),
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
        );
        assert_eq!(
            sha512_crypt(b"", "saltstring").len(),
            "$6$saltstring$".len() + 86
        );
    }

    #[test]
    fn shadow_rewrite_keeps_other_bytes() {
        let shadow = b"root:*:19000:0:99999:7:::\r\n# comment\ndaemon:*:19000:0:99999:7:::\nodd line without colon\nalice:$6$x$y:19001:0:99999:7:::";
        let out = set_shadow_password(shadow, "alice", "NEW").unwrap();
        assert_eq!(
            out,
            b"root:*:19000:0:99999:7:::\r\n# comment\ndaemon:*:19000:0:99999:7:::\nodd line without colon\nalice:NEW:19001:0:99999:7:::".to_vec()
        );
        let out = set_shadow_password(shadow, "root", "H").unwrap();
        assert!(out.starts_with(b"root:H:19000:0:99999:7:::\r\n# comment\n"));
        assert_eq!(out.len(), shadow.len());
        assert!(set_shadow_password(shadow, "bob", "x").is_none());
        // A name is matched whole.
        assert!(set_shadow_password(shadow, "alic", "x").is_none());
        // An entry without a password field gets one.
        assert_eq!(
            set_shadow_password(b"u\nv:", "v", "P").unwrap(),
            b"u\nv:P".to_vec()
        );
    }

    #[test]
    fn passwd_lookup() {
        let p = b"root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1001:Alice,,,:/home/alice:/bin/bash\nbad:x:notanumber:1:x:/h:/s\n";
        assert_eq!(
            find_user(p, "alice").unwrap(),
            User {
                name: "alice".into(),
                uid: 1000,
                gid: 1001,
                home: "/home/alice".into()
            }
        );
        assert!(find_user(p, "bad").is_none());
        assert!(find_user(p, "bob").is_none());
        assert_eq!(users(p).len(), 2);
        assert!(check_user_name("alice").is_ok());
        assert!(check_user_name("a:b").is_err());
        assert!(check_user_name("").is_err());
    }

    #[test]
    fn random_things() {
        let s = random_salt(16).unwrap();
        assert_eq!(s.len(), 16);
        assert!(s.bytes().all(|b| CRYPT64.contains(&b)));
        let p = random_password().unwrap();
        assert_eq!(p.len(), 21);
    }
}
