//! What a page sees on a Genesys route, reduced to what the fleet checks: guestgate's own
//! frames (`SessionReady`, `ReplayDone`, `SessionEnded`, refusals) and the conversation's
//! messages (agent texts numbered by the fake's periodic agent, the guest's own echoes).
//! Everything else (typing and presence events, replies to `echo`) is [`Seen::Other`].

use serde_json::{Value, json};

/// The prefix of the fake agent's periodic texts: `"agent message N"`, N = 1, 2, ...
pub const AGENT_PREFIX: &str = "agent message ";

/// One text frame from guestgate, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// `SessionReady`: the first frame of every connection.
    SessionReady {
        /// `newSession` (`None` when absent or not a boolean).
        new_session: Option<bool>,
        /// The renewed resume ticket, if the route issues them.
        ticket: Option<String>,
    },
    /// `ReplayDone`: the end of a reconnect's replay.
    ReplayDone {
        /// How many messages the replay delivered.
        count: u64,
        /// Whether guestgate found the page's last message in history.
        complete: bool,
    },
    /// A conversation message (a non-Event `StructuredMessage`): its id is the page's `after`.
    Message {
        /// The message id (history entries carry the same).
        id: Option<String>,
        /// What the message is to the checks.
        kind: MessageKind,
    },
    /// `SessionEnded`: the upstream session is gone (the close 4410 follows).
    SessionEnded(String),
    /// A guestgate refusal of one page request (`Error`, `MessageNotSent`).
    Refused {
        /// The frame's class.
        class: String,
        /// Its code.
        code: u64,
    },
    /// Anything else (events, `echo` replies, upstream responses).
    Other,
}

/// What a conversation message is to the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    /// The fake agent's periodic text number N.
    Agent(u64),
    /// The guest's own text, echoed by Genesys (direction Inbound).
    GuestEcho(String),
    /// Any other message (an agent text that is not numbered, say).
    Other,
}

/// Classifies one text frame; unparsable text is [`Seen::Other`].
pub fn classify(text: &str) -> Seen {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Seen::Other;
    };
    let s = |p: &str| v.pointer(p).and_then(Value::as_str);
    match (s("/type"), s("/class")) {
        (Some("guestgate"), Some("SessionReady")) => Seen::SessionReady {
            new_session: v.pointer("/body/newSession").and_then(Value::as_bool),
            ticket: s("/body/resumeTicket").map(str::to_owned),
        },
        (Some("guestgate"), Some("ReplayDone")) => Seen::ReplayDone {
            count: v
                .pointer("/body/count")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            complete: v.pointer("/body/complete").and_then(Value::as_bool) == Some(true),
        },
        (Some("guestgate"), Some("SessionEnded")) => {
            Seen::SessionEnded(s("/body/reason").unwrap_or("").to_owned())
        }
        (Some("guestgate"), Some(class @ ("Error" | "MessageNotSent"))) => Seen::Refused {
            class: class.to_owned(),
            code: v.get("code").and_then(Value::as_u64).unwrap_or(0),
        },
        (Some("message"), Some("StructuredMessage")) if s("/body/type") != Some("Event") => {
            Seen::Message {
                id: s("/body/id").map(str::to_owned),
                kind: message_kind(s("/body/direction"), s("/body/text")),
            }
        }
        _ => Seen::Other,
    }
}

fn message_kind(direction: Option<&str>, text: Option<&str>) -> MessageKind {
    match (direction, text) {
        (Some("Outbound"), Some(t)) => t
            .strip_prefix(AGENT_PREFIX)
            .and_then(|n| n.parse().ok())
            .map_or(MessageKind::Other, MessageKind::Agent),
        (Some("Inbound"), Some(t)) => MessageKind::GuestEcho(t.to_owned()),
        _ => MessageKind::Other,
    }
}

/// The page's `onMessage` request for a guest text (guestgate adds the session token).
pub fn guest_text(text: &str) -> String {
    json!({"action": "onMessage", "message": {"type": "Text", "text": text}}).to_string()
}

/// The first frame of a `?resume=first-frame` connection: the ticket, kept out of the URL.
pub fn resume_frame(ticket: &str) -> String {
    json!({"type": "guestgate", "action": "resume", "ticket": ticket}).to_string()
}

/// The path and query of a connection: the first one plain, a reconnect announcing its
/// ticket in the first frame and naming the last message it saw.
pub fn path_and_query(path: &str, resuming: bool, after: Option<&str>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if resuming {
        query.append_pair("resume", "first-frame");
    }
    if let Some(id) = after {
        query.append_pair("after", id);
    }
    let query = query.finish();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guestgate_frames_are_told_apart() {
        assert_eq!(
            classify(
                r#"{"type":"guestgate","class":"SessionReady","body":{"newSession":false,"resumeTicket":"t1"}}"#
            ),
            Seen::SessionReady {
                new_session: Some(false),
                ticket: Some("t1".into())
            }
        );
        assert_eq!(
            classify(
                r#"{"type":"guestgate","class":"ReplayDone","code":200,"body":{"count":3,"complete":true}}"#
            ),
            Seen::ReplayDone {
                count: 3,
                complete: true
            }
        );
        assert_eq!(
            classify(
                r#"{"type":"guestgate","class":"SessionEnded","code":200,"body":{"reason":"expired"}}"#
            ),
            Seen::SessionEnded("expired".into())
        );
        assert_eq!(
            classify(
                r#"{"type":"guestgate","class":"MessageNotSent","code":429,"body":{"reason":"queue_full"}}"#
            ),
            Seen::Refused {
                class: "MessageNotSent".into(),
                code: 429
            }
        );
    }

    #[test]
    fn messages_are_numbered_agent_texts_guest_echoes_or_other() {
        let agent = r#"{"type":"message","class":"StructuredMessage","code":200,"body":{"id":"m7","direction":"Outbound","type":"Text","text":"agent message 7","channel":{"time":"2026-11-29T11:00:00.123Z"}}}"#;
        assert_eq!(
            classify(agent),
            Seen::Message {
                id: Some("m7".into()),
                kind: MessageKind::Agent(7)
            }
        );
        let echo = r#"{"type":"message","class":"StructuredMessage","code":200,"body":{"id":"g1","direction":"Inbound","type":"Text","text":"guest 3-1"}}"#;
        assert_eq!(
            classify(echo),
            Seen::Message {
                id: Some("g1".into()),
                kind: MessageKind::GuestEcho("guest 3-1".into())
            }
        );
        let reply = r#"{"type":"message","class":"StructuredMessage","body":{"id":"r","direction":"Outbound","type":"Text","text":"agent message seven"}}"#;
        assert_eq!(
            classify(reply),
            Seen::Message {
                id: Some("r".into()),
                kind: MessageKind::Other
            }
        );
        // Typing and presence events are not messages: they never become `after`.
        let typing = r#"{"type":"message","class":"StructuredMessage","body":{"id":"e","direction":"Outbound","type":"Event","events":[]}}"#;
        assert_eq!(classify(typing), Seen::Other);
        assert_eq!(classify("not json"), Seen::Other);
    }

    #[test]
    fn reconnects_announce_the_ticket_and_name_the_last_message() {
        assert_eq!(path_and_query("/chat", false, None), "/chat");
        assert_eq!(
            path_and_query("/chat", true, Some("a-1:b")),
            "/chat?resume=first-frame&after=a-1%3Ab"
        );
        let frame: Value = serde_json::from_str(&resume_frame("tk")).unwrap();
        assert_eq!(
            frame,
            json!({"type":"guestgate","action":"resume","ticket":"tk"})
        );
        let sent: Value = serde_json::from_str(&guest_text("hi")).unwrap();
        assert_eq!(sent["message"]["text"], "hi");
        assert_eq!(sent["action"], "onMessage");
    }
}
