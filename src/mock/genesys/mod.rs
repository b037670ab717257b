//! `FakeGenesys`: an in-process stand-in for Genesys Cloud Web Messaging's guest socket
//! (`/v1?deploymentId=..`), faithful enough to exercise the `genesys-web-messaging` preset:
//! 403 at upgrade for unknown deployments or origins, `configureSession` first, sessions that
//! survive reconnects by token and fan out to every socket of the token, echoes, a fake agent
//! (answering, writing on a timer or on demand, disconnecting), the 2-per-second message
//! limit, session expiry, read-only conversations and `startNew`, conversation clear,
//! `getJwt`, attachments and authenticated (signed-in) sessions.
//!
//! The same listener answers plain HTTP: each deployment's public `config.json`
//! (`public_config`), the history REST API (`history`), the attachment storage
//! (`attachments`), the authenticated-messaging token endpoints (`auth`) and a stand-in
//! identity provider with a one-button sign-in page (`idp`), so diagnosis, history, uploads
//! and sign-in can be tested against one address.
//!
//! It stays strict: what the real service refuses, it refuses, with the real error frame
//! `{"type":"response","class":"string","code":N,"body":"text","tracingId"?}`. Where the
//! real behaviour is not known the choice is documented where it is made (e.g.
//! [`READ_ONLY_CODE`]).

mod attachments;
mod auth;
mod frames;
mod history;
mod http;
mod idp;
mod protocol;
mod public_config;

pub use auth::TRY_AGAIN;
pub use idp::IDP_SUBJECT;
pub use public_config::{DeploymentStatus, DisconnectType, FakeDeployment, FileUploadMode};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
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

/// The error code `onMessage` and `onAttachment` get on a read-only conversation (the agent
/// disconnected and the deployment's `conversationDisconnect` is `ReadOnly`), with the body
/// "Conversation is read-only". Genesys's SDKs stop sending in that state themselves, so what
/// the real service answers is not known: this code is the fake's choice (403-like, in the
/// 40xx range of Genesys's socket errors, and unused by them).
pub const READ_ONLY_CODE: u16 = 4033;

/// Largest upload the fake's storage takes (and so the largest `fileSize` `onAttachment`
/// accepts, whatever the deployment allows); longer request bodies get 413.
pub const MAX_UPLOAD_BYTES: usize = 10 << 20;

/// The history REST path, on the fake's listener: see [`FakeGenesysHandle::history_url`].
pub const HISTORY_PATH: &str = http::HISTORY_PATH;

/// The authorization-code-for-JWT exchange path, on the fake's listener (`POST`, JSON).
pub const AUTH_EXCHANGE_PATH: &str = auth::EXCHANGE_PATH;

/// The JWT refresh path (`POST`, JSON `{"refreshToken","deploymentId"?}`).
pub const AUTH_REFRESH_PATH: &str = auth::REFRESH_PATH;

/// The sign-out path (`DELETE` with `Authorization: Bearer <jwt>`).
pub const AUTH_REVOKE_PATH: &str = auth::REVOKE_PATH;

/// The stand-in identity provider's sign-in page: see [`FakeGenesysHandle::idp_authorize_url`].
pub const IDP_AUTHORIZE_PATH: &str = idp::AUTHORIZE_PATH;

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
    /// While set, every interval the agent writes `"agent message N"` (N = 1, 2, ... per
    /// conversation) to each live session (not expired, cleared or read-only), whether or not
    /// a socket is open.
    pub agent_every: Option<Duration>,
    /// How many periodic messages each conversation gets at most; 0 is no limit.
    pub agent_max: u64,
    /// How long a JWT from `getJwt` opens the history REST API.
    pub jwt_lifetime: Duration,
    /// How long an `onAttachment` upload URL works.
    pub upload_url_lifetime: Duration,
    /// How long an attachment download URL works.
    pub download_url_lifetime: Duration,
    /// Redirect URIs registered with the stand-in identity provider (`/idp/authorize`), by
    /// exact string; any other `redirect_uri` gets 400. Empty: no sign-in is possible.
    pub auth_redirect_uris: Vec<String>,
    /// How long an authorization code from the identity provider can be exchanged.
    pub auth_code_lifetime: Duration,
    /// How long a JWT from the code exchange or a refresh opens an authenticated session.
    pub auth_jwt_lifetime: Duration,
    /// How long a refresh token works, from the exchange that issued it (not sliding).
    pub refresh_token_lifetime: Duration,
    /// Requests per minute each of the exchange, refresh and revoke endpoints takes (a
    /// sliding minute, the whole fake); more get 429 with `Retry-After`. 0 disables the limit.
    pub auth_rate_per_minute: u32,
}

impl Default for FakeGenesysConfig {
    /// One deployment ([`DEFAULT_DEPLOYMENT_ID`]), any origin, agent replies on, no periodic
    /// agent, 2 msg/s, no expiry, no added latency; JWTs for 10 minutes, upload URLs for 60 s,
    /// download URLs for 10 minutes; no registered redirect URI, authorization codes for 60 s,
    /// authenticated JWTs for 15 minutes, refresh tokens for 24 hours, 60 auth requests per
    /// minute per endpoint.
    fn default() -> Self {
        FakeGenesysConfig {
            deployment_ids: vec![DEFAULT_DEPLOYMENT_ID.to_owned()],
            allowed_origins: Vec::new(),
            agent_reply: true,
            rate_limit_per_sec: 2,
            session_lifetime: None,
            configure_delay: Duration::ZERO,
            deployments: BTreeMap::new(),
            agent_every: None,
            agent_max: 0,
            jwt_lifetime: Duration::from_secs(600),
            upload_url_lifetime: Duration::from_secs(60),
            download_url_lifetime: Duration::from_secs(600),
            auth_redirect_uris: Vec::new(),
            auth_code_lifetime: Duration::from_secs(60),
            auth_jwt_lifetime: Duration::from_secs(15 * 60),
            refresh_token_lifetime: Duration::from_secs(24 * 60 * 60),
            auth_rate_per_minute: 60,
        }
    }
}

/// Entry point for starting a fake Genesys; see [`FakeGenesys::start`].
#[derive(Debug)]
pub struct FakeGenesys;

impl FakeGenesys {
    /// Starts serving on an already-bound listener. Must be called inside a tokio runtime.
    pub fn start(listener: TcpListener, config: FakeGenesysConfig) -> FakeGenesysHandle {
        let addr = listener
            .local_addr()
            .expect("fake listener has a local address");
        let every = config.agent_every.filter(|d| !d.is_zero());
        let state = Arc::new(State::new(config, addr));
        let s = state.clone();
        let life = Lifecycle::spawn(listener, move |stream| serve(stream, s.clone()));
        if let Some(every) = every {
            let s = state.clone();
            life.spawn_task(async move {
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    s.agent_tick();
                }
            });
        }
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

    /// Sessions ever created by a `configureSession` or `configureAuthenticatedSession` with a
    /// new token (resumes, upgrades and `startNew` not counted; a token configured again after
    /// a conversation clear counts again).
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

    /// Paths of plain HTTP requests (`config.json` fetches, history REST calls, storage
    /// uploads and downloads, strays), in arrival order.
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

    /// Every JSON frame the fake queued to send, on any socket, in order. A frame for every
    /// socket of a session (agent messages, upload events) is listed once, also when no
    /// socket was open.
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

    /// A session's history, oldest first: the message bodies of its current conversation
    /// (guest echoes, agent messages, presence events; not typing events), each with `id` and
    /// `channel.time`, exactly as sent and as the history REST API serves them. `None` if the
    /// token has no session (never configured, or cleared).
    pub fn history(&self, token: &str) -> Option<Vec<Value>> {
        self.state.history(token)
    }

    /// The agent writes `text` to a session now: appended to its history and sent to every
    /// open socket (if any). Returns the message body; `None` if the session is unknown,
    /// expired or read-only.
    pub fn agent_say(&self, token: &str, text: &str) -> Option<Value> {
        self.state.agent_send(token, frames::agent_text_body(text))
    }

    /// The agent ends the conversation: a `StructuredMessage` event `{"direction":"Outbound",
    /// "type":"Event","events":[{"eventType":"Presence","presence":{"type":"Disconnect"}}]}`
    /// to every socket of the session (and its history). If the deployment's
    /// `conversation_disconnect` is `Some(ReadOnly)` the session becomes read-only: later
    /// `onMessage`s get [`READ_ONLY_CODE`], a reconfigure says `readOnly: true`, and
    /// `configureSession` with `startNew: true` begins a new conversation. Returns the event
    /// body; `None` (nothing sent) if the session is unknown, expired or already read-only.
    pub fn agent_disconnect(&self, token: &str) -> Option<Value> {
        self.state.agent_disconnect(token)
    }

    /// Whether a session is read-only; `None` if there is no session for the token.
    pub fn read_only(&self, token: &str) -> Option<bool> {
        self.state.read_only(token)
    }

    /// Typing events the guest sent in a session (0 if there is none).
    pub fn typing_events(&self, token: &str) -> usize {
        self.state.typing_events(token)
    }

    /// `getJwt` requests received, answered or refused.
    pub fn jwt_requests(&self) -> usize {
        self.state.jwt_requests.load(Ordering::SeqCst)
    }

    /// History REST requests served, whatever the status.
    pub fn history_requests(&self) -> usize {
        self.state.history_requests.load(Ordering::SeqCst)
    }

    /// The REST base URL of this fake (what `https://api.{domain}` is for the real service):
    /// `http://127.0.0.1:PORT`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The history REST URL: `http://127.0.0.1:PORT/api/v2/webmessaging/messages`.
    pub fn history_url(&self) -> String {
        format!("{}{HISTORY_PATH}", self.api_url())
    }

    /// Successful uploads, in order: attachment id and byte count.
    pub fn uploads(&self) -> Vec<(String, usize)> {
        lock(&self.state.uploads).clone()
    }

    /// The stand-in identity provider's sign-in page without parameters:
    /// `http://127.0.0.1:PORT/idp/authorize`. Add `redirect_uri` (one of the config's
    /// `auth_redirect_uris`), `state`, and optionally `code_challenge` with
    /// `code_challenge_method=S256` and `nonce`.
    pub fn idp_authorize_url(&self) -> String {
        format!("{}{IDP_AUTHORIZE_PATH}", self.api_url())
    }

    /// Registers one more redirect URI with the identity provider, for a caller that learns
    /// its callback address only after the fake started (e.g. a relay bound to port 0 that
    /// needs the fake's address in its own config). [`config`](Self::config) does not list it.
    pub fn register_redirect_uri(&self, redirect_uri: &str) {
        let mut extra = lock(&self.state.auth.redirect_uris);
        if !extra.iter().any(|r| r == redirect_uri) {
            extra.push(redirect_uri.to_owned());
        }
    }

    /// An authorization code for [`IDP_SUBJECT`], as if the customer had signed in on the
    /// identity provider's page: single use, for `auth_code_lifetime`, bound to `redirect_uri`
    /// and the S256 `code_challenge` if given (no nonce).
    ///
    /// # Panics
    /// If `redirect_uri` is not registered (`auth_redirect_uris` or
    /// [`register_redirect_uri`](Self::register_redirect_uri)) or `code_challenge` is not an
    /// S256 challenge: the page would refuse that sign-in.
    pub fn issue_auth_code(&self, redirect_uri: &str, code_challenge: Option<&str>) -> String {
        self.issue_auth_code_for(IDP_SUBJECT, redirect_uri, code_challenge, None)
    }

    /// [`issue_auth_code`](Self::issue_auth_code) for another identity-provider subject (each
    /// is a different customer), optionally bound to a `nonce` the exchange must repeat.
    ///
    /// # Panics
    /// As `issue_auth_code`.
    pub fn issue_auth_code_for(
        &self,
        subject: &str,
        redirect_uri: &str,
        code_challenge: Option<&str>,
        nonce: Option<&str>,
    ) -> String {
        assert!(
            self.state.redirect_registered(redirect_uri),
            "issue_auth_code: {redirect_uri} is not a registered redirect URI"
        );
        assert!(
            code_challenge.is_none_or(auth::challenge_ok),
            "issue_auth_code: the code challenge is not an S256 challenge"
        );
        self.state
            .issue_code(subject, redirect_uri, code_challenge, nonce)
    }

    /// Requests to the code exchange endpoint, whatever the answer (429s included).
    pub fn auth_exchanges(&self) -> usize {
        self.state.auth.requests(auth::Endpoint::Exchange)
    }

    /// Requests to the refresh endpoint, whatever the answer.
    pub fn auth_refreshes(&self) -> usize {
        self.state.auth.requests(auth::Endpoint::Refresh)
    }

    /// Requests to the revoke endpoint, whatever the answer.
    pub fn auth_revokes(&self) -> usize {
        self.state.auth.requests(auth::Endpoint::Revoke)
    }

    /// Refresh tokens revoked by sign-outs so far.
    pub fn revoked_refresh_tokens(&self) -> usize {
        self.state.auth.revoked.load(Ordering::SeqCst)
    }

    /// Every JWT and refresh token the token endpoints issued (for leak checks).
    pub fn issued_auth_secrets(&self) -> Vec<String> {
        self.state.auth.issued_secrets()
    }

    /// Whether the session of `token` is authenticated (configured with
    /// `configureAuthenticatedSession`, or upgraded); false if there is no session.
    pub fn is_authenticated(&self, token: &str) -> bool {
        self.state.is_authenticated(token)
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

/// Removes a socket from its session's registry when its task ends, however it ends.
struct Registered {
    state: Arc<State>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.state.unregister(self.id);
    }
}

/// How long a socket waits for the peer's answer to a close frame the fake sent.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

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
    // Fires (or is dropped) when the writer stops: after a close frame the fake sent, or
    // because the socket failed.
    let (stopped_tx, mut stopped) = oneshot::channel::<()>();
    let writer = async move {
        while let Some(Some(msg)) = rx.recv().await {
            let is_close = matches!(msg, Message::Close(_));
            if sink.send(msg).await.is_err() {
                return;
            }
            if is_close {
                let _ = stopped_tx.send(());
                return;
            }
        }
        // Flushes tungstenite's queued reply to a peer's close.
        let _ = sink.flush().await;
    };
    let id = state.conn_id();
    let reader = async move {
        // Dropped last: the session forgets this socket however the reader ends.
        let _registered = Registered {
            state: state.clone(),
            id,
        };
        let mut conn = Conn {
            id,
            out: tx,
            deployment_id,
            token: None,
            auth_jwt: None,
        };
        let drain = async |incoming: &mut futures::stream::SplitStream<_>| {
            let drain = async { while let Some(Ok(_)) = incoming.next().await {} };
            let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
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
                _ = &mut stopped => {
                    drain(&mut incoming).await;
                    return;
                }
                _ = expired => {
                    if let Some(token) = &conn.token {
                        state.expire(token);
                    }
                    state.send(&conn.out, frames::session_expired_event());
                    let frame = CloseFrame { code: 1000.into(), reason: "session expired".into() };
                    let _ = conn.out.send(Some(Message::Close(Some(frame))));
                    drain(&mut incoming).await;
                    return;
                }
            };
            match msg {
                Some(Ok(Message::Text(text))) => {
                    let delay = state.config.configure_delay;
                    if !delay.is_zero() && protocol::is_configure(text.as_str()) {
                        tokio::time::sleep(delay).await;
                    }
                    if let Some((token, said)) = state.handle(&mut conn, text.as_str()) {
                        let state = state.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(AGENT_REPLY_DELAY).await;
                            state.agent_send(&token, frames::agent_reply_body(&said));
                        });
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    state.requests.push(Value::String("<binary frame>".into()));
                    let e = frames::error(400, "Binary frames are not supported", None);
                    state.send(&conn.out, e);
                }
                Some(Ok(Message::Close(_))) => {
                    let _ = conn.out.send(None);
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    let _ = conn.out.send(None);
                    return;
                }
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
