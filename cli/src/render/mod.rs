//! The one renderer: turns the commands' typed results ([`Output`]) into text or JSON
//! on stdout (and, where text says so, stderr). `--json` prints exactly one JSON
//! document per command (one line; `each`: one per image), built from the library's
//! `Serialize` types; text output shows guest strings with control characters escaped.
//! Raw bytes pass straight through ([`Sink::raw`]). `inspect --xml` prints
//! virt-inspector's XML ([`xml`]).

mod json;
mod text;
mod xml;

use crate::commands::{Output, Sink};
use anyhow::Result;
use std::io::Write;

/// How results are shown.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    /// virt-inspector's XML (`inspect --xml`; other results are shown as text).
    Xml,
}

/// Renders results on stdout/stderr as they are handed over.
pub struct Renderer {
    format: Format,
    stdout: std::io::Stdout,
}

impl Renderer {
    pub fn new(format: Format) -> Renderer {
        Renderer {
            format,
            stdout: std::io::stdout(),
        }
    }
}

impl Sink for Renderer {
    fn emit(&mut self, output: Output) -> Result<()> {
        let mut out = self.stdout.lock();
        match self.format {
            Format::Text => text::render(&mut out, output),
            Format::Json => json::render(&mut out, output),
            Format::Xml => match output {
                Output::Inspect(r) => xml::render(&mut out, &r.oses),
                other => text::render(&mut out, other),
            },
        }
    }

    fn raw(&mut self) -> &mut dyn Write {
        &mut self.stdout
    }
}
