//! Authenticated web messaging: the token endpoints on the fake's listener and the checks the
//! socket makes with their JWTs.
//!
//! - `POST /api/v2/webdeployments/token/oauthcodegrantjwtexchange` (no auth header), JSON
//!   `{"deploymentId","oauth":{"code","redirectUri","codeVerifier"?,"nonce"?}}`: trades an
//!   authorization code of the stand-in identity provider (`idp`) for `{"jwt","refreshToken"}`.
//!   400 for a deployment that is unknown or has auth off, a code that is unknown, used or
//!   expired, a `redirectUri` other than the code's, a PKCE mismatch (S256 of `codeVerifier`
//!   must equal the code's challenge; a verifier for a code issued without a challenge is
//!   refused too), or a `nonce` other than the one the code was issued with (a code issued
//!   without a nonce ignores it). A code is used up by any exchange that names it, failed or
//!   not, once the deployment has been checked.
//! - `POST /api/v2/webdeployments/token/refresh`, JSON `{"refreshToken","deploymentId"?}`
//!   (Genesys's mobile SDK sends no deploymentId, so it is optional; when present it must be
//!   the token's): a fresh `{"jwt"}`. 401 for a refresh token that is unknown, revoked,
//!   expired or another deployment's; 400 for a malformed request or an unknown deployment.
//! - `DELETE /api/v2/webdeployments/token/revoke` with `Authorization: Bearer <jwt>`: 204. The
//!   customer's refresh tokens are revoked, all their JWTs stop working, and every socket of
//!   their sessions gets `LogoutEvent`. 401 for a JWT that is missing, unknown or expired.
//!
//! Each endpoint takes `auth_rate_per_minute` requests in any sliding minute (the whole fake,
//! not per caller); more get 429 with `Retry-After` (seconds until a slot frees). Refusals are
//! Genesys platform error bodies (`{"message","code","status",...}`); none repeats a code,
//! JWT or refresh token. Success answers carry `Cache-Control: no-store`.
//!
//! The JWT is opaque to clients but JWT-shaped: `header.payload.signature`, base64url, with
//! `sub` (the customer: stable per deployment and identity-provider subject, and not the
//! subject itself) and `exp` (Unix seconds) in the payload. Its lifetime is
//! `auth_jwt_lifetime`; a refresh token's is `refresh_token_lifetime`, counted from the
//! exchange (refreshing does not extend it).
//!
//! On the socket, `configureAuthenticatedSession` with `data.code` = the JWT answers like
//! `configureSession`, or: 403 "Authenticated sessions are not enabled for this deployment";
//! 401 "Session authentication failed: the JWT has expired" (refresh, then configure again);
//! 403 "Session authentication failed: the JWT is not valid" (unknown, revoked, forged or
//! another deployment's: sign in again). Once a session is authenticated, every other request
//! on a socket whose JWT has expired or was revoked gets 403 [`TRY_AGAIN`] until that socket
//! configures again with a fresh JWT. The session-level rules (upgrade, downgrade 4017, another
//! customer's session) live in `protocol`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::frames::{self, error, event};
use super::history::{api_error, mint_jwt, sign};
use super::http::{PlainRequest, Reply};
use super::protocol::{State, epoch_after};
use crate::mock::support::lock;

/// The code-for-JWT exchange.
pub(super) const EXCHANGE_PATH: &str = "/api/v2/webdeployments/token/oauthcodegrantjwtexchange";
/// The JWT refresh.
pub(super) const REFRESH_PATH: &str = "/api/v2/webdeployments/token/refresh";
/// The sign-out.
pub(super) const REVOKE_PATH: &str = "/api/v2/webdeployments/token/revoke";

/// Largest JSON body the token endpoints read; longer ones get 413.
pub(super) const MAX_JSON_BODY: usize = 64 * 1024;

/// The body of the 403 a request gets on an authenticated session once its socket's JWT has
/// expired or was revoked.
pub const TRY_AGAIN: &str = "Try to authenticate again";

/// How long an expired JWT is remembered, so that using it says "expired" rather than "not
/// valid".
const EXPIRED_JWT_MEMORY: Duration = Duration::from_secs(3600);

/// The rate limit's window.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// One of the three token endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    Exchange,
    Refresh,
    Revoke,
}

impl Endpoint {
    /// The endpoint at `path`, if any.
    pub(super) fn at(path: &str) -> Option<Self> {
        match path {
            EXCHANGE_PATH => Some(Endpoint::Exchange),
            REFRESH_PATH => Some(Endpoint::Refresh),
            REVOKE_PATH => Some(Endpoint::Revoke),
            _ => None,
        }
    }

    /// The method it answers.
    pub(super) fn method(self) -> &'static str {
        match self {
            Endpoint::Exchange | Endpoint::Refresh => "POST",
            Endpoint::Revoke => "DELETE",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An authorization code the identity provider issued and nobody has exchanged yet.
#[derive(Debug)]
pub(super) struct AuthCode {
    pub(super) subject: String,
    pub(super) redirect_uri: String,
    /// The S256 PKCE challenge, if the sign-in had one.
    pub(super) challenge: Option<String>,
    pub(super) nonce: Option<String>,
    pub(super) until: Instant,
}

/// A refresh token's grant.
#[derive(Debug)]
struct RefreshGrant {
    deployment_id: String,
    customer: String,
    until: Instant,
    revoked: bool,
}

/// An issued authenticated-session JWT.
#[derive(Debug, Clone)]
struct AuthJwt {
    deployment_id: String,
    customer: String,
    until: Instant,
}

/// What a JWT given to `configureAuthenticatedSession` turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum JwtCheck {
    /// Good for this deployment: the customer it belongs to.
    Valid(String),
    /// Issued for this deployment, but past its lifetime.
    Expired,
    /// Never issued, revoked, or another deployment's.
    Invalid,
}

/// The authenticated-messaging state of a fake: codes, refresh tokens, JWTs, the endpoints'
/// rate windows and counters.
#[derive(Debug, Default)]
pub(super) struct AuthState {
    pub(super) codes: Mutex<HashMap<String, AuthCode>>,
    refresh_tokens: Mutex<HashMap<String, RefreshGrant>>,
    jwts: Mutex<HashMap<String, AuthJwt>>,
    /// Admitted requests of the last minute, per endpoint.
    recent: Mutex<[VecDeque<Instant>; 3]>,
    /// Requests received, per endpoint, whatever the answer.
    requests: [AtomicUsize; 3],
    /// Refresh tokens revoked so far.
    pub(super) revoked: AtomicUsize,
    /// Redirect URIs registered through the handle after start, besides the config's.
    pub(super) redirect_uris: Mutex<Vec<String>>,
}

impl AuthState {
    /// Every JWT and refresh token issued so far (for leak checks).
    pub(super) fn issued_secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = lock(&self.jwts).keys().cloned().collect();
        out.extend(lock(&self.refresh_tokens).keys().cloned());
        out
    }
}

impl AuthState {
    /// Requests an endpoint received, whatever the answer.
    pub(super) fn requests(&self, e: Endpoint) -> usize {
        self.requests[e.index()].load(Ordering::SeqCst)
    }

    /// Admits one request to `e` under a limit of `per_minute`, or says how many seconds until
    /// one would be admitted.
    fn admit(&self, e: Endpoint, per_minute: u32) -> Result<(), u64> {
        if per_minute == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut recent = lock(&self.recent);
        let window = &mut recent[e.index()];
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW)
        {
            window.pop_front();
        }
        if window.len() >= per_minute as usize {
            let oldest = *window.front().expect("a full window is not empty");
            let wait = RATE_WINDOW.saturating_sub(now.duration_since(oldest));
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(secs.max(1));
        }
        window.push_back(now);
        Ok(())
    }

    /// What `jwt` is worth on a socket of `deployment_id`.
    pub(super) fn check_jwt(&self, jwt: &str, deployment_id: &str) -> JwtCheck {
        match lock(&self.jwts).get(jwt) {
            Some(g) if g.deployment_id == deployment_id => {
                if Instant::now() < g.until {
                    JwtCheck::Valid(g.customer.clone())
                } else {
                    JwtCheck::Expired
                }
            }
            _ => JwtCheck::Invalid,
        }
    }

    /// Whether a socket configured with `jwt` may still act for `customer`.
    pub(super) fn still_valid(&self, jwt: Option<&str>, customer: &str) -> bool {
        let Some(jwt) = jwt else {
            return false;
        };
        lock(&self.jwts)
            .get(jwt)
            .is_some_and(|g| g.customer == customer && Instant::now() < g.until)
    }
}

/// A fresh random credential: 32 bytes, base64url.
pub(super) fn random_credential() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The PKCE S256 challenge of a verifier: base64url(SHA-256(verifier)), no padding.
pub(super) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether a PKCE code verifier is well formed (RFC 7636: 43 to 128 unreserved characters).
fn verifier_ok(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Whether a PKCE S256 challenge is well formed: a SHA-256 digest in base64url, no padding.
pub(super) fn challenge_ok(c: &str) -> bool {
    c.len() == 43 && URL_SAFE_NO_PAD.decode(c).is_ok_and(|d| d.len() == 32)
}

fn bad_request(message: &str) -> Reply {
    Reply::json(400, &api_error(400, "bad.request", message))
}

fn unauthorized(message: &str) -> Reply {
    Reply::json(401, &api_error(401, "bad.credentials", message))
}

/// A token endpoint's success: JSON, never cached.
fn issued(status: u16, body: &Value) -> Reply {
    Reply::json(status, body)
        .header("cache-control", "no-store".into())
        .header("pragma", "no-cache".into())
}

/// The JSON object of a token request, or the refusal.
fn json_body(
    req: &PlainRequest,
    body: Result<Vec<u8>, Reply>,
) -> Result<Map<String, Value>, Reply> {
    let media = req
        .header("content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media != "application/json" {
        let e = api_error(
            415,
            "unsupported.media.type",
            "Content-Type must be application/json",
        );
        return Err(Reply::json(415, &e));
    }
    match serde_json::from_slice::<Value>(&body?) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(bad_request("The request body is not a JSON object")),
    }
}

/// An optional string field: `Ok(None)` when absent or null, an error when not a string.
fn opt_str<'a>(m: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, Reply> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(bad_request(&format!("{name} must be a string"))),
    }
}

/// A required, non-empty string field.
fn req_str<'a>(m: &'a Map<String, Value>, name: &str, path: &str) -> Result<&'a str, Reply> {
    match opt_str(m, name)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(bad_request(&format!("Missing required field: {path}"))),
    }
}

impl State {
    /// One request to a token endpoint (`body` is what the listener could read of it, or the
    /// answer to a body it could not). Counted, rate limited, then answered.
    pub(super) fn auth_rest(
        &self,
        e: Endpoint,
        req: &PlainRequest,
        body: Result<Vec<u8>, Reply>,
    ) -> Reply {
        self.auth.requests[e.index()].fetch_add(1, Ordering::SeqCst);
        if let Err(secs) = self.auth.admit(e, self.config.auth_rate_per_minute) {
            let message =
                format!("Rate limit exceeded the maximum. Retry the request in [{secs}] seconds");
            return Reply::json(429, &api_error(429, "too.many.requests", &message))
                .header("retry-after", secs.to_string());
        }
        let answer = match e {
            Endpoint::Exchange => json_body(req, body).and_then(|b| self.exchange(&b)),
            Endpoint::Refresh => json_body(req, body).and_then(|b| self.refresh(&b)),
            Endpoint::Revoke => self.revoke(req.header("authorization")),
        };
        answer.unwrap_or_else(|refusal| refusal)
    }

    /// Refuses a deployment that is unknown or has authenticated messaging off.
    fn auth_deployment(&self, id: &str) -> Result<(), Reply> {
        if !self.config.deployment_ids.iter().any(|d| d == id) {
            return Err(bad_request("The deployment does not exist"));
        }
        if !self.deployment(id).auth_enabled {
            return Err(bad_request(
                "Authenticated messaging is not enabled for this deployment",
            ));
        }
        Ok(())
    }

    /// The customer id of an identity-provider subject in a deployment: stable and opaque.
    fn customer_id(&self, deployment_id: &str, subject: &str) -> String {
        let mac = sign(&self.key, &format!("customer\n{deployment_id}\n{subject}"));
        format!("customer-{}", &mac[..22])
    }

    /// Mints and records a JWT for a customer.
    fn issue_auth_jwt(&self, deployment_id: &str, customer: &str) -> String {
        let lifetime = self.config.auth_jwt_lifetime;
        let claims = json!({
            "iss": "fake-genesys",
            "sub": customer,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": frames::epoch_now(),
            "exp": epoch_after(lifetime),
        });
        let jwt = mint_jwt(&self.key, &claims);
        let now = Instant::now();
        let mut jwts = lock(&self.auth.jwts);
        jwts.retain(|_, g| g.until + EXPIRED_JWT_MEMORY > now);
        jwts.insert(
            jwt.clone(),
            AuthJwt {
                deployment_id: deployment_id.to_owned(),
                customer: customer.to_owned(),
                until: now + lifetime,
            },
        );
        jwt
    }

    /// The code exchange.
    fn exchange(&self, body: &Map<String, Value>) -> Result<Reply, Reply> {
        let deployment_id = req_str(body, "deploymentId", "deploymentId")?;
        self.auth_deployment(deployment_id)?;
        let Some(oauth) = body.get("oauth").and_then(Value::as_object) else {
            return Err(bad_request("Missing required field: oauth"));
        };
        let code = req_str(oauth, "code", "oauth.code")?;
        let redirect_uri = req_str(oauth, "redirectUri", "oauth.redirectUri")?;
        let verifier = opt_str(oauth, "codeVerifier")?;
        let nonce = opt_str(oauth, "nonce")?;
        let grant = lock(&self.auth.codes).remove(code);
        let Some(grant) = grant else {
            return Err(bad_request("The authorization code is not valid"));
        };
        if Instant::now() >= grant.until {
            return Err(bad_request("The authorization code has expired"));
        }
        if grant.redirect_uri != redirect_uri {
            return Err(bad_request(
                "redirectUri does not match the authorization request",
            ));
        }
        match (&grant.challenge, verifier) {
            (Some(challenge), Some(v)) if verifier_ok(v) && s256(v) == *challenge => {}
            (Some(_), Some(_)) => {
                return Err(bad_request(
                    "codeVerifier does not match the code challenge",
                ));
            }
            (Some(_), None) => {
                return Err(bad_request(
                    "Missing required field: oauth.codeVerifier (the authorization request had a code challenge)",
                ));
            }
            (None, Some(_)) => {
                return Err(bad_request(
                    "codeVerifier given, but the authorization request had no code challenge",
                ));
            }
            (None, None) => {}
        }
        if grant.nonce.is_some() && grant.nonce.as_deref() != nonce {
            return Err(bad_request(
                "nonce does not match the authorization request",
            ));
        }
        let customer = self.customer_id(deployment_id, &grant.subject);
        let jwt = self.issue_auth_jwt(deployment_id, &customer);
        let refresh_token = random_credential();
        lock(&self.auth.refresh_tokens).insert(
            refresh_token.clone(),
            RefreshGrant {
                deployment_id: deployment_id.to_owned(),
                customer,
                until: Instant::now() + self.config.refresh_token_lifetime,
                revoked: false,
            },
        );
        Ok(issued(
            200,
            &json!({"jwt": jwt, "refreshToken": refresh_token}),
        ))
    }

    /// A JWT refresh.
    fn refresh(&self, body: &Map<String, Value>) -> Result<Reply, Reply> {
        let token = req_str(body, "refreshToken", "refreshToken")?;
        let deployment_id = opt_str(body, "deploymentId")?;
        if let Some(d) = deployment_id {
            self.auth_deployment(d)?;
        }
        let (deployment_id, customer) = {
            let grants = lock(&self.auth.refresh_tokens);
            let grant = grants.get(token).filter(|g| {
                !g.revoked
                    && Instant::now() < g.until
                    && deployment_id.is_none_or(|d| d == g.deployment_id)
            });
            let Some(g) = grant else {
                return Err(unauthorized(
                    "The refresh token is not valid, was revoked or has expired",
                ));
            };
            (g.deployment_id.clone(), g.customer.clone())
        };
        let jwt = self.issue_auth_jwt(&deployment_id, &customer);
        Ok(issued(200, &json!({"jwt": jwt})))
    }

    /// Sign-out with the customer's JWT.
    fn revoke(&self, authorization: Option<&str>) -> Result<Reply, Reply> {
        let jwt = authorization
            .and_then(|a| a.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, jwt)| jwt.trim());
        let refused = || unauthorized("Invalid login credentials.");
        let jwt = jwt.ok_or_else(refused)?;
        let customer = {
            let jwts = lock(&self.auth.jwts);
            let grant = jwts.get(jwt).filter(|g| Instant::now() < g.until);
            grant.ok_or_else(refused)?.customer.clone()
        };
        let mut newly_revoked = 0;
        for g in lock(&self.auth.refresh_tokens).values_mut() {
            if g.customer == customer && !g.revoked {
                g.revoked = true;
                newly_revoked += 1;
            }
        }
        self.auth.revoked.fetch_add(newly_revoked, Ordering::SeqCst);
        lock(&self.auth.jwts).retain(|_, g| g.customer != customer);
        let sessions = lock(&self.sessions);
        for s in sessions.values() {
            if s.customer.as_deref() == Some(customer.as_str()) {
                self.broadcast(s, event("LogoutEvent", json!({})));
            }
        }
        Ok(Reply::empty(204))
    }

    /// Checks `configureAuthenticatedSession`'s credentials for a socket of `deployment_id`:
    /// the customer and the JWT, or the error frame.
    pub(super) fn authenticate(
        &self,
        deployment_id: &str,
        req: &Map<String, Value>,
        tracing: Option<&Value>,
    ) -> Result<(String, String), Value> {
        if !self.deployment(deployment_id).auth_enabled {
            return Err(error(
                403,
                "Authenticated sessions are not enabled for this deployment",
                tracing,
            ));
        }
        let jwt = req
            .get("data")
            .and_then(|d| d.get("code"))
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty());
        let Some(jwt) = jwt else {
            return Err(error(400, "Missing required field: data.code", tracing));
        };
        match self.auth.check_jwt(jwt, deployment_id) {
            JwtCheck::Valid(customer) => Ok((customer, jwt.to_owned())),
            JwtCheck::Expired => Err(error(
                401,
                "Session authentication failed: the JWT has expired",
                tracing,
            )),
            JwtCheck::Invalid => Err(error(
                403,
                "Session authentication failed: the JWT is not valid",
                tracing,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            s256(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(verifier_ok(verifier));
        assert!(challenge_ok(&s256(verifier)));
        assert!(!verifier_ok("too-short"));
        assert!(!verifier_ok(&format!("{verifier}!")));
        assert!(!verifier_ok(&"a".repeat(129)));
        assert!(!challenge_ok("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c"));
        assert!(!challenge_ok("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"));
    }

    #[test]
    fn the_rate_window_admits_then_says_when() {
        let auth = AuthState::default();
        assert_eq!(auth.admit(Endpoint::Refresh, 2), Ok(()));
        assert_eq!(auth.admit(Endpoint::Refresh, 2), Ok(()));
        let wait = auth.admit(Endpoint::Refresh, 2).unwrap_err();
        assert!((59..=60).contains(&wait), "{wait}");
        assert_eq!(auth.admit(Endpoint::Exchange, 2), Ok(()), "per endpoint");
        for _ in 0..100 {
            assert_eq!(auth.admit(Endpoint::Revoke, 0), Ok(()), "0 is no limit");
        }
    }
}
