//! The PostgreSQL connection pool shared by the store ([`super::PostgresStore`]) and the
//! journal ([`crate::journal::postgres`]), with the two rules every operation follows:
//! it runs within `statement_timeout` (on the server per statement, and here for the whole
//! operation, pool wait included), and its time goes to the statement-latency histogram.
//!
//! Connecting is lazy, as with Redis: payguard starts and serves (by its failure policies)
//! while the database is down, and the first operation that finds it up runs the migrations
//! ([`super::migrate`]) once. deadpool's fast recycling drops a connection the server closed
//! (a restart, a failover), so the pool reconnects on its own after an outage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::sync::OnceCell;

use crate::metrics::PostgresMetrics;

/// A PostgreSQL URL, possibly with a password: shown redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(pub String);

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::shared::redacted(&self.0))
    }
}

/// The validated `[postgres]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSpec {
    pub url: PostgresUrl,
    /// An environment variable holding the password, read when payguard builds its pool.
    pub password_env: Option<String>,
    /// Connections kept open by each replica.
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// The longest one store or journal operation may take (each statement on the server,
    /// and the whole operation on the client) before it counts as a failure.
    pub statement_timeout: Duration,
    /// The schema payguard's tables live in; created by the first migration.
    pub schema: String,
    /// Whether the URL asks for TLS (`sslmode=require`).
    pub tls: bool,
}

/// How often a locked upsert starts over when another request inserted its row first.
pub const TRIES: usize = 8;

/// The count shard of a row's key: its first byte, mod 16 (as the prune computes it in SQL).
pub fn shard(key: &[u8; 32]) -> i16 {
    i16::from(key[0] % 16)
}

/// Opens a transaction. One that need not survive a crash (a claim, a journal write the
/// caller marks so) commits without waiting for the WAL flush.
pub async fn begin(
    c: &mut Object,
    durable: bool,
) -> Result<deadpool_postgres::Transaction<'_>, PgFailure> {
    let txn = c.transaction().await?;
    if !durable {
        txn.batch_execute("SET LOCAL synchronous_commit = off")
            .await?;
    }
    Ok(txn)
}

/// Takes a place for a new row of `key` in its count shard (`room` is the table's room
/// statement); false when the bound is reached, and the caller rolls back.
pub async fn take_room(
    txn: &deadpool_postgres::Transaction<'_>,
    room: &str,
    key: &[u8; 32],
    max: i64,
) -> Result<bool, PgFailure> {
    let room = txn.prepare_cached(room).await?;
    Ok(txn.execute(&room, &[&shard(key), &max]).await? > 0)
}

/// Why a PostgreSQL operation failed, in words safe to log (never the URL or the password).
#[derive(Debug, Clone, thiserror::Error)]
pub enum PgFailure {
    #[error("no answer from PostgreSQL within {0:?}")]
    TimedOut(Duration),
    #[error("PostgreSQL: {0}")]
    Db(String),
    /// The database was migrated by a newer payguard: refused, never downgraded.
    #[error(
        "the PostgreSQL schema {schema:?} is at version {found}, newer than this payguard knows \
         (up to {known}); run a payguard at least as new as the one that migrated it"
    )]
    SchemaTooNew {
        schema: String,
        found: i32,
        known: i32,
    },
}

impl From<tokio_postgres::Error> for PgFailure {
    /// The driver's own words say only the kind ("db error", "error performing TLS
    /// handshake"); the cause says what happened. A server error gives its severity, code and
    /// message, never its DETAIL (which may quote a row's values); no part names the password.
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            return PgFailure::Db(format!(
                "{} {}: {}",
                db.severity(),
                db.code().code(),
                db.message()
            ));
        }
        match std::error::Error::source(&e) {
            Some(cause) => PgFailure::Db(format!("{e}: {cause}")),
            None => PgFailure::Db(e.to_string()),
        }
    }
}

/// The pool, the schema payguard's tables live in, and what every operation is measured by.
pub struct PgPool {
    pool: Pool,
    schema: String,
    timeout: Duration,
    metrics: Option<PostgresMetrics>,
    migrated: OnceCell<()>,
}

impl PgPool {
    /// Builds the pool without connecting. `metrics`, when given, receives every operation's
    /// time.
    pub fn new(spec: &PostgresSpec, metrics: Option<PostgresMetrics>) -> anyhow::Result<PgPool> {
        let mut config: tokio_postgres::Config = spec
            .url
            .0
            .parse()
            .map_err(|_| anyhow::anyhow!("postgres.url: not a valid PostgreSQL URL"))?;
        if let Some(var) = &spec.password_env {
            let password = std::env::var(var).map_err(|_| {
                anyhow::anyhow!("postgres.password_env: environment variable {var} is not set")
            })?;
            config.password(password);
        }
        let ms = spec.statement_timeout.as_millis();
        config
            .connect_timeout(spec.connect_timeout)
            .application_name("payguard")
            .options(format!("-c statement_timeout={ms} -c lock_timeout={ms}"));
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match spec.tls {
            true => Manager::from_config(config, tls()?, manager_config),
            false => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                Manager::from_config(config, tokio_postgres::NoTls, manager_config)
            }
        };
        let pool = Pool::builder(manager)
            .max_size(spec.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(spec.statement_timeout))
            .create_timeout(Some(spec.connect_timeout))
            .recycle_timeout(Some(spec.connect_timeout))
            .build()?;
        Ok(PgPool {
            pool,
            schema: spec.schema.clone(),
            timeout: spec.statement_timeout,
            metrics,
            migrated: OnceCell::new(),
        })
    }

    /// The schema, already validated as a plain identifier (safe to splice into statements).
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Runs the migrations unless this pool already has; see [`super::migrate`]. Bounded by
    /// [`MIGRATE_TIMEOUT`] on its own (when called at start or by a test).
    pub async fn migrate(&self) -> Result<(), PgFailure> {
        self.migrated
            .get_or_try_init(|| async {
                let started = Instant::now();
                let result = tokio::time::timeout(self.timeout.max(MIGRATE_TIMEOUT), async {
                    let mut client = self.pool.get().await.map_err(pool_failure)?;
                    super::migrate::run(&mut client, &self.schema).await
                })
                .await
                .unwrap_or(Err(PgFailure::TimedOut(MIGRATE_TIMEOUT)));
                self.observe("migrate", started);
                result
            })
            .await
            .map(|_| ())
    }

    /// Runs `f` on a pooled connection, within the timeout, recording its time as
    /// `operation`. The first operation runs the migrations.
    pub async fn run<T, F, Fut>(&self, operation: &'static str, f: F) -> Result<T, PgFailure>
    where
        F: FnOnce(Object) -> Fut,
        Fut: Future<Output = Result<T, PgFailure>>,
    {
        let started = Instant::now();
        // Within the operation's bound: a request never waits long for a migration (another
        // replica's, under the lock); it fails, takes its policy, and a later one migrates.
        let result = tokio::time::timeout(self.timeout, async {
            self.migrate().await?;
            let client = self.pool.get().await.map_err(pool_failure)?;
            f(client).await
        })
        .await
        .unwrap_or(Err(PgFailure::TimedOut(self.timeout)));
        self.observe(operation, started);
        result
    }

    /// One round trip (`SELECT 1`): the probe behind readiness and the health gauge.
    pub async fn probe(&self) -> Result<(), PgFailure> {
        self.run("probe", |c| async move {
            c.simple_query("SELECT 1").await?;
            Ok(())
        })
        .await
    }

    fn observe(&self, operation: &str, started: Instant) {
        if let Some(metrics) = &self.metrics {
            metrics.observe(operation, started.elapsed());
        }
    }
}

/// Migrations may wait for another replica's (under the advisory lock): longer than one
/// statement.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(30);

fn pool_failure(e: deadpool_postgres::PoolError) -> PgFailure {
    match e {
        deadpool_postgres::PoolError::Backend(e) => PgFailure::from(e),
        other => PgFailure::Db(other.to_string()),
    }
}

/// rustls with the webpki roots and the ring provider, as payguard's other TLS clients.
fn tls() -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}
