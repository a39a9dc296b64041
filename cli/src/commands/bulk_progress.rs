//! The progress bar of `df` and `each` over many images (indicatif), on stderr when it
//! is a terminal: images done of all, how many failed, elapsed time and ETA. Lines of
//! output are printed with the bar suspended, so they never mix.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress {
    bar: Option<ProgressBar>,
    ok: usize,
    failed: usize,
}

impl Progress {
    /// A bar for `total` images, shown when stderr is a terminal.
    pub fn new(total: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "[{bar:30}] {pos}/{len} ({msg}) {elapsed} elapsed, ETA {eta}",
            ) {
                b.set_style(style.progress_chars("#>-"));
            }
            b.set_message("0 failed");
            b
        });
        Progress {
            bar,
            ok: 0,
            failed: 0,
        }
    }

    /// Runs `f` (which prints a line of output) with the bar hidden.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    /// Counts one finished image.
    pub fn tick(&mut self, ok: bool) {
        if ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        if let Some(b) = &self.bar {
            b.set_message(format!("{} failed", self.failed));
            b.inc(1);
        }
    }

    pub fn ok(&self) -> usize {
        self.ok
    }

    pub fn failed(&self) -> usize {
        self.failed
    }

    /// Erases the bar for good.
    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_without_a_terminal() {
        let mut p = Progress {
            bar: None,
            ok: 0,
            failed: 0,
        };
        p.tick(true);
        p.tick(false);
        p.tick(true);
        assert_eq!((p.ok(), p.failed()), (2, 1));
        assert_eq!(p.suspend(|| 7), 7);
        p.finish();
    }
}
