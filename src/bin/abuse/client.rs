//! A deliberately low-level WebSocket client: the attacker needs to control every byte
//! (source address, when headers end, frame boundaries, FIN bits, RST instead of FIN), so this
//! speaks RFC 6455 directly over a `TcpStream` instead of going through tungstenite.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use guestgate::ws::frame;
use serde_json::Value;
use tokio::io::AsyncRead;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};

/// Where and how to open a browser connection.
#[derive(Debug, Clone)]
pub struct Target {
    /// guestgate's browser listener (loopback).
    pub addr: SocketAddr,
    /// The `Origin` header browsers send.
    pub origin: String,
}

/// Why a client step failed; the text says what was attempted.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A socket call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being attempted.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// guestgate answered the upgrade with something other than 101.
    #[error("upgrade refused: {0}")]
    Refused(String),
    /// A deadline passed.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// guestgate sent something unexpected.
    #[error("unexpected from guestgate: {0}")]
    Unexpected(String),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> ClientError {
    move |source| ClientError::Io { what, source }
}

/// Opens a TCP connection from `source` (any loopback address; `None` lets the kernel pick).
pub async fn tcp_connect(to: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, ClientError> {
    let socket = TcpSocket::new_v4().map_err(io("creating a socket"))?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(io("binding the source address"))?;
    }
    socket
        .connect(to)
        .await
        .map_err(io("connecting to guestgate"))
}

/// The bytes of an upgrade request for `path_and_query`.
pub fn upgrade_request(target: &Target, path_and_query: &str) -> String {
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: {}\r\n\r\n",
        target.addr, target.origin
    )
}

/// One frame from guestgate.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Raw opcode.
    pub opcode: u8,
    /// Payload (server frames are unmasked).
    pub payload: Vec<u8>,
}

impl Frame {
    /// The close code when this is a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8).then(|| frame::close_code(&self.payload).unwrap_or(1005))
    }
}

/// How a wait for the connection's end came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// guestgate sent a close frame with this code (1005 if it had none).
    Close(u16),
    /// The TCP connection ended without a close frame.
    Dropped,
    /// Still open at the deadline.
    StillOpen,
}

impl Ending {
    /// A short label for figures.
    pub fn label(self) -> String {
        match self {
            Ending::Close(c) => c.to_string(),
            Ending::Dropped => "dropped".into(),
            Ending::StillOpen => "open".into(),
        }
    }
}

/// An upgraded browser connection.
#[derive(Debug)]
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects, upgrades on `path_and_query`, and returns once the 101 has arrived.
    pub async fn open(
        target: &Target,
        path_and_query: &str,
        source: Option<IpAddr>,
        within: Duration,
    ) -> Result<Self, ClientError> {
        let run = async {
            let mut stream = tcp_connect(target.addr, source).await?;
            stream
                .write_all(upgrade_request(target, path_and_query).as_bytes())
                .await
                .map_err(io("writing the upgrade request"))?;
            let mut buf = Vec::with_capacity(1024);
            let end = loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end + 4;
                }
                let mut chunk = [0u8; 1024];
                let n = stream
                    .read(&mut chunk)
                    .await
                    .map_err(io("reading the upgrade response"))?;
                if n == 0 {
                    return Err(ClientError::Refused("connection closed".into()));
                }
                buf.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            if !head.starts_with("HTTP/1.1 101") {
                let status = head.lines().next().unwrap_or("").to_owned();
                return Err(ClientError::Refused(status));
            }
            buf.drain(..end);
            Ok(Client { stream, buf })
        };
        timeout(within, run)
            .await
            .map_err(|_| ClientError::Timeout("opening a browser connection"))?
    }

    /// Writes one masked frame.
    pub async fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> Result<(), ClientError> {
        let mut out = Vec::with_capacity(payload.len() + 14);
        frame::encode(&mut out, fin, opcode, payload, Some(rand::random()));
        self.stream
            .write_all(&out)
            .await
            .map_err(io("writing a frame"))
    }

    /// Sends a JSON text message in one frame.
    pub async fn send_json(&mut self, v: &Value) -> Result<(), ClientError> {
        self.send(true, 1, v.to_string().as_bytes()).await
    }

    /// Reads the next frame; `Ok(None)` when the stream ended.
    pub async fn read_frame(&mut self, within: Duration) -> Result<Option<Frame>, ClientError> {
        read_frame_from(&mut self.stream, &mut self.buf, within).await
    }

    /// Writes `bytes` (already framed) while reading what guestgate sends, until guestgate
    /// closes or drops the connection or `within` passes. A write that fails (guestgate reset
    /// the connection) ends the writing, not the watch.
    pub async fn send_watching(&mut self, bytes: &[u8], within: Duration) -> Watch {
        let (mut rd, mut wr) = self.stream.split();
        let write = async {
            let _ = wr.write_all(bytes).await;
        };
        watch(&mut rd, &mut self.buf, write, within).await
    }

    /// Splits into a reader that watches guestgate and a writer for the attack.
    pub fn into_split(self) -> (Reader, OwnedWriteHalf) {
        let (rd, wr) = self.stream.into_split();
        (Reader { rd, buf: self.buf }, wr)
    }

    /// Reads until a JSON text frame satisfies `want`; other frames are skipped.
    pub async fn wait_json(
        &mut self,
        within: Duration,
        want: impl Fn(&Value) -> bool,
    ) -> Result<Value, ClientError> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(left).await? {
                None => return Err(ClientError::Unexpected("connection ended".into())),
                Some(f) if f.opcode == 8 => {
                    return Err(ClientError::Unexpected(format!(
                        "close {}",
                        f.close_code().unwrap_or(1005)
                    )));
                }
                Some(f) if f.opcode == 1 => {
                    if let Ok(v) = serde_json::from_slice::<Value>(&f.payload)
                        && want(&v)
                    {
                        return Ok(v);
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// Waits for guestgate's `SessionReady` greeting; returns its body.
    pub async fn session_ready(&mut self, within: Duration) -> Result<Value, ClientError> {
        let v = self
            .wait_json(within, |v| v["class"] == "SessionReady")
            .await?;
        Ok(v["body"].clone())
    }

    /// Reads (and drops) frames until guestgate closes or ends the connection, or `within`
    /// passes.
    pub async fn wait_end(&mut self, within: Duration) -> Ending {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(left).await {
                Err(_) => return Ending::StillOpen,
                Ok(None) => return Ending::Dropped,
                Ok(Some(f)) => {
                    if let Some(code) = f.close_code() {
                        return Ending::Close(code);
                    }
                }
            }
        }
    }

    /// Ends the connection with a TCP RST (SO_LINGER 0), as a crashed or hostile browser.
    pub fn reset(self) {
        let _ = self.stream.set_zero_linger();
    }
}

/// The Genesys text message every scenario that needs a normal chat sends.
pub fn echo_request(text: &str) -> Value {
    serde_json::json!({"action": "echo", "message": {"type": "Text", "text": text}})
}

/// A JSON array `[0,0,...]` of exactly `len` bytes (at least 2): the hostile message,
/// as deep in elements as its size allows and cheap to build.
pub fn zero_array(len: usize) -> Vec<u8> {
    if len < 3 {
        return b"[]"[..len.min(2)].to_vec();
    }
    let mut out = Vec::with_capacity(len);
    out.push(b'[');
    // "[0" + ",0"*k + "]" is 3 + 2k bytes; an even length gets one space before the ']'.
    let body = len.saturating_sub(3);
    out.push(b'0');
    for _ in 0..body / 2 {
        out.extend_from_slice(b",0");
    }
    if body % 2 == 1 {
        out.push(b' ');
    }
    out.push(b']');
    out.truncate(len);
    out
}

/// The read half of a split [`Client`].
#[derive(Debug)]
pub struct Reader {
    rd: tokio::net::tcp::OwnedReadHalf,
    buf: Vec<u8>,
}

impl Reader {
    /// Runs `attack` while reading what guestgate sends; see [`watch`].
    pub async fn watch(&mut self, attack: impl Future<Output = ()>, within: Duration) -> Watch {
        watch(&mut self.rd, &mut self.buf, attack, within).await
    }
}

/// Encodes one masked client frame.
pub fn client_frame(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8]) {
    frame::encode(out, fin, opcode, payload, Some(rand::random()));
}

/// What a browser saw while it attacked.
#[derive(Debug, Clone)]
pub struct Watch {
    /// How the connection ended (or that it had not by the deadline).
    pub ending: Ending,
    /// Seconds from the start of the watch to the ending (or the deadline).
    pub secs: f64,
    /// Data frames received.
    pub frames: u64,
    /// `class` of every JSON frame guestgate wrote itself (`"type":"guestgate"`).
    pub guestgate_classes: Vec<String>,
}

/// Reads frames from `rd` while `attack` runs, until a close frame, the end of the stream or
/// `within`. The attack finishing does not end the watch.
pub async fn watch<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut Vec<u8>,
    attack: impl Future<Output = ()>,
    within: Duration,
) -> Watch {
    let started = Instant::now();
    let deadline = started + within;
    let mut frames = 0u64;
    let mut guestgate_classes = Vec::new();
    let ending = {
        let reading = async {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match read_frame_from(rd, buf, left).await {
                    Err(_) => return Ending::StillOpen,
                    Ok(None) => return Ending::Dropped,
                    Ok(Some(f)) => {
                        if let Some(code) = f.close_code() {
                            return Ending::Close(code);
                        }
                        if f.opcode == 1 || f.opcode == 2 {
                            frames += 1;
                        }
                        if f.opcode == 1
                            && let Ok(v) = serde_json::from_slice::<Value>(&f.payload)
                            && v["type"] == "guestgate"
                        {
                            guestgate_classes.push(v["class"].as_str().unwrap_or("").to_owned());
                        }
                    }
                }
            }
        };
        tokio::pin!(attack);
        tokio::pin!(reading);
        let mut attacking = true;
        loop {
            tokio::select! {
                _ = &mut attack, if attacking => attacking = false,
                e = &mut reading => break e,
            }
        }
    };
    Watch {
        ending,
        secs: started.elapsed().as_secs_f64(),
        frames,
        guestgate_classes,
    }
}

/// Reads one frame from `rd` (bytes already read are in `buf`); `Ok(None)` when the stream
/// ended.
pub async fn read_frame_from<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut Vec<u8>,
    within: Duration,
) -> Result<Option<Frame>, ClientError> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(h)) = frame::parse_header(buf) {
            let len = h.frame_len() as usize;
            if buf.len() >= len {
                let payload = buf[h.header_len..len].to_vec();
                buf.drain(..len);
                return Ok(Some(Frame {
                    opcode: h.opcode,
                    payload,
                }));
            }
        }
        let mut chunk = vec![0u8; 64 * 1024];
        match tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await {
            Err(_) => return Err(ClientError::Timeout("reading a frame")),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
