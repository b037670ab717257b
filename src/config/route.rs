//! One `[[routes]]` entry: where browsers connect, what edge policy they meet, and which kind
//! of upstream the route has. The kind is a choice the file makes once (a plain `upstream`
//! URL, a preset table such as `[routes.genesys]`, or a declarative `[routes.flow]`), so the
//! model holds it as one [`UpstreamConfig`] value; the file's shape, with its optional tables,
//! lives only in [`RouteFile`] and is converted (and checked) in one place.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::relay::RelaySettings;
use super::{ConfigError, invalid};
use crate::auth::flow::FlowConfig;
use crate::auth::resume::ResumeConfig;
use crate::edge::EdgeConfig;
use crate::handshake::is_token;
use crate::preset::genesys::GenesysConfig;
use crate::preset::{PresetConfig, PresetTables};

/// One WebSocket route, validated.
#[derive(Debug, Clone, Serialize)]
#[serde(into = "RouteFile")]
pub struct RouteConfig {
    /// A short name for logs, metrics and resume tickets; unique in the file.
    pub name: String,
    /// The request path browsers open, e.g. `/ws`; `/` takes every path no other route has.
    pub path: String,
    /// What the route connects browsers to.
    pub upstream: UpstreamConfig,
    /// WebSocket subprotocols the route accepts, in preference order (empty: none).
    pub subprotocols: Vec<String>,
    /// Browser-side policy checked before the upgrade (origins, caps, rates, tickets).
    pub edge: EdgeConfig,
    /// Resume tickets, so a reconnecting browser continues the same upstream session.
    pub resume: Option<ResumeConfig>,
    /// A PEM file of extra CA certificates trusted for a `wss://` upstream and HTTPS steps.
    pub extra_ca: Option<PathBuf>,
    /// How long connecting to the upstream (TCP, TLS, upgrade) may take.
    pub connect_timeout: Duration,
    /// Frame relaying limits and timers.
    pub relay: RelaySettings,
}

/// The kind of upstream a route has: exactly one, chosen by the config file.
#[derive(Debug, Clone)]
// Built once per route at start-up; the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum UpstreamConfig {
    /// Frames relayed verbatim to a fixed `ws://` or `wss://` URL.
    Relay {
        /// The upstream WebSocket URL; the browser never chooses it.
        url: Url,
        /// The `Origin` header sent upstream, if any.
        origin: Option<String>,
    },
    /// A declarative flow (OAuth, HTTP steps) that renders the upstream request per connection.
    Flow {
        /// The flow as written.
        flow: Box<FlowConfig>,
        /// The `Origin` header sent upstream, if any.
        origin: Option<String>,
    },
    /// A vendor preset that knows the upstream's session protocol.
    Preset(PresetConfig),
}

impl UpstreamConfig {
    /// The preset, when the route has one.
    pub fn preset(&self) -> Option<&PresetConfig> {
        match self {
            UpstreamConfig::Preset(p) => Some(p),
            _ => None,
        }
    }

    /// The preset, mutable (tests and the demo adjust its settings).
    pub fn preset_mut(&mut self) -> Option<&mut PresetConfig> {
        match self {
            UpstreamConfig::Preset(p) => Some(p),
            _ => None,
        }
    }
}

impl RouteConfig {
    /// A route relaying `path` verbatim to `url`, with default settings and the given edge.
    pub fn relay(path: &str, url: Url, edge: EdgeConfig) -> Self {
        Self {
            name: default_route_name(),
            path: path.into(),
            upstream: UpstreamConfig::Relay { url, origin: None },
            subprotocols: Vec::new(),
            edge,
            resume: None,
            extra_ca: None,
            connect_timeout: default_connect_timeout(),
            relay: RelaySettings::default(),
        }
    }

    /// Checks what the conversion from the file does not: ranges, schemes, sections.
    pub(super) fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        if !self.path.starts_with('/') {
            return Err(invalid(key("path"), "must start with '/'"));
        }
        if self.name.is_empty() || self.name.len() > 64 {
            return Err(invalid(key("name"), "must be 1 to 64 characters"));
        }
        match &self.upstream {
            UpstreamConfig::Relay { url, .. } => {
                if !matches!(url.scheme(), "ws" | "wss") {
                    return Err(invalid(key("upstream"), "must be a ws:// or wss:// URL"));
                }
                if url.host_str().is_none() {
                    return Err(invalid(key("upstream"), "has no host"));
                }
            }
            UpstreamConfig::Flow { .. } => {}
            UpstreamConfig::Preset(preset) => {
                preset
                    .validate(prefix)
                    .map_err(|(k, problem)| invalid(k, problem))?;
                if !self.subprotocols.is_empty() {
                    return Err(invalid(
                        key("subprotocols"),
                        format!("the {} preset speaks no subprotocol", preset.kind()),
                    ));
                }
            }
        }
        if let Some(bad) = self.subprotocols.iter().find(|p| !is_token(p)) {
            return Err(invalid(
                key("subprotocols"),
                format!("{bad:?} is not a valid subprotocol token"),
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid(key("connect_timeout"), "must be more than 0s"));
        }
        self.relay.validate(&key("relay"))?;
        if let Some(resume) = &self.resume {
            if !self
                .upstream
                .preset()
                .is_some_and(PresetConfig::has_sessions)
            {
                return Err(invalid(key("resume"), "needs a preset that has sessions"));
            }
            resume
                .validate(&key("resume"))
                .map_err(|problem| invalid(key("resume"), problem))?;
        }
        self.edge
            .validate(&key("edge"))
            .map_err(|(k, problem)| invalid(k, problem))
    }
}

/// A `[[routes]]` entry exactly as the file writes it: the upstream kinds are separate
/// optional keys and tables, of which [`RouteFile::into_route`] accepts exactly one.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    #[serde(default = "default_route_name")]
    name: String,
    #[serde(default = "default_path")]
    path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upstream: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upstream_origin: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    subprotocols: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    extra_ca: Option<PathBuf>,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    connect_timeout: Duration,
    #[serde(default)]
    edge: EdgeConfig,
    #[serde(default)]
    relay: RelaySettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resume: Option<ResumeConfig>,
    /// Presets: one table each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    genesys: Option<GenesysConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flow: Option<FlowConfig>,
}

impl RouteFile {
    /// The route this entry describes; `prefix` (`routes[3]`) names keys in errors.
    pub(super) fn into_route(self, prefix: &str) -> Result<RouteConfig, ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        let presets = PresetConfig::from_tables(PresetTables {
            genesys: self.genesys,
        })
        .map_err(|problem| invalid(prefix, problem))?;
        let upstream = match (self.upstream, self.flow, presets) {
            (Some(url), None, None) => UpstreamConfig::Relay {
                url,
                origin: self.upstream_origin,
            },
            (None, Some(flow), None) => UpstreamConfig::Flow {
                flow: Box::new(flow),
                origin: self.upstream_origin,
            },
            (None, None, Some(preset)) => {
                if self.upstream_origin.is_some() {
                    return Err(invalid(
                        key("upstream_origin"),
                        format!("leave it out: the {} preset sets the Origin", preset.kind()),
                    ));
                }
                UpstreamConfig::Preset(preset)
            }
            (None, None, None) => {
                return Err(invalid(
                    key("upstream"),
                    "give an upstream URL, a preset table or [flow]",
                ));
            }
            _ => {
                return Err(invalid(
                    key("upstream"),
                    "give exactly one of upstream, a preset table ([genesys]) or [flow]",
                ));
            }
        };
        Ok(RouteConfig {
            name: self.name,
            path: self.path,
            upstream,
            subprotocols: self.subprotocols,
            edge: self.edge,
            resume: self.resume,
            extra_ca: self.extra_ca,
            connect_timeout: self.connect_timeout,
            relay: self.relay,
        })
    }
}

impl From<RouteConfig> for RouteFile {
    fn from(route: RouteConfig) -> Self {
        let mut file = RouteFile {
            name: route.name,
            path: route.path,
            upstream: None,
            upstream_origin: None,
            subprotocols: route.subprotocols,
            extra_ca: route.extra_ca,
            connect_timeout: route.connect_timeout,
            edge: route.edge,
            relay: route.relay,
            resume: route.resume,
            genesys: None,
            flow: None,
        };
        match route.upstream {
            UpstreamConfig::Relay { url, origin } => {
                file.upstream = Some(url);
                file.upstream_origin = origin;
            }
            UpstreamConfig::Flow { flow, origin } => {
                file.flow = Some(*flow);
                file.upstream_origin = origin;
            }
            UpstreamConfig::Preset(preset) => {
                let PresetTables { genesys } = preset.into_tables();
                file.genesys = genesys;
            }
        }
        file
    }
}

pub(super) fn default_route_name() -> String {
    "default".into()
}

fn default_path() -> String {
    "/ws".into()
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
