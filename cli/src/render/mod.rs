//! Output helpers shared by the CLI's commands: `--json` prints exactly one JSON
//! document per command (one line), built from the library's `Serialize` types; text
//! output shows guest strings with control characters escaped.

pub mod json;

use anyhow::Result;
use serde::Serialize;
use std::io::Write;
use std::sync::Mutex;

/// Warnings of this run (e.g. fstab entries that could not be mounted): printed on stderr
/// as they happen and added to the next JSON document as `"warnings": [...]`.
static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Reports a warning: one line `skiff: warning: MESSAGE` on stderr now, and in the
/// `warnings` of the next `--json` document.
pub fn warn(message: String) {
    eprintln!("skiff: warning: {message}");
    WARNINGS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(message);
}

/// Writes `v` as one line of JSON to `out`, with the pending warnings (if any) added to
/// it as `"warnings"` when it is an object.
pub fn json_to(out: &mut impl Write, v: &impl Serialize) -> Result<()> {
    let pending = std::mem::take(&mut *WARNINGS.lock().unwrap_or_else(|p| p.into_inner()));
    if pending.is_empty() {
        serde_json::to_writer(&mut *out, v)?;
    } else {
        let mut doc = serde_json::to_value(v)?;
        if let Some(o) = doc.as_object_mut() {
            o.insert("warnings".into(), pending.into());
        }
        serde_json::to_writer(&mut *out, &doc)?;
    }
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// Writes `v` as one line of JSON to stdout.
pub fn json_out(v: &impl Serialize) -> Result<()> {
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
