//! The layer's bookkeeping: waiter entries do not pile up, a full store is not an outage, and
//! a finish cut short still releases its key.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Method;
use http_body::Frame;
use http_body_util::BodyExt;

use std::sync::Arc;

use http::{HeaderValue, Response};

use super::*;
use crate::body::ProxyBody;
use crate::body::full;
use crate::idempotency::memory::MemoryStore;
use crate::idempotency::store::{Store, StoreError};
use crate::idempotency::{FailMode, RoutePolicy, Settings};
use crate::metrics::Metrics;
use crate::route::RouteSpec;

fn layer(max_records: usize) -> Idempotency {
    let settings = Settings {
        ttl: Some(Duration::from_secs(60)),
        coalesce_wait: Duration::from_millis(100),
        max_stored_body: 4096,
    };
    Idempotency::new(Arc::new(MemoryStore::new(max_records)), settings)
}

fn route() -> RouteSpec {
    let stripe = &crate::profile::STRIPE;
    RouteSpec {
        name: "r".into(),
        pattern: crate::route::RoutePattern::any(),
        retry: crate::config::builtin_policy(),
        idempotency: RoutePolicy {
            inject: true,
            dedup_window: None,
            dedup_across_keys: false,
            dedup_when_param: None,
            on_store_error: FailMode::Open,
        },
        rate_limit: None,
        breaker: None,
        upstream: 0,
        profile: stripe,
        key_window: stripe.key_window,
        max_upload: None,
    }
}

async fn admit(idem: &Idempotency, m: &Metrics, key: &str) -> Admission {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_static("Bearer sk_test_layer"),
    );
    headers.insert("idempotency-key", HeaderValue::from_str(key).unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let identity = RequestIdentity {
        scope: fingerprint::scope(&headers, &[]),
        fingerprint: fingerprint::fingerprint(&Method::POST, "/v1/x", b"amount=1"),
        windowed: false,
    };
    idem.admit(
        route().keyed(),
        &m.idempotency,
        &mut headers,
        &identity,
        deadline,
    )
    .await
}

fn ok_response(body: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(full(Bytes::from_static(body.as_bytes())));
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    r
}

#[tokio::test]
async fn replays_leave_no_waiter_entries_behind() {
    let (idem, m) = (layer(100), Metrics::new().unwrap());
    let Admission::Forward {
        guard: Some(guard), ..
    } = admit(&idem, &m, "k").await
    else {
        panic!("the first request claims the key");
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let (_, storing) = guard
        .finish(&m.idempotency, ok_response("{}"), deadline)
        .await
        .unwrap();
    storing.expect("a 200 is kept").store(&m.idempotency).await;
    for _ in 0..100 {
        assert!(matches!(
            admit(&idem, &m, "k").await,
            Admission::Replay { .. }
        ));
    }
    assert_eq!(idem.waiting_keys(), 0);
}

#[tokio::test]
async fn a_full_store_forwards_without_making_payguard_unready() {
    let (idem, m) = (layer(1), Metrics::new().unwrap());
    let first = admit(&idem, &m, "a").await;
    assert!(matches!(first, Admission::Forward { guard: Some(_), .. }));
    let second = admit(&idem, &m, "b").await;
    assert!(
        matches!(second, Admission::Forward { guard: None, .. }),
        "full: forwarded undeduplicated"
    );
    assert!(idem.healthy());
    // But it shows: in the gauge, and in what /readyz reads.
    assert!(idem.full());
    assert_eq!(m.idempotency.store_full.get(), 1);
}

#[tokio::test]
async fn a_keyless_request_on_a_windowed_route_fails_closed_when_it_cannot_be_bound() {
    let (idem, m) = (layer(1), Metrics::new().unwrap());
    let mut spec = route();
    spec.idempotency.dedup_window = Some(Duration::from_secs(600));
    // One record fills the store.
    assert!(matches!(
        admit(&idem, &m, "a").await,
        Admission::Forward { .. }
    ));
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_static("Bearer sk_test_w"),
    );
    let identity = RequestIdentity {
        scope: fingerprint::scope(&headers, &[]),
        fingerprint: fingerprint::fingerprint(&Method::POST, "/v1/refunds", b"amount=1"),
        windowed: true,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let admission = idem
        .admit(
            spec.keyed(),
            &m.idempotency,
            &mut headers,
            &identity,
            deadline,
        )
        .await;
    // Under a fresh key its resend could not be told from a new refund: nothing is sent.
    assert!(
        matches!(
            admission,
            Admission::Refuse(ProxyError::StoreUnavailable(_))
        ),
        "refused"
    );
    assert!(
        headers.get("idempotency-key").is_none(),
        "no key was made up for it"
    );
}

/// A body whose bytes never come.
struct Never;

impl http_body::Body for Never {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Poll::Pending
    }
}

#[tokio::test]
async fn a_finish_cut_short_releases_the_key() {
    let (idem, m) = (layer(100), Metrics::new().unwrap());
    let Admission::Forward {
        guard: Some(guard), ..
    } = admit(&idem, &m, "k").await
    else {
        panic!("claimed");
    };
    let mut stalled = Response::new(Never.boxed());
    stalled
        .headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(10));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    // The app hangs up while the body is being read.
    let cut = tokio::time::timeout(
        Duration::from_millis(20),
        guard.finish(&m.idempotency, stalled, deadline),
    )
    .await;
    assert!(cut.is_err());
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        matches!(
            admit(&idem, &m, "k").await,
            Admission::Forward { guard: Some(_), .. }
        ),
        "the retry claims the key at once instead of waiting out the lease"
    );
}

/// A store that writes every claim and then fails to answer it, or never answers at all: a
/// Redis whose reply timed out after the script ran, a disk that hangs.
struct Unanswering {
    inner: MemoryStore,
    hang: bool,
}

impl Store for Unanswering {
    fn claim<'a>(&'a self, req: ClaimRequest<'a>) -> super::super::store::StoreFuture<'a, Claim> {
        Box::pin(async move {
            if self.hang {
                std::future::pending::<()>().await;
            }
            let _ = self.inner.claim(req).await;
            Err(StoreError::Backend("timed out".into()))
        })
    }
    fn complete<'a>(
        &'a self,
        key: &'a Digest,
        owner: u128,
        response: super::super::store::StoredResponse,
        expires_at: u64,
    ) -> super::super::store::StoreFuture<'a, bool> {
        self.inner.complete(key, owner, response, expires_at)
    }
    fn release<'a>(
        &'a self,
        key: &'a Digest,
        owner: u128,
    ) -> super::super::store::StoreFuture<'a, ()> {
        self.inner.release(key, owner)
    }
    fn bind<'a>(
        &'a self,
        req: super::super::store::BindRequest<'a>,
    ) -> super::super::store::StoreFuture<'a, String> {
        self.inner.bind(req)
    }
    fn prune(&self, now: u64) -> super::super::store::StoreFuture<'_, usize> {
        self.inner.prune(now)
    }
    fn count(&self) -> super::super::store::StoreFuture<'_, usize> {
        self.inner.count()
    }
}

fn unanswering(hang: bool) -> (Idempotency, Arc<Unanswering>) {
    let store = Arc::new(Unanswering {
        inner: MemoryStore::new(100),
        hang,
    });
    let settings = Settings {
        ttl: Some(Duration::from_secs(60)),
        coalesce_wait: Duration::from_millis(100),
        max_stored_body: 4096,
    };
    (Idempotency::new(store.clone(), settings), store)
}

#[tokio::test]
async fn a_claim_whose_answer_was_lost_leaves_no_ghost_behind() {
    let m = Metrics::new().unwrap();
    let (idem, store) = unanswering(false);
    let first = admit(&idem, &m, "ghost").await;
    assert!(
        matches!(first, Admission::Forward { guard: None, .. }),
        "fails open"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The claim the store wrote is released: the key is free for the app's retry at once.
    assert_eq!(
        store.inner.count().await.unwrap(),
        0,
        "no claim left holding the key"
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_that_never_answers_is_bounded() {
    let m = Metrics::new().unwrap();
    let (idem, _) = unanswering(true);
    let started = tokio::time::Instant::now();
    let admission = admit(&idem, &m, "hung").await;
    assert!(
        matches!(admission, Admission::Forward { guard: None, .. }),
        "fails open"
    );
    assert!(
        started.elapsed() <= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(!idem.healthy());
}
