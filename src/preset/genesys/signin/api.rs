//! Genesys's token endpoints for signed-in customers: exchange an identity provider's
//! authorization code for a Genesys JWT and refresh token, refresh the JWT, revoke on sign-out.
//! None of them takes an OAuth client; the refresh token is the long-lived credential and
//! stays in guestgate (and, sealed, in the resume ticket).

use std::time::Duration;

use base64::Engine;
use http::{HeaderValue, header};
use serde::Deserialize;
use serde_json::json;
use url::Url;

pub use crate::auth::sign_in_code::SignInCode;
use crate::secret::Secret;

/// Largest token response read.
const MAX_BODY: usize = 64 << 10;

/// A Genesys JWT lives at most this long; used when its `exp` cannot be read.
pub const JWT_LIFETIME_AT_MOST: Duration = Duration::from_secs(15 * 60);

/// Why a token call failed (never holds a credential).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The endpoint refused the code or token (4xx other than 429): sign in again.
    #[error("Genesys refused the sign-in credential")]
    Rejected,
    /// The endpoint is rate limiting (429).
    #[error("Genesys rate limited the token endpoint")]
    RateLimited,
    /// Unreachable, timed out, 5xx, or an unreadable answer.
    #[error("Genesys token endpoint unavailable")]
    Unavailable,
}

impl TokenError {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenError::Rejected => "rejected",
            TokenError::RateLimited => "rate_limited",
            TokenError::Unavailable => "unavailable",
        }
    }
}

/// A signed-in customer's credentials.
#[derive(Clone)]
pub struct Tokens {
    /// The Genesys JWT (configures the session; at most 15 minutes).
    pub jwt: Secret,
    /// When the JWT expires, seconds since the Unix epoch.
    pub exp: u64,
    /// The refresh token (24 hours to 90 days).
    pub refresh_token: Secret,
}

/// The token endpoints of one deployment.
pub struct TokenApi {
    base: Url,
    deployment_id: String,
    redirect_uri: String,
    origin: HeaderValue,
    client: reqwest::Client,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExchangeReply {
    jwt: String,
    refresh_token: String,
}

#[derive(Deserialize)]
struct RefreshReply {
    jwt: String,
}

impl TokenApi {
    /// The endpoints under `base` (`https://api.{domain}`).
    pub fn new(
        base: Url,
        deployment_id: String,
        redirect_uri: String,
        origin: HeaderValue,
        client: reqwest::Client,
    ) -> Self {
        Self {
            base,
            deployment_id,
            redirect_uri,
            origin,
            client,
        }
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(path);
        url
    }

    /// `POST /api/v2/webdeployments/token/oauthcodegrantjwtexchange`.
    pub async fn exchange(&self, code: &SignInCode, now_unix: u64) -> Result<Tokens, TokenError> {
        let mut oauth = json!({
            "code": code.code.expose(),
            "redirectUri": self.redirect_uri,
        });
        if let Some(v) = &code.code_verifier {
            oauth["codeVerifier"] = v.expose().into();
        }
        if let Some(n) = &code.nonce {
            oauth["nonce"] = n.as_str().into();
        }
        let body = json!({ "deploymentId": self.deployment_id, "oauth": oauth });
        let url = self.url("/api/v2/webdeployments/token/oauthcodegrantjwtexchange");
        let reply: ExchangeReply = self.post(url, &body).await?;
        Ok(Tokens {
            exp: jwt_exp(&reply.jwt, now_unix),
            jwt: Secret::new(reply.jwt),
            refresh_token: Secret::new(reply.refresh_token),
        })
    }

    /// `POST /api/v2/webdeployments/token/refresh`: a new JWT for the refresh token.
    pub async fn refresh(
        &self,
        refresh_token: &Secret,
        now_unix: u64,
    ) -> Result<Tokens, TokenError> {
        let body = json!({
            "refreshToken": refresh_token.expose(),
            "deploymentId": self.deployment_id,
        });
        let url = self.url("/api/v2/webdeployments/token/refresh");
        let reply: RefreshReply = self.post(url, &body).await?;
        Ok(Tokens {
            exp: jwt_exp(&reply.jwt, now_unix),
            jwt: Secret::new(reply.jwt),
            refresh_token: refresh_token.clone(),
        })
    }

    /// `DELETE /api/v2/webdeployments/token/revoke` with the JWT: signs the customer out.
    pub async fn revoke(&self, jwt: &Secret) -> Result<(), TokenError> {
        let url = self.url("/api/v2/webdeployments/token/revoke");
        let response = self
            .client
            .delete(url)
            .bearer_auth(jwt.expose())
            .header(header::ORIGIN, self.origin.clone())
            .send()
            .await
            .map_err(|_| TokenError::Unavailable)?;
        status(response.status().as_u16()).map(|_| ())
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        url: Url,
        body: &serde_json::Value,
    ) -> Result<T, TokenError> {
        let mut response = self
            .client
            .post(url)
            .json(body)
            .header(header::ORIGIN, self.origin.clone())
            .send()
            .await
            .map_err(|_| TokenError::Unavailable)?;
        status(response.status().as_u16())?;
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| TokenError::Unavailable)?
        {
            if bytes.len() + chunk.len() > MAX_BODY {
                return Err(TokenError::Unavailable);
            }
            bytes.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Unavailable)
    }
}

fn status(code: u16) -> Result<u16, TokenError> {
    match code {
        200..=299 => Ok(code),
        429 => Err(TokenError::RateLimited),
        400..=499 => Err(TokenError::Rejected),
        _ => Err(TokenError::Unavailable),
    }
}

/// The `exp` claim of a JWT (read, not verified: Genesys checks it), capped at
/// [`JWT_LIFETIME_AT_MOST`] from now; that cap when it cannot be read.
pub fn jwt_exp(jwt: &str, now_unix: u64) -> u64 {
    let cap = now_unix + JWT_LIFETIME_AT_MOST.as_secs();
    let claims = jwt.split('.').nth(1).and_then(|p| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p.trim_end_matches('='))
            .ok()
    });
    #[derive(Deserialize)]
    struct Claims {
        exp: u64,
    }
    claims
        .and_then(|c| serde_json::from_slice::<Claims>(&c).ok())
        .map_or(cap, |c| c.exp.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_read_from_the_claims_and_capped() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"exp":1000300}"#);
        let jwt = format!("h.{claims}.s");
        assert_eq!(jwt_exp(&jwt, 1_000_000), 1_000_300);
        let far = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"exp":9999999999}"#);
        assert_eq!(jwt_exp(&format!("h.{far}.s"), 1_000_000), 1_000_900);
        assert_eq!(jwt_exp("opaque", 1_000_000), 1_000_900);
    }

    #[test]
    fn statuses_map_to_what_the_page_is_told() {
        assert_eq!(status(204), Ok(204));
        assert_eq!(status(400), Err(TokenError::Rejected));
        assert_eq!(status(401), Err(TokenError::Rejected));
        assert_eq!(status(429), Err(TokenError::RateLimited));
        assert_eq!(status(503), Err(TokenError::Unavailable));
    }
}
