//! Registry hive tests: hives written by `hivexregedit --merge` (and one laid out by
//! hand with the structures hivex does not write: `ri` lists and `db` big data), read by
//! our reader and compared with python3-hivex's reading of the same file.

use super::regf::{self, Hive};
use super::source::{Reader, Source};
use super::tests::have;
use crate::part::testutil::{TempDir, run};
use alloc::string::ToString;
use std::fmt::Write as _;

pub(crate) const PYTHON: &str = "/usr/bin/python3";

/// python3-hivex's dump of a hive: one line per value (`path\tname\ttype\thex`) and per
/// key without values (`path`), depth first in hivex's child order.
const HIVEX_DUMP: &str = r#"
import hivex, sys
h = hivex.Hivex(sys.argv[1])
out = []
def walk(n, p):
    vs = h.node_values(n)
    if not vs:
        out.append(p)
    for v in vs:
        t, d = h.value_value(v)
        out.append("%s\t%s\t%d\t%s" % (p, h.value_key(v), t, d.hex()))
    for c in h.node_children(n):
        walk(c, p + "\\" + h.node_name(c))
walk(h.root(), "")
sys.stdout.write("\n".join(out) + "\n")
"#;

fn hivex_dump(path: &str) -> String {
    run(PYTHON, &["-c", HIVEX_DUMP, path], None)
}

/// Our dump, in the same format.
fn our_dump(data: &[u8]) -> String {
    let mut s: &[u8] = data;
    let mut r = Reader::new(&mut s as &mut dyn Source);
    let mut h = Hive::open(&mut r).unwrap();
    let mut out = String::new();
    let mut stack = vec![(h.root().unwrap(), String::new())];
    while let Some((k, p)) = stack.pop() {
        let vs = h.values(&k).unwrap();
        if vs.is_empty() {
            writeln!(out, "{p}").unwrap();
        }
        for v in vs {
            let hex: String = v.data.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(out, "{p}\t{}\t{}\t{hex}", v.name, v.kind).unwrap();
        }
        let subs = h.subkeys(&k).unwrap();
        for c in subs.into_iter().rev() {
            let cp = format!("{p}\\{}", c.name);
            stack.push((c, cp));
        }
    }
    out
}

/// An empty hive (base block, one bin with a security cell and the root key): what
/// `hivexregedit --merge` needs to start from.
pub(crate) fn empty_hive() -> Vec<u8> {
    let mut b = Builder::new();
    let sk = b.sk();
    let root = b.nk("ROOT", 0, 0, u32::MAX, &[], sk);
    b.finish(root, 3)
}

/// Lays out cells in one hive bin.
pub(crate) struct Builder {
    bin: Vec<u8>,
}

impl Builder {
    pub(crate) fn new() -> Self {
        let mut bin = vec![0u8; 32];
        bin[..4].copy_from_slice(b"hbin");
        Builder { bin }
    }

    pub(crate) fn cell(&mut self, data: &[u8]) -> u32 {
        let off = self.bin.len() as u32;
        let size = (4 + data.len()).div_ceil(8) * 8;
        self.bin.extend((-(size as i32)).to_le_bytes());
        self.bin.extend_from_slice(data);
        self.bin.resize(off as usize + size, 0);
        off
    }

    fn sk(&mut self) -> u32 {
        let off = self.bin.len() as u32;
        let sd = [
            1u8, 0, 0x04, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let mut c = b"sk\0\0".to_vec();
        for v in [off, off, 1, sd.len() as u32] {
            c.extend(v.to_le_bytes());
        }
        c.extend(sd);
        self.cell(&c)
    }

    /// A key node with a subkey list already built (`list`, or u32::MAX) and values.
    pub(crate) fn nk(
        &mut self,
        name: &str,
        parent: u32,
        nsub: u32,
        list: u32,
        values: &[u32],
        sk: u32,
    ) -> u32 {
        let vlist = if values.is_empty() {
            u32::MAX
        } else {
            let d: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.cell(&d)
        };
        let mut c = vec![0u8; 76];
        c[..2].copy_from_slice(b"nk");
        c[2..4].copy_from_slice(&0x20u16.to_le_bytes());
        for (o, v) in [
            (16, parent),
            (20, nsub),
            (28, list),
            (32, u32::MAX),
            (36, values.len() as u32),
            (40, vlist),
            (44, sk),
            (48, u32::MAX),
        ] {
            c[o..o + 4].copy_from_slice(&v.to_le_bytes());
        }
        c[72..74].copy_from_slice(&(name.len() as u16).to_le_bytes());
        c.extend(name.as_bytes());
        self.cell(&c)
    }

    /// A value with its data in a cell (or inline when at most 4 bytes, or in `db`
    /// segments when `big`).
    pub(crate) fn vk(&mut self, name: &str, kind: u32, data: &[u8], big: bool) -> u32 {
        let (size, off) = if data.len() <= 4 {
            let mut d = [0u8; 4];
            d[..data.len()].copy_from_slice(data);
            (0x8000_0000 | data.len() as u32, u32::from_le_bytes(d))
        } else if big {
            let segs: Vec<u32> = data.chunks(16344).map(|s| self.cell(s)).collect();
            let list: Vec<u8> = segs.iter().flat_map(|v| v.to_le_bytes()).collect();
            let list = self.cell(&list);
            let mut db = b"db".to_vec();
            db.extend((segs.len() as u16).to_le_bytes());
            db.extend(list.to_le_bytes());
            db.extend(0u32.to_le_bytes());
            (data.len() as u32, self.cell(&db))
        } else {
            (data.len() as u32, self.cell(data))
        };
        let mut c = vec![0u8; 20];
        c[..2].copy_from_slice(b"vk");
        c[2..4].copy_from_slice(&(name.len() as u16).to_le_bytes());
        c[4..8].copy_from_slice(&size.to_le_bytes());
        c[8..12].copy_from_slice(&off.to_le_bytes());
        c[12..16].copy_from_slice(&kind.to_le_bytes());
        c[16..18].copy_from_slice(&1u16.to_le_bytes());
        c.extend(name.as_bytes());
        self.cell(&c)
    }

    /// A subkey list of `kind` (`lf`, `lh`, `li`, `ri`) over `offs`.
    pub(crate) fn list(&mut self, kind: &[u8; 2], offs: &[u32]) -> u32 {
        let mut c = kind.to_vec();
        c.extend((offs.len() as u16).to_le_bytes());
        for o in offs {
            c.extend(o.to_le_bytes());
            if kind == b"lf" || kind == b"lh" {
                c.extend([0u8; 4]);
            }
        }
        self.cell(&c)
    }

    pub(crate) fn finish(mut self, root: u32, minor: u32) -> Vec<u8> {
        let len = (self.bin.len() + 8).div_ceil(4096) * 4096;
        let free = len - self.bin.len();
        self.bin.extend((free as i32).to_le_bytes());
        self.bin.resize(len, 0);
        self.bin[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        let mut base = vec![0u8; 4096];
        base[..4].copy_from_slice(b"regf");
        for (o, v) in [
            (4, 1u32),
            (8, 1),
            (20, 1),
            (24, minor),
            (32, 1),
            (36, root),
            (40, len as u32),
            (44, 1),
        ] {
            base[o..o + 4].copy_from_slice(&v.to_le_bytes());
        }
        let c = regf::checksum(&base);
        base[508..512].copy_from_slice(&c.to_le_bytes());
        base.extend(self.bin);
        base
    }
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// A value name quoted as `.reg` files quote it.
fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

fn hex_list(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A `.reg` text (with every parent key listed before its children, as regedit needs).
pub(crate) struct Reg {
    text: String,
    keys: std::collections::BTreeSet<String>,
}

impl Reg {
    pub(crate) fn new() -> Self {
        Reg {
            text: "Windows Registry Editor Version 5.00\n\n".to_string(),
            keys: Default::default(),
        }
    }

    /// Opens key `path` (below the prefix), listing missing parents first.
    pub(crate) fn key(&mut self, path: &str) -> &mut Self {
        let parts: Vec<&str> = path.split('\\').collect();
        for i in 1..=parts.len() {
            let p = parts[..i].join("\\");
            if self.keys.insert(p.clone()) || i == parts.len() {
                write!(self.text, "\n[HKEY_LOCAL_MACHINE\\X\\{p}]\n").unwrap();
            }
        }
        self
    }

    /// A REG_SZ value, written as UTF-16LE bytes (hex(1)) so any character survives.
    pub(crate) fn sz(&mut self, name: &str, v: &str) -> &mut Self {
        writeln!(self.text, "{}=hex(1):{}", q(name), hex_list(&utf16z(v))).unwrap();
        self
    }

    pub(crate) fn raw(&mut self, name: &str, kind: u32, data: &[u8]) -> &mut Self {
        if name.is_empty() {
            writeln!(self.text, "@=hex({kind:x}):{}", hex_list(data)).unwrap();
        } else {
            writeln!(self.text, "{}=hex({kind:x}):{}", q(name), hex_list(data)).unwrap();
        }
        self
    }

    pub(crate) fn dword(&mut self, name: &str, v: u32) -> &mut Self {
        writeln!(self.text, "{}=dword:{v:08x}", q(name)).unwrap();
        self
    }

    /// Merges the text into an empty hive with hivexregedit; returns the hive bytes.
    pub(crate) fn build(&self, dir: &str, tag: &str) -> Vec<u8> {
        assert!(
            have("hivexregedit"),
            "hivexregedit is needed (Debian libwin-hivex-perl)"
        );
        let hive = format!("{dir}/{tag}.hive");
        let reg = format!("{dir}/{tag}.reg");
        std::fs::write(&hive, empty_hive()).unwrap();
        std::fs::write(&reg, &self.text).unwrap();
        run(
            "hivexregedit",
            &["--merge", &hive, "--prefix", "HKEY_LOCAL_MACHINE\\X", &reg],
            None,
        );
        std::fs::read(&hive).unwrap()
    }
}

#[test]
fn hivexregedit_hive_matches_python_hivex() {
    let t = TempDir::new("regf");
    let mut reg = Reg::new();
    reg.key("Types")
        .sz("Unicode", "Grüße, 世界 🚀")
        .sz("Empty", "")
        .raw("", 1, &utf16z("the default value"))
        .raw("Expand", 2, &utf16z("%SystemRoot%\\system32"))
        .raw(
            "Multi",
            7,
            &[utf16z("one"), utf16z("two"), vec![0, 0]].concat(),
        )
        .dword("Dword", 0xdead_beef)
        .raw("BigEndian", 5, &[1, 2, 3, 4])
        .raw("Qword", 0xb, &0x0102_0304_0506_0708u64.to_le_bytes())
        .raw("None", 0, &[])
        .raw("Small", 3, &[7, 8])
        .raw(
            "Large",
            3,
            &(0..40_000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>(),
        );
    // Enough subkeys for multi-cell lists, with mixed-case names.
    for i in 0..700 {
        reg.key(&format!("Many\\Key{i:04}")).dword("n", i);
    }
    reg.key("Many\\MiXeD CaSe").sz("v", "x");
    let data = reg.build(t.path(), "types");
    let path = format!("{}/types.hive", t.path());
    assert_eq!(our_dump(&data), hivex_dump(&path));

    // Lookups are case-insensitive; typed accessors agree with what was written.
    let mut s: &[u8] = &data;
    let mut r = Reader::new(&mut s as &mut dyn Source);
    let mut h = Hive::open(&mut r).unwrap();
    assert!(!h.dirty);
    let k = h.path(&["types"]).unwrap().unwrap();
    let v = |h: &mut Hive, n: &str| h.value(&k, n).unwrap().unwrap();
    assert_eq!(v(&mut h, "UNICODE").string().unwrap(), "Grüße, 世界 🚀");
    assert_eq!(v(&mut h, "").string().unwrap(), "the default value");
    assert_eq!(
        v(&mut h, "expand").string().unwrap(),
        "%SystemRoot%\\system32"
    );
    assert_eq!(v(&mut h, "Multi").multi_string().unwrap(), ["one", "two"]);
    assert_eq!(v(&mut h, "dword").dword(), Some(0xdead_beef));
    assert_eq!(v(&mut h, "BigEndian").dword(), Some(0x0102_0304));
    assert_eq!(v(&mut h, "qword").qword(), Some(0x0102_0304_0506_0708));
    assert!(h.path(&["MANY", "mixed case"]).unwrap().is_some());
    assert!(h.path(&["Many", "Key0700"]).unwrap().is_none());
    let many = h.path(&["many"]).unwrap().unwrap();
    assert_eq!(h.subkeys(&many).unwrap().len(), 701);

    // A dirty hive (sequence numbers differ) is read as it is, and flagged.
    let mut dirty = data.clone();
    dirty[8..12].copy_from_slice(&7u32.to_le_bytes());
    let c = regf::checksum(&dirty[..512]);
    dirty[508..512].copy_from_slice(&c.to_le_bytes());
    let mut s: &[u8] = &dirty;
    let mut r = Reader::new(&mut s as &mut dyn Source);
    let h = Hive::open(&mut r).unwrap();
    assert!(h.dirty);
    // A bad checksum is refused.
    let mut bad = data.clone();
    bad[100] ^= 1;
    let mut s: &[u8] = &bad;
    let mut r = Reader::new(&mut s as &mut dyn Source);
    assert!(Hive::open(&mut r).is_err());
}

#[test]
fn ri_lists_and_big_data_match_python_hivex() {
    // hivex writes neither `ri` lists nor `db` big data: this hive is laid out by hand
    // (format 1.5) and python3-hivex is the oracle for its reading.
    let t = TempDir::new("regf-ri");
    let mut b = Builder::new();
    let sk = b.sk();
    let big: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let vbig = b.vk("Blob", 3, &big, true);
    let vsmall = b.vk("Tiny", 4, &5u32.to_le_bytes(), false);
    let kids: Vec<u32> = ["Alpha", "beta", "Gamma", "delta", "Epsilon"]
        .iter()
        .map(|n| b.nk(n, 0, 0, u32::MAX, &[], sk))
        .collect();
    let lf = b.list(b"lf", &kids[..2]);
    let li = b.list(b"li", &kids[2..4]);
    let lh = b.list(b"lh", &kids[4..]);
    let ri = b.list(b"ri", &[lf, li, lh]);
    let holder = b.nk("Holder", 0, 5, ri, &[vbig, vsmall], sk);
    let top = b.list(b"lf", &[holder]);
    let root = b.nk("ROOT", 0, 1, top, &[], sk);
    let data = b.finish(root, 5);
    let path = format!("{}/ri.hive", t.path());
    std::fs::write(&path, &data).unwrap();
    let ours = our_dump(&data);
    assert_eq!(ours, hivex_dump(&path));
    assert!(ours.contains("\\Holder\\Epsilon"));
    let mut s: &[u8] = &data;
    let mut r = Reader::new(&mut s as &mut dyn Source);
    let mut h = Hive::open(&mut r).unwrap();
    let k = h.path(&["holder"]).unwrap().unwrap();
    assert_eq!(h.value(&k, "blob").unwrap().unwrap().data, big);
    assert_eq!(h.value(&k, "tiny").unwrap().unwrap().dword(), Some(5));
    assert!(h.path(&["Holder", "DELTA"]).unwrap().is_some());

    // An ri list pointing at itself is an error, not a loop.
    let mut b = Builder::new();
    let sk = b.sk();
    let ri_off = b.bin.len() as u32;
    let ri = b.list(b"ri", &[ri_off]);
    assert_eq!(ri, ri_off);
    let k = b.nk("Loop", 0, 1, ri, &[], sk);
    let top = b.list(b"lf", &[k]);
    let root = b.nk("ROOT", 0, 1, top, &[], sk);
    let data = b.finish(root, 5);
    let mut s: &[u8] = &data;
    let mut r = Reader::new(&mut s as &mut dyn Source);
    let mut h = Hive::open(&mut r).unwrap();
    let k = h.path(&["Loop"]).unwrap().unwrap();
    assert!(h.subkeys(&k).is_err());
}
