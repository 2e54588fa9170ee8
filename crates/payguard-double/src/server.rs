//! Sockets: the accept loop, optional TLS, hyper connections, graceful drain, and real resets.
//!
//! A fault that "resets the connection" must look to the client exactly like a provider or
//! network dropping it: a TCP RST, not a clean close it could mistake for the end of a reply.
//! The service cannot reach the socket hyper owns, so each connection gets a [`ConnControl`]:
//! the service (or a body) flags it, the connection task then drops the hyper connection, and
//! the innermost I/O wrapper sets `SO_LINGER` to zero as it is dropped, which makes the kernel
//! send RST. Lingering is only switched on for resets: a zero linger on every socket could turn
//! an ordinary close into a reset that discards the end of a reply still in the send buffer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::app::App;

/// How long in-flight requests get to finish once shutdown begins, before they are cut off.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Lets a request's handling reset the connection it arrived on.
#[derive(Debug, Default)]
pub(crate) struct ConnControl {
    reset: AtomicBool,
    notify: Notify,
}

impl ConnControl {
    /// Asks for the connection to be reset. The caller should then stop producing output.
    pub(crate) fn reset(&self) {
        self.reset.store(true, Ordering::SeqCst);
        // notify_one keeps a permit if the connection task is not waiting yet: no lost wakeup.
        self.notify.notify_one();
    }

    pub(crate) fn is_reset(&self) -> bool {
        self.reset.load(Ordering::SeqCst)
    }
}

/// The TCP stream, made to close with RST if its connection was flagged for a reset.
struct ResetOnDrop {
    stream: TcpStream,
    control: Arc<ConnControl>,
}

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if self.control.is_reset() {
            // A zero linger never blocks (unlike other linger values), and it is what turns
            // the close that follows into a RST. If it fails the close is merely clean.
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ResetOnDrop {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResetOnDrop {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Accepts until `shutdown` completes, then drains connections for up to [`DRAIN_TIMEOUT`].
pub(crate) async fn run(
    listener: TcpListener,
    app: Arc<App>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (drain, draining) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let task = connection(stream, Arc::clone(&app), tls.clone(), draining.clone());
                    connections.spawn(task);
                }
                // Accept errors are per connection (aborted handshakes) or transient (out of
                // file descriptors): keep serving, after a pause so a persistent one cannot spin.
                Err(err) => {
                    tracing::warn!(error = %err, "double: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            // Reap finished connections so the set only holds live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = drain.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::warn!(
            left = connections.len(),
            "double: connections cut off after the drain timeout"
        );
    }
    // Dropping the set aborts whatever is left.
    Ok(())
}

async fn connection(
    stream: TcpStream,
    app: Arc<App>,
    tls: Option<TlsAcceptor>,
    draining: watch::Receiver<bool>,
) {
    // Small replies go out at once rather than waiting on Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let control = Arc::new(ConnControl::default());
    let io = ResetOnDrop {
        stream,
        control: Arc::clone(&control),
    };
    match tls {
        None => serve(TokioIo::new(io), app, control, draining).await,
        Some(acceptor) => match acceptor.accept(io).await {
            Ok(tls) => serve(TokioIo::new(tls), app, control, draining).await,
            Err(err) => tracing::debug!(error = %err, "double: TLS handshake failed"),
        },
    }
}

async fn serve<I>(
    io: I,
    app: Arc<App>,
    control: Arc<ConnControl>,
    mut draining: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let for_service = Arc::clone(&control);
    let service =
        service_fn(move |request| Arc::clone(&app).handle(request, Arc::clone(&for_service)));
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut drain_started = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "double: connection ended with an error");
                }
                return;
            }
            // Returning drops `conn`, and with it the socket, whose zero linger sends the RST.
            () = control.notify.notified() => return,
            // A closed channel also means shutdown.
            _ = draining.changed(), if !drain_started => {
                drain_started = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
