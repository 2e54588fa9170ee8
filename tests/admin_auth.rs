//! The admin listener's one write, `POST /unresolved/<id>/give-up`, and who may make it: with
//! a token configured, only a request carrying it; without one, only on a loopback listener.
//! The reads stay open. `payguard unresolved give-up` sends the token from `--token-file` or
//! `PAYGUARD_ADMIN_TOKEN`, `payguard check` reads it where the config says, and no token
//! reaches the log.

mod support;

use std::path::Path;
use std::time::Duration;

use payguard::config::Config;
use payguard_double::{self as double, DoubleConfig, DoubleHandle, Fault};
use support::process::{BIN, spawn_payguard_with};
use support::resolver::{admin_post, payment, resolving, state, wait_for};
use support::*;

const TOKEN: &str = "adm_7f3c9e1b5d2a8f60c4e9";
/// One character off: a guess an attacker might send, which must not be logged either.
const WRONG: &str = "adm_7f3c9e1b5d2a8f60c4e8";

/// Payment intents left in doubt stay pending (report only) until someone gives up on them.
const REPORT_ONLY: &str = "[[route]]\nname = \"intents\"\nmatch = \"POST /v1/payment_intents\"\n\
                           [route.resolver]\nenabled = false\n";

/// A resolver config, report-only payments, and `admin` (an `[admin]` table or nothing).
fn config(provider: &DoubleHandle, admin: &str) -> String {
    config_toml(
        &provider.url(),
        &resolving(&format!("{REPORT_ONLY}{admin}")),
    )
}

/// `[admin]` with the token file at `path`.
fn token_file(path: &Path) -> String {
    format!("[admin]\ntoken_file = {:?}\n", path.display().to_string())
}

/// Leaves the payment under `key` pending at the proxy `proxy` and returns its id.
async fn pending(provider: &DoubleHandle, proxy: &str, admin: &str, key: &str) -> String {
    provider.faults().push(Fault::ResetAfterProcessing);
    provider.faults().push(Fault::ResetAfterProcessing);
    let url = format!("http://{proxy}/v1/payment_intents");
    // A body of its own: identical ones under two keys would be one payment to the
    // duplicate window of `resolving`.
    let form = format!("amount=700&currency=usd&metadata[order]={key}");
    let reply = send(payment(&url, key, &form)).await;
    assert_eq!(
        reply.status,
        502,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let row = wait_for(admin, key, "pending").await;
    row["id"].as_str().unwrap().to_owned()
}

async fn give_up(admin: &str, id: &str, authorization: Option<&str>) -> Reply {
    admin_post(admin, &format!("/unresolved/{id}/give-up"), authorization).await
}

/// Asserts a 401 refusal that says `says` and changed nothing.
async fn assert_refused(reply: &Reply, says: &str, admin: &str, key: &str) {
    let body = String::from_utf8_lossy(&reply.body);
    assert_eq!(reply.status, 401, "{body}");
    assert!(
        body.contains(says) && body.contains("Nothing was changed"),
        "{body}"
    );
    assert_eq!(
        reply.headers["www-authenticate"],
        "Bearer realm=\"payguard admin\""
    );
    let content_type = reply.headers["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert_eq!(state(admin, key).await, "pending");
}

#[tokio::test]
async fn give_up_needs_the_configured_token_and_reads_stay_open() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let proxy = start_proxy(&config(&provider, &token_file(&file))).await;
    let (addr, admin) = (proxy.addr.to_string(), proxy.admin.to_string());
    let id = pending(&provider, &addr, &admin, "order-1").await;

    for path in ["/healthz", "/readyz", "/metrics", "/stats", "/unresolved"] {
        assert_eq!(get(&proxy.admin_url(path)).await.status, 200, "{path}");
    }
    // On a loopback listener too, a configured token is needed.
    let missing = "needs `Authorization: Bearer <token>`";
    assert_refused(
        &give_up(&admin, &id, None).await,
        missing,
        &admin,
        "order-1",
    )
    .await;
    let wrong = format!("Bearer {WRONG}");
    let reply = give_up(&admin, &id, Some(&wrong)).await;
    assert_refused(&reply, "does not match", &admin, "order-1").await;
    for other in [
        format!("Basic {TOKEN}"),
        TOKEN.to_owned(),
        "Bearer ".to_owned(),
    ] {
        let reply = give_up(&admin, &id, Some(&other)).await;
        assert_refused(&reply, missing, &admin, "order-1").await;
    }
    // Any other write is refused the same way, before routing.
    for path in ["/metrics", "/unresolved", "/nope"] {
        assert_refused(
            &admin_post(&admin, path, None).await,
            missing,
            &admin,
            "order-1",
        )
        .await;
    }

    let reply = give_up(&admin, &id, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let rows = reply.json();
    assert_eq!(rows[0]["state"], "gave_up");
    assert_eq!(rows[0]["outcome"], "operator");
    assert_eq!(state(&admin, "order-1").await, "gave_up");
}

#[tokio::test]
async fn without_a_token_only_a_loopback_listener_takes_the_write() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let config = Config::parse(&config(&provider, ""), "test", None).unwrap();

    // Bound to every interface, as in a pod: refused, whatever the request carries.
    let open = start_proxy_admin_on(&config, "0.0.0.0:0").await;
    let (addr, admin) = (open.addr.to_string(), open.admin.to_string());
    let id = pending(&provider, &addr, &admin, "order-2").await;
    let how = "set [admin] token_file";
    assert_refused(&give_up(&admin, &id, None).await, how, &admin, "order-2").await;
    let bearer = format!("Bearer {TOKEN}");
    let reply = give_up(&admin, &id, Some(&bearer)).await;
    assert_refused(&reply, how, &admin, "order-2").await;
    assert_eq!(get(&open.admin_url("/unresolved")).await.status, 200);

    // Bound to loopback: only this machine reaches it, and the write goes through.
    let local = start_proxy_with(&config).await;
    let (addr, admin) = (local.addr.to_string(), local.admin.to_string());
    let id = pending(&provider, &addr, &admin, "order-3").await;
    assert_eq!(give_up(&admin, &id, None).await.status, 200);
    assert_eq!(state(&admin, "order-3").await, "gave_up");
}

/// Runs `payguard unresolved --admin ADMIN give-up ID ARGS...` with `token` as
/// PAYGUARD_ADMIN_TOKEN (or none); returns whether it succeeded, and its stdout and stderr.
async fn cli(admin: &str, id: &str, args: &[&str], token: Option<&str>) -> (bool, String) {
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(["unresolved", "--admin", admin, "give-up", id])
        .args(args)
        .env_remove("PAYGUARD_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("PAYGUARD_ADMIN_TOKEN", token);
    }
    let out = command.output().await.expect("payguard runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sends_the_token_and_no_token_reaches_the_log() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Relative to the config file's directory, as in a pod's mounted Secret.
    std::fs::write(dir.path().join("admin-token"), format!("{TOKEN}\n")).unwrap();
    let wrong = dir.path().join("wrong-token");
    std::fs::write(&wrong, WRONG).unwrap();
    let file = dir.path().join("config.toml");
    let listen = "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n";
    let admin_table = "[admin]\ntoken_file = \"admin-token\"\n";
    let toml = config(&provider, &format!("{listen}{admin_table}"))
        .replace("level = \"warn\"", "level = \"trace\"");
    std::fs::write(&file, toml).unwrap();
    let mut running = spawn_payguard_with(&file, &[("RUST_LOG", "trace")], None).await;
    let admin = running.admin.clone();
    let first = pending(&provider, &running.proxy, &admin, "cli-1").await;
    let second = pending(&provider, &running.proxy, &admin, "cli-2").await;

    let (ok, out) = cli(&admin, &first, &[], None).await;
    assert!(
        !ok && out.contains("401") && out.contains("--token-file"),
        "{out}"
    );
    let (ok, out) = cli(
        &admin,
        &first,
        &["--token-file", wrong.to_str().unwrap()],
        None,
    )
    .await;
    assert!(!ok && out.contains("does not match"), "{out}");
    let (ok, out) = cli(
        &admin,
        &first,
        &["--token-file", "/nonexistent/token"],
        None,
    )
    .await;
    assert!(!ok && out.contains("cannot read the token file"), "{out}");
    assert_eq!(state(&admin, "cli-1").await, "pending");

    let right = dir.path().join("admin-token");
    let (ok, out) = cli(
        &admin,
        &first,
        &["--token-file", right.to_str().unwrap()],
        None,
    )
    .await;
    assert!(
        ok && out.contains("gave_up") && out.contains("operator"),
        "{out}"
    );
    // The variable, when no --token-file is given.
    let (ok, out) = cli(&admin, &second, &[], Some(TOKEN)).await;
    assert!(ok && out.contains("gave_up"), "{out}");
    assert_eq!(state(&admin, "cli-2").await, "gave_up");

    let pid = running.child.id().unwrap().to_string();
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(10), running.child.wait())
        .await
        .expect("payguard stops")
        .unwrap();
    let mut log = running.started.clone();
    log.extend(running.log.await.unwrap());
    let log = log.join("\n");
    // Not vacuous: the start, the refusals, the give-ups and trace-level events are there.
    for expected in [
        "admin writes need the [admin] bearer token",
        "refused an admin write",
        "wrong bearer token",
        "an operator gave up",
        "TRACE",
    ] {
        assert!(log.contains(expected), "{expected} missing from the log");
    }
    assert!(!log.contains(TOKEN), "the token is in the log");
    assert!(!log.contains(WRONG), "the wrong token is in the log");
}

#[test]
fn payguard_check_reads_the_token_where_the_config_says() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let text =
        "[upstream]\nurl = \"http://127.0.0.1:1\"\n\n[admin]\ntoken_env = \"PG_TEST_TOKEN\"\n";
    std::fs::write(&file, text).unwrap();
    let check = |token: Option<&str>| {
        let mut command = std::process::Command::new(BIN);
        command
            .args(["check", "--config"])
            .arg(&file)
            .env_remove("PG_TEST_TOKEN");
        if let Some(token) = token {
            command.env("PG_TEST_TOKEN", token);
        }
        let out = command.output().unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), text)
    };
    assert!(check(Some(TOKEN)).0);
    let (ok, err) = check(None);
    assert!(
        !ok && err.contains("line 5: `admin.token_env`") && err.contains("is not set"),
        "{err}"
    );
    let (ok, err) = check(Some("tiny-secret"));
    assert!(
        !ok && err.contains("at least 16") && !err.contains("tiny-secret"),
        "{err}"
    );
}
