//! One Genesys guest session per browser connection: connect to the deployment's socket,
//! resume the conversation a valid ticket names or start a new one (`configureSession` with a
//! session token guestgate generates and keeps), and greet the browser with `SessionReady`
//! carrying a fresh resume ticket.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};
use tracing::debug;

use super::GenesysConfig;
use super::conversation::{Conversation, HistoryApi, SignInState};
use super::signin::{self, TokenApi};
use crate::auth::hello::{self, HelloError};
use crate::auth::resume::{ResumeError, ResumeTicket, unix_now};
use crate::config::RelaySettings;
use crate::preset::Mediator;
use crate::preset::{PresetContext, SetupContext};
use crate::relay::{RateLimit, RelayConfig};
use crate::secret::Secret;
use crate::setup::{self, Established, SetupError};
use crate::upstream::UpstreamTarget;
use std::sync::Arc;

/// Genesys's own SDK pings every 15 s; guestgate pings the upstream at least as often.
const UPSTREAM_PING_AT_MOST: Duration = Duration::from_secs(15);

/// The browser message rate unless the route sets one. Genesys accepts 2 `onMessage` per
/// second per session, but typing events, `echo` keep-alives and pongs count too: 5 per
/// second sustained with bursts of 20 lets a real Messenger page through (a burst of typing
/// plus a pasted message) while a flood is closed within a second, before it costs the
/// upstream more than its own limit would.
pub const DEFAULT_BROWSER_RATE: RateLimit = RateLimit {
    per_second: 5,
    burst: 20,
};

/// The Genesys preset prepared for a route.
pub struct GenesysPreset {
    config: GenesysConfig,
    target: UpstreamTarget,
    api: Arc<HistoryApi>,
    /// The token endpoints, when the route has signed-in customers.
    tokens: Option<Arc<TokenApi>>,
}

impl GenesysPreset {
    /// The deployment's socket with its Origin, over the route's TLS settings.
    pub fn new(config: GenesysConfig, ctx: PresetContext) -> Result<Self, String> {
        let origin = origin_value(&config)?;
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, origin.clone());
        let client = rest_client(&ctx)?;
        let api = Arc::new(HistoryApi {
            base: config.api_base_url(),
            origin: origin_value(&config)?,
            client: client.clone(),
        });
        let tokens = config.auth.as_ref().map(|auth| {
            Arc::new(TokenApi::new(
                config.api_base_url(),
                config.deployment_id.clone(),
                auth.redirect_uri.clone(),
                origin.clone(),
                client,
            ))
        });
        let target = UpstreamTarget {
            url: config.socket_url(),
            headers,
            tls: ctx.tls,
            timeout: ctx.connect_timeout,
        };
        Ok(Self {
            config,
            target,
            api,
            tokens,
        })
    }

    /// The preset's settings.
    pub fn config(&self) -> &GenesysConfig {
        &self.config
    }

    /// The deployment's socket.
    pub fn target(&self) -> &UpstreamTarget {
        &self.target
    }

    /// Upstream pings no rarer than Genesys's own SDK sends them, and small browser limits
    /// and a browser message rate ([`DEFAULT_BROWSER_RATE`]) unless `written` (the route's
    /// `[routes.relay]` as written) sets them (see `limits`).
    pub fn tune_relay(&self, relay: &mut RelayConfig, written: &RelaySettings) {
        relay.upstream_ping = relay.upstream_ping.map(|d| d.min(UPSTREAM_PING_AT_MOST));
        super::limits::tune_browser_limits(&mut relay.browser_limits, written);
        if written.browser_messages_per_second.is_none() {
            relay.browser_rate = Some(DEFAULT_BROWSER_RATE);
        }
    }

    /// Connects, configures (or resumes) the guest session and prepares the conversation
    /// layer that greets the page and carries the session (see `conversation`).
    pub async fn establish(&self, ctx: &SetupContext<'_>) -> Result<Established, SetupError> {
        let now = unix_now();
        let mut resumed = resume_ticket(ctx, now);
        // Signed-in customers: exchange the page's code or refresh the ticket's refresh token
        // before any socket is opened (a refused sign-in costs the socket nothing).
        let mut signed_in = signin::credentials(
            self.config.auth.as_ref(),
            self.tokens.as_deref(),
            ctx,
            resumed.as_ref(),
            now,
        )
        .await?;
        let mut leg = setup::connect(&self.target, None, ctx.route, ctx.metrics).await?;
        let mut token = match &resumed {
            Some(ticket) => ticket.session_token.expose().to_owned(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        let hello_started = Instant::now();
        let mut previous = None;
        let prefix = std::mem::take(&mut leg.prefix);
        let hello = |token: &str| match &signed_in {
            Some(t) => self.config.hello_authenticated(token, t.jwt.expose()),
            None => self.config.hello(token),
        };
        let (ready, rest) = match hello::exchange(&mut leg.io, prefix, &hello(&token)).await {
            Err(HelloError::Refused {
                code: Some(4006 | 4007),
            }) if resumed.is_some() => {
                // The ticket's session is gone upstream (expired, cleared): the old ticket stops
                // resuming and the page gets a new conversation, not an error loop.
                ctx.metrics.resume_attempt("ended");
                resumed = None;
                previous = Some("ended");
                token = uuid::Uuid::new_v4().to_string();
                hello::exchange(&mut leg.io, Bytes::new(), &hello(&token)).await?
            }
            other => other?,
        };
        ctx.metrics
            .observe_setup_step(ctx.route, "hello_ready", hello_started.elapsed());
        leg.prefix = rest;
        let body = ready.get("body").cloned().unwrap_or(Value::Null);
        let new_session = body.get("newSession") == Some(&Value::Bool(true));
        if resumed.is_some() {
            ctx.metrics
                .resume_attempt(if new_session { "fresh" } else { "resumed" });
        }
        let token = Secret::new(token);
        let ticket = ctx.resume.map(|(keys, cfg)| {
            // A renewal keeps the conversation's first issue time, so renewing never extends
            // it past `max_lifetime`; a session that turned out new gets a ticket of its own.
            let ticket = match resumed.take() {
                Some(t) if !new_session => t,
                _ => ResumeTicket::new(ctx.route, token.clone(), now, cfg.ttl),
            };
            let refresh = signed_in.as_ref().map(|t| t.refresh_token.clone());
            keys.seal(&ticket.with_refresh_token(refresh))
        });
        // Replaying only makes sense into the same conversation.
        let after = after_param(ctx).filter(|_| !new_session);
        let conversation = Conversation {
            token,
            deployment_id: self.config.deployment_id.clone(),
            allowed: self.config.page_actions(),
            attachments: self.config.attachments,
            greeting: session_ready(&body, ticket, previous, signed_in.is_some()),
            after,
            api: self.api.clone(),
            queue_capacity: self.config.message_queue,
            reply_timeout: self.config.ready_timeout,
            join: self.config.auto_start && new_session,
            sign_in: self.tokens.clone().map(|api| SignInState {
                api,
                allow_upgrade: self.config.auth.as_ref().is_some_and(|a| a.allow_upgrade),
                tokens: signed_in.take(),
            }),
        };
        Ok(Established {
            upstream: leg,
            transform: None,
            greeting: None,
            mediator: Some(Mediator::Genesys(Box::new(conversation))),
        })
    }

    /// What `guestgate check` says about the preset.
    pub fn explain(&self) -> Vec<String> {
        let g = &self.config;
        let mut lines = vec![
            format!("preset: {}", super::KIND),
            format!("upstream: {}", g.socket_url()),
            format!("upstream Origin: {}", g.origin_header()),
        ];
        let hello = g.hello("[session token, generated per conversation]");
        lines.extend(hello.frames.iter().map(|f| format!("hello: {f}")));
        lines.extend(
            hello
                .ready
                .iter()
                .map(|c| format!("ready when {} == {}", c.pointer, c.equals)),
        );
        lines.push(format!("ready deadline: {:?}", hello.deadline));
        lines.push(format!(
            "page requests: token injected; actions passed to Genesys: {}",
            g.page_actions().join(", ")
        ));
        lines.push(
            "guestgate requests: guestgate.getHistory, guestgate.startNew; reconnect replay with after=<message id>"
                .to_owned(),
        );
        lines.push(format!(
            "onMessage paced to Genesys's 2 per second; up to {} wait per connection; typing thinned to one per 5 s",
            g.message_queue
        ));
        lines.push(format!(
            "attachments: {}",
            if g.attachments {
                "on (the deployment decides types and sizes)"
            } else {
                "off"
            }
        ));
        lines.push(format!("history API: {}", g.api_base_url()));
        if g.auto_start {
            lines.push("auto-start: presence Join sent once for each new session".to_owned());
        }
        match &g.auth {
            Some(a) => lines.push(format!(
                "signed-in customers: on (redirect URI {}; guests {}; upgrades {}); JWT and refresh token kept server-side, the refresh token sealed in the resume ticket",
                a.redirect_uri,
                if a.allow_anonymous { "allowed" } else { "refused (4412)" },
                if a.allow_upgrade { "allowed" } else { "refused" },
            )),
            None => lines.push("signed-in customers: off".to_owned()),
        }
        lines
    }
}

/// The `SessionReady` frame: the `SessionResponse` body's public fields (`newSession`,
/// `readOnly`, `allowedMedia`, ...), the resume ticket, and `previousSession: "ended"` when the
/// page's ticket named a session that is gone, and whether the customer is signed in.
pub(crate) fn session_ready(
    response: &Value,
    ticket: Option<String>,
    previous: Option<&str>,
    signed_in: bool,
) -> String {
    let mut body = serde_json::Map::new();
    for key in SESSION_FIELDS {
        if let Some(v) = response.get(*key) {
            body.insert((*key).to_owned(), v.clone());
        }
    }
    body.entry("newSession").or_insert(Value::Null);
    if let Some(t) = ticket {
        body.insert("resumeTicket".into(), Value::String(t));
    }
    if let Some(p) = previous {
        body.insert("previousSession".into(), Value::String(p.to_owned()));
    }
    body.insert("signedIn".into(), Value::Bool(signed_in));
    json!({ "type": "guestgate", "class": "SessionReady", "body": body }).to_string()
}

/// `SessionResponse` fields a page may see (nothing in it is a credential; listed so a new
/// upstream field is not passed on unread).
const SESSION_FIELDS: &[&str] = &[
    "newSession",
    "readOnly",
    "clearedExistingSession",
    "maxCustomDataBytes",
    "durationSeconds",
    "expirationDate",
    "allowedMedia",
];

/// Longest message id accepted in `after`.
const MAX_AFTER_LEN: usize = 128;

/// The `after` query parameter: the id of the last message a reconnecting page saw. Ignored
/// unless it looks like an id.
fn after_param(ctx: &SetupContext<'_>) -> Option<String> {
    let query = ctx.browser.query.as_deref()?;
    let (_, value) = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "after")?;
    let ok = !value.is_empty()
        && value.len() <= MAX_AFTER_LEN
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    ok.then(|| value.into_owned())
}

/// The client for the Genesys REST API (history, tokens): the route's TLS settings, no
/// redirects or proxies, the connect timeout bounding connects (and at least 10 s each call).
fn rest_client(ctx: &PresetContext) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tls_backend_preconfigured((*ctx.tls).clone())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(ctx.connect_timeout)
        .timeout(ctx.connect_timeout.max(Duration::from_secs(10)))
        .user_agent(concat!("guestgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("genesys: building the REST client: {e}"))
}

/// The deployment's Origin as a header value.
fn origin_value(config: &GenesysConfig) -> Result<HeaderValue, String> {
    HeaderValue::from_str(&config.origin_header())
        .map_err(|_| "genesys.origin: not a valid header value".to_owned())
}

/// The renewal of the browser's resume ticket, if it presented a valid one still within
/// `max_lifetime` of its conversation's first ticket. Any problem with the ticket starts a
/// fresh session; it is never an error for the browser.
fn resume_ticket(ctx: &SetupContext<'_>, now: u64) -> Option<ResumeTicket> {
    let (keys, cfg) = ctx.resume?;
    let ticket = match &ctx.browser.resume_ticket {
        Some(from_first_frame) => from_first_frame.clone(),
        None => crate::auth::resume::ticket_in_query(ctx.browser.query.as_deref()?, &cfg.param)?,
    };
    let renewed = keys.open(&ticket, ctx.route, now).and_then(|t| {
        t.renewed(now, cfg.ttl, cfg.max_lifetime)
            .ok_or(ResumeError::Expired)
    });
    match renewed {
        Ok(t) => Some(t),
        Err(e) => {
            ctx.metrics.resume_attempt(e.outcome_label());
            debug!(route = %ctx.route, error = %e, "resume ticket not accepted; starting a fresh session");
            None
        }
    }
}
