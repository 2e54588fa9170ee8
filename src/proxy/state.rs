//! Building the request path's shared state from a config, and carrying what must survive
//! a reload (metrics, store, journal, pools, limiter and breaker state) into the next one.
//!
//! Kept apart from the request path itself (`mod.rs`) so that file reads as the steps a
//! request takes, and this one as what those steps are given.

use std::sync::Arc;

use http::Method;
use tower::retry::budget::TpsBudget;

use super::{ProxyState, Routed, Routes};
use crate::config::{Config, ResolverSpec, StoreKind};
use crate::gate::{GateSpec, Gates};
use crate::idempotency::postgres::{PgPool, PostgresStore};
use crate::idempotency::{
    FailMode, Idempotency, Store, embedded::EmbeddedStore, memory::MemoryStore, redis::RedisStore,
};
use crate::journal::webhook::Webhook;
use crate::journal::{self, Journal, JournalStore};
use crate::load::Load;
use crate::metrics::Metrics;
use crate::retry::Jitter;
use crate::route::RouteTable;
use crate::shared::RedisPool;
use crate::upstream::Upstream;

impl ProxyState {
    pub fn new(config: &Config) -> anyhow::Result<ProxyState> {
        let metrics = Arc::new(Metrics::new()?);
        let spec = &config.idempotency;
        let redis = match &config.redis {
            Some(r) => Some(Arc::new(RedisPool::new(r)?)),
            None => None,
        };
        // Only with the PostgreSQL store: a [postgres] table alone connects to nothing.
        let postgres = match (&config.postgres, &spec.store) {
            (Some(p), StoreKind::Postgres) => {
                Some(Arc::new(PgPool::new(p, Some(metrics.postgres.clone()))?))
            }
            _ => None,
        };
        let (store, journal) = stores(config, redis.as_ref(), postgres.as_ref())?;
        let sealer = journal::seal::Sealer::new(config.resolver.encryption_key.as_ref());
        Ok(ProxyState {
            gates: Arc::new(gates(config, &metrics, redis.as_ref())),
            store_shared: matches!(spec.store, StoreKind::Redis | StoreKind::Postgres),
            fails_closed: fails_closed(config),
            redis,
            postgres,
            budgets: config
                .upstreams
                .iter()
                .map(|_| Arc::new(budget(config)))
                .collect(),
            idempotency: Idempotency::new(store, spec.settings.clone()),
            upstreams: config
                .upstreams
                .iter()
                .map(Upstream::new)
                .collect::<Result<_, _>>()?,
            routes: Routes::new(routes(config), &metrics),
            metrics,
            jitter: jitter(config),
            max_body: config.max_request_body,
            load: Arc::new(Load::new(config.load)),
            journal: Journal::new(journal, sealer),
            resolver: config.resolver.clone(),
            webhook: config
                .resolver
                .webhook
                .clone()
                .map(|w| Arc::new(Webhook::new(w))),
        })
    }

    /// The state for a reloaded config. What a reload must not disturb is carried over: the
    /// metrics (counters continue) and the idempotency store (an open file cannot be opened
    /// twice) always; an upstream's connection pool and retry budget, the limiters and
    /// breakers (their rate, queue and state) and the idempotency layer (its waiters and
    /// health) whenever their settings did not change. Upstreams are matched by name.
    pub fn reconfigure(&self, config: &Config, old: &Config) -> anyhow::Result<ProxyState> {
        // The limits in force: each upstream's, and those of routes that have their own.
        let limits = |c: &Config| {
            let routes: Vec<_> = c
                .routes
                .iter()
                .filter(|r| r.rate_limit.is_some() || r.breaker.is_some())
                .map(|r| (r.name.clone(), r.rate_limit, r.breaker))
                .collect();
            let upstreams: Vec<_> = c
                .upstreams
                .iter()
                .map(|u| (u.name.clone(), u.rate_limit, u.breaker))
                .collect();
            (upstreams, routes)
        };
        // The index an upstream of the new config had in the old one.
        let before = |name: &str| old.upstreams.iter().position(|u| u.name == name);
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        let mut budgets = Vec::with_capacity(config.upstreams.len());
        for spec in &config.upstreams {
            let kept = before(&spec.name).filter(|&i| old.upstreams[i].same_connection(spec));
            upstreams.push(match kept.and_then(|i| self.upstreams.get(i)) {
                Some(client) => client.clone(),
                None => Upstream::new(spec)?,
            });
            let same_budget = config.retry_budget == old.retry_budget;
            budgets.push(match before(&spec.name).and_then(|i| self.budgets.get(i)) {
                Some(budget) if same_budget => budget.clone(),
                _ => Arc::new(budget(config)),
            });
        }
        let settings = &config.idempotency.settings;
        Ok(ProxyState {
            upstreams,
            budgets,
            gates: match limits(config) == limits(old) {
                true => self.gates.clone(),
                false => Arc::new(gates(config, &self.metrics, self.redis.as_ref())),
            },
            idempotency: match *settings == old.idempotency.settings {
                true => self.idempotency.clone(),
                false => Idempotency::new(self.idempotency.store().clone(), settings.clone()),
            },
            routes: Routes::new(routes(config), &self.metrics),
            metrics: self.metrics.clone(),
            jitter: jitter(config),
            max_body: config.max_request_body,
            load: self.load.clone(),
            journal: self.journal.clone(),
            resolver: config.resolver.clone(),
            webhook: match config.resolver.webhook == old.resolver.webhook {
                true => self.webhook.clone(),
                false => config
                    .resolver
                    .webhook
                    .clone()
                    .map(|w| Arc::new(Webhook::new(w))),
            },
            redis: self.redis.clone(),
            postgres: self.postgres.clone(),
            store_shared: self.store_shared,
            fails_closed: fails_closed(config),
        })
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn resolver(&self) -> &ResolverSpec {
        &self.resolver
    }

    pub fn webhook(&self) -> Option<&Webhook> {
        self.webhook.as_deref()
    }

    /// The route a request to `method` and `path` falls under.
    pub fn route(&self, method: &Method, path: &str) -> Routed<'_> {
        self.routes.lookup(method, path)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn idempotency(&self) -> &Idempotency {
        &self.idempotency
    }

    pub fn gates(&self) -> &Gates {
        &self.gates
    }

    pub fn redis(&self) -> Option<&Arc<RedisPool>> {
        self.redis.as_ref()
    }

    pub fn postgres(&self) -> Option<&Arc<PgPool>> {
        self.postgres.as_ref()
    }

    /// Whether a failing idempotency store makes this replica unready. A store of this pod
    /// alone (embedded) failing is this pod's problem: take it out of rotation. A shared store
    /// (Redis, PostgreSQL) failing is every replica's problem at once: taking them all out would turn a
    /// Redis outage into a full outage, so they stay ready and degrade by their routes'
    /// `on_store_error`, unless some route fails closed, whose payments would be refused.
    pub fn store_is_shared(&self) -> bool {
        self.store_shared
    }

    pub fn store_blocks_readiness(&self) -> bool {
        !self.store_shared || self.fails_closed
    }
}

fn fails_closed(config: &Config) -> bool {
    std::iter::once(&config.default_idempotency)
        .chain(config.routes.iter().map(|r| &r.idempotency))
        .any(|p| p.on_store_error == FailMode::Closed)
}

fn routes(config: &Config) -> RouteTable {
    RouteTable::new(config.routes.clone(), config.default_route())
}

fn budget(config: &Config) -> TpsBudget {
    let b = config.retry_budget;
    TpsBudget::new(b.window, b.min_per_second, b.ratio)
}

fn jitter(config: &Config) -> Jitter {
    config.jitter_seed.map_or(Jitter::Random, Jitter::seeded)
}

/// The gates of `config`: each route's own limiter and breaker, and each upstream's.
fn gates(config: &Config, metrics: &Metrics, redis: Option<&Arc<RedisPool>>) -> Gates {
    let routes = config.routes.iter().map(|r| GateSpec {
        name: r.name.clone(),
        rate_limit: r.rate_limit,
        breaker: r.breaker,
    });
    let upstreams = config.upstreams.iter().map(|u| GateSpec {
        name: u.gate_name(),
        rate_limit: u.rate_limit,
        breaker: u.breaker,
    });
    Gates::new(
        routes.collect(),
        upstreams.collect(),
        &metrics.limits,
        redis,
    )
}

/// Where the records and the journal live: the journal sits beside the store, in its redb
/// file, in Redis or PostgreSQL (shared by every replica, so an entry outlives its pod), or
/// in memory.
fn stores(
    config: &Config,
    redis: Option<&Arc<RedisPool>>,
    postgres: Option<&Arc<PgPool>>,
) -> anyhow::Result<(Arc<dyn Store>, Arc<dyn JournalStore>)> {
    let spec = &config.idempotency;
    let max_entries = config.resolver.max_entries;
    Ok(match (&spec.store, redis) {
        (StoreKind::Memory, _) => (
            Arc::new(MemoryStore::new(spec.max_records)),
            Arc::new(journal::memory::MemoryJournal::new(max_entries)),
        ),
        (StoreKind::Embedded(path), _) => {
            let store = EmbeddedStore::open(path, spec.max_records)?;
            let journal =
                journal::embedded::EmbeddedJournal::new(store.database(), path, max_entries)?;
            (Arc::new(store), Arc::new(journal))
        }
        (StoreKind::Redis, Some(pool)) => (
            Arc::new(RedisStore::new(pool.clone(), spec.max_records)),
            Arc::new(journal::redis::RedisJournal::new(pool.clone(), max_entries)),
        ),
        (StoreKind::Redis, None) => {
            anyhow::bail!("idempotency.store = \"redis\" needs [redis]")
        }
        (StoreKind::Postgres, _) => {
            let Some(pool) = postgres else {
                anyhow::bail!("idempotency.store = \"postgres\" needs [postgres]")
            };
            (
                Arc::new(PostgresStore::new(pool.clone(), spec.max_records)),
                Arc::new(journal::postgres::PostgresJournal::new(
                    pool.clone(),
                    max_entries,
                )),
            )
        }
    })
}
