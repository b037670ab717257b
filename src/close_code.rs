//! The close codes guestgate itself sends, in one table, so documentation, the relay, the auth
//! flow and the demo page agree on what each one means.
//!
//! Standard codes are used where their RFC 6455 meaning fits; the 4000-4999 private range
//! carries guestgate's own, grouped like HTTP statuses (`44xx`: the upstream refused or the
//! browser was refused, `45xx`: the upstream failed). 1005, 1006 and 1015 are never sent (they
//! are reserved for reporting), nor is 1014 (tungstenite peers reject it).

/// A close code and the short reason text guestgate puts next to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCode {
    /// The numeric code in the close frame.
    pub code: u16,
    /// A short, secret-free reason (at most 123 bytes, the close frame limit).
    pub reason: &'static str,
}

impl CloseCode {
    const fn new(code: u16, reason: &'static str) -> Self {
        Self { code, reason }
    }

    /// The close code class used as a metric label: `1xxx` codes by name, private codes by
    /// their guestgate group.
    pub fn class(code: u16) -> &'static str {
        match code {
            1000 => "normal",
            1001 => "going_away",
            1002 | 1003 | 1007 => "protocol",
            1008 => "policy",
            1009 => "too_big",
            1011 => "internal",
            1012 | 1013 => "retry",
            3000..=3999 => "registered",
            4400..=4499 => "gg_refused",
            4500..=4599 => "gg_upstream_failed",
            4000..=4999 => "private",
            _ => "other",
        }
    }
}

/// The browser or upstream closed normally; relayed as is.
pub const NORMAL: CloseCode = CloseCode::new(1000, "normal closure");
/// guestgate is shutting down (drain) or the other leg went away.
pub const GOING_AWAY: CloseCode = CloseCode::new(1001, "guestgate is shutting down");
/// Sent to the upstream when the browser disappeared without a close frame.
pub const BROWSER_GONE: CloseCode = CloseCode::new(1001, "browser went away");
/// Sent to a leg that stayed silent past the idle timeout when it is the upstream.
pub const IDLE_GOING_AWAY: CloseCode = CloseCode::new(1001, "idle timeout");
/// Sent to the upstream when the browser broke the protocol or a limit.
pub const BROWSER_MISBEHAVED: CloseCode = CloseCode::new(1001, "browser connection failed");
/// The peer sent a frame that breaks RFC 6455 (sent to the offender).
pub const PROTOCOL_ERROR: CloseCode = CloseCode::new(1002, "protocol error");
/// A browser message the route does not allow (policy).
pub const POLICY_VIOLATION: CloseCode = CloseCode::new(1008, "message not allowed");
/// A frame or message over the configured limit (sent to the offender).
pub const TOO_BIG: CloseCode = CloseCode::new(1009, "message too big");
/// Something inside guestgate failed.
pub const INTERNAL: CloseCode = CloseCode::new(1011, "guestgate internal error");
/// The browser leg stayed silent past the idle timeout.
pub const BROWSER_IDLE: CloseCode = CloseCode::new(4408, "idle timeout");
/// The browser sent messages (pings and pongs included) faster than the route's
/// `browser_messages_per_second` / `browser_message_burst` allow. The page should slow down
/// before reconnecting.
pub const MESSAGE_RATE_LIMITED: CloseCode = CloseCode::new(4420, "message rate too high");
/// The browser started a fragmented message and did not finish it within the route's
/// `message_timeout`.
pub const MESSAGE_TIMEOUT: CloseCode = CloseCode::new(4408, "message not completed in time");
/// The upstream refused the WebSocket upgrade with 401 or 403 (for Genesys: a wrong
/// deploymentId or an Origin outside the deployment's allowed domains).
pub const UPSTREAM_REFUSED: CloseCode = CloseCode::new(
    4403,
    "upstream rejected the connection (check deploymentId and Origin)",
);
/// The upstream (or the token endpoint) rejected guestgate's credentials: a configuration
/// problem on the operator's side, not worth retrying quickly.
pub const UPSTREAM_AUTH_FAILED: CloseCode = CloseCode::new(4401, "upstream authentication failed");
/// The upstream is rate limiting this session or guestgate's client.
pub const UPSTREAM_RATE_LIMITED: CloseCode = CloseCode::new(4429, "upstream rate limited");
/// The upstream sent something guestgate cannot relay (protocol error, bad reply).
pub const UPSTREAM_BAD: CloseCode = CloseCode::new(4502, "upstream sent an invalid response");
/// The page announced its resume ticket in the first frame (`?resume=first-frame`) and sent
/// something else, nothing in time, or too much.
pub const RESUME_FRAME_EXPECTED: CloseCode =
    CloseCode::new(1008, "expected the resume frame first");
/// The upstream's handshake did not select the subprotocol agreed with the browser.
pub const UPSTREAM_SUBPROTOCOL: CloseCode =
    CloseCode::new(4502, "upstream did not agree to the subprotocol");
/// The browser offered only subprotocols the route does not accept (no upstream work done).
pub const NO_COMMON_SUBPROTOCOL: CloseCode =
    CloseCode::new(4406, "no subprotocol in common with this route");
/// The upstream could not be reached (connect, DNS, TLS) or answered the upgrade with an
/// unexpected status.
pub const UPSTREAM_UNAVAILABLE: CloseCode = CloseCode::new(4503, "upstream unavailable");
/// The upstream connection dropped without a close frame mid-session.
pub const UPSTREAM_LOST: CloseCode = CloseCode::new(4503, "upstream connection lost");
/// The upstream did not answer in time (connect, handshake, ready deadline, idle).
pub const UPSTREAM_TIMEOUT: CloseCode = CloseCode::new(4504, "upstream timed out");
/// The upstream refused the session set-up message (e.g. a Genesys error frame in reply to
/// `configureSession`).
pub const UPSTREAM_SESSION_REFUSED: CloseCode =
    CloseCode::new(4400, "upstream refused the session");

/// The upstream conversation session ended for good (Genesys: expired, cleared, not found):
/// the page drops its resume ticket; its next connection starts a new conversation.
pub const SESSION_ENDED: CloseCode = CloseCode::new(
    4410,
    "conversation ended; reconnect without the resume ticket",
);

/// Signed-in customers: the route requires signing in and the page did not.
pub const SIGN_IN_REQUIRED: CloseCode = CloseCode::new(4412, "sign-in required: sign in again");
/// Signed-in customers: Genesys refused the page's authorization code.
pub const SIGN_IN_REJECTED: CloseCode =
    CloseCode::new(4412, "sign-in code rejected: sign in again");
/// Signed-in customers: the refresh token expired or was revoked (also after three failed
/// re-authentications in a row).
pub const SIGN_IN_EXPIRED: CloseCode = CloseCode::new(4412, "sign-in expired: sign in again");
/// Signed-in customers: the page asked for a sign-in on a route without `[routes.genesys.auth]`.
pub const SIGN_IN_DISABLED: CloseCode =
    CloseCode::new(1008, "sign-in is not enabled on this route");
/// Signed-in customers: the page signed in with a guest conversation's ticket on a route that
/// does not upgrade guests (`allow_upgrade = false`); it may sign in without the ticket.
pub const SIGN_IN_UPGRADE_REFUSED: CloseCode =
    CloseCode::new(1008, "this route does not upgrade guest conversations");
/// Signed-in customers: the customer signed out (the refresh token is revoked; the ticket no
/// longer resumes the signed-in session).
pub const SIGNED_OUT: CloseCode = CloseCode::new(4411, "signed out");

/// Every code guestgate sends, for documentation and tests.
pub const ALL: &[CloseCode] = &[
    NORMAL,
    GOING_AWAY,
    BROWSER_GONE,
    BROWSER_MISBEHAVED,
    IDLE_GOING_AWAY,
    PROTOCOL_ERROR,
    POLICY_VIOLATION,
    RESUME_FRAME_EXPECTED,
    TOO_BIG,
    INTERNAL,
    BROWSER_IDLE,
    MESSAGE_RATE_LIMITED,
    MESSAGE_TIMEOUT,
    NO_COMMON_SUBPROTOCOL,
    SESSION_ENDED,
    SIGN_IN_REQUIRED,
    SIGN_IN_REJECTED,
    SIGN_IN_EXPIRED,
    SIGN_IN_DISABLED,
    SIGN_IN_UPGRADE_REFUSED,
    SIGNED_OUT,
    UPSTREAM_SESSION_REFUSED,
    UPSTREAM_AUTH_FAILED,
    UPSTREAM_REFUSED,
    UPSTREAM_RATE_LIMITED,
    UPSTREAM_BAD,
    UPSTREAM_SUBPROTOCOL,
    UPSTREAM_UNAVAILABLE,
    UPSTREAM_LOST,
    UPSTREAM_TIMEOUT,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_sends_reserved_codes_and_reasons_fit_a_close_frame() {
        for c in ALL {
            assert!(![1005, 1006, 1014, 1015].contains(&c.code), "{c:?}");
            assert!((1000..5000).contains(&c.code), "{c:?}");
            assert!(c.reason.len() <= 123, "{c:?}");
        }
    }
}
