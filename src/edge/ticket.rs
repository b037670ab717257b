//! Site tickets: proof that the page opening a WebSocket was just served by the operator's own
//! web backend, checked before the upgrade with a key shared between that backend and
//! guestgate. Stateless: nothing is stored, so any replica verifies any ticket.
//!
//! # Format
//!
//! ```text
//! ticket  = base64url(payload) "." base64url(HMAC-SHA256(key, payload))
//! payload = JSON object: {"exp": 1767225600, "route": "chat", "sub": "visitor-42"}
//! ```
//!
//! - `base64url` is RFC 4648 §5 without padding (padding is tolerated).
//! - The MAC is over the payload's JSON **bytes** (not their base64 text), with the key's bytes
//!   exactly as guestgate reads them (file contents minus the trailing newline, or the
//!   environment variable). Use at least 32 random bytes, e.g. `openssl rand -base64 48`.
//! - `exp` (required): Unix seconds; the ticket is refused from that second on. It must also
//!   be no further ahead than the route's `ticket.max_age` (default 60s), so a leaked key
//!   cannot mint long-lived tickets unnoticed and a leaked ticket dies quickly. Both checks
//!   allow `ticket.clock_leeway` (default 5s) of clock difference.
//! - `route` (required): the route name; a ticket naming another route, or none, is refused.
//!   Why required: a ticket without it would be good on every route that shares the key, and
//!   the key is easily shared by accident (one secret mounted for several routes, or a route
//!   added later with the same key), which silently widens every ticket the site is already
//!   minting. Checking "is this key shared?" would catch one config but not the next edit;
//!   naming the route costs the site one field and makes each ticket's reach explicit.
//! - `sub` (optional): an opaque string of the site's choosing (a visitor id, say), handed to
//!   the accept path for logs. Other fields are ignored.
//!
//! The browser passes it in the query string, `wss://chat.example.com/ws?ticket=<ticket>`
//! (the parameter name is `ticket.param`). A ticket may be used more than once until it
//! expires; keep `max_age` short. Treat it like a password in access logs.
//!
//! # Minting a ticket
//!
//! Python (standard library only):
//!
//! ```python
//! import base64, hashlib, hmac, json, time
//!
//! def b64url(data: bytes) -> str:
//!     return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
//!
//! def mint_ticket(key: bytes, route: str, sub=None, ttl=60) -> str:
//!     claims = {"exp": int(time.time()) + ttl, "route": route}
//!     if sub: claims["sub"] = sub
//!     payload = json.dumps(claims, separators=(",", ":")).encode()
//!     sig = hmac.new(key, payload, hashlib.sha256).digest()
//!     return b64url(payload) + "." + b64url(sig)
//! ```
//!
//! Node.js (built-ins only):
//!
//! ```js
//! const crypto = require("node:crypto");
//!
//! function mintTicket(key, route, { sub, ttl = 60 } = {}) {
//!   // JSON.stringify leaves out undefined fields.
//!   const claims = { exp: Math.floor(Date.now() / 1000) + ttl, route, sub };
//!   const payload = Buffer.from(JSON.stringify(claims));
//!   const sig = crypto.createHmac("sha256", key).update(payload).digest();
//!   return payload.toString("base64url") + "." + sig.toString("base64url");
//! }
//! ```
//!
//! In Rust (tests, tools): [`mint_ticket`] or [`TicketClaims::mint`].

use std::time::Duration;

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::config::TicketConfig;
use crate::secret::Secret;

/// Shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;
/// Longest ticket looked at, in bytes; longer ones are refused unparsed.
pub const MAX_TICKET_BYTES: usize = 2048;

const B64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What a ticket says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketClaims {
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// The route the ticket is for; required (a ticket without it is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// An opaque subject chosen by the site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

impl TicketClaims {
    /// Signs these claims with `key`.
    pub fn mint(&self, key: &Secret) -> String {
        let payload = serde_json::to_vec(self).expect("claims always serialise");
        let mut mac = new_mac(key.expose().as_bytes());
        mac.update(&payload);
        let sig = mac.finalize().into_bytes();
        format!("{}.{}", B64.encode(&payload), B64.encode(sig))
    }
}

/// A ticket expiring at `exp` (Unix seconds), bound to `route`. `None` mints an unbound
/// ticket, which every verifier refuses (for tests of exactly that).
pub fn mint_ticket(key: &Secret, exp: u64, route: Option<&str>) -> String {
    TicketClaims {
        exp,
        route: route.map(str::to_owned),
        sub: None,
    }
    .mint(key)
}

fn new_mac(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("hmac accepts keys of any length")
}

/// Why a ticket was refused. Messages are short and never contain the key or the ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// No ticket parameter in the query.
    #[error("ticket required")]
    Missing,
    /// The parameter appears more than once.
    #[error("more than one ticket given")]
    Duplicate,
    /// Not `payload.signature` in base64url, too long, or the payload is not the JSON expected.
    #[error("malformed ticket")]
    Malformed,
    /// The signature does not match (tampered, or signed with another key).
    #[error("ticket signature invalid")]
    BadSignature,
    /// `exp` has passed.
    #[error("ticket expired")]
    Expired,
    /// `exp` is further ahead than the route's `max_age` allows.
    #[error("ticket lifetime too long")]
    TooFarInFuture,
    /// The ticket names another route.
    #[error("ticket is for another route")]
    WrongRoute,
    /// The ticket names no route (the `route` claim is required).
    #[error("ticket names no route")]
    Unbound,
}

/// A ticket that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTicket {
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// The site's opaque subject, if it sent one.
    pub sub: Option<String>,
}

/// Checks tickets for one route. `Debug` never shows the key.
#[derive(Clone)]
pub struct TicketVerifier {
    mac: Hmac<Sha256>,
    max_age: Duration,
    leeway: Duration,
    param: String,
    route: String,
}

impl std::fmt::Debug for TicketVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketVerifier")
            .field("key", &"[redacted]")
            .field("max_age", &self.max_age)
            .field("param", &self.param)
            .field("route", &self.route)
            .finish()
    }
}

impl TicketVerifier {
    /// A verifier for `route`; the error is a problem with the key (too short).
    pub fn new(key: &Secret, config: &TicketConfig, route: &str) -> Result<Self, String> {
        let bytes = key.expose().as_bytes();
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "must be at least {MIN_KEY_BYTES} bytes (e.g. `openssl rand -base64 48`)"
            ));
        }
        Ok(Self {
            mac: new_mac(bytes),
            max_age: config.max_age,
            leeway: config.clock_leeway,
            param: config.param.clone(),
            route: route.to_owned(),
        })
    }

    /// The query parameter this verifier reads.
    pub fn param(&self) -> &str {
        &self.param
    }

    /// Finds the ticket parameter in a raw query string and verifies it.
    pub fn verify_query(
        &self,
        query: Option<&str>,
        now_unix: u64,
    ) -> Result<VerifiedTicket, TicketError> {
        let mut found = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .filter(|(k, _)| k == self.param.as_str())
            .map(|(_, v)| v);
        let ticket = found.next().ok_or(TicketError::Missing)?;
        if found.next().is_some() {
            return Err(TicketError::Duplicate);
        }
        self.verify(&ticket, now_unix)
    }

    /// Verifies one ticket at `now_unix` (Unix seconds).
    pub fn verify(&self, ticket: &str, now_unix: u64) -> Result<VerifiedTicket, TicketError> {
        if ticket.len() > MAX_TICKET_BYTES {
            return Err(TicketError::Malformed);
        }
        let (payload, sig) = ticket
            .split_once('.')
            .filter(|(p, s)| !p.is_empty() && !s.is_empty())
            .ok_or(TicketError::Malformed)?;
        let payload = B64.decode(payload).map_err(|_| TicketError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| TicketError::Malformed)?;
        let mut mac = self.mac.clone();
        mac.update(&payload);
        // Constant-time comparison; also refuses truncated signatures.
        mac.verify_slice(&sig)
            .map_err(|_| TicketError::BadSignature)?;
        let claims: TicketClaims =
            serde_json::from_slice(&payload).map_err(|_| TicketError::Malformed)?;
        let leeway = self.leeway.as_secs();
        if now_unix >= claims.exp.saturating_add(leeway) {
            return Err(TicketError::Expired);
        }
        let latest = now_unix
            .saturating_add(self.max_age.as_secs())
            .saturating_add(leeway);
        if claims.exp > latest {
            return Err(TicketError::TooFarInFuture);
        }
        match claims.route {
            None => return Err(TicketError::Unbound),
            Some(route) if route != self.route => return Err(TicketError::WrongRoute),
            Some(_) => {}
        }
        Ok(VerifiedTicket {
            exp: claims.exp,
            sub: claims.sub,
        })
    }
}

#[cfg(test)]
#[path = "ticket_tests.rs"]
mod tests;
