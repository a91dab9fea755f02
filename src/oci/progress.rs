//! A byte progress bar for big layers: on a terminal only, never in logs or pipes.

use std::io::{self, Write};

use crate::progress::Bar;

/// Below this many bytes a layer is written before a bar would be worth drawing.
const WORTH_A_BAR: u64 = 64 << 20;

pub struct Progress(Bar);

impl Progress {
    pub fn new(total_bytes: u64, label: String) -> Progress {
        if total_bytes < WORTH_A_BAR {
            return Progress(Bar::hidden());
        }
        let bar = Bar::new(
            || total_bytes,
            "{spinner} [{elapsed}] {bar:30} {bytes}/{total_bytes} {msg}",
        );
        bar.set_message(label);
        Progress(bar)
    }

    /// `out`, counting what passes through it on the bar.
    pub fn wrap<'a>(&'a self, out: &'a mut dyn Write) -> Counting<'a> {
        Counting {
            out,
            progress: self,
        }
    }

    pub fn finish(&self) {
        self.0.finish();
    }
}

pub struct Counting<'a> {
    out: &'a mut dyn Write,
    progress: &'a Progress,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.progress.0.inc(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
