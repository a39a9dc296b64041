//! A small, defensive parser of LVM2's configuration syntax, the syntax of the volume
//! group text metadata:
//!
//! ```text
//! vg0 {                      # a section
//!     id = "abc-..."         # a string
//!     seqno = 7              # an integer
//!     status = ["READ", "WRITE"]
//!     logical_volumes { root { ... } }
//! }
//! contents = "Text Format Volume Group"
//! ```
//!
//! Bounded everywhere: the text length, the nesting depth, the number of items and list
//! elements, integers (checked, `i64`). The text may end with a NUL (the metadata area
//! stores it so); anything after the first NUL is ignored. Every failure is a `Corrupt`
//! error naming the line.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use wire::{Error, ErrorKind};

/// Longest metadata text accepted (LVM's default metadata area is 1 MiB).
pub const MAX_TEXT: usize = 8 << 20;
/// Deepest section nesting accepted (VG metadata needs 4: vg, logical_volumes, lv, segment).
pub const MAX_DEPTH: usize = 12;
/// Most items (assignments, sections and list elements together) in one text.
pub const MAX_ITEMS: usize = 400_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Str(String),
    /// A floating-point number (kept as written; VG metadata never uses them).
    Float(String),
    List(Vec<Value>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Assign(String, Value),
    Section(Section),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Section {
    pub name: String,
    pub items: Vec<Item>,
}

impl Section {
    /// The value of the first assignment to `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.items.iter().find_map(|i| match i {
            Item::Assign(k, v) if k == key => Some(v),
            _ => None,
        })
    }
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn list(&self, key: &str) -> Option<&[Value]> {
        match self.get(key)? {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    /// The strings of a list of strings (`status = ["READ", "WRITE"]`); non-strings are
    /// skipped, a missing key is empty.
    pub fn strings(&self, key: &str) -> Vec<&str> {
        self.list(key)
            .unwrap_or(&[])
            .iter()
            .filter_map(|v| match v {
                Value::Str(s) => Some(s.as_str()),
                _ => None,
            })
            .collect()
    }
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections().find(|s| s.name == name)
    }
    pub fn sections(&self) -> impl Iterator<Item = &Section> {
        self.items.iter().filter_map(|i| match i {
            Item::Section(s) => Some(s),
            _ => None,
        })
    }
}

fn corrupt(line: usize, what: &str) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("lvm metadata text, line {line}: {what}"),
    )
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
    line: usize,
    items: usize,
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'.' | b'-')
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn err(&self, what: &str) -> Error {
        corrupt(self.line, what)
    }

    fn count(&mut self) -> Result<(), Error> {
        self.items += 1;
        if self.items > MAX_ITEMS {
            return Err(self.err("too many items"));
        }
        Ok(())
    }

    /// Skips blanks and `#` comments.
    fn skip(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'#' => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn ident(&mut self) -> Result<String, Error> {
        let start = self.pos;
        while self.peek().is_some_and(is_ident) {
            self.pos += 1;
        }
        let bytes = self
            .text
            .get(start..self.pos)
            .ok_or_else(|| self.err("bad identifier"))?;
        if bytes.is_empty() {
            return Err(self.err("expected a name"));
        }
        // Identifier bytes are ASCII, so this never fails.
        String::from_utf8(bytes.to_vec()).map_err(|_| self.err("bad identifier"))
    }

    fn string(&mut self) -> Result<String, Error> {
        // At the opening quote.
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let b = self.peek().ok_or_else(|| self.err("string never ends"))?;
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let c = self.peek().ok_or_else(|| self.err("string never ends"))?;
                    self.pos += 1;
                    out.push(c);
                }
                b'\n' => {
                    self.line += 1;
                    out.push(b);
                }
                _ => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("string is not UTF-8"))
    }

    fn number(&mut self) -> Result<Value, Error> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let mut float = false;
        while let Some(b) = self.peek() {
            if b.is_ascii_digit() {
                self.pos += 1;
            } else if b == b'.' && !float {
                float = true;
                self.pos += 1;
            } else {
                break;
            }
        }
        let s = core::str::from_utf8(self.text.get(start..self.pos).unwrap_or_default())
            .map_err(|_| self.err("bad number"))?;
        if !s.bytes().any(|b| b.is_ascii_digit()) {
            return Err(self.err("bad number"));
        }
        if float {
            return Ok(Value::Float(String::from(s)));
        }
        s.parse::<i64>()
            .map(Value::Int)
            .map_err(|_| self.err("number out of range"))
    }

    fn value(&mut self) -> Result<Value, Error> {
        self.skip();
        match self.peek() {
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b'[') => {
                self.pos += 1;
                let mut list = Vec::new();
                loop {
                    self.skip();
                    match self.peek() {
                        Some(b']') => {
                            self.pos += 1;
                            break;
                        }
                        Some(b',') => {
                            self.pos += 1;
                        }
                        Some(b'[') => return Err(self.err("nested list")),
                        None => return Err(self.err("list never ends")),
                        _ => {
                            self.count()?;
                            list.push(self.value()?);
                        }
                    }
                }
                Ok(Value::List(list))
            }
            Some(b) if b.is_ascii_digit() || b == b'-' => self.number(),
            Some(_) => Err(self.err("expected a value")),
            None => Err(self.err("value missing at end of text")),
        }
    }

    /// Items until `}` (when `depth > 0`) or the end of the text (at top level).
    fn items(&mut self, depth: usize) -> Result<Vec<Item>, Error> {
        if depth > MAX_DEPTH {
            return Err(self.err("sections nested too deep"));
        }
        let mut items = Vec::new();
        loop {
            self.skip();
            match self.peek() {
                None if depth == 0 => return Ok(items),
                None => return Err(self.err("section never ends (unbalanced braces)")),
                Some(b'}') if depth > 0 => {
                    self.pos += 1;
                    return Ok(items);
                }
                Some(b'}') => return Err(self.err("unbalanced '}'")),
                _ => {}
            }
            let name = self.ident()?;
            self.count()?;
            self.skip();
            match self.peek() {
                Some(b'=') => {
                    self.pos += 1;
                    let v = self.value()?;
                    items.push(Item::Assign(name, v));
                }
                Some(b'{') => {
                    self.pos += 1;
                    let inner = self.items(depth + 1)?;
                    items.push(Item::Section(Section { name, items: inner }));
                }
                _ => return Err(self.err("expected '=' or '{' after a name")),
            }
        }
    }
}

/// Parses a whole text (up to its first NUL) into the top-level section (named "").
pub fn parse(text: &[u8]) -> Result<Section, Error> {
    if text.len() > MAX_TEXT {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "lvm metadata text is {} bytes (limit {MAX_TEXT})",
                text.len()
            ),
        ));
    }
    let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    let mut p = Parser {
        text: text.get(..end).unwrap_or_default(),
        pos: 0,
        line: 1,
        items: 0,
    };
    let items = p.items(0)?;
    Ok(Section {
        name: String::new(),
        items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vg_text() {
        let t = b"vg-1 {\n id = \"abc\" # comment\n seqno = 7\n status = [\"READ\", \"WRITE\"]\n\
                  neg = -5\n f = 1.5\n empty = [ ]\n esc = \"a\\\"b\"\n logical_volumes {\n lv_a {\n \
                  stripes = [\n\"pv0\", 0,\n\"pv1\", 3\n]\n}\n}\n}\ncontents = \"Text\"\n\0garbage {";
        let top = parse(t).unwrap();
        assert_eq!(top.str("contents"), Some("Text"));
        let vg = top.section("vg-1").unwrap();
        assert_eq!(vg.str("id"), Some("abc"));
        assert_eq!(vg.int("seqno"), Some(7));
        assert_eq!(vg.int("neg"), Some(-5));
        assert_eq!(vg.get("f"), Some(&Value::Float("1.5".into())));
        assert_eq!(vg.strings("status"), ["READ", "WRITE"]);
        assert_eq!(vg.list("empty"), Some(&[][..]));
        assert_eq!(vg.str("esc"), Some("a\"b"));
        let lv = vg
            .section("logical_volumes")
            .unwrap()
            .section("lv_a")
            .unwrap();
        assert_eq!(
            lv.list("stripes").unwrap(),
            &[
                Value::Str("pv0".into()),
                Value::Int(0),
                Value::Str("pv1".into()),
                Value::Int(3)
            ]
        );
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            &b"vg { a = 1 "[..],
            b"vg { a = \"never ends",
            b"vg { a = [1, 2 ",
            b"}",
            b"vg { a = 99999999999999999999999 }",
            b"vg { a = }",
            b"vg { a = [[1]] }",
            b"= 3",
            b"vg { a 3 }",
            b"vg { a = - }",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(
                e.kind,
                ErrorKind::Corrupt,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = "a{".repeat(MAX_DEPTH + 2) + &"}".repeat(MAX_DEPTH + 2);
        assert!(parse(deep.as_bytes()).is_err());
        let ok = "a{".repeat(MAX_DEPTH) + &"}".repeat(MAX_DEPTH);
        assert!(parse(ok.as_bytes()).is_ok());
        let many = "x = [".to_string() + &"1,".repeat(MAX_ITEMS + 1) + "]";
        assert!(parse(many.as_bytes()).is_err());
        assert!(parse(&vec![b' '; MAX_TEXT + 1]).is_err());
    }
}
