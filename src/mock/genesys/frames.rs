//! The JSON the fake Genesys sends: the `{"type","class","code","body","tracingId"?}`
//! envelope, error frames, `StructuredMessage` bodies (every one with an `id` and a
//! `channel.time`) and the events, plus the clock they are stamped with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// `{"type":"response","class":"string",...}`: how Genesys reports request errors.
pub(super) fn error(code: u16, text: &str, tracing_id: Option<&Value>) -> Value {
    with_tracing(
        json!({"type":"response","class":"string","code":code,"body":text}),
        tracing_id,
    )
}

/// Adds the request's `tracingId`, if it had one.
pub(super) fn with_tracing(mut v: Value, tracing_id: Option<&Value>) -> Value {
    if let (Some(t), Some(obj)) = (tracing_id, v.as_object_mut()) {
        obj.insert("tracingId".into(), t.clone());
    }
    v
}

/// A 200 reply to a request: `{"type":"response","class":..,"code":200,"body":..}`.
pub(super) fn response(class: &str, body: Value, tracing_id: Option<&Value>) -> Value {
    with_tracing(
        json!({"type":"response","class":class,"code":200,"body":body}),
        tracing_id,
    )
}

/// A server-initiated frame: `{"type":"message","class":..,"code":200,"body":..}`.
pub(super) fn event(class: &str, body: Value) -> Value {
    json!({"type":"message","class":class,"code":200,"body":body})
}

/// Wraps a message body in its `StructuredMessage` envelope.
pub(super) fn structured(body: Value) -> Value {
    event("StructuredMessage", body)
}

/// The `SessionExpiredEvent` sent just before the fake closes an expired session's socket.
pub(super) fn session_expired_event() -> Value {
    event("SessionExpiredEvent", json!({}))
}

/// Gives a message body a fresh `id` and sets `channel.time` to now (other `channel` fields
/// are kept).
fn stamp(body: &mut Map<String, Value>) {
    body.insert("id".into(), uuid::Uuid::new_v4().to_string().into());
    let channel = body
        .entry("channel")
        .and_modify(|c| {
            if !c.is_object() {
                *c = json!({});
            }
        })
        .or_insert_with(|| json!({}));
    channel["time"] = now_rfc3339().into();
}

/// A stamped outbound body from the fake agent.
fn outbound(kind: &str, mut fields: Map<String, Value>) -> Value {
    fields.insert("direction".into(), "Outbound".into());
    fields.insert("type".into(), kind.into());
    fields.insert("originatingEntity".into(), "Human".into());
    fields.insert(
        "channel".into(),
        json!({"from": {"nickname": "Agent", "id": "fake-agent"}}),
    );
    stamp(&mut fields);
    Value::Object(fields)
}

fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The agent's typing indicator, sent before each reply.
pub(super) fn typing_body() -> Value {
    outbound(
        "Event",
        fields(json!({"events": [{"eventType":"Typing","typing":{"type":"On","duration":5000}}]})),
    )
}

/// An agent text message.
pub(super) fn agent_text_body(text: &str) -> Value {
    outbound("Text", fields(json!({"text": text})))
}

/// The fake agent's answer to a guest text.
pub(super) fn agent_reply_body(said: &str) -> Value {
    agent_text_body(&format!("Agent: you said \"{said}\""))
}

/// The event sent when the agent ends the conversation.
pub(super) fn presence_disconnect_body() -> Value {
    outbound(
        "Event",
        fields(json!({"events": [{"eventType":"Presence","presence":{"type":"Disconnect"}}]})),
    )
}

/// The guest's own message as Genesys echoes it back: direction Inbound, a fresh id, the
/// time it arrived.
pub(super) fn inbound_body(message: &Map<String, Value>) -> Value {
    let mut body = message.clone();
    body.insert("direction".into(), "Inbound".into());
    body.insert("originatingEntity".into(), "Human".into());
    body.entry("type").or_insert_with(|| "Text".into());
    stamp(&mut body);
    Value::Object(body)
}

/// Seconds since the Unix epoch, now.
pub(super) fn epoch_now() -> u64 {
    since_epoch(SystemTime::now()).as_secs()
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO)
}

/// Now as RFC 3339 UTC with milliseconds, e.g. `2026-11-29T11:00:00.123Z`.
pub(super) fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// `t` as RFC 3339 UTC with milliseconds.
pub(super) fn rfc3339(t: SystemTime) -> String {
    let d = since_epoch(t);
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Year, month, day of the `days`-th day after 1970-01-01 (Howard Hinnant's algorithm,
/// proleptic Gregorian calendar).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        let at = |secs: u64, ms: u64| {
            rfc3339(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day in a century leap year) 12:34:56.789.
        assert_eq!(at(951_827_696, 789), "2000-02-29T12:34:56.789Z");
        assert_eq!(at(1_795_950_000, 123), "2026-11-29T11:00:00.123Z");
        assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
    }

    #[test]
    fn bodies_carry_id_and_channel_time() {
        let a = agent_text_body("x");
        let b = agent_text_body("x");
        assert_ne!(a["id"], b["id"]);
        assert!(uuid::Uuid::parse_str(a["id"].as_str().unwrap()).is_ok());
        assert_eq!(a["channel"]["time"].as_str().unwrap().len(), 24);
        assert_eq!(a["channel"]["from"]["nickname"], "Agent");
        let mut guest = Map::new();
        guest.insert("text".into(), "hi".into());
        guest.insert("channel".into(), json!({"metadata": {"k": "v"}}));
        let echoed = inbound_body(&guest);
        assert_eq!(echoed["channel"]["metadata"]["k"], "v");
        assert!(echoed["channel"]["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(echoed["type"], "Text");
        assert_eq!(echoed["direction"], "Inbound");
    }
}
