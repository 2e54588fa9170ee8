//! PostgreSQL for the tests: a database of the test's own on the machine's shared server
//! (127.0.0.1:5432, trust auth), created fresh and dropped afterwards, or a whole cluster of
//! the test's own on a free port (`initdb` + `pg_ctl`) that the test may stop and start
//! without disturbing anyone else's. Tests that need either fail, never skip, when
//! PostgreSQL is missing: `tests/run.sh` installs and starts it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use payguard::idempotency::postgres::PgPool;
use payguard::idempotency::postgres::{PostgresSpec, PostgresUrl};

/// Debian's PostgreSQL binaries (initdb and pg_ctl are not on PATH there), of the newest
/// version installed.
fn bin_dir() -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (tests/run.sh installs Debian's postgresql)");
    let newest = versions
        .filter_map(|v| v.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .expect("a PostgreSQL version under /usr/lib/postgresql");
    PathBuf::from(format!("/usr/lib/postgresql/{newest}/bin"))
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// `psql` as the `postgres` superuser against `port`, on database `postgres`.
fn psql(port: u16, sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .output()
        .map_err(|e| format!("cannot run psql ({e}); tests/run.sh installs postgresql"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// A database of the test's own, dropped (connections and all) when this is dropped.
pub struct TestDb {
    pub name: String,
    port: u16,
}

impl TestDb {
    /// A fresh database on the shared server at 127.0.0.1:5432.
    pub fn create() -> TestDb {
        TestDb::on(5432)
    }

    /// A fresh database on the server at `port`.
    pub fn on(port: u16) -> TestDb {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("payguard_t_{}_{n}", std::process::id());
        if let Err(e) = psql(port, &format!("CREATE DATABASE {name}")) {
            panic!("PostgreSQL on 127.0.0.1:{port} must be up for this test: {e}");
        }
        TestDb { name, port }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port, self.name)
    }

    /// A pool of payguard's own on this database, its tables in `schema`.
    pub fn pool(&self, schema: &str) -> Arc<PgPool> {
        Arc::new(PgPool::new(&spec(&self.url(), schema), None).expect("a pool"))
    }

    /// Runs `sql` on this database as the superuser, as an operator's `psql` would.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", &self.name, "-v", "ON_ERROR_STOP=1", "-qAtc", sql])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = psql(
            self.port,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// The `[postgres]` table the tests use: short timeouts, so a failure shows quickly.
pub fn spec(url: &str, schema: &str) -> PostgresSpec {
    PostgresSpec {
        url: PostgresUrl(url.to_owned()),
        password_env: None,
        pool_size: 4,
        connect_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(2),
        schema: schema.to_owned(),
        tls: false,
    }
}

/// A PostgreSQL cluster of the test's own, in a temporary directory owned by the `postgres`
/// user (initdb refuses to run as root), listening on a free loopback port.
pub struct PgCluster {
    pub port: u16,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

/// Runs a PostgreSQL binary as the `postgres` user.
fn as_postgres(tool: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin_dir().join(tool))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {tool} ({e}); tests/run.sh installs postgresql"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "{tool}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let dir = tmp.path().join("data");
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(tmp.path())
            .status()
            .expect("chown runs");
        assert!(status.success(), "the postgres user must exist");
        let data = dir.display().to_string();
        as_postgres(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            // A port just handed out and released may be taken in between: try another.
            if pg_ctl_start(&dir, port).is_ok() {
                return PgCluster {
                    port,
                    dir,
                    _tmp: tmp,
                };
            }
        }
        panic!("a private PostgreSQL cluster did not start on any of 5 free ports");
    }

    /// A fast shutdown (connections are cut, as in a restart of the service).
    pub fn stop(&self) {
        let data = self.dir.display().to_string();
        as_postgres("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts it again on the same port, with its data.
    pub fn restart(&self) {
        pg_ctl_start(&self.dir, self.port).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Starts the cluster in `dir` on `port`, its socket beside the data directory.
fn pg_ctl_start(dir: &Path, port: u16) -> Result<(), String> {
    let data = dir.display().to_string();
    let sockets = dir.parent().unwrap_or(dir).display().to_string();
    let options = format!("-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off");
    let log = format!("{data}/log");
    as_postgres(
        "pg_ctl",
        &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
    )
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.display().to_string();
        let _ = as_postgres("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
    }
}

/// `n` payguard processes sharing the database at `url`: the PostgreSQL store, ephemeral
/// ports, info logs, `idempotency` keys and `extra` TOML (tables the base does not have).
pub async fn start_replicas(
    n: usize,
    provider_url: &str,
    url: &str,
    idempotency: &str,
    extra: &str,
) -> (Vec<super::process::Process>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let toml = format!(
        "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [upstream]\nurl = \"{provider_url}\"\n[log]\nlevel = \"info\"\n\
         [postgres]\nurl = \"{url}\"\nstatement_timeout = \"500ms\"\nconnect_timeout = \"500ms\"\n\
         [idempotency]\nstore = \"postgres\"\n{idempotency}\n{extra}\n"
    );
    std::fs::write(&file, toml).unwrap();
    let mut replicas = Vec::with_capacity(n);
    for _ in 0..n {
        replicas.push(super::process::spawn_payguard(&file).await);
    }
    (replicas, dir)
}
