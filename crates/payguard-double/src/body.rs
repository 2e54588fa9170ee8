//! The response body the double sends: streamed in chunks, optionally paced or cut short.
//!
//! One body type serves every reply so the delivery faults work the same on a JSON error, a
//! payment intent or an 8 MB `/_double/large` pattern. The pattern is produced chunk by chunk
//! as the connection asks for it, never held whole in memory.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Sleep, sleep};

use super::reply::{Source, pattern_byte};
use super::server::ConnControl;

/// Pattern bodies go out in chunks of this size, so large bodies arrive as many frames.
const PATTERN_CHUNK: usize = 16 * 1024;
/// A paced JSON body is cut into chunks this small, so there are several pauses.
const PACED_CHUNK: usize = 64;
/// After the last bytes of a truncated body, wait this long before the reset, so the
/// connection has flushed what was sent instead of the reset discarding it.
const FLUSH_GRACE: Duration = Duration::from_millis(20);

/// How a reply's body is delivered.
#[derive(Clone, Debug, Default)]
pub(crate) enum Delivery {
    #[default]
    Normal,
    /// Pause this long before each chunk.
    Paced(Duration),
    /// Send about half, then reset the connection through its control.
    Truncated(Arc<ConnControl>),
}

pub(crate) struct ReplyBody {
    source: Source,
    sent: u64,
    chunk: usize,
    pace: Option<Duration>,
    /// Set when truncating: the byte count to stop at and the connection to reset.
    cut: Option<(u64, Arc<ConnControl>)>,
    /// The pause for the next chunk was taken (pacing) or the grace before the reset started.
    waited: bool,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl ReplyBody {
    pub(crate) fn new(source: Source, delivery: Delivery) -> Self {
        let chunk = match (&source, &delivery) {
            (Source::Pattern(_), _) => PATTERN_CHUNK,
            (Source::Bytes(_), Delivery::Paced(_)) => PACED_CHUNK,
            (Source::Bytes(bytes), _) => bytes.len().max(1),
        };
        let (pace, cut) = match delivery {
            Delivery::Normal => (None, None),
            Delivery::Paced(pause) => (Some(pause), None),
            Delivery::Truncated(conn) => (None, Some((source.len() / 2, conn))),
        };
        Self {
            source,
            sent: 0,
            chunk,
            pace,
            cut,
            waited: false,
            sleep: None,
        }
    }

    fn produce(&self, len: usize) -> Bytes {
        match &self.source {
            // `sent + len` never passes the length: `len` was bounded by what is left.
            Source::Bytes(bytes) => bytes.slice(self.sent as usize..self.sent as usize + len),
            Source::Pattern(_) => (0..len as u64)
                .map(|i| pattern_byte(self.sent + i))
                .collect(),
        }
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        // Every field is Unpin (the timer is boxed), so the body can be used by `&mut`.
        let this = self.get_mut();
        loop {
            if let Some(timer) = this.sleep.as_mut() {
                ready!(timer.as_mut().poll(cx));
                this.sleep = None;
            }
            let stop_at = this.cut.as_ref().map_or(this.source.len(), |(at, _)| *at);
            if this.sent >= stop_at {
                let Some((_, conn)) = &this.cut else {
                    return Poll::Ready(None);
                };
                if !this.waited {
                    this.waited = true;
                    this.sleep = Some(Box::pin(sleep(FLUSH_GRACE)));
                    continue;
                }
                // The connection task drops the connection with a zero linger; this body is
                // dropped with it, so staying pending is the end of the story.
                conn.reset();
                return Poll::Pending;
            }
            if let (Some(pause), false) = (this.pace, this.waited) {
                this.waited = true;
                this.sleep = Some(Box::pin(sleep(pause)));
                continue;
            }
            this.waited = false;
            // Bounded by `chunk`, a usize, so the narrowing cannot truncate.
            let len = (stop_at - this.sent).min(this.chunk as u64) as usize;
            let data = this.produce(len);
            this.sent += len as u64;
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.cut.is_none() && self.sent >= self.source.len()
    }

    /// Exact, even when truncating: the promised length is what makes the cut detectable.
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.source.len().saturating_sub(self.sent))
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn patterns_stream_in_chunks() {
        let mut body = ReplyBody::new(Source::Pattern(40_000), Delivery::Normal);
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            sizes.push(data.len());
            all.extend_from_slice(&data);
        }
        assert_eq!(sizes, vec![16_384, 16_384, 7_232]);
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, b)| *b == pattern_byte(i as u64))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn paced_bodies_pause_before_each_chunk() {
        let source = Source::Bytes(Bytes::from(vec![b'x'; 130]));
        let started = tokio::time::Instant::now();
        let body = ReplyBody::new(source, Delivery::Paced(Duration::from_secs(1)));
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 130);
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(3),
            "three chunks of at most 64 bytes"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn truncated_bodies_send_half_then_reset() {
        let conn = Arc::new(ConnControl::default());
        let mut body = ReplyBody::new(
            Source::Bytes(Bytes::from_static(b"0123456789")),
            Delivery::Truncated(conn.clone()),
        );
        assert_eq!(body.size_hint().exact(), Some(10));
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"01234");
        let next = tokio::time::timeout(Duration::from_secs(1), body.frame()).await;
        assert!(next.is_err(), "the body never ends by itself");
        assert!(conn.is_reset());
    }
}
