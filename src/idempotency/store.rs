//! The idempotency store: what a record is, the operations every backend offers, and the
//! decision rules they share.
//!
//! The rules live here as plain functions over an optional existing record ([`decide_claim`],
//! [`decide_bind`]), so every backend applies the same semantics and only has to make the
//! read-decide-write step atomic in its own way: a mutex for memory, a write transaction for
//! the embedded file, a script for Redis. One conformance suite (`conformance.rs`) runs
//! against every backend.
//!
//! Times are Unix milliseconds passed in by the caller, never read inside a backend: records
//! outlive the process, so they need wall-clock times, and tests drive them explicitly.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use super::fingerprint::Digest;

/// A future returned by a store operation.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the idempotency store is full ({0} records)")]
    Full(usize),
    #[error("idempotency store failure: {0}")]
    Backend(String),
}

/// A response kept for replay: status, headers and body, exactly as relayed the first time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl StoredResponse {
    /// The response as the backends that keep it in a column or a hash field hold it.
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        postcard::to_stdvec(self)
            .map_err(|e| StoreError::Backend(format!("encoding a response: {e}")))
    }

    pub fn decode(bytes: &[u8]) -> Result<StoredResponse, StoreError> {
        postcard::from_bytes(bytes)
            .map_err(|e| StoreError::Backend(format!("decoding a stored response: {e}")))
    }
}

/// What the store holds under a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A request is being handled by `owner` until `lease_until`; after that anyone may take
    /// the key over (its holder died or hung).
    InFlight {
        fingerprint: Digest,
        owner: u128,
        lease_until: u64,
    },
    /// The final response, replayed until `expires_at`.
    Completed {
        fingerprint: Digest,
        response: StoredResponse,
        expires_at: u64,
    },
    /// A keyless request's content, bound to the key payguard injected for it.
    Binding { key: String, expires_at: u64 },
}

impl Record {
    /// Whether the record no longer counts at `now` and may be pruned or overwritten.
    pub fn expired(&self, now: u64) -> bool {
        match self {
            Record::InFlight { lease_until, .. } => *lease_until <= now,
            Record::Completed { expires_at, .. } | Record::Binding { expires_at, .. } => {
                *expires_at <= now
            }
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        postcard::to_stdvec(self)
            .map_err(|e| StoreError::Backend(format!("encoding a record: {e}")))
    }

    pub fn decode(bytes: &[u8]) -> Result<Record, StoreError> {
        postcard::from_bytes(bytes)
            .map_err(|e| StoreError::Backend(format!("decoding a record: {e}")))
    }
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller now owns the key and must complete or release it.
    Claimed,
    /// Another request holds the key.
    InFlight { fingerprint: Digest },
    /// The key has a final response.
    Completed {
        fingerprint: Digest,
        response: StoredResponse,
    },
}

/// A request to claim a key.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    pub key: &'a Digest,
    pub fingerprint: &'a Digest,
    pub owner: u128,
    pub lease_until: u64,
    pub now: u64,
}

/// A request to bind a request's identity (`key`, a [`super::fingerprint::binding_key`]) to an
/// idempotency key.
#[derive(Debug, Clone, Copy)]
pub struct BindRequest<'a> {
    pub key: &'a Digest,
    /// The key to bind when no live binding stands.
    pub candidate: &'a str,
    pub expires_at: u64,
    pub now: u64,
    /// A live binding to this key is replaced by `candidate` (the request it names ended in a
    /// failure that a new attempt may not share); a binding to any other key stands.
    pub replace: Option<&'a str>,
}

impl ClaimRequest<'_> {
    /// [`decide_claim`] for this request as an owned rule, for a backend that decides after
    /// the borrow has ended: on another thread, or again when its transaction is retried.
    pub fn rule(
        &self,
    ) -> impl Fn(Option<Record>) -> (Claim, Option<Record>) + Clone + Send + 'static {
        let (key, fingerprint) = (*self.key, *self.fingerprint);
        let (owner, lease_until, now) = (self.owner, self.lease_until, self.now);
        move |existing| {
            let req = ClaimRequest {
                key: &key,
                fingerprint: &fingerprint,
                owner,
                lease_until,
                now,
            };
            decide_claim(existing, &req)
        }
    }
}

impl BindRequest<'_> {
    /// [`decide_bind`] for this request as an owned rule (see [`ClaimRequest::rule`]).
    pub fn rule(
        &self,
    ) -> impl Fn(Option<Record>) -> (String, Option<Record>) + Clone + Send + 'static {
        let key = *self.key;
        let (candidate, replace) = (self.candidate.to_owned(), self.replace.map(str::to_owned));
        let (expires_at, now) = (self.expires_at, self.now);
        move |existing| {
            let req = BindRequest {
                key: &key,
                candidate: &candidate,
                expires_at,
                now,
                replace: replace.as_deref(),
            };
            decide_bind(existing, &req)
        }
    }
}

/// The operations every backend provides. Each is atomic for its key.
pub trait Store: Send + Sync {
    /// Claims `key` unless a live record holds it.
    fn claim<'a>(&'a self, req: ClaimRequest<'a>) -> StoreFuture<'a, Claim>;
    /// Stores the final response, if `owner` still holds the key. Returns whether it did.
    fn complete<'a>(
        &'a self,
        key: &'a Digest,
        owner: u128,
        response: StoredResponse,
        expires_at: u64,
    ) -> StoreFuture<'a, bool>;
    /// Gives up a claim without a result, so the next request with the key starts afresh.
    fn release<'a>(&'a self, key: &'a Digest, owner: u128) -> StoreFuture<'a, ()>;
    /// Binds `req.key` to `req.candidate` unless a live binding stands (see
    /// [`BindRequest::replace`]); returns the key in force.
    fn bind<'a>(&'a self, req: BindRequest<'a>) -> StoreFuture<'a, String>;
    /// Removes records expired at `now`; returns how many.
    fn prune(&self, now: u64) -> StoreFuture<'_, usize>;
    /// Records held, expired or not.
    fn count(&self) -> StoreFuture<'_, usize>;
}

/// The claim rule: a live record answers; an absent or expired one is replaced by a new claim.
/// Returns the answer and the record to write, if any.
pub fn decide_claim(existing: Option<Record>, req: &ClaimRequest<'_>) -> (Claim, Option<Record>) {
    match existing {
        Some(Record::InFlight {
            fingerprint,
            lease_until,
            ..
        }) if lease_until > req.now => (Claim::InFlight { fingerprint }, None),
        Some(Record::Completed {
            fingerprint,
            response,
            expires_at,
        }) if expires_at > req.now => (
            Claim::Completed {
                fingerprint,
                response,
            },
            None,
        ),
        _ => (
            Claim::Claimed,
            Some(Record::InFlight {
                fingerprint: *req.fingerprint,
                owner: req.owner,
                lease_until: req.lease_until,
            }),
        ),
    }
}

/// Whether a completion or release by `owner` may touch `existing`: only its own live claim.
/// A holder whose lease ran out and was taken over must not overwrite the newer owner.
pub fn owns(existing: Option<&Record>, owner: u128) -> bool {
    matches!(existing, Some(Record::InFlight { owner: o, .. }) if *o == owner)
}

/// The completion rule: only the owner's live claim becomes a completed record.
pub fn decide_complete(
    existing: Option<Record>,
    owner: u128,
    response: StoredResponse,
    expires_at: u64,
) -> (bool, Option<Record>) {
    match existing {
        Some(Record::InFlight {
            fingerprint,
            owner: o,
            ..
        }) if o == owner => (
            true,
            Some(Record::Completed {
                fingerprint,
                response,
                expires_at,
            }),
        ),
        _ => (false, None),
    }
}

/// The binding rule: a live binding stands, unless it names `req.replace`; otherwise
/// `candidate` is bound.
pub fn decide_bind(existing: Option<Record>, req: &BindRequest<'_>) -> (String, Option<Record>) {
    match existing {
        Some(Record::Binding { key, expires_at })
            if expires_at > req.now && req.replace != Some(key.as_str()) =>
        {
            (key, None)
        }
        _ => (
            req.candidate.to_owned(),
            Some(Record::Binding {
                key: req.candidate.to_owned(),
                expires_at: req.expires_at,
            }),
        ),
    }
}
