//! Resume tickets: an opaque string that lets a reconnecting browser continue the same
//! upstream session (same session token, so Genesys answers `newSession: false`) on any
//! replica that has the key, with no shared store.
//!
//! A ticket is the session token, route and expiry sealed with ChaCha20-Poly1305 under a key
//! from the config. The browser holds only the sealed ticket: page script never sees the
//! upstream token, and cannot forge, alter or move a ticket to another route.
//!
//! Wire format, base64url without padding (so it fits a query parameter or a cookie as is):
//!
//! ```text
//! version (1 byte, = 1) | key id (1 byte) | nonce (12 random bytes) | ciphertext + 16-byte tag
//! ```
//!
//! The plaintext is compact JSON (`{"r":route,"t":token,"i":issued,"e":expires,"f":first}`).
//! `f` is when the conversation's first ticket was issued; renewing a ticket carries it
//! forward, and no renewal expires later than `f + max_lifetime`, so however often a ticket is
//! renewed it stops resuming `max_lifetime` after the first one was issued. Tickets sealed
//! before `f` existed (same version byte) open as first issued at their `i`: they expire
//! within `ttl` of it anyway, and their renewals carry that time forward. The
//! associated data is the version and key-id bytes followed by the route name, so a ticket
//! presented on another route fails authentication: it is reported as
//! [`ResumeError::Tampered`], like any other forgery. (The route is also inside the payload
//! and compared after opening, as [`ResumeError::WrongRoute`]; with the route in the AAD that
//! check cannot fail unless the sealing side is broken.)
//!
//! The key id is the first byte of SHA-256 over a label and the key: it picks the key to try
//! without revealing anything usable about it. Random 96-bit nonces are safe for far more
//! tickets than one key will ever seal (the bound is about 2^32 per key).
//!
//! **Callers start a fresh session on any [`ResumeError`]**, never refuse the connection:
//! a stale bookmark or a rotated-out key must not lock a browser into an error loop.
//!
//! Rotation: keys are listed newest first; the first seals, all open. To rotate without
//! stranding tickets, append the new key everywhere, then move it to the front, and remove
//! the old key once `ttl` has passed. Removing a key at once revokes every ticket it sealed.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::template::valid_name;
use crate::secret::{Secret, SecretError, SecretSource};

/// The format version byte.
const VERSION: u8 = 1;
/// Header bytes before the ciphertext: version, key id, nonce.
const HEADER_LEN: usize = 2 + 12;
/// The Poly1305 tag length.
const TAG_LEN: usize = 16;
/// Tickets longer than this (in characters) are refused before decoding. A 2048-character
/// session token (Genesys's maximum) seals to about 2.9 KiB.
pub const MAX_TICKET_LEN: usize = 4096;
/// The length of a resume key, in bytes.
pub const KEY_LEN: usize = 32;
/// The longest `ttl` accepted.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest `max_lifetime` accepted.
pub const MAX_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

/// Standard base64 alphabet, padding optional: how keys are written in their files or
/// variables (`openssl rand -base64 32`).
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The `resume` section of a route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeConfig {
    /// Keys, newest first, each a file or environment variable holding 32 bytes in standard
    /// base64 (`openssl rand -base64 32`). The first seals; all open.
    pub keys: Vec<SecretSource>,
    /// How long a ticket stays valid after it is issued. Keep it within the upstream
    /// session's own lifetime.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// How long after a conversation's first ticket its renewals may still resume it,
    /// however often they are renewed. At least `ttl`.
    #[serde(default = "default_max_lifetime", with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// The browser query parameter that carries the ticket.
    #[serde(default = "default_param")]
    pub param: String,
}

fn default_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_max_lifetime() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

fn default_param() -> String {
    "resume".to_owned()
}

impl ResumeConfig {
    /// A config with the default `ttl` and `param`.
    pub fn new(keys: Vec<SecretSource>) -> Self {
        Self {
            keys,
            ttl: default_ttl(),
            max_lifetime: default_max_lifetime(),
            param: default_param(),
        }
    }

    /// Checks what serde cannot, without reading the keys. Problems are `; `-separated,
    /// each prefixed with its key (`routes[0].resume.keys[1]: ...`).
    pub fn validate(&self, key_prefix: &str) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.keys.is_empty() {
            problems.push(format!("{key_prefix}.keys: give at least one key"));
        }
        for (i, key) in self.keys.iter().enumerate() {
            let ok = match (&key.file, &key.env) {
                (Some(path), None) => !path.as_os_str().is_empty(),
                (None, Some(var)) => !var.is_empty(),
                _ => false,
            };
            if !ok {
                problems.push(format!(
                    "{key_prefix}.keys[{i}]: give exactly one non-empty `file` or `env`"
                ));
            }
        }
        if self.ttl.is_zero() || self.ttl > MAX_TTL {
            problems.push(format!(
                "{key_prefix}.ttl: must be greater than zero and at most 30 days"
            ));
        }
        if self.max_lifetime < self.ttl || self.max_lifetime > MAX_LIFETIME {
            problems.push(format!(
                "{key_prefix}.max_lifetime: must be at least ttl and at most 90 days"
            ));
        }
        if !valid_name(&self.param) {
            problems.push(format!(
                "{key_prefix}.param: must be 1 to 64 characters from A-Z a-z 0-9 _ -"
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Reads and decodes every key.
    pub fn load(&self) -> Result<ResumeKeys, ResumeKeyError> {
        let mut keys = Vec::with_capacity(self.keys.len());
        for (index, source) in self.keys.iter().enumerate() {
            let secret = source
                .load()
                .map_err(|source| ResumeKeyError::Secret { index, source })?;
            let bytes = KEY_BASE64
                .decode(secret.expose().trim())
                .map_err(|_| ResumeKeyError::NotBase64 { index })?;
            let key: [u8; KEY_LEN] =
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| ResumeKeyError::Length {
                        index,
                        len: bytes.len(),
                    })?;
            keys.push(key);
        }
        ResumeKeys::from_bytes(&keys)
    }
}

/// Why the resume keys could not be loaded. Names the key by index, never its content.
#[derive(Debug, thiserror::Error)]
pub enum ResumeKeyError {
    /// No keys were given.
    #[error("keys: give at least one key")]
    NoKeys,
    /// The file or variable could not be read.
    #[error("keys[{index}]: {source}")]
    Secret {
        /// The key's position in `keys`.
        index: usize,
        /// What went wrong reading it.
        source: SecretError,
    },
    /// The content is not standard base64.
    #[error("keys[{index}]: not valid base64; generate a key with `openssl rand -base64 32`")]
    NotBase64 {
        /// The key's position in `keys`.
        index: usize,
    },
    /// The content decodes to the wrong number of bytes.
    #[error("keys[{index}]: decodes to {len} bytes; a resume key must be exactly 32")]
    Length {
        /// The key's position in `keys`.
        index: usize,
        /// The decoded length.
        len: usize,
    },
}

/// What a ticket carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeTicket {
    /// The route the ticket was issued on.
    pub route: String,
    /// The upstream session token to resume with.
    pub session_token: Secret,
    /// When it was issued (seconds since the Unix epoch).
    pub issued_at_unix: u64,
    /// When it stops being accepted (seconds since the Unix epoch).
    pub expires_at_unix: u64,
    /// When the conversation's first ticket was issued (seconds since the Unix epoch).
    pub first_issued_at_unix: u64,
    /// A signed-in customer's refresh token (Genesys authenticated messaging): the ticket then
    /// resumes the signed-in session on any replica with the key.
    pub refresh_token: Option<Secret>,
}

impl ResumeTicket {
    /// A conversation's first ticket, issued at `now_unix`, valid for `ttl`.
    pub fn new(
        route: impl Into<String>,
        session_token: Secret,
        now_unix: u64,
        ttl: Duration,
    ) -> Self {
        Self {
            route: route.into(),
            session_token,
            issued_at_unix: now_unix,
            expires_at_unix: now_unix.saturating_add(ttl.as_secs()),
            first_issued_at_unix: now_unix,
            refresh_token: None,
        }
    }

    /// The same ticket carrying a signed-in customer's refresh token.
    pub fn with_refresh_token(mut self, refresh_token: Option<Secret>) -> Self {
        self.refresh_token = refresh_token;
        self
    }

    /// The ticket that replaces this one at `now_unix`: same route, token and first issue
    /// time, valid for `ttl` but never past `max_lifetime` after the first issue. `None` once
    /// that is reached: the conversation can no longer be resumed.
    pub fn renewed(&self, now_unix: u64, ttl: Duration, max_lifetime: Duration) -> Option<Self> {
        let end_of_life = self
            .first_issued_at_unix
            .saturating_add(max_lifetime.as_secs());
        let expires_at_unix = now_unix.saturating_add(ttl.as_secs()).min(end_of_life);
        (expires_at_unix > now_unix).then(|| Self {
            route: self.route.clone(),
            session_token: self.session_token.clone(),
            issued_at_unix: now_unix,
            expires_at_unix,
            first_issued_at_unix: self.first_issued_at_unix,
            refresh_token: self.refresh_token.clone(),
        })
    }
}

/// The sealed payload, with short field names to keep tickets short.
#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    r: Cow<'a, str>,
    #[serde(borrow)]
    t: Cow<'a, str>,
    i: u64,
    e: u64,
    /// Absent in tickets sealed before it existed: then the ticket's `i`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    f: Option<u64>,
    /// A signed-in customer's refresh token; absent for guests.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    rt: Option<Cow<'a, str>>,
}

/// Why a ticket was not accepted. Holds nothing from the ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// Too long, not base64url, too short, or an unknown version.
    #[error("resume ticket is malformed")]
    Malformed,
    /// It does not authenticate under any key: forged, altered, sealed with a key no longer
    /// configured, or issued for another route.
    #[error("resume ticket does not authenticate")]
    Tampered,
    /// It authenticates but names another route (see the module docs: not expected).
    #[error("resume ticket is for another route")]
    WrongRoute,
    /// It authenticates but its expiry has passed.
    #[error("resume ticket has expired")]
    Expired,
}

impl ResumeError {
    /// Every [`ResumeError::outcome_label`] value.
    pub const OUTCOME_LABELS: [&'static str; 2] = ["tampered", "expired"];

    /// The metric outcome: `expired` for [`ResumeError::Expired`], `tampered` for the rest.
    pub fn outcome_label(self) -> &'static str {
        match self {
            ResumeError::Expired => "expired",
            ResumeError::Malformed | ResumeError::Tampered | ResumeError::WrongRoute => "tampered",
        }
    }
}

/// The loaded keys: the first seals, all open. `Debug` shows only how many there are.
#[derive(Clone)]
pub struct ResumeKeys {
    keys: Vec<(u8, ChaCha20Poly1305)>,
}

impl ResumeKeys {
    /// Keys from raw bytes, newest first.
    pub fn from_bytes(keys: &[[u8; KEY_LEN]]) -> Result<Self, ResumeKeyError> {
        if keys.is_empty() {
            return Err(ResumeKeyError::NoKeys);
        }
        let keys = keys
            .iter()
            .map(|k| {
                let id = Sha256::new()
                    .chain_update(b"guestgate resume key id\0")
                    .chain_update(k)
                    .finalize()[0];
                (id, ChaCha20Poly1305::new(Key::from_slice(k)))
            })
            .collect();
        Ok(Self { keys })
    }

    /// How many keys are loaded.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Seals `ticket` with the first key, bound to `ticket.route`.
    pub fn seal(&self, ticket: &ResumeTicket) -> String {
        let (id, cipher) = &self.keys[0];
        let payload = serde_json::to_vec(&Wire {
            r: Cow::Borrowed(&ticket.route),
            t: Cow::Borrowed(ticket.session_token.expose()),
            i: ticket.issued_at_unix,
            e: ticket.expires_at_unix,
            f: Some(ticket.first_issued_at_unix),
            rt: ticket
                .refresh_token
                .as_ref()
                .map(|t| Cow::Borrowed(t.expose())),
        })
        .expect("serializing strings and integers cannot fail");
        let nonce: [u8; 12] = rand::random();
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TAG_LEN);
        out.extend_from_slice(&[VERSION, *id]);
        out.extend_from_slice(&nonce);
        let aad = aad(*id, &ticket.route);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &payload,
                    aad: &aad,
                },
            )
            .expect("chacha20poly1305 seals any payload under 256 GiB");
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens a ticket presented on `route` at `now_unix`. On any error, start a fresh session.
    pub fn open(
        &self,
        ticket: &str,
        route: &str,
        now_unix: u64,
    ) -> Result<ResumeTicket, ResumeError> {
        if ticket.len() > MAX_TICKET_LEN {
            return Err(ResumeError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(ticket)
            .map_err(|_| ResumeError::Malformed)?;
        if raw.len() < HEADER_LEN + TAG_LEN || raw[0] != VERSION {
            return Err(ResumeError::Malformed);
        }
        let id = raw[1];
        let nonce = Nonce::from_slice(&raw[2..HEADER_LEN]);
        let aad = aad(id, route);
        let plain = self
            .keys
            .iter()
            .filter(|(key_id, _)| *key_id == id)
            .find_map(|(_, cipher)| {
                let payload = Payload {
                    msg: &raw[HEADER_LEN..],
                    aad: &aad,
                };
                cipher.decrypt(nonce, payload).ok()
            })
            .ok_or(ResumeError::Tampered)?;
        let wire: Wire<'_> = serde_json::from_slice(&plain).map_err(|_| ResumeError::Malformed)?;
        if wire.r != route {
            return Err(ResumeError::WrongRoute);
        }
        if now_unix >= wire.e {
            return Err(ResumeError::Expired);
        }
        Ok(ResumeTicket {
            route: wire.r.into_owned(),
            session_token: Secret::new(wire.t.into_owned()),
            issued_at_unix: wire.i,
            expires_at_unix: wire.e,
            first_issued_at_unix: wire.f.unwrap_or(wire.i),
            refresh_token: wire.rt.map(|t| Secret::new(t.into_owned())),
        })
    }
}

/// Associated data: the header bytes, then the route.
fn aad(id: u8, route: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(2 + route.len());
    aad.extend_from_slice(&[VERSION, id]);
    aad.extend_from_slice(route.as_bytes());
    aad
}

impl fmt::Debug for ResumeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResumeKeys")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// The ticket in the upgrade's query (`?{param}=...`), unless the page asked to present it in
/// its first frame instead ([`crate::auth::resume_frame::FIRST_FRAME_MARKER`]).
pub fn ticket_in_query(query: &str, param: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == param)
        .map(|(_, value)| value.into_owned())
        .filter(|t| t != crate::auth::resume_frame::FIRST_FRAME_MARKER)
}

/// Whether the page asked to present its ticket in the first frame (`?{param}=first-frame`).
pub fn wants_first_frame(query: Option<&str>, param: &str) -> bool {
    query.is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(name, value)| {
            name == param && value == crate::auth::resume_frame::FIRST_FRAME_MARKER
        })
    })
}

/// Seconds since the Unix epoch now (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[path = "resume_tests.rs"]
mod tests;
