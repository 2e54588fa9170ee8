//! The journal entry of a keyed request is settled only once its answer has reached the app,
//! body included. Settled on the response head, a body cut off on the way would leave the app
//! with a broken answer and the journal with nothing: the one case the journal exists for.
//!
//! Provider answers to API calls are small: up to [`SETTLE_BUFFER`] (with a known length) the
//! body is read here, the entry settled, and the app answered from memory. A larger body
//! streams through a [`Settling`] body that settles the entry when it ends: at its end with
//! the verdict, on an error as unknown, and, dropped half way (the app hung up), through the
//! ticket's own drop, as unknown.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};

use super::{ProxyBody, ProxyState, full};
use crate::error::ProxyError;
use crate::idempotency::after;
use crate::journal::webhook::Webhook;
use crate::journal::{self, Ticket, Verdict};
use crate::metrics::Metrics;

/// Bodies up to this size, with a known length, are read before the entry is settled.
const SETTLE_BUFFER: u64 = 256 * 1024;

/// What settling needs once the request path has moved on: the ticket and what to tell it,
/// and where to report an entry this answer resolved.
struct Settle {
    ticket: Ticket,
    verdict: Verdict,
    attempts: u32,
    retry_at: u64,
    metrics: Arc<Metrics>,
    webhook: Option<Arc<Webhook>>,
}

impl Settle {
    async fn run(self, verdict: Verdict) {
        let id = self.ticket.id();
        let resolved = self.ticket.settle(verdict, self.attempts, self.retry_at);
        // The app's own retry may be what resolves an earlier unresolved request.
        if let Some(entry) = resolved.await {
            journal::finished(&self.metrics, self.webhook.as_deref(), &id, &entry);
        }
    }
}

impl ProxyState {
    /// Settles `ticket` once `result` is ready to reach the app, and returns what the app
    /// gets, and the verdict as it stands then.
    pub(super) async fn deliver(
        &self,
        ticket: Ticket,
        result: Result<Response<ProxyBody>, ProxyError>,
        verdict: Verdict,
        attempts: u32,
        deadline: tokio::time::Instant,
    ) -> (Result<Response<ProxyBody>, ProxyError>, Verdict) {
        let settle = Settle {
            ticket,
            verdict: verdict.clone(),
            attempts,
            retry_at: after(self.journal.now_ms(), self.resolver.base_delay),
            metrics: self.metrics.clone(),
            webhook: self.webhook.clone(),
        };
        let response = match result {
            Ok(response) => response,
            Err(e) => {
                settle.run(verdict.clone()).await;
                return (Err(e), verdict);
            }
        };
        let small = response
            .body()
            .size_hint()
            .exact()
            .is_some_and(|n| n <= SETTLE_BUFFER);
        if !small {
            let response = response.map(|body| {
                Settling {
                    inner: body,
                    settle: Some(settle),
                }
                .boxed()
            });
            return (Ok(response), verdict);
        }
        let (parts, body) = response.into_parts();
        let read = Limited::new(body, SETTLE_BUFFER as usize).collect();
        let cut = match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(collected)) => {
                settle.run(verdict.clone()).await;
                return (
                    Ok(Response::from_parts(parts, full(collected.to_bytes()))),
                    verdict,
                );
            }
            Ok(Err(e)) => (format!("the response body was cut off: {e}"), false),
            Err(_) => (
                "the response body did not arrive before the deadline".into(),
                true,
            ),
        };
        let (detail, timed_out) = cut;
        let verdict = Verdict::Unknown(detail.clone());
        settle.run(verdict.clone()).await;
        (
            Err(ProxyError::OutcomeUnknown { detail, timed_out }),
            verdict,
        )
    }
}

/// A streamed answer that settles its request's journal entry when it ends.
struct Settling {
    inner: ProxyBody,
    settle: Option<Settle>,
}

impl Settling {
    fn finish(&mut self, verdict: Option<Verdict>) {
        if let Some(settle) = self.settle.take() {
            let verdict = verdict.unwrap_or_else(|| settle.verdict.clone());
            tokio::spawn(settle.run(verdict));
        }
    }
}

impl Body for Settling {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.finish(None),
            Poll::Ready(Some(Err(e))) => {
                let cut = format!("the response body was cut off: {e}");
                this.finish(Some(Verdict::Unknown(cut)));
            }
            _ => {}
        }
        polled
    }

    /// Not before it has settled: a body taken for ended is never polled to its end.
    fn is_end_stream(&self) -> bool {
        self.settle.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
