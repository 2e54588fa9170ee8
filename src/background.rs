//! The tasks that serve the live state between requests, owned as one set: pruning expired
//! idempotency records, probing a shared store, the resolver's re-sends, and watching the
//! config for reloads. [`Background::start`] spawns them beside the listeners and
//! [`Background::stop`] ends them and waits, so nothing holds the state (and the store's file
//! behind it) once the server returns.
//!
//! The resolver has a set of its own because it stops first: no re-send starts while the
//! server drains (one cut off stays pending in the journal for the next process).

use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::config::Config;
use crate::idempotency::StoreError;
use crate::reload::{self, LiveState};

/// How often a shared (Redis or PostgreSQL) store is probed.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The running background tasks of one server.
pub struct Background {
    resends: JoinSet<()>,
    upkeep: JoinSet<()>,
}

impl Background {
    /// Starts every task for `state`; `watch` is the config file to reload from, and the
    /// config it held at start. Its SIGHUP handler is installed before this returns, so a
    /// hangup never finds none.
    pub fn start(
        state: &LiveState,
        prune_every: Duration,
        watch: Option<(PathBuf, Config)>,
    ) -> Background {
        let mut upkeep = JoinSet::new();
        upkeep.spawn(prune_periodically(state.clone(), prune_every));
        upkeep.spawn(probe_shared_store(state.clone()));
        if let Some((path, config)) = watch {
            let hangups = reload::hangup_signals();
            upkeep.spawn(reload::watch(state.clone(), path, config, hangups));
        }
        let mut resends = JoinSet::new();
        resends.spawn(crate::resolver::task::run(state.clone()));
        Background { resends, upkeep }
    }

    /// Stops the resolver: called when the server stops accepting, before it drains.
    pub async fn stop_resending(&mut self) {
        self.resends.shutdown().await;
    }

    /// Stops every task and waits until each is gone.
    pub async fn stop(mut self) {
        self.stop_resending().await;
        self.upkeep.shutdown().await;
    }
}

/// Expired idempotency records are removed in the background, never on the request path.
async fn prune_periodically(state: LiveState, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let current = state.load_full();
        current
            .idempotency()
            .prune(&current.metrics().idempotency)
            .await;
    }
}

/// With a shared store (Redis, PostgreSQL), a probe each second: readiness, the health gauge
/// and the state-change log follow it within a second, with or without traffic, instead of at
/// the next prune.
async fn probe_shared_store(state: LiveState) {
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let current = state.load_full();
        if !current.store_is_shared() {
            continue;
        }
        let (redis, postgres) = (current.redis().cloned(), current.postgres().cloned());
        let check = async move {
            let probed = match (postgres, redis) {
                (Some(pg), _) => pg.probe().await.map_err(|e| e.to_string()),
                (None, Some(redis)) => redis.probe().await.map_err(|e| e.to_string()),
                (None, None) => return Ok(()),
            };
            probed.map_err(StoreError::Backend)
        };
        current
            .idempotency()
            .probe(&current.metrics().idempotency, check)
            .await;
    }
}
