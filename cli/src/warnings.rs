//! Warnings of this run (e.g. fstab entries that could not be mounted): printed on stderr
//! as they happen, and kept for the next `--json` document, which carries them as
//! `"warnings": [...]` (the renderer takes them).

use std::sync::Mutex;

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

/// The warnings not yet shown in a JSON document (and forgets them).
pub fn take() -> Vec<String> {
    std::mem::take(&mut *WARNINGS.lock().unwrap_or_else(|p| p.into_inner()))
}
