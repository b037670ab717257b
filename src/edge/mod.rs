//! Browser-side edge policy: everything decided about a browser request before the WebSocket
//! upgrade, costing nothing upstream. A refused request gets a plain 400/403/429/503 and no
//! upstream call is made.
//!
//! Per route, in the order [`EdgePolicy::check`] applies them (cheap and stateless first, so
//! requests refused for cause do not use up a client's rate or connection allowance):
//!
//! 1. client address: the socket peer, or from the forwarding header of a trusted proxy
//!    ([`client_ip`]);
//! 2. exact `Origin` allowlist ([`origin`]);
//! 3. site ticket, if configured ([`ticket`]);
//! 4. per-IP open-connection cap, then per-IP handshake rate ([`limits`]).
//!
//! Before all of this, at accept time, [`AcceptGate`] caps the connections one address may
//! hold process-wide (the route is not known until the request is read).
//!
//! The cap on concurrent upstream auth flows is taken separately with
//! [`EdgePolicy::try_begin_setup`], because its guard lives for the auth flow only, while the
//! per-IP guard in [`Admission`] lives as long as the connection. The process-wide connection
//! cap and draining belong to the server; [`Rejection`] has variants for them so every edge
//! refusal is answered and counted the same way.

pub mod accept;
pub mod client_ip;
pub mod config;
pub mod limits;
pub mod origin;
pub mod rejection;
pub mod ticket;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

pub use accept::{AcceptGate, AcceptSlot};
pub use client_ip::{Cidr, ClientIpResolver, ForwardedHeader};
pub use config::{
    DEFAULT_HANDSHAKE_RATE_PER_IP, DEFAULT_MAX_CONCURRENT_SETUPS, DEFAULT_MAX_CONNECTIONS_PER_IP,
    EdgeConfig, KeyProblem, Limit, RateConfig, TicketConfig,
};
pub use limits::{ConnectionTracker, HandshakeLimiter, IpGuard, SetupGuard, SetupLimiter};
pub use origin::{Origin, OriginPolicy, OriginProblem};
pub use rejection::Rejection;
pub use ticket::{TicketClaims, TicketError, TicketVerifier, VerifiedTicket, mint_ticket};

use crate::secret::Secret;

/// The moment a request is checked: a monotonic instant for rate limiting and wall-clock
/// seconds for ticket expiry. Passed in so tests control time without sleeping.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// For token buckets.
    pub instant: Instant,
    /// Unix seconds, for ticket `exp`.
    pub unix_secs: u64,
}

impl Now {
    /// The current time.
    pub fn system() -> Self {
        Self {
            instant: Instant::now(),
            unix_secs: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// A request the edge let through. Keep it for the life of the connection: dropping it
/// releases the client's per-IP connection slot.
#[derive(Debug)]
#[must_use = "the per-IP connection slot is released when the admission is dropped"]
pub struct Admission {
    /// The resolved client address (full address; limits may group IPv6 by prefix).
    pub client_ip: IpAddr,
    /// The verified site ticket, when the route requires one.
    pub ticket: Option<VerifiedTicket>,
    _ip_slot: Option<IpGuard>,
}

/// One route's compiled edge policy and its counters. Build once per route at start-up and
/// share it (`Arc`) across connections.
#[derive(Debug)]
pub struct EdgePolicy {
    origins: OriginPolicy,
    client_ip: ClientIpResolver,
    ipv6_prefix_len: u8,
    per_ip: Option<Arc<ConnectionTracker>>,
    rate: Option<HandshakeLimiter>,
    setups: Option<Arc<SetupLimiter>>,
    ticket: Option<TicketVerifier>,
}

impl EdgePolicy {
    /// Compiles a validated [`EdgeConfig`] for the route named `route` (tickets may be bound
    /// to it). `ticket_key` is `config.ticket.key`, loaded; it is needed exactly when
    /// `config.ticket` is set. Errors name the key relative to the route's `edge` section
    /// (e.g. `ticket.key`). A limit still [`Limit::Unset`] here is unlimited: apply
    /// [`EdgeConfig::with_upstream_defaults`] first for routes that do upstream work.
    pub fn new(
        route: &str,
        config: &EdgeConfig,
        ticket_key: Option<Secret>,
    ) -> Result<Self, KeyProblem> {
        config
            .validate("edge")
            .map_err(|(key, problem)| (key.trim_start_matches("edge.").to_owned(), problem))?;
        let origins = OriginPolicy::new(
            &config.allowed_origins,
            config.allow_any_origin,
            config.allow_missing_origin,
        )
        .map_err(|(i, problem)| (format!("allowed_origins[{i}]"), problem))?;
        let trusted = config
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.parse().map_err(|e: client_ip::CidrError| {
                    (format!("trusted_proxies[{i}]"), e.to_string())
                })
            })
            .collect::<Result<_, _>>()?;
        let ticket = match (&config.ticket, ticket_key) {
            (None, None) => None,
            (Some(cfg), Some(key)) => Some(
                TicketVerifier::new(&key, cfg, route)
                    .map_err(|problem| ("ticket.key".to_owned(), problem))?,
            ),
            (Some(_), None) => {
                return Err(("ticket.key".into(), "the ticket key was not loaded".into()));
            }
            (None, Some(_)) => {
                return Err((
                    "ticket".into(),
                    "a key was given but no ticket section".into(),
                ));
            }
        };
        Ok(Self {
            origins,
            client_ip: ClientIpResolver::new(trusted, config.forwarded_header),
            ipv6_prefix_len: config.ipv6_prefix_len,
            per_ip: config
                .max_connections_per_ip
                .get()
                .map(ConnectionTracker::new),
            rate: config
                .handshake_rate_per_ip
                .get()
                .map(|r| HandshakeLimiter::new(r, config.max_tracked_ips)),
            setups: config.max_concurrent_setups.get().map(SetupLimiter::new),
            ticket,
        })
    }

    /// Decides whether an upgrade request may proceed. `peer` is the TCP peer, `query` the
    /// request URI's raw query. On success the returned [`Admission`] must be kept until the
    /// connection ends.
    pub fn check(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        query: Option<&str>,
        now: Now,
    ) -> Result<Admission, Rejection> {
        let client_ip = self
            .client_ip
            .resolve(peer.ip(), headers)
            .map_err(|_| Rejection::BadRequest("unreadable forwarding header"))?;
        self.origins.check(headers).map_err(Rejection::Origin)?;
        let ticket = match &self.ticket {
            Some(verifier) => Some(
                verifier
                    .verify_query(query, now.unix_secs)
                    .map_err(Rejection::Ticket)?,
            ),
            None => None,
        };
        let key = self.limit_key(client_ip);
        let ip_slot = match &self.per_ip {
            Some(tracker) => Some(tracker.try_acquire(key)?),
            None => None,
        };
        if let Some(rate) = &self.rate {
            // On refusal the per-IP slot just taken is released by the drop.
            rate.check(key, now.instant)?;
        }
        Ok(Admission {
            client_ip,
            ticket,
            _ip_slot: ip_slot,
        })
    }

    /// Starts an upstream auth flow, or refuses with [`Rejection::SetupCap`] when the route's
    /// `max_concurrent_setups` are running. Drop the guard when the flow has finished.
    pub fn try_begin_setup(&self) -> Result<SetupGuard, Rejection> {
        match &self.setups {
            Some(limiter) => limiter.try_begin(),
            None => Ok(SetupGuard::unlimited()),
        }
    }

    /// The address limits are keyed on: IPv6 grouped by `ipv6_prefix_len`, IPv4 as is.
    pub fn limit_key(&self, client_ip: IpAddr) -> IpAddr {
        match client_ip.to_canonical() {
            v4 @ IpAddr::V4(_) => v4,
            v6 => client_ip::mask(v6, self.ipv6_prefix_len).unwrap_or(v6),
        }
    }

    /// The proxies this route believes (exempt from the accept-time per-address cap).
    pub fn trusted_proxies(&self) -> &[Cidr] {
        self.client_ip.trusted()
    }
}

#[cfg(test)]
mod tests;
