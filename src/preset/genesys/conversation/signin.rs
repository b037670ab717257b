//! Signed-in customers inside a live conversation: the JWT is refreshed (and the session
//! re-configured with it) a minute before it expires, and again when Genesys asks to
//! authenticate again (at most [`MAX_REAUTH`] times in a row, then close 4412); the page may
//! sign in mid-conversation (`guestgate.signIn`, an upgrade where the route allows it) and sign
//! out (`guestgate.signOut`: the refresh token is revoked, the page gets `SignedOut` and close
//! 4411). The JWT and the refresh token never reach the page; a new ticket carries the refresh
//! token sealed.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::debug;

use super::{End, State, frames};
use crate::auth::resume::unix_now;
use crate::close_code;
use crate::preset::genesys::signin::{
    SignInCode, TokenApi, TokenError, Tokens, configure_authenticated, outcome,
};
use crate::secret::Secret;

/// Refresh the JWT this long before it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Re-authentications in a row (refresh and reconfigure) before the page is told to sign in
/// again; the official client tries 3 times too.
pub const MAX_REAUTH: u32 = 3;

/// Sign-ins (upgrades) a page may attempt on one connection: each costs Genesys a code
/// exchange, and those are rate limited per deployment.
pub const MAX_SIGN_INS: u32 = 3;

/// A failed refresh that may pass (rate limit, endpoint down) is retried after this long.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The route's sign-in settings and the connection's credentials, if signed in.
pub struct SignInState {
    /// The token endpoints.
    pub api: Arc<TokenApi>,
    /// Whether a guest conversation may become signed-in.
    pub allow_upgrade: bool,
    /// The signed-in customer's JWT and refresh token.
    pub tokens: Option<Tokens>,
}

/// A token call in flight.
pub(super) enum AuthCall {
    Refresh,
    Upgrade,
    SignOut,
}

/// Its answer.
pub(super) type AuthDone = (AuthCall, Result<Option<Tokens>, TokenError>);

pub(super) type AuthFuture = std::pin::Pin<Box<dyn Future<Output = AuthDone> + Send>>;

/// Sign-in bookkeeping of one conversation.
#[derive(Default)]
pub(super) struct AuthProgress {
    /// A token call in flight.
    pub call: Option<AuthFuture>,
    /// Reconfigures sent whose `SessionResponse` is guestgate's (not the page's).
    pub reconfigures: u32,
    /// Re-authentications in a row without a successful `SessionResponse`.
    pub failures: u32,
    /// When to try a refresh that failed transiently.
    pub retry_at: Option<Instant>,
    /// An upgrade's reconfigure is in flight: its `SessionResponse` brings a new ticket.
    pub upgrading: bool,
    /// When the current JWT is to be refreshed.
    pub refresh_at: Option<Instant>,
    /// Sign-ins (upgrades) attempted on this connection.
    pub sign_ins: u32,
}

/// When to refresh a JWT that expires at `exp`: [`REFRESH_MARGIN`] before, or a quarter of its
/// remaining life before when that is shorter (so a short-lived JWT is not refreshed in a
/// loop), and a second earlier still, since `exp` counts whole seconds.
pub(super) fn refresh_time(exp: u64, now_unix: u64) -> Instant {
    let left = Duration::from_secs(exp.saturating_sub(now_unix));
    let margin = REFRESH_MARGIN.min(left / 4) + Duration::from_secs(1);
    Instant::now() + left.saturating_sub(margin)
}

impl<P, U> State<'_, P, U>
where
    P: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    /// When the next refresh is due, if signed in and none is in flight.
    pub(super) fn refresh_due(&self) -> Option<Instant> {
        if self.auth.call.is_some() {
            return None;
        }
        self.auth.retry_at.or(self.auth.refresh_at)
    }

    /// Starts a refresh of the JWT.
    pub(super) fn start_refresh(&mut self) {
        self.auth.retry_at = None;
        self.auth.refresh_at = None;
        let Some(state) = &self.conv.sign_in else {
            return;
        };
        let Some(tokens) = &state.tokens else {
            return;
        };
        let api = state.api.clone();
        let refresh = tokens.refresh_token.clone();
        self.auth.call = Some(Box::pin(async move {
            let result = api.refresh(&refresh, unix_now()).await.map(Some);
            (AuthCall::Refresh, result)
        }));
    }

    /// Genesys asked to authenticate again: refresh and reconfigure, at most [`MAX_REAUTH`]
    /// times in a row. `Some` ends the conversation.
    pub(super) async fn on_reauth_request(&mut self) -> Option<End> {
        let signed_in = self
            .conv
            .sign_in
            .as_ref()
            .is_some_and(|s| s.tokens.is_some());
        if !signed_in {
            return None;
        }
        self.auth.failures += 1;
        if self.auth.failures > MAX_REAUTH {
            return Some(
                self.end_signed_in(close_code::SIGN_IN_EXPIRED, "sign_in_expired")
                    .await,
            );
        }
        if self.auth.call.is_none() {
            self.start_refresh();
        }
        None
    }

    /// `guestgate.signIn` on an open conversation (an upgrade) and `guestgate.signOut`.
    pub(super) async fn on_sign_request(
        &mut self,
        own: &str,
        request: &crate::preset::genesys::inject::Request<'_>,
        tracing_id: Option<&str>,
    ) -> Option<End> {
        let Some(state) = &self.conv.sign_in else {
            let text = "sign-in is not enabled on this route";
            return self.reply(&frames::error(403, text, tracing_id)).await;
        };
        if self.auth.call.is_some() {
            let text = "a sign-in request is already in flight";
            return self.reply(&frames::error(429, text, tracing_id)).await;
        }
        let api = state.api.clone();
        match (own, &state.tokens) {
            ("signOut", Some(tokens)) => {
                let jwt = tokens.jwt.clone();
                self.auth.call = Some(Box::pin(async move {
                    (AuthCall::SignOut, api.revoke(&jwt).await.map(|()| None))
                }));
                None
            }
            ("signOut", None) => {
                self.reply(&frames::error(409, "not signed in", tracing_id))
                    .await
            }
            ("signIn", Some(_)) => {
                self.reply(&frames::error(409, "already signed in", tracing_id))
                    .await
            }
            ("signIn", None) if !state.allow_upgrade => {
                let text = "this route does not upgrade guest conversations";
                self.reply(&frames::error(403, text, tracing_id)).await
            }
            (_, _) if self.auth.sign_ins >= MAX_SIGN_INS => {
                let text = "too many sign-in attempts on this connection";
                self.reply(&frames::error(429, text, tracing_id)).await
            }
            (_, _) => {
                self.auth.sign_ins += 1;
                let field = |name: &str| {
                    request
                        .field(name)
                        .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
                };
                let Some(code) = field("code").filter(|c| !c.is_empty()) else {
                    return self
                        .reply(&frames::error(400, "signIn needs a code", tracing_id))
                        .await;
                };
                let code = SignInCode {
                    code: Secret::new(code),
                    code_verifier: field("codeVerifier").map(Secret::new),
                    nonce: field("nonce"),
                };
                self.auth.call = Some(Box::pin(async move {
                    let result = api.exchange(&code, unix_now()).await.map(Some);
                    (AuthCall::Upgrade, result)
                }));
                None
            }
        }
    }

    /// A token call finished.
    pub(super) async fn on_auth_done(&mut self, done: AuthDone) -> Option<End> {
        let (call, result) = done;
        let route = self.ctx.route;
        let op = match call {
            AuthCall::Refresh => "refresh",
            AuthCall::Upgrade => "exchange",
            AuthCall::SignOut => "revoke",
        };
        self.ctx.metrics.genesys.auth(route, op, outcome(&result));
        match (call, result) {
            (AuthCall::Refresh | AuthCall::Upgrade, Ok(Some(tokens))) => {
                let configure = configure_authenticated(
                    &self.conv.deployment_id,
                    self.conv.token.expose(),
                    tokens.jwt.expose(),
                );
                self.auth.refresh_at = Some(refresh_time(tokens.exp, unix_now()));
                if let Some(state) = &mut self.conv.sign_in {
                    if state.tokens.is_none() {
                        self.auth.upgrading = true;
                    }
                    state.tokens = Some(tokens);
                }
                self.auth.reconfigures += 1;
                self.send_upstream(1, configure.as_bytes())
                    .await
                    .err()
                    .map(|_| End::UpstreamLost)
            }
            (AuthCall::Refresh, Err(TokenError::Rejected)) => Some(
                self.end_signed_in(close_code::SIGN_IN_EXPIRED, "sign_in_expired")
                    .await,
            ),
            (AuthCall::Refresh, Err(e)) => {
                debug!(route = %route, error = %e, "JWT refresh failed; retrying");
                self.auth.retry_at = Some(Instant::now() + RETRY_AFTER);
                None
            }
            (AuthCall::Upgrade, Err(e)) => {
                let text = match e {
                    TokenError::Rejected => "sign-in code rejected",
                    TokenError::RateLimited => "sign-in rate limited; try again shortly",
                    TokenError::Unavailable => "sign-in unavailable; try again shortly",
                };
                self.reply(&frames::error(401, text, None)).await
            }
            (AuthCall::SignOut, Ok(_)) => Some(
                self.end_signed_in(close_code::SIGNED_OUT, "signed_out")
                    .await,
            ),
            (AuthCall::SignOut, Err(_)) => {
                let text = "sign-out failed; try again";
                self.reply(&frames::error(503, text, None)).await
            }
            (_, Ok(None)) => None,
        }
    }

    /// The `SessionResponse` to a reconfigure guestgate sent (refresh or upgrade): not the
    /// page's, except that an upgrade gives the page a new `SessionReady` and ticket.
    pub(super) async fn on_reconfigured(&mut self, code: i64, response: &[u8]) -> Option<End> {
        self.auth.reconfigures -= 1;
        if code != 200 {
            return self.on_reauth_request().await;
        }
        self.auth.failures = 0;
        if !std::mem::take(&mut self.auth.upgrading) {
            return None;
        }
        let ready = self.ready_with_new_ticket(response);
        self.deliver(1, ready.as_bytes())
            .await
            .err()
            .map(|_| End::PageLost)
    }

    /// Ends a signed-in conversation: `SessionEnded` with `reason`, then `code` to the page.
    pub(super) async fn end_signed_in(&mut self, code: close_code::CloseCode, reason: &str) -> End {
        self.ctx.metrics.genesys.ended(self.ctx.route, reason);
        let _ = self
            .send_page(1, frames::session_ended(reason).as_bytes())
            .await;
        self.close_page(code).await;
        let normal = close_code::NORMAL;
        self.close(
            crate::ws::frame::Side::Upstream,
            Some(normal.code),
            normal.reason,
        )
        .await;
        End::Closed
    }
}
