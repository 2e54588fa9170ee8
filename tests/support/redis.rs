//! A real `redis-server` of the test's own, on a free port, without persistence, that the test
//! can `kill -9` and restart on the same port. Tests that need it fail (never skip) when it
//! cannot start: `tests/run.sh` installs Debian's `redis-server` when it is missing.

use std::net::TcpListener;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use payguard::shared::RedisPool;
use payguard::shared::{RedisSpec, RedisUrl};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub async fn start() -> RedisServer {
        // A port the OS just handed out and released; another process could take it in
        // between, so a failed start is retried on a new port.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut server = RedisServer { port, child: None };
            if server.launch().await {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A pool of payguard's own on this server, its keys under `prefix` (a fresh prefix per
    /// case gives an empty store or journal).
    pub fn pool(&self, prefix: &str) -> Arc<RedisPool> {
        let spec = RedisSpec {
            url: RedisUrl(self.url()),
            password_env: None,
            key_prefix: prefix.to_owned(),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(2),
            pool_size: 2,
            replicas: 1,
        };
        Arc::new(RedisPool::new(&spec).expect("a pool for the test server"))
    }

    /// SIGKILL: no shutdown, no save (there is none configured anyway).
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("redis-server is killed");
        }
    }

    /// Starts the server again on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill9().await;
        // The port is free again once the killed process is reaped; retry briefly if not.
        let started = Instant::now();
        while !self.launch().await {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not restart on port {}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn launch(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => panic!(
                "cannot run redis-server ({e}); tests/run.sh installs it (Debian: redis-server)"
            ),
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // exited: most likely the port was taken
            }
            if ping(self.port).await {
                self.child = Some(child);
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill().await;
        false
    }
}

/// Whether a Redis on `port` answers `PING`.
pub async fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut reply)).await,
        Ok(Ok(_)) if &reply == b"+PONG\r\n"
    )
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }
}
