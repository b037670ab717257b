//! The browser-side WebSocket upgrade: checking the request and building the 101 response.
//! No extension is ever accepted, so permessage-deflate offers are simply not answered.

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

/// The 101 response: no extensions, no subprotocol.
pub fn switching_protocols(accept: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Full::default())
        .expect("static response parts are valid")
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
}
