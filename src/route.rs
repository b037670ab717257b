//! A route ready to serve: the config resolved into what a connection needs (edge policy,
//! upstream target with TLS set up, the preset's session flow, relay settings), built once at
//! start-up so bad settings fail before any port is bound.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, header};

use crate::auth::flow::{self, PreparedFlow};
use crate::auth::genesys::GenesysConfig;
use crate::auth::resume::{ResumeConfig, ResumeKeys};
use crate::config::RouteConfig;
use crate::edge::EdgePolicy;
use crate::metrics::Metrics;
use crate::relay::RelayConfig;
use crate::tls;
use crate::upstream::UpstreamTarget;

/// Everything a connection on this route needs.
pub struct Route {
    /// Name for logs and metrics.
    pub name: String,
    /// Path browsers open.
    pub path: String,
    /// Browser-side policy checked before the upgrade.
    pub edge: EdgePolicy,
    /// Where and how to connect upstream.
    pub target: UpstreamTarget,
    /// The Genesys guest session flow, when the route uses the preset.
    pub genesys: Option<GenesysConfig>,
    /// The declarative flow run per connection, when the route has one.
    pub flow: Option<PreparedFlow>,
    /// Resume tickets: the keys and their settings.
    pub resume: Option<(ResumeKeys, ResumeConfig)>,
    /// Relay limits and timers.
    pub relay: RelayConfig,
}

/// A route that could not be prepared.
#[derive(Debug, thiserror::Error)]
#[error("preparing route {route}: {problem}")]
pub struct RouteError {
    /// The route's name.
    pub route: String,
    /// What failed, naming the key where there is one.
    pub problem: String,
}

impl Route {
    /// Resolves a validated route config; `metrics`, when given, sees token fetches.
    pub fn from_config(
        cfg: &RouteConfig,
        metrics: Option<&Arc<Metrics>>,
    ) -> Result<Arc<Self>, RouteError> {
        let fail = |problem: String| RouteError {
            route: cfg.name.clone(),
            problem,
        };
        let tls = tls::client_config(cfg.extra_ca.as_deref()).map_err(|e| fail(e.to_string()))?;
        let mut headers = HeaderMap::new();
        let origin = match &cfg.genesys {
            Some(g) => Some(g.origin_header()),
            None => cfg.upstream_origin.clone(),
        };
        if let Some(origin) = origin {
            let value = HeaderValue::from_str(&origin)
                .map_err(|_| fail("upstream_origin is not a valid header value".into()))?;
            headers.insert(header::ORIGIN, value);
        }
        let flow = match &cfg.flow {
            Some(f) => {
                let hook = metrics.map(|m| flow::metrics_hook(m.clone(), cfg.name.clone()));
                Some(
                    f.prepare("flow", cfg.extra_ca.as_deref(), hook)
                        .map_err(fail)?,
                )
            }
            None => None,
        };
        let url = match (&cfg.genesys, &cfg.upstream, &cfg.flow) {
            (Some(g), _, _) => g.socket_url(),
            (None, Some(url), _) => url.clone(),
            // Replaced per connection by the flow's rendered URL.
            (None, None, Some(f)) => url::Url::parse(&f.upstream.replace(['{', '}'], ""))
                .map_err(|_| fail("flow.upstream: not a URL".into()))?,
            (None, None, None) => {
                return Err(fail("no upstream (validate the config first)".into()));
            }
        };
        let ticket_key = match &cfg.edge.ticket {
            Some(ticket) => Some(
                ticket
                    .key
                    .load()
                    .map_err(|e| fail(format!("edge.ticket.key: {e}")))?,
            ),
            None => None,
        };
        let edge = EdgePolicy::new(&cfg.name, &cfg.edge, ticket_key)
            .map_err(|(key, problem)| fail(format!("edge.{key}: {problem}")))?;
        let resume = match &cfg.resume {
            Some(r) => Some((
                r.load().map_err(|e| fail(format!("resume: {e}")))?,
                r.clone(),
            )),
            None => None,
        };
        let mut relay = cfg.relay.to_relay_config();
        if cfg.genesys.is_some() {
            // Genesys's own SDK pings every 15 s.
            relay.upstream_ping = relay
                .upstream_ping
                .map(|d| d.min(std::time::Duration::from_secs(15)));
        }
        Ok(Arc::new(Self {
            name: cfg.name.clone(),
            path: cfg.path.clone(),
            edge,
            target: UpstreamTarget {
                url,
                headers,
                tls,
                timeout: cfg.connect_timeout,
            },
            genesys: cfg.genesys.clone(),
            flow,
            resume,
            relay,
        }))
    }
}
