//! Config reload without a restart: on SIGHUP, and when the file's content changes.
//!
//! Kubernetes updates a mounted ConfigMap by swapping a symlink, which file-event watchers
//! notoriously miss or see twice; so the file is simply read again every poll interval and
//! compared with what is in force. A new config is validated in full first; an invalid one is
//! logged and counted, and the running config stays. A valid one becomes a new
//! [`ProxyState`], swapped in atomically: each request holds the state it started with, so
//! in-flight requests finish under their old config.
//!
//! Some settings are fixed for the life of the process (the listeners, the runtime's threads,
//! the log format, the idempotency store's location); a change to those is reported as needing
//! a restart and otherwise ignored.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::proxy::ProxyState;

/// The state requests are served with; replaced whole on reload.
pub type LiveState = Arc<ArcSwap<ProxyState>>;

/// Settings a reload cannot change, by their config key.
pub fn restart_needed(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut check = |changed: bool, key| {
        if changed {
            keys.push(key);
        }
    };
    check(running.proxy_addr != new.proxy_addr, "listen.proxy");
    check(running.admin_addr != new.admin_addr, "listen.admin");
    check(running.admin != new.admin, "admin.token_file/token_env");
    check(
        running.worker_threads != new.worker_threads,
        "server.worker_threads",
    );
    check(running.log_format != new.log_format, "log.format");
    check(running.log_level != new.log_level, "log.level");
    check(
        running.idempotency.store != new.idempotency.store,
        "idempotency.store/path",
    );
    check(
        running.idempotency.max_records != new.idempotency.max_records,
        "idempotency.max_records",
    );
    check(
        running.idempotency.prune_interval != new.idempotency.prune_interval,
        "idempotency.prune_interval",
    );
    check(running.redis != new.redis, "redis");
    check(running.postgres != new.postgres, "postgres");
    check(
        running.resolver.encryption_key != new.resolver.encryption_key,
        "resolver.encryption_key_file",
    );
    check(
        running.resolver.max_entries != new.resolver.max_entries,
        "resolver.max_entries",
    );
    check(
        running.reload_poll_interval != new.reload_poll_interval,
        "server.reload_poll_interval",
    );
    check(
        running.header_read_timeout != new.header_read_timeout,
        "server.header_read_timeout",
    );
    check(
        running.load != new.load,
        "server.max_connections, max_requests_in_flight or max_buffered_bytes",
    );
    keys
}

/// Watches `path` and swaps new configs into `live` until the task is aborted.
/// `hangups` must be registered before the server reports itself up (see [`hangup_signals`]):
/// until a handler exists, SIGHUP's default action terminates the process.
pub async fn watch(live: LiveState, path: PathBuf, started: Config, mut hangups: Hangups) {
    let mut current = started.clone();
    let mut seen = std::fs::read(&path).ok();
    let poll = started.reload_poll_interval;
    loop {
        let trigger = tokio::select! {
            Some(()) = next(&mut hangups) => "SIGHUP",
            () = sleep_or_forever(poll) => {
                let now = std::fs::read(&path).ok();
                if now == seen {
                    continue;
                }
                seen = now;
                "file change"
            }
        };
        let state = live.load_full();
        let reloads = &state.metrics().reloads;
        let new = match Config::load(&path) {
            Ok(new) => new,
            Err(e) => {
                tracing::error!(trigger, error = %e, "config reload refused; the running config stays");
                reloads.with_label_values(&["invalid"]).inc();
                continue;
            }
        };
        let fixed = restart_needed(&started, &new);
        if !fixed.is_empty() {
            tracing::warn!(trigger, keys = ?fixed, "these settings changed and need a restart to take effect");
        }
        state
            .metrics()
            .restart_required
            .set(i64::from(!fixed.is_empty()));
        match state.reconfigure(&new, &current) {
            Ok(next) => {
                live.store(Arc::new(next));
                current = new;
                reloads.with_label_values(&["applied"]).inc();
                tracing::info!(trigger, "config reloaded");
            }
            Err(e) => {
                tracing::error!(trigger, error = %e, "config reload failed; the running config stays");
                reloads.with_label_values(&["invalid"]).inc();
            }
        }
    }
}

pub type Hangups = Option<tokio::signal::unix::Signal>;

/// Installs the SIGHUP handler now.
pub fn hangup_signals() -> Hangups {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload by file change only");
            None
        }
    }
}

async fn next(hangups: &mut Hangups) -> Option<()> {
    match hangups {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// A zero interval turns file polling off.
async fn sleep_or_forever(poll: Duration) {
    if poll.is_zero() {
        std::future::pending::<()>().await
    } else {
        tokio::time::sleep(poll).await
    }
}
