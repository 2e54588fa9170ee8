//! Uploads larger than the replay buffer: streamed through, sent once.
//!
//! Every other request is buffered so each attempt can send the same bytes again. A file upload
//! may be many megabytes, and holding it would cost memory for every one in flight; so a route
//! with `max_upload_bytes` lets a body whose `Content-Length` exceeds the buffer (up to that
//! size) go upstream frame by frame as it arrives. payguard then holds no copy to send again,
//! which decides the rest:
//!
//! - one attempt, whatever the route's retry policy: a failure is returned to the app, whose
//!   own retry (under its idempotency key) is safe. The route's and upstream's breakers and
//!   limiters still gate the attempt, and the deadline still bounds it;
//! - no idempotency step and no journal: payguard cannot fingerprint or keep a body it never
//!   held, so deduplicating the app's key is left to the provider, which does it anyway;
//! - counted in `payguard_streamed_uploads_total` and `payguard_streamed_upload_bytes_total`.
//!
//! A body without `Content-Length` (chunked) is buffered as usual and refused with 413 when it
//! outgrows the buffer: its size is unknown until the end, too late to choose streaming.

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::{Forwarded, ProxyState, Routed};
use crate::error::ProxyError;
use crate::inbound::declared_length;
use crate::retry::{self, AttemptError, RequestFacts, RetryPolicy};

impl ProxyState {
    /// Sends `body` upstream as it arrives, in one attempt, within `deadline`. `limit` is the
    /// route's `max_upload_bytes`.
    pub(super) async fn stream(
        &self,
        parts: http::request::Parts,
        body: Incoming,
        routed: Routed<'_>,
        deadline: tokio::time::Instant,
        limit: usize,
    ) -> Forwarded {
        let length = declared_length(&parts.headers).unwrap_or_default();
        if length > limit as u64 {
            return Forwarded::refused(ProxyError::BodyTooLarge { limit });
        }
        let route = routed.spec();
        let budget = match self.budget(route) {
            Ok(budget) => budget,
            Err(e) => return Forwarded::refused(e),
        };
        self.metrics.streamed(&route.name, length);
        // Bounded all the same: a client sending more than it declared gets cut off.
        let mut body = Some(Limited::new(body, limit).map_err(std::io::Error::other));
        let once = RetryPolicy {
            max_attempts: 1,
            ..route.retry.clone()
        };
        let facts = RequestFacts {
            replay_safe: false,
            keyed: route.profile.has_key(&parts.headers),
            profile: route.profile,
        };
        let observer = routed.series().observer();
        let finished = retry::send_with_retries(
            &once,
            deadline,
            facts,
            budget,
            &self.jitter,
            &observer,
            |timeout| {
                // One attempt is all the policy allows; the body is gone after it.
                let attempt = body.take().map(|body| Self::rebuild(&parts, body));
                async move {
                    let Some(attempt) = attempt else {
                        return Err(AttemptError::NotSent("the upload was already sent".into()));
                    };
                    self.gated_attempt(route, attempt, timeout, deadline, None)
                        .await
                }
            },
        )
        .await;
        Forwarded::outcome(finished, None)
    }
}
