//! One request through the double, in order: record it, take its fault, rate-limit it, execute
//! it (diagnostics or the Stripe API), then deliver the reply or reset the connection, and
//! count how it was answered. Control endpoints (`control.rs`) are answered before all that.
//!
//! Execution runs in a task of its own. On a real server a request that has fully arrived
//! finishes even if the client hangs up; hyper would instead drop our future on disconnect,
//! which could abandon a charge half way and make the ledger depend on client timing.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::api;
use super::body::{Delivery, ReplyBody};
use super::control;
use super::diag;
use super::dialect::Provider;
use super::faults::{Fault, FaultPlan};
use super::form::new_id;
use super::idempotency::IdempotencyStore;
use super::ledger::Ledger;
use super::objects::Objects;
use super::ratelimit::Limiter;
use super::reply::{self, Reply};
use super::server::ConnControl;
use super::tally::Tally;

/// A request as the double received it.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: Method,
    pub path: String,
    /// The raw query string, without the `?`; `None` when the target had none.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When the request (its body included) had arrived: what a provider's limiter counts.
    pub received: std::time::Instant,
}

impl SeenRequest {
    /// The first value of a header, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Faults that act inside execution rather than in front of it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Injected {
    pub stall: Option<Duration>,
    pub fail: Option<StatusCode>,
}

/// Everything the double shares between connections.
pub(crate) struct App {
    /// The dialect every reply is spelled in.
    pub provider: Provider,
    pub ledger: Ledger,
    pub faults: FaultPlan,
    pub idempotency: Arc<IdempotencyStore>,
    pub limiter: Option<Limiter>,
    pub objects: Objects,
    pub latency: Duration,
    pub record_requests: bool,
    pub seen_count: AtomicU64,
    /// How requests were answered, in all and per order.
    pub tally: Tally,
    // A std Mutex: pushing and cloning the log never awaits.
    pub seen: Mutex<Vec<SeenRequest>>,
}

impl App {
    /// The hyper service: never fails; a reset is delivered by never answering.
    pub(crate) async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        conn: Arc<ConnControl>,
    ) -> Result<Response<ReplyBody>, Infallible> {
        let (parts, body) = request.into_parts();
        // A body that fails to arrive means the client is gone; what we answer is moot.
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let seen = SeenRequest {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers,
            body,
            received: std::time::Instant::now(),
        };
        if control::is_control(&seen.path) {
            return Ok(into_response(
                control::handle(&self, &seen),
                Delivery::Normal,
            ));
        }
        self.record(&seen);
        let fault = self.faults.take(&seen.method, &seen.path, &seen.body);
        let body = seen.body.clone();
        let Some((reply, delivery)) = self.process(seen, fault, &conn).await else {
            self.tally.record(&body, "reset");
            conn.reset();
            // The connection task drops this future with the connection.
            return std::future::pending().await;
        };
        self.tally.record(&body, reply.status.as_str());
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        Ok(into_response(reply, delivery))
    }

    fn record(&self, seen: &SeenRequest) {
        self.seen_count.fetch_add(1, Ordering::SeqCst);
        if self.record_requests {
            // Poison is harmless: the log is only ever pushed to.
            self.seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(seen.clone());
        }
    }

    /// The reply and how to deliver it, or `None` to reset the connection instead.
    async fn process(
        self: &Arc<Self>,
        request: SeenRequest,
        fault: Option<Fault>,
        conn: &Arc<ConnControl>,
    ) -> Option<(Reply, Delivery)> {
        let (mut injected, mut delivery, mut reset_after) =
            (Injected::default(), Delivery::Normal, false);
        match fault {
            None => {}
            Some(Fault::ResetBeforeProcessing) => return None,
            Some(Fault::ResetAfterProcessing) => reset_after = true,
            Some(Fault::Stall(pause)) => injected.stall = Some(pause),
            Some(Fault::FailDuringExecution(code)) => {
                injected.fail = Some(reply::status_or_500(code))
            }
            Some(Fault::SlowBody(pause)) => delivery = Delivery::Paced(pause),
            Some(Fault::TruncatedBody) => delivery = Delivery::Truncated(Arc::clone(conn)),
            // The rest answer in front of everything, idempotency included: nothing is saved.
            Some(front) => return Some((front_reply(front, self.provider), Delivery::Normal)),
        }
        if self
            .limiter
            .as_ref()
            .is_some_and(|limiter| !limiter.admit())
        {
            return Some((rate_limited(self.provider), Delivery::Normal));
        }
        let app = Arc::clone(self);
        let executed = tokio::spawn(async move { app.execute(request, injected).await }).await;
        // A panic in the double is its own bug; answer it the way the provider would.
        let reply = executed.unwrap_or_else(|_| {
            let failed = reply::api_error(StatusCode::INTERNAL_SERVER_ERROR);
            self.provider.error(failed)
        });
        (!reset_after).then_some((reply, delivery))
    }

    async fn execute(&self, request: SeenRequest, injected: Injected) -> Reply {
        if !request.path.starts_with("/_double/") {
            return api::handle(self, &request, injected).await;
        }
        if let Some(pause) = injected.stall {
            tokio::time::sleep(pause).await;
        }
        match injected.fail {
            Some(status) => self.provider.error(reply::api_error(status)),
            None => diag::handle(&request, self.provider).await,
        }
    }
}

/// The 429 of the double's own limiter.
fn rate_limited(dialect: Provider) -> Reply {
    let message = "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.";
    let code = Some("rate_limit");
    let limited = reply::error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_error",
        code,
        message,
    );
    let reply = dialect.error(limited);
    dialect.stripe_header(reply, "stripe-rate-limited-reason", "global-rate")
}

/// The reply for a fault answered before anything executes, in the dialect. `Retry-After`
/// goes out only when the fault scripts one; `Stripe-Should-Retry` only under Stripe.
fn front_reply(fault: Fault, dialect: Provider) -> Reply {
    let too_many = StatusCode::TOO_MANY_REQUESTS;
    let invalid = "invalid_request_error";
    match fault {
        Fault::RateLimited {
            retry_after,
            should_retry,
        } => {
            let mut reply = rate_limited(dialect);
            if let Some(wait) = retry_after {
                // Retry-After counts whole seconds; round up so a client never waits too little.
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                reply = reply.with("retry-after", secs.to_string());
            }
            match should_retry {
                Some(flag) => dialect.stripe_header(reply, "stripe-should-retry", flag.to_string()),
                None => reply,
            }
        }
        // Stripe documents lock_timeout as a code; which error type carries it is not confirmed.
        Fault::LockTimeout => {
            let message = "This object cannot be accessed right now because another API request or Stripe process is currently accessing it.";
            dialect.error(reply::error(
                too_many,
                invalid,
                Some("lock_timeout"),
                message,
            ))
        }
        Fault::KeyInUse => dialect.error(dialect.in_use()),
        Fault::BadRequest => {
            let message = "Invalid request (injected by the payguard double).";
            dialect.error(reply::error(
                StatusCode::BAD_REQUEST,
                invalid,
                None,
                message,
            ))
        }
        Fault::ShouldRetry(code, flag) => {
            let status = reply::status_or_500(code);
            let reply = if status == too_many {
                rate_limited(dialect)
            } else if status.is_server_error() {
                dialect.error(reply::api_error(status))
            } else {
                let message = "Request failed (injected by the payguard double).";
                dialect.error(reply::error(status, invalid, None, message))
            };
            dialect.stripe_header(reply, "stripe-should-retry", flag.to_string())
        }
        // Status, and any fault handled elsewhere should it ever reach here.
        Fault::Status(code) => dialect.error(reply::api_error(reply::status_or_500(code))),
        _ => dialect.error(reply::api_error(StatusCode::INTERNAL_SERVER_ERROR)),
    }
}

fn into_response(reply: Reply, delivery: Delivery) -> Response<ReplyBody> {
    let length = reply.body.len();
    let mut response = Response::new(ReplyBody::new(reply.body, delivery));
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    for (name, value) in reply.headers {
        headers.append(name, value);
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(id) = HeaderValue::from_str(&new_id("req")) {
        headers.insert("request-id", id);
    }
    response
}
