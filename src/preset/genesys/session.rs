//! One Genesys guest session per browser connection: connect to the deployment's socket,
//! resume the conversation a valid ticket names or start a new one (`configureSession` with a
//! session token guestgate generates and keeps), and greet the browser with `SessionReady`
//! carrying a fresh resume ticket.

use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};
use tracing::debug;

use super::GenesysConfig;
use crate::auth::hello;
use crate::auth::resume::{ResumeError, ResumeTicket, unix_now};
use crate::config::RelaySettings;
use crate::preset::{PresetContext, SetupContext};
use crate::relay::{RateLimit, RelayConfig};
use crate::secret::Secret;
use crate::setup::{self, Established, SetupError};
use crate::upstream::UpstreamTarget;

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
}

impl GenesysPreset {
    /// The deployment's socket with its Origin, over the route's TLS settings.
    pub fn new(config: GenesysConfig, ctx: PresetContext) -> Result<Self, String> {
        let origin = HeaderValue::from_str(&config.origin_header())
            .map_err(|_| "genesys.origin: not a valid header value".to_owned())?;
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, origin);
        let target = UpstreamTarget {
            url: config.socket_url(),
            headers,
            tls: ctx.tls,
            timeout: ctx.connect_timeout,
        };
        Ok(Self { config, target })
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

    /// Connects, configures (or resumes) the guest session and prepares the greeting and the
    /// token-inserting rewrite of browser messages.
    pub async fn establish(&self, ctx: &SetupContext<'_>) -> Result<Established, SetupError> {
        let mut leg = setup::connect(&self.target, None, ctx.route, ctx.metrics).await?;
        let now = unix_now();
        let resumed = resume_ticket(ctx, now);
        let token = match &resumed {
            Some(ticket) => ticket.session_token.expose().to_owned(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        let hello_started = Instant::now();
        let spec = self.config.hello(&token);
        let (ready, rest) =
            hello::exchange(&mut leg.io, std::mem::take(&mut leg.prefix), &spec).await?;
        ctx.metrics
            .observe_setup_step(ctx.route, "hello_ready", hello_started.elapsed());
        leg.prefix = rest;
        let new_session = ready
            .pointer("/body/newSession")
            .cloned()
            .unwrap_or(Value::Null);
        if resumed.is_some() {
            let outcome = if new_session == Value::Bool(false) {
                "resumed"
            } else {
                "fresh"
            };
            ctx.metrics.resume_attempt(outcome);
        }
        let mut body = json!({ "newSession": new_session });
        if let Some((keys, cfg)) = ctx.resume {
            // A renewal keeps the conversation's first issue time, so renewing never extends
            // it past `max_lifetime`.
            let ticket = resumed.unwrap_or_else(|| {
                ResumeTicket::new(ctx.route, Secret::new(token.clone()), now, cfg.ttl)
            });
            body["resumeTicket"] = Value::String(keys.seal(&ticket));
        }
        let greeting = json!({ "type": "guestgate", "class": "SessionReady", "body": body });
        Ok(Established {
            upstream: leg,
            transform: Some(self.config.transform(&token)),
            greeting: Some(greeting.to_string()),
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
            "browser requests: token injected; actions allowed: {}",
            g.allowed_actions.join(", ")
        ));
        lines
    }
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
