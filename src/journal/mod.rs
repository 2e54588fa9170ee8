//! The journal of keyed POSTs: what payguard remembers of a request whose outcome may be in
//! doubt, so that no payment is forgotten when an attempt is lost, payguard stops or crashes.
//!
//! It sits below the request path and above the idempotency layer, whose identity it keys on
//! (an entry's [`Id`] is the idempotency record key of its scope and key). It knows nothing
//! of the proxy: the request path opens a [`Ticket`] ([`prepare`]) and settles it with a
//! [`Verdict`]; the resolver (`crate::resolver`, above the proxy) lists, leases and re-sends.
//!
//! 1. when the first attempt of a keyed POST has passed the gates and is about to leave, an
//!    **open** entry is written durably: scope, key, route, method, path, a body fingerprint,
//!    and, where the route re-sends, the payload needed to (headers and body, sealed with
//!    AES-256-GCM when a key is configured, see [`seal`]). A request abandoned while it
//!    queued writes nothing;
//! 2. a definitive answer deletes it once the answer, body included, has reached the app:
//!    the common case leaves nothing behind. So does a request whose attempts never left;
//! 3. a request that ends in doubt marks it **pending**: the app was told "outcome unknown,
//!    retry with the same key" ([`crate::retry::outcome`]), or hung up after it was sent. An
//!    open entry whose lease ran out (its process died) counts as pending too;
//! 4. a finished entry (**resolved** or **gave up**) drops its payload at once, stays listed
//!    as a summary for `keep_finished`, and is announced ([`notify`], [`webhook`]).
//!
//! Backends ([`store`]): [`memory`], [`embedded`] (a table in the idempotency store's redb
//! file) and [`redis`] (shared by every replica, with leases, [`lease`]). The decision rules
//! are plain functions here ([`Verdict::of`], [`Entry::due`]), tested without sockets.

#[doc(hidden)]
pub mod conformance;
pub mod embedded;
pub mod lease;
mod lifecycle;
pub mod memory;
pub mod notify;
pub mod open;
pub mod postgres;
pub mod redis;
pub mod seal;
pub mod store;
mod ticket;
pub mod webhook;

use http::Response;
use serde::{Deserialize, Serialize};

pub use lifecycle::{Journal, Opening};
pub use notify::finished;
pub use open::prepare;
pub use store::{Change, JournalError, JournalFuture, JournalStore, Write};
pub use ticket::Ticket;

use crate::idempotency::fingerprint::Digest;
use crate::retry::{AttemptError, RequestFacts, settled};

/// An entry's name: the idempotency record key of its scope and key, so a request and every
/// retry of it (by the app or the resolver) share one entry.
pub type Id = Digest;

/// The short form of an id that operators see and type: its first 8 bytes in hex.
pub fn short_id(id: &Id) -> String {
    id[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// One request that needs, or recently needed, resolving. Never holds the API key or body in
/// clear outside `payload`, which is sealed when a key is configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub route: String,
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// The idempotency key (the app's, or the one payguard injected).
    pub key: String,
    /// Hash of method, target and body: what the key stands for.
    pub fingerprint: Digest,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Upstream attempts so far, the app's request and every re-send together.
    pub attempts: u32,
    /// Resolver rounds so far.
    pub rounds: u32,
    pub last_error: Option<String>,
    pub state: State,
    /// Whether the resolver may re-send it ([`open`]); else it is only reported.
    pub resend: bool,
    /// Until when a retry of it under a new key joins it (its duplicate window): no re-send
    /// may end after that, or the app could have paid again meanwhile.
    pub window_until: Option<u64>,
    /// True once the entry has been unresolved: a later definitive answer then resolves it
    /// (and is listed) instead of deleting it silently.
    pub was_pending: bool,
    /// The encoded [`Payload`], sealed when `sealed`; dropped when the entry finishes.
    pub payload: Option<Vec<u8>>,
    pub sealed: bool,
}

/// Where an entry stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// A request is being handled; after `lease_until` its process is presumed dead.
    Open { lease_until: u64 },
    /// Unresolved; due for a re-send at `next_at`.
    Pending { next_at: u64 },
    /// The provider answered definitively with this status.
    Resolved { status: u16 },
    /// Nobody will try again.
    GaveUp { reason: GiveUp },
}

/// Why the resolver stopped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GiveUp {
    /// A re-send could no longer finish before the provider forgets the key.
    KeyWindow,
    /// A re-send could no longer finish inside the duplicate window: after it, the app may
    /// pay again under a new key, and a re-send could charge twice.
    DedupWindow,
    /// An operator gave up (`payguard unresolved give-up`).
    Operator,
    /// The payload cannot be opened (the encryption key changed).
    Unreadable,
}

impl GiveUp {
    pub fn label(self) -> &'static str {
        match self {
            GiveUp::KeyWindow => "key_window",
            GiveUp::DedupWindow => "dedup_window",
            GiveUp::Operator => "operator",
            GiveUp::Unreadable => "payload_unreadable",
        }
    }
}

impl State {
    /// `pending`, `in_flight`, `resolved` or `gave_up`.
    pub fn label(&self) -> &'static str {
        match self {
            State::Open { .. } => "in_flight",
            State::Pending { .. } => "pending",
            State::Resolved { .. } => "resolved",
            State::GaveUp { .. } => "gave_up",
        }
    }

    pub fn finished(&self) -> bool {
        matches!(self, State::Resolved { .. } | State::GaveUp { .. })
    }
}

impl Entry {
    /// A request about to be journaled. Its times, state and payload are the journal's to
    /// set when it records the opening; until then they hold nothing.
    pub fn new(
        route: String,
        method: String,
        target: String,
        key: String,
        fingerprint: Digest,
        resend: bool,
    ) -> Entry {
        Entry {
            route,
            method,
            target,
            key,
            fingerprint,
            created_ms: 0,
            updated_ms: 0,
            attempts: 0,
            rounds: 0,
            last_error: None,
            state: State::Pending { next_at: 0 },
            resend,
            window_until: None,
            was_pending: false,
            payload: None,
            sealed: false,
        }
    }

    /// Whether the entry is unresolved at `now`: pending, or open past its lease (the process
    /// handling it died).
    pub fn unresolved(&self, now: u64) -> bool {
        match self.state {
            State::Pending { .. } => true,
            State::Open { lease_until } => lease_until <= now,
            _ => false,
        }
    }

    /// Whether the resolver should act on it at `now`.
    pub fn due(&self, now: u64) -> bool {
        match self.state {
            State::Pending { next_at } => next_at <= now,
            State::Open { lease_until } => lease_until <= now,
            _ => false,
        }
    }

    /// Ends the entry: the payload (API key, body) goes at once; the summary stays.
    pub fn finish(&mut self, state: State, now: u64) {
        self.state = state;
        self.payload = None;
        self.updated_ms = now;
    }
}

/// What a re-send needs: the headers as forwarded (credentials and key included) and the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// How a request ended, as the journal sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The provider answered and that answer is final: the request is settled.
    Definitive(u16),
    /// Nothing reached the provider (or it said it executed nothing): no limbo.
    NothingSent,
    /// Sent, or maybe sent, without a definitive answer.
    Unknown(String),
}

impl Verdict {
    /// The journal's reading of the attempt loop's final outcome for a keyed request. The loop
    /// has already turned every doubt into [`AttemptError::Unknown`] ([`crate::retry::outcome`]),
    /// which is also what the app was told; a 429 or a request that never left executed
    /// nothing.
    pub fn of<B>(outcome: &Result<Response<B>, AttemptError>, facts: RequestFacts) -> Verdict {
        match outcome {
            Ok(r) if settled(outcome, facts) => Verdict::Definitive(r.status().as_u16()),
            Ok(_) => Verdict::NothingSent,
            Err(AttemptError::Unknown { detail, .. }) => Verdict::Unknown(detail.clone()),
            Err(AttemptError::Lost(e)) => Verdict::Unknown(format!("connection lost: {e}")),
            Err(AttemptError::TimedOut(t)) => Verdict::Unknown(format!("no response within {t:?}")),
            Err(AttemptError::NotSent(_) | AttemptError::Refused(_)) => Verdict::NothingSent,
        }
    }
}

#[cfg(test)]
mod tests;
