//! The `[postgres]` table: the PostgreSQL database that holds the idempotency records, the
//! keyless bindings and the resolver's journal with `[idempotency] store = "postgres"`, shared
//! by every replica.
//!
//! The URL is libpq's (`postgres://user@host:5432/db?sslmode=require`). TLS is used when the
//! URL asks for it with `sslmode=require`, through rustls with the webpki roots, and then the
//! server's certificate is always verified (libpq's `verify-full`); without `sslmode` or with
//! `sslmode=disable` the connection is plain TCP. `sslmode=prefer` is refused: with rustls it
//! would either verify (and so be `require`) or silently downgrade, and a config should say
//! which it means. The password may sit in the URL, but a Kubernetes deployment names an
//! environment variable in `password_env` (filled from a Secret) so the ConfigMap holds none;
//! the typed [`PostgresUrl`] hides a password in its `Debug` either way.

use std::time::Duration;

use serde::Deserialize;

use super::duration;
use crate::idempotency::postgres::{PostgresSpec, PostgresUrl};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPostgres {
    pub url: String,
    pub password_env: Option<String>,
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    #[serde(default = "default_statement_timeout", with = "duration")]
    pub statement_timeout: Duration,
    #[serde(default = "default_schema")]
    pub schema: String,
}

fn default_pool_size() -> usize {
    8
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
/// A store operation is a short transaction on one or two rows and a durable commit: well
/// under 10 ms on a healthy primary. One that takes this long means the database is in
/// trouble, and the request should take its failure policy instead of waiting.
fn default_statement_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_schema() -> String {
    "payguard".into()
}

pub(super) fn spec(raw: &RawPostgres, issue: &mut impl FnMut(String, String)) -> PostgresSpec {
    let tls = match check_url(&raw.url) {
        Ok(tls) => tls,
        Err(e) => {
            issue("postgres.url".into(), e);
            false
        }
    };
    if raw.password_env.as_deref().is_some_and(str::is_empty) {
        issue("postgres.password_env".into(), "must not be empty".into());
    }
    if !valid_schema(&raw.schema) {
        issue(
            "postgres.schema".into(),
            "must be 1-63 characters of a-z, 0-9 and _, starting with a letter or _".into(),
        );
    }
    let timeouts = [
        (
            "connect_timeout",
            raw.connect_timeout,
            Duration::from_secs(60),
        ),
        (
            "statement_timeout",
            raw.statement_timeout,
            Duration::from_secs(30),
        ),
    ];
    duration::check_timeouts("postgres", &timeouts, issue);
    if raw.pool_size == 0 || raw.pool_size > 256 {
        issue("postgres.pool_size".into(), "must be from 1 to 256".into());
    }
    PostgresSpec {
        url: PostgresUrl(raw.url.clone()),
        password_env: raw.password_env.clone(),
        pool_size: raw.pool_size,
        connect_timeout: raw.connect_timeout,
        statement_timeout: raw.statement_timeout,
        schema: raw.schema.clone(),
        tls,
    }
}

/// A schema name payguard may splice into its statements unquoted.
fn valid_schema(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    first_ok
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Accepts a `postgres://` or `postgresql://` URL the driver can parse; returns whether it asks
/// for TLS. Messages never repeat the URL (it may hold a password).
fn check_url(url: &str) -> Result<bool, String> {
    let scheme = url.split("://").next().unwrap_or_default();
    if !url.contains("://") || (scheme != "postgres" && scheme != "postgresql") {
        return Err(format!(
            "scheme must be postgres or postgresql, got {scheme:?}"
        ));
    }
    let parsed: tokio_postgres::Config = url.parse().map_err(|_| {
        "not a valid PostgreSQL URL (postgres://user@host:5432/db?sslmode=require)".to_owned()
    })?;
    if url.contains("sslmode=prefer") {
        return Err(
            "sslmode=prefer is not supported: say sslmode=require (TLS, certificate verified) \
             or sslmode=disable"
                .into(),
        );
    }
    if parsed.get_dbname().is_none() {
        return Err("names no database (postgres://user@host:5432/DATABASE)".into());
    }
    Ok(parsed.get_ssl_mode() == tokio_postgres::config::SslMode::Require)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(check_url("postgres://u@127.0.0.1:5432/db"), Ok(false));
        assert_eq!(
            check_url("postgresql://u:pw@db.example/pay?sslmode=require"),
            Ok(true)
        );
        assert!(check_url("redis://x/db").unwrap_err().contains("scheme"));
        assert!(check_url("postgres://h/db?sslmode=prefer").is_err());
        assert!(check_url("postgres://h").unwrap_err().contains("database"));
        let bad = check_url("postgres://u:hunter2@h:notaport/db").unwrap_err();
        assert!(!bad.contains("hunter2"), "{bad}");
    }

    #[test]
    fn schemas_are_plain_identifiers() {
        assert!(valid_schema("payguard") && valid_schema("_pg2"));
        for bad in [
            "",
            "Payguard",
            "1pg",
            "pay-guard",
            "x; drop",
            &"a".repeat(64),
        ] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }

    #[test]
    fn problems_name_the_key_and_line() {
        let text = "[upstream]\nurl = \"http://127.0.0.1:1\"\n[postgres]\nurl = \"http://x\"\n\
                    pool_size = 0\nschema = \"Bad\"\n[idempotency]\nstore = \"postgres\"\n";
        let err = crate::config::Config::parse(text, "t", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 4: `postgres.url`: scheme"), "{err}");
        assert!(err.contains("line 5: `postgres.pool_size`"), "{err}");
        assert!(err.contains("line 6: `postgres.schema`"), "{err}");
        let no_table =
            "[upstream]\nurl = \"http://127.0.0.1:1\"\n[idempotency]\nstore = \"postgres\"\n";
        let err = crate::config::Config::parse(no_table, "t", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 4: `idempotency.store`: \"postgres\" needs a [postgres]"),
            "{err}"
        );
        let unknown = "[upstream]\nurl = \"http://127.0.0.1:1\"\n[postgres]\n\
                       url = \"postgres://h/db\"\nhost = \"h\"\n";
        let err = crate::config::Config::parse(unknown, "t", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 5") && err.contains("unknown field"),
            "{err}"
        );
    }

    #[test]
    fn the_password_is_not_shown() {
        let url = PostgresUrl("postgres://pay:hunter2@db:5432/pay?sslmode=require".into());
        let shown = format!("{url:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(shown, "postgres://***@db:5432/pay?sslmode=require");
    }
}
