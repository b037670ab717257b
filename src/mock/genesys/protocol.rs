//! The fake Genesys guest protocol: session state shared across sockets and the answer to
//! each JSON request, without any I/O.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::FakeGenesysConfig;
use super::public_config::{DeploymentStatus, FakeDeployment};
use crate::mock::support::{Log, UpgradeRequest, lock};

/// Longest token Genesys accepts.
const MAX_TOKEN_LEN: usize = 2048;

/// Everything the fake knows, shared by all its connections.
#[derive(Debug)]
pub(super) struct State {
    pub(super) config: FakeGenesysConfig,
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
    sessions: Mutex<HashMap<String, Session>>,
}

#[derive(Debug)]
struct Session {
    expires_at: Option<Instant>,
    expired: bool,
    history: Vec<Value>,
    recent_messages: VecDeque<Instant>,
}

/// Per-socket protocol state.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) deployment_id: String,
    /// The token bound by `configureSession` on this socket.
    pub(super) token: Option<String>,
}

/// What to do after a request: frames to send now, and possibly an agent reply to schedule.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub(super) replies: Vec<Value>,
    /// The guest text the fake agent should answer.
    pub(super) agent_reply_to: Option<String>,
}

impl Outcome {
    fn one(v: Value) -> Self {
        Outcome {
            replies: vec![v],
            agent_reply_to: None,
        }
    }
}

/// `{"type":"response","class":"string",...}`: how Genesys reports request errors.
pub(super) fn error(code: u16, text: &str, tracing_id: Option<&Value>) -> Value {
    with_tracing(
        json!({"type":"response","class":"string","code":code,"body":text}),
        tracing_id,
    )
}

fn with_tracing(mut v: Value, tracing_id: Option<&Value>) -> Value {
    if let (Some(t), Some(obj)) = (tracing_id, v.as_object_mut()) {
        obj.insert("tracingId".into(), t.clone());
    }
    v
}

fn structured(body: Value) -> Value {
    json!({"type":"message","class":"StructuredMessage","code":200,"body":body})
}

/// The `SessionExpiredEvent` sent just before the fake closes an expired session's socket.
pub(super) fn session_expired_event() -> Value {
    json!({"type":"message","class":"SessionExpiredEvent","code":200,"body":{}})
}

/// The outbound typing event sent before an agent reply.
fn typing_event() -> Value {
    structured(json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "direction": "Outbound",
        "type": "Event",
        "events": [{"eventType":"Typing","typing":{"type":"On","duration":5000}}],
    }))
}

/// The fake agent's answer to a guest text.
pub(super) fn agent_reply(text: &str) -> Value {
    structured(json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "direction": "Outbound",
        "type": "Text",
        "text": format!("Agent: you said \"{text}\""),
        "originatingEntity": "Human",
        "channel": {"from": {"nickname": "Agent", "id": "fake-agent"}},
    }))
}

/// The guest's own message as Genesys echoes it back: direction Inbound, with an id.
fn inbound(message: &Map<String, Value>) -> Value {
    let mut body = message.clone();
    body.insert("id".into(), uuid::Uuid::new_v4().to_string().into());
    body.insert("direction".into(), "Inbound".into());
    body.insert("originatingEntity".into(), "Human".into());
    body.entry("type").or_insert_with(|| "Text".into());
    Value::Object(body)
}

impl State {
    pub(super) fn new(config: FakeGenesysConfig) -> Self {
        State {
            config,
            accepted: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            upgrades: Log::new("upgrade requests"),
            requests: Log::new("requests"),
            sent: Log::new("frames sent"),
            config_requests: Log::new("plain http requests"),
            tokens: Mutex::new(Vec::new()),
            drops: tokio::sync::watch::channel(0).0,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// A known deployment's public settings (the default ones unless configured).
    fn deployment(&self, id: &str) -> FakeDeployment {
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

    /// Appends a frame to a session's history (agent replies use this).
    pub(super) fn append_history(&self, token: &str, body: Value) {
        if let Some(s) = lock(&self.sessions).get_mut(token) {
            s.history.push(body);
        }
    }

    /// The message bodies exchanged in a session, guest's and agent's, in order.
    pub(super) fn history(&self, token: &str) -> Option<Vec<Value>> {
        lock(&self.sessions).get(token).map(|s| s.history.clone())
    }

    fn note_token(&self, token: &str) {
        let mut tokens = lock(&self.tokens);
        if !tokens.iter().any(|t| t == token) {
            tokens.push(token.to_owned());
        }
    }

    /// Sessions created so far (expired ones included).
    pub(super) fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Answers one text frame from the guest.
    pub(super) fn handle(&self, conn: &mut Conn, text: &str) -> Outcome {
        let Ok(Value::Object(req)) = serde_json::from_str::<Value>(text) else {
            self.requests.push(Value::String(text.to_owned()));
            return Outcome::one(error(400, "Request body is not a JSON object", None));
        };
        self.requests.push(Value::Object(req.clone()));
        let tracing = req.get("tracingId");
        let token = req.get("token").and_then(Value::as_str);
        if let Some(t) = token {
            self.note_token(t);
        }
        let action = req.get("action").and_then(Value::as_str).unwrap_or("");
        if action == "configureSession" {
            return Outcome::one(self.configure(conn, &req, token));
        }
        let token = match self.check_token(conn, token) {
            Ok(t) => t,
            Err((code, msg)) => return Outcome::one(error(code, msg, tracing)),
        };
        let message = req.get("message").and_then(Value::as_object);
        match (action, message) {
            ("onMessage", Some(m)) => self.on_message(&token, m, tracing),
            ("echo", Some(m)) => {
                let mut v = structured(inbound(m));
                v["type"] = "response".into();
                Outcome::one(with_tracing(v, tracing))
            }
            ("onMessage" | "echo", None) => {
                Outcome::one(error(400, "Missing required field: message", tracing))
            }
            (other, _) => {
                Outcome::one(error(400, &format!("Unsupported action: {other}"), tracing))
            }
        }
    }

    fn configure(&self, conn: &mut Conn, req: &Map<String, Value>, token: Option<&str>) -> Value {
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
        let lifetime = self.config.session_lifetime;
        let mut sessions = lock(&self.sessions);
        let new_session = !sessions.contains_key(token);
        let session = sessions.entry(token.to_owned()).or_insert_with(|| Session {
            expires_at: lifetime.map(|d| Instant::now() + d),
            expired: false,
            history: Vec::new(),
            recent_messages: VecDeque::new(),
        });
        if session.expired {
            return error(4006, "session expired", tracing);
        }
        conn.token = Some(token.to_owned());
        let mut body = json!({
            "connected": true,
            "newSession": new_session,
            "readOnly": false,
            "clearedExistingSession": false,
            "maxCustomDataBytes": 2048,
            "allowedMedia": {"inbound": {"fileTypes": [], "maxFileSizeKB": 0}},
        });
        if let Some(at) = session.expires_at {
            let left = at.saturating_duration_since(Instant::now());
            let epoch = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO);
            body["durationSeconds"] = lifetime.unwrap_or_default().as_secs().into();
            body["expirationDate"] = (epoch + left).as_secs().into();
        }
        let v = json!({"type":"response","class":"SessionResponse","code":200,"body":body});
        with_tracing(v, tracing)
    }

    /// The session token a non-configure request may use, or the error frame's code and text.
    fn check_token(&self, conn: &Conn, token: Option<&str>) -> Result<String, (u16, &'static str)> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or((400, "Missing required field: token"))?;
        match lock(&self.sessions).get(token) {
            None => return Err((4007, "session not found")),
            Some(s) if s.expired => return Err((4006, "session expired")),
            Some(_) => {}
        }
        match &conn.token {
            None => Err((400, "configureSession must be the first request")),
            Some(bound) if bound != token => Err((403, "token does not match this connection")),
            Some(_) => Ok(token.to_owned()),
        }
    }

    fn on_message(
        &self,
        token: &str,
        message: &Map<String, Value>,
        tracing: Option<&Value>,
    ) -> Outcome {
        let kind = message
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("Text");
        let text = message.get("text").and_then(Value::as_str);
        if kind == "Text" && text.is_none_or(str::is_empty) {
            return Outcome::one(error(400, "Text messages require non-empty text", tracing));
        }
        let echoed = inbound(message);
        {
            let mut sessions = lock(&self.sessions);
            let Some(session) = sessions.get_mut(token) else {
                return Outcome::one(error(4007, "session not found", tracing));
            };
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
                let body = json!({"retryAfter":1,"errorCode":4029,"message":"Message rate too high for this session"});
                let v = json!({"type":"response","class":"TooManyRequestsErrorMessage","code":429,"body":body});
                return Outcome::one(with_tracing(v, tracing));
            }
            session.recent_messages.push_back(now);
            session.history.push(echoed.clone());
        }
        let mut out = Outcome::one(with_tracing(structured(echoed), tracing));
        if self.config.agent_reply && kind == "Text" {
            out.replies.push(typing_event());
            out.agent_reply_to = text.map(str::to_owned);
        }
        out
    }
}

/// Whether a guest text frame is a `configureSession` request (the frame the fake's
/// `configure_delay` holds back).
pub(super) fn is_configure(text: &str) -> bool {
    serde_json::from_str::<Value>(text)
        .is_ok_and(|v| v.get("action").and_then(Value::as_str) == Some("configureSession"))
}
