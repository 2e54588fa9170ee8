//! payguard as a real process, for tests that need signals: SIGTERM drains, SIGKILL crashes.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

pub const BIN: &str = env!("CARGO_BIN_EXE_payguard");

/// The binary the process tests run: `PAYGUARD_BIN` when set (e.g. the release build, to test
/// what ships), else the one cargo built for the tests.
pub fn bin() -> String {
    std::env::var("PAYGUARD_BIN").unwrap_or_else(|_| BIN.to_owned())
}

/// The shipped `config.toml` in `dir`, unchanged but for its upstream, its store file (in
/// `dir`) and its listeners (ephemeral loopback ports): what a user runs, against a double.
pub fn shipped_config_file(dir: &Path, upstream: &str) -> std::path::PathBuf {
    let mut table: toml::Table = toml::from_str(payguard::config::SHIPPED).unwrap();
    let mut set = |section: &str, key: &str, value: &str| {
        let toml::Value::Table(t) = table.get_mut(section).unwrap() else {
            panic!("{section} is a table")
        };
        t.insert(key.to_owned(), value.into());
    };
    set("upstream", "url", upstream);
    set(
        "idempotency",
        "path",
        &dir.join("store.redb").display().to_string(),
    );
    set("listen", "proxy", "127.0.0.1:0");
    set("listen", "admin", "127.0.0.1:0");
    let file = dir.join("config.toml");
    std::fs::write(&file, toml::to_string(&table).unwrap()).unwrap();
    file
}

/// A running `payguard run` and the addresses it logged.
pub struct Process {
    pub child: Child,
    pub proxy: String,
    pub admin: String,
    /// The log lines up to the start, "payguard is serving" included.
    pub started: Vec<String>,
    /// Every log line after the start, once the process has exited.
    pub log: JoinHandle<Vec<String>>,
}

/// Starts `payguard run --config <file>` and waits for it to log where it listens. The config
/// should listen on port 0 and log at info level.
pub async fn spawn_payguard(config: &Path) -> Process {
    spawn_payguard_with(config, &[], None).await
}

/// As [`spawn_payguard`], with extra environment variables, and every log line after the
/// start also sent to `tap` as it arrives (for tests that wait for a line).
pub async fn spawn_payguard_with(
    config: &Path,
    env: &[(&str, &str)],
    tap: Option<UnboundedSender<String>>,
) -> Process {
    let mut command = tokio::process::Command::new(bin());
    command
        .args(["run", "--config"])
        .arg(config)
        .envs(env.iter().copied());
    spawn_command(command, tap).await
}

/// Starts payguard from a prepared command (e.g. `ip netns exec NS payguard run ...`).
pub async fn spawn_command(
    mut command: tokio::process::Command,
    tap: Option<UnboundedSender<String>>,
) -> Process {
    let mut child = command
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("payguard starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let mut started = Vec::new();
    let (proxy, admin) = loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("payguard logs its addresses")
            .expect("stderr is readable")
            .expect("payguard is still running");
        started.push(line.clone());
        if line.contains("payguard is serving") {
            break (field(&line, "proxy="), field(&line, "admin="));
        }
    };
    // Keep reading the log so the child never blocks on a full pipe.
    let log = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(tap) = &tap {
                let _ = tap.send(line.clone());
            }
            all.push(line);
        }
        all
    });
    Process {
        child,
        proxy,
        admin,
        started,
        log,
    }
}

fn field(line: &str, name: &str) -> String {
    let start = line
        .find(name)
        .unwrap_or_else(|| panic!("{name} in {line}"))
        + name.len();
    line[start..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}
