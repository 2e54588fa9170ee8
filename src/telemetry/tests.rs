//! The formatters' lines, read back: the request line in both formats, escaping of what a
//! path or message may carry, spans, numbers JSON cannot hold, colours.

use std::io;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::{DefaultFields, JsonFields};

use super::{Human, Json};

/// Collects what the layer writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

fn human(ansi: bool, emit: impl FnOnce()) -> String {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(ansi)
        .with_writer(capture.clone())
        .fmt_fields(DefaultFields::new())
        .event_format(Human)
        .finish();
    tracing::subscriber::with_default(subscriber, emit);
    String::from_utf8(capture.0.lock().unwrap().clone()).unwrap()
}

fn json(emit: impl FnOnce()) -> Vec<serde_json::Value> {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .fmt_fields(JsonFields::new())
        .event_format(Json)
        .finish();
    tracing::subscriber::with_default(subscriber, emit);
    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(text.ends_with('\n'), "{text:?}");
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// The request line as `ProxyState::handle` logs it.
fn request(path: &str) {
    let method = http::Method::GET;
    tracing::info!(
        route = "reads",
        %method,
        path,
        status = 200u16,
        duration_ms = 1.25f64,
        attempts = 1u32,
        "request"
    );
}

/// Splits the timestamp off a human line and checks it is RFC 3339 with microseconds.
fn after_timestamp(line: &str) -> &str {
    let (time, rest) = line.split_once(' ').unwrap();
    assert_eq!(time.len(), "2024-05-01T12:00:00.123456Z".len(), "{line}");
    humantime::parse_rfc3339(time).unwrap_or_else(|e| panic!("{e}: {line}"));
    rest
}

#[test]
fn human_request_line_reads_like_tracing_subscribers() {
    let out = human(false, || request("/v1/payment_intents/pi_1"));
    assert_eq!(
        after_timestamp(&out),
        " INFO payguard::telemetry::tests: request route=\"reads\" method=GET \
         path=\"/v1/payment_intents/pi_1\" status=200 duration_ms=1.25 attempts=1\n"
    );
}

#[test]
fn json_request_line_has_every_field() {
    let lines = json(|| request("/v1/payment_intents/pi_1"));
    let [line] = &lines[..] else {
        panic!("{lines:?}")
    };
    let time = line["timestamp"].as_str().unwrap();
    humantime::parse_rfc3339(time).unwrap();
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["target"], "payguard::telemetry::tests");
    assert_eq!(line["message"], "request");
    assert_eq!(line["route"], "reads");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/v1/payment_intents/pi_1");
    assert_eq!(line["status"], 200);
    assert_eq!(line["duration_ms"], 1.25);
    assert_eq!(line["attempts"], 1);
    assert_eq!(line.as_object().unwrap().len(), 10, "{line}");
}

/// Quotes, backslashes, newlines, a terminal escape and a C1 control, beside plain UTF-8.
const ODD: &str = "/v1/a\"b\\c\nd\re\tf\x1b[31mg\u{85}h\u{7f}é";

#[test]
fn human_escapes_what_could_break_the_line_or_the_terminal() {
    let out = human(false, || request(ODD));
    assert_eq!(out.matches('\n').count(), 1, "{out:?}");
    assert!(!out.contains('\x1b') && !out.contains('\u{85}') && !out.contains('\r'));
    let want = r#"path="/v1/a\"b\\c\nd\re\tf\u{1b}[31mg\u{85}h\u{7f}é""#;
    assert!(out.contains(want), "{out}");
}

#[test]
fn json_escapes_and_reads_back_the_same_path() {
    let lines = json(|| request(ODD));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["path"], ODD);
}

#[test]
fn messages_and_display_values_stay_on_one_line() {
    let out = human(false, || {
        let error = "refused\nby \"upstream\"";
        tracing::warn!(error = %error, "two\nlines");
    });
    assert!(
        out.ends_with(
            " WARN payguard::telemetry::tests: two\\nlines error=refused\\nby \"upstream\"\n"
        ),
        "{out:?}"
    );
    let lines = json(|| {
        let error = "refused\nby \"upstream\"";
        tracing::warn!(error = %error, "two\nlines");
    });
    assert_eq!(lines[0]["message"], "two\nlines");
    assert_eq!(lines[0]["error"], "refused\nby \"upstream\"");
    assert_eq!(lines[0]["level"], "WARN");
}

#[test]
fn numbers_json_cannot_hold_are_null_and_others_keep_their_type() {
    let lines = json(|| tracing::error!(nan = f64::NAN, neg = -3i64, ok = true, big = u64::MAX));
    let line = &lines[0];
    assert!(line["nan"].is_null(), "{line}");
    assert_eq!(line["neg"], -3);
    assert_eq!(line["ok"], true);
    assert_eq!(line["big"], u64::MAX);
    assert!(line.get("message").is_none(), "{line}");
    let out = human(false, || tracing::error!(nan = f64::NAN, r#type = "x"));
    assert!(out.ends_with("tests: nan=NaN type=\"x\"\n"), "{out:?}");
}

#[test]
fn spans_are_shown_from_the_root() {
    let emit = || {
        let _outer = tracing::info_span!("conn", peer = "client").entered();
        let _inner = tracing::debug_span!("stream").entered();
        tracing::debug!(id = 3u64, "frame");
    };
    let out = human(false, emit);
    assert!(
        after_timestamp(&out).starts_with("DEBUG conn{peer=\"client\"}:stream: payguard::"),
        "{out}"
    );
    let lines = json(emit);
    let line = &lines[0];
    assert_eq!(line["span"], serde_json::json!({"name": "stream"}));
    assert_eq!(
        line["spans"],
        serde_json::json!([{"name": "conn", "peer": "client"}, {"name": "stream"}])
    );
    assert_eq!(line["id"], 3);
}

#[test]
fn colours_only_the_level_timestamp_and_target() {
    let out = human(true, || request("/v1/x"));
    assert!(out.starts_with("\x1b[2m"), "{out:?}");
    assert!(out.contains("\x1b[32m INFO\x1b[0m "), "{out:?}");
    assert!(out.contains("\x1b[2mpayguard::telemetry::tests:\x1b[0m request route="));
    let fields = out.split_once("request").unwrap().1;
    assert!(!fields.contains('\x1b'), "{out:?}");
}

/// The same events through upstream's formatter, which ours replaces: the human line after
/// the timestamp, and the JSON object but for the timestamp, must say the same.
#[test]
fn says_what_upstreams_formatter_said() {
    for path in ["/v1/payment_intents/pi_1", ODD] {
        let capture = Capture::default();
        let upstream = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(capture.clone())
            .finish();
        tracing::subscriber::with_default(upstream, || request(path));
        let want = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        // Upstream without a timer still writes the space that follows it.
        let ours = human(false, || request(path));
        assert_eq!(after_timestamp(&ours).trim_start(), want.trim_start());

        let capture = Capture::default();
        let upstream = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(capture.clone())
            .finish();
        tracing::subscriber::with_default(upstream, || request(path));
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        let mut want: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut ours = json(|| request(path)).remove(0);
        for line in [&mut want, &mut ours] {
            line.as_object_mut().unwrap().remove("timestamp");
        }
        assert_eq!(ours, want);
    }
}
