//! `kill -9` of the real payguard binary at the three moments that matter to "exactly once",
//! over a stream of payments and refunds:
//!
//! 1. `after_claim`: the key is claimed in the embedded store, nothing sent upstream yet;
//! 2. `after_send`: the request was sent and executed by the provider, whose reply is still on
//!    its way (the double holds every reply for [`REPLY_DELAY`]);
//! 3. `after_response`: the response is in payguard's hands, not yet recorded under the key.
//!
//! Points 1 and 3 are fail points compiled in with `--features failpoints` and armed with
//! `PAYGUARD_CRASH_AT`: the process announces the point on stderr and freezes there until the
//! SIGKILL. Point 2 needs no hook: the harness kills as soon as the provider's ledger shows the
//! request's effect. After each kill payguard restarts on the same store and the client
//! resends with its key until it gets an answer. At the end the ledger must hold every
//! operation exactly once: none twice, none lost.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use payguard::crashpoints::{AFTER_CLAIM, AFTER_RESPONSE, REACHED};
use payguard_double::{self as double, DoubleConfig, DoubleHandle, EffectKind};
use support::process::{Process, spawn_payguard_with};
use support::*;
use tokio::sync::mpsc;

/// How long the double holds each reply after executing: the window for point 2.
const REPLY_DELAY: Duration = Duration::from_millis(150);
/// Point 2 has no fail point; it is timed from the ledger.
const AFTER_SEND: &str = "after_send";
const POINTS: [&str; 3] = [AFTER_CLAIM, AFTER_SEND, AFTER_RESPONSE];
/// Payments, each followed by a refund of it: twice as many operations.
const PAYMENTS: usize = 10;

enum Op {
    Pay(usize),
    Refund(usize, String),
}

impl Op {
    fn key(&self) -> String {
        match self {
            Op::Pay(i) => format!("crash-pay-{i}"),
            Op::Refund(i, _) => format!("crash-refund-{i}"),
        }
    }

    fn request(&self, proxy: &str) -> http::Request<Full<Bytes>> {
        let (path, form) = match self {
            Op::Pay(i) => (
                "/v1/payment_intents",
                format!(
                    "amount={}&currency=usd&confirm=true&metadata[order_id]=pay-{i}",
                    100 + i
                ),
            ),
            Op::Refund(i, intent) => (
                "/v1/refunds",
                format!("payment_intent={intent}&metadata[order_id]=refund-{i}"),
            ),
        };
        http::Request::post(format!("http://{proxy}{path}"))
            .header("authorization", "Bearer sk_test_crash_points")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("idempotency-key", self.key())
            .body(Full::new(Bytes::from(form)))
            .unwrap()
    }
}

/// The running payguard, the point it is armed at, and its log lines as they come.
struct Running {
    process: Process,
    armed: Option<&'static str>,
    lines: mpsc::UnboundedReceiver<String>,
}

async fn start(config: &Path, armed: Option<&'static str>) -> Running {
    let (tap, lines) = mpsc::unbounded_channel();
    let env: Vec<(&str, &str)> = armed
        .map(|p| ("PAYGUARD_CRASH_AT", p))
        .into_iter()
        .collect();
    let process = spawn_payguard_with(config, &env, Some(tap)).await;
    Running {
        process,
        armed,
        lines,
    }
}

/// Waits until the request is at `point`, then SIGKILLs payguard.
async fn kill_at(running: &mut Running, point: &str, provider: &DoubleHandle, key: &str) {
    let reached = async {
        if point == AFTER_SEND {
            // Executed by the provider (its effect is in the ledger), reply not yet delivered.
            let executed = || {
                let ledger = provider.ledger().entries();
                ledger
                    .iter()
                    .any(|e| e.idempotency_key.as_deref() == Some(key))
            };
            while !executed() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        } else {
            let expected = format!("{REACHED} {point}");
            while let Some(line) = running.lines.recv().await {
                if line.contains(&expected) {
                    return;
                }
            }
            panic!("payguard exited before reaching {point}");
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reached)
        .await
        .unwrap_or_else(|_| panic!("{key} never reached {point}"));
    running.process.child.kill().await.unwrap(); // SIGKILL
}

/// Sends `op` until payguard answers with something other than 409 (the dead process's claim
/// holds the key until its lease runs out). Returns the final reply and how many 409s came
/// before it.
async fn send_until_answered(op: &Op, proxy: &str) -> (Reply, usize) {
    let started = Instant::now();
    let mut in_use = 0;
    loop {
        let response = client().request(op.request(proxy)).await;
        if let Ok(response) = response {
            let (parts, body) = response.into_parts();
            let body = http_body_util::BodyExt::collect(body)
                .await
                .unwrap()
                .to_bytes();
            if parts.status != 409 {
                let reply = Reply {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                };
                return (reply, in_use);
            }
            in_use += 1;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} still unanswered after 30s",
            op.key()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_and_refunds_survive_kill_9_at_every_crash_point() {
    let provider = double::spawn(DoubleConfig {
        latency: REPLY_DELAY,
        ..DoubleConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    // A short deadline keeps the dead process's lease (deadline + 2s margin) short.
    let extra = "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
                 [rate_limit]\nenabled = false\n[breaker]\nenabled = false\n\
                 [retry]\ndeadline = \"1s\"\nattempt_timeout = \"1s\"\nbase_delay = \"20ms\"\n\
                 [idempotency]\nstore = \"embedded\"\npath = \"store.redb\"\ncoalesce_wait = \"100ms\"";
    let toml = config_toml(&provider.url(), extra).replace("level = \"warn\"", "level = \"info\"");
    std::fs::write(&config, toml).unwrap();

    let mut running = start(&config, None).await;
    let (mut kills, mut intents) = ([0usize; 3], Vec::<String>::new());
    let (mut op_count, mut in_use) = (0, 0);
    for i in 0..PAYMENTS {
        for refund in [false, true] {
            let op = match refund {
                false => Op::Pay(i),
                true => Op::Refund(i, intents[i].clone()),
            };
            // Every fourth operation runs undisturbed; the others cycle through the points.
            let point = (op_count % 4 != 3).then(|| POINTS[op_count % 3]);
            op_count += 1;
            let armed = point.filter(|p| *p != AFTER_SEND);
            if running.armed != armed {
                running.process.child.kill().await.unwrap();
                running = start(&config, armed).await;
            }
            if let Some(point) = point {
                let in_flight = tokio::spawn(client().request(op.request(&running.process.proxy)));
                kill_at(&mut running, point, &provider, &op.key()).await;
                let lost = in_flight.await.unwrap();
                assert!(
                    lost.is_err(),
                    "{}: the client saw its connection die",
                    op.key()
                );
                kills[POINTS.iter().position(|p| *p == point).unwrap()] += 1;
                running = start(&config, None).await;
            }
            let (reply, conflicts) = send_until_answered(&op, &running.process.proxy).await;
            in_use += conflicts;
            assert_eq!(
                reply.status,
                200,
                "{}: {}",
                op.key(),
                String::from_utf8_lossy(&reply.body)
            );
            if !refund {
                intents.push(reply.json()["id"].as_str().unwrap().to_owned());
            }
        }
    }

    let ledger = provider.ledger();
    let entries = ledger.entries();
    let count = |kind, order: &str| {
        entries
            .iter()
            .filter(|e| e.kind == kind && e.order_id.as_deref() == Some(order))
            .count()
    };
    let (mut duplicates, mut lost) = (0, 0);
    for i in 0..PAYMENTS {
        for (kind, order) in [
            (EffectKind::PaymentIntentCreated, format!("pay-{i}")),
            (EffectKind::Charge, format!("pay-{i}")),
            (EffectKind::RefundCreated, format!("refund-{i}")),
        ] {
            match count(kind, &order) {
                0 => lost += 1,
                1 => {}
                n => duplicates += n - 1,
            }
        }
    }
    println!(
        "crash points: {op_count} operations ({PAYMENTS} payments, {PAYMENTS} refunds), kills \
         after_claim={} after_send={} after_response={}, duplicates={duplicates} lost={lost}, \
         ledger effects={}, resends answered 409 (key still claimed)={in_use}",
        kills[0],
        kills[1],
        kills[2],
        entries.len()
    );
    assert!(
        kills.iter().all(|k| *k >= 4),
        "each point hit several times: {kills:?}"
    );
    assert_eq!((duplicates, lost), (0, 0), "{entries:?}");
    assert!(ledger.duplicates().is_empty(), "{:?}", ledger.duplicates());
    assert_eq!(entries.len(), 3 * PAYMENTS, "{entries:?}");
}
