//! Setting up one connection's upstream session before relaying: connect, then, for a route
//! with a preset, run its hello exchange and prepare the browser-message rewrite and the
//! greeting guestgate sends the browser. Every failure maps to a documented close code.

use std::time::Instant;

use serde_json::{Value, json};

use crate::auth::flow::FlowError;
use crate::auth::hello::{self, HelloError};
use crate::auth::resume::{ResumeTicket, unix_now};
use crate::close_code::{self, CloseCode};
use crate::metrics::Metrics;
use crate::relay::{Leg, MessageTransform};
use crate::route::Route;
use crate::secret::Secret;
use crate::upstream::{self, UpstreamError, UpstreamStream};
use tracing::debug;

/// An upstream session ready to relay.
pub struct Established {
    /// The upstream leg, positioned after anything the set-up consumed.
    pub upstream: Leg<UpstreamStream>,
    /// The browser-message rewrite, for routes that need one.
    pub transform: Option<Box<dyn MessageTransform>>,
    /// A text message guestgate sends the browser before relaying (e.g. `SessionReady`).
    pub greeting: Option<String>,
}

/// Why the set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Opening the upstream leg failed.
    #[error(transparent)]
    Connect(#[from] UpstreamError),
    /// The hello exchange failed.
    #[error(transparent)]
    Hello(#[from] HelloError),
    /// The declarative flow (token, steps, templates) failed.
    #[error(transparent)]
    Flow(#[from] FlowError),
}

impl SetupError {
    /// The close code and reason the browser receives.
    pub fn close_code(&self) -> CloseCode {
        match self {
            SetupError::Connect(e) => e.close_code(),
            SetupError::Hello(HelloError::Refused { code: Some(429) }) => {
                close_code::UPSTREAM_RATE_LIMITED
            }
            SetupError::Hello(HelloError::Refused { .. }) => close_code::UPSTREAM_SESSION_REFUSED,
            SetupError::Hello(HelloError::Timeout(_)) => close_code::UPSTREAM_TIMEOUT,
            SetupError::Hello(HelloError::Closed) => close_code::UPSTREAM_UNAVAILABLE,
            SetupError::Hello(HelloError::Invalid(_)) => close_code::UPSTREAM_BAD,
            SetupError::Flow(e) => e.close_code(),
        }
    }

    /// A closed-set label for `guestgate_upstream_failures_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            SetupError::Connect(e) => e.kind(),
            SetupError::Hello(e) => e.kind(),
            SetupError::Flow(e) => e.kind(),
        }
    }
}

/// The session token from the browser's resume ticket, if it presented a valid one. Any
/// problem with the ticket starts a fresh session; it is never an error for the browser.
fn resume_token(route: &Route, browser: &BrowserRequest, metrics: &Metrics) -> Option<String> {
    let (keys, cfg) = route.resume.as_ref()?;
    let query = browser.query.as_deref()?;
    let ticket = url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| *name == cfg.param.as_str())
        .map(|(_, value)| value.into_owned())?;
    match keys.open(&ticket, &route.name, unix_now()) {
        Ok(t) => Some(t.session_token.expose().to_owned()),
        Err(e) => {
            metrics.resume_attempt(e.outcome_label());
            debug!(route = %route.name, error = %e, "resume ticket not accepted; starting a fresh session");
            None
        }
    }
}

/// What the browser brought that the set-up may use.
#[derive(Debug, Default, Clone)]
pub struct BrowserRequest {
    /// The raw query string of the upgrade request (it may carry a resume ticket).
    pub query: Option<String>,
}

/// Connects upstream and, for a preset route, establishes the guest session.
pub async fn establish(
    route: &Route,
    browser: &BrowserRequest,
    metrics: &Metrics,
) -> Result<Established, SetupError> {
    let flow_target;
    let target = match &route.flow {
        Some(flow) => {
            let flow_started = Instant::now();
            let rendered = flow.run(browser.query.as_deref()).await;
            metrics.observe_setup_step(&route.name, "http_step", flow_started.elapsed());
            if let Some(source) = flow.token_source()
                && let Some(secs) = source.seconds_until_expiry()
            {
                metrics.set_token_expiry(
                    &route.name,
                    std::time::Duration::from_secs_f64(secs.max(0.0)),
                );
            }
            let (url, headers) = rendered?;
            let mut target = route.target.clone();
            target.url = url;
            target.headers.extend(headers);
            flow_target = target;
            &flow_target
        }
        None => &route.target,
    };
    let started = Instant::now();
    let conn = upstream::connect(target).await;
    metrics.observe_setup_step(&route.name, "upstream_connect", started.elapsed());
    let conn = conn?;
    let mut leg = Leg {
        io: conn.stream,
        prefix: conn.prefix,
    };
    let Some(genesys) = &route.genesys else {
        return Ok(Established {
            upstream: leg,
            transform: None,
            greeting: None,
        });
    };

    let resumed = resume_token(route, browser, metrics);
    let token = resumed
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let hello_started = Instant::now();
    let spec = genesys.hello(&token);
    let (ready, rest) =
        hello::exchange(&mut leg.io, std::mem::take(&mut leg.prefix), &spec).await?;
    metrics.observe_setup_step(&route.name, "hello_ready", hello_started.elapsed());
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
        metrics.resume_attempt(outcome);
    }
    let mut body = json!({ "newSession": new_session });
    if let Some((keys, cfg)) = &route.resume {
        let ticket =
            ResumeTicket::new(&route.name, Secret::new(token.clone()), unix_now(), cfg.ttl);
        body["resumeTicket"] = Value::String(keys.seal(&ticket));
    }
    let greeting = json!({ "type": "guestgate", "class": "SessionReady", "body": body });
    Ok(Established {
        upstream: leg,
        transform: Some(genesys.transform(&token)),
        greeting: Some(greeting.to_string()),
    })
}
