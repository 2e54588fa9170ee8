//! Toxiproxy's toxics between payguard and the provider, from `noxious` (a Rust port of
//! Toxiproxy, used as a library: Toxiproxy itself is not installable here and the kernel has no
//! netem). Each test runs payments through one toxic and checks three things: no effect happens
//! twice, the app's answer comes within the deadline, and once the toxic is removed the app's
//! resend under the same key completes, with the provider's one effect.

mod support;

use std::time::Duration;

use bmrng::RequestSender;
use noxious::proxy::{ProxyConfig, ProxyRunner, Runner, Toxics};
use noxious::signal::{Close, Stop, Stopper};
use noxious::socket::TcpListener as NoxiousListener;
use noxious::toxic::{
    StreamDirection, Toxic, ToxicEvent, ToxicEventKind, ToxicEventResult, ToxicKind,
};
use payguard_double::{self as double, DoubleConfig, DoubleHandle};
use support::chaos::{charges, timed_payment};
use support::*;

const DEADLINE: Duration = Duration::from_secs(2);
/// Scheduling slack on a shared 2-core machine, beyond the deadline.
const SLACK: Duration = Duration::from_millis(750);

/// A noxious proxy in front of `upstream`, with its toxics switchable while it runs.
struct Toxiproxy {
    url: String,
    events: RequestSender<ToxicEvent, ToxicEventResult>,
    names: Vec<String>,
    _stop: Stopper,
}

impl Toxiproxy {
    async fn start(upstream: std::net::SocketAddr, toxics: Vec<Toxic>) -> Toxiproxy {
        // noxious binds by address and does not report the port it got: take a free one.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = free.local_addr().unwrap().to_string();
        drop(free);
        let config = ProxyConfig {
            name: "provider".into(),
            listen: listen.clone(),
            upstream: upstream.to_string(),
            enabled: true,
            rand_seed: Some(5),
        };
        let names = toxics.iter().map(|t| t.name.clone()).collect();
        let (upstream_toxics, downstream_toxics): (Vec<_>, Vec<_>) = toxics
            .into_iter()
            .partition(|t| t.direction == StreamDirection::Upstream);
        let initial = Toxics {
            upstream: upstream_toxics,
            downstream: downstream_toxics,
        };
        let (listener, info) = ProxyRunner::initialize_proxy::<NoxiousListener>(config, initial)
            .await
            .expect("noxious binds");
        let (events, receiver) = bmrng::channel(1);
        let (stop, stopper) = Stop::new();
        let (_close, closer) = Close::new();
        tokio::spawn(ProxyRunner::run_proxy(
            listener, info, receiver, stop, closer,
        ));
        Toxiproxy {
            url: format!("http://{listen}"),
            events,
            names,
            _stop: stopper,
        }
    }

    /// Removes every toxic, by name: noxious 1.0.4's `RemoveAllToxics` clears only the
    /// upstream direction.
    async fn clear(&self) {
        for name in &self.names {
            let event =
                ToxicEvent::new("provider".into(), ToxicEventKind::RemoveToxic(name.clone()));
            self.events
                .send_receive(event)
                .await
                .expect("noxious takes the event")
                .expect("toxic removed");
        }
    }
}

fn toxic(name: &str, kind: ToxicKind, direction: StreamDirection) -> Toxic {
    Toxic {
        kind,
        name: name.into(),
        toxicity: 1.0,
        direction,
    }
}

async fn setup(toxics: Vec<Toxic>) -> (DoubleHandle, Toxiproxy, Proxy) {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let noxious = Toxiproxy::start(provider.addr(), toxics).await;
    // A fresh connection per attempt: each meets the toxics in force when it opens.
    let toml = config_toml(
        &noxious.url,
        &format!(
            "[rate_limit]\nenabled = false\n[breaker]\nenabled = false\n\
             [retry]\ndeadline = \"{}ms\"\nattempt_timeout = \"600ms\"\n\
             base_delay = \"10ms\"\njitter_seed = 5\n",
            DEADLINE.as_millis()
        ),
    )
    .replace("[upstream]\n", "[upstream]\npool_max_idle_per_host = 0\n");
    let proxy = start_proxy(&toml).await;
    (provider, noxious, proxy)
}

async fn pay(proxy: &Proxy, order: &str) -> (Reply, Duration) {
    let (reply, took) = timed_payment(&proxy.url(""), &format!("key-{order}"), order).await;
    assert!(took < DEADLINE + SLACK, "{order}: answered after {took:?}");
    (reply, took)
}

/// Charges for `order`, after checking that nothing in the ledger happened twice.
/// Toxics that slow or reshape the traffic but lose nothing: every payment succeeds, once.
/// Returns the slowest answer.
async fn payments_pass_through(name: &str, toxics: Vec<Toxic>) -> Duration {
    let (provider, _noxious, proxy) = setup(toxics).await;
    let mut slowest = Duration::ZERO;
    for i in 0..3 {
        let order = format!("{name}-{i}");
        let (reply, took) = pay(&proxy, &order).await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(charges(&provider, &order), 1);
        slowest = slowest.max(took);
    }
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_with_jitter_slows_payments_but_charges_each_once() {
    use StreamDirection::*;
    let latency = || ToxicKind::Latency {
        latency: 80,
        jitter: 60,
    };
    let toxics = vec![
        toxic("up", latency(), Upstream),
        toxic("down", latency(), Downstream),
    ];
    let slowest = payments_pass_through("latency", toxics).await;
    assert!(
        slowest >= Duration::from_millis(40),
        "the toxic was not felt: {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliced_packets_are_reassembled_and_each_payment_charged_once() {
    use StreamDirection::*;
    let slicer = ToxicKind::Slicer {
        average_size: 16,
        size_variation: 8,
        delay: 200,
    };
    let toxics = vec![
        toxic("up", slicer, Upstream),
        toxic("down", slicer, Downstream),
    ];
    let _ = payments_pass_through("slicer", toxics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_close_does_not_hold_up_answers() {
    let slow_close = ToxicKind::SlowClose { delay: 1500 };
    let toxics = vec![toxic("down", slow_close, StreamDirection::Downstream)];
    let _ = payments_pass_through("slow-close", toxics).await;
}

/// Toxics that starve or cut the provider's reply: the payment may have executed, payguard
/// answers within the deadline with its own error, and the resend after the toxic is gone
/// gets the provider's one effect.
/// The payment ends "outcome unknown" with one of `statuses` (502, or 504 when its last
/// attempt timed out), then goes through once the toxic is gone.
async fn starved_then_recovered(name: &str, toxic: Toxic, statuses: &[u16]) {
    let (provider, noxious, proxy) = setup(vec![toxic]).await;
    let (reply, _) = pay(&proxy, name).await;
    assert_outcome_unknown(&reply, statuses);
    assert!(charges(&provider, name) <= 1);

    noxious.clear().await;
    let (reply, _) = pay(&proxy, name).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        charges(&provider, name),
        1,
        "{:?}",
        provider.ledger().entries()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrow_bandwidth_slows_payments_within_the_deadline_and_charges_each_once() {
    // 2 KB/s for replies cut into 64-byte packets: each reply takes about half a second.
    let slicer = ToxicKind::Slicer {
        average_size: 64,
        size_variation: 0,
        delay: 0,
    };
    let toxics = vec![
        toxic("slicer", slicer, StreamDirection::Downstream),
        toxic(
            "bandwidth",
            ToxicKind::Bandwidth { rate: 2 },
            StreamDirection::Downstream,
        ),
    ];
    let slowest = payments_pass_through("bandwidth", toxics).await;
    assert!(
        slowest > Duration::from_millis(150),
        "the toxic was not felt: {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_reply_times_out_within_the_deadline_then_recovers() {
    // A timeout toxic of 0 swallows the reply and never closes the connection.
    let toxic = toxic(
        "down",
        ToxicKind::Timeout { timeout: 0 },
        StreamDirection::Downstream,
    );
    starved_then_recovered("black-hole", toxic, &[504]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_toxic_that_swallows_data_is_bounded_by_the_deadline_then_recovers() {
    // Data stops flowing; the connection is closed after 300 ms.
    let timeout = ToxicKind::Timeout { timeout: 300 };
    let toxic = toxic("down", timeout, StreamDirection::Downstream);
    // Closed after 300 ms, or cut short by the deadline: either way in doubt.
    starved_then_recovered("timeout", toxic, &[502, 504]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_cut_by_limit_data_charges_once_then_the_resend_is_replayed() {
    // The connection closes after 100 bytes of the reply: mid-head.
    let limit = ToxicKind::LimitData { bytes: 100 };
    let toxic = toxic("down", limit, StreamDirection::Downstream);
    starved_then_recovered("limit-data", toxic, &[502]).await;
}
