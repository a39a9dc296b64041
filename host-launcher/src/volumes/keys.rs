//! Keys for encrypted volumes, in libguestfs' syntax (`--key SELECTOR`):
//!
//! - `ID:key:PASSPHRASE`: the passphrase itself;
//! - `ID:file:PATH`: the first line of the file `PATH` (without its newline), as
//!   libguestfs reads it;
//!
//! where `ID` is a device as the appliance names it (`/dev/sda2`, `/dev/VG/LV`,
//! `/dev/mapper/luks-…`), a LUKS UUID, the path of an encrypted qcow2 image, or `all`
//! (tried on every device that has no key of its own).
//!
//! A [`Secret`] never shows its bytes: its `Debug` is redacted, it is zeroed when
//! dropped, and no error message of this module quotes it.

use crate::error::{Error, Result};
use std::fmt;
use std::path::Path;
use zeroize::Zeroizing;

/// The longest key or passphrase accepted (cryptsetup's own limit is 8 MiB for a key
/// file; a passphrase is far shorter).
pub const MAX_KEY_LEN: usize = 8 << 20;

/// A passphrase or key: bytes that are never printed and are zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(Zeroizing::new(bytes.into()))
    }

    /// The bytes (to hand to the appliance or to qemu, nowhere else).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

/// Which devices a key is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelector {
    /// `all`: every device without a key of its own.
    All,
    /// A device name, a LUKS UUID or an image path.
    Id(String),
}

/// One `--key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub selector: KeySelector,
    pub secret: Secret,
}

/// The keys a launch may use, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    pub fn new() -> KeySet {
        KeySet::default()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Adds a key for `selector`.
    pub fn add(&mut self, selector: KeySelector, secret: Secret) {
        self.keys.push(Key { selector, secret });
    }

    /// Adds a key given in libguestfs' `--key` syntax ([`parse_key`]).
    pub fn add_spec(&mut self, spec: &str) -> Result<()> {
        self.keys.push(parse_key(spec)?);
        Ok(())
    }

    /// The keys to try on the LUKS device `device` whose header UUID is `uuid`: those
    /// naming the device or the UUID (in the order given), then the `all` keys.
    pub fn for_luks(&self, device: &str, uuid: &str) -> Vec<&Secret> {
        self.matching(|id| {
            id == device
                || (!uuid.is_empty() && id.eq_ignore_ascii_case(uuid))
                || same_lv(id, device)
        })
    }

    /// The keys to try on an encrypted image: those naming its path (as given or
    /// canonical) or, for the image attached as `device` (`/dev/sda`), that device;
    /// then the `all` keys.
    pub fn for_image(&self, device: Option<&str>, path: &Path) -> Vec<&Secret> {
        let canonical = std::fs::canonicalize(path).ok();
        self.matching(|id| {
            device == Some(id)
                || Path::new(id) == path
                || canonical
                    .as_deref()
                    .is_some_and(|c| std::fs::canonicalize(id).is_ok_and(|i| i == c))
        })
    }

    fn matching(&self, mut named: impl FnMut(&str) -> bool) -> Vec<&Secret> {
        let own = self.keys.iter().filter(|k| match &k.selector {
            KeySelector::Id(id) => named(id),
            KeySelector::All => false,
        });
        let all = self.keys.iter().filter(|k| k.selector == KeySelector::All);
        own.chain(all).map(|k| &k.secret).collect()
    }
}

/// `/dev/mapper/VG-LV` and `/dev/VG/LV` name the same logical volume.
fn same_lv(a: &str, b: &str) -> bool {
    match (mapper_to_lv(a), mapper_to_lv(b)) {
        (Some(x), _) => x == b,
        (_, Some(y)) => y == a,
        _ => false,
    }
}

/// `/dev/mapper/vg--name-lv` → `/dev/vg-name/lv` (device-mapper doubles the dashes of
/// each name and joins them with one dash); `None` for names that are not of that form.
pub fn mapper_to_lv(name: &str) -> Option<String> {
    let rest = name.strip_prefix("/dev/mapper/")?;
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'-' {
            if b.get(i + 1) == Some(&b'-') {
                i += 2;
                continue;
            }
            let (vg, lv) = (&rest[..i], &rest[i + 1..]);
            if vg.is_empty() || lv.is_empty() {
                return None;
            }
            return Some(format!(
                "/dev/{}/{}",
                vg.replace("--", "-"),
                lv.replace("--", "-")
            ));
        }
        i += 1;
    }
    None
}

/// Parses one `--key` in libguestfs' syntax: `ID:key:PASSPHRASE` or `ID:file:PATH`
/// (`ID` may be `all`). The ID ends at the first `:key:` or `:file:`, so an image path
/// may hold colons and a passphrase may hold anything. A file key is read at once (its
/// first line). Errors never quote the passphrase.
pub fn parse_key(spec: &str) -> Result<Key> {
    let bad = |why: &str| Error::InvalidArgument(format!("--key: {why}"));
    let mut found = None;
    for (i, _) in spec.match_indices(':') {
        let rest = &spec[i + 1..];
        if let Some(v) = rest.strip_prefix("key:") {
            found = Some((&spec[..i], KeyKind::Key, v));
            break;
        }
        if let Some(v) = rest.strip_prefix("file:") {
            found = Some((&spec[..i], KeyKind::File, v));
            break;
        }
        if rest == "clevis" || rest.starts_with("clevis:") {
            return Err(bad(
                "clevis (network-bound) keys are not supported; give the passphrase with \
                 ID:key:PASSPHRASE or ID:file:PATH",
            ));
        }
    }
    let Some((id, kind, value)) = found else {
        return Err(bad(
            "expected ID:key:PASSPHRASE or ID:file:PATH (ID: a device such as /dev/sda2, \
             a LUKS UUID, an image path, or all)",
        ));
    };
    if id.is_empty() {
        return Err(bad("the device (ID) before :key: or :file: is empty"));
    }
    let selector = if id == "all" {
        KeySelector::All
    } else {
        KeySelector::Id(id.to_string())
    };
    let secret = match kind {
        KeyKind::Key => Secret::new(value.as_bytes()),
        KeyKind::File => read_key_file(Path::new(value))?,
    };
    if secret.len() > MAX_KEY_LEN {
        return Err(bad(&format!(
            "{id}: the key is longer than {MAX_KEY_LEN} bytes"
        )));
    }
    Ok(Key { selector, secret })
}

enum KeyKind {
    Key,
    File,
}

/// The first line of a key file, without its line ending (libguestfs' reading).
pub fn read_key_file(path: &Path) -> Result<Secret> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| {
        Error::InvalidArgument(format!(
            "--key: cannot read key file {}: {e}",
            path.display()
        ))
    })?;
    let mut data = Zeroizing::new(Vec::new());
    f.take(MAX_KEY_LEN as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| {
            Error::InvalidArgument(format!(
                "--key: cannot read key file {}: {e}",
                path.display()
            ))
        })?;
    Ok(first_line(&data))
}

/// The bytes before the first `\n` (and a `\r` before it).
pub fn first_line(data: &[u8]) -> Secret {
    let end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let line = &data[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Secret::new(line.to_vec())
}

/// Asks for a key when a LUKS device has none in the [`KeySet`] (a terminal prompt, a
/// line of stdin, ...). `Ok(None)`: no key for this device (it stays locked).
pub trait KeyPrompt {
    fn ask(&mut self, device: &str, uuid: &str) -> Result<Option<Secret>>;
}

/// Never asks: devices without a key stay locked.
pub struct NoPrompt;

impl KeyPrompt for NoPrompt {
    fn ask(&mut self, _device: &str, _uuid: &str) -> Result<Option<Secret>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let k = parse_key("/dev/sda2:key:pa:ss word").unwrap();
        assert_eq!(k.selector, KeySelector::Id("/dev/sda2".into()));
        assert_eq!(k.secret.expose(), b"pa:ss word");
        let k = parse_key("all:key:").unwrap();
        assert_eq!(k.selector, KeySelector::All);
        assert!(k.secret.is_empty());
        // An image path with colons: the ID ends at the first ":key:".
        let k = parse_key("/img/a:b.qcow2:key:x:key:y").unwrap();
        assert_eq!(k.selector, KeySelector::Id("/img/a:b.qcow2".into()));
        assert_eq!(k.secret.expose(), b"x:key:y");
        for bad in ["/dev/sda2", "/dev/sda2:pass", ":key:x", "/dev/sda2:clevis"] {
            let e = parse_key(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid argument: --key"), "{e}");
        }
        // The passphrase is never in an error or a Debug.
        let e = parse_key("/dev/sda2:file:/nonexistent/k").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/k"));
        let k = parse_key("/dev/sda2:key:hunter2").unwrap();
        assert!(!format!("{k:?}").contains("hunter2"));
    }

    #[test]
    fn key_files_give_their_first_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        std::fs::write(&p, b"line one\r\nline two\n").unwrap();
        let k = parse_key(&format!("all:file:{}", p.display())).unwrap();
        assert_eq!(k.secret.expose(), b"line one");
        std::fs::write(&p, b"no newline").unwrap();
        assert_eq!(read_key_file(&p).unwrap().expose(), b"no newline");
    }

    #[test]
    fn matching_order() {
        let mut ks = KeySet::new();
        ks.add_spec("all:key:A").unwrap();
        ks.add_spec("/dev/sda2:key:B").unwrap();
        ks.add_spec("0AB-uuid:key:C").unwrap();
        ks.add_spec("/dev/mapper/vg--x-root:key:D").unwrap();
        let got = |v: Vec<&Secret>| -> Vec<String> {
            v.iter()
                .map(|s| String::from_utf8_lossy(s.expose()).into_owned())
                .collect()
        };
        assert_eq!(got(ks.for_luks("/dev/sda2", "0ab-UUID")), ["B", "C", "A"]);
        assert_eq!(got(ks.for_luks("/dev/sdb1", "")), ["A"]);
        assert_eq!(got(ks.for_luks("/dev/vg-x/root", "")), ["D", "A"]);
        assert_eq!(
            got(ks.for_image(Some("/dev/sda2"), Path::new("/x.qcow2"))),
            ["B", "A"]
        );
    }

    #[test]
    fn mapper_names() {
        assert_eq!(
            mapper_to_lv("/dev/mapper/debian--vg-root").as_deref(),
            Some("/dev/debian-vg/root")
        );
        assert_eq!(
            mapper_to_lv("/dev/mapper/vg-my--lv").as_deref(),
            Some("/dev/vg/my-lv")
        );
        assert_eq!(mapper_to_lv("/dev/mapper/luks"), None);
        assert_eq!(mapper_to_lv("/dev/mapper/-x"), None);
        assert_eq!(mapper_to_lv("/dev/sda"), None);
    }
}
