//! What an operator sees of the PostgreSQL store: the statement-latency histogram (by
//! operation only) in `/metrics`, linted by `promtool`, readiness while the database answers,
//! and TLS that verifies the server's certificate when the URL asks for it.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use payguard::idempotency::Store;
use payguard::idempotency::postgres::{PgPool, PostgresStore};
use payguard_double::{self as double, DoubleConfig};
use support::postgres::{TestDb, spec};
use support::*;

fn keyed(url: &str) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("authorization", "Bearer sk_test_pg_metrics")
        .header("idempotency-key", "pg-metrics-1")
        .body(Full::new(Bytes::from_static(b"amount=1&currency=usd")))
        .unwrap()
}

#[tokio::test]
async fn statement_latency_is_exported_by_operation_and_passes_promtool() {
    let db = TestDb::create();
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let extra = format!(
        "[postgres]\nurl = \"{}\"\n[idempotency]\nstore = \"postgres\"\n",
        db.url()
    );
    let proxy = start_proxy(&config_toml(&provider.url(), &extra)).await;
    let url = proxy.url("/v1/payment_intents");
    assert_eq!(send(keyed(&url)).await.status, 200);
    let replay = send(keyed(&url)).await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(provider.requests_seen(), 1);

    let text = String::from_utf8(get(&proxy.admin_url("/metrics")).await.body.to_vec()).unwrap();
    let family = "payguard_postgres_statement_duration_seconds";
    for operation in ["claim", "complete", "read", "journal_update"] {
        let series = format!("{family}_count{{operation=\"{operation}\"}} ");
        let count: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str())?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        assert!(count >= 1.0, "{series}{count}");
    }
    // The operation is the only label.
    assert!(
        text.lines()
            .filter(|l| l.starts_with(family))
            .all(|l| !l.contains(',') || l.contains("le=")),
        "{text}"
    );

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (tests/run.sh installs prometheus)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && report.trim().is_empty(), "{report}");

    let ready = get(&proxy.admin_url("/readyz")).await;
    assert_eq!(
        (ready.status.as_u16(), &ready.body[..]),
        (200, &b"ready\n"[..])
    );
}

#[tokio::test]
async fn sslmode_require_speaks_tls_and_verifies_the_certificate() {
    // The machine's server has TLS on with Debian's self-signed "snakeoil" certificate, which
    // no public root vouches for: the handshake happens, and verification refuses it.
    let db = TestDb::create();
    let url = format!("{}?sslmode=require", db.url());
    let mut tls = spec(&url, "payguard");
    tls.tls = true;
    let store = PostgresStore::new(std::sync::Arc::new(PgPool::new(&tls, None).unwrap()), 10);
    let err = store.count().await.unwrap_err().to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // The same database without TLS answers: the refusal was the certificate's.
    let plain = PostgresStore::new(db.pool("payguard"), 10);
    assert_eq!(plain.count().await.unwrap(), 0);
}
