//! The Redis connection shared by the parts of payguard that keep their state there when
//! several replicas run: the idempotency store ([`crate::idempotency::redis`]) and shared rate
//! limiters ([`crate::ratelimit::shared`]).
//!
//! A pool of `pool_size` multiplexed connections (the `redis` crate's `ConnectionManager`,
//! which reconnects on its own), used in turn. Connecting is lazy: payguard starts and serves
//! (by its failure policies) while Redis is down, and picks Redis up when it comes. Every
//! command runs under `command_timeout`, enforced here as well as in the client: while the
//! client reconnects, a command would otherwise wait for the reconnection, and a request must
//! take its failure policy instead of stalling.
//!
//! Redis Cluster is not supported (see the README): a URL that names it is refused at load,
//! and [`RedisPool::probe`] reports a server that turns out to be a cluster node as failing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A Redis URL, possibly with a password: shown redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(pub String);

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redacted(&self.0))
    }
}

/// A URL with whatever precedes its `@` (user and password) shown as `***`: how every
/// store URL appears in a logged config.
pub fn redacted(url: &str) -> String {
    match url.split_once('@') {
        Some((scheme_user, host)) => {
            let scheme = scheme_user.split("://").next().unwrap_or_default();
            format!("{scheme}://***@{host}")
        }
        None => url.to_owned(),
    }
}

/// The validated `[redis]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSpec {
    pub url: RedisUrl,
    /// An environment variable holding the password, read when payguard connects.
    pub password_env: Option<String>,
    pub key_prefix: String,
    pub connect_timeout: Duration,
    /// The longest one store or limiter operation may take before it counts as a failure.
    pub command_timeout: Duration,
    /// Multiplexed connections, used in turn.
    pub pool_size: usize,
    /// Replicas expected to share the Redis: a shared limiter falling back to local limiting
    /// takes `rate / replicas` unless it sets its own `fallback_rate`.
    pub replicas: u32,
}

/// Why a Redis operation failed, in words safe to log (never the URL or a password).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RedisFailure {
    #[error("no answer from Redis within {0:?}")]
    TimedOut(Duration),
    #[error("Redis: {0}")]
    Redis(String),
}

impl From<redis::RedisError> for RedisFailure {
    fn from(e: redis::RedisError) -> Self {
        // The error's Display names the kind and the server's message; no credentials.
        RedisFailure::Redis(e.to_string())
    }
}

/// Connections to the one Redis server, and the prefix of every key payguard writes there.
pub struct RedisPool {
    connections: Vec<ConnectionManager>,
    next: AtomicUsize,
    prefix: String,
    timeout: Duration,
}

impl RedisPool {
    /// Builds the pool without connecting; the first command connects.
    pub fn new(spec: &RedisSpec) -> anyhow::Result<RedisPool> {
        let mut client = redis::Client::open(spec.url.0.as_str())
            .map_err(|e| anyhow::anyhow!("redis.url: {}", e.category()))?;
        if let Some(var) = &spec.password_env {
            let password = std::env::var(var).map_err(|_| {
                anyhow::anyhow!("redis.password_env: environment variable {var} is not set")
            })?;
            let info = client.get_connection_info().clone();
            let settings = info.redis_settings().clone().set_password(password);
            client = redis::Client::open(info.set_redis_settings(settings))?;
        }
        // Reconnect quickly and keep trying (each failed command starts a new attempt): a
        // replica should notice a restarted Redis within a second or so.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(spec.connect_timeout))
            .set_response_timeout(Some(spec.command_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let connections = (0..spec.pool_size)
            .map(|_| client.get_connection_manager_lazy(config.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RedisPool {
            connections,
            next: AtomicUsize::new(0),
            prefix: spec.key_prefix.clone(),
            timeout: spec.command_timeout,
        })
    }

    /// `prefix` + `suffix`: every key payguard writes lives under the configured prefix.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Runs `f` on the next connection, within the command timeout.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, RedisFailure>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        let connection = self.connections[i].clone();
        match tokio::time::timeout(self.timeout, f(connection)).await {
            Ok(result) => result.map_err(RedisFailure::from),
            Err(_) => Err(RedisFailure::TimedOut(self.timeout)),
        }
    }

    /// One round trip (`PING`); for benchmarks and health checks.
    pub async fn ping(&self) -> Result<(), RedisFailure> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await })
            .await
    }

    /// Checks that the server answers and is not a Redis Cluster node, whose keys would be
    /// spread over nodes this client does not follow.
    pub async fn probe(&self) -> Result<(), RedisFailure> {
        let info: String = self
            .run(|mut c| async move { redis::cmd("INFO").arg("cluster").query_async(&mut c).await })
            .await?;
        if info.contains("cluster_enabled:1") {
            return Err(RedisFailure::Redis(
                "the server is a Redis Cluster node; payguard needs a single primary".into(),
            ));
        }
        Ok(())
    }
}
