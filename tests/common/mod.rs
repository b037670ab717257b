//! Shared helpers for integration tests: start guestgate in process on 127.0.0.1:0 in front of
//! a fake upstream, and a raw WebSocket client that can send any bytes (for protocol
//! violations) and read frames back.

#![allow(dead_code)]

pub mod captured_log;
pub mod page;

// Not every test binary that includes `common` captures its log.
#[allow(unused_imports)]
pub use captured_log::CapturedLog;

use std::net::SocketAddr;
use std::time::Duration;

use guestgate::app::{self, Running};
use guestgate::config::Config;
use guestgate::mock::{FakeBehavior, FakeUpstream, FakeUpstreamHandle};
use guestgate::ws::frame::{self, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every test step is bounded by this.
pub const STEP: Duration = Duration::from_secs(10);

/// A masking key for frames the raw client sends.
pub const MASK: Option<[u8; 4]> = Some([0x12, 0x34, 0x56, 0x78]);

/// Starts a fake upstream with `behavior` on 127.0.0.1:0.
pub async fn fake(behavior: FakeBehavior) -> FakeUpstreamHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    FakeUpstream::start(listener, behavior)
}

/// A one-route config in front of `upstream`, all listeners on 127.0.0.1:0.
pub fn config_for(upstream: &str) -> Config {
    let mut c = Config::one_liner("127.0.0.1:0".parse().unwrap(), upstream.parse().unwrap());
    c.server.admin_listen = "127.0.0.1:0".parse().unwrap();
    c.server.shutdown_grace = Duration::from_secs(3);
    c
}

/// Starts guestgate with `config`.
pub async fn gateway(config: &Config) -> Running {
    app::start(config, None).await.expect("guestgate starts")
}

/// A WebSocket client speaking raw bytes after a real upgrade.
pub struct RawClient {
    pub tcp: TcpStream,
    pub response_head: String,
}

impl RawClient {
    /// Connects to `/ws` and upgrades with optional extra header lines.
    pub async fn connect(addr: SocketAddr, extra_headers: &str) -> RawClient {
        Self::connect_path(addr, "/ws", extra_headers).await
    }

    /// Connects to `path` (with any query) and upgrades.
    pub async fn connect_path(addr: SocketAddr, path: &str, extra_headers: &str) -> RawClient {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra_headers}\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tokio::time::timeout(STEP, tcp.read(&mut byte))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(n, 1, "connection closed during the handshake");
            head.push(byte[0]);
        }
        let response_head = String::from_utf8(head).unwrap();
        assert!(response_head.starts_with("HTTP/1.1 101"), "{response_head}");
        RawClient { tcp, response_head }
    }

    /// Sends one frame, masked as a browser must (or not, with `mask: None`).
    pub async fn send(&mut self, fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
        let mut bytes = Vec::new();
        encode(&mut bytes, fin, opcode, payload, mask);
        self.tcp.write_all(&bytes).await.unwrap();
    }

    /// Reads one frame: (opcode, payload). None on EOF.
    pub async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 2];
        match tokio::time::timeout(STEP, self.tcp.read_exact(&mut head))
            .await
            .expect("read timed out")
        {
            Ok(_) => {}
            Err(_) => return None,
        }
        let mut len = u64::from(head[1] & 0x7f);
        if len == 126 {
            let mut ext = [0u8; 2];
            self.tcp.read_exact(&mut ext).await.ok()?;
            len = u64::from(u16::from_be_bytes(ext));
        } else if len == 127 {
            let mut ext = [0u8; 8];
            self.tcp.read_exact(&mut ext).await.ok()?;
            len = u64::from_be_bytes(ext);
        }
        assert_eq!(head[1] & 0x80, 0, "server frames must not be masked");
        let mut payload = vec![0u8; len as usize];
        tokio::time::timeout(STEP, self.tcp.read_exact(&mut payload))
            .await
            .expect("read timed out")
            .ok()?;
        Some((head[0] & 0x0f, payload))
    }

    /// Reads frames until a close frame; returns its code and reason.
    pub async fn close_frame(&mut self) -> (u16, String) {
        loop {
            let (op, payload) = self
                .frame()
                .await
                .expect("connection ended without a close frame");
            if op == 8 {
                let code = frame::close_code(&payload).expect("close frame has a code");
                return (code, String::from_utf8(payload[2..].to_vec()).unwrap());
            }
        }
    }
}

/// A close payload.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// A plain HTTP GET on the admin listener: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(STEP, tcp.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Polls the admin listener's `/metrics` until `done` holds for its text and returns that
/// text; fails, naming `what` and showing the last text, if it does not hold within [`STEP`].
pub async fn metrics_when(admin: SocketAddr, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let text = http_get(admin, "/metrics").await.1;
        if done(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last /metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub mod faulty;
pub mod split_echo;

/// A log text without its ANSI colour sequences.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The word after `key` in `text` (e.g. `listen=` in the start-up log line).
pub fn after<'a>(text: &'a str, key: &str) -> &'a str {
    let start = text.find(key).unwrap() + key.len();
    text[start..].split_whitespace().next().unwrap()
}

/// The Genesys preset settings of a config's first route (panics on another kind of route).
pub fn genesys_mut(config: &mut Config) -> &mut guestgate::preset::genesys::GenesysConfig {
    match &mut config.routes[0].upstream {
        guestgate::config::UpstreamConfig::Preset(guestgate::preset::PresetConfig::Genesys(g)) => g,
        _ => panic!("the first route is not a Genesys route"),
    }
}
