//! `payguard-double`: a test double of the Stripe API, faithful to `provider-semantics.md`, so payguard's claims
//! ("charged exactly once", "a lost reply is replayed, not re-executed") can be proven against
//! something that fails the way the real provider and network do.
//!
//! Tests run it in-process with [`spawn`] on `127.0.0.1:0`; the `payguard-provider` binary runs
//! it with [`serve`] for benchmarks and demos. A request meets, in order:
//!
//! 1. the request log ([`DoubleHandle::requests`]), which records everything that arrives;
//! 2. the [`FaultPlan`]. Faults that answer (`Status`, `RateLimited`, `LockTimeout`, `KeyInUse`,
//!    `BadRequest`, `ShouldRetry`) and `ResetBeforeProcessing` strike here, **in front of the
//!    idempotency layer**: nothing executes and nothing is saved, so a retry with the same key
//!    executes afresh. This is the decision that makes them model a flaky network or a provider
//!    front end; a failure saved under a key is `FailDuringExecution` instead;
//! 3. the double's own rate limiter (off unless [`DoubleConfig::rate_limit`] is set; one bucket
//!    for every path, diagnostics included): 429 `rate_limit`, not saved, counted in
//!    [`DoubleHandle::rate_limited`];
//! 4. for `/v1/...`: the API key (`Bearer` or `Basic`), the route, the idempotency layer
//!    (replay, 409 in use, 400 mismatch, or claim), validation (400, not saved), then
//!    execution, whose result is saved under the key and whose effects go to the [`Ledger`].
//!    `/_double/...` diagnostics skip all of step 4;
//! 5. delivery: `ResetAfterProcessing` resets instead of replying (the effect and the saved
//!    record stand); `SlowBody` and `TruncatedBody` shape the body; `latency` delays the reply.
//!
//! Before step 1, the control endpoints `/_double/faults` and `/_double/ledger` (`control.rs`)
//! let a harness script faults and read the ledger and per-order answer counts over HTTP;
//! they are not logged, counted, faulted or limited. After step 5, each answer (its status, or
//! `reset`) is counted in all and per `metadata[order_id]` (`tally.rs`).
//!
//! `Stall` holds a request after it claimed its key and before it executes, as a slow endpoint
//! would: a retry meanwhile gets 409 `idempotency_key_in_use`, one after gets the replay.
//! Resets are real TCP RSTs (see `server.rs`). Execution runs in its own task, so a client that
//! gives up does not cancel an effect half way.
//!
//! # Dialects
//!
//! [`DoubleConfig::provider`] picks whose dialect the double speaks ([`Provider`]): Stripe's
//! (the default, described above), the IETF idempotency-key draft's, or PayPal's, so the same
//! dedup, replay and conflict tests can run against each of payguard's provider profiles. A
//! dialect changes the key header and the methods that take one, the scope a key and its
//! objects live in, what a completed duplicate gets (a replay marked `Idempotent-Replayed`, an
//! unmarked replay, or PayPal's 200 with the object's current state), the in-use and mismatch
//! answers (409 and 400 for Stripe, 409 and 422 for the others), and the shape of every error
//! body, problem details for the draft. Endpoints, ids, form bodies and the ledger stay
//! Stripe-shaped under every dialect: what differs between payguard's profiles is idempotency,
//! scoping and errors, so that is what the dialects model (see `dialect.rs`).

mod api;
mod app;
mod body;
pub mod client;
mod control;
#[cfg(test)]
mod control_tests;
mod diag;
mod dialect;
#[cfg(test)]
mod dialect_wire_tests;
mod faults;
mod form;
mod idempotency;
mod ledger;
mod objects;
mod ratelimit;
mod reply;
mod server;
mod spec;
mod tally;
#[cfg(test)]
mod wire_tests;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use app::SeenRequest;
pub use dialect::{Provider, UnknownProvider};
pub use faults::{Contention, Fault, FaultPlan, Matcher, Profile, ProfileError};
pub use ledger::{Duplicate, DuplicateBy, Effect, EffectKind, Ledger, LedgerSummary};
pub use ratelimit::{RateLimit, busiest_window};
pub use spec::{fault_name, parse_fault, parse_mix};

use app::App;

/// How the double behaves. `Default` is a well-behaved provider: no limiter, no faults, plain
/// HTTP, no added latency, keys kept for 24 hours, every request recorded.
#[derive(Clone, Debug)]
pub struct DoubleConfig {
    pub rate_limit: Option<RateLimit>,
    /// Shared: keep a clone to script faults, or use [`DoubleHandle::faults`].
    pub faults: FaultPlan,
    /// Serve HTTPS with this config; [`DoubleHandle::url`] then names `localhost`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Added to every reply.
    pub latency: Duration,
    /// How long idempotency keys are kept before they may be pruned.
    pub idempotency_window: Duration,
    /// Keep every request for [`DoubleHandle::requests`]. Long benchmark runs turn it off.
    pub record_requests: bool,
    /// Whose dialect of idempotency and errors the double speaks; Stripe by default.
    pub provider: Provider,
}

impl Default for DoubleConfig {
    fn default() -> Self {
        Self {
            rate_limit: None,
            faults: FaultPlan::default(),
            tls: None,
            latency: Duration::ZERO,
            idempotency_window: Duration::from_secs(24 * 60 * 60),
            record_requests: true,
            provider: Provider::Stripe,
        }
    }
}

/// Counts and the ledger, as a run ends; its `Display` is the binary's exit summary.
#[derive(Clone, Debug)]
pub struct Summary {
    pub requests_seen: u64,
    pub rate_limited: u64,
    pub faults_injected: u64,
    pub ledger: Ledger,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "requests seen: {}", self.requests_seen)?;
        writeln!(f, "rate limited: {}", self.rate_limited)?;
        writeln!(f, "faults injected: {}", self.faults_injected)?;
        write!(f, "{}", self.ledger.summary())
    }
}

/// Serves on `listener` until `shutdown` completes, drains, and returns the summary.
pub async fn serve(
    listener: TcpListener,
    cfg: DoubleConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<Summary> {
    let (app, tls) = build(cfg)?;
    server::run(listener, Arc::clone(&app), tls, shutdown).await?;
    Ok(summary(&app))
}

/// Starts the double on `127.0.0.1:0` in the background.
pub async fn spawn(cfg: DoubleConfig) -> io::Result<DoubleHandle> {
    spawn_on(TcpListener::bind("127.0.0.1:0").await?, cfg)
}

/// Starts the double on a listener of the caller's in the background.
pub fn spawn_on(listener: TcpListener, cfg: DoubleConfig) -> io::Result<DoubleHandle> {
    let addr = listener.local_addr()?;
    let https = cfg.tls.is_some();
    let (app, tls) = build(cfg)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        // Only an explicit `shutdown` stops the double: a dropped handle leaves it serving.
        if stopped.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let task = tokio::spawn(server::run(listener, Arc::clone(&app), tls, shutdown));
    Ok(DoubleHandle {
        addr,
        https,
        app,
        stop,
        task,
    })
}

fn build(cfg: DoubleConfig) -> io::Result<(Arc<App>, Option<TlsAcceptor>)> {
    if let Some(limit) = &cfg.rate_limit {
        limit
            .validate()
            .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
    }
    let app = App {
        provider: cfg.provider,
        ledger: Ledger::default(),
        faults: cfg.faults,
        idempotency: idempotency::IdempotencyStore::new(cfg.idempotency_window),
        limiter: cfg.rate_limit.map(ratelimit::Limiter::new),
        objects: objects::Objects::default(),
        latency: cfg.latency,
        record_requests: cfg.record_requests,
        seen_count: Default::default(),
        tally: Default::default(),
        seen: Mutex::default(),
    };
    Ok((Arc::new(app), cfg.tls.map(TlsAcceptor::from)))
}

fn summary(app: &App) -> Summary {
    Summary {
        requests_seen: app.seen_count.load(Ordering::SeqCst),
        rate_limited: app.limiter.as_ref().map_or(0, |l| l.limited()),
        faults_injected: app.faults.injected(),
        ledger: app.ledger.clone(),
    }
}

/// A running double. Dropping the handle leaves it running until the runtime ends; call
/// [`DoubleHandle::shutdown`] to stop it and wait for in-flight requests.
pub struct DoubleHandle {
    addr: SocketAddr,
    https: bool,
    app: Arc<App>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

impl DoubleHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` with TLS (certificates name hosts).
    pub fn url(&self) -> String {
        match self.https {
            true => format!("https://localhost:{}", self.addr.port()),
            false => format!("http://{}", self.addr),
        }
    }

    /// The ledger of side effects, shared with the running double.
    pub fn ledger(&self) -> Ledger {
        self.app.ledger.clone()
    }

    /// The fault plan, shared: scripting it affects the next requests.
    pub fn faults(&self) -> FaultPlan {
        self.app.faults.clone()
    }

    /// How many requests arrived, faulted and limited ones included.
    pub fn requests_seen(&self) -> u64 {
        self.app.seen_count.load(Ordering::SeqCst)
    }

    /// Every request that arrived, in arrival order (empty if recording is off).
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.app
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many requests the double's own limiter answered with 429.
    pub fn rate_limited(&self) -> u64 {
        self.app.limiter.as_ref().map_or(0, |l| l.limited())
    }

    pub fn summary(&self) -> Summary {
        summary(&self.app)
    }

    /// Stops accepting, lets in-flight requests finish (up to 10 s), then returns.
    pub async fn shutdown(self) {
        // The server may already have stopped on its own; then there is no one to tell.
        let _ = self.stop.send(());
        if let Ok(Err(err)) = self.task.await {
            tracing::warn!(error = %err, "double: server ended with an error");
        }
    }
}
