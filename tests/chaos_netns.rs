//! Refused and black-holed connections from the kernel's own packet filter: payguard runs in a
//! network namespace the test creates, the provider double in the test on the other end of a
//! veth pair, and `nftables` rules inside the namespace reject or drop what payguard sends or
//! receives. Checks: no effect twice, every answer within the deadline, clean recovery once the
//! rules are flushed.
//!
//! Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and `ip` and `nft`; tests/run.sh installs
//! iproute2 and nftables. Without them the test fails with the command's own error: it never
//! skips.

mod support;

use std::process::Command;
use std::time::Duration;

use payguard_double::{self as double, DoubleConfig, DoubleHandle, EffectKind};
use support::chaos::{charges, timed_payment};
use support::process::{BIN, spawn_command};
use support::*;

const DEADLINE: Duration = Duration::from_secs(2);
/// Scheduling slack on a shared 2-core machine, beyond the deadline.
const SLACK: Duration = Duration::from_millis(750);

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{program}` ({e}); tests/run.sh installs it"));
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A namespace joined to this one by a veth pair, removed on drop.
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
    ns_ip: String,
}

impl Netns {
    fn create() -> Netns {
        // Unique per test process, so parallel runs of this file do not collide.
        let pid = std::process::id();
        let net = format!("10.{}.{}", 100 + pid % 100, (pid / 100) % 250);
        let ns = Netns {
            name: format!("payguard-chaos-{pid}"),
            host_if: format!("pgh{pid}"),
            host_ip: format!("{net}.1"),
            ns_ip: format!("{net}.2"),
        };
        let peer = format!("pgn{pid}");
        run("ip", &["netns", "add", &ns.name]);
        run(
            "ip",
            &[
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &peer,
            ],
        );
        run("ip", &["link", "set", &peer, "netns", &ns.name]);
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/30", ns.host_ip),
                "dev",
                &ns.host_if,
            ],
        );
        run("ip", &["link", "set", &ns.host_if, "up"]);
        let inside = |args: &[&str]| run("ip", &[&["-n", ns.name.as_str()], args].concat());
        inside(&["addr", "add", &format!("{}/30", ns.ns_ip), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        ns.nft("add table inet chaos");
        ns.nft("add chain inet chaos output { type filter hook output priority 0 ; }");
        ns.nft("add chain inet chaos input { type filter hook input priority 0 ; }");
        ns
    }

    /// Runs `nft` inside the namespace.
    fn nft(&self, command: &str) {
        let args: Vec<&str> = ["netns", "exec", &self.name, "nft"]
            .into_iter()
            .chain(command.split_whitespace())
            .collect();
        run("ip", &args);
    }

    fn flush(&self) {
        self.nft("flush chain inet chaos output");
        self.nft("flush chain inet chaos input");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting one end of the veth pair deletes both.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

async fn pay(proxy: &str, order: &str) -> Reply {
    let base = format!("http://{proxy}");
    let (reply, took) = timed_payment(&base, &format!("key-{order}"), order).await;
    assert!(took < DEADLINE + SLACK, "{order}: answered after {took:?}");
    reply
}

fn assert_ok(reply: &Reply) {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

/// With `rule` on payguard's traffic to the provider, a payment for `order` is a 502 and
/// nothing reaches the provider; once the rule is gone, the app's resend charges once.
async fn unreachable_then_recovered(
    ns: &Netns,
    proxy: &str,
    provider: &DoubleHandle,
    rule: &str,
    order: &str,
) {
    let (host, port) = (&ns.host_ip, provider.addr().port());
    ns.nft(&format!(
        "add rule inet chaos output ip daddr {host} tcp dport {port} {rule}"
    ));
    let seen = provider.requests_seen();
    let reply = pay(proxy, order).await;
    assert_payguard_error(&reply, 502, "payguard_upstream_unreachable");
    assert_eq!(
        provider.requests_seen(),
        seen,
        "nothing reached the provider"
    );
    ns.flush();
    assert_ok(&pay(proxy, order).await);
    assert_eq!(charges(provider, order), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_black_holed_connections_in_a_namespace() {
    let ns = Netns::create();
    let listener = tokio::net::TcpListener::bind(format!("{}:0", ns.host_ip))
        .await
        .unwrap();
    let provider = double::spawn_on(listener, DoubleConfig::default()).unwrap();
    let (host, port) = (ns.host_ip.clone(), provider.addr().port());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let extra = format!(
        "[listen]\nproxy = \"{}:0\"\nadmin = \"127.0.0.1:0\"\n\
         [rate_limit]\nenabled = false\n[breaker]\nenabled = false\n\
         [retry]\ndeadline = \"{}ms\"\nattempt_timeout = \"600ms\"\nbase_delay = \"20ms\"\n",
        ns.ns_ip,
        DEADLINE.as_millis()
    );
    // A fresh connection per attempt, so each attempt meets the rules in force.
    let toml = config_toml(&provider.url(), &extra)
        .replace("level = \"warn\"", "level = \"info\"")
        .replace(
            "[upstream]\n",
            "[upstream]\npool_max_idle_per_host = 0\nconnect_timeout = \"300ms\"\n",
        );
    std::fs::write(&file, toml).unwrap();
    let mut command = tokio::process::Command::new("ip");
    command.args(["netns", "exec", &ns.name, BIN, "run", "--config"]);
    command.arg(&file);
    let payguard = spawn_command(command, None).await;
    let proxy = payguard.proxy.clone();

    assert_ok(&pay(&proxy, "baseline").await);
    assert_eq!(charges(&provider, "baseline"), 1);

    // Refused: every connection to the provider is answered with a RST.
    unreachable_then_recovered(&ns, &proxy, &provider, "reject with tcp reset", "refused").await;

    // Black hole: connection attempts vanish, each ends at the connect timeout.
    unreachable_then_recovered(&ns, &proxy, &provider, "drop", "dropped").await;

    // Replies black-holed: connections open (handshake packets pass), the request executes,
    // every data segment of the reply is dropped. payguard's resends under the key are
    // replays at the provider; the app gets a 504 "outcome unknown" within the deadline.
    ns.nft(&format!(
        "add rule inet chaos input ip saddr {host} tcp sport {port} ip length > 100 drop"
    ));
    let reply = pay(&proxy, "reply-lost").await;
    assert_outcome_unknown(&reply, &[504]);
    assert_eq!(charges(&provider, "reply-lost"), 1, "executed once");
    ns.flush();
    let reply = pay(&proxy, "reply-lost").await;
    assert_ok(&reply);
    assert_eq!(
        reply
            .headers
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    assert_eq!(charges(&provider, "reply-lost"), 1);

    let ledger = provider.ledger();
    assert_eq!(
        ledger.count(EffectKind::Charge),
        4,
        "{:?}",
        ledger.entries()
    );
    assert!(ledger.duplicates().is_empty());
}
