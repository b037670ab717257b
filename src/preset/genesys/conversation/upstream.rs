//! What the conversation does with each thing Genesys sends: most messages go to the page
//! unchanged; `JwtResponse`s feed the history reads; the end of a session is announced and
//! closes the socket; closes and control frames pass through.

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::events::{self, Upstream};
use super::history::HistoryError;
use super::{End, HistoryDone, HistoryOutcome, Pending, State, frames};
use crate::auth::resume::{ResumeTicket, unix_now};
use crate::close_code;
use crate::preset::genesys::session::session_ready;
use crate::ws::frame::{OwnFrame, Side};
use crate::ws::message::{Event, ReadError};

impl<P, U> State<'_, P, U>
where
    P: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    /// Handles one event from Genesys; `Some` ends the conversation.
    pub(super) async fn on_upstream(&mut self, event: Result<Event, ReadError>) -> Option<End> {
        let event = match event {
            Ok(event) => event,
            Err(ReadError::Violation(v)) => {
                debug!(route = %self.ctx.route, violation = v.detail(), "genesys broke the protocol");
                self.close_page(close_code::UPSTREAM_BAD).await;
                self.close(Side::Upstream, Some(1002), "protocol error")
                    .await;
                return Some(End::Closed);
            }
            Err(e) => {
                debug!(route = %self.ctx.route, error = %e, "genesys socket ended");
                return Some(End::UpstreamLost);
            }
        };
        let sent = match event {
            Event::Message { opcode: 1, payload } => return self.on_message(payload).await,
            Event::Message { opcode, payload } => self.deliver(opcode, &payload).await,
            Event::Ping(p) => {
                self.write_page(OwnFrame::control(9, &p, Side::Browser).as_bytes())
                    .await
            }
            Event::Pong => {
                self.write_page(OwnFrame::control(10, &[], Side::Browser).as_bytes())
                    .await
            }
            Event::Close(code) => {
                self.close(Side::Browser, code, "").await;
                return Some(End::UpstreamClosed(code));
            }
        };
        sent.is_err().then_some(End::PageLost)
    }

    /// A text message from Genesys.
    async fn on_message(&mut self, payload: Vec<u8>) -> Option<End> {
        let route = self.ctx.route;
        let metrics = &self.ctx.metrics.genesys;
        match events::classify(&payload) {
            Upstream::Jwt { jwt, exp, .. } => {
                metrics.jwt(route, "ok");
                self.jwt.store(jwt, exp);
                if let Some((pending, _)) = self.awaiting_jwt.take() {
                    let jwt = self.jwt.fresh(unix_now()).unwrap_or_default().to_owned();
                    self.http = Some(super::page::fetch(self.conv.api.clone(), jwt, pending));
                }
                return None;
            }
            Upstream::Message { id: Some(id) } if self.replayed_ids.contains(&id) => {
                return None;
            }
            Upstream::Ended(reason) => {
                metrics.ended(route, reason.as_str());
                let _ = self.deliver(1, &payload).await;
                if self.replay.is_some() {
                    let _ = self.finish_replay(Vec::new(), false).await;
                }
                let _ = self
                    .send_page(1, frames::session_ended(reason.as_str()).as_bytes())
                    .await;
                self.close_page(close_code::SESSION_ENDED).await;
                let normal = close_code::NORMAL;
                self.close(Side::Upstream, Some(normal.code), normal.reason)
                    .await;
                return Some(End::Closed);
            }
            Upstream::SessionResponse { code } if self.auth.reconfigures > 0 => {
                return self.on_reconfigured(code, &payload).await;
            }
            Upstream::ReauthRequired
                if self
                    .conv
                    .sign_in
                    .as_ref()
                    .is_some_and(|s| s.tokens.is_some()) =>
            {
                // The request it answers was not carried out: the page is told (verbatim)
                // while guestgate re-authenticates.
                if let Some(end) = self.on_reauth_request().await {
                    return Some(end);
                }
            }
            Upstream::Logout => {
                let _ = self.deliver(1, &payload).await;
                return Some(
                    self.end_signed_in(close_code::SIGNED_OUT, "signed_out")
                        .await,
                );
            }
            Upstream::SessionResponse { code } if self.start_new_pending => {
                self.start_new_pending = false;
                if self.deliver(1, &payload).await.is_err() {
                    return Some(End::PageLost);
                }
                if code == 200 {
                    let ready = self.ready_with_new_ticket(&payload);
                    return self
                        .deliver(1, ready.as_bytes())
                        .await
                        .err()
                        .map(|_| End::PageLost);
                }
                return None;
            }
            Upstream::Attachment(event) => metrics.attachment(route, event.as_str()),
            Upstream::Error {
                code: 4001..=4005, ..
            } => metrics.attachment(route, "refused"),
            _ => {}
        }
        self.deliver(1, &payload).await.err().map(|_| End::PageLost)
    }

    /// `SessionReady` after a `SessionResponse` guestgate asked for (`startNew`, a sign-in
    /// upgrade): the response's public fields and a ticket issued afresh (carrying the refresh
    /// token when signed in).
    pub(super) fn ready_with_new_ticket(&self, response: &[u8]) -> String {
        let body = serde_json::from_slice::<Value>(response)
            .ok()
            .and_then(|v| v.get("body").cloned())
            .unwrap_or_else(|| json!({}));
        let refresh = self
            .conv
            .sign_in
            .as_ref()
            .and_then(|s| s.tokens.as_ref())
            .map(|t| t.refresh_token.clone());
        let signed_in = refresh.is_some();
        let ticket = self.ctx.resume.map(|(keys, cfg)| {
            let now = unix_now();
            let ticket = ResumeTicket::new(self.ctx.route, self.conv.token.clone(), now, cfg.ttl)
                .with_refresh_token(refresh);
            keys.seal(&ticket)
        });
        session_ready(&body, ticket, None, signed_in)
    }

    /// A history read finished (or failed); answers the page or ends the replay.
    pub(super) async fn on_history(&mut self, done: HistoryDone) -> std::io::Result<()> {
        let (pending, result) = done;
        let route = self.ctx.route;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.as_str(),
        };
        self.ctx
            .metrics
            .genesys
            .history(route, pending.kind(), outcome);
        if matches!(result, Err(HistoryError::Unauthorized)) {
            self.jwt.clear();
        }
        match (pending, result) {
            (Pending::Page { tracing_id, .. }, Ok(HistoryOutcome::Page(page))) => {
                let body = json!({
                    "entities": page.entities,
                    "pageNumber": page.page_number,
                    "pageSize": page.page_size,
                    "total": page.total,
                    "pageCount": page.page_count,
                });
                let frame = frames::frame("History", 200, body, tracing_id.as_deref());
                self.deliver(1, frame.as_bytes()).await
            }
            (Pending::Page { tracing_id, .. }, Err(e)) => {
                let frame = frames::error(503, &e.to_string(), tracing_id.as_deref());
                self.deliver(1, frame.as_bytes()).await
            }
            (Pending::Replay { .. }, Ok(HistoryOutcome::Replay(messages, complete))) => {
                self.finish_replay(messages, complete).await
            }
            (Pending::Replay { .. }, _) => self.finish_replay(Vec::new(), false).await,
            (Pending::Page { tracing_id, .. }, Ok(HistoryOutcome::Replay(..))) => {
                let frame = frames::error(500, "history read mismatched", tracing_id.as_deref());
                self.deliver(1, frame.as_bytes()).await
            }
        }
    }
}
