//! `FakeUpstream`: a programmable WebSocket server that plays a misbehaving (or well-behaved)
//! upstream for guestgate's tests, benches and demo, and records what reached it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;
use tungstenite::handshake::server::{Request, Response};
use tungstenite::protocol::CloseFrame;

use super::support::{GENESYS_FORBIDDEN_BODY, Lifecycle, Log, UpgradeRequest, WaitTimeout};
use super::support::{lock, refusal, ws_config};

/// How the fake treats each new connection. Read once per connection when it is accepted,
/// so [`FakeUpstreamHandle::set_behavior`] affects later connections only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FakeBehavior {
    /// Echo text and binary messages back as the same type; answer pings (tungstenite does)
    /// and answer a close with the same code and reason.
    #[default]
    Echo,
    /// Answer the HTTP upgrade with this status and body instead of 101.
    RefuseUpgrade {
        /// HTTP status, e.g. 403. A 2xx is turned into 500 (tungstenite forbids it).
        status: u16,
        /// Response body, sent with a Content-Length.
        body: String,
    },
    /// Accept, then at once send a close frame with this code and reason.
    AcceptThenClose {
        /// Close code, sent as is (even codes a real endpoint may not send).
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Accept, then close the TCP connection without any close frame.
    AcceptThenDrop,
    /// Accept, then send a frame header announcing a 1000-byte binary payload, only 10 bytes
    /// of it, and close TCP.
    DropMidMessage,
    /// Wait this long before answering the upgrade, then echo.
    HandshakeDelay(Duration),
    /// Accept and then never read or write anything (not even pongs) until shutdown.
    Silent,
}

impl FakeBehavior {
    /// The refusal Genesys gives an unknown deployment: 403 with its "explicit deny" body.
    pub fn genesys_forbidden() -> Self {
        FakeBehavior::RefuseUpgrade {
            status: 403,
            body: GENESYS_FORBIDDEN_BODY.to_owned(),
        }
    }
}

/// Entry point for starting a [`FakeUpstream`]; see [`FakeUpstream::start`].
#[derive(Debug)]
pub struct FakeUpstream;

impl FakeUpstream {
    /// Starts serving on an already-bound listener (tests bind `127.0.0.1:0`). Must be called
    /// inside a tokio runtime. The server stops on [`FakeUpstreamHandle::shutdown`] or when
    /// the last handle clone is dropped.
    pub fn start(listener: TcpListener, behavior: FakeBehavior) -> FakeUpstreamHandle {
        let shared = Arc::new(Shared {
            behavior: Mutex::new(behavior),
            accepted: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            requests: Log::new("upgrade requests"),
            received: Log::new("messages"),
        });
        let s = shared.clone();
        let life = Lifecycle::spawn(listener, move |stream| serve(stream, s.clone()));
        FakeUpstreamHandle {
            shared,
            life: Arc::new(life),
        }
    }
}

#[derive(Debug)]
struct Shared {
    behavior: Mutex<FakeBehavior>,
    accepted: AtomicUsize,
    refused: AtomicUsize,
    requests: Log<UpgradeRequest>,
    /// (connection index, message) in arrival order.
    received: Log<(usize, Message)>,
}

/// Controls a running [`FakeUpstream`] and reads what it observed. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FakeUpstreamHandle {
    shared: Arc<Shared>,
    life: Arc<Lifecycle>,
}

impl FakeUpstreamHandle {
    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.life.addr()
    }

    /// `ws://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr())
    }

    /// Changes the behaviour for connections accepted from now on.
    pub fn set_behavior(&self, behavior: FakeBehavior) {
        *lock(&self.shared.behavior) = behavior;
    }

    /// The behaviour new connections get.
    pub fn behavior(&self) -> FakeBehavior {
        lock(&self.shared.behavior).clone()
    }

    /// How many upgrades completed with 101.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// How many upgrade attempts were refused or failed.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Every upgrade request seen (accepted or refused), in arrival order.
    pub fn requests(&self) -> Vec<UpgradeRequest> {
        self.shared.requests.snapshot()
    }

    /// Every message received on any connection, in arrival order, including pings, pongs
    /// and close frames.
    pub fn received(&self) -> Vec<Message> {
        self.shared
            .received
            .snapshot()
            .into_iter()
            .map(|(_, m)| m)
            .collect()
    }

    /// Messages received on the `conn`-th accepted connection (0-based).
    pub fn received_on(&self, conn: usize) -> Vec<Message> {
        let all = self.shared.received.snapshot();
        all.into_iter()
            .filter(|(c, _)| *c == conn)
            .map(|(_, m)| m)
            .collect()
    }

    /// Waits until at least `n` messages have been received in total, then returns them all.
    pub async fn wait_for_received(
        &self,
        n: usize,
        within: Duration,
    ) -> Result<Vec<Message>, WaitTimeout> {
        let all = self.shared.received.wait_for(n, within).await?;
        Ok(all.into_iter().map(|(_, m)| m).collect())
    }

    /// Waits until at least `n` upgrade requests have arrived, then returns them all.
    pub async fn wait_for_requests(
        &self,
        n: usize,
        within: Duration,
    ) -> Result<Vec<UpgradeRequest>, WaitTimeout> {
        self.shared.requests.wait_for(n, within).await
    }

    /// Stops accepting, closes every connection (without close frames) and waits for the
    /// server's tasks to end.
    pub async fn shutdown(&self) {
        self.life.shutdown().await;
    }
}

/// Serves one TCP connection according to the behaviour current at accept time.
async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let behavior = lock(&shared.behavior).clone();
    if let FakeBehavior::HandshakeDelay(delay) = behavior {
        // The request waits unread in the socket buffer; nothing is answered until then.
        tokio::time::sleep(delay).await;
    }
    let Some(ws) = handshake(stream, &shared, &behavior).await else {
        return;
    };
    let conn = shared.accepted.fetch_add(1, Ordering::SeqCst);
    match behavior {
        FakeBehavior::Echo | FakeBehavior::HandshakeDelay(_) => echo(ws, conn, &shared).await,
        FakeBehavior::AcceptThenClose { code, reason } => {
            close_then_drain(ws, conn, &shared, code, reason).await
        }
        FakeBehavior::AcceptThenDrop => drop(ws),
        FakeBehavior::DropMidMessage => drop_mid_message(ws).await,
        FakeBehavior::Silent => {
            let _held = ws;
            std::future::pending::<()>().await
        }
        FakeBehavior::RefuseUpgrade { .. } => {}
    }
}

/// Runs the server handshake, recording the request; `None` if refused or failed.
async fn handshake(
    stream: TcpStream,
    shared: &Shared,
    behavior: &FakeBehavior,
) -> Option<WebSocketStream<TcpStream>> {
    // The Err type is tungstenite's, so its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, mut resp: Response| {
        shared.requests.push(UpgradeRequest::from_request(req));
        if let FakeBehavior::RefuseUpgrade { status, body } = behavior {
            return Err(refusal(*status, body));
        }
        // Like most servers, pick the first offered subprotocol so strict clients accept us.
        let offered = req
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok());
        if let Some(first) = offered.and_then(|v| v.split(',').next()) {
            if let Ok(value) = first.trim().parse() {
                resp.headers_mut().insert("sec-websocket-protocol", value);
            }
        }
        Ok(resp)
    };
    match tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config())).await
    {
        Ok(ws) => Some(ws),
        Err(e) => {
            tracing::debug!(error = %e, "fake upstream did not complete the upgrade");
            shared.refused.fetch_add(1, Ordering::SeqCst);
            None
        }
    }
}

async fn echo(mut ws: WebSocketStream<TcpStream>, conn: usize, shared: &Shared) {
    while let Some(Ok(msg)) = ws.next().await {
        shared.received.push((conn, msg.clone()));
        if msg.is_close() {
            // tungstenite queued the same close as the reply; flush it and hang up.
            let _ = ws.flush().await;
            return;
        }
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            return;
        }
    }
}

async fn close_then_drain(
    mut ws: WebSocketStream<TcpStream>,
    conn: usize,
    shared: &Shared,
    code: u16,
    reason: String,
) {
    let frame = CloseFrame {
        code: code.into(),
        reason: reason.into(),
    };
    if ws.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    // Record the peer's close reply; give up after a while like a real server would.
    let drain = async {
        while let Some(Ok(msg)) = ws.next().await {
            shared.received.push((conn, msg));
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
}

async fn drop_mid_message(mut ws: WebSocketStream<TcpStream>) {
    // FIN + binary, 16-bit length 1000, then just 10 payload bytes.
    let mut bytes = vec![0x82, 126, 0x03, 0xE8];
    bytes.extend_from_slice(&[0xAB; 10]);
    let tcp = ws.get_mut();
    let _ = tcp.write_all(&bytes).await;
    let _ = tcp.flush().await;
}

#[cfg(test)]
#[path = "ws_server_tests.rs"]
mod tests;
