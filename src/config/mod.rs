//! The configuration model: typed serde structs with defaults, loaded from TOML or built from
//! the `serve --upstream` one-liner, and a `validate()` that names the offending key.
//!
//! - this file: the whole file, the `[server]` section, errors, loading and validation;
//! - [`route`]: one `[[routes]]` entry and the choice of upstream kind it makes;
//! - [`relay`]: the `[routes.relay]` limits and timers.

mod relay;
mod route;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::edge::{EdgeConfig, Limit};
use crate::tls_server::TlsServerConfig;
pub use relay::RelaySettings;
pub use route::{RouteConfig, RouteFile, UpstreamConfig};

/// The whole configuration, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Listeners and process-wide settings.
    pub server: ServerConfig,
    /// WebSocket routes; each path is relayed to one upstream.
    pub routes: Vec<RouteConfig>,
}

/// The file exactly as written, before the routes are converted and checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    server: ServerConfig,
    #[serde(default)]
    routes: Vec<RouteFile>,
}

/// Default `server.max_connections_per_ip`: far above what the browsers behind one NAT
/// address hold (each route's own per-IP cap is lower still), far below `max_connections`,
/// so at least 40 addresses are needed to fill the default 10,000 slots.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 256;

/// Most `server.worker_threads` accepted: far above any core count guestgate is deployed
/// on, low enough that a typo (an extra digit) is caught instead of spawning the threads.
pub const MAX_WORKER_THREADS: usize = 1024;

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
    /// Most connections one client address may hold from the moment they are accepted,
    /// before any request is read (idle TCP, slow headers, plain GETs). The excess is closed
    /// at once, so one address cannot use up `max_connections`. Peers listed in any route's
    /// `trusted_proxies` are exempt (their connections carry many clients); the per-route
    /// limits then apply to the forwarded address. `"off"` switches it off (warned about).
    #[serde(skip_serializing_if = "Limit::is_unset")]
    pub max_connections_per_ip: Limit<u32>,
    /// How long a browser may take to send its upgrade request.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// On SIGTERM/SIGINT, how long relays get to close before they are cut.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// On SIGTERM/SIGINT, how long `/readyz` answers 503 (and new upgrades are refused with
    /// 503) while live relays continue, before the drain closes them: set it to the load
    /// balancer's health interval times its fall count, so the replica leaves rotation before
    /// its pages reconnect. `"0s"` (default) drains at once.
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// TLS for browsers (`wss://` straight to guestgate); reloaded when the files change.
    pub tls: Option<TlsServerConfig>,
    /// Threads that run connections; left out: one per CPU guestgate may use. Fewer cost less
    /// CPU per message when guestgate shares its cores with other busy processes (see
    /// `docs/operations.md`, "Worker threads").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<usize>,
}

impl ServerConfig {
    /// The accept-time per-address cap in force, `None` when switched off.
    pub fn accept_cap_per_ip(&self) -> Option<u32> {
        match self.max_connections_per_ip {
            Limit::Unset => Some(DEFAULT_MAX_CONNECTIONS_PER_IP),
            limit => limit.get(),
        }
    }

    fn warnings(&self) -> Vec<String> {
        match self.accept_cap_per_ip() {
            None => vec![
                "server.max_connections_per_ip = \"off\": one address can hold every one of \
                 server.max_connections with idle or slow connections; set a value instead"
                    .to_owned(),
            ],
            Some(cap) if cap as usize >= self.max_connections => vec![format!(
                "server.max_connections_per_ip ({cap}) is not below server.max_connections \
                 ({}): one address can hold every connection slot",
                self.max_connections
            )],
            Some(_) => Vec::new(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8080).into(),
            admin_listen: ([127, 0, 0, 1], 9090).into(),
            max_connections: 10_000,
            max_connections_per_ip: Limit::Max(DEFAULT_MAX_CONNECTIONS_PER_IP),
            handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            drain_delay: Duration::ZERO,
            tls: None,
            worker_threads: None,
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

pub(crate) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
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
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        let routes = file
            .routes
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.into_route(&format!("routes[{i}]")))
            .collect::<Result<_, _>>()?;
        let mut config = Config {
            server: file.server,
            routes,
        };
        config.fill_upstream_defaults();
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

    /// A one-route config relaying every path to `upstream` from any origin. Like the
    /// origin check, the accept-time per-address cap is off (with a start-up warning): the
    /// one-liner is for trials and benchmarks, which open thousands of connections from one
    /// address; a public listener should use a config file.
    pub fn one_liner(listen: SocketAddr, upstream: Url) -> Self {
        Self {
            server: ServerConfig {
                listen,
                max_connections_per_ip: Limit::Off,
                ..ServerConfig::default()
            },
            routes: vec![RouteConfig::relay(
                "/",
                upstream,
                EdgeConfig::one_liner(Vec::new()),
            )],
        }
    }

    /// Writes the default edge limits into every preset and flow route that left them out,
    /// so the config (and `guestgate check`, which prints it) shows the values in force.
    /// Preparing a route applies the same defaults, so calling this is optional.
    pub fn fill_upstream_defaults(&mut self) {
        for route in &mut self.routes {
            if !matches!(route.upstream, UpstreamConfig::Relay { .. }) {
                route.edge = route.edge.with_upstream_defaults();
            }
        }
    }

    /// Checks everything serde cannot: ranges, schemes, duplicates.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be at least 1"));
        }
        if self.server.max_connections_per_ip == Limit::Max(0) {
            return Err(invalid(
                "server.max_connections_per_ip",
                "must be at least 1 (write \"off\" to switch the limit off)",
            ));
        }
        if let Some(n) = self.server.worker_threads
            && !(1..=MAX_WORKER_THREADS).contains(&n)
        {
            return Err(invalid(
                "server.worker_threads",
                format!(
                    "must be between 1 and {MAX_WORKER_THREADS} (leave it out for one per CPU)"
                ),
            ));
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
        let mut names = HashSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let prefix = format!("routes[{i}]");
            route.validate(&prefix)?;
            if !paths.insert(route.path.as_str()) {
                return Err(invalid(
                    format!("{prefix}.path"),
                    format!("{} is used twice", route.path),
                ));
            }
            // Names bind resume and site tickets and label metrics: two routes sharing one
            // would accept each other's tickets and mix their figures.
            if !names.insert(route.name.as_str()) {
                return Err(invalid(
                    format!("{prefix}.name"),
                    format!("{:?} is used twice; route names must be unique", route.name),
                ));
            }
        }
        Ok(())
    }

    /// Start-up warnings (e.g. a route accepting any Origin, a limit switched off), with
    /// their keys.
    pub fn warnings(&self) -> Vec<String> {
        let routes = self
            .routes
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.edge.warnings(&format!("routes[{i}].edge")));
        self.server.warnings().into_iter().chain(routes).collect()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[path = "limits_tests.rs"]
mod limits_tests;
