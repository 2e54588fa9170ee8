//! The schema's migrations: versioned SQL files (`migrations/NNNN_*.sql`, compiled in), run at
//! start so a new payguard brings its tables with it.
//!
//! Replicas start together in a rolling deploy, so they must not race: everything runs in
//! one transaction that first takes `pg_advisory_xact_lock` on the schema's name. The first
//! replica creates the schema, its `schema_version` table and applies what is missing; the
//! others wait on the lock, then find nothing left to do. DDL is transactional in
//! PostgreSQL, so a migration that fails (or a replica killed mid-way) leaves nothing
//! half-applied. A database already at a version this payguard does not know (a newer
//! payguard migrated it, and this one is a rollback) is refused with a message saying so:
//! an older payguard must not write rows it may misread.

use deadpool_postgres::Object;

use super::pool::PgFailure;

/// Every migration, in order: its version and its SQL (run with `search_path` set to the
/// schema, so the files name tables unqualified).
pub const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("migrations/0001_init.sql"))];

/// The newest version this payguard knows.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// Brings `schema` to [`latest`], or refuses a newer one.
pub async fn run(client: &mut Object, schema: &str) -> Result<(), PgFailure> {
    let txn = client.transaction().await?;
    // Keyed by the schema, so two payguard deployments in two schemas of one database do not
    // wait for each other.
    txn.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("payguard-migrate:{schema}")],
    )
    .await?;
    txn.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_version (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );
         SET LOCAL search_path TO {schema};"
    ))
    .await?;
    let row = txn
        .query_one("SELECT max(version) FROM schema_version", &[])
        .await?;
    let found: i32 = row.get::<_, Option<i32>>(0).unwrap_or(0);
    if found > latest() {
        return Err(PgFailure::SchemaTooNew {
            schema: schema.to_owned(),
            found,
            known: latest(),
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        txn.batch_execute(sql).await?;
        txn.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[version],
        )
        .await?;
        tracing::info!(schema, version, "applied a PostgreSQL schema migration");
    }
    txn.commit().await?;
    Ok(())
}
