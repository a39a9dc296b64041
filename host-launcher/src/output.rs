//! Output helpers shared by the CLI's commands: `--json` prints exactly one JSON
//! document per command (one line), built from the library's `Serialize` types; text
//! output shows guest strings with control characters escaped.

use anyhow::Result;
use serde::Serialize;
use std::io::Write;

/// Writes `v` as one line of JSON to `out`.
pub fn json_to(out: &mut impl Write, v: &impl Serialize) -> Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// Writes `v` as one line of JSON to stdout.
pub fn json(v: &impl Serialize) -> Result<()> {
    json_to(&mut std::io::stdout().lock(), v)
}

/// A guest string for a terminal: control characters shown as `\u{..}` escapes.
pub fn safe(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn safe_escapes_controls() {
        assert_eq!(super::safe("a b"), "a b");
        assert_eq!(super::safe("a\x1b[2Jb\n"), "a\\u{1b}[2Jb\\u{a}");
    }
}
