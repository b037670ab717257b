//! The frames guestgate itself sends a page on a Genesys route. They share Genesys's envelope
//! with `"type":"guestgate"`, so a page tells them apart from the upstream's by `type` alone:
//! `{"type":"guestgate","class":..,"code":..,"body":..,"tracingId"?}`. `docs/genesys-page-protocol.md`
//! lists every class with examples.

use serde_json::{Value, json};

/// A guestgate frame of `class` with `code` and `body`, echoing the page's `tracingId`.
pub fn frame(class: &str, code: u16, body: Value, tracing_id: Option<&str>) -> String {
    let mut v = json!({"type": "guestgate", "class": class, "code": code, "body": body});
    if let Some(t) = tracing_id {
        v["tracingId"] = Value::String(t.to_owned());
    }
    v.to_string()
}

/// A refusal of one page request (the connection stays open).
pub fn error(code: u16, message: &str, tracing_id: Option<&str>) -> String {
    frame("Error", code, json!({ "message": message }), tracing_id)
}

/// The pacing queue was full: this `onMessage` was not sent.
pub fn queue_full(queued: usize, tracing_id: Option<&str>) -> String {
    frame(
        "MessageNotSent",
        429,
        json!({"reason": "queue_full", "queued": queued, "retryAfterMs": 1000}),
        tracing_id,
    )
}

/// The end of a reconnect's replay: how many messages it delivered, and whether it found the
/// page's last message (`complete: false`: older messages may be missing; load history).
pub fn replay_done(count: usize, complete: bool) -> String {
    frame(
        "ReplayDone",
        200,
        json!({"count": count, "complete": complete}),
        None,
    )
}

/// The upstream session is gone; the socket closes next and the ticket must be dropped.
pub fn session_ended(reason: &str) -> String {
    frame("SessionEnded", 200, json!({ "reason": reason }), None)
}

/// A message from history, replayed in the shape the socket delivers it live.
pub fn replayed(entity: &Value) -> String {
    json!({"type": "message", "class": "StructuredMessage", "code": 200, "body": entity})
        .to_string()
}
