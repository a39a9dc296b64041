//! `skiff shell`: many commands in one appliance, guestfish-like. The commands are the
//! CLI's own (`ls`, `cat`, `find`, `write`, ...) run by the same code
//! ([`commands::fs::exec`]), plus `mount`, `umount`, `mounts` and `exit`; each line's
//! result goes to the renderer like a command's.
//!
//! On a terminal: line editing, history and tab completion of command names
//! (rustyline). Otherwise commands are read from stdin, one per line: `#` starts a
//! comment, and the first failing command ends the script with a non-zero exit status
//! unless its line starts with `-` (as in guestfish).

use crate::commands::fs::FsCmd;
use crate::commands::volumes::VolCmd;
use crate::commands::{self, Output, Sink};
use crate::launch::{LaunchArgs, launch, mount_planned};
use anyhow::{Context, Result, bail};
use clap::{CommandFactory, Parser, Subcommand};
use skiff::{MountOptions, Session};
use std::io::{BufRead, IsTerminal, Write};

/// One shell line, parsed like the CLI.
#[derive(Parser)]
#[command(
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true
)]
struct Line {
    #[command(subcommand)]
    cmd: ShellCmd,
}

#[derive(Subcommand)]
enum ShellCmd {
    #[command(flatten)]
    Fs(FsCmd),
    #[command(flatten)]
    Vol(VolCmd),
    /// Mount DEVICE at MOUNTPOINT (read-write if the shell was started with --rw).
    Mount { device: String, mountpoint: String },
    /// Unmount MOUNTPOINT.
    Umount { mountpoint: String },
    /// List the mounts: device, mountpoint, type, ro/rw.
    Mounts,
    /// Leave the shell.
    #[command(alias = "quit")]
    Exit,
}

/// Splits a line into words: whitespace separates, '…' and "…" quote, `\` escapes.
fn split_words(line: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => bail!("unterminated ' quote"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => cur.push(chars.next().context("trailing \\")?),
                        Some(c) => cur.push(c),
                        None => bail!("unterminated \" quote"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next().context("trailing \\")?);
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// The command names, for completion and `help`.
fn command_names() -> Vec<String> {
    let mut v: Vec<String> = Line::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    v.push("help".into());
    v.sort();
    v
}

/// What one line asks for.
enum Step {
    Continue,
    Exit,
}

fn run_line(
    s: &mut Session,
    a: &LaunchArgs,
    words: Vec<String>,
    sink: &mut dyn Sink,
) -> Result<Step> {
    if words.first().map(String::as_str) == Some("help") {
        let mut c = Line::command();
        match words.get(1) {
            Some(name) => match c.find_subcommand_mut(name) {
                Some(sub) => sub.print_help()?,
                None => bail!("no command {name:?}"),
            },
            None => println!("commands: {}", command_names().join(" ")),
        }
        return Ok(Step::Continue);
    }
    let line = Line::try_parse_from(&words).map_err(|e| anyhow::anyhow!("{}", e.render()))?;
    let output = match line.cmd {
        ShellCmd::Fs(cmd) => commands::fs::exec(s, cmd, sink)?,
        ShellCmd::Vol(cmd) => commands::volumes::exec(s, cmd)?,
        ShellCmd::Mount { device, mountpoint } => {
            let opts = if a.rw {
                MountOptions::writable()
            } else {
                MountOptions::readonly()
            };
            s.mount(&device, &mountpoint, opts)?;
            Output::Done { bytes: None }
        }
        ShellCmd::Umount { mountpoint } => {
            s.umount(&mountpoint)?;
            Output::Done { bytes: None }
        }
        ShellCmd::Mounts => Output::Mounts(s.mounts()?),
        ShellCmd::Exit => return Ok(Step::Exit),
    };
    sink.emit(output)?;
    Ok(Step::Continue)
}

/// `skiff shell`: launch, mount (-m, or the guest's own layout), then read commands.
pub fn run(a: &LaunchArgs, sink: &mut dyn Sink) -> Result<()> {
    let mut s = launch(a)?;
    let r = shell(&mut s, a, sink);
    let down = s.shutdown().context("shutting the appliance down");
    r?;
    down
}

fn shell(s: &mut Session, a: &LaunchArgs, sink: &mut dyn Sink) -> Result<()> {
    if !a.drives.is_empty()
        && let Err(e) = mount_planned(s, a)
    {
        if !a.mounts.is_empty() {
            return Err(e);
        }
        // No -m and nothing obvious to mount: start unmounted (`mount` is available).
        eprintln!("skiff: nothing mounted: {e:#}");
    }
    if std::io::stdin().is_terminal() {
        interactive(s, a, sink)
    } else {
        script(s, a, sink)
    }
}

fn script(s: &mut Session, a: &LaunchArgs, sink: &mut dyn Sink) -> Result<()> {
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.context("reading stdin")?;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let (may_fail, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, t),
        };
        let r = split_words(t).and_then(|w| run_line(s, a, w, sink));
        std::io::stdout().flush()?;
        match r {
            Ok(Step::Continue) => {}
            Ok(Step::Exit) => return Ok(()),
            Err(e) if may_fail => eprintln!("skiff: line {}: {e:#}", n + 1),
            Err(e) => return Err(e.context(format!("line {}: {t}", n + 1))),
        }
    }
    Ok(())
}

/// Tab completion of the first word (a command name).
struct Complete(Vec<String>);

impl rustyline::completion::Completer for Complete {
    type Candidate = String;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let head = &line[..pos];
        if head.contains(char::is_whitespace) {
            return Ok((pos, Vec::new()));
        }
        let word = head.trim_start_matches('-');
        let start = pos - word.len();
        let v = self
            .0
            .iter()
            .filter(|c| c.starts_with(word))
            .cloned()
            .collect();
        Ok((start, v))
    }
}
impl rustyline::hint::Hinter for Complete {
    type Hint = String;
}
impl rustyline::highlight::Highlighter for Complete {}
impl rustyline::validate::Validator for Complete {}
impl rustyline::Helper for Complete {}

fn interactive(s: &mut Session, a: &LaunchArgs, sink: &mut dyn Sink) -> Result<()> {
    let mut ed: rustyline::Editor<Complete, rustyline::history::MemHistory> =
        rustyline::Editor::with_history(
            rustyline::Config::builder().auto_add_history(true).build(),
            rustyline::history::MemHistory::new(),
        )?;
    ed.set_helper(Some(Complete(command_names())));
    println!("skiff shell: 'help' lists the commands, 'exit' or Ctrl-D leaves.");
    loop {
        let line = match ed.readline("><skiff> ") {
            Ok(l) => l,
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(rustyline::error::ReadlineError::Eof) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let t = t.strip_prefix('-').unwrap_or(t);
        match split_words(t).and_then(|w| run_line(s, a, w, sink)) {
            Ok(Step::Continue) => {}
            Ok(Step::Exit) => return Ok(()),
            Err(e) => eprintln!("skiff: {e:#}"),
        }
        std::io::stdout().flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(split_words("ls  /etc").unwrap(), ["ls", "/etc"]);
        assert_eq!(
            split_words(r#"write /a "x y" 'q"z' b\ c"#).unwrap(),
            ["write", "/a", "x y", "q\"z", "b c"]
        );
        assert_eq!(split_words("cat ''").unwrap(), ["cat", ""]);
        assert!(split_words("cat 'x").is_err());
    }

    #[test]
    fn lines_parse_like_the_cli() {
        assert!(Line::try_parse_from(["ls", "/etc"]).is_ok());
        assert!(Line::try_parse_from(["mkdir", "-p", "/a/b"]).is_ok());
        assert!(Line::try_parse_from(["mount", "/dev/sda1", "/"]).is_ok());
        assert!(Line::try_parse_from(["nonsense"]).is_err());
        let names = command_names();
        assert!(names.contains(&"cat".to_string()) && names.contains(&"exit".to_string()));
    }
}
