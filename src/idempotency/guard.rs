//! The far side of a claim: [`Guard::finish`] reads the final response and hands back a
//! [`Storing`], which stores it under the claimed key and wakes the duplicates waiting on it
//! (or releases the key when the response is not one to keep); dropping either unfinished
//! releases the key. Also how a stored response is replayed.
//!
//! Reading and storing are two steps so the request path can make the store's write while
//! the journal makes its own: on the embedded store both then share one commit, one fsync,
//! instead of waiting for one after the other.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Limited};

use super::after;
use super::fingerprint::Digest;
use super::handle::Idempotency;
use super::store::StoreError;
use super::store::StoredResponse;
use super::{FailMode, RoutePolicy};
use crate::body::{ProxyBody, full};
use crate::error::ProxyError;
use crate::metrics::IdempotencyMetrics;
use crate::profile::Profile;

/// What to do with a request.
pub enum Admission {
    /// Send it upstream. With a guard, its result must be handed to [`Guard::finish`].
    Forward {
        guard: Option<Guard>,
        injected: Option<HeaderValue>,
    },
    /// Answer with this stored response, without contacting the provider. `injected` is the
    /// key payguard bound to a keyless request, so the app sees it on the replay too.
    Replay {
        response: Response<ProxyBody>,
        injected: Option<HeaderValue>,
    },
    /// Refuse it, without contacting the provider.
    Refuse(ProxyError),
}

impl Idempotency {
    /// What a store failure means for the request, as the route's `on_store_error` says.
    pub(super) fn degrade(
        &self,
        policy: &RoutePolicy,
        e: StoreError,
        injected: Option<HeaderValue>,
    ) -> Admission {
        match policy.on_store_error {
            FailMode::Open => Admission::Forward {
                guard: None,
                injected,
            },
            FailMode::Closed => Admission::Refuse(ProxyError::StoreUnavailable(e.to_string())),
        }
    }
}

/// A claimed key. Finish it with the final response, or drop it to release the key.
pub struct Guard {
    pub(super) owner: Idempotency,
    pub(super) record: Digest,
    pub(super) claim: u128,
    pub(super) finished: bool,
    /// Whose rules decide what is kept, and how a replay is marked.
    pub(super) profile: &'static Profile,
    /// How long the stored response is replayed.
    pub(super) ttl: std::time::Duration,
    /// Until when a duplicate window binds the request's identity to its key, when it does.
    pub(super) bound_until: Option<u64>,
}

impl Guard {
    /// Until when the store binds this request's identity to its key: the layer's own record
    /// of its duplicate window, for the journal to trust instead of the route's settings
    /// (a bind that failed or was skipped binds nothing).
    pub fn bound_until(&self) -> Option<u64> {
        self.bound_until
    }

    /// Reads the response whole when it is final and small enough to keep, and returns it
    /// with the [`Storing`] that keeps it, which the caller must await before the app is
    /// answered; otherwise releases the key. The body is read within what is left of the
    /// request's `deadline`.
    pub async fn finish(
        mut self,
        m: &IdempotencyMetrics,
        response: Response<ProxyBody>,
        deadline: tokio::time::Instant,
    ) -> Result<(Response<ProxyBody>, Option<Storing>), ProxyError> {
        let settings = &self.owner.0.settings;
        let max_stored_body = settings.max_stored_body;
        let length = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        let fits = length.is_some_and(|l| l <= max_stored_body);
        if !self.profile.saves(response.status()) || !fits {
            self.release(m).await;
            return Ok((response, None));
        }
        let (parts, body) = response.into_parts();
        let read =
            tokio::time::timeout_at(deadline, Limited::new(body, max_stored_body).collect()).await;
        let bytes = match read {
            Ok(Ok(collected)) => collected.to_bytes(),
            // The provider answered, but the app cannot be given the answer: for all it
            // knows the request may or may not have executed.
            Ok(Err(e)) => {
                self.release(m).await;
                return Err(ProxyError::OutcomeUnknown {
                    detail: format!("the response body was cut off: {e}"),
                    timed_out: false,
                });
            }
            Err(_) => {
                self.release(m).await;
                return Err(ProxyError::OutcomeUnknown {
                    detail: "the response body did not arrive before the deadline".into(),
                    timed_out: true,
                });
            }
        };
        let stored = StoredResponse {
            status: parts.status.as_u16(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect(),
            body: bytes.to_vec(),
        };
        let storing = Storing {
            guard: self,
            stored,
        };
        Ok((Response::from_parts(parts, full(bytes)), Some(storing)))
    }

    async fn release(&mut self, m: &IdempotencyMetrics) {
        let idem = self.owner.clone();
        let _ = idem
            .op(m, "release", idem.0.store.release(&self.record, self.claim))
            .await;
        self.finished = true;
        idem.wake(&self.record);
    }
}

/// A final response read whole, to be kept under its guard's key.
pub struct Storing {
    guard: Guard,
    stored: StoredResponse,
}

impl Storing {
    /// Stores the response (the write is made when this is first polled) and wakes the
    /// duplicates waiting on the key. A store failure is counted and logged by the store's
    /// metrics; the app still gets its answer.
    pub async fn store(self, m: &IdempotencyMetrics) {
        let Storing { mut guard, stored } = self;
        let idem = guard.owner.clone();
        let expires = after(idem.now_ms(), guard.ttl);
        let complete = idem
            .0
            .store
            .complete(&guard.record, guard.claim, stored, expires);
        let _ = idem.op(m, "complete", complete).await;
        // Only now is the claim settled: were this future dropped earlier (the app hung up),
        // the guard's Drop would still release the key.
        guard.finished = true;
        idem.wake(&guard.record);
    }
}

impl Drop for Guard {
    /// A request abandoned mid-way (the app hung up, or payguard failed) releases its key so
    /// the app's retry need not wait for the lease to run out.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let (idem, record, claim) = (self.owner.clone(), self.record, self.claim);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = idem.0.store.release(&record, claim).await {
                    tracing::warn!(error = %e, "could not release an abandoned idempotency key");
                }
                idem.wake(&record);
            });
        }
    }
}

/// A stored response as the provider replays one: same status, headers and body, marked as
/// the profile's provider marks replays (Stripe: `Idempotent-Replayed: true`).
pub(super) fn replay(stored: StoredResponse, profile: &Profile) -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from(stored.body)));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            headers.append(name, value);
        }
    }
    if let Some((name, value)) = &profile.replayed_header {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
