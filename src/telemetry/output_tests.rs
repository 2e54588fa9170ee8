//! The batching of request lines, on paused time: when a line reaches the sink, in how many
//! writes, and in what order beside the other lines.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use super::{ACCESS, FLUSH_BYTES, FLUSH_EVERY, Output};

/// What reached the sink, and in how many writes.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

impl Sink {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().0.clone()).unwrap()
    }
    fn writes(&self) -> usize {
        self.0.lock().unwrap().1
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut seen = self.0.lock().unwrap();
        seen.0.extend_from_slice(buf);
        seen.1 += 1;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A stderr that is gone: every write fails.
struct Closed;

impl Write for Closed {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn output() -> (Output, Sink) {
    let sink = Sink::default();
    (Output::to(Box::new(sink.clone())), sink)
}

/// A request line (`access`) or another line, logged through tracing-subscriber's fmt
/// layer writing to `output`, with nothing but the message on the line.
fn log(output: &Output, access: bool, line: &str) {
    let subscriber = tracing_subscriber::fmt()
        .with_writer(output.clone())
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || match access {
        true => tracing::info!(target: ACCESS, "{line}"),
        false => tracing::info!("{line}"),
    });
}

/// A request line.
fn request(output: &Output, line: &str) {
    log(output, true, line);
}

#[test]
fn without_the_timer_every_line_goes_at_once() {
    let (output, sink) = output();
    request(&output, "one");
    request(&output, "two");
    assert_eq!(sink.text(), "one\ntwo\n");
    assert_eq!(sink.writes(), 2);
}

#[tokio::test(start_paused = true)]
async fn request_lines_gather_and_leave_together_after_the_interval() {
    let (output, sink) = output();
    let _batching = output.batch();
    for n in 0..100 {
        request(&output, &format!("request {n}"));
    }
    tokio::time::sleep(FLUSH_EVERY / 2).await;
    assert_eq!(sink.text(), "", "held for the interval");
    tokio::time::sleep(FLUSH_EVERY).await;
    assert_eq!(sink.writes(), 1, "one write for the batch");
    assert!(sink.text().starts_with("request 0\n") && sink.text().ends_with("request 99\n"));

    // The next line arms the timer again.
    request(&output, "later");
    tokio::time::sleep(FLUSH_EVERY + FLUSH_EVERY / 10).await;
    assert_eq!(sink.writes(), 2);
    assert!(sink.text().ends_with("request 99\nlater\n"));
}

#[tokio::test(start_paused = true)]
async fn a_request_line_long_after_the_last_write_goes_at_once() {
    let (output, sink) = output();
    let _batching = output.batch();
    request(&output, "first");
    tokio::time::sleep(FLUSH_EVERY * 2).await;
    assert_eq!(sink.writes(), 1);
    // At a sidecar's usual pace: nothing to batch, so no timer and no wait.
    tokio::time::sleep(FLUSH_EVERY).await;
    request(&output, "sparse");
    assert_eq!(sink.writes(), 2);
    assert_eq!(sink.text(), "first\nsparse\n");
    // One soon after it waits for the timer.
    tokio::time::sleep(FLUSH_EVERY / 5).await;
    request(&output, "dense");
    assert_eq!(sink.writes(), 2);
    tokio::time::sleep(FLUSH_EVERY + FLUSH_EVERY / 10).await;
    assert_eq!(sink.text(), "first\nsparse\ndense\n");
}

#[tokio::test(start_paused = true)]
async fn other_lines_go_at_once_after_the_request_lines_before_them() {
    let (output, sink) = output();
    let _batching = output.batch();
    request(&output, "request");
    log(&output, false, "config reloaded");
    assert_eq!(sink.text(), "request\nconfig reloaded\n");
    assert_eq!(sink.writes(), 1);
    log(&output, false, "upstream failing");
    assert_eq!(sink.writes(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_goes_without_waiting() {
    let (output, sink) = output();
    let _batching = output.batch();
    // 1,000 bytes a line with the layer's newline.
    let line = "x".repeat(999);
    let fit = FLUSH_BYTES / 1000;
    for _ in 0..fit {
        request(&output, &line);
    }
    assert_eq!(sink.writes(), 0);
    request(&output, &line);
    assert_eq!(sink.writes(), 1);
    assert_eq!(sink.text().len(), (fit + 1) * 1000);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_guard_writes_what_is_pending_and_stops_batching() {
    let (output, sink) = output();
    let batching = output.batch();
    request(&output, "last request");
    drop(batching);
    assert_eq!(sink.text(), "last request\n");
    log(&output, false, "shutting down");
    assert_eq!(sink.text(), "last request\nshutting down\n");
}

#[tokio::test(start_paused = true)]
async fn a_closed_stderr_drops_lines_instead_of_keeping_them() {
    let output = Output::to(Box::new(Closed));
    let _batching = output.batch();
    log(&output, false, "nobody reads this");
    assert!(output.0.lock().pending.is_empty());
}
