//! A small, bounded JSON parser for the LUKS2 metadata area (RFC 8259).
//!
//! The input is untrusted: nesting is limited to [`MAX_DEPTH`], the number of values to
//! [`MAX_NODES`] and the input itself to [`MAX_INPUT`] bytes, so a hostile header costs
//! at most a few MiB and a bounded amount of stack. Numbers are kept only as unsigned
//! integers (everything LUKS2 stores as a JSON number is one); any other number parses
//! but reads as "not an integer".

use alloc::string::String;
use alloc::vec::Vec;

/// Deepest nesting accepted (LUKS2 metadata needs 4; tokens may hold a little more).
pub const MAX_DEPTH: usize = 32;
/// Most values in one document.
pub const MAX_NODES: usize = 20_000;
/// Largest document (the LUKS2 JSON area is at most 4 MiB - 4 KiB).
pub const MAX_INPUT: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    /// An unsigned integer, or `None` for any other number (negative, fractional,
    /// exponent, or too large for `u64`).
    Number(Option<u64>),
    String(String),
    Array(Vec<Value>),
    /// Members in document order; lookups take the last of duplicated names (as
    /// json-c, which cryptsetup uses, does).
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `name` of an object.
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Object(m) => m.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) => *n,
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
    pub fn as_object(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }
}

/// Why a document was refused, with the byte offset where it was noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub offset: usize,
    pub what: &'static str,
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    nodes: usize,
}

/// Parses one JSON document; only whitespace may follow it.
pub fn parse(input: &str) -> Result<Value, JsonError> {
    if input.len() > MAX_INPUT {
        return Err(JsonError {
            offset: MAX_INPUT,
            what: "document too large",
        });
    }
    let mut p = Parser {
        s: input.as_bytes(),
        pos: 0,
        nodes: 0,
    };
    let v = p.value(0)?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(p.err("trailing characters after the document"));
    }
    Ok(v)
}

impl Parser<'_> {
    fn err(&self, what: &'static str) -> JsonError {
        JsonError {
            offset: self.pos,
            what,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8, what: &'static str) -> Result<(), JsonError> {
        if self.bump() == Some(c) {
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    fn literal(&mut self, word: &[u8], v: Value) -> Result<Value, JsonError> {
        let end = self
            .pos
            .checked_add(word.len())
            .ok_or(self.err("overflow"))?;
        if self.s.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(v)
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.err("too many values"));
        }
        self.ws();
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
            None => Err(self.err("unexpected end of document")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.pos += 1; // '{'
        let mut members = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a member name"));
            }
            let k = self.string()?;
            self.ws();
            self.eat(b':', "expected ':'")?;
            let v = self.value(depth + 1)?;
            members.push((k, v));
            self.ws();
            match self.bump() {
                Some(b',') => continue,
                Some(b'}') => return Ok(Value::Object(members)),
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.bump() {
                Some(b',') => continue,
                Some(b']') => return Ok(Value::Array(items)),
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        let int_digits = self.s.get(int_start..self.pos).unwrap_or_default();
        if int_digits.is_empty() {
            return Err(self.err("invalid number"));
        }
        if int_digits.len() > 1 && int_digits.first() == Some(&b'0') {
            return Err(self.err("leading zero in number"));
        }
        let mut integer = !negative;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let d = self.pos;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            if self.pos == d {
                return Err(self.err("invalid fraction"));
            }
            integer = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            let d = self.pos;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            if self.pos == d {
                return Err(self.err("invalid exponent"));
            }
            integer = false;
        }
        if !integer || self.pos == start {
            return Ok(Value::Number(None));
        }
        let mut n: Option<u64> = Some(0);
        for &c in int_digits {
            n = n
                .and_then(|n| n.checked_mul(10))
                .and_then(|n| n.checked_add(u64::from(c - b'0')));
        }
        Ok(Value::Number(n))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let c = self.bump().ok_or(self.err("truncated \\u escape"))?;
            let d = char::from(c)
                .to_digit(16)
                .ok_or(self.err("invalid \\u escape"))?;
            v = v * 16 + d;
        }
        Ok(v)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1; // '"'
        let mut out = String::new();
        loop {
            // Copy the run of plain characters at once.
            let run_start = self.pos;
            while matches!(self.peek(), Some(c) if c != b'"' && c != b'\\' && c >= 0x20) {
                self.pos += 1;
            }
            if self.pos > run_start {
                let run = self.s.get(run_start..self.pos).unwrap_or_default();
                // The input is a &str and the run stops only at ASCII bytes, so it is
                // whole characters.
                out.push_str(core::str::from_utf8(run).map_err(|_| self.err("invalid UTF-8"))?);
            }
            match self.bump() {
                Some(b'"') => return Ok(out),
                Some(b'\\') => {
                    let c = match self.bump() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if self.bump() != Some(b'\\') || self.bump() != Some(b'u') {
                                    return Err(self.err("unpaired surrogate"));
                                }
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("unpaired surrogate"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or(self.err("invalid \\u escape"))?
                        }
                        _ => return Err(self.err("invalid escape")),
                    };
                    out.push(c);
                }
                Some(_) => return Err(self.err("control character in string")),
                None => return Err(self.err("unterminated string")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn values() {
        let v = parse(
            r#" {"a": [1, 2.5, -3, 1e3, true, false, null], "b": {"c": "x\"\u00e9\ud83d\ude00\n"},
               "big": 18446744073709551615, "bigger": 18446744073709551616, "a": "last"} "#,
        )
        .unwrap();
        assert_eq!(v.get("a").unwrap().as_str(), Some("last"));
        let Value::Object(m) = &v else { panic!() };
        assert_eq!(
            m[0].1,
            Value::Array(vec![
                Value::Number(Some(1)),
                Value::Number(None),
                Value::Number(None),
                Value::Number(None),
                Value::Bool(true),
                Value::Bool(false),
                Value::Null
            ])
        );
        assert_eq!(
            v.get("b").unwrap().get("c").unwrap().as_str(),
            Some("x\"é😀\n")
        );
        assert_eq!(v.get("big").unwrap().as_u64(), Some(u64::MAX));
        assert_eq!(v.get("bigger").unwrap().as_u64(), None);
        assert_eq!(parse("[]").unwrap(), Value::Array(vec![]));
        assert_eq!(parse("\"ü\"").unwrap(), Value::String("ü".to_string()));
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "01",
            "1.",
            "1e",
            "-",
            "\"abc",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"a\u{1}\"",
            "tru",
            "nul",
            "[1] x",
            "{1:2}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert_eq!(parse(&deep).unwrap_err().what, "nested too deeply");
        let ok_deep = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok_deep).is_ok());
        let many = "[".to_string() + &"0,".repeat(MAX_NODES) + "0]";
        assert_eq!(parse(&many).unwrap_err().what, "too many values");
    }
}
