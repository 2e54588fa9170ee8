//! The admin listener (`/metrics`, health, `/stats`, `/unresolved`): served apart from the
//! proxy's, with the same slow-client protection, until the server stops it.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::{connection_builder, serve_connection};
use crate::admin::access::Access;
use crate::admin::{self, Readiness};
use crate::reload::LiveState;

/// The admin listener, usually reachable from the whole pod network: it gets the same
/// slow-client protection as the proxy listener.
pub(super) async fn serve(
    listener: TcpListener,
    header_read_timeout: Duration,
    (state, ready, access): (LiveState, Readiness, Arc<Access>),
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let builder = connection_builder(header_read_timeout);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            _ = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (state, ready, access) = (state.clone(), ready.clone(), access.clone());
        let requests = Arc::new(Notify::new());
        let service = hyper::service::service_fn({
            let requests = requests.clone();
            move |request| {
                requests.notify_one();
                admin::serve(request, state.clone(), ready.clone(), access.clone())
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        connections.spawn(serve_connection(connection, requests, header_read_timeout));
    }
    connections.shutdown().await;
}
