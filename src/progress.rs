//! Progress bars on stderr, drawn only when it is a terminal: logs and pipes never see
//! them.

use std::io::{self, IsTerminal};

/// A bar, or nothing when stderr is not a terminal; cheap to call either way.
pub struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    /// A bar of `len` units drawn with the indicatif `template`; `len` is only asked for
    /// when a bar will be drawn (counting can cost a walk).
    pub fn new(len: impl FnOnce() -> u64, template: &str) -> Bar {
        if !io::stderr().is_terminal() {
            return Bar(None);
        }
        let bar = indicatif::ProgressBar::new(len());
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        Bar(Some(bar))
    }

    /// No bar at all.
    pub fn hidden() -> Bar {
        Bar(None)
    }

    /// Redraws at least this often, so the elapsed time moves during long steps.
    #[must_use]
    pub fn ticking(self, every: std::time::Duration) -> Bar {
        if let Some(bar) = &self.0 {
            bar.enable_steady_tick(every);
        }
        self
    }

    pub fn set_message(&self, message: String) {
        if let Some(bar) = &self.0 {
            bar.set_message(message);
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }

    /// One step done, `message` says which is next.
    pub fn step(&self, message: String) {
        self.set_message(message);
        self.inc(1);
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
