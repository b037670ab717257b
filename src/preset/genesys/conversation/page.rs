//! What the conversation does with each thing the page sends (through the relay): Genesys
//! requests are checked, get the session token and (for `onMessage`) go through the pacer;
//! guestgate's own requests are answered here; control frames and closes pass through.

use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::debug;

use super::history::{self, MAX_PAGE_SIZE};
use super::pacing::Offer;
use super::{End, HISTORY_EVERY, HistoryOutcome, Pending, State, frames};
use crate::close_code::{self, CloseCode};
use crate::preset::genesys::inject::Request;
use crate::ws::frame::{OwnFrame, Side};
use crate::ws::message::{Event, ReadError};

/// Actions that deal with attachments (refused politely when the route turns them off).
const ATTACHMENT_ACTIONS: &[&str] = &["onAttachment", "getAttachment", "deleteAttachment"];

/// A whole-number field of a request: `default` when absent, `None` when not a `u32`.
fn u32_field(request: &Request<'_>, name: &str, default: u32) -> Option<u32> {
    match request.field(name) {
        None => Some(default),
        Some(v) => serde_json::from_str::<u32>(v.get()).ok(),
    }
}

/// The part of an `onMessage` request that tells typing apart.
#[derive(Deserialize)]
struct MessageShape<'a> {
    #[serde(default, rename = "type")]
    kind: Option<&'a str>,
    #[serde(default)]
    events: Vec<EventShape<'a>>,
}

#[derive(Deserialize)]
struct EventShape<'a> {
    #[serde(default, rename = "eventType")]
    event_type: Option<&'a str>,
}

/// Whether an `onMessage` request's `message` is a typing event.
fn is_typing(message: Option<&RawValue>) -> bool {
    message
        .and_then(|m| serde_json::from_str::<MessageShape<'_>>(m.get()).ok())
        .is_some_and(|m| {
            m.kind == Some("Event")
                && !m.events.is_empty()
                && m.events.iter().all(|e| e.event_type == Some("Typing"))
        })
}

/// A string field of a request (e.g. `tracingId`), if it is one.
fn string_field(request: &Request<'_>, name: &str) -> Option<String> {
    request
        .field(name)
        .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
}

impl<P, U> State<'_, P, U>
where
    P: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    /// Handles one event from the page; `Some` ends the conversation.
    pub(super) async fn on_page(&mut self, event: Result<Event, ReadError>) -> Option<End> {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                debug!(route = %self.ctx.route, error = %e, "page side of the conversation ended");
                return Some(End::PageLost);
            }
        };
        let sent = match event {
            Event::Message { opcode, payload } => return self.on_request(opcode, &payload).await,
            Event::Ping(p) => {
                self.write_upstream(OwnFrame::control(9, &p, Side::Upstream).as_bytes())
                    .await
            }
            Event::Pong => {
                self.write_upstream(OwnFrame::control(10, &[], Side::Upstream).as_bytes())
                    .await
            }
            Event::Close(code) => {
                self.close(Side::Upstream, code, "").await;
                return Some(End::PageClosed(code));
            }
        };
        sent.is_err().then_some(End::UpstreamLost)
    }

    /// A data message from the page.
    async fn on_request(&mut self, opcode: u8, payload: &[u8]) -> Option<End> {
        let request = match Request::parse(opcode, payload) {
            Ok(r) => r,
            Err(reason) => return self.refuse(reason).await,
        };
        let tracing_id = string_field(&request, "tracingId");
        let action = request.action.as_str();
        if let Some(own) = action.strip_prefix("guestgate.") {
            let own = own.to_owned();
            return self.on_own_request(&own, &request, tracing_id).await;
        }
        if !self.conv.allowed.iter().any(|a| a == action) {
            if ATTACHMENT_ACTIONS.contains(&action) && !self.conv.attachments {
                self.ctx
                    .metrics
                    .genesys
                    .attachment(self.ctx.route, "disabled");
                let frame = frames::error(
                    403,
                    "attachments are turned off on this route",
                    tracing_id.as_deref(),
                );
                return self.reply(&frame).await;
            }
            return self.refuse("action not allowed").await;
        }
        if action == "onAttachment" {
            self.ctx
                .metrics
                .genesys
                .attachment(self.ctx.route, "requested");
        }
        let out = request.with_token(&self.token_json);
        if action != "onMessage" {
            return self
                .send_upstream(1, &out)
                .await
                .is_err()
                .then_some(End::UpstreamLost);
        }
        let typing = is_typing(request.field("message"));
        let metrics = &self.ctx.metrics.genesys;
        match self.pacer.offer(out, typing, Instant::now()) {
            Offer::SendNow(out) => {
                metrics.paced(self.ctx.route, "sent");
                self.send_upstream(1, &out)
                    .await
                    .is_err()
                    .then_some(End::UpstreamLost)
            }
            Offer::Queued(_) => {
                metrics.paced(self.ctx.route, "queued");
                None
            }
            Offer::TypingThinned => {
                metrics.paced(self.ctx.route, "typing_thinned");
                None
            }
            Offer::Full => {
                metrics.paced(self.ctx.route, "refused");
                let frame = frames::queue_full(self.pacer.queued(), tracing_id.as_deref());
                self.reply(&frame).await
            }
        }
    }

    /// guestgate's own requests.
    async fn on_own_request(
        &mut self,
        own: &str,
        request: &Request<'_>,
        tracing_id: Option<String>,
    ) -> Option<End> {
        match own {
            "getHistory" => {
                let number = u32_field(request, "pageNumber", 1);
                let size = u32_field(request, "pageSize", 25);
                let (Some(number), Some(size)) = (number, size) else {
                    let text = "pageNumber must be 1 or more and pageSize 1 to 100";
                    return self
                        .reply(&frames::error(400, text, tracing_id.as_deref()))
                        .await;
                };
                if number < 1 || !(1..=MAX_PAGE_SIZE).contains(&size) {
                    let text = "pageNumber must be 1 or more and pageSize 1 to 100";
                    return self
                        .reply(&frames::error(400, text, tracing_id.as_deref()))
                        .await;
                }
                let now = Instant::now();
                let busy = self.http.is_some() || self.awaiting_jwt.is_some();
                let too_soon = self
                    .last_history_request
                    .is_some_and(|t| now.duration_since(t) < HISTORY_EVERY);
                if busy || too_soon {
                    self.ctx
                        .metrics
                        .genesys
                        .history(self.ctx.route, "page", "refused");
                    let text = "one history request per second, one at a time";
                    return self
                        .reply(&frames::error(429, text, tracing_id.as_deref()))
                        .await;
                }
                self.last_history_request = Some(now);
                self.start_history(Pending::Page {
                    number,
                    size,
                    tracing_id,
                })
                .await
                .err()
                .map(|()| End::UpstreamLost)
            }
            "startNew" => {
                if self.start_new_pending {
                    let text = "a new conversation is already being started";
                    return self
                        .reply(&frames::error(429, text, tracing_id.as_deref()))
                        .await;
                }
                self.start_new_pending = true;
                let configure = json!({
                    "action": "configureSession",
                    "deploymentId": self.conv.deployment_id,
                    "token": self.conv.token.expose(),
                    "startNew": true,
                });
                self.send_upstream(1, configure.to_string().as_bytes())
                    .await
                    .is_err()
                    .then_some(End::UpstreamLost)
            }
            "signIn" | "signOut" => {
                self.on_sign_request(own, request, tracing_id.as_deref())
                    .await
            }
            _ => {
                let text = "unknown guestgate action (getHistory, startNew, signIn, signOut)";
                self.reply(&frames::error(400, text, tracing_id.as_deref()))
                    .await
            }
        }
    }

    /// Starts a history read: with the cached JWT at once, else after asking Genesys for one.
    pub(super) async fn start_history(&mut self, pending: Pending) -> Result<(), ()> {
        let now_unix = crate::auth::resume::unix_now();
        if let Some(jwt) = self.jwt.fresh(now_unix) {
            self.http = Some(fetch(self.conv.api.clone(), jwt.to_owned(), pending));
            return Ok(());
        }
        self.jwt_requests += 1;
        let request = json!({
            "action": "getJwt",
            "token": self.conv.token.expose(),
            "tracingId": format!("guestgate-jwt-{}", self.jwt_requests),
        });
        self.awaiting_jwt = Some((pending, Instant::now() + self.conv.reply_timeout));
        self.send_upstream(1, request.to_string().as_bytes())
            .await
            .map_err(|_| ())
    }

    /// Tells the page something (a guestgate frame); a page that cannot be written to ends it.
    pub(super) async fn reply(&mut self, frame: &str) -> Option<End> {
        self.deliver(1, frame.as_bytes())
            .await
            .is_err()
            .then_some(End::PageLost)
    }

    /// Refuses a malformed or forbidden request: 1008 to the page, 1001 to Genesys.
    async fn refuse(&mut self, reason: &'static str) -> Option<End> {
        debug!(route = %self.ctx.route, reason, "page request refused");
        let code = CloseCode {
            code: close_code::POLICY_VIOLATION.code,
            reason,
        };
        self.close_page(code).await;
        let up = close_code::BROWSER_MISBEHAVED;
        self.close(Side::Upstream, Some(up.code), up.reason).await;
        Some(End::Closed)
    }
}

/// The HTTP part of a history read, as a future the conversation polls.
pub(super) fn fetch(
    api: std::sync::Arc<history::HistoryApi>,
    jwt: String,
    pending: Pending,
) -> super::HistoryFuture {
    Box::pin(async move {
        let result = match &pending {
            Pending::Page { number, size, .. } => api
                .page(&jwt, *number, *size)
                .await
                .map(HistoryOutcome::Page),
            Pending::Replay { after } => api
                .since(&jwt, after)
                .await
                .map(|(messages, complete)| HistoryOutcome::Replay(messages, complete)),
        };
        (pending, result)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn only_pure_typing_events_count_as_typing() {
        let typing =
            raw(r#"{"type":"Event","events":[{"eventType":"Typing","typing":{"type":"On"}}]}"#);
        assert!(is_typing(Some(&typing)));
        let text = raw(r#"{"type":"Text","text":"hi"}"#);
        assert!(!is_typing(Some(&text)));
        let presence = raw(
            r#"{"type":"Event","events":[{"eventType":"Presence","presence":{"type":"Clear"}}]}"#,
        );
        assert!(!is_typing(Some(&presence)));
        let mixed =
            raw(r#"{"type":"Event","events":[{"eventType":"Typing"},{"eventType":"Presence"}]}"#);
        assert!(!is_typing(Some(&mixed)));
        assert!(!is_typing(None));
    }
}
