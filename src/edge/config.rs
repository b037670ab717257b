//! The per-route `[routes.edge]` config section: serde model, defaults and a `validate()` that
//! names the offending key, so a bad edge policy stops start-up before any port is bound.
//!
//! The three limits that bound what one address or everyone together can make a route spend
//! upstream (`max_connections_per_ip`, `handshake_rate_per_ip`, `max_concurrent_setups`) are
//! [`Limit`]s: a value, `"off"`, or left out. Left out, a route that does upstream work (a
//! preset or a flow) gets the defaults below ([`EdgeConfig::with_upstream_defaults`]); a
//! plain relay route stays unlimited, as it spends nothing upstream but a TCP connection.
//! `"off"` is allowed but warned about at start-up.

use std::time::Duration;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::client_ip::{Cidr, ForwardedHeader};
use super::origin::Origin;
use crate::secret::SecretSource;

/// A config problem: the dotted key (e.g. `routes[0].edge.allowed_origins[1]`) and what is
/// wrong with it. Maps one-to-one onto `ConfigError::Invalid`.
pub type KeyProblem = (String, String);

/// Browser-side policy for one route, checked before the WebSocket upgrade.
///
/// The default is deliberately invalid: a route must either list the page origins allowed to
/// connect or opt out with `allow_any_origin = true` (see [`EdgeConfig::validate`]).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Page origins allowed to open this route, `scheme://host[:port]`, matched exactly after
    /// normalisation (lowercase, default ports dropped, IDN hosts as punycode).
    pub allowed_origins: Vec<String>,
    /// Explicit opt-out: do not check `Origin` at all (any, `null` or missing all pass).
    pub allow_any_origin: bool,
    /// Accept requests without an `Origin` header (non-browser clients; browsers always send it).
    pub allow_missing_origin: bool,
    /// Most connections one client address may hold open on this route.
    #[serde(skip_serializing_if = "Limit::is_unset")]
    pub max_connections_per_ip: Limit<u32>,
    /// Upgrade attempts per client address: a token bucket.
    #[serde(skip_serializing_if = "Limit::is_unset")]
    pub handshake_rate_per_ip: Limit<RateConfig>,
    /// Most upstream auth flows (token, steps, connect, hello) in progress at once on this route.
    #[serde(skip_serializing_if = "Limit::is_unset")]
    pub max_concurrent_setups: Limit<u32>,
    /// Require a site-issued HMAC ticket in the query string.
    pub ticket: Option<TicketConfig>,
    /// Proxies (CIDR or bare addresses) whose forwarding header is believed.
    pub trusted_proxies: Vec<String>,
    /// Which forwarding header the trusted proxies write: `x-forwarded-for` or `forwarded`.
    pub forwarded_header: ForwardedHeader,
    /// IPv6 clients are limited per prefix of this length (one subscriber usually holds a /64).
    pub ipv6_prefix_len: u8,
    /// Most client addresses the handshake rate limiter remembers (memory bound).
    pub max_tracked_ips: usize,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allow_any_origin: false,
            allow_missing_origin: false,
            max_connections_per_ip: Limit::Unset,
            handshake_rate_per_ip: Limit::Unset,
            max_concurrent_setups: Limit::Unset,
            ticket: None,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            ipv6_prefix_len: 64,
            max_tracked_ips: 100_000,
        }
    }
}

/// Default `max_connections_per_ip` for preset and flow routes. A chat page holds one
/// WebSocket per tab, so 50 leaves room for a few dozen visitors behind one corporate NAT or
/// carrier-grade NAT address while stopping one script from holding hundreds of upstream
/// sessions.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 50;
/// Default `handshake_rate_per_ip` for preset and flow routes: 20 back to back (a NAT's worth
/// of visitors arriving together, or a page reconnecting its tabs after a network blip), then
/// 5 per second sustained, well above what people behind one address open by hand.
pub const DEFAULT_HANDSHAKE_RATE_PER_IP: RateConfig = RateConfig {
    per_second: 5.0,
    burst: 20,
};
/// Default `max_concurrent_setups` for preset and flow routes: a set-up takes one to three
/// upstream round trips (well under a second), so 256 in flight admits hundreds of new chats
/// per second while capping the token and session calls a storm can have outstanding.
pub const DEFAULT_MAX_CONCURRENT_SETUPS: u32 = 256;

/// A limit as the config writes it: left out, switched off with `"off"`, or a value.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Limit<T> {
    /// Not in the config: the default for the route's kind applies.
    #[default]
    Unset,
    /// `"off"`: explicitly unlimited (warned about at start-up).
    Off,
    /// A value.
    Max(T),
}

impl<T: Copy> Limit<T> {
    /// Whether the config left the limit out.
    pub fn is_unset(&self) -> bool {
        matches!(self, Limit::Unset)
    }

    /// Whether the config switched the limit off.
    pub fn is_off(&self) -> bool {
        matches!(self, Limit::Off)
    }

    /// The value in force: `None` when off or (still) unset.
    pub fn get(&self) -> Option<T> {
        match self {
            Limit::Max(v) => Some(*v),
            Limit::Unset | Limit::Off => None,
        }
    }

    /// This limit, or `default` when the config left it out.
    pub fn or_default(self, default: T) -> Self {
        match self {
            Limit::Unset => Limit::Max(default),
            set => set,
        }
    }
}

impl<T: Serialize> Serialize for Limit<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Max(v) => v.serialize(s),
            Limit::Off => s.serialize_str("off"),
            // Skipped by `skip_serializing_if`; written as "default" if ever reached.
            Limit::Unset => s.serialize_str("default"),
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Limit<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through a `toml::Value` so the value's own errors (unknown keys in a rate table,
        // a negative number) come through unchanged instead of an "untagged" summary.
        match toml::Value::deserialize(d)? {
            toml::Value::String(word) if word == "off" => Ok(Limit::Off),
            toml::Value::String(word) => Err(D::Error::custom(format!(
                "expected a limit or \"off\", found {word:?}"
            ))),
            value => T::deserialize(value)
                .map(Limit::Max)
                .map_err(D::Error::custom),
        }
    }
}

/// A token bucket: `burst` attempts at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Sustained attempts per second (may be fractional, e.g. `0.5`).
    pub per_second: f64,
    /// Attempts allowed back to back after a quiet period.
    pub burst: u32,
}

/// Site tickets: the operator's web backend signs a short-lived ticket with a shared key.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TicketConfig {
    /// The shared HMAC key (its bytes as read; at least 32).
    pub key: SecretSource,
    /// Longest lifetime accepted: a ticket whose `exp` lies further ahead is refused.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    /// Clock difference tolerated between the site's backend and guestgate.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub clock_leeway: Duration,
    /// The query parameter carrying the ticket.
    #[serde(default = "default_param")]
    pub param: String,
}

fn default_max_age() -> Duration {
    Duration::from_secs(60)
}

fn default_leeway() -> Duration {
    Duration::from_secs(5)
}

fn default_param() -> String {
    "ticket".into()
}

impl EdgeConfig {
    /// The edge policy for the `serve --upstream` one-liner: the `--allow-origin` values, or,
    /// when none were given, any origin (pair it with a start-up warning from [`Self::warnings`]).
    pub fn one_liner(allowed_origins: Vec<String>) -> Self {
        let any = allowed_origins.is_empty();
        Self {
            allowed_origins,
            allow_any_origin: any,
            ..Self::default()
        }
    }

    /// This policy with the upstream-work defaults filled in where the config left a limit
    /// out ([`DEFAULT_MAX_CONNECTIONS_PER_IP`], [`DEFAULT_HANDSHAKE_RATE_PER_IP`],
    /// [`DEFAULT_MAX_CONCURRENT_SETUPS`]). Applied to preset and flow routes; `"off"` and
    /// explicit values are kept.
    pub fn with_upstream_defaults(&self) -> Self {
        Self {
            max_connections_per_ip: self
                .max_connections_per_ip
                .or_default(DEFAULT_MAX_CONNECTIONS_PER_IP),
            handshake_rate_per_ip: self
                .handshake_rate_per_ip
                .or_default(DEFAULT_HANDSHAKE_RATE_PER_IP),
            max_concurrent_setups: self
                .max_concurrent_setups
                .or_default(DEFAULT_MAX_CONCURRENT_SETUPS),
            ..self.clone()
        }
    }

    /// Checks everything serde cannot. `prefix` is the section's key, e.g. `routes[0].edge`.
    pub fn validate(&self, prefix: &str) -> Result<(), KeyProblem> {
        let key = |k: &str| format!("{prefix}.{k}");
        let bad = |k: String, p: &str| Err((k, p.to_owned()));
        match (self.allow_any_origin, self.allowed_origins.is_empty()) {
            (false, true) => {
                return bad(
                    key("allowed_origins"),
                    "list the page origins allowed to connect (e.g. \"https://www.example.com\"), \
                     or set allow_any_origin = true to opt out",
                );
            }
            (true, false) => {
                return bad(
                    key("allow_any_origin"),
                    "cannot be combined with allowed_origins; remove one of them",
                );
            }
            _ => {}
        }
        for (i, entry) in self.allowed_origins.iter().enumerate() {
            Origin::parse_allowlist_entry(entry)
                .map_err(|problem| (key(&format!("allowed_origins[{i}]")), problem))?;
        }
        const AT_LEAST_ONE: &str = "must be at least 1 (write \"off\" to switch the limit off)";
        if self.max_connections_per_ip == Limit::Max(0) {
            return bad(key("max_connections_per_ip"), AT_LEAST_ONE);
        }
        if self.max_concurrent_setups == Limit::Max(0) {
            return bad(key("max_concurrent_setups"), AT_LEAST_ONE);
        }
        if let Some(rate) = &self.handshake_rate_per_ip.get() {
            if !(rate.per_second.is_finite() && rate.per_second > 0.0) {
                return bad(
                    key("handshake_rate_per_ip.per_second"),
                    "must be a number above 0",
                );
            }
            if rate.burst == 0 {
                return bad(key("handshake_rate_per_ip.burst"), "must be at least 1");
            }
        }
        if let Some(ticket) = &self.ticket {
            ticket.validate(&key("ticket"))?;
        }
        for (i, entry) in self.trusted_proxies.iter().enumerate() {
            entry
                .parse::<Cidr>()
                .map_err(|e| (key(&format!("trusted_proxies[{i}]")), e.to_string()))?;
        }
        if !(32..=128).contains(&self.ipv6_prefix_len) {
            return bad(key("ipv6_prefix_len"), "must be between 32 and 128");
        }
        if self.max_tracked_ips == 0 {
            return bad(key("max_tracked_ips"), "must be at least 1");
        }
        Ok(())
    }

    /// Things worth a start-up warning that are not errors (one line each, key first).
    pub fn warnings(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.allow_any_origin {
            out.push(format!(
                "{prefix}.allow_any_origin: any web page can open this route and spend its \
                 upstream credentials; list the allowed origins instead"
            ));
        }
        let off = [
            (
                self.max_connections_per_ip.is_off(),
                "max_connections_per_ip",
            ),
            (self.handshake_rate_per_ip.is_off(), "handshake_rate_per_ip"),
            (self.max_concurrent_setups.is_off(), "max_concurrent_setups"),
        ];
        for (_, name) in off.iter().filter(|(is_off, _)| *is_off) {
            out.push(format!(
                "{prefix}.{name} = \"off\": this limit is switched off, so one client (or a \
                 storm of them) can make this route spend without bound; set a value instead"
            ));
        }
        if self.trusted_proxies.iter().any(|p| p.ends_with("/0")) {
            out.push(format!(
                "{prefix}.trusted_proxies: a /0 entry trusts every peer, so any client can \
                 choose its own address"
            ));
        }
        out
    }
}

impl TicketConfig {
    fn validate(&self, prefix: &str) -> Result<(), KeyProblem> {
        let key = |k: &str| format!("{prefix}.{k}");
        if self.key.file.is_some() == self.key.env.is_some() {
            return Err((key("key"), "give exactly one of `file` or `env`".into()));
        }
        if self.max_age.is_zero() || self.max_age > Duration::from_secs(24 * 3600) {
            return Err((key("max_age"), "must be between 1s and 24h".into()));
        }
        if self.clock_leeway > Duration::from_secs(300) {
            return Err((key("clock_leeway"), "must be at most 5m".into()));
        }
        let url_safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~');
        if self.param.is_empty() || !self.param.chars().all(url_safe) {
            return Err((
                key("param"),
                "must be a non-empty name of letters, digits, '-', '_', '.' or '~'".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
