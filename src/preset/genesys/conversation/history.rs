//! The conversation's history, read over Genesys's REST API with the JWT guestgate got on the
//! socket (`getJwt`). The JWT is a credential for the whole conversation: it is cached here
//! until shortly before its `exp` and never leaves guestgate.
//!
//! Two uses: a page's `guestgate.getHistory` request (one page, passed through), and the
//! replay of a reconnecting page (`after=<message id>`): pages are walked from the newest
//! until that id is found, at most [`REPLAY_PAGES`] of [`REPLAY_PAGE_SIZE`], and the messages
//! after it come back oldest first.

use std::time::Duration;

use http::{HeaderValue, header};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

/// A cached JWT is renewed this long before its `exp`.
pub const JWT_MARGIN: Duration = Duration::from_secs(60);

/// Page size of replay fetches (the API's maximum).
pub const REPLAY_PAGE_SIZE: u32 = 100;

/// Most pages one replay reads: a reconnect costs the upstream at most this many requests.
pub const REPLAY_PAGES: u32 = 3;

/// Largest history response body guestgate reads.
pub const MAX_BODY: usize = 2 << 20;

/// Largest page a page may ask for.
pub const MAX_PAGE_SIZE: u32 = 100;

/// The JWT of one connection's session, while it is fresh.
#[derive(Default)]
pub struct JwtCache {
    jwt: Option<(String, u64)>,
}

impl JwtCache {
    /// The JWT, if it stays valid for at least [`JWT_MARGIN`] after `now_unix`.
    pub fn fresh(&self, now_unix: u64) -> Option<&str> {
        self.jwt
            .as_ref()
            .filter(|(_, exp)| now_unix + JWT_MARGIN.as_secs() < *exp)
            .map(|(jwt, _)| jwt.as_str())
    }

    /// Keeps a JWT got from `getJwt`.
    pub fn store(&mut self, jwt: String, exp: u64) {
        self.jwt = Some((jwt, exp));
    }

    /// Forgets the JWT (after a 401).
    pub fn clear(&mut self) {
        self.jwt = None;
    }
}

impl std::fmt::Debug for JwtCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtCache")
            .field(
                "jwt",
                &self.jwt.as_ref().map(|(_, exp)| ("[redacted]", exp)),
            )
            .finish()
    }
}

/// Why a history fetch failed (no secret in the text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// The API refused the JWT (401/403).
    #[error("upstream history API refused the JWT")]
    Unauthorized,
    /// The API answered another error status, or a body guestgate could not read.
    #[error("upstream history API failed")]
    Failed,
    /// The API could not be reached or did not answer in time.
    #[error("upstream history API unavailable")]
    Unavailable,
    /// No JWT came on the socket in time.
    #[error("upstream did not answer getJwt")]
    NoJwt,
}

impl HistoryError {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryError::Unauthorized => "unauthorized",
            HistoryError::Failed => "failed",
            HistoryError::Unavailable => "unavailable",
            HistoryError::NoJwt => "no_jwt",
        }
    }
}

/// One page as the API returns it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    /// The messages (the API lists the newest first).
    #[serde(default)]
    pub entities: Vec<Value>,
    /// The page's number.
    #[serde(default)]
    pub page_number: u32,
    /// Its size.
    #[serde(default)]
    pub page_size: u32,
    /// All messages in the conversation.
    #[serde(default)]
    pub total: u64,
    /// How many pages there are.
    #[serde(default)]
    pub page_count: u32,
}

/// Where and how the history API is called.
#[derive(Clone)]
pub struct HistoryApi {
    /// `https://api.{domain}` (or the base URL's host in tests).
    pub base: Url,
    /// The deployment's Origin, sent as the browser would.
    pub origin: HeaderValue,
    /// The outbound HTTP client.
    pub client: reqwest::Client,
}

impl HistoryApi {
    /// Reads one page.
    pub async fn page(&self, jwt: &str, number: u32, size: u32) -> Result<Page, HistoryError> {
        let mut url = self.base.clone();
        url.set_path("/api/v2/webmessaging/messages");
        url.query_pairs_mut()
            .append_pair("pageSize", &size.to_string())
            .append_pair("pageNumber", &number.to_string());
        let response = self
            .client
            .get(url)
            .bearer_auth(jwt)
            .header(header::ORIGIN, self.origin.clone())
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|_| HistoryError::Unavailable)?;
        match response.status().as_u16() {
            200 => {}
            401 | 403 => return Err(HistoryError::Unauthorized),
            _ => return Err(HistoryError::Failed),
        }
        let body = read_bounded(response).await?;
        serde_json::from_slice(&body).map_err(|_| HistoryError::Failed)
    }

    /// The messages after `after_id`, oldest first, and whether `after_id` was found within
    /// [`REPLAY_PAGES`] pages (if not, every message read is returned).
    pub async fn since(
        &self,
        jwt: &str,
        after_id: &str,
    ) -> Result<(Vec<Value>, bool), HistoryError> {
        let mut newer = Vec::new();
        for number in 1..=REPLAY_PAGES {
            let page = self.page(jwt, number, REPLAY_PAGE_SIZE).await?;
            let count = page.entities.len();
            for entity in newest_first(page.entities) {
                if entity.get("id").and_then(Value::as_str) == Some(after_id) {
                    newer.reverse();
                    return Ok((newer, true));
                }
                newer.push(entity);
            }
            if count < REPLAY_PAGE_SIZE as usize || number >= page.page_count.max(1) {
                break;
            }
        }
        newer.reverse();
        Ok((newer, false))
    }
}

/// A page's entities newest first, whichever order the API used (by `channel.time`, which is
/// RFC 3339 UTC and so sorts as text).
fn newest_first(mut entities: Vec<Value>) -> Vec<Value> {
    let time = |v: &Value| {
        v.pointer("/channel/time")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if let (Some(first), Some(last)) = (
        entities.first().and_then(time),
        entities.last().and_then(time),
    ) && first < last
    {
        entities.reverse();
    }
    entities
}

async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, HistoryError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| HistoryError::Unavailable)?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(HistoryError::Failed);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_jwt_is_fresh_until_the_margin_before_exp() {
        let mut c = JwtCache::default();
        assert_eq!(c.fresh(1_000), None);
        c.store("j".into(), 1_000 + JWT_MARGIN.as_secs() + 1);
        assert_eq!(c.fresh(1_000), Some("j"));
        assert_eq!(c.fresh(1_001), None);
        assert!(format!("{c:?}").contains("redacted"));
    }

    #[test]
    fn pages_in_either_order_come_out_newest_first() {
        let m = |id: &str, t: &str| json!({"id": id, "channel": {"time": t}});
        let oldest_first = vec![
            m("a", "2026-01-01T00:00:00.000Z"),
            m("b", "2026-01-01T00:00:01.000Z"),
        ];
        let ids: Vec<_> = newest_first(oldest_first)
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, ["b", "a"]);
    }
}
