//! The fake Genesys guest protocol: session state shared across sockets and the answer to
//! each JSON request. Nothing here does I/O: frames are queued on the sockets' outboxes
//! (unbounded channels their writer tasks drain).
//!
//! A session (one token) has a registry of its open sockets' outboxes: the agent's messages
//! and the session's events go to every one of them, and are kept in the session's history
//! even when none is open (real Genesys does not replay those on reconnect: clients read the
//! history over REST). The guest's own echo and every reply go only to the socket that sent
//! the request.
//!
//! Authenticated sessions (`configureAuthenticatedSession`, see `auth`) belong to one
//! customer. An anonymous session that a socket configures with a JWT is upgraded when the
//! deployment allows it (its other sockets get `ConnectionClosedEvent {"reason":"signedIn"}`
//! and are closed 1000), else 403; an authenticated session configured anonymously answers
//! 4017, and another customer's JWT 403.
//!
//! History holds guest messages (texts, structured messages, attachments, presence events)
//! and agent messages, in order. Typing indicators, the guest's and the agent's, are not
//! kept: they mean nothing once the moment has passed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;

use super::attachments::Attachment;
use super::auth::{AuthState, TRY_AGAIN};
use super::frames::{self, error, event, response, structured, with_tracing};
use super::history::JwtGrant;
use super::public_config::{DeploymentStatus, DisconnectType, FakeDeployment};
use super::{FakeGenesysConfig, READ_ONLY_CODE};
use crate::mock::support::{Log, UpgradeRequest, lock};

/// Longest token Genesys accepts.
const MAX_TOKEN_LEN: usize = 2048;

/// Frames for a connection's writer; `None` means flush and stop.
pub(super) type Outbox = mpsc::UnboundedSender<Option<Message>>;

/// Everything the fake knows, shared by all its connections.
#[derive(Debug)]
pub(super) struct State {
    pub(super) config: FakeGenesysConfig,
    /// The listening address, for the URLs the fake hands out.
    pub(super) addr: SocketAddr,
    /// Signs JWTs and storage URLs; random per fake.
    pub(super) key: [u8; 32],
    pub(super) accepted: AtomicUsize,
    pub(super) refused: AtomicUsize,
    pub(super) upgrades: Log<UpgradeRequest>,
    pub(super) requests: Log<Value>,
    pub(super) sent: Log<Value>,
    /// Paths of plain (non-upgrade) HTTP requests, in arrival order.
    pub(super) config_requests: Log<String>,
    pub(super) tokens: Mutex<Vec<String>>,
    /// Bumped to make every open socket drop without a close frame.
    pub(super) drops: tokio::sync::watch::Sender<u64>,
    /// Sessions ever created (cleared ones included).
    created: AtomicUsize,
    next_conn: AtomicU64,
    /// `getJwt` requests received.
    pub(super) jwt_requests: AtomicUsize,
    /// History REST requests answered, whatever the status.
    pub(super) history_requests: AtomicUsize,
    pub(super) sessions: Mutex<HashMap<String, Session>>,
    /// Issued JWTs, by their text.
    pub(super) jwts: Mutex<HashMap<String, JwtGrant>>,
    /// Successful uploads: attachment id and byte count, in order.
    pub(super) uploads: Mutex<Vec<(String, usize)>>,
    /// Authenticated messaging: codes, refresh tokens, JWTs, rate windows.
    pub(super) auth: AuthState,
}

/// One conversation, by token.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) deployment_id: String,
    expires_at: Option<Instant>,
    expired: bool,
    /// The agent disconnected and the deployment makes that read-only.
    pub(super) read_only: bool,
    pub(super) history: Vec<Value>,
    recent_messages: VecDeque<Instant>,
    /// Open sockets bound to this session, by connection id.
    sockets: BTreeMap<u64, Outbox>,
    /// Messages the periodic agent has written in this conversation.
    pub(super) agent_written: u64,
    /// Typing events the guest sent.
    pub(super) typing_events: usize,
    pub(super) attachments: HashMap<String, Attachment>,
    /// The customer an authenticated session belongs to; `None` for a guest session.
    pub(super) customer: Option<String>,
}

impl Session {
    /// Expired, by the event or by the clock.
    pub(super) fn is_gone(&self) -> bool {
        self.expired || self.expires_at.is_some_and(|at| Instant::now() >= at)
    }

    /// Whether the agent may still write: neither gone nor read-only.
    pub(super) fn is_live(&self) -> bool {
        !self.is_gone() && !self.read_only
    }
}

/// Per-socket protocol state.
#[derive(Debug)]
pub(super) struct Conn {
    /// Unique per socket; the key in a session's socket registry.
    pub(super) id: u64,
    /// This socket's writer.
    pub(super) out: Outbox,
    pub(super) deployment_id: String,
    /// The token bound by `configureSession` on this socket.
    pub(super) token: Option<String>,
    /// The JWT this socket last configured an authenticated session with.
    pub(super) auth_jwt: Option<String>,
}

/// What the caller must do after a request: schedule the agent's answer to this text of the
/// session with this token.
pub(super) type AgentReply = Option<(String, String)>;

impl State {
    pub(super) fn new(config: FakeGenesysConfig, addr: SocketAddr) -> Self {
        State {
            config,
            addr,
            key: rand::random(),
            accepted: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            upgrades: Log::new("upgrade requests"),
            requests: Log::new("requests"),
            sent: Log::new("frames sent"),
            config_requests: Log::new("plain http requests"),
            tokens: Mutex::new(Vec::new()),
            drops: tokio::sync::watch::channel(0).0,
            created: AtomicUsize::new(0),
            next_conn: AtomicU64::new(1),
            jwt_requests: AtomicUsize::new(0),
            history_requests: AtomicUsize::new(0),
            sessions: Mutex::new(HashMap::new()),
            jwts: Mutex::new(HashMap::new()),
            uploads: Mutex::new(Vec::new()),
            auth: AuthState::default(),
        }
    }

    /// A fresh connection id.
    pub(super) fn conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues a frame on one socket and logs it.
    pub(super) fn send(&self, out: &Outbox, v: Value) {
        let _ = out.send(Some(Message::text(v.to_string())));
        self.sent.push(v);
    }

    /// Queues a frame on every open socket of a session; logged once, even when no socket is
    /// open.
    pub(super) fn broadcast(&self, session: &Session, v: Value) {
        let text = v.to_string();
        for out in session.sockets.values() {
            let _ = out.send(Some(Message::text(text.clone())));
        }
        self.sent.push(v);
    }

    /// Closes every socket of a session with 1000 and `reason`.
    fn close_all(session: &Session, reason: &str) {
        for out in session.sockets.values() {
            let frame = CloseFrame {
                code: 1000.into(),
                reason: reason.to_owned().into(),
            };
            let _ = out.send(Some(Message::Close(Some(frame))));
        }
    }

    /// Forgets a closed socket.
    pub(super) fn unregister(&self, conn_id: u64) {
        for s in lock(&self.sessions).values_mut() {
            s.sockets.remove(&conn_id);
        }
    }

    /// A known deployment's public settings (the default ones unless configured).
    pub(super) fn deployment(&self, id: &str) -> FakeDeployment {
        self.config.deployments.get(id).cloned().unwrap_or_default()
    }

    /// The `config.json` body of a known deployment; `None` (404) for any other id.
    pub(super) fn public_config(&self, id: &str, host: &str) -> Option<Value> {
        if !self.config.deployment_ids.iter().any(|d| d == id) {
            return None;
        }
        Some(
            self.deployment(id)
                .to_json(id, host, &self.config.allowed_origins),
        )
    }

    /// Decides an upgrade: `Some(deploymentId)` to accept, `None` for Genesys's 403 (unknown
    /// deployment or one that is not Active, wrong path, Origin not allowed).
    pub(super) fn check_upgrade(&self, req: &UpgradeRequest) -> Option<String> {
        if req.path().trim_end_matches('/') != "/v1" {
            return None;
        }
        let deployment = req.query_param("deploymentId")?;
        if !self.config.deployment_ids.contains(&deployment) {
            return None;
        }
        if self.deployment(&deployment).status != DeploymentStatus::Active {
            return None;
        }
        let allowed = &self.config.allowed_origins;
        let origin_ok =
            allowed.is_empty() || req.origin.as_ref().is_some_and(|o| allowed.contains(o));
        origin_ok.then_some(deployment)
    }

    /// When the session bound to `token` expires, if it does.
    pub(super) fn expiry(&self, token: &str) -> Option<Instant> {
        let sessions = lock(&self.sessions);
        sessions
            .get(token)
            .filter(|s| !s.expired)
            .and_then(|s| s.expires_at)
    }

    /// Marks a session expired: later requests with its token get 4006.
    pub(super) fn expire(&self, token: &str) {
        if let Some(s) = lock(&self.sessions).get_mut(token) {
            s.expired = true;
        }
    }

    /// The message bodies of a session's current conversation, in order.
    pub(super) fn history(&self, token: &str) -> Option<Vec<Value>> {
        lock(&self.sessions).get(token).map(|s| s.history.clone())
    }

    fn note_token(&self, token: &str) {
        let mut tokens = lock(&self.tokens);
        if !tokens.iter().any(|t| t == token) {
            tokens.push(token.to_owned());
        }
    }

    /// Sessions created so far (expired and cleared ones included).
    pub(super) fn session_count(&self) -> usize {
        self.created.load(Ordering::SeqCst)
    }

    /// Answers one text frame from the guest, queueing the frames on the sockets. Returns
    /// the text the agent should answer, if any.
    pub(super) fn handle(&self, conn: &mut Conn, text: &str) -> AgentReply {
        let Ok(Value::Object(req)) = serde_json::from_str::<Value>(text) else {
            self.requests.push(Value::String(text.to_owned()));
            let e = error(400, "Request body is not a JSON object", None);
            self.send(&conn.out, e);
            return None;
        };
        self.requests.push(Value::Object(req.clone()));
        let tracing = req.get("tracingId");
        let token = req.get("token").and_then(Value::as_str);
        if let Some(t) = token {
            self.note_token(t);
        }
        let action = req.get("action").and_then(Value::as_str).unwrap_or("");
        if action == "configureSession" || action == "configureAuthenticatedSession" {
            let authenticated = action == "configureAuthenticatedSession";
            let reply = self.configure(conn, &req, token, authenticated);
            self.send(&conn.out, reply);
            return None;
        }
        if action == "getJwt" {
            self.jwt_requests.fetch_add(1, Ordering::SeqCst);
        }
        let token = match self.check_token(conn, token) {
            Ok(t) => t,
            Err((code, msg)) => {
                self.send(&conn.out, error(code, msg, tracing));
                return None;
            }
        };
        let message = req.get("message").and_then(Value::as_object);
        let reply = match (action, message) {
            ("onMessage", Some(m)) => return self.on_message(conn, &token, m, tracing),
            ("echo", Some(m)) => {
                let mut v = structured(frames::inbound_body(m));
                v["type"] = "response".into();
                with_tracing(v, tracing)
            }
            ("onMessage" | "echo", None) => error(400, "Missing required field: message", tracing),
            ("getJwt", _) => self.get_jwt(&token, tracing),
            ("onAttachment", _) => self.on_attachment(&token, &req, tracing),
            ("getAttachment", _) => self.get_attachment(&token, &req, tracing),
            ("deleteAttachment", _) => self.delete_attachment(&token, &req, tracing),
            (other, _) => error(400, &format!("Unsupported action: {other}"), tracing),
        };
        self.send(&conn.out, reply);
        None
    }

    /// `configureSession`, or `configureAuthenticatedSession` when `authenticated`.
    fn configure(
        &self,
        conn: &mut Conn,
        req: &Map<String, Value>,
        token: Option<&str>,
        authenticated: bool,
    ) -> Value {
        let tracing = req.get("tracingId");
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return error(400, "Missing required field: token", tracing);
        };
        if token.len() > MAX_TOKEN_LEN {
            return error(400, "token is longer than 2048 characters", tracing);
        }
        if req.get("deploymentId").and_then(Value::as_str) != Some(conn.deployment_id.as_str()) {
            return error(400, "deploymentId does not match this connection", tracing);
        }
        let start_new = match req.get("startNew") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return error(400, "startNew must be a boolean", tracing),
        };
        let auth = if authenticated {
            match self.authenticate(&conn.deployment_id, req, tracing) {
                Ok(auth) => Some(auth),
                Err(refusal) => return refusal,
            }
        } else {
            None
        };
        let lifetime = self.config.session_lifetime;
        let mut sessions = lock(&self.sessions);
        let mut new_session = !sessions.contains_key(token);
        if new_session && start_new {
            return error(
                400,
                "startNew is only allowed for a read-only conversation",
                tracing,
            );
        }
        let session = sessions.entry(token.to_owned()).or_insert_with(|| {
            self.created.fetch_add(1, Ordering::SeqCst);
            Session {
                deployment_id: conn.deployment_id.clone(),
                expires_at: lifetime.map(|d| Instant::now() + d),
                expired: false,
                read_only: false,
                history: Vec::new(),
                recent_messages: VecDeque::new(),
                sockets: BTreeMap::new(),
                agent_written: 0,
                typing_events: 0,
                attachments: HashMap::new(),
                customer: None,
            }
        });
        if session.is_gone() {
            return error(4006, "session expired", tracing);
        }
        let customer = auth.as_ref().map(|(c, _)| c.as_str());
        let mut upgrade = false;
        match (customer, session.customer.as_deref()) {
            (None, Some(_)) => {
                return error(4017, "Cannot downgrade an authenticated session", tracing);
            }
            (Some(c), Some(owner)) if c != owner => {
                return error(403, "Session belongs to another customer", tracing);
            }
            (Some(_), None) if !new_session => {
                if !self
                    .deployment(&session.deployment_id)
                    .allow_session_upgrade
                {
                    return error(
                        403,
                        "Session upgrade is not allowed for this deployment",
                        tracing,
                    );
                }
                upgrade = true;
            }
            _ => {}
        }
        if start_new {
            if !session.read_only {
                return error(
                    400,
                    "startNew is only allowed for a read-only conversation",
                    tracing,
                );
            }
            session.read_only = false;
            session.history.clear();
            session.agent_written = 0;
            new_session = true;
        }
        if let Some((c, _)) = &auth {
            session.customer = Some(c.clone());
        }
        if upgrade {
            self.signed_in_elsewhere(session, conn.id);
        }
        session.sockets.insert(conn.id, conn.out.clone());
        conn.auth_jwt = auth.map(|(_, jwt)| jwt);
        let read_only = session.read_only;
        let expires_at = session.expires_at;
        if let Some(previous) = conn.token.replace(token.to_owned()) {
            if previous != token {
                if let Some(old) = sessions.get_mut(&previous) {
                    old.sockets.remove(&conn.id);
                }
            }
        }
        drop(sessions);
        let mut body = json!({
            "connected": true,
            "newSession": new_session,
            "readOnly": read_only,
            "clearedExistingSession": false,
            "maxCustomDataBytes": 2048,
            "allowedMedia": self.allowed_media(&conn.deployment_id),
        });
        if let Some(at) = expires_at {
            let left = at.saturating_duration_since(Instant::now());
            body["durationSeconds"] = lifetime.unwrap_or_default().as_secs().into();
            body["expirationDate"] = (frames::epoch_now() + left.as_secs()).into();
        }
        response("SessionResponse", body, tracing)
    }

    /// A guest session became authenticated on socket `upgrader`: every other socket hears
    /// `ConnectionClosedEvent {"reason":"signedIn"}`, is closed 1000 and leaves the session.
    fn signed_in_elsewhere(&self, session: &mut Session, upgrader: u64) {
        let others: Vec<u64> = session
            .sockets
            .keys()
            .copied()
            .filter(|id| *id != upgrader)
            .collect();
        for id in others {
            let Some(out) = session.sockets.remove(&id) else {
                continue;
            };
            self.send(
                &out,
                event("ConnectionClosedEvent", json!({"reason": "signedIn"})),
            );
            let frame = CloseFrame {
                code: 1000.into(),
                reason: "signedIn".into(),
            };
            let _ = out.send(Some(Message::Close(Some(frame))));
        }
    }

    /// SessionResponse's `allowedMedia` for a deployment: the MIME types of its upload modes,
    /// the largest size among them, and its blocked extensions.
    fn allowed_media(&self, deployment_id: &str) -> Value {
        let d = self.deployment(deployment_id);
        let mut types: Vec<&str> = Vec::new();
        for mode in &d.file_upload_modes {
            for t in &mode.file_types {
                if !types.contains(&t.as_str()) {
                    types.push(t);
                }
            }
        }
        let file_types: Vec<Value> = types.iter().map(|t| json!({"type": t})).collect();
        let max_kb = d
            .file_upload_modes
            .iter()
            .map(|m| m.max_file_size_kb)
            .max()
            .unwrap_or(0);
        json!({
            "inbound": {"fileTypes": file_types, "maxFileSizeKB": max_kb},
            "blockedExtensions": d.blocked_extensions,
        })
    }

    /// The session token a non-configure request may use, or the error frame's code and text.
    /// On an authenticated session the socket's JWT must still be good: else 403
    /// [`TRY_AGAIN`].
    fn check_token(&self, conn: &Conn, token: Option<&str>) -> Result<String, (u16, &'static str)> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or((400, "Missing required field: token"))?;
        let customer = match lock(&self.sessions).get(token) {
            None => return Err((4007, "session not found")),
            Some(s) if s.is_gone() => return Err((4006, "session expired")),
            Some(s) => s.customer.clone(),
        };
        match &conn.token {
            None => return Err((400, "configureSession must be the first request")),
            Some(bound) if bound != token => {
                return Err((403, "token does not match this connection"));
            }
            Some(_) => {}
        }
        if let Some(customer) = customer {
            if !self.auth.still_valid(conn.auth_jwt.as_deref(), &customer) {
                return Err((403, TRY_AGAIN));
            }
        }
        Ok(token.to_owned())
    }

    fn on_message(
        &self,
        conn: &mut Conn,
        token: &str,
        message: &Map<String, Value>,
        tracing: Option<&Value>,
    ) -> AgentReply {
        let fail = |code: u16, text: &str| {
            self.send(&conn.out, error(code, text, tracing));
            None
        };
        let kind = message
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("Text");
        let text = match message.get("text") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return fail(400, "text must be a string"),
        };
        let has_content = message
            .get("content")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty());
        let events = match kind {
            "Text" | "Structured" => {
                if kind == "Text" && text.is_none_or(str::is_empty) && !has_content {
                    return fail(400, "Text messages require non-empty text");
                }
                Events::default()
            }
            "Event" => match Events::parse(message) {
                Ok(e) => e,
                Err(why) => return fail(400, why),
            },
            _ => return fail(400, "message.type must be Text, Structured or Event"),
        };
        let mut sessions = lock(&self.sessions);
        let Some(session) = sessions.get_mut(token) else {
            drop(sessions);
            return fail(4007, "session not found");
        };
        if session.read_only {
            drop(sessions);
            return fail(READ_ONLY_CODE, "Conversation is read-only");
        }
        if events.clear && !self.deployment(&session.deployment_id).conversation_clear {
            drop(sessions);
            return fail(403, "Presence events Conversation Clear are not supported");
        }
        let mut echoed = frames::inbound_body(message);
        if let Some(content) = message.get("content") {
            match self.resolve_content(session, content) {
                Ok(resolved) => echoed["content"] = resolved,
                Err((code, why)) => {
                    drop(sessions);
                    return fail(code, why);
                }
            }
        }
        let now = Instant::now();
        let window = Duration::from_secs(1);
        while session
            .recent_messages
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            session.recent_messages.pop_front();
        }
        let limit = self.config.rate_limit_per_sec as usize;
        if limit > 0 && session.recent_messages.len() >= limit {
            drop(sessions);
            let body = json!({"retryAfter":1,"errorCode":4029,"message":"Message rate too high for this session"});
            let v = json!({"type":"response","class":"TooManyRequestsErrorMessage","code":429,"body":body});
            self.send(&conn.out, with_tracing(v, tracing));
            return None;
        }
        session.recent_messages.push_back(now);
        if events.clear {
            let session = sessions.remove(token).expect("looked up above");
            drop(sessions);
            self.clear(conn, token, &session);
            return None;
        }
        session.typing_events += events.typing;
        if !events.typing_only() {
            session.history.push(echoed.clone());
        }
        self.send(&conn.out, with_tracing(structured(echoed), tracing));
        let answer = self.config.agent_reply && kind == "Text";
        match text.filter(|t| answer && !t.is_empty()) {
            Some(said) => {
                self.broadcast(session, structured(frames::typing_body()));
                Some((token.to_owned(), said.to_owned()))
            }
            None => None,
        }
    }

    /// Conversation clear: the requester hears `SessionClearedEvent`, the session's other
    /// sockets `ConnectionClosedEvent`; all of them close 1000. The session (already removed
    /// from the map), its JWTs and its attachments are gone.
    fn clear(&self, conn: &mut Conn, token: &str, session: &Session) {
        for (id, out) in &session.sockets {
            let v = if *id == conn.id {
                event("SessionClearedEvent", json!({}))
            } else {
                event("ConnectionClosedEvent", json!({}))
            };
            self.send(out, v);
        }
        Self::close_all(session, "conversation cleared");
        conn.token = None;
        lock(&self.jwts).retain(|_, grant| grant.token != token);
    }

    /// The agent writes `body` into a live session: history, then every open socket.
    /// `None` if the session is unknown, expired or read-only.
    pub(super) fn agent_send(&self, token: &str, body: Value) -> Option<Value> {
        let mut sessions = lock(&self.sessions);
        let session = sessions.get_mut(token).filter(|s| s.is_live())?;
        session.history.push(body.clone());
        self.broadcast(session, structured(body.clone()));
        Some(body)
    }

    /// One round of the periodic agent: "agent message N" to every live session that has
    /// not had `agent_max` yet.
    pub(super) fn agent_tick(&self) {
        let max = self.config.agent_max;
        let mut sessions = lock(&self.sessions);
        for session in sessions.values_mut() {
            if !session.is_live() || (max > 0 && session.agent_written >= max) {
                continue;
            }
            session.agent_written += 1;
            let body = frames::agent_text_body(&format!("agent message {}", session.agent_written));
            session.history.push(body.clone());
            self.broadcast(session, structured(body));
        }
    }

    /// The agent ends the conversation: a presence Disconnect event to every socket (and the
    /// history); with a ReadOnly deployment the session becomes read-only. `None` if the
    /// session is unknown, expired or already read-only.
    pub(super) fn agent_disconnect(&self, token: &str) -> Option<Value> {
        let mut sessions = lock(&self.sessions);
        let session = sessions.get_mut(token).filter(|s| s.is_live())?;
        let body = frames::presence_disconnect_body();
        session.history.push(body.clone());
        self.broadcast(session, structured(body.clone()));
        let d = self.deployment(&session.deployment_id);
        if d.conversation_disconnect == Some(DisconnectType::ReadOnly) {
            session.read_only = true;
        }
        Some(body)
    }

    /// Typing events the guest sent in a session (0 for an unknown one).
    pub(super) fn typing_events(&self, token: &str) -> usize {
        lock(&self.sessions)
            .get(token)
            .map_or(0, |s| s.typing_events)
    }

    /// Whether a session is authenticated (false for an unknown one).
    pub(super) fn is_authenticated(&self, token: &str) -> bool {
        lock(&self.sessions)
            .get(token)
            .is_some_and(|s| s.customer.is_some())
    }

    /// Whether a session is read-only; `None` if unknown.
    pub(super) fn read_only(&self, token: &str) -> Option<bool> {
        lock(&self.sessions).get(token).map(|s| s.read_only)
    }
}

/// What an `Event` message holds, once checked: typing events and presence Join/Clear.
#[derive(Debug, Default)]
struct Events {
    typing: usize,
    other: usize,
    clear: bool,
}

impl Events {
    fn parse(message: &Map<String, Value>) -> Result<Self, &'static str> {
        let list = message
            .get("events")
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty())
            .ok_or("Event messages require a non-empty events array")?;
        let mut out = Events::default();
        for e in list {
            let sub = |field: &str| {
                e.get(field)
                    .and_then(|v| v.get("type"))
                    .and_then(Value::as_str)
            };
            match e.get("eventType").and_then(Value::as_str) {
                Some("Typing") if sub("typing") == Some("On") => out.typing += 1,
                Some("Presence") if sub("presence") == Some("Join") => out.other += 1,
                Some("Presence") if sub("presence") == Some("Clear") => {
                    out.other += 1;
                    out.clear = true;
                }
                _ => return Err("Unsupported event: expected Typing On or Presence Join/Clear"),
            }
        }
        Ok(out)
    }

    fn typing_only(&self) -> bool {
        self.typing > 0 && self.other == 0
    }
}

/// Whether a guest text frame is a `configureSession` or `configureAuthenticatedSession`
/// request (the frames the fake's `configure_delay` holds back).
pub(super) fn is_configure(text: &str) -> bool {
    serde_json::from_str::<Value>(text).is_ok_and(|v| {
        matches!(
            v.get("action").and_then(Value::as_str),
            Some("configureSession" | "configureAuthenticatedSession")
        )
    })
}

/// Now plus `d`, as Unix seconds (rounded up, so a URL never says it expires before it does).
pub(super) fn epoch_after(d: Duration) -> u64 {
    let t = SystemTime::now() + d;
    let since = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    since.as_secs() + u64::from(since.subsec_nanos() > 0)
}
