//! Presets: vendor session protocols that guestgate speaks upstream on the browser's behalf.
//!
//! A preset is one variant of [`PresetConfig`] (its config table) and of [`Preset`] (the same,
//! prepared to serve), plus one module. Generic code (config, route, set-up, `check`) only
//! calls the methods here; it never names a vendor. Adding a preset means a variant in each
//! enum, a field in [`PresetTables`] (the config file's table for it) and its module.
//!
//! - [`genesys`]: Genesys Cloud Web Messaging's guest socket (`[routes.genesys]`).

pub mod genesys;

use std::sync::Arc;

use crate::auth::resume::{ResumeConfig, ResumeKeys};
use crate::config::RelaySettings;
use crate::metrics::Metrics;
use crate::relay::RelayConfig;
use crate::setup::{BrowserRequest, Established, SetupError};
use crate::upstream::UpstreamTarget;

/// A preset's settings, as the config file chose them.
#[derive(Debug, Clone)]
pub enum PresetConfig {
    /// `[routes.genesys]`: Genesys Cloud Web Messaging.
    Genesys(genesys::GenesysConfig),
}

/// Each preset's table in a `[[routes]]` entry, as the file writes them (at most one given).
#[derive(Debug, Default)]
pub struct PresetTables {
    /// `[routes.genesys]`.
    pub genesys: Option<genesys::GenesysConfig>,
}

impl PresetConfig {
    /// The preset named by the route's tables, if any; an error when more than one is given.
    pub fn from_tables(tables: PresetTables) -> Result<Option<Self>, String> {
        let PresetTables { genesys } = tables;
        Ok(genesys.map(PresetConfig::Genesys))
    }

    /// Back to the file's tables (for `guestgate check`).
    pub fn into_tables(self) -> PresetTables {
        match self {
            PresetConfig::Genesys(g) => PresetTables { genesys: Some(g) },
        }
    }

    /// The preset's name in logs and `check` output.
    pub fn kind(&self) -> &'static str {
        match self {
            PresetConfig::Genesys(_) => genesys::KIND,
        }
    }

    /// Checks the preset's settings; errors name the key below the route's `prefix`.
    pub fn validate(&self, route_prefix: &str) -> Result<(), (String, String)> {
        match self {
            PresetConfig::Genesys(g) => g.validate(&format!("{route_prefix}.genesys")),
        }
    }

    /// Whether the upstream keeps sessions a browser can resume with a ticket.
    pub fn has_sessions(&self) -> bool {
        match self {
            PresetConfig::Genesys(_) => true,
        }
    }
}

/// What a preset is prepared with: the route's upstream connection settings.
pub struct PresetContext {
    /// TLS for a `wss://` upstream (roots plus the route's extra CA).
    pub tls: Arc<rustls::ClientConfig>,
    /// The route's connect timeout.
    pub connect_timeout: std::time::Duration,
}

/// A preset prepared to serve connections.
pub enum Preset {
    /// Genesys Cloud Web Messaging.
    Genesys(genesys::GenesysPreset),
}

impl PresetConfig {
    /// Resolves the settings into what connections use; fails with a message naming the key.
    pub fn prepare(&self, ctx: PresetContext) -> Result<Preset, String> {
        match self {
            PresetConfig::Genesys(g) => Ok(Preset::Genesys(genesys::GenesysPreset::new(
                g.clone(),
                ctx,
            )?)),
        }
    }
}

/// A preset's message-level layer between the relay and the upstream socket, for presets
/// whose features need whole messages (see `genesys::conversation`). The relay's upstream leg
/// is then an in-process duplex whose other end the mediator owns.
pub enum Mediator {
    /// The Genesys conversation layer.
    Genesys(Box<genesys::Conversation>),
}

impl Mediator {
    /// Runs between `page` (the relay's end of the duplex) and the upstream leg until either
    /// side ends it.
    pub async fn run<P>(
        self,
        page: P,
        upstream: crate::relay::Leg<crate::upstream::UpstreamStream>,
        ctx: MediatorContext<'_>,
    ) where
        P: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        match self {
            Mediator::Genesys(c) => c.run(page, upstream, ctx).await,
        }
    }
}

/// What a mediator borrows from its route.
pub struct MediatorContext<'a> {
    /// The route's name (metrics, tickets).
    pub route: &'a str,
    /// Limits and timers.
    pub relay: &'a RelayConfig,
    /// Resume keys, for tickets issued mid-connection.
    pub resume: Option<&'a Resume>,
    /// Counters.
    pub metrics: &'a Metrics,
}

/// The route's resume settings, when it has them: the keys and the config.
pub type Resume = (ResumeKeys, ResumeConfig);

/// What a preset needs from the route for one connection's set-up.
pub struct SetupContext<'a> {
    /// The route's name (binds resume tickets; labels metrics).
    pub route: &'a str,
    /// The route's resume tickets, if configured.
    pub resume: Option<&'a Resume>,
    /// What the browser brought.
    pub browser: &'a BrowserRequest,
    /// Where set-up steps are timed and outcomes counted.
    pub metrics: &'a Metrics,
}

impl Preset {
    /// Where the preset connects.
    pub fn target(&self) -> &UpstreamTarget {
        match self {
            Preset::Genesys(g) => g.target(),
        }
    }

    /// Adjusts the route's relay settings to what the upstream expects (e.g. ping cadence,
    /// browser limits); `written` is the config as written, to tell unset values from set ones.
    pub fn tune_relay(&self, relay: &mut RelayConfig, written: &RelaySettings) {
        match self {
            Preset::Genesys(g) => g.tune_relay(relay, written),
        }
    }

    /// Connects and opens the upstream session for one browser connection.
    pub async fn establish(&self, ctx: &SetupContext<'_>) -> Result<Established, SetupError> {
        match self {
            Preset::Genesys(g) => g.establish(ctx).await,
        }
    }

    /// Creates the zero-valued series of the preset's own metrics for `route`.
    pub fn init_metrics(&self, route: &str, metrics: &Metrics) {
        match self {
            Preset::Genesys(_) => metrics.genesys.init_route(route),
        }
    }

    /// Lines for `guestgate check`, each starting with `#   `.
    pub fn explain(&self) -> Vec<String> {
        match self {
            Preset::Genesys(g) => g.explain(),
        }
    }
}
