//! What guestgate needs to know about a message from Genesys before passing it on: its
//! envelope (`type`, `class`, `code`, `tracingId`) and, for the few classes guestgate acts on,
//! a field or two of the body. Everything else is forwarded as the upstream wrote it.

use serde::Deserialize;
use serde_json::value::RawValue;

/// The envelope of an upstream message; the body stays raw.
#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    class: Option<String>,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default, rename = "tracingId")]
    tracing_id: Option<String>,
    #[serde(default, borrow)]
    body: Option<&'a RawValue>,
}

/// What an upstream message means to guestgate.
#[derive(Debug, PartialEq, Eq)]
pub enum Upstream {
    /// A `JwtResponse`: for guestgate only, never forwarded.
    Jwt {
        /// The JWT (a credential for the conversation's history).
        jwt: String,
        /// Its expiry, seconds since the Unix epoch.
        exp: u64,
        /// The request's tracing id, echoed.
        tracing_id: Option<String>,
    },
    /// A message of the conversation (`StructuredMessage`), with its id when it has one.
    Message {
        /// The message id (history entries carry the same id).
        id: Option<String>,
    },
    /// The session is gone for good: the ticket must not resume it.
    Ended(EndReason),
    /// A `SessionResponse` (to guestgate's own reconfigure, e.g. `startNew`).
    SessionResponse {
        /// The response code.
        code: i64,
    },
    /// An attachment event, for the metrics.
    Attachment(AttachmentEvent),
    /// An error frame answering a request (`class: "string"`), with its code.
    Error {
        /// The error code (e.g. 4006 session expired).
        code: i64,
        /// The request's tracing id, echoed.
        tracing_id: Option<String>,
    },
    /// Genesys asks a signed-in session to authenticate again (401, or a 403 "Session
    /// authentication failed" / "Try to authenticate again").
    ReauthRequired,
    /// `LogoutEvent`: the signed-in customer signed out.
    Logout,
    /// Anything else: forwarded untouched.
    Other,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// `SessionExpiredEvent` or error 4006: the inactivity TTL ran out.
    Expired,
    /// `SessionClearedEvent`: the guest cleared the conversation.
    Cleared,
    /// `ConnectionClosedEvent`: another socket of the session cleared or signed it in.
    Closed,
    /// Error 4007: Genesys does not know the session.
    NotFound,
}

impl EndReason {
    /// The label in metrics and in the `SessionEnded` frame.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::Cleared => "cleared",
            EndReason::Closed => "closed",
            EndReason::NotFound => "not_found",
        }
    }
}

/// Attachment events from Genesys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentEvent {
    /// `PresignedUrlResponse`: an upload slot was made.
    Slot,
    /// `UploadSuccessEvent`.
    Uploaded,
    /// `UploadFailureEvent`.
    Failed,
    /// `GenerateUrlError`: no slot could be made.
    NoSlot,
    /// `AttachmentDeletedResponse`.
    Deleted,
}

impl AttachmentEvent {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentEvent::Slot => "slot",
            AttachmentEvent::Uploaded => "uploaded",
            AttachmentEvent::Failed => "upload_failed",
            AttachmentEvent::NoSlot => "no_slot",
            AttachmentEvent::Deleted => "deleted",
        }
    }
}

#[derive(Deserialize)]
struct JwtBody {
    jwt: String,
    exp: u64,
}

#[derive(Deserialize)]
struct MessageBody {
    #[serde(default)]
    id: Option<String>,
}

/// Classifies one upstream text message; anything unparsable is [`Upstream::Other`].
pub fn classify(text: &[u8]) -> Upstream {
    let Ok(env) = serde_json::from_slice::<Envelope<'_>>(text) else {
        return Upstream::Other;
    };
    let body = env.body.map(RawValue::get).unwrap_or("null");
    match env.class.as_deref() {
        Some("JwtResponse") => match serde_json::from_str::<JwtBody>(body) {
            Ok(b) => Upstream::Jwt {
                jwt: b.jwt,
                exp: b.exp,
                tracing_id: env.tracing_id,
            },
            Err(_) => Upstream::Other,
        },
        Some("StructuredMessage") => Upstream::Message {
            id: serde_json::from_str::<MessageBody>(body)
                .ok()
                .and_then(|b| b.id),
        },
        Some("SessionExpiredEvent") => Upstream::Ended(EndReason::Expired),
        Some("SessionClearedEvent") => Upstream::Ended(EndReason::Cleared),
        Some("ConnectionClosedEvent") => Upstream::Ended(EndReason::Closed),
        Some("SessionResponse") => Upstream::SessionResponse {
            code: env.code.unwrap_or(200),
        },
        Some("PresignedUrlResponse") => Upstream::Attachment(AttachmentEvent::Slot),
        Some("UploadSuccessEvent") => Upstream::Attachment(AttachmentEvent::Uploaded),
        Some("UploadFailureEvent") => Upstream::Attachment(AttachmentEvent::Failed),
        Some("GenerateUrlError") => Upstream::Attachment(AttachmentEvent::NoSlot),
        Some("AttachmentDeletedResponse") => Upstream::Attachment(AttachmentEvent::Deleted),
        Some("LogoutEvent") => Upstream::Logout,
        Some("string") if env.kind.as_deref() == Some("response") => match env.code {
            Some(4006) => Upstream::Ended(EndReason::Expired),
            Some(4007) => Upstream::Ended(EndReason::NotFound),
            Some(code)
                if crate::preset::genesys::signin::asks_to_reauthenticate(
                    code,
                    &serde_json::from_str::<String>(body).unwrap_or_default(),
                ) =>
            {
                Upstream::ReauthRequired
            }
            code => Upstream::Error {
                code: code.unwrap_or(0),
                tracing_id: env.tracing_id,
            },
        },
        _ => Upstream::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_guestgate_acts_on_are_recognised() {
        assert_eq!(
            classify(br#"{"type":"response","class":"JwtResponse","code":200,"body":{"jwt":"j","exp":5},"tracingId":"gg-1"}"#),
            Upstream::Jwt { jwt: "j".into(), exp: 5, tracing_id: Some("gg-1".into()) }
        );
        assert_eq!(
            classify(br#"{"type":"message","class":"StructuredMessage","code":200,"body":{"id":"m1","text":"hi"}}"#),
            Upstream::Message { id: Some("m1".into()) }
        );
        assert_eq!(
            classify(br#"{"type":"message","class":"SessionClearedEvent","code":200,"body":{}}"#),
            Upstream::Ended(EndReason::Cleared)
        );
        assert_eq!(
            classify(
                br#"{"type":"response","class":"string","code":4006,"body":"session expired"}"#
            ),
            Upstream::Ended(EndReason::Expired)
        );
        assert_eq!(
            classify(
                br#"{"type":"response","class":"string","code":4001,"body":"no","tracingId":"t"}"#
            ),
            Upstream::Error {
                code: 4001,
                tracing_id: Some("t".into())
            }
        );
        assert_eq!(
            classify(br#"{"type":"response","class":"string","code":403,"body":"Try to authenticate again"}"#),
            Upstream::ReauthRequired
        );
        assert_eq!(
            classify(br#"{"type":"response","class":"string","code":403,"body":"Presence events Conversation Clear are not supported"}"#),
            Upstream::Error { code: 403, tracing_id: None }
        );
        assert_eq!(classify(b"not json"), Upstream::Other);
        assert_eq!(classify(br#"{"class":"Whatever"}"#), Upstream::Other);
    }
}
