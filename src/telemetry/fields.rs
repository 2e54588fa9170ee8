//! An event's fields, written straight into the line. tracing-subscriber's own visitors go
//! through `write!` with a format string per field (name, `=`, `{:?}`), `<str as Debug>`
//! for every string and float formatting through `core::fmt`; the JSON one builds a map of
//! `serde_json::Value`s, one allocation per field, before writing any of it. This visitor
//! appends the pieces itself: numbers through `itoa`/`ryu`, strings escaped a run of plain
//! bytes at a time, and only values that are themselves `Debug`/`Display` (`%method`,
//! `error = %e`) go through `core::fmt`.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};

/// Which syntax the fields are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Syntax {
    /// `message key="string" key=42`, like tracing-subscriber's default format.
    Human,
    /// `"message":"…","key":"string","key":42`, to sit inside a JSON object.
    Json,
}

/// How a string is escaped. Every mode escapes control characters, so a value can neither
/// break the one-line-per-event rule nor smuggle a terminal escape sequence into the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Escape {
    /// Human, unquoted (the message, `%display` and `?debug` values): controls only.
    Bare,
    /// Human, inside quotes (string values, as `{:?}` would print them): also `"` and `\`.
    Quoted,
    /// Inside a JSON string: `"`, `\` and controls, in JSON's own escape syntax.
    Json,
}

/// Writes the fields of one event, each preceded by a separator except the first.
pub(super) struct FieldWriter<'w, W: Write> {
    out: &'w mut W,
    syntax: Syntax,
    first: bool,
    pub(super) result: fmt::Result,
}

impl<'w, W: Write> FieldWriter<'w, W> {
    /// `first` is false when something already precedes the fields and needs a separator.
    pub(super) fn new(out: &'w mut W, syntax: Syntax, first: bool) -> Self {
        Self {
            out,
            syntax,
            first,
            result: Ok(()),
        }
    }

    /// The separator and the key; the message's key is left out of the human format.
    fn key(&mut self, field: &Field) -> fmt::Result {
        let name = field.name();
        // Raw identifiers (`r#type = …`) are logged under their plain name, as upstream does.
        let name = name.strip_prefix("r#").unwrap_or(name);
        let first = std::mem::replace(&mut self.first, false);
        match self.syntax {
            Syntax::Human => {
                if !first {
                    self.out.write_char(' ')?;
                }
                if name != "message" {
                    self.out.write_str(name)?;
                    self.out.write_char('=')?;
                }
            }
            Syntax::Json => {
                if !first {
                    self.out.write_char(',')?;
                }
                self.out.write_char('"')?;
                escape(self.out, name, Escape::Json)?;
                self.out.write_str("\":")?;
            }
        }
        Ok(())
    }

    /// Writes one field unless an earlier write failed or the field is a `log` record's
    /// metadata (`log.target`, …), which the line already shows as its target.
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Self) -> fmt::Result) {
        if self.result.is_ok() && !field.name().starts_with("log.") {
            self.result = self.key(field).and_then(|()| value(self));
        }
    }

    /// A number or `true`/`false`: the same text in both syntaxes.
    fn plain(&mut self, field: &Field, text: &str) {
        self.field(field, |w| w.out.write_str(text));
    }
}

impl<W: Write> Visit for FieldWriter<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let message = field.name() == "message";
        self.field(field, |w| match w.syntax {
            Syntax::Human if message => escape(w.out, value, Escape::Bare),
            Syntax::Human => quoted(w.out, value, Escape::Quoted),
            Syntax::Json => quoted(w.out, value, Escape::Json),
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |w| match w.syntax {
            Syntax::Human => write!(Escaping(w.out, Escape::Bare), "{value:?}"),
            Syntax::Json => {
                w.out.write_char('"')?;
                write!(Escaping(w.out, Escape::Json), "{value:?}")?;
                w.out.write_char('"')
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.plain(field, itoa::Buffer::new().format(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.plain(field, itoa::Buffer::new().format(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.plain(field, if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: `null`, as serde_json writes them.
        match (value.is_finite(), self.syntax) {
            (true, _) => self.plain(field, ryu::Buffer::new().format_finite(value)),
            (false, Syntax::Json) => self.plain(field, "null"),
            (false, Syntax::Human) => self.plain(field, ryu::Buffer::new().format(value)),
        }
    }
}

/// Escapes what `core::fmt` writes into it: the route for `Debug`/`Display` values.
struct Escaping<'w, W: Write>(&'w mut W, Escape);

impl<W: Write> Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape(self.0, s, self.1)
    }
}

fn quoted(out: &mut impl Write, value: &str, how: Escape) -> fmt::Result {
    out.write_char('"')?;
    escape(out, value, how)?;
    out.write_char('"')
}

/// Writes `value` with the characters `how` escapes replaced. Most values (paths, routes,
/// messages) are printable ASCII with nothing to escape: one scan of the bytes and one write.
pub(super) fn escape(out: &mut impl Write, value: &str, how: Escape) -> fmt::Result {
    let plain =
        |b: u8| (0x20..0x7f).contains(&b) && (how == Escape::Bare || !matches!(b, b'"' | b'\\'));
    match value.bytes().position(|b| !plain(b)) {
        None => out.write_str(value),
        // Every byte before `at` is ASCII, so `at` is a character boundary.
        Some(at) => {
            out.write_str(&value[..at])?;
            escape_chars(out, &value[at..], how)
        }
    }
}

/// The slow path, a character at a time, copying the runs between escapes in one write each.
fn escape_chars(out: &mut impl Write, value: &str, how: Escape) -> fmt::Result {
    let mut plain = 0;
    for (at, c) in value.char_indices() {
        let needs = match c {
            '"' | '\\' => how != Escape::Bare,
            // C0 controls, DEL and the C1 controls (8-bit escape sequence introducers).
            c => c.is_control(),
        };
        if needs {
            out.write_str(&value[plain..at])?;
            escaped(out, c, how)?;
            plain = at + c.len_utf8();
        }
    }
    out.write_str(&value[plain..])
}

fn escaped(out: &mut impl Write, c: char, how: Escape) -> fmt::Result {
    match c {
        '"' => out.write_str("\\\""),
        '\\' => out.write_str("\\\\"),
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        // Controls are all below U+00A0: two hex digits say them.
        c if how == Escape::Json => write!(out, "\\u{:04x}", c as u32),
        c => write!(out, "\\u{{{:x}}}", c as u32),
    }
}
