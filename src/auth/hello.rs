//! The hello exchange: frames guestgate sends first on a fresh upstream connection (e.g.
//! Genesys `configureSession`) and the reply that means "ready", with a deadline. Nothing from
//! this exchange reaches the browser; bytes that arrive behind the ready message are handed to
//! the relay untouched.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::ws::frame::{self, Limits, OwnFrame, Side};
use crate::ws::message::{Event, MessageReader, ReadError};

/// A test on a JSON reply: the value at `pointer` equals (or, with `not`, differs from) `equals`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// JSON pointer into the reply, e.g. `/class`.
    pub pointer: String,
    /// The value to compare with.
    pub equals: Value,
    /// Negate the comparison.
    #[serde(default)]
    pub not: bool,
}

impl Condition {
    /// `pointer == equals`.
    pub fn eq(pointer: &str, equals: Value) -> Self {
        Self {
            pointer: pointer.into(),
            equals,
            not: false,
        }
    }

    /// `pointer != equals`.
    pub fn ne(pointer: &str, equals: Value) -> Self {
        Self {
            not: true,
            ..Self::eq(pointer, equals)
        }
    }

    fn holds(&self, reply: &Value) -> bool {
        (reply.pointer(&self.pointer) == Some(&self.equals)) != self.not
    }
}

/// True when every condition holds (and there is at least one).
pub fn all_hold(conditions: &[Condition], reply: &Value) -> bool {
    !conditions.is_empty() && conditions.iter().all(|c| c.holds(reply))
}

/// What to send and what to wait for.
#[derive(Debug, Clone)]
pub struct HelloSpec {
    /// Text frames to send, in order (already rendered).
    pub frames: Vec<String>,
    /// All of these hold for the reply that means ready.
    pub ready: Vec<Condition>,
    /// All of these hold for a reply that means the upstream refused the session.
    pub refused: Vec<Condition>,
    /// How long to wait for ready.
    pub deadline: Duration,
    /// Largest reply accepted during the exchange.
    pub max_reply: usize,
}

/// Why the hello exchange failed. Never contains message contents beyond a numeric code.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// The upstream answered with a reply matching the refusal conditions.
    #[error("upstream refused the session (code {code:?})")]
    Refused {
        /// The reply's `/code`, when it has one.
        code: Option<i64>,
    },
    /// No ready reply before the deadline.
    #[error("upstream did not become ready within {0:?}")]
    Timeout(Duration),
    /// The upstream closed or the transport failed during the exchange.
    #[error("upstream connection ended during the hello exchange")]
    Closed,
    /// The upstream sent something that is not a valid frame or JSON text.
    #[error("upstream sent an invalid reply during the hello exchange: {0}")]
    Invalid(&'static str),
}

impl HelloError {
    /// A closed-set label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            HelloError::Timeout(_) => "ready_timeout",
            _ => "hello",
        }
    }
}

/// Sends the hello frames and reads until the ready reply. Returns that reply and the bytes
/// read past it, which start at a frame boundary and belong to the relay.
///
/// Upstream frames go through the shared codec: headers are checked against RFC 6455 and
/// against `max_reply` (per frame and per reassembled message) before their payload is
/// waited for, a fragmented reply is reassembled, a ping is answered with a masked pong, and
/// a close frame ends the exchange as [`HelloError::Closed`].
pub async fn exchange<S>(
    stream: &mut S,
    prefix: Bytes,
    spec: &HelloSpec,
) -> Result<(Value, Bytes), HelloError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(spec.deadline, exchange_inner(stream, prefix, spec)).await {
        Ok(result) => result,
        Err(_) => Err(HelloError::Timeout(spec.deadline)),
    }
}

async fn exchange_inner<S>(
    stream: &mut S,
    prefix: Bytes,
    spec: &HelloSpec,
) -> Result<(Value, Bytes), HelloError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = Vec::new();
    for text in &spec.frames {
        frame::encode_to(&mut out, true, 1, text.as_bytes(), Side::Upstream);
    }
    send(stream, &out).await?;

    let max = spec.max_reply as u64;
    let limits = Limits {
        max_frame: max,
        max_message: max,
    };
    let mut reader = MessageReader::new(Side::Upstream, limits, &prefix);
    loop {
        let event = reader.read_event(stream).await.map_err(|e| match e {
            ReadError::Violation(v) => HelloError::Invalid(v.detail()),
            ReadError::Io(_) | ReadError::Eof => HelloError::Closed,
        })?;
        let payload = match event {
            Event::Message { payload, .. } => payload,
            Event::Ping(payload) => {
                send(
                    stream,
                    OwnFrame::control(10, &payload, Side::Upstream).as_bytes(),
                )
                .await?;
                continue;
            }
            Event::Pong => continue,
            Event::Close(_) => return Err(HelloError::Closed),
        };
        let reply: Value = serde_json::from_slice(&payload)
            .map_err(|_| HelloError::Invalid("reply is not JSON"))?;
        if all_hold(&spec.ready, &reply) {
            return Ok((reply, reader.into_rest()));
        }
        if all_hold(&spec.refused, &reply) {
            let code = reply.pointer("/code").and_then(Value::as_i64);
            return Err(HelloError::Refused { code });
        }
    }
}

/// Writes frames to the upstream; a failed write means the connection is gone.
async fn send<S>(stream: &mut S, bytes: &[u8]) -> Result<(), HelloError>
where
    S: AsyncWrite + Unpin,
{
    stream
        .write_all(bytes)
        .await
        .map_err(|_| HelloError::Closed)?;
    stream.flush().await.map_err(|_| HelloError::Closed)
}

#[cfg(test)]
#[path = "hello_tests.rs"]
mod tests;
