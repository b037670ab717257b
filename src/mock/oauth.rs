//! `FakeOAuth`: a tiny HTTP/1.1 server playing an OAuth2 client-credentials token endpoint
//! (`POST /oauth/token`) and a guest-create endpoint (`POST /api/v2/guests`) for testing
//! guestgate's token source and auth steps, with failure modes switchable at runtime.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::support::{Lifecycle, lock};

/// How the token endpoint answers. The guest endpoint is not affected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OAuthMode {
    /// Check the credentials and issue tokens.
    #[default]
    Ok,
    /// Answer with this status: 401 `{"error":"invalid_client"}`, 429 with `Retry-After: 1`,
    /// 400 `invalid_request`, anything else `server_error`.
    Status(u16),
    /// Never answer (until shutdown).
    Hang,
    /// Answer 200 with a truncated JSON body.
    BadJson,
}

/// Settings for a [`FakeOAuth`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeOAuthConfig {
    /// The only client id accepted.
    pub client_id: String,
    /// The only client secret accepted (compared byte for byte, no URL-decoding).
    pub client_secret: String,
    /// `expires_in` of issued tokens, in seconds; tokens are refused at the guest endpoint
    /// after that long.
    pub expires_in: u64,
}

impl Default for FakeOAuthConfig {
    fn default() -> Self {
        FakeOAuthConfig {
            client_id: "fake-client-id".into(),
            client_secret: "fake-client-secret".into(),
            expires_in: 86_400,
        }
    }
}

/// Entry point for starting a fake OAuth server; see [`FakeOAuth::start`].
#[derive(Debug)]
pub struct FakeOAuth;

impl FakeOAuth {
    /// Starts serving on an already-bound listener. Must be called inside a tokio runtime.
    pub fn start(listener: TcpListener, config: FakeOAuthConfig) -> FakeOAuthHandle {
        let state = Arc::new(State {
            config,
            mode: Mutex::new(OAuthMode::Ok),
            delay: Mutex::new(Duration::ZERO),
            token_fetches: AtomicUsize::new(0),
            guest_creates: AtomicUsize::new(0),
            issued: Mutex::new(HashMap::new()),
            guest_tokens: Mutex::new(Vec::new()),
        });
        let s = state.clone();
        let life = Lifecycle::spawn(listener, move |stream| serve(stream, s.clone()));
        FakeOAuthHandle {
            state,
            life: Arc::new(life),
        }
    }
}

#[derive(Debug)]
struct State {
    config: FakeOAuthConfig,
    mode: Mutex<OAuthMode>,
    delay: Mutex<Duration>,
    token_fetches: AtomicUsize,
    guest_creates: AtomicUsize,
    /// access token -> expiry.
    issued: Mutex<HashMap<String, Instant>>,
    guest_tokens: Mutex<Vec<String>>,
}

/// Controls a running [`FakeOAuth`] and reads its counters. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FakeOAuthHandle {
    state: Arc<State>,
    life: Arc<Lifecycle>,
}

impl FakeOAuthHandle {
    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.life.addr()
    }

    /// Base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// `{url}/oauth/token`.
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.url())
    }

    /// `{url}/api/v2/guests`.
    pub fn guests_url(&self) -> String {
        format!("{}/api/v2/guests", self.url())
    }

    /// Requests that reached the token endpoint, whatever the outcome.
    pub fn token_fetches(&self) -> usize {
        self.state.token_fetches.load(Ordering::SeqCst)
    }

    /// Access tokens issued so far.
    pub fn tokens_issued(&self) -> usize {
        lock(&self.state.issued).len()
    }

    /// Requests that reached the guest endpoint, whatever the outcome.
    pub fn guest_creates(&self) -> usize {
        self.state.guest_creates.load(Ordering::SeqCst)
    }

    /// Guest tokens handed out, in order.
    pub fn guest_tokens(&self) -> Vec<String> {
        lock(&self.state.guest_tokens).clone()
    }

    /// Changes how the token endpoint answers from the next request on.
    pub fn set_mode(&self, mode: OAuthMode) {
        *lock(&self.state.mode) = mode;
    }

    /// Delays every token-endpoint answer by this much (`Duration::ZERO` for none).
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.state.delay) = delay;
    }

    /// Invalidates every access token issued so far, as a revocation or rotation would.
    pub fn revoke_tokens(&self) {
        for expiry in lock(&self.state.issued).values_mut() {
            *expiry = Instant::now();
        }
    }

    /// Stops accepting, drops every connection and waits for the server's tasks to end.
    pub async fn shutdown(&self) {
        self.life.shutdown().await;
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: serde_json::Value) -> Reply {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("static header"),
    );
    resp
}

async fn serve(stream: TcpStream, state: Arc<State>) {
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(req, &state).await) }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "fake oauth connection ended with an error");
    }
}

async fn route(req: Request<Incoming>, state: &State) -> Reply {
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::POST, "/oauth/token") => token(req, state).await,
        (&Method::POST, "/api/v2/guests") => guest(&req, state),
        (_, "/oauth/token" | "/api/v2/guests") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error":"method_not_allowed"}),
        ),
        _ => reply(StatusCode::NOT_FOUND, json!({"error":"not_found"})),
    }
}

/// Extracts `(client_id, client_secret)` from a Basic header.
fn basic_credentials(req: &Request<Incoming>) -> Option<(String, String)> {
    let header = req.headers().get("authorization")?.to_str().ok()?;
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

async fn token(req: Request<Incoming>, state: &State) -> Reply {
    state.token_fetches.fetch_add(1, Ordering::SeqCst);
    let delay = *lock(&state.delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mode = *lock(&state.mode);
    match mode {
        OAuthMode::Ok => {}
        OAuthMode::Hang => std::future::pending::<()>().await,
        OAuthMode::BadJson => {
            let mut r = reply(StatusCode::OK, json!(null));
            *r.body_mut() = Full::new(Bytes::from_static(b"{\"access_token\": \"fake-acc"));
            return r;
        }
        OAuthMode::Status(code) => return failure(code),
    }
    let basic = basic_credentials(&req);
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return failure(400),
    };
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error":"unsupported_grant_type"}),
        );
    }
    let (id, secret) = match (basic, form.get("client_id"), form.get("client_secret")) {
        (Some(creds), _, _) => creds,
        (None, Some(id), Some(secret)) => (id.clone(), secret.clone()),
        _ => return failure(401),
    };
    if id != state.config.client_id || secret != state.config.client_secret {
        return failure(401);
    }
    let expires_in = state.config.expires_in;
    let access_token = {
        let mut issued = lock(&state.issued);
        let t = format!("fake-access-{}", issued.len() + 1);
        issued.insert(t.clone(), Instant::now() + Duration::from_secs(expires_in));
        t
    };
    let body = json!({"access_token":access_token,"token_type":"bearer","expires_in":expires_in});
    reply(StatusCode::OK, body)
}

/// The token endpoint's error answers, shaped like a real OAuth server's.
fn failure(code: u16) -> Reply {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let error = match status.as_u16() {
        401 => "invalid_client",
        400 => "invalid_request",
        429 => "too_many_requests",
        _ => "server_error",
    };
    let mut r = reply(status, json!({ "error": error }));
    if status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut()
            .insert("retry-after", "1".parse().expect("static header"));
    }
    r
}

fn guest(req: &Request<Incoming>, state: &State) -> Reply {
    state.guest_creates.fetch_add(1, Ordering::SeqCst);
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let valid = bearer
        .and_then(|t| lock(&state.issued).get(t.trim()).copied())
        .is_some_and(|expiry| Instant::now() < expiry);
    if !valid {
        return reply(StatusCode::UNAUTHORIZED, json!({"error":"invalid_token"}));
    }
    let token = format!("guest-token-{}", uuid::Uuid::new_v4());
    lock(&state.guest_tokens).push(token.clone());
    reply(
        StatusCode::OK,
        json!({"id": format!("guest-{}", uuid::Uuid::new_v4()), "token": token}),
    )
}

#[cfg(test)]
#[path = "oauth_tests.rs"]
mod tests;
