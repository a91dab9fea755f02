//! Logging to stderr: quiet by default (warnings only), `-v` / `PEXINIT_LOG` for more.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The level from `-v` count, else `PEXINIT_LOG`, else the config file, else warn.
/// Returns None for "off".
pub fn level(
    verbose: u8,
    env: Option<&str>,
    config: Option<&str>,
) -> Result<Option<Level>, String> {
    if verbose > 0 {
        return Ok(Some(match verbose {
            1 => Level::INFO,
            2 => Level::DEBUG,
            _ => Level::TRACE,
        }));
    }
    match env.or(config).map(str::trim) {
        None | Some("") => Ok(Some(Level::WARN)),
        Some(text) => match text.to_ascii_lowercase().as_str() {
            "off" | "none" => Ok(None),
            "error" => Ok(Some(Level::ERROR)),
            "warn" | "warning" => Ok(Some(Level::WARN)),
            "info" => Ok(Some(Level::INFO)),
            "debug" => Ok(Some(Level::DEBUG)),
            "trace" => Ok(Some(Level::TRACE)),
            other => Err(format!(
                "unknown log level {other:?}; use off, error, warn, info, debug or trace"
            )),
        },
    }
}

pub fn init(level: Option<Level>) {
    let Some(level) = level else { return };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .event_format(OneLine)
        .try_init();
}

/// `pexinit: warning: message` — one line per event, no timestamps: container runtimes
/// add their own.
struct OneLine;

impl<S, N> FormatEvent<S, N> for OneLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        write!(writer, "pexinit: {level}: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
