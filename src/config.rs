//! The configuration model: typed serde structs with defaults, loaded from TOML or built from
//! the `serve --upstream` one-liner, and a `validate()` that names the offending key.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::auth::flow::FlowConfig;
use crate::auth::genesys::GenesysConfig;
use crate::auth::resume::ResumeConfig;
use crate::edge::EdgeConfig;
use crate::relay::{Limits, RelayConfig};
use crate::tls_server::TlsServerConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners and process-wide settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// WebSocket routes; each path is relayed to one upstream.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// Listeners and process-wide limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where browsers connect.
    pub listen: SocketAddr,
    /// Where `/healthz`, `/readyz` and `/metrics` are served (keep it private).
    pub admin_listen: SocketAddr,
    /// Most browser connections held at once; further ones wait in the accept queue.
    pub max_connections: usize,
    /// How long a browser may take to send its upgrade request.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// On SIGTERM/SIGINT, how long relays get to close before they are cut.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// TLS for browsers (`wss://` straight to guestgate); reloaded when the files change.
    pub tls: Option<TlsServerConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8080).into(),
            admin_listen: ([127, 0, 0, 1], 9090).into(),
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// One WebSocket route.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A short name for logs and `check` output.
    #[serde(default = "default_route_name")]
    pub name: String,
    /// The request path browsers open, e.g. `/ws`.
    #[serde(default = "default_path")]
    pub path: String,
    /// The upstream WebSocket URL (`ws://` or `wss://`) for a plain relay route. The browser
    /// never chooses it. Routes with a preset leave it out.
    #[serde(default)]
    pub upstream: Option<Url>,
    /// The `genesys-web-messaging` preset: guestgate runs the guest session upstream.
    #[serde(default)]
    pub genesys: Option<GenesysConfig>,
    /// Browser-side policy checked before the upgrade (origins, caps, rates, tickets).
    #[serde(default)]
    pub edge: EdgeConfig,
    /// A declarative upstream flow (OAuth, HTTP steps, templated upstream URL).
    #[serde(default)]
    pub flow: Option<FlowConfig>,
    /// Resume tickets, so a reconnecting browser continues the same upstream session.
    #[serde(default)]
    pub resume: Option<ResumeConfig>,
    /// The `Origin` header sent upstream, if any.
    #[serde(default)]
    pub upstream_origin: Option<String>,
    /// A PEM file of extra CA certificates trusted for a `wss://` upstream.
    #[serde(default)]
    pub extra_ca: Option<PathBuf>,
    /// How long connecting to the upstream (TCP, TLS, upgrade) may take.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Frame relaying limits and timers.
    #[serde(default)]
    pub relay: RelaySettings,
}

fn default_route_name() -> String {
    "default".into()
}

fn default_path() -> String {
    "/ws".into()
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Relay limits and timers as written in the config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySettings {
    /// Largest frame payload a browser may send.
    pub browser_max_frame_bytes: u64,
    /// Largest message a browser may send.
    pub browser_max_message_bytes: u64,
    /// Largest frame payload the upstream may send.
    pub upstream_max_frame_bytes: u64,
    /// Largest message the upstream may send.
    pub upstream_max_message_bytes: u64,
    /// Read buffer size per active direction (idle connections hold none).
    pub buffer_bytes: usize,
    /// Move large payloads between plain TCP legs with splice(2) instead of copying them
    /// (Linux; ignored elsewhere and on TLS legs).
    pub splice: bool,
    /// A leg silent this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Ping interval toward the browser; `0s` turns pings off.
    #[serde(with = "humantime_serde")]
    pub browser_ping_interval: Duration,
    /// Ping interval toward the upstream; `0s` turns pings off.
    #[serde(with = "humantime_serde")]
    pub upstream_ping_interval: Duration,
    /// A write that makes no progress this long ends the relay.
    #[serde(with = "humantime_serde")]
    pub write_stall_timeout: Duration,
    /// How long a close handshake may take.
    #[serde(with = "humantime_serde")]
    pub close_timeout: Duration,
    /// How often a live connection's traffic is added to the metrics.
    #[serde(with = "humantime_serde")]
    pub metrics_flush_interval: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        let d = RelayConfig::default();
        Self {
            browser_max_frame_bytes: d.browser_limits.max_frame,
            browser_max_message_bytes: d.browser_limits.max_message,
            upstream_max_frame_bytes: d.upstream_limits.max_frame,
            upstream_max_message_bytes: d.upstream_limits.max_message,
            buffer_bytes: d.buffer_size,
            splice: d.splice,
            idle_timeout: d.idle_timeout,
            browser_ping_interval: d.browser_ping.unwrap_or_default(),
            upstream_ping_interval: d.upstream_ping.unwrap_or_default(),
            write_stall_timeout: d.write_stall,
            close_timeout: d.close_timeout,
            metrics_flush_interval: d.metrics_flush,
        }
    }
}

impl RelaySettings {
    /// The relay core's view of these settings.
    pub fn to_relay_config(&self) -> RelayConfig {
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        RelayConfig {
            browser_limits: Limits {
                max_frame: self.browser_max_frame_bytes,
                max_message: self.browser_max_message_bytes,
            },
            upstream_limits: Limits {
                max_frame: self.upstream_max_frame_bytes,
                max_message: self.upstream_max_message_bytes,
            },
            buffer_size: self.buffer_bytes,
            splice: self.splice,
            idle_timeout: self.idle_timeout,
            browser_ping: nonzero(self.browser_ping_interval),
            upstream_ping: nonzero(self.upstream_ping_interval),
            write_stall: self.write_stall_timeout,
            close_timeout: self.close_timeout,
            metrics_flush: self.metrics_flush_interval,
        }
    }
}

/// A config problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        /// The file given on the command line.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The TOML did not parse or did not fit the model (unknown keys included).
    #[error("parsing config file {path}: {message}")]
    Parse {
        /// The file given on the command line.
        path: PathBuf,
        /// The parser's message, which names the key and the line.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid config: {key}: {problem}")]
    Invalid {
        /// The dotted key, e.g. `routes[0].upstream`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

impl Config {
    /// Reads, parses and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// A one-route config relaying every path to `upstream`, accepting browsers from
    /// `allowed_origins` (any origin when empty).
    pub fn one_liner_with_origins(
        listen: SocketAddr,
        upstream: Url,
        allowed_origins: Vec<String>,
    ) -> Self {
        let mut config = Self::one_liner(listen, upstream);
        config.routes[0].edge = EdgeConfig::one_liner(allowed_origins);
        config
    }

    /// A one-route config relaying every path to `upstream` from any origin.
    pub fn one_liner(listen: SocketAddr, upstream: Url) -> Self {
        Self {
            server: ServerConfig {
                listen,
                ..ServerConfig::default()
            },
            routes: vec![RouteConfig {
                name: default_route_name(),
                path: "/".into(),
                upstream: Some(upstream),
                genesys: None,
                flow: None,
                edge: EdgeConfig::one_liner(Vec::new()),
                resume: None,
                upstream_origin: None,
                extra_ca: None,
                connect_timeout: default_connect_timeout(),
                relay: RelaySettings::default(),
            }],
        }
    }

    /// Checks everything serde cannot: ranges, schemes, duplicates.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be at least 1"));
        }
        if self.server.listen == self.server.admin_listen && self.server.listen.port() != 0 {
            return Err(invalid(
                "server.admin_listen",
                "must differ from server.listen",
            ));
        }
        if self.routes.is_empty() {
            return Err(invalid("routes", "at least one route is needed"));
        }
        let mut paths = HashSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let key = |k: &str| format!("routes[{i}].{k}");
            if !route.path.starts_with('/') {
                return Err(invalid(key("path"), "must start with '/'"));
            }
            if !paths.insert(route.path.as_str()) {
                return Err(invalid(
                    key("path"),
                    format!("{} is used twice", route.path),
                ));
            }
            let upstreams = [
                route.upstream.is_some(),
                route.genesys.is_some(),
                route.flow.is_some(),
            ];
            if upstreams.iter().filter(|given| **given).count() > 1 {
                return Err(invalid(
                    key("upstream"),
                    "give exactly one of upstream, [genesys] or [flow]",
                ));
            }
            match (&route.upstream, &route.genesys) {
                _ if route.flow.is_some() => {}
                (Some(url), None) => {
                    if !matches!(url.scheme(), "ws" | "wss") {
                        return Err(invalid(key("upstream"), "must be a ws:// or wss:// URL"));
                    }
                    if url.host_str().is_none() {
                        return Err(invalid(key("upstream"), "has no host"));
                    }
                }
                (None, Some(genesys)) => genesys
                    .validate(&key("genesys"))
                    .map_err(|(k, problem)| invalid(k, problem))?,
                (None, None) => {
                    return Err(invalid(key("upstream"), "give an upstream URL or a preset"));
                }
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        key("upstream"),
                        "leave it out: the genesys preset sets the upstream",
                    ));
                }
            }
            if route.connect_timeout.is_zero() {
                return Err(invalid(key("connect_timeout"), "must be more than 0s"));
            }
            route.relay.validate(&key("relay"))?;
            if let Some(resume) = &route.resume {
                if route.genesys.is_none() {
                    return Err(invalid(key("resume"), "needs a preset that has sessions"));
                }
                resume
                    .validate(&key("resume"))
                    .map_err(|problem| invalid(key("resume"), problem))?;
            }
            route
                .edge
                .validate(&key("edge"))
                .map_err(|(k, problem)| invalid(k, problem))?;
        }
        Ok(())
    }

    /// Start-up warnings (e.g. a route accepting any Origin), with their keys.
    pub fn warnings(&self) -> Vec<String> {
        self.routes
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.edge.warnings(&format!("routes[{i}].edge")))
            .collect()
    }
}

impl RelaySettings {
    fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        for (name, frame, message) in [
            (
                "browser",
                self.browser_max_frame_bytes,
                self.browser_max_message_bytes,
            ),
            (
                "upstream",
                self.upstream_max_frame_bytes,
                self.upstream_max_message_bytes,
            ),
        ] {
            if frame < 125 {
                return Err(invalid(
                    key(&format!("{name}_max_frame_bytes")),
                    "must be at least 125",
                ));
            }
            if message < frame {
                return Err(invalid(
                    key(&format!("{name}_max_message_bytes")),
                    "must be at least the frame limit",
                ));
            }
        }
        if !(1024..=16 << 20).contains(&self.buffer_bytes) {
            return Err(invalid(
                key("buffer_bytes"),
                "must be between 1024 and 16777216",
            ));
        }
        for (name, d) in [
            ("idle_timeout", self.idle_timeout),
            ("write_stall_timeout", self.write_stall_timeout),
            ("close_timeout", self.close_timeout),
            ("metrics_flush_interval", self.metrics_flush_interval),
        ] {
            if d.is_zero() {
                return Err(invalid(key(name), "must be more than 0s"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
