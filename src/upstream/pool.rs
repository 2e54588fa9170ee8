//! The keep-alive connections of one upstream: a small pool of hyper's own connections.
//!
//! payguard used hyper-util's legacy `Client`, and callgrind put its pool at 14,000
//! instructions per pass-through GET, more than half of what relaying the request costs
//! (`bench/overhead/floor.rs` measures both ways). That client is general: it keys its pool
//! by origin with a hashed map, races a new connection against each checkout, and spawns a
//! task for every request to put the connection back once the answer is read. payguard's
//! upstream is one origin, known in advance, so none of that is needed:
//!
//! - idle HTTP/1 connections wait on a stack (the most recently used first: its socket and
//!   TLS state are the likeliest to be warm and still open on the provider's side);
//! - a connection goes back to the stack when its answer's body has been read to the end
//!   ([`super::body::Returning`]), by the task reading it; an answer abandoned half way drops
//!   its connection, which hyper then closes (HTTP/1 cannot reuse it);
//! - an HTTP/2 connection (when ALPN chooses h2) is one shared sender, cloned per request;
//! - idle connections older than `pool_idle_timeout` are closed by a reaper task, and never
//!   more than `pool_max_idle_per_host` wait.
//!
//! Connecting (DNS, TCP, TLS and ALPN) stays hyper-rustls' and hyper-util's connector.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::Uri;
use hyper::client::conn::{http1, http2};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;
use tower::ServiceExt;

use super::body::WatchedBody;

pub(super) type H1 = http1::SendRequest<WatchedBody>;
type H2 = http2::SendRequest<WatchedBody>;

/// A connection ready for one request.
pub(super) enum Conn {
    /// Taken from the pool or new; `reused` when it served a request before.
    H1 {
        sender: H1,
        reused: bool,
    },
    H2(H2),
}

/// Why no connection could be had: nothing of the request was sent.
#[derive(Debug)]
pub(super) struct ConnectError(pub String);

pub(super) struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority/`, what the connector dials.
    origin: Uri,
    idle: Mutex<Vec<Idle>>,
    h2: Mutex<Option<H2>>,
    max_idle: usize,
    idle_timeout: Duration,
    /// Whether the reaper runs; it starts with the first connection (inside the runtime).
    reaping: std::sync::atomic::AtomicBool,
}

struct Idle {
    sender: H1,
    since: Instant,
}

impl Pool {
    pub(super) fn new(
        connector: HttpsConnector<HttpConnector>,
        origin: Uri,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Pool {
        Pool {
            connector,
            origin,
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(None),
            max_idle,
            idle_timeout,
            reaping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// An open connection: the shared HTTP/2 one, the most recent idle HTTP/1 one that is
    /// still open, or a new one.
    pub(super) async fn checkout(self: &Arc<Self>) -> Result<Conn, ConnectError> {
        if let Some(mut h2) = self.shared_h2() {
            if h2.ready().await.is_ok() {
                return Ok(Conn::H2(h2));
            }
            self.forget_h2();
        }
        while let Some(mut sender) = self.pop_idle() {
            // Put back when its answer was read, it is ready at once or as soon as its
            // connection task has seen that answer's end; an error means the provider closed it.
            if sender.ready().await.is_ok() {
                return Ok(Conn::H1 {
                    sender,
                    reused: true,
                });
            }
        }
        // Boxed: connecting (DNS, TCP, TLS) is a future of several kilobytes, and held inline
        // it would be moved with every request's future although most never connect.
        Box::pin(self.connect()).await
    }

    /// A fresh connection, never one from the pool: for the one re-send of a request a
    /// pooled connection closed under before taking it.
    pub(super) async fn connect(self: &Arc<Self>) -> Result<Conn, ConnectError> {
        self.start_reaper();
        let failed = |e: &dyn std::fmt::Display| ConnectError(e.to_string());
        let io = self
            .connector
            .clone()
            .oneshot(self.origin.clone())
            .await
            .map_err(|e| ConnectError(super::error_chain(&*e)))?;
        if io.connected().is_negotiated_h2() {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(|e| failed(&e))?;
            tokio::spawn(connection);
            if let Ok(mut shared) = self.h2.lock() {
                *shared = Some(sender.clone());
            }
            return Ok(Conn::H2(sender));
        }
        let (sender, connection) = http1::handshake(io).await.map_err(|e| failed(&e))?;
        // Ends when the connection closes: the provider hung up, an answer was abandoned,
        // or its sender was dropped (from the pool, or by the reaper) while it was idle.
        tokio::spawn(connection);
        Ok(Conn::H1 {
            sender,
            reused: false,
        })
    }

    /// Takes back an HTTP/1 connection whose answer was read to the end.
    pub(super) fn give_back(&self, sender: H1) {
        if sender.is_closed() {
            return;
        }
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        if idle.len() < self.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// The number of idle HTTP/1 connections (for tests).
    #[cfg(test)]
    pub(super) fn idle(&self) -> usize {
        self.idle.lock().map_or(0, |idle| idle.len())
    }

    fn pop_idle(&self) -> Option<H1> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(entry) = idle.pop() {
            if !entry.sender.is_closed() && entry.since.elapsed() < self.idle_timeout {
                return Some(entry.sender);
            }
        }
        None
    }

    fn shared_h2(&self) -> Option<H2> {
        let shared = self.h2.lock().ok()?;
        shared.as_ref().filter(|h2| !h2.is_closed()).cloned()
    }

    fn forget_h2(&self) {
        if let Ok(mut shared) = self.h2.lock() {
            *shared = None;
        }
    }

    /// Drops the idle connections that waited too long or were closed by the provider.
    fn reap(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            let timeout = self.idle_timeout;
            idle.retain(|entry| !entry.sender.is_closed() && entry.since.elapsed() < timeout);
        }
    }

    /// Starts the task that closes idle connections on time, once per pool. It holds the
    /// pool weakly, so it ends with the pool (a reload that replaced the upstream).
    fn start_reaper(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.reaping.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool: Weak<Pool> = Arc::downgrade(self);
        // Often enough that an idle connection outlives its timeout by at most a quarter.
        let every = (self.idle_timeout / 4).max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match pool.upgrade() {
                    Some(pool) => pool.reap(),
                    None => return,
                }
            }
        });
    }
}
