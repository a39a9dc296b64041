//! The LUKS2 header (cryptsetup's "LUKS2 On-Disk Format Specification"): two copies of a
//! 4096-byte big-endian binary header, each followed by its JSON metadata area; a
//! checksum covers both parts. The copy with a valid checksum and the higher sequence
//! id wins. The JSON names keyslots, segments, digests, tokens (ignored) and config.

use super::crypto::{AF_STRIPES, Hash, Kdf, printable};
use super::json::{self, Value};
use super::{
    CipherSpec, KeyDigest, Keyslot, LuksHeader, MAGIC, MAGIC_SECONDARY, Segment, err, read_bytes,
};
use crate::block::SharedDevice;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use base64ct::{Base64, Encoding};
use wire::{Error, ErrorKind};

const BINARY_LEN: usize = 4096;
/// Where a secondary header may start: the primary's size, 16 KiB to 4 MiB.
const HDR_SIZES: [u64; 9] = [
    16 << 10,
    32 << 10,
    64 << 10,
    128 << 10,
    256 << 10,
    512 << 10,
    1 << 20,
    2 << 20,
    4 << 20,
];
/// LUKS2 has at most 32 keyslots; segments and digests are bounded alike.
const MAX_OBJECTS: usize = 32;

fn corrupt(msg: impl Into<String>) -> Error {
    err(ErrorKind::Corrupt, msg)
}

fn be64(b: &[u8], off: usize) -> Option<u64> {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_be_bytes)
}

/// One header copy that passed its checksum.
struct Copy {
    seqid: u64,
    hdr_size: u64,
    uuid: String,
    label: Option<String>,
    json: Vec<u8>,
}

/// A NUL-terminated text field of the binary header.
fn text(b: &[u8], off: usize, len: usize) -> Option<String> {
    let f = b.get(off..off + len)?;
    let end = f.iter().position(|&c| c == 0).unwrap_or(f.len());
    let s = core::str::from_utf8(f.get(..end)?).ok()?;
    Some(printable(s))
}

/// Reads and checks the header copy at `offset` (`secondary`: expect "SKUL").
fn read_copy(dev: &SharedDevice, offset: u64, secondary: bool) -> Result<Copy, Error> {
    let which = if secondary { "secondary" } else { "primary" };
    let bin = read_bytes(dev, offset, BINARY_LEN, "LUKS2 header")?;
    let magic = if secondary { MAGIC_SECONDARY } else { MAGIC };
    if bin.get(..6) != Some(&magic[..]) {
        return Err(corrupt(format!("LUKS2 {which} header: bad magic")));
    }
    let version = bin
        .get(6..8)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_be_bytes);
    if version != Some(2) {
        return Err(corrupt(format!("LUKS2 {which} header: bad version")));
    }
    let hdr_size = be64(&bin, 8).unwrap_or(0);
    if !HDR_SIZES.contains(&hdr_size) {
        return Err(corrupt(format!(
            "LUKS2 {which} header: header size {hdr_size} is invalid"
        )));
    }
    if be64(&bin, 256) != Some(offset) {
        return Err(corrupt(format!(
            "LUKS2 {which} header: recorded offset does not match its position"
        )));
    }
    let seqid = be64(&bin, 16).unwrap_or(0);
    let csum_alg = text(&bin, 72, 32).unwrap_or_default();
    let hash = Hash::parse(&csum_alg).map_err(|e| {
        err(
            e.kind,
            format!("LUKS2 {which} header checksum: {}", e.message),
        )
    })?;
    drop(bin);
    // hdr_size is one of HDR_SIZES (at most 4 MiB).
    let mut all = read_bytes(dev, offset, hdr_size as usize, "LUKS2 header")?;
    let stored: Vec<u8> = all.get(448..448 + 64).unwrap_or_default().to_vec();
    if let Some(c) = all.get_mut(448..448 + 64) {
        c.fill(0);
    }
    let mut sum = [0u8; 64];
    hash.digest_into(&[&all], &mut sum);
    if stored.get(..hash.len()) != sum.get(..hash.len()) {
        return Err(corrupt(format!("LUKS2 {which} header: checksum mismatch")));
    }
    let uuid = text(&all, 168, 40).unwrap_or_default();
    let label = text(&all, 24, 48).filter(|l| !l.is_empty());
    let json: Vec<u8> = all.get(BINARY_LEN..).unwrap_or_default().to_vec();
    Ok(Copy {
        seqid,
        hdr_size,
        uuid,
        label,
        json,
    })
}

/// True when a secondary LUKS2 header magic sits at one of its possible offsets (the
/// primary may have been wiped).
pub fn has_secondary(dev: &SharedDevice) -> bool {
    HDR_SIZES.iter().any(|&o| {
        read_bytes(dev, o, 8, "LUKS2 header")
            .is_ok_and(|b| b.get(..6) == Some(&MAGIC_SECONDARY[..]))
    })
}

pub fn read(dev: &SharedDevice) -> Result<LuksHeader, Error> {
    let primary = read_copy(dev, 0, false);
    let secondary = match &primary {
        Ok(p) => read_copy(dev, p.hdr_size, true),
        Err(_) => HDR_SIZES
            .iter()
            .map(|&o| read_copy(dev, o, true))
            .find(|r| r.is_ok())
            .unwrap_or_else(|| Err(corrupt("LUKS2 secondary header: not found"))),
    };
    let best = match (primary, secondary) {
        (Ok(p), Ok(s)) => {
            if s.seqid > p.seqid {
                s
            } else {
                p
            }
        }
        (Ok(p), Err(_)) => p,
        (Err(_), Ok(s)) => s,
        (Err(p), Err(_)) => {
            return Err(corrupt(format!(
                "{}; no valid secondary header either",
                p.message
            )));
        }
    };
    from_json(&best.json, best.hdr_size, best.uuid, best.label)
}

/// A decimal u64 stored as a JSON string (LUKS2's convention for 64-bit values).
fn u64_str(v: Option<&Value>, what: &str) -> Result<u64, Error> {
    let s = v
        .and_then(Value::as_str)
        .ok_or_else(|| corrupt(format!("LUKS2 metadata: {what} is missing")))?;
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(corrupt(format!("LUKS2 metadata: {what} is not a number")));
    }
    s.parse()
        .map_err(|_| corrupt(format!("LUKS2 metadata: {what} is out of range")))
}

fn num(v: Option<&Value>, what: &str) -> Result<u32, Error> {
    v.and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| corrupt(format!("LUKS2 metadata: {what} is missing or out of range")))
}

fn string<'a>(v: Option<&'a Value>, what: &str) -> Result<&'a str, Error> {
    v.and_then(Value::as_str)
        .ok_or_else(|| corrupt(format!("LUKS2 metadata: {what} is missing")))
}

/// Base64 into a bounded buffer (salts and digests are at most 64 bytes).
fn b64(v: Option<&Value>, what: &str) -> Result<Vec<u8>, Error> {
    let s = string(v, what)?;
    let mut buf = [0u8; 64];
    if s.len() > 100 {
        return Err(corrupt(format!("LUKS2 metadata: {what} is too long")));
    }
    let out = Base64::decode(s, &mut buf)
        .map_err(|_| corrupt(format!("LUKS2 metadata: {what} is not valid base64")))?;
    Ok(out.to_vec())
}

/// An object's members whose names are small decimal ids ("0".."31").
fn numbered<'a>(root: &'a Value, name: &str) -> Result<Vec<(u32, &'a Value)>, Error> {
    let members = root
        .get(name)
        .and_then(Value::as_object)
        .ok_or_else(|| corrupt(format!("LUKS2 metadata: {name} is missing")))?;
    if members.len() > MAX_OBJECTS {
        return Err(corrupt(format!(
            "LUKS2 metadata: more than {MAX_OBJECTS} {name}"
        )));
    }
    let mut out = Vec::new();
    for (k, v) in members {
        let id: u32 = (k.len() <= 2 && k.bytes().all(|c| c.is_ascii_digit()))
            .then(|| k.parse().ok())
            .flatten()
            .filter(|&n| (n as usize) < MAX_OBJECTS)
            .ok_or_else(|| corrupt(format!("LUKS2 metadata: bad {name} id {:?}", printable(k))))?;
        if out.iter().any(|(i, _)| *i == id) {
            return Err(corrupt(format!("LUKS2 metadata: duplicate {name} id {id}")));
        }
        out.push((id, v));
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out)
}

/// A list of ids stored as strings (`"keyslots": ["0", "1"]`).
fn id_list(v: Option<&Value>, what: &str) -> Result<Vec<u32>, Error> {
    let a = v
        .and_then(Value::as_array)
        .ok_or_else(|| corrupt(format!("LUKS2 metadata: {what} is missing")))?;
    if a.len() > MAX_OBJECTS {
        return Err(corrupt(format!(
            "LUKS2 metadata: {what} lists too many ids"
        )));
    }
    a.iter()
        .map(|x| {
            x.as_str()
                .filter(|s| s.len() <= 2)
                .and_then(|s| s.parse::<u32>().ok())
                .ok_or_else(|| corrupt(format!("LUKS2 metadata: bad id in {what}")))
        })
        .collect()
}

/// Builds the header model from the JSON area of a header copy of `hdr_size` bytes.
pub fn from_json(
    json_area: &[u8],
    hdr_size: u64,
    uuid: String,
    label: Option<String>,
) -> Result<LuksHeader, Error> {
    let end = json_area
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(json_area.len());
    let text = core::str::from_utf8(json_area.get(..end).unwrap_or_default())
        .map_err(|_| corrupt("LUKS2 metadata: not UTF-8"))?;
    let root = json::parse(text).map_err(|e| {
        corrupt(format!(
            "LUKS2 metadata: invalid JSON at byte {}: {}",
            e.offset, e.what
        ))
    })?;
    if root.as_object().is_none() {
        return Err(corrupt("LUKS2 metadata: not a JSON object"));
    }

    // config: sizes and requirements.
    let config = root
        .get("config")
        .ok_or_else(|| corrupt("LUKS2 metadata: config is missing"))?;
    let json_size = u64_str(config.get("json_size"), "config.json_size")?;
    if Some(json_size) != hdr_size.checked_sub(BINARY_LEN as u64) {
        return Err(corrupt(
            "LUKS2 metadata: json_size does not match the header size",
        ));
    }
    let keyslots_size = u64_str(config.get("keyslots_size"), "config.keyslots_size")?;
    if let Some(req) = config.get("requirements").and_then(|r| r.get("mandatory"))
        && let Some(list) = req.as_array()
        && !list.is_empty()
    {
        let names: Vec<String> = list
            .iter()
            .take(4)
            .map(|v| printable(v.as_str().unwrap_or("?")))
            .collect();
        return Err(err(
            ErrorKind::Unsupported,
            format!("LUKS2 requirement {} is not supported", names.join(", ")),
        ));
    }

    // The one data segment.
    let segments = numbered(&root, "segments")?;
    let (seg_id, seg) = match segments.as_slice() {
        [one] => *one,
        [] => return Err(corrupt("LUKS2 metadata: no segment")),
        _ => {
            return Err(err(
                ErrorKind::Unsupported,
                "LUKS2 with several segments (reencryption in progress) is not supported",
            ));
        }
    };
    let seg_type = string(seg.get("type"), "segment type")?;
    if seg_type != "crypt" {
        return Err(err(
            ErrorKind::Unsupported,
            format!(
                "LUKS2 segment type {:?} is not supported",
                printable(seg_type)
            ),
        ));
    }
    if seg.get("integrity").is_some_and(|v| *v != Value::Null) {
        return Err(err(
            ErrorKind::Unsupported,
            "LUKS2 authenticated encryption (integrity) is not supported",
        ));
    }
    let size = match seg.get("size").and_then(Value::as_str) {
        Some("dynamic") => None,
        _ => Some(u64_str(seg.get("size"), "segment size")?),
    };
    let sector_size = num(seg.get("sector_size"), "segment sector_size")?;
    let cipher = CipherSpec::parse(string(seg.get("encryption"), "segment encryption")?)
        .map_err(|e| err(e.kind, format!("LUKS2 segment: {}", e.message)))?;
    let segment = Segment {
        offset: u64_str(seg.get("offset"), "segment offset")?,
        size,
        iv_tweak: u64_str(seg.get("iv_tweak"), "segment iv_tweak")?,
        cipher,
        sector_size,
    };

    // Digests bound to the segment.
    let mut digests = Vec::new();
    for (id, d) in numbered(&root, "digests")? {
        let what = |m: &str| format!("digest {id} {m}");
        if string(d.get("type"), &what("type"))? != "pbkdf2" {
            continue;
        }
        if !id_list(d.get("segments"), &what("segments"))?.contains(&seg_id) {
            continue;
        }
        digests.push(KeyDigest {
            keyslots: id_list(d.get("keyslots"), &what("keyslots"))?,
            hash: Hash::parse(string(d.get("hash"), &what("hash"))?)
                .map_err(|e| err(e.kind, format!("LUKS2 {}: {}", what("hash"), e.message)))?,
            iterations: num(d.get("iterations"), &what("iterations"))?,
            salt: b64(d.get("salt"), &what("salt"))?,
            digest: b64(d.get("digest"), &what("digest"))?,
        });
    }

    // Keyslots of type luks2 (others, e.g. reencryption slots, hold no volume key).
    let area_min = hdr_size * 2;
    let area_max = area_min.saturating_add(keyslots_size);
    let mut keyslots = Vec::new();
    for (id, k) in numbered(&root, "keyslots")? {
        let ctx = |e: Error| {
            let m = e.message.trim_start_matches("LUKS2 metadata: ");
            err(e.kind, format!("LUKS2 keyslot {id}: {m}"))
        };
        if string(k.get("type"), "keyslot type").map_err(ctx)? != "luks2" {
            continue;
        }
        let af = k.get("af").ok_or_else(|| ctx(corrupt("af is missing")))?;
        if string(af.get("type"), "af type").map_err(ctx)? != "luks1" {
            return Err(ctx(err(ErrorKind::Unsupported, "af type is not supported")));
        }
        let stripes = num(af.get("stripes"), "af stripes").map_err(ctx)?;
        if stripes != AF_STRIPES {
            return Err(ctx(corrupt(format!(
                "{stripes} anti-forensic stripes (LUKS uses {AF_STRIPES})"
            ))));
        }
        let af_hash = Hash::parse(string(af.get("hash"), "af hash").map_err(ctx)?).map_err(ctx)?;
        let area = k
            .get("area")
            .ok_or_else(|| ctx(corrupt("area is missing")))?;
        if string(area.get("type"), "area type").map_err(ctx)? != "raw" {
            return Err(ctx(err(
                ErrorKind::Unsupported,
                "area type is not supported",
            )));
        }
        let area_offset = u64_str(area.get("offset"), "area offset").map_err(ctx)?;
        let area_size = u64_str(area.get("size"), "area size").map_err(ctx)?;
        if area_offset < area_min || area_offset.saturating_add(area_size) > area_max {
            return Err(ctx(corrupt("area lies outside the keyslots area")));
        }
        let area_cipher =
            CipherSpec::parse(string(area.get("encryption"), "area encryption").map_err(ctx)?)
                .map_err(ctx)?;
        let kdf_v = k.get("kdf").ok_or_else(|| ctx(corrupt("kdf is missing")))?;
        let kdf = match string(kdf_v.get("type"), "kdf type").map_err(ctx)? {
            "pbkdf2" => Kdf::Pbkdf2 {
                hash: Hash::parse(string(kdf_v.get("hash"), "kdf hash").map_err(ctx)?)
                    .map_err(ctx)?,
                iterations: num(kdf_v.get("iterations"), "kdf iterations").map_err(ctx)?,
                salt: b64(kdf_v.get("salt"), "kdf salt").map_err(ctx)?,
            },
            t @ ("argon2i" | "argon2id") => Kdf::Argon2 {
                id: t == "argon2id",
                time: num(kdf_v.get("time"), "kdf time").map_err(ctx)?,
                memory: num(kdf_v.get("memory"), "kdf memory").map_err(ctx)?,
                cpus: num(kdf_v.get("cpus"), "kdf cpus").map_err(ctx)?,
                salt: b64(kdf_v.get("salt"), "kdf salt").map_err(ctx)?,
            },
            other => {
                return Err(ctx(err(
                    ErrorKind::Unsupported,
                    format!("kdf {:?} is not supported", printable(other)),
                )));
            }
        };
        let priority = match k.get("priority") {
            None | Some(Value::Null) => 1,
            Some(v) => num(Some(v), "priority").map_err(ctx)?,
        };
        if priority > 2 {
            return Err(ctx(corrupt(format!("priority {priority} is invalid"))));
        }
        keyslots.push(Keyslot {
            id,
            key_size: num(k.get("key_size"), "key_size").map_err(ctx)? as usize,
            kdf,
            af_hash,
            stripes,
            area_offset,
            area_size,
            area_cipher,
            area_key_size: num(area.get("key_size"), "area key_size").map_err(ctx)? as usize,
            priority,
        });
    }
    // The segment's cipher must accept the bound keyslots' key size.
    for k in &keyslots {
        if digests.iter().any(|d| d.keyslots.contains(&k.id)) {
            segment
                .cipher
                .check_key_size(k.key_size)
                .map_err(|e| err(e.kind, format!("LUKS2 keyslot {}: {}", k.id, e.message)))?;
        }
    }
    Ok(LuksHeader {
        version: 2,
        uuid,
        label,
        segment,
        keyslots,
        digests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn json_model_refusals() {
        let good = r#"{"keyslots":{"0":{"type":"luks2","key_size":64,"af":{"type":"luks1","stripes":4000,"hash":"sha256"},"area":{"type":"raw","offset":"32768","size":"258048","encryption":"aes-xts-plain64","key_size":64},"kdf":{"type":"pbkdf2","hash":"sha256","iterations":1000,"salt":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}},"tokens":{},"segments":{"0":{"type":"crypt","offset":"16777216","size":"dynamic","iv_tweak":"0","encryption":"aes-xts-plain64","sector_size":512}},"digests":{"0":{"type":"pbkdf2","keyslots":["0"],"segments":["0"],"hash":"sha256","iterations":1000,"salt":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","digest":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}},"config":{"json_size":"12288","keyslots_size":"16744448"}}"#;
        let h = from_json(good.as_bytes(), 16384, "u".to_string(), None).unwrap();
        assert_eq!(h.keyslots.len(), 1);
        assert_eq!(h.segment.offset, 16 << 20);
        h.validate(32 << 20).unwrap();
        for (from, to, kind) in [
            ("\"stripes\":4000", "\"stripes\":4001", ErrorKind::Corrupt),
            (
                "\"key_size\":64,\"af\"",
                "\"key_size\":1000,\"af\"",
                ErrorKind::Corrupt,
            ),
            (
                "\"segments\":{\"0\"",
                "\"segments\":{\"x\"",
                ErrorKind::Corrupt,
            ),
            (
                "aes-xts-plain64\",\"sector",
                "serpent-xts-plain64\",\"sector",
                ErrorKind::Unsupported,
            ),
            (
                "\"json_size\":\"12288\"",
                "\"json_size\":\"1\"",
                ErrorKind::Corrupt,
            ),
            (
                "\"offset\":\"32768\"",
                "\"offset\":\"0\"",
                ErrorKind::Corrupt,
            ),
            (
                "\"iterations\":1000,\"salt",
                "\"iterations\":-1,\"salt",
                ErrorKind::Corrupt,
            ),
            (
                "\"config\":{",
                "\"config\":{\"requirements\":{\"mandatory\":[\"online-reencrypt\"]},",
                ErrorKind::Unsupported,
            ),
        ] {
            assert!(good.contains(from), "{from}");
            let bad = good.replacen(from, to, 1);
            let r = from_json(bad.as_bytes(), 16384, String::new(), None)
                .and_then(|h| h.validate(32 << 20));
            let e = r.unwrap_err();
            assert_eq!(e.kind, kind, "{to}: {e}");
        }
    }
}
