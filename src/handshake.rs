//! The browser-side WebSocket upgrade: checking the request and agreeing on a subprotocol
//! (`http1` writes the 101). No extension is ever accepted, so permessage-deflate offers are
//! simply not answered.
//!
//! Subprotocols: a route lists the ones it accepts (`subprotocols`, in preference order).
//! guestgate answers a browser that offers some with the first listed one it offered, and
//! later asks the upstream for exactly that one. A browser whose offers have none in common
//! with the route still gets a 101 (choosing its own first offer, so the handshake completes
//! in every browser) and then, before any upstream work, close 4406 with a reason the page
//! can read; refusing at the HTTP level would show the page only an opaque failure.

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, header};
use http_body_util::Full;

/// Why an upgrade request was refused; becomes a plain HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeRefusal {
    /// Not a WebSocket upgrade at all.
    #[error("this path only accepts websocket upgrades")]
    NotWebSocket,
    /// An upgrade with a missing or wrong header.
    #[error("bad websocket upgrade request: {0}")]
    Malformed(&'static str),
}

impl UpgradeRefusal {
    /// The HTTP status to answer with.
    pub fn status(self) -> StatusCode {
        match self {
            UpgradeRefusal::NotWebSocket => StatusCode::UPGRADE_REQUIRED,
            UpgradeRefusal::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks the upgrade headers and returns the `Sec-WebSocket-Accept` value.
pub fn accept_key(method: &http::Method, headers: &HeaderMap) -> Result<String, UpgradeRefusal> {
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err(UpgradeRefusal::NotWebSocket);
    }
    if method != http::Method::GET {
        return Err(UpgradeRefusal::Malformed("method must be GET"));
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(UpgradeRefusal::Malformed("Connection must include Upgrade"));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(UpgradeRefusal::Malformed(
            "Sec-WebSocket-Version must be 13",
        ));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(UpgradeRefusal::Malformed("missing Sec-WebSocket-Key"))?;
    Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// The outcome of subprotocol negotiation with the browser.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Subprotocol {
    /// The browser offered none: none is used on either leg.
    #[default]
    NotOffered,
    /// Both agree on this one; the upstream is asked for it.
    Agreed(String),
    /// The browser offered only protocols the route does not accept; the first offer is echoed
    /// so the handshake completes, then the connection is closed with 4406.
    NoneInCommon {
        /// The browser's first offer.
        first_offer: String,
    },
}

impl Subprotocol {
    /// What the 101 response names in `Sec-WebSocket-Protocol`.
    pub fn answer(&self) -> Option<&str> {
        match self {
            Subprotocol::NotOffered => None,
            Subprotocol::Agreed(p) => Some(p),
            Subprotocol::NoneInCommon { first_offer } => Some(first_offer),
        }
    }
}

/// Agrees on a subprotocol: the first of `accepted` (the route's list, in its order) that the
/// browser offered. Offers are comma-separated tokens, possibly over several header lines.
pub fn negotiate(headers: &HeaderMap, accepted: &[String]) -> Result<Subprotocol, UpgradeRefusal> {
    let mut offers = Vec::new();
    for value in headers.get_all(header::SEC_WEBSOCKET_PROTOCOL) {
        let value = value
            .to_str()
            .map_err(|_| UpgradeRefusal::Malformed("Sec-WebSocket-Protocol is not ASCII"))?;
        for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if !is_token(token) {
                return Err(UpgradeRefusal::Malformed(
                    "Sec-WebSocket-Protocol holds an invalid token",
                ));
            }
            offers.push(token);
        }
    }
    let Some(first_offer) = offers.first() else {
        return Ok(Subprotocol::NotOffered);
    };
    Ok(
        match accepted.iter().find(|a| offers.contains(&a.as_str())) {
            Some(agreed) => Subprotocol::Agreed(agreed.clone()),
            None => Subprotocol::NoneInCommon {
                first_offer: (*first_offer).to_owned(),
            },
        },
    )
}

/// An RFC 7230 token: what a subprotocol name may be.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A small plain-text response for refusals.
pub fn plain(status: StatusCode, text: impl Into<String>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text.into() + "\n")))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn accepts_a_valid_upgrade_with_rfc_example_key() {
        let h = headers(&[
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert_eq!(
            accept_key(&http::Method::GET, &h).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn refuses_plain_requests_and_bad_versions() {
        assert_eq!(
            accept_key(&http::Method::GET, &HeaderMap::new()),
            Err(UpgradeRefusal::NotWebSocket)
        );
        let h = headers(&[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-version", "8"),
            ("sec-websocket-key", "x"),
        ]);
        assert!(matches!(
            accept_key(&http::Method::GET, &h),
            Err(UpgradeRefusal::Malformed(_))
        ));
    }

    #[test]
    fn subprotocols_follow_the_routes_preference_among_the_offers() {
        let accepted = vec!["graphql-transport-ws".to_owned(), "v12.stomp".to_owned()];
        let offer = |v: &[&str]| {
            let pairs: Vec<_> = v.iter().map(|p| ("sec-websocket-protocol", *p)).collect();
            negotiate(&headers(&pairs), &accepted)
        };
        assert_eq!(offer(&[]), Ok(Subprotocol::NotOffered));
        assert_eq!(
            offer(&["v12.stomp, graphql-transport-ws"]),
            Ok(Subprotocol::Agreed("graphql-transport-ws".into()))
        );
        assert_eq!(
            offer(&["mqtt", "v12.stomp"]),
            Ok(Subprotocol::Agreed("v12.stomp".into()))
        );
        assert_eq!(
            offer(&["mqtt, wamp"]),
            Ok(Subprotocol::NoneInCommon {
                first_offer: "mqtt".into()
            })
        );
        assert!(offer(&["bad token"]).is_err());
        assert_eq!(
            negotiate(&headers(&[("sec-websocket-protocol", "mqtt")]), &[]),
            Ok(Subprotocol::NoneInCommon {
                first_offer: "mqtt".into()
            })
        );
    }
}
