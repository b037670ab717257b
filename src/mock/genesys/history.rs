//! `getJwt` on the socket and the history REST API it unlocks:
//! `GET /api/v2/webmessaging/messages?pageSize=N&pageNumber=M` with `Authorization: Bearer
//! <jwt>`, served on the fake's listener.
//!
//! Paging: page 1 holds the most recent messages and, within a page, entities are NEWEST
//! FIRST (Genesys's SDK loads older pages as the guest scrolls up; whether the real service
//! orders a page newest first is not confirmed, the fake picks it and keeps to it).
//! `total` counts the conversation's messages, `pageCount` is `ceil(total / pageSize)`
//! (0 for an empty conversation); a page past the end is 200 with no entities.
//!
//! The JWT is opaque to clients: `header.payload.signature` in base64url, HS256 over a
//! payload that carries no session token. It is the whole credential for the history, so the
//! fake never logs it and no error message repeats it.

use std::sync::atomic::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::time::Instant;

use super::frames::{self, response};
use super::protocol::{State, epoch_after};
use crate::mock::support::lock;

/// `pageSize` when the query has none.
pub(super) const DEFAULT_PAGE_SIZE: usize = 25;
/// Largest `pageSize` accepted.
pub(super) const MAX_PAGE_SIZE: usize = 100;

/// An issued JWT: whose session it reads, and until when.
#[derive(Debug, Clone)]
pub(crate) struct JwtGrant {
    pub(super) token: String,
    until: Instant,
}

/// HMAC-SHA256 of `data` under the fake's key, base64url without padding.
pub(super) fn sign(key: &[u8], data: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac accepts keys of any length");
    mac.update(data.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// A JWT with these claims: `header.payload.signature`, base64url, HS256 under the fake's key.
pub(super) fn mint_jwt(key: &[u8], claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let unsigned = format!("{header}.{payload}");
    format!("{unsigned}.{}", sign(key, &unsigned))
}

/// A platform-style JSON error body (no credential in it).
pub(super) fn api_error(status: u16, code: &str, message: &str) -> Value {
    json!({
        "message": message,
        "code": code,
        "status": status,
        "contextId": uuid::Uuid::new_v4().to_string(),
        "details": [],
        "errors": [],
    })
}

impl State {
    /// Answers `getJwt` for a checked session token: `JwtResponse {jwt, exp}`.
    pub(super) fn get_jwt(&self, token: &str, tracing: Option<&Value>) -> Value {
        let lifetime = self.config.jwt_lifetime;
        let exp = epoch_after(lifetime);
        let claims = json!({
            "iss": "fake-genesys",
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": frames::epoch_now(),
            "exp": exp,
        });
        let jwt = mint_jwt(&self.key, &claims);
        let now = Instant::now();
        let mut jwts = lock(&self.jwts);
        jwts.retain(|_, g| g.until > now);
        jwts.insert(
            jwt.clone(),
            JwtGrant {
                token: token.to_owned(),
                until: now + lifetime,
            },
        );
        response("JwtResponse", json!({"jwt": jwt, "exp": exp}), tracing)
    }

    /// One history REST request: the status and JSON body.
    pub(super) fn history_page(&self, authorization: Option<&str>, query: &str) -> (u16, Value) {
        self.history_requests.fetch_add(1, Ordering::SeqCst);
        let unauthorized = || {
            (
                401,
                api_error(401, "bad.credentials", "Invalid login credentials."),
            )
        };
        let jwt = authorization
            .and_then(|a| a.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, jwt)| jwt.trim());
        let Some(jwt) = jwt else {
            return unauthorized();
        };
        let grant = lock(&self.jwts).get(jwt).cloned();
        let Some(grant) = grant.filter(|g| Instant::now() < g.until) else {
            return unauthorized();
        };
        let (size, number) = match page_params(query) {
            Ok(p) => p,
            Err(why) => return (400, api_error(400, "bad.request", why)),
        };
        let sessions = lock(&self.sessions);
        let Some(session) = sessions.get(&grant.token).filter(|s| !s.is_gone()) else {
            return unauthorized();
        };
        let total = session.history.len();
        let entities: Vec<Value> = session
            .history
            .iter()
            .rev()
            .skip(size.saturating_mul(number - 1))
            .take(size)
            .cloned()
            .collect();
        let body = json!({
            "entities": entities,
            "pageSize": size,
            "pageNumber": number,
            "total": total,
            "pageCount": total.div_ceil(size),
        });
        (200, body)
    }
}

/// `pageSize` and `pageNumber` from a query string, with their defaults and bounds.
fn page_params(query: &str) -> Result<(usize, usize), &'static str> {
    let mut size = DEFAULT_PAGE_SIZE;
    let mut number = 1;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "pageSize" => {
                size = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                    .ok_or("pageSize must be an integer from 1 to 100")?;
            }
            "pageNumber" => {
                number = v
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or("pageNumber must be an integer of at least 1")?;
            }
            _ => {}
        }
    }
    Ok((size, number))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_params_defaults_and_bounds() {
        assert_eq!(page_params(""), Ok((25, 1)));
        assert_eq!(page_params("pageSize=100&pageNumber=3"), Ok((100, 3)));
        assert!(page_params("pageSize=0").is_err());
        assert!(page_params("pageSize=101").is_err());
        assert!(page_params("pageSize=x").is_err());
        assert!(page_params("pageNumber=0").is_err());
        assert!(page_params("pageNumber=-1").is_err());
    }
}
