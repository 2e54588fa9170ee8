//! A TCP proxy of our own that resets connections part way through an HTTP/1.1 message, which
//! Toxiproxy-style toxics (noxious) cannot do: they delay, slice, stall and close, but a close
//! is an orderly FIN. A reset here is a real RST: the socket is closed with `SO_LINGER` 0.
//!
//! The cut is placed by message structure, not by a byte count guessed in advance: after the
//! head (`\r\n\r\n`) plus `body_bytes` of the body, in the direction chosen. Each connection
//! reads the mode when it starts, so a test switches faults on and off between requests;
//! payguard should then open a fresh connection per attempt (`pool_max_idle_per_host = 0`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Which message to cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// payguard's request to the provider: the provider never sees it whole.
    Request,
    /// The provider's response: it has executed, payguard gets part of the answer.
    Response,
}

/// What the proxy does to each new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Forward the message's head and `body_bytes` of its body, then reset both sides.
    ResetAfter {
        direction: Direction,
        body_bytes: usize,
    },
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    resets: Arc<AtomicU64>,
}

impl FaultProxy {
    /// Listens on `127.0.0.1:0`, forwarding to `upstream`.
    pub async fn spawn(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(Mode::Pass));
        let resets = Arc::new(AtomicU64::new(0));
        let (m, r) = (mode.clone(), resets.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mode = *m.lock().unwrap_or_else(PoisonError::into_inner);
                tokio::spawn(relay(client, upstream, mode, r.clone()));
            }
        });
        FaultProxy { addr, mode, resets }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner) = mode;
    }

    /// How many connections were reset so far.
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::SeqCst)
    }
}

/// How many bytes of a message may still pass before the cut.
struct Cut {
    seen: Vec<u8>,
    body_bytes: usize,
}

impl Cut {
    /// Of `chunk`, the bytes that may pass; `None` when the whole chunk may.
    fn allow(&mut self, chunk: &[u8]) -> Option<usize> {
        let before = self.seen.len();
        self.seen.extend_from_slice(chunk);
        let head_end = self.seen.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let limit = head_end + self.body_bytes;
        (self.seen.len() > limit).then(|| limit.saturating_sub(before))
    }
}

async fn relay(mut client: TcpStream, upstream: SocketAddr, mode: Mode, resets: Arc<AtomicU64>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        reset(client);
        return;
    };
    let (mut up, mut down) = match mode {
        Mode::Pass => (None, None),
        Mode::ResetAfter {
            direction,
            body_bytes,
        } => {
            let cut = || {
                Some(Cut {
                    seen: Vec::new(),
                    body_bytes,
                })
            };
            match direction {
                Direction::Request => (cut(), None),
                Direction::Response => (None, cut()),
            }
        }
    };
    let (mut a, mut b) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        // Each branch forwards what may pass; `true` means the cut was reached.
        let cut_reached = tokio::select! {
            n = client.read(&mut a) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => forward(&a[..n], &mut server, up.as_mut()).await,
            },
            n = server.read(&mut b) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => forward(&b[..n], &mut client, down.as_mut()).await,
            },
        };
        match cut_reached {
            Ok(false) => continue,
            Ok(true) => {
                resets.fetch_add(1, Ordering::SeqCst);
                // Let the bytes that passed reach the other end before the RST overtakes them.
                tokio::time::sleep(Duration::from_millis(20)).await;
                reset(client);
                reset(server);
                return;
            }
            Err(_) => break,
        }
    }
}

/// Writes the part of `chunk` that may pass; `Ok(true)` when the cut is reached.
async fn forward(chunk: &[u8], to: &mut TcpStream, cut: Option<&mut Cut>) -> std::io::Result<bool> {
    let allowed = cut.and_then(|c| c.allow(chunk));
    let pass = allowed.unwrap_or(chunk.len());
    to.write_all(&chunk[..pass]).await?;
    Ok(allowed.is_some())
}

/// Closes with an RST instead of a FIN.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}
