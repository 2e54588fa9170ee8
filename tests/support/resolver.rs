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

/// Replica B's resolver (`b`) leaves alone a pending entry whose lease replica A's journal
/// (`a`, on the same shared backend) holds, and re-sends it, once, when A gives it back.
pub async fn a_held_entry_is_left_alone(
    provider: &payguard_double::DoubleHandle,
    b: &payguard::proxy::ProxyState,
    a: payguard::journal::Journal,
) {
    use payguard::journal::{Entry, Opening, Payload, State, Ticket, Verdict};
    use payguard::resolver::task;
    use payguard::route::DEFAULT_ROUTE;
    use payguard_double::EffectKind;

    let id = [7; 32];
    let headers = [
        ("authorization", "Bearer sk_test_held"),
        ("content-type", "application/x-www-form-urlencoded"),
        ("idempotency-key", "held-key"),
    ];
    let mut entry = Entry::new(
        DEFAULT_ROUTE.into(),
        "POST".into(),
        "/v1/payment_intents".into(),
        "held-key".into(),
        [1; 32],
        true,
    );
    // As a request its duplicate window covers leaves it: re-sendable until the window ends.
    entry.window_until = Some(a.now_ms() + 3_600_000);
    let opening = Opening {
        entry,
        payload: Some(Payload {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            body: b"amount=900&currency=usd".to_vec(),
        }),
        lease: Duration::from_secs(30),
    };
    let ticket = Ticket::new(a.clone(), id, opening);
    ticket.before_send().await;
    ticket.settle(Verdict::Unknown("lost".into()), 1, 0).await;

    // A's resolver holds it (mid-re-send): B's round skips it.
    assert!(a.lease(id, Duration::from_secs(30)).await.unwrap());
    task::round(b).await;
    assert_eq!(provider.requests_seen(), 0, "B sent nothing");
    let entry = b.journal().get(id).await.unwrap().unwrap();
    assert_eq!((entry.state.label(), entry.rounds), ("pending", 0));

    // Given back: B's next round re-sends it, once, and it is resolved.
    a.release(id).await.unwrap();
    task::round(b).await;
    assert_eq!(provider.requests_seen(), 1);
    assert_eq!(provider.ledger().count(EffectKind::PaymentIntentCreated), 1);
    let entry = a.get(id).await.unwrap().unwrap();
    assert_eq!(entry.state, State::Resolved { status: 200 });
    assert_eq!(entry.rounds, 1);
}
