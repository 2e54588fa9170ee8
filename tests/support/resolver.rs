//! Helpers for the resolver's tests: keyed payment POSTs and waiting on `/unresolved`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

/// Fast resolver rounds, deterministic jitter and quick retries, for every resolver test. Their
/// journals hold throwaway test payloads, so they accept them in clear where the store would
/// keep them on disk (the rule itself is tested in `src/config/payloads.rs`).
pub const FAST: &str = "[resolver]\ninterval = \"20ms\"\nbase_delay = \"50ms\"\nmax_delay = \"200ms\"\n\
     allow_plaintext_journal = true\n\
     [retry]\nmax_attempts = 2\nbase_delay = \"5ms\"\nmax_delay = \"10ms\"\njitter_seed = 1\n\
     attempt_timeout = \"1s\"\ndeadline = \"2s\"\n";

/// The `[idempotency]` keys that let the resolver re-send a keyed payment on the default
/// route: a duplicate window across keys, so that an app paying again under a new key joins
/// the entry instead of paying twice. Without them payguard only records and reports.
pub const RESENDS: &str = "dedup_window = \"1h\"\ndedup_across_keys = true\n";

/// [`FAST`] with the memory store and [`RESENDS`]: what most resolver tests run.
pub fn resolving(extra: &str) -> String {
    format!("[idempotency]\nstore = \"memory\"\n{RESENDS}{FAST}{extra}")
}

/// A payment intent POST with an API key and an idempotency key, as an SDK sends it.
pub fn payment(url: &str, key: &str, form: &str) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("authorization", "Bearer sk_test_resolver")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap()
}

/// The `/unresolved` rows of the admin listener at `admin` (host:port).
pub async fn rows(admin: &str) -> Vec<serde_json::Value> {
    let reply = super::get(&format!("http://{admin}/unresolved")).await;
    assert_eq!(reply.status, 200);
    reply.json()["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The state of the row for idempotency key `key`; panics when it is not listed.
pub async fn state(admin: &str, key: &str) -> String {
    let rows = rows(admin).await;
    let row = rows.iter().find(|r| r["key"] == key);
    let row = row.unwrap_or_else(|| panic!("{key} is not listed"));
    row["state"].as_str().unwrap_or_default().to_owned()
}

/// An empty POST to `path` on the admin listener at `admin`, with this `Authorization`.
pub async fn admin_post(admin: &str, path: &str, authorization: Option<&str>) -> super::Reply {
    let mut request = Request::post(format!("http://{admin}{path}"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    super::send(request.body(Full::new(Bytes::new())).unwrap()).await
}

/// The row for idempotency key `key`, once it is in `state`; panics after 15 s.
pub async fn wait_for(admin: &str, key: &str, state: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let rows = rows(admin).await;
        let row = rows.into_iter().find(|r| r["key"] == key);
        match row {
            Some(row) if row["state"] == state => return row,
            other if started.elapsed() > Duration::from_secs(15) => {
                panic!("{key} never became {state}: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The value of one metric series in a Prometheus text exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}
