//! `FakeGenesys`: an in-process stand-in for Genesys Cloud Web Messaging's guest socket
//! (`/v1?deploymentId=..`), faithful enough to exercise the `genesys-web-messaging` preset:
//! 403 at upgrade for unknown deployments or origins, `configureSession` first, sessions that
//! survive reconnects by token, echoes, a fake agent, the 2-per-second message limit and
//! session expiry. The same listener answers plain `GET`s of each deployment's public
//! `config.json` (`public_config`), so diagnosis can be tested against it.

mod http;
mod protocol;
mod public_config;

pub use public_config::{DeploymentStatus, DisconnectType, FakeDeployment, FileUploadMode};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tungstenite::Message;
use tungstenite::handshake::server::{Request, Response};
use tungstenite::protocol::CloseFrame;

use super::support::{GENESYS_FORBIDDEN_BODY, Lifecycle, UpgradeRequest, WaitTimeout};
use super::support::{lock, refusal, ws_config};
use protocol::{Conn, State};

/// The deployment id [`FakeGenesysConfig::default`] accepts.
pub const DEFAULT_DEPLOYMENT_ID: &str = "fake-deployment";

/// How long the fake agent "types" before replying.
pub const AGENT_REPLY_DELAY: Duration = Duration::from_millis(100);

/// Settings for a [`FakeGenesys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeGenesysConfig {
    /// Deployment ids that exist; any other `deploymentId` gets 403 at upgrade.
    pub deployment_ids: Vec<String>,
    /// Exact `Origin` values allowed; empty allows every origin (and none).
    pub allowed_origins: Vec<String>,
    /// Whether a fake agent answers each guest text (typing event, then a reply).
    pub agent_reply: bool,
    /// `onMessage` requests allowed per session per second; 0 disables the limit.
    pub rate_limit_per_sec: u32,
    /// Sessions expire this long after creation: `SessionExpiredEvent`, then close 1000.
    pub session_lifetime: Option<Duration>,
    /// How long the fake waits before answering each `configureSession` (upstream latency
    /// for set-up benchmarks); zero answers at once.
    pub configure_delay: Duration,
    /// Public settings per deployment id, served in `config.json`; a deployment in
    /// `deployment_ids` without an entry gets [`FakeDeployment::default`] (Active, the allowed
    /// origins above, auth off, no attachments). An entry for an id not in `deployment_ids`
    /// is never served.
    pub deployments: BTreeMap<String, FakeDeployment>,
}

impl Default for FakeGenesysConfig {
    /// One deployment ([`DEFAULT_DEPLOYMENT_ID`]), any origin, agent on, 2 msg/s, no expiry,
    /// no added latency.
    fn default() -> Self {
        FakeGenesysConfig {
            deployment_ids: vec![DEFAULT_DEPLOYMENT_ID.to_owned()],
            allowed_origins: Vec::new(),
            agent_reply: true,
            rate_limit_per_sec: 2,
            session_lifetime: None,
            configure_delay: Duration::ZERO,
            deployments: BTreeMap::new(),
        }
    }
}

/// Entry point for starting a fake Genesys; see [`FakeGenesys::start`].
#[derive(Debug)]
pub struct FakeGenesys;

impl FakeGenesys {
    /// Starts serving on an already-bound listener. Must be called inside a tokio runtime.
    pub fn start(listener: TcpListener, config: FakeGenesysConfig) -> FakeGenesysHandle {
        let state = Arc::new(State::new(config));
        let s = state.clone();
        let life = Lifecycle::spawn(listener, move |stream| serve(stream, s.clone()));
        FakeGenesysHandle {
            state,
            life: Arc::new(life),
        }
    }
}

/// Reads what a running [`FakeGenesys`] observed and stops it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FakeGenesysHandle {
    state: Arc<State>,
    life: Arc<Lifecycle>,
}

impl FakeGenesysHandle {
    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.life.addr()
    }

    /// The socket URL without a deployment: `ws://127.0.0.1:PORT/v1`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1", self.addr())
    }

    /// The full guest socket URL for a deployment: `ws://127.0.0.1:PORT/v1?deploymentId=..`.
    pub fn url_for(&self, deployment_id: &str) -> String {
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("deploymentId", deployment_id)
            .finish();
        format!("{}?{q}", self.url())
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &FakeGenesysConfig {
        &self.state.config
    }

    /// Upgrades accepted with 101.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Upgrades refused (403) or failed.
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// Sockets upgraded and not yet ended (abuse checks: no upstream socket outlives its
    /// browser).
    pub fn open_sockets(&self) -> usize {
        self.state.drops.receiver_count()
    }

    /// Sessions ever created by a `configureSession` with a new token (resumes not counted).
    pub fn sessions_created(&self) -> usize {
        self.state.session_count()
    }

    /// How many request frames arrived, on any socket (cheaper than `requests().len()`).
    pub fn request_count(&self) -> usize {
        self.state.requests.len()
    }

    /// Every upgrade request, accepted or refused, in arrival order.
    pub fn upgrade_requests(&self) -> Vec<UpgradeRequest> {
        self.state.upgrades.snapshot()
    }

    /// Paths of plain HTTP requests (`config.json` fetches and strays), in arrival order.
    pub fn config_requests(&self) -> Vec<String> {
        self.state.config_requests.snapshot()
    }

    /// The public config URL of a deployment on this fake:
    /// `http://127.0.0.1:PORT/webdeployments/v1/deployments/{id}/config.json`.
    pub fn config_url_for(&self, deployment_id: &str) -> String {
        format!(
            "http://{}/webdeployments/v1/deployments/{deployment_id}/config.json",
            self.addr()
        )
    }

    /// Every request frame received, parsed; a frame that is not a JSON object is recorded as
    /// a JSON string holding its raw text.
    pub fn requests(&self) -> Vec<Value> {
        self.state.requests.snapshot()
    }

    /// Waits until at least `n` requests have arrived, then returns them all.
    pub async fn wait_for_requests(
        &self,
        n: usize,
        within: Duration,
    ) -> Result<Vec<Value>, WaitTimeout> {
        self.state.requests.wait_for(n, within).await
    }

    /// Every JSON frame the fake queued to send, on any socket, in order (an agent reply
    /// whose socket has closed is still listed).
    pub fn sent(&self) -> Vec<Value> {
        self.state.sent.snapshot()
    }

    /// Waits until the fake has sent at least `n` frames, then returns them all.
    pub async fn wait_for_sent(
        &self,
        n: usize,
        within: Duration,
    ) -> Result<Vec<Value>, WaitTimeout> {
        self.state.sent.wait_for(n, within).await
    }

    /// Distinct `token` values seen in requests, in first-seen order.
    pub fn tokens_seen(&self) -> Vec<String> {
        lock(&self.state.tokens).clone()
    }

    /// A session's message bodies (guest echoes and agent replies) in order; `None` if the
    /// token never configured a session.
    pub fn history(&self, token: &str) -> Option<Vec<Value>> {
        self.state.history(token)
    }

    /// Drops every open socket without a close frame (sessions are kept, so reconnecting with
    /// the same token resumes them). Returns how many sockets were told to drop.
    pub fn drop_connections(&self) -> usize {
        let open = self.state.drops.receiver_count();
        self.state.drops.send_modify(|n| *n += 1);
        open
    }

    /// Stops accepting, drops every socket and waits for the server's tasks to end.
    pub async fn shutdown(&self) {
        self.life.shutdown().await;
    }
}

/// Frames for a connection's writer; `None` means flush and stop.
type Outbox = mpsc::UnboundedSender<Option<Message>>;

fn send_json(state: &State, out: &Outbox, v: Value) {
    let _ = out.send(Some(Message::text(v.to_string())));
    state.sent.push(v);
}

async fn serve(stream: TcpStream, state: Arc<State>) {
    let stream = match http::route(stream, &state).await {
        http::Incoming::Upgrade(stream) => stream,
        http::Incoming::Answered | http::Incoming::Gone => return,
    };
    let mut deployment = None;
    // The Err type is tungstenite's, so its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| {
        let up = UpgradeRequest::from_request(req);
        deployment = state.check_upgrade(&up);
        state.upgrades.push(up);
        match deployment {
            Some(_) => Ok(resp),
            None => Err(refusal(403, GENESYS_FORBIDDEN_BODY)),
        }
    };
    let ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config())).await;
    let (Ok(ws), Some(deployment_id)) = (ws, deployment) else {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return;
    };
    state.accepted.fetch_add(1, Ordering::SeqCst);
    let drop_signal = state.drops.subscribe();
    let (mut sink, mut incoming) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Option<Message>>();
    let writer = async move {
        while let Some(Some(msg)) = rx.recv().await {
            let is_close = matches!(msg, Message::Close(_));
            if sink.send(msg).await.is_err() || is_close {
                return;
            }
        }
        // Flushes tungstenite's queued reply to a peer's close.
        let _ = sink.flush().await;
    };
    let reader = async move {
        let mut conn = Conn {
            deployment_id,
            token: None,
        };
        loop {
            let expiry = conn.token.as_deref().and_then(|t| state.expiry(t));
            let expired = async {
                match expiry {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let msg = tokio::select! {
                m = incoming.next() => m,
                _ = expired => {
                    if let Some(token) = &conn.token {
                        state.expire(token);
                    }
                    send_json(&state, &tx, protocol::session_expired_event());
                    let frame = CloseFrame { code: 1000.into(), reason: "session expired".into() };
                    let _ = tx.send(Some(Message::Close(Some(frame))));
                    let drain = async { while let Some(Ok(_)) = incoming.next().await {} };
                    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
                    return;
                }
            };
            match msg {
                Some(Ok(Message::Text(text))) => {
                    let delay = state.config.configure_delay;
                    if !delay.is_zero() && protocol::is_configure(text.as_str()) {
                        tokio::time::sleep(delay).await;
                    }
                    let outcome = state.handle(&mut conn, text.as_str());
                    for v in outcome.replies {
                        send_json(&state, &tx, v);
                    }
                    if let (Some(said), Some(token)) = (outcome.agent_reply_to, conn.token.clone())
                    {
                        let (state, tx) = (state.clone(), tx.clone());
                        tokio::spawn(async move {
                            tokio::time::sleep(AGENT_REPLY_DELAY).await;
                            let reply = protocol::agent_reply(&said);
                            state.append_history(&token, reply["body"].clone());
                            send_json(&state, &tx, reply);
                        });
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    state.requests.push(Value::String("<binary frame>".into()));
                    send_json(
                        &state,
                        &tx,
                        protocol::error(400, "Binary frames are not supported", None),
                    );
                }
                Some(Ok(Message::Close(_))) => {
                    let _ = tx.send(None);
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    };
    let mut drops = drop_signal;
    tokio::select! {
        _ = async { tokio::join!(reader, writer) } => {}
        // Dropping both halves ends TCP with no close frame, like a crashed upstream.
        _ = drops.changed() => {}
    }
}

#[cfg(test)]
mod tests;
