//! Logging setup. payguard logs through `tracing`, one line per request, in a human or JSON
//! format. What is logged is chosen at the call sites, and none of them passes headers, bodies
//! or API keys: the safest secret filter is never handing the secret to the logger.
//!
//! The lines are written by `tracing_subscriber::fmt`'s layer with payguard's own event
//! formatters (`Human`, `Json`, and `fields`): at level info the request line is written on
//! every request, and upstream's formatters spent 12,000 instructions on it, a fifth of a
//! pass-through GET. That layer keeps doing what it does well (a reused thread-local buffer,
//! span bookkeeping, the `log` bridge); what ours replace is what callgrind showed costing in
//! its formatters: `write!` with a format string for every piece, the timestamp through
//! padded `Display`s, ANSI styling (`nu_ansi_term`) computed for every field name even with
//! colours off, and the field visitors (see `fields`). The line says the same: timestamp
//! (RFC 3339, microseconds, UTC), level, spans, target and fields. The lines reach stderr
//! through `output`, in batches rather than a `write` each.

mod fields;
mod output;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{DefaultFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use fields::{Escape, FieldWriter, Syntax, escape};
use output::Output;
pub use output::{ACCESS, Batching};

/// Where the installed subscriber writes, for [`batch`].
static OUTPUT: OnceLock<Output> = OnceLock::new();

/// How log lines are written: for a terminal, or one JSON object per line for a collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the configured level.
pub fn init(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(level))?;
    // Colours only on a terminal: escape codes in a log file or pipeline are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let output = OUTPUT.get_or_init(Output::stderr).clone();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(output);
    // The field formatters stay upstream's: they only write the fields of spans (which only
    // dependencies open, at debug and trace), once when a span opens, not per event.
    let result = match format {
        LogFormat::Human => builder
            .fmt_fields(DefaultFields::new())
            .event_format(Human)
            .try_init(),
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(Json)
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

/// Batches the request lines (see `output`) until the guard is dropped.
/// Call it inside the tokio runtime, after [`init`]; without an installed logger it does
/// nothing.
pub fn batch() -> Option<Batching> {
    OUTPUT.get().map(Output::batch)
}

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// `2024-05-01T12:00:00.123456Z  INFO payguard::access: request route="reads" status=200`:
/// tracing-subscriber's default layout. With colours, the level is coloured and the
/// timestamp and target dimmed as there; field names are no longer italic.
#[derive(Debug, Default)]
pub struct Human;

/// `{"timestamp":"…","level":"INFO","message":"request","route":"reads",…,"target":"…"}`:
/// the fields of `fmt().json().flatten_event(true)`, in the order the event gives them
/// (upstream sorts them by name), then `span` and `spans` when the event is in any.
#[derive(Debug, Default)]
pub struct Json;

impl<S, N> FormatEvent<S, N> for Human
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut out: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ansi = out.has_ansi_escapes();
        in_one_write(&mut out, |out| {
            // Events bridged from the `log` crate carry their real target and level as fields.
            let normalized = event.normalized_metadata();
            let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
            // Piece by piece rather than `write!`: a format string costs more than its pieces.
            let (dim, reset) = if ansi { (DIM, RESET) } else { ("", "") };
            out.write_str(dim)?;
            timestamp(out)?;
            out.write_char(' ')?;
            out.write_str(reset)?;
            if ansi {
                out.write_str(level_colour(meta.level()))?;
            }
            out.write_str(level_padded(meta.level()))?;
            out.write_str(reset)?;
            out.write_char(' ')?;
            if let Some(scope) = ctx.event_scope() {
                for span in scope.from_root() {
                    out.write_str(span.name())?;
                    if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                        && !fields.is_empty()
                    {
                        write!(out, "{{{fields}}}")?;
                    }
                    out.write_char(':')?;
                }
                out.write_char(' ')?;
            }
            out.write_str(dim)?;
            out.write_str(meta.target())?;
            out.write_char(':')?;
            out.write_str(reset)?;
            out.write_char(' ')?;
            let mut fields = FieldWriter::new(out, Syntax::Human, true);
            event.record(&mut fields);
            fields.result?;
            out.write_char('\n')
        })
    }
}

impl<S> FormatEvent<S, JsonFields> for Json
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut out: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        in_one_write(&mut out, |out| {
            let normalized = event.normalized_metadata();
            let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
            out.write_str("{\"timestamp\":\"")?;
            timestamp(out)?;
            out.write_str("\",\"level\":\"")?;
            out.write_str(meta.level().as_str())?;
            out.write_char('"')?;
            // Each field brings its own leading comma: an event may have none (all `log.*`).
            let mut fields = FieldWriter::new(out, Syntax::Json, false);
            event.record(&mut fields);
            fields.result?;
            out.write_str(",\"target\":\"")?;
            escape(out, meta.target(), Escape::Json)?;
            out.write_char('"')?;
            if let Some(scope) = ctx.event_scope() {
                // Each span as upstream writes it: its name beside the fields `JsonFields` kept
                // for it as a JSON object; the innermost once more as `span`.
                let mut spans = String::from("[");
                let mut last = String::new();
                for span in scope.from_root() {
                    last.clear();
                    last.push_str("{\"name\":\"");
                    escape(&mut last, span.name(), Escape::Json)?;
                    last.push('"');
                    let ext = span.extensions();
                    let fields = ext.get::<FormattedFields<JsonFields>>();
                    match fields
                        .and_then(|f| f.strip_prefix('{'))
                        .filter(|f| f.len() > 1)
                    {
                        Some(rest) => write!(last, ",{rest}")?,
                        None => last.push('}'),
                    }
                    if spans.len() > 1 {
                        spans.push(',');
                    }
                    spans.push_str(&last);
                }
                write!(out, ",\"span\":{last},\"spans\":{spans}]")?;
            }
            out.write_str("}\n")
        })
    }
}

/// Formats a line into a reused string of this thread, then hands it to the layer's writer
/// in one call. That writer is a `&mut dyn fmt::Write`: written to piece by piece, each of a
/// line's ~40 pieces was a dynamic call through it (callgrind, what the request line adds to
/// a pass-through GET, info against warn in one build: 4,460 instructions before, 3,580
/// after). Should the string be in use (a line formatted while another is) or gone (the
/// thread is ending), the line gets a string of its own.
fn in_one_write(
    out: &mut Writer<'_>,
    format: impl FnOnce(&mut String) -> fmt::Result,
) -> fmt::Result {
    thread_local! {
        static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    }
    let mut format = Some(format);
    let reused = LINE.try_with(|cell| {
        let mut line = cell.try_borrow_mut().ok()?;
        line.clear();
        let format = format.take()?;
        Some(format(&mut line).and_then(|()| out.write_str(&line)))
    });
    match (reused, format) {
        (Ok(Some(written)), _) => written,
        (_, Some(format)) => {
            let mut line = String::new();
            format(&mut line)?;
            out.write_str(&line)
        }
        // The string was borrowed and the format taken: cannot happen, as `take` comes last.
        (_, None) => Err(fmt::Error),
    }
}

/// Writes now as `2024-05-01T12:00:00.123456Z`, what tracing-subscriber's default timer
/// writes. The date and time of day change once a second, so each thread keeps the text of
/// its last second (from humantime) and only the microseconds are formatted per line.
fn timestamp(out: &mut impl Write) -> fmt::Result {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    // A clock before 1970 is logged as 1970 rather than failing the line.
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    // `2024-05-01T12:00:00Z` without its `Z`: the fraction goes there.
    let second = |text: &mut String| {
        text.clear();
        let second = UNIX_EPOCH + Duration::from_secs(secs);
        write!(text, "{}", humantime::format_rfc3339_seconds(second))?;
        text.pop();
        text.push('.');
        Ok(())
    };
    // `try_with`: a line logged while the thread is being torn down (its cache gone) is
    // formatted without the cache rather than panicking.
    let cached = SECOND.try_with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        let (at, text) = &mut *slot;
        if *at != secs {
            if second(text).is_err() {
                return Some(Err(fmt::Error));
            }
            *at = secs;
        }
        Some(out.write_str(text))
    });
    match cached {
        Ok(Some(written)) => written?,
        Ok(None) | Err(_) => {
            let mut text = String::new();
            second(&mut text)?;
            out.write_str(&text)?;
        }
    }
    // Six digits with leading zeros: a seventh, leading 1 that is then cut off.
    let mut digits = itoa::Buffer::new();
    let fraction = digits.format(1_000_000 + since.subsec_micros());
    out.write_str(fraction.get(1..).unwrap_or(fraction))?;
    out.write_char('Z')
}

/// The level right-aligned in five columns, as upstream pads it.
fn level_padded(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

/// Upstream's colours: purple, blue, green, yellow, red.
fn level_colour(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "\x1b[35m",
        Level::DEBUG => "\x1b[34m",
        Level::INFO => "\x1b[32m",
        Level::WARN => "\x1b[33m",
        Level::ERROR => "\x1b[31m",
    }
}
