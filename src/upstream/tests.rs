//! The pool's promises, against a real HTTP/1 server on an ephemeral port: connections are
//! reused once an answer is read, never while one is half read, never after the provider
//! closed them, and idle ones close on time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::{Upstream, UpstreamSpec};
use crate::retry::AttemptError;

/// A server counting the connections it accepted and those still open; with `close_after`
/// it ends each connection after that many answers, without telling the client.
struct Server {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
}

async fn server(body_len: usize, close_after: Option<usize>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let counters = (accepted.clone(), open.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counters.0.fetch_add(1, Ordering::SeqCst);
            counters.1.fetch_add(1, Ordering::SeqCst);
            let open = counters.1.clone();
            let served = Arc::new(AtomicUsize::new(0));
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    served.fetch_add(1, Ordering::SeqCst);
                    // Origin-form, and `Host` names this server: else an empty body, which
                    // the tests' length checks catch.
                    let host = request.headers().get(http::header::HOST);
                    let right = request.uri() == "/v1/charges"
                        && host.is_some_and(|h| h.as_bytes() == addr.to_string().as_bytes());
                    let body = Bytes::from(vec![b'x'; if right { body_len } else { 0 }]);
                    async move { Ok::<_, std::convert::Infallible>(Response::new(Full::new(body))) }
                });
                let connection =
                    http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                match close_after {
                    // Answers that many, then drops the socket as an idle server would.
                    Some(n) => {
                        let limited =
                            tokio::time::timeout(Duration::from_millis(50 * n as u64), connection);
                        let _ = limited.await;
                    }
                    None => {
                        let _ = connection.await;
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Server {
        addr,
        accepted,
        open,
    }
}

fn upstream(addr: std::net::SocketAddr, idle_timeout: Duration) -> Upstream {
    let spec = UpstreamSpec {
        name: "default".into(),
        scheme: http::uri::Scheme::HTTP,
        authority: addr.to_string().parse().unwrap(),
        extra_roots: Vec::new(),
        connect_timeout: Duration::from_secs(5),
        pool_idle_timeout: idle_timeout,
        pool_max_idle_per_host: 4,
        profile: &crate::profile::STRIPE,
        key_window: Duration::from_secs(3600),
        rate_limit: None,
        breaker: None,
    };
    Upstream::new(&spec).unwrap()
}

async fn get(upstream: &Upstream) -> Result<Response<super::UpstreamBody>, AttemptError> {
    // The authority is not the upstream's: only the path and query are sent, to its origin.
    let request = Request::get("http://127.0.0.1:8080/v1/charges")
        .body(Empty::<Bytes>::new())
        .unwrap();
    upstream.send(request, Duration::from_secs(5)).await
}

/// Waits (up to 5 s) until `done` holds.
async fn eventually(done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 5 s");
}

#[tokio::test]
async fn a_connection_is_reused_once_its_answer_is_read() {
    let server = server(300, None).await;
    let upstream = upstream(server.addr, Duration::from_secs(60));
    for _ in 0..5 {
        let response = get(&upstream).await.unwrap();
        assert_eq!(
            upstream.pool.idle(),
            0,
            "back in the pool before its body was read"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 300);
        assert_eq!(upstream.pool.idle(), 1);
    }
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_answer_dropped_half_read_takes_its_connection_with_it() {
    // Large enough that the body is not all read with the head.
    let server = server(4 << 20, None).await;
    let upstream = upstream(server.addr, Duration::from_secs(60));
    let mut body = get(&upstream).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    assert_eq!(upstream.pool.idle(), 0);
    eventually(|| server.open.load(Ordering::SeqCst) == 0).await;
    let response = get(&upstream).await.unwrap();
    assert_eq!(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .len(),
        4 << 20
    );
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_the_server_closed_is_not_used_again() {
    let server = server(10, Some(1)).await;
    let upstream = upstream(server.addr, Duration::from_secs(60));
    for round in 1..=3 {
        let response = get(&upstream).await.unwrap();
        response.into_body().collect().await.unwrap();
        // The server hangs up on the idle connection before the next request.
        eventually(|| server.open.load(Ordering::SeqCst) == 0).await;
        assert_eq!(server.accepted.load(Ordering::SeqCst), round);
    }
}

#[tokio::test]
async fn idle_connections_close_after_the_idle_timeout() {
    let server = server(10, None).await;
    let upstream = upstream(server.addr, Duration::from_millis(100));
    let response = get(&upstream).await.unwrap();
    response.into_body().collect().await.unwrap();
    assert_eq!(server.open.load(Ordering::SeqCst), 1);
    eventually(|| server.open.load(Ordering::SeqCst) == 0).await;
    assert_eq!(upstream.pool.idle(), 0);
}

#[tokio::test]
async fn no_server_means_not_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let upstream = upstream(addr, Duration::from_secs(60));
    match get(&upstream).await {
        Err(AttemptError::NotSent(_)) => {}
        other => panic!("expected NotSent, got {:?}", other.map(|r| r.status())),
    }
}
