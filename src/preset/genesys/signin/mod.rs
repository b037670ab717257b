//! Signed-in customers (Genesys authenticated web messaging) with the refresh token held
//! server-side. The page signs in with its identity provider as it already does and hands
//! guestgate only the authorization code (with the PKCE verifier or nonce it used), once: in its
//! first frame (`/ws?signin=first-frame`, then `{"type":"guestgate","action":"signIn",
//! "code":..}`) or later on the open socket (`{"action":"guestgate.signIn",...}`, which upgrades
//! a guest conversation where the deployment allows it). guestgate exchanges the code, opens the
//! session with `configureAuthenticatedSession`, refreshes the JWT before it expires, and seals
//! the refresh token into the resume ticket so any replica with the key continues the signed-in
//! session. Neither the JWT nor the refresh token ever reaches the page.

pub mod api;

use serde::{Deserialize, Serialize};
use serde_json::json;

pub use api::{SignInCode, TokenApi, TokenError, Tokens};

use crate::auth::resume::ResumeTicket;
use crate::close_code;
use crate::preset::SetupContext;
use crate::setup::SetupError;

/// `[routes.genesys.auth]`: authenticated web messaging for the route.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GenesysAuthConfig {
    /// The redirect URI the page's identity provider sends the code to (the exchange must
    /// name the same one).
    pub redirect_uri: String,
    /// Whether guests may also chat without signing in.
    #[serde(default = "yes")]
    pub allow_anonymous: bool,
    /// Whether a guest conversation may be upgraded to signed-in (the deployment must allow
    /// it too: `auth.allowSessionUpgrade`).
    #[serde(default)]
    pub allow_upgrade: bool,
}

fn yes() -> bool {
    true
}

impl GenesysAuthConfig {
    /// Checks the settings; errors name the key below `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<(), (String, String)> {
        match url::Url::parse(&self.redirect_uri) {
            Ok(u) if matches!(u.scheme(), "https" | "http") => Ok(()),
            _ => Err((
                format!("{prefix}.redirect_uri"),
                "must be an https:// URL (the identity provider's redirect URI)".into(),
            )),
        }
    }
}

/// `configureAuthenticatedSession` for `token` with the Genesys JWT (which Genesys calls
/// `data.code`).
pub fn configure_authenticated(deployment_id: &str, token: &str, jwt: &str) -> String {
    json!({
        "action": "configureAuthenticatedSession",
        "deploymentId": deployment_id,
        "token": token,
        "startNew": false,
        "data": { "code": jwt },
    })
    .to_string()
}

/// Whether an upstream error frame asks to authenticate again (a 401, or Genesys's 403 whose
/// text starts "Session authentication failed" / "Try to authenticate again").
pub fn asks_to_reauthenticate(code: i64, text: &str) -> bool {
    code == 401
        || (code == 403
            && (text.starts_with("Session authentication failed")
                || text.starts_with("Try to authenticate again")))
}

/// The signed-in customer's credentials for a connection's set-up: from the page's sign-in
/// code, or from the refresh token a resumed ticket carries; `None` for a guest. Refusals the
/// page caused (sign-in off, code rejected, refresh token expired or revoked, sign-in required)
/// are [`SetupError::Browser`] with the documented close code.
pub async fn credentials(
    auth: Option<&GenesysAuthConfig>,
    api: Option<&TokenApi>,
    ctx: &SetupContext<'_>,
    resumed: Option<&ResumeTicket>,
    now_unix: u64,
) -> Result<Option<Tokens>, SetupError> {
    let (Some(auth), Some(api)) = (auth, api) else {
        return match ctx.browser.sign_in {
            Some(_) => Err(SetupError::Browser(close_code::SIGN_IN_DISABLED)),
            None => Ok(None),
        };
    };
    let genesys = &ctx.metrics.genesys;
    if let Some(code) = &ctx.browser.sign_in {
        if resumed.is_some_and(|t| t.refresh_token.is_none()) && !auth.allow_upgrade {
            return Err(SetupError::Browser(close_code::SIGN_IN_UPGRADE_REFUSED));
        }
        let result = api.exchange(code, now_unix).await;
        genesys.auth(ctx.route, "exchange", outcome(&result));
        return match result {
            Ok(tokens) => Ok(Some(tokens)),
            Err(TokenError::Rejected) => Err(SetupError::Browser(close_code::SIGN_IN_REJECTED)),
            Err(e) => Err(SetupError::Token(e)),
        };
    }
    if let Some(refresh) = resumed.and_then(|t| t.refresh_token.as_ref()) {
        let result = api.refresh(refresh, now_unix).await;
        genesys.auth(ctx.route, "refresh", outcome(&result));
        return match result {
            Ok(tokens) => Ok(Some(tokens)),
            Err(TokenError::Rejected) => Err(SetupError::Browser(close_code::SIGN_IN_EXPIRED)),
            Err(e) => Err(SetupError::Token(e)),
        };
    }
    if !auth.allow_anonymous {
        return Err(SetupError::Browser(close_code::SIGN_IN_REQUIRED));
    }
    Ok(None)
}

/// The metric outcome of a token call.
pub fn outcome<T>(result: &Result<T, TokenError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.as_str(),
    }
}
