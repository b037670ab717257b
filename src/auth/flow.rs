//! The declarative upstream flow for vendors without a preset: an optional OAuth2 token source
//! shared by the route, per-connection HTTP steps, and the upstream URL and headers rendered
//! from templates. The shape the forum question asks for: client credentials, create a guest,
//! put the guest token in the upstream URL.
//!
//! ```toml
//! [routes.flow]
//! upstream = "wss://chat.vendor.example/socket?token={{steps.guest.token}}"
//! headers = { "X-Tenant" = "acme" }
//! query = [{ name = "lang", charset = "alnum", max_len = 8 }]
//! [routes.flow.oauth]
//! token_url = "https://login.vendor.example/oauth/token"
//! client_id = "guestgate"
//! client_secret = { env = "VENDOR_CLIENT_SECRET" }
//! [[routes.flow.steps]]
//! name = "guest"
//! url = "https://api.vendor.example/api/v2/guests"
//! headers = { Authorization = "Bearer {{oauth.access_token}}" }
//! json = { language = "{{query.lang}}" }
//! extract = { token = "/token" }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::steps::{self, CloseHint, PreparedStep, StepConfig, StepError};
use super::template::{
    Known, QueryError, QueryParam, RenderError, Template, Values, extract_query,
    validate_query_params,
};
use super::token::{
    OAuthConfig, OutcomeHook, TokenError, TokenFetchOutcome, TokenSource, is_insecure_http,
};
use crate::close_code::{self, CloseCode};

/// Headers the flow may not set on the upstream request: the upgrade itself owns them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
];

/// `[routes.flow]` as written in the config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// OAuth2 client credentials, shared by every connection of the route.
    #[serde(default)]
    pub oauth: Option<OAuthConfig>,
    /// HTTP requests run per connection, in order.
    #[serde(default)]
    pub steps: Vec<StepConfig>,
    /// The upstream WebSocket URL template; scheme and host must be literal.
    pub upstream: String,
    /// Upstream request headers (templates).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Browser query parameters templates may use, each with a length and charset limit.
    #[serde(default)]
    pub query: Vec<QueryParam>,
    /// Timeout for the OAuth and step HTTP client's connects.
    #[serde(default = "default_http_timeout", with = "humantime_serde")]
    pub http_timeout: Duration,
    /// Allow plain `http://` for the token URL and step URLs (they carry the client secret
    /// and tokens). Off by default; literal loopback addresses need no opt-in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_http: bool,
}

fn default_http_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The flow compiled once at start-up.
pub struct PreparedFlow {
    token_source: Option<TokenSource>,
    client: reqwest::Client,
    steps: Vec<PreparedStep>,
    upstream: Template,
    /// The upstream template's literal scheme, host and port.
    upstream_origin: url::Url,
    headers: Vec<(HeaderName, Template)>,
    query: Vec<QueryParam>,
}

/// Why the flow failed for one connection. Never carries a secret or a rendered value.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The browser's query parameters broke the route's allowlist.
    #[error("browser query: {0}")]
    Query(#[from] QueryError),
    /// No OAuth token could be had.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// An HTTP step failed.
    #[error(transparent)]
    Step(#[from] StepError),
    /// The upstream URL or a header could not be rendered.
    #[error("rendering the upstream request: {0}")]
    Render(#[from] RenderError),
    /// The rendered upstream URL or a header is invalid.
    #[error("rendered upstream request is invalid: {0}")]
    Invalid(&'static str),
}

impl FlowError {
    /// True when the browser's own request caused the failure: a `query.<param>` value that
    /// breaks the route's allowlist, or one the templates need that it did not send. Such a
    /// connection is `rejected` (close 1008), never counted as an upstream failure.
    pub fn is_browser_request(&self) -> bool {
        match self {
            FlowError::Query(_) => true,
            FlowError::Render(e) | FlowError::Step(StepError::Render { source: e, .. }) => {
                missing_query_value(e)
            }
            _ => false,
        }
    }

    /// The close code and reason the browser receives.
    pub fn close_code(&self) -> CloseCode {
        if self.is_browser_request() {
            return CloseCode {
                code: close_code::POLICY_VIOLATION.code,
                reason: "query parameter not allowed",
            };
        }
        match self {
            FlowError::Query(_) => unreachable!("a browser request error"),
            FlowError::Token(e) => match e.kind() {
                TokenFetchOutcome::Rejected => close_code::UPSTREAM_AUTH_FAILED,
                TokenFetchOutcome::Timeout => close_code::UPSTREAM_TIMEOUT,
                TokenFetchOutcome::BadResponse => close_code::UPSTREAM_BAD,
                _ => close_code::UPSTREAM_UNAVAILABLE,
            },
            FlowError::Step(e) => match e.close_hint() {
                CloseHint::Auth => close_code::UPSTREAM_AUTH_FAILED,
                CloseHint::Unavailable => close_code::UPSTREAM_UNAVAILABLE,
            },
            FlowError::Render(_) | FlowError::Invalid(_) => close_code::INTERNAL,
        }
    }

    /// A closed-set label for `guestgate_upstream_failures_total`; `browser_request` for the
    /// browser's own errors ([`FlowError::is_browser_request`]), which callers count as
    /// rejected connections instead.
    pub fn kind(&self) -> &'static str {
        match self {
            _ if self.is_browser_request() => "browser_request",
            FlowError::Token(_) => "token",
            _ => "step",
        }
    }
}

/// True when a render failed for want of a browser query value (an optional parameter the
/// browser did not send). Steps and tokens never lack their values that way: a missing step
/// value fails the step's extraction first.
fn missing_query_value(e: &RenderError) -> bool {
    matches!(e, RenderError::Missing { placeholder } if placeholder.starts_with("{{query."))
}

impl FlowConfig {
    /// Compiles and checks the flow; errors name the key below `prefix`. `hook` sees every
    /// token fetch outcome (for metrics).
    pub fn prepare(
        &self,
        prefix: &str,
        extra_ca: Option<&std::path::Path>,
        hook: Option<OutcomeHook>,
    ) -> Result<PreparedFlow, String> {
        let mut known = Known::new();
        validate_query_params(&self.query, &format!("{prefix}.query"))?;
        for q in &self.query {
            known.add_query(&q.name);
        }
        let client = super::http_client::build_http_client(extra_ca, self.http_timeout)
            .map_err(|e| format!("{prefix}: {e}"))?;
        let token_source = match &self.oauth {
            Some(oauth) => {
                oauth.validate(&format!("{prefix}.oauth"))?;
                known = known.with_oauth();
                let source = TokenSource::from_config(oauth.clone(), client.clone())
                    .map_err(|e| format!("{prefix}.oauth.client_secret: {e}"))?;
                Some(match hook {
                    Some(hook) => source.with_outcome_hook(hook),
                    None => source,
                })
            }
            None => None,
        };
        let steps = steps::prepare_steps(&self.steps, &format!("{prefix}.steps"), &mut known)?;
        if !self.allow_insecure_http {
            self.refuse_insecure_http(prefix, &steps)?;
        }
        let upstream = Template::parse_checked(&self.upstream, &known)
            .map_err(|e| format!("{prefix}.upstream: {e}"))?;
        let upstream_origin = upstream
            .fixed_origin(&["ws", "wss"])
            .map_err(|e| format!("{prefix}.upstream: {e}"))?;
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            let key = format!("{prefix}.headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{key}: not a valid header name"))?;
            if RESERVED_HEADERS.contains(&header.as_str()) {
                return Err(format!("{key}: guestgate sets this header itself"));
            }
            let template =
                Template::parse_checked(value, &known).map_err(|e| format!("{key}: {e}"))?;
            headers.push((header, template));
        }
        Ok(PreparedFlow {
            token_source,
            client,
            steps,
            upstream,
            upstream_origin,
            headers,
            query: self.query.clone(),
        })
    }
}

impl FlowConfig {
    /// Refuses a plain `http://` token or step URL (off loopback), naming the first one.
    fn refuse_insecure_http(&self, prefix: &str, steps: &[PreparedStep]) -> Result<(), String> {
        let token_url = self
            .oauth
            .as_ref()
            .filter(|o| is_insecure_http(&o.token_url))
            .map(|_| format!("{prefix}.oauth.token_url"));
        let step_url = steps.iter().enumerate().find_map(|(i, step)| {
            step.origin()
                .filter(is_insecure_http)
                .map(|_| format!("{prefix}.steps[{i}].url"))
        });
        match token_url.or(step_url) {
            None => Ok(()),
            Some(key) => Err(format!(
                "{key}: plain http:// would send credentials and tokens unencrypted; use \
                 https://, or set {prefix}.allow_insecure_http = true (literal loopback \
                 addresses such as 127.0.0.1 need no opt-in)"
            )),
        }
    }
}

impl PreparedFlow {
    /// The shared token source, for readiness and metrics.
    pub fn token_source(&self) -> Option<&TokenSource> {
        self.token_source.as_ref()
    }

    /// The upstream's `host:port` (literal in the template), safe to log.
    pub fn upstream_host(&self) -> String {
        crate::upstream::host_label(&self.upstream_origin)
    }

    /// Runs the flow for one connection: token, steps, then the upstream URL and headers.
    pub async fn run(&self, raw_query: Option<&str>) -> Result<(url::Url, HeaderMap), FlowError> {
        let mut values = Values::new();
        values.set_query(extract_query(&self.query, raw_query)?);
        if let Some(source) = &self.token_source {
            values.set_access_token(source.token().await?.secret().clone());
        }
        steps::run_steps(&self.client, &self.steps, &mut values).await?;
        let url = self.upstream.render_url(&values)?;
        let url = url::Url::parse(&url).map_err(|_| FlowError::Invalid("upstream URL"))?;
        let mut headers = HeaderMap::new();
        for (name, template) in &self.headers {
            let value = HeaderValue::from_str(&template.render_header(&values)?)
                .map_err(|_| FlowError::Invalid("header value"))?;
            headers.insert(name.clone(), value);
        }
        Ok((url, headers))
    }
}

/// A hook that counts token fetch outcomes for `route`.
pub fn metrics_hook(metrics: Arc<crate::metrics::Metrics>, route: String) -> OutcomeHook {
    Arc::new(move |outcome: TokenFetchOutcome| metrics.token_fetch(&route, outcome.as_label()))
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
