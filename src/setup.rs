//! Setting up one connection's upstream session before relaying, by the route's kind of
//! upstream: connect (plain relay), run the declarative flow then connect (flow), or let the
//! preset open its session (which may add a browser-message rewrite and a greeting). Every
//! failure maps to a documented close code.

use std::time::Instant;

use crate::auth::flow::FlowError;
use crate::auth::hello::HelloError;
use crate::close_code::{self, CloseCode};
use crate::handshake::Subprotocol;
use crate::metrics::Metrics;
use crate::preset::{Mediator, SetupContext};
use crate::relay::{Leg, MessageTransform};
use crate::route::{FlowUpstream, Route, RouteUpstream};
use crate::upstream::{self, UpstreamError, UpstreamStream, UpstreamTarget};

/// An upstream session ready to relay.
pub struct Established {
    /// The upstream leg, positioned after anything the set-up consumed.
    pub upstream: Leg<UpstreamStream>,
    /// The browser-message rewrite, for routes that need one.
    pub transform: Option<Box<dyn MessageTransform>>,
    /// A text message guestgate sends the browser before relaying (e.g. `SessionReady`).
    pub greeting: Option<String>,
    /// A preset's message-level layer between the relay and the upstream leg.
    pub mediator: Option<Mediator>,
}

impl Established {
    /// A leg relayed verbatim: no rewrite, no greeting.
    pub fn verbatim(upstream: Leg<UpstreamStream>) -> Self {
        Self {
            upstream,
            transform: None,
            greeting: None,
            mediator: None,
        }
    }
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
    /// The browser offered only subprotocols the route does not accept.
    #[error("browser offered no subprotocol this route accepts")]
    NoCommonSubprotocol,
    /// The preset refused the browser's own request (e.g. a sign-in the route does not take,
    /// or a rejected sign-in code); the close code says why.
    #[error("browser request refused: {}", .0.reason)]
    Browser(CloseCode),
    /// A token endpoint the preset needed failed (e.g. Genesys's sign-in exchange).
    #[error("upstream token endpoint failed: {0}")]
    Token(crate::preset::genesys::signin::TokenError),
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
            SetupError::NoCommonSubprotocol => close_code::NO_COMMON_SUBPROTOCOL,
            SetupError::Browser(code) => *code,
            SetupError::Token(crate::preset::genesys::signin::TokenError::RateLimited) => {
                close_code::UPSTREAM_RATE_LIMITED
            }
            SetupError::Token(_) => close_code::UPSTREAM_UNAVAILABLE,
        }
    }

    /// True when the browser's own request caused the failure (a query value outside the
    /// flow's allowlist, subprotocol offers with nothing in common): the connection counts as
    /// `rejected`, never as an upstream failure.
    pub fn is_browser_request(&self) -> bool {
        match self {
            SetupError::Flow(f) => f.is_browser_request(),
            SetupError::NoCommonSubprotocol | SetupError::Browser(_) => true,
            _ => false,
        }
    }

    /// A closed-set label for `guestgate_upstream_failures_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            SetupError::Connect(e) => e.kind(),
            SetupError::Hello(e) => e.kind(),
            SetupError::Flow(e) => e.kind(),
            SetupError::NoCommonSubprotocol | SetupError::Browser(_) => "browser_request",
            SetupError::Token(_) => "token",
        }
    }
}

/// What the browser brought that the set-up may use.
#[derive(Debug, Default, Clone)]
pub struct BrowserRequest {
    /// The raw query string of the upgrade request (it may carry a resume ticket).
    pub query: Option<String>,
    /// The subprotocol agreed with the browser, if it offered any.
    pub subprotocol: Subprotocol,
    /// A resume ticket the browser presented in its first frame (`?resume=first-frame`), kept
    /// out of the URL and so out of access logs.
    pub resume_ticket: Option<String>,
    /// A sign-in the browser presented in its first frame (`?signin=first-frame`), for routes
    /// with signed-in customers.
    pub sign_in: Option<crate::auth::sign_in_code::SignInCode>,
    /// The connection's id (the `conn` field of its log lines).
    pub conn: u64,
}

impl BrowserRequest {
    /// The subprotocol to ask the upstream for.
    fn upstream_protocol(&self) -> Result<Option<&str>, SetupError> {
        match &self.subprotocol {
            Subprotocol::NotOffered => Ok(None),
            Subprotocol::Agreed(p) => Ok(Some(p)),
            Subprotocol::NoneInCommon { .. } => Err(SetupError::NoCommonSubprotocol),
        }
    }
}

/// Connects upstream and, for a preset or flow route, establishes the upstream session.
pub async fn establish(
    route: &Route,
    browser: &BrowserRequest,
    metrics: &Metrics,
) -> Result<Established, SetupError> {
    // Checked before any upstream work: a browser that cannot be served costs nothing.
    let protocol = browser.upstream_protocol()?;
    match &route.upstream {
        RouteUpstream::Relay(target) => {
            let leg = connect(target, protocol, &route.name, metrics).await?;
            Ok(Established::verbatim(leg))
        }
        RouteUpstream::Flow(flow) => {
            let target = run_flow(route, flow, browser, metrics).await?;
            let leg = connect(&target, protocol, &route.name, metrics).await?;
            Ok(Established::verbatim(leg))
        }
        RouteUpstream::Preset(preset) => {
            let ctx = SetupContext {
                route: &route.name,
                resume: route.resume.as_ref(),
                browser,
                metrics,
            };
            preset.establish(&ctx).await
        }
    }
}

/// Runs the route's declarative flow for one connection: the upstream request it renders.
async fn run_flow(
    route: &Route,
    flow: &FlowUpstream,
    browser: &BrowserRequest,
    metrics: &Metrics,
) -> Result<UpstreamTarget, SetupError> {
    let started = Instant::now();
    let rendered = flow.flow.run(browser.query.as_deref()).await;
    metrics.observe_setup_step(&route.name, "http_step", started.elapsed());
    if let Some(source) = flow.flow.token_source()
        && let Some(secs) = source.seconds_until_expiry()
    {
        metrics.set_token_expiry(
            &route.name,
            std::time::Duration::from_secs_f64(secs.max(0.0)),
        );
    }
    let (url, headers) = rendered?;
    Ok(flow.target(url, headers))
}

/// Opens the upstream leg to `target` (asking for `protocol`), timing it for the route's
/// set-up metrics.
pub async fn connect(
    target: &UpstreamTarget,
    protocol: Option<&str>,
    route: &str,
    metrics: &Metrics,
) -> Result<Leg<UpstreamStream>, SetupError> {
    let started = Instant::now();
    let conn = upstream::connect(target, protocol).await;
    metrics.observe_setup_step(route, "upstream_connect", started.elapsed());
    let conn = conn?;
    Ok(Leg {
        io: conn.stream,
        prefix: conn.prefix,
    })
}
