//! A byte progress bar for big layers: on a terminal only, never in logs or pipes.

use std::io::{self, IsTerminal, Write};

/// Below this many bytes a layer is written before a bar would be worth drawing.
const WORTH_A_BAR: u64 = 64 << 20;

pub struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    pub fn new(total_bytes: u64, label: String) -> Progress {
        if total_bytes < WORTH_A_BAR || !io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new(total_bytes);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed}] {bar:30} {bytes}/{total_bytes} {msg}",
        ) {
            bar.set_style(style);
        }
        bar.set_message(label);
        Progress(Some(bar))
    }

    /// `out`, counting what passes through it on the bar.
    pub fn wrap<'a>(&'a self, out: &'a mut dyn Write) -> Counting<'a> {
        Counting {
            out,
            progress: self,
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

pub struct Counting<'a> {
    out: &'a mut dyn Write,
    progress: &'a Progress,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        if let Some(bar) = &self.progress.0 {
            bar.inc(n as u64);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
