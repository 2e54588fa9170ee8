//! Listeners and connection lifecycles: accept, serve, and drain on shutdown.
//!
//! [`Server::run`] takes its shutdown signal as a future, as mini-redis does, so tests start
//! the whole sidecar in-process on `127.0.0.1:0` and stop it when they like; `main` passes
//! SIGTERM/SIGINT. On shutdown payguard stops accepting, reports not-ready, lets in-flight
//! requests finish up to the drain timeout, and only then returns.
//!
//! A client must send each request head within `server.header_read_timeout`. hyper enforces
//! that for HTTP/1 once it knows the connection is HTTP/1; before that, while the auto builder
//! reads the first bytes to tell HTTP/1 from HTTP/2, nothing does, and a client that connects
//! and sends nothing (or half an HTTP/2 preface) would hold its connection for ever. So each
//! connection must also start its first request within the same time ([`serve_connection`]).

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use http::Response;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

mod admin_listener;
mod overflow;

use crate::admin::Readiness;
use crate::admin::access::Access;
use crate::background::Background;
use crate::config::Config;
use crate::error::ProxyError;
use crate::proxy::{ProxyBody, ProxyState};
use crate::reload::LiveState;

pub struct Server {
    proxy: TcpListener,
    admin: TcpListener,
    proxy_addr: SocketAddr,
    admin_addr: SocketAddr,
    drain_timeout: Duration,
    header_read_timeout: Duration,
    max_connections: usize,
    prune_interval: Duration,
    state: LiveState,
    ready: Readiness,
    /// Who may write through the admin listener, decided from `[admin]` and where it is bound.
    access: Arc<Access>,
    /// The config file to watch for reloads, and the config it held at start.
    watch: Option<(PathBuf, Config)>,
}

impl Server {
    /// Binds the addresses the config names.
    pub async fn bind(config: &Config) -> anyhow::Result<Server> {
        let proxy = TcpListener::bind(config.proxy_addr)
            .await
            .with_context(|| format!("cannot listen on {} (listen.proxy)", config.proxy_addr))?;
        let admin = TcpListener::bind(config.admin_addr)
            .await
            .with_context(|| format!("cannot listen on {} (listen.admin)", config.admin_addr))?;
        Server::with_listeners(config, proxy, admin)
    }

    /// Uses listeners bound by the caller, e.g. on port 0 in tests.
    pub fn with_listeners(
        config: &Config,
        proxy: TcpListener,
        admin: TcpListener,
    ) -> anyhow::Result<Server> {
        let admin_addr = admin.local_addr()?;
        Ok(Server {
            proxy_addr: proxy.local_addr()?,
            admin_addr,
            access: Arc::new(Access::new(&config.admin, admin_addr)?),
            proxy,
            admin,
            drain_timeout: config.drain_timeout,
            header_read_timeout: config.header_read_timeout,
            max_connections: config.load.max_connections,
            prune_interval: config.idempotency.prune_interval,
            state: Arc::new(ArcSwap::from_pointee(ProxyState::new(config)?)),
            ready: Readiness::default(),
            watch: None,
        })
    }

    /// Reloads the config from `path` on SIGHUP and when the file changes (see
    /// [`crate::reload`]). `config` is what was loaded from it at start.
    pub fn watch_config(mut self, path: PathBuf, config: &Config) -> Server {
        self.watch = Some((path, config.clone()));
        self
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let builder = connection_builder(self.header_read_timeout);
        let graceful = GracefulShutdown::new();
        // Started before "serving" is logged: a SIGHUP must never find no handler.
        let mut background = Background::start(&self.state, self.prune_interval, self.watch);
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel();
        let admin = (self.state.clone(), self.ready.clone(), self.access.clone());
        let admin_task = tokio::spawn(admin_listener::serve(
            self.admin,
            self.header_read_timeout,
            admin,
            admin_stopped,
        ));
        // Every connection task is kept, so `run` returns only once all of them are gone and
        // nothing still holds the state (and the store file behind it).
        let mut connections = JoinSet::new();
        // Connections refused at the bound, each answered and closed within a second.
        let mut overflow = JoinSet::new();
        self.ready.set(true);
        tracing::info!("{}", self.access.describe());
        tracing::info!(proxy = %self.proxy_addr, admin = %self.admin_addr, "payguard is serving");

        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                () = &mut shutdown => break,
                // Reap finished connections so the set holds only live ones.
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                Some(_) = overflow.join_next(), if !overflow.is_empty() => continue,
                accepted = self.proxy.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Usually out of file descriptors: pause instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Some(local) = prepare(&stream) else {
                continue;
            };
            if connections.len() >= self.max_connections {
                // At the bound: this one gets a 503 and is closed; the live ones keep theirs.
                overflow.spawn(overflow::refuse(stream, self.state.load_full()));
                continue;
            }
            connections.spawn(proxy_connection(
                &self.state,
                stream,
                local,
                &builder,
                &graceful,
                self.header_read_timeout,
            ));
        }

        self.ready.set(false);
        drop(self.proxy);
        // No re-sends while draining: a re-send cut off now stays pending in the journal, and
        // the next process picks it up.
        background.stop_resending().await;
        tracing::info!(timeout = ?self.drain_timeout, "shutting down: draining in-flight requests");
        if tokio::time::timeout(self.drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("drain timeout reached; closing the remaining connections");
        } else {
            tracing::info!("drained");
        }
        // Close what is left and wait for every task to go: they hold the state, and with it
        // the embedded store's file, which a restart in the same process must reopen.
        connections.shutdown().await;
        overflow.shutdown().await;
        let _ = stop_admin.send(());
        let _ = admin_task.await;
        background.stop().await;
        Ok(())
    }
}

/// The HTTP/1 + HTTP/2 connection builder of both listeners, with the head timeout armed
/// (hyper ignores it without a timer).
fn connection_builder(header_read_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder
}

/// One proxy connection, ready to spawn: each request is handled with the state current when
/// it arrives (and keeps it through any reload), a panic becomes payguard's own 500, and the
/// connection closes if no request starts within `first_within`.
fn proxy_connection(
    state: &LiveState,
    stream: TcpStream,
    local: SocketAddr,
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    first_within: Duration,
) -> impl Future<Output = ()> + Send + 'static {
    // Told of every request, so the connection's first can be awaited with a timeout.
    let requests = Arc::new(Notify::new());
    let service = ServiceBuilder::new()
        .layer(CatchPanicLayer::custom(panic_response))
        .service_fn({
            let (state, requests) = (state.clone(), requests.clone());
            move |request| {
                requests.notify_one();
                let state = state.load_full();
                async move { Ok::<_, Infallible>(state.handle(request, local).await) }
            }
        });
    let connection = builder
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .into_owned();
    serve_connection(graceful.watch(connection), requests, first_within)
}

/// Drives one client connection, closing it if no request starts within `first_within`.
async fn serve_connection<E: std::fmt::Display>(
    connection: impl Future<Output = Result<(), E>>,
    requests: Arc<Notify>,
    first_within: Duration,
) {
    tokio::pin!(connection);
    let ended = tokio::select! {
        ended = &mut connection => ended,
        // Once a request has arrived this branch is disabled and the connection runs on;
        // hyper's own header timeout covers every later HTTP/1 request head.
        Err(_) = tokio::time::timeout(first_within, requests.notified()) => {
            tracing::debug!(timeout = ?first_within, "no request on a new connection in time; closing it");
            return;
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// Per-connection socket setup; returns the local address requests arrived on.
fn prepare(stream: &TcpStream) -> Option<SocketAddr> {
    // Payment calls are small request/response exchanges: Nagle only adds latency.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
    stream.local_addr().ok()
}

/// A panic in the request path becomes payguard's own 500 instead of a dropped connection.
fn panic_response(_panic: Box<dyn Any + Send + 'static>) -> Response<ProxyBody> {
    tracing::error!("request handler panicked");
    // The route, and so its provider's error shape, is lost with the panic: Stripe's, the
    // default profile's, is the best guess.
    ProxyError::Internal.into_response(&crate::profile::STRIPE)
}
