//! Shared test harness: payguard in-process on ephemeral ports, and a small HTTP client.
//!
//! Every test gets its own proxy on `127.0.0.1:0` with its own metrics registry, so tests run
//! in parallel without sharing ports or counters.
#![allow(dead_code)] // each test binary uses a different subset

pub mod chaos;
pub mod differential;
pub mod faultproxy;
pub mod postgres;
pub mod process;
pub mod raw;
pub mod redis;
pub mod replica_scenarios;
pub mod replicas;
pub mod resolver;
pub mod sdk;

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use payguard::config::Config;
use payguard::server::Server;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running in-process payguard.
pub struct Proxy {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Proxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Begins a graceful shutdown and returns the server task, to await its drain.
    pub fn begin_shutdown(mut self) -> JoinHandle<anyhow::Result<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task
    }
}

/// A minimal config forwarding to `upstream`, with `extra` TOML appended (routes, limits...).
pub fn config_toml(upstream: &str, extra: &str) -> String {
    // In-memory records unless the test says otherwise: parallel tests must not share a file.
    let store = if extra.contains("[idempotency]") {
        ""
    } else {
        "[idempotency]\nstore = \"memory\"\n"
    };
    format!("[upstream]\nurl = \"{upstream}\"\n[log]\nlevel = \"warn\"\n{store}{extra}\n")
}

/// Starts payguard from a config text, on ephemeral ports whatever the config says.
pub async fn start_proxy(toml: &str) -> Proxy {
    let config = Config::parse(toml, "test config", None).expect("test config is valid");
    start_proxy_with(&config).await
}

pub async fn start_proxy_with(config: &Config) -> Proxy {
    start(config, None).await
}

/// Starts payguard from a config file it then watches for reloads.
pub async fn start_proxy_watching(path: &std::path::Path) -> Proxy {
    let config = Config::load(path).expect("test config is valid");
    start(&config, Some(path)).await
}

async fn start(config: &Config, watch: Option<&std::path::Path>) -> Proxy {
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut server = Server::with_listeners(config, proxy, admin).expect("server builds");
    if let Some(path) = watch {
        server = server.watch_config(path.to_owned(), config);
    }
    launch(server)
}

/// As [`start_proxy_with`], with the admin listener bound to `admin` (e.g. `0.0.0.0:0`, not
/// loopback); `Proxy::admin` still names it by 127.0.0.1, for clients on this machine.
pub async fn start_proxy_admin_on(config: &Config, admin: &str) -> Proxy {
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind(admin).await.unwrap();
    let server = Server::with_listeners(config, proxy, admin).expect("server builds");
    let mut running = launch(server);
    running.admin = SocketAddr::from(([127, 0, 0, 1], running.admin.port()));
    running
}

fn launch(server: Server) -> Proxy {
    let (addr, admin) = (server.proxy_addr(), server.admin_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Proxy {
        addr,
        admin,
        stop: Some(stop),
        task,
    }
}

/// A plain HTTP/1.1 client with keep-alive, as an app's SDK would use.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A response read in full, and the sender every test uses: the double's one test client.
pub use payguard_double::client::{Reply, send};

pub async fn get(url: &str) -> Reply {
    send(Request::get(url).body(Full::default()).unwrap()).await
}

/// A Stripe-style form POST with an API key.
pub async fn post_form(url: &str, form: &str) -> Reply {
    let request = Request::post(url)
        .header("authorization", "Bearer sk_test_payguard")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap();
    send(request).await
}

/// Repeats `attempt` while its answer tells the app to try again with the same key, as an
/// SDK would, for up to 20 s; returns the last reply. Those answers are 409 (another request
/// holds the key: a killed process's claim until its lease runs out, or the provider still
/// running the first request) and payguard's "outcome unknown" (for instance the provider's
/// 409 passed on once payguard's own retries ran out).
pub async fn until_settled<F, Fut>(mut attempt: F) -> Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let started = std::time::Instant::now();
    loop {
        let reply = attempt().await;
        let unknown = reply.status.is_server_error()
            && reply.json()["error"]["code"] == "payguard_outcome_unknown";
        let again = reply.status == 409 || unknown;
        if !again || started.elapsed() > std::time::Duration::from_secs(20) {
            return reply;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// Asserts a response is payguard's "outcome unknown" answer to a keyed request that may have
/// executed: 502 (or 504 when its last doubt was a timeout, per `statuses`), marked so, and
/// telling the SDK to retry under the same key.
pub fn assert_outcome_unknown(reply: &Reply, statuses: &[u16]) {
    assert!(
        statuses.contains(&reply.status.as_u16()),
        "{}: {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    assert_payguard_error(reply, reply.status.as_u16(), "payguard_outcome_unknown");
    assert_eq!(reply.headers["payguard-outcome"], "unknown");
    assert_eq!(reply.headers["stripe-should-retry"], "true");
}

/// Asserts a response is one payguard made itself, Stripe-shaped, with the given code.
pub fn assert_payguard_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(
        reply.status.as_u16(),
        status,
        "body: {}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply
            .headers
            .get("payguard-error")
            .map(|v| v.to_str().unwrap()),
        Some(code)
    );
    let json = reply.json();
    assert_eq!(json["error"]["code"], code);
    assert!(json["error"]["type"].is_string());
    assert!(json["error"]["message"].is_string());
}

/// A provider double failing `fault_rate` of its requests with the seed article's transient
/// mix (seeded), behind payguard running the shipped `config.toml` with time compressed 10x
/// (its store file in the returned directory): what the shipped-config tests run against.
#[allow(dead_code)]
pub async fn shipped_sidecar(
    fault_rate: f64,
    seed: u64,
) -> (payguard_double::DoubleHandle, Proxy, tempfile::TempDir) {
    let provider = payguard_double::spawn(payguard_double::DoubleConfig {
        record_requests: false,
        ..payguard_double::DoubleConfig::default()
    })
    .await
    .unwrap();
    let profile = payguard_double::Profile::transient(fault_rate, seed);
    provider.faults().set_profile(profile).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::shipped(&provider.url(), &dir.path().join("store.redb"))
        .unwrap()
        .time_compressed(10.0);
    let proxy = start_proxy_with(&config).await;
    (provider, proxy, dir)
}
