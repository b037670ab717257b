//! A route ready to serve: the config resolved into what a connection needs (upstream target
//! with TLS set up, relay settings), built once at start-up so bad settings fail before binding.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, header};

use crate::config::RouteConfig;
use crate::relay::RelayConfig;
use crate::tls;
use crate::upstream::UpstreamTarget;

/// Everything a connection on this route needs.
pub struct Route {
    /// Name for logs.
    pub name: String,
    /// Path browsers open.
    pub path: String,
    /// Where and how to connect upstream.
    pub target: UpstreamTarget,
    /// Relay limits and timers.
    pub relay: RelayConfig,
}

/// A route that could not be prepared.
#[derive(Debug, thiserror::Error)]
#[error("preparing route {route}: {problem}")]
pub struct RouteError {
    /// The route's name.
    pub route: String,
    /// What failed.
    pub problem: String,
}

impl Route {
    /// Resolves a validated route config.
    pub fn from_config(cfg: &RouteConfig) -> Result<Arc<Self>, RouteError> {
        let fail = |problem: String| RouteError {
            route: cfg.name.clone(),
            problem,
        };
        let tls = tls::client_config(cfg.extra_ca.as_deref()).map_err(|e| fail(e.to_string()))?;
        let mut headers = HeaderMap::new();
        if let Some(origin) = &cfg.upstream_origin {
            let value = HeaderValue::from_str(origin)
                .map_err(|_| fail("upstream_origin is not a valid header value".into()))?;
            headers.insert(header::ORIGIN, value);
        }
        Ok(Arc::new(Self {
            name: cfg.name.clone(),
            path: cfg.path.clone(),
            target: UpstreamTarget {
                url: cfg.upstream.clone(),
                headers,
                tls,
                timeout: cfg.connect_timeout,
            },
            relay: cfg.relay.to_relay_config(),
        }))
    }
}
