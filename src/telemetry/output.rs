//! Where log lines go: stderr, the request lines in batches once the runtime runs.
//!
//! At level info payguard logs a line per request, and one `write(2)` per line was a syscall
//! per request: strace counted 20,010 writes beside the 40,000 `writev`s and 40,017
//! `recvfrom`s of 20,000 pass-through GETs, the only calls the bare relay (bench-floor) does
//! not make. So, as nginx buffers its access log (`access_log … buffer= flush=`) but not its
//! error log, the request lines (target [`ACCESS`]) gather here and leave together:
//!
//! - a line that comes [`FLUSH_EVERY`] or more after the last write goes out at once: at a
//!   sidecar's usual pace (the shipped limiter's 9.8 requests a second) there is nothing to
//!   batch, and arming a timer per line cost an `eventfd` write and a wake-up per request
//!   (syscalls.sh's default row);
//! - a line that comes sooner waits: the first of them arms a timer of [`FLUSH_EVERY`], and
//!   whatever has gathered when it fires goes out in one write;
//! - a batch that reaches [`FLUSH_BYTES`] goes out at once, which bounds the memory;
//! - any other line (start-up, reloads, warnings, errors) goes out at once, after the
//!   request lines gathered before it, so the order stays and nothing else is held back.
//!
//! What that costs: a process killed outright (SIGKILL, the OOM killer) loses the request
//! lines of its last [`FLUSH_EVERY`]. A stop that runs payguard's own code (a drain, an error,
//! a panic unwinding out of `run`) writes them: dropping [`Batching`] does.
//!
//! Before the timer runs (start-up, before the runtime) and after [`Batching`] is dropped,
//! every line goes out as it is written.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::Metadata;
use tracing_subscriber::fmt::MakeWriter;

/// The target of the request lines, the only ones batched.
pub const ACCESS: &str = "payguard::access";

/// The longest a request line waits before it is written, and how long after a write a line
/// must come to be written at once.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// The most a batch holds before it is written without waiting for the timer.
pub const FLUSH_BYTES: usize = 64 * 1024;

/// The log's destination, for `tracing_subscriber::fmt`'s layer. Clones share one batch.
#[derive(Clone)]
pub struct Output(Arc<Shared>);

struct Shared {
    state: Mutex<State>,
    /// Whether the timer task runs; while it does not, every line is written at once.
    batching: AtomicBool,
    /// Wakes the timer task when a batch gets its first line.
    first_line: Notify,
}

struct State {
    pending: Vec<u8>,
    sink: Box<dyn Write + Send>,
    /// When the last write was made.
    written_at: Instant,
}

impl State {
    /// Writes the batch out. A failed write (stderr closed) drops it: there is nowhere left
    /// to report it, and keeping it would grow without bound.
    fn write_out(&mut self) {
        if !self.pending.is_empty() {
            let _ = self.sink.write_all(&self.pending);
            let _ = self.sink.flush();
            self.pending.clear();
            self.written_at = Instant::now();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A line is plain bytes: a panic while one was appended leaves nothing inconsistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Output {
    /// Lines to stderr.
    pub fn stderr() -> Output {
        Output::to(Box::new(io::stderr()))
    }

    /// Lines to `sink` (tests use a buffer).
    pub fn to(sink: Box<dyn Write + Send>) -> Output {
        Output(Arc::new(Shared {
            state: Mutex::new(State {
                pending: Vec::with_capacity(FLUSH_BYTES),
                sink,
                written_at: Instant::now(),
            }),
            batching: AtomicBool::new(false),
            first_line: Notify::new(),
        }))
    }

    /// Starts batching: spawns the timer task on the current tokio runtime. Lines are
    /// batched until the returned guard is dropped, which writes what is pending.
    pub fn batch(&self) -> Batching {
        let shared = self.0.clone();
        let timer = tokio::spawn(async move {
            loop {
                shared.first_line.notified().await;
                tokio::time::sleep(FLUSH_EVERY).await;
                shared.lock().write_out();
            }
        });
        self.0.batching.store(true, Ordering::Release);
        Batching {
            output: self.clone(),
            timer,
        }
    }

    /// Appends one formatted line (tracing-subscriber writes each event with one call).
    fn append(&self, line: &[u8], urgent: bool) {
        let mut state = self.0.lock();
        let first = state.pending.is_empty();
        state.pending.extend_from_slice(line);
        let sparse = first && state.written_at.elapsed() >= FLUSH_EVERY;
        if urgent
            || sparse
            || !self.0.batching.load(Ordering::Acquire)
            || state.pending.len() >= FLUSH_BYTES
        {
            state.write_out();
        } else if first {
            self.0.first_line.notify_one();
        }
    }
}

/// Batching in force; dropping it stops the timer and writes what is pending.
pub struct Batching {
    output: Output,
    timer: tokio::task::JoinHandle<()>,
}

impl Drop for Batching {
    fn drop(&mut self) {
        self.timer.abort();
        self.output.0.batching.store(false, Ordering::Release);
        self.output.0.lock().write_out();
    }
}

/// The writer of one event.
pub struct Line<'a> {
    output: &'a Output,
    urgent: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.append(buf, self.urgent);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Output {
    type Writer = Line<'a>;

    /// An event of unknown level: written at once.
    fn make_writer(&'a self) -> Line<'a> {
        Line {
            output: self,
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line<'a> {
        Line {
            output: self,
            urgent: meta.target() != ACCESS,
        }
    }
}

#[cfg(test)]
#[path = "output_tests.rs"]
mod tests;
