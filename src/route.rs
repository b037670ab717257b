//! A route ready to serve: the config resolved into what a connection needs (edge policy,
//! upstream target with TLS set up, the preset's session flow, relay settings), built once at
//! start-up so bad settings fail before any port is bound.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};
use url::Url;

use crate::auth::flow::{self, PreparedFlow};
use crate::config::{RouteConfig, UpstreamConfig};
use crate::edge::EdgePolicy;
use crate::metrics::Metrics;
use crate::preset::{Preset, PresetContext, Resume};
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
    /// What the route connects browsers to.
    pub upstream: RouteUpstream,
    /// Subprotocols the route accepts, in preference order.
    pub subprotocols: Vec<String>,
    /// Resume tickets: the keys and their settings.
    pub resume: Option<Resume>,
    /// Relay limits and timers.
    pub relay: RelayConfig,
}

/// A route's upstream, prepared: one variant per kind of upstream the config can choose.
// One per route, built at start-up; the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum RouteUpstream {
    /// Frames relayed verbatim to a fixed target.
    Relay(UpstreamTarget),
    /// A declarative flow renders the target per connection.
    Flow(FlowUpstream),
    /// A preset opens the upstream session.
    Preset(Preset),
}

/// A flow route's upstream: the compiled flow and the connect settings its rendered URL and
/// headers are added to.
pub struct FlowUpstream {
    /// The compiled flow.
    pub flow: PreparedFlow,
    /// Headers sent on every connection (the configured Origin).
    pub headers: HeaderMap,
    /// TLS for a `wss://` upstream.
    pub tls: Arc<rustls::ClientConfig>,
    /// The route's connect timeout.
    pub timeout: Duration,
}

impl FlowUpstream {
    /// The target for one connection, from the URL and headers the flow rendered for it.
    pub fn target(&self, url: Url, rendered: HeaderMap) -> UpstreamTarget {
        let mut headers = self.headers.clone();
        headers.extend(rendered);
        UpstreamTarget {
            url,
            headers,
            tls: self.tls.clone(),
            timeout: self.timeout,
        }
    }
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
        let origin_headers = |origin: &Option<String>| -> Result<HeaderMap, RouteError> {
            let mut headers = HeaderMap::new();
            if let Some(origin) = origin {
                let value = HeaderValue::from_str(origin)
                    .map_err(|_| fail("upstream_origin is not a valid header value".into()))?;
                headers.insert(header::ORIGIN, value);
            }
            Ok(headers)
        };
        let mut relay = cfg.relay.to_relay_config();
        let upstream = match &cfg.upstream {
            UpstreamConfig::Relay { url, origin } => RouteUpstream::Relay(UpstreamTarget {
                url: url.clone(),
                headers: origin_headers(origin)?,
                tls,
                timeout: cfg.connect_timeout,
            }),
            UpstreamConfig::Flow { flow: f, origin } => {
                let hook = metrics.map(|m| flow::metrics_hook(m.clone(), cfg.name.clone()));
                RouteUpstream::Flow(FlowUpstream {
                    flow: f
                        .prepare("flow", cfg.extra_ca.as_deref(), hook)
                        .map_err(fail)?,
                    headers: origin_headers(origin)?,
                    tls,
                    timeout: cfg.connect_timeout,
                })
            }
            UpstreamConfig::Preset(p) => {
                let ctx = PresetContext {
                    tls,
                    connect_timeout: cfg.connect_timeout,
                };
                let preset = p.prepare(ctx).map_err(fail)?;
                preset.tune_relay(&mut relay, &cfg.relay);
                RouteUpstream::Preset(preset)
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
        // Routes that spend upstream work get default edge limits unless the config set them.
        let edge = match cfg.upstream {
            UpstreamConfig::Relay { .. } => cfg.edge.clone(),
            UpstreamConfig::Flow { .. } | UpstreamConfig::Preset(_) => {
                cfg.edge.with_upstream_defaults()
            }
        };
        let edge = EdgePolicy::new(&cfg.name, &edge, ticket_key)
            .map_err(|(key, problem)| fail(format!("edge.{key}: {problem}")))?;
        let resume = match &cfg.resume {
            Some(r) => Some((
                r.load().map_err(|e| fail(format!("resume: {e}")))?,
                r.clone(),
            )),
            None => None,
        };
        Ok(Arc::new(Self {
            name: cfg.name.clone(),
            path: cfg.path.clone(),
            edge,
            upstream,
            subprotocols: cfg.subprotocols.clone(),
            resume,
            relay,
        }))
    }
}
