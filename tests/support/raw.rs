//! Raw TCP on both sides of payguard, for what a well-behaved HTTP client or server refuses to
//! send: malformed requests, slow clients, and an upstream that answers garbage or hangs up.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The longest any raw exchange in a test may take.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// One HTTP/1.1 message head and body as read off the wire.
#[derive(Debug, Clone)]
pub struct Message {
    pub head: String,
    pub body: Vec<u8>,
}

impl Message {
    /// The status code of a response head.
    pub fn status(&self) -> u16 {
        self.head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {:?}", self.head))
    }

    /// A header's value (first of that name, case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one message framed by `Content-Length` (or none: no body). `None` when the peer
/// closed before a complete head.
pub async fn read_message(stream: &mut (impl AsyncRead + Unpin)) -> Option<Message> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut message = Message {
        head,
        body: buf[head_end..].to_vec(),
    };
    let length: usize = message
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while message.body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        message.body.extend_from_slice(&chunk[..n]);
    }
    Some(message)
}

/// Sends `bytes` on a fresh connection and reads one response.
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Message {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream.write_all(bytes).await.expect("writes");
    tokio::time::timeout(PATIENCE, read_message(&mut stream))
        .await
        .expect("a reply in time")
        .expect("a complete reply")
}

/// Reads until the peer closes, or fails after `within`. Returns what arrived before the
/// close; a reset counts as a close.
pub async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>, ()> {
    let mut all = Vec::new();
    let mut chunk = [0u8; 8192];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .map_err(|_| ())?;
    Ok(all)
}

/// What a [`RawUpstream`] does with one connection, after reading one request from it.
#[derive(Debug, Clone)]
pub enum Script {
    /// Write these bytes, then close.
    Reply(Vec<u8>),
    /// Close without answering.
    Hangup,
}

/// A scripted upstream over raw TCP: connection `n` follows `script(n)`, and every request it
/// read is kept, exactly as it arrived.
pub struct RawUpstream {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Message>>>,
}

impl RawUpstream {
    pub async fn spawn(script: impl Fn(usize) -> Script + Send + Sync + 'static) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("has an address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let script = Arc::new(script);
        tokio::spawn(async move {
            for n in 0.. {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (seen, script) = (seen.clone(), script.clone());
                tokio::spawn(async move {
                    let Some(request) = read_message(&mut stream).await else {
                        return;
                    };
                    seen.lock().unwrap().push(request);
                    if let Script::Reply(bytes) = script(n) {
                        let _ = stream.write_all(&bytes).await;
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        RawUpstream { addr, requests }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Message> {
        self.requests.lock().unwrap().clone()
    }
}

/// A small, well-formed JSON reply that closes the connection.
pub fn ok_reply(json: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
        json.len()
    )
    .into_bytes()
}
