//! The hello exchange: frames guestgate sends first on a fresh upstream connection (e.g.
//! Genesys `configureSession`) and the reply that means "ready", with a deadline. Nothing from
//! this exchange reaches the browser; bytes that arrive behind the ready message are handed to
//! the relay untouched.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::ws::frame::{self, Kind};

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
/// read past it.
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
        frame::encode(&mut out, true, 1, text.as_bytes(), Some(rand::random()));
    }
    stream
        .write_all(&out)
        .await
        .map_err(|_| HelloError::Closed)?;
    stream.flush().await.map_err(|_| HelloError::Closed)?;

    let mut buf = BytesMut::from(&prefix[..]);
    let mut message = Vec::new();
    loop {
        // Take every complete frame in the buffer.
        while let Some(h) =
            frame::parse_header(&buf).map_err(|v| HelloError::Invalid(v.detail()))?
        {
            let len = h.frame_len() as usize;
            if h.mask.is_some() {
                return Err(HelloError::Invalid("upstream frame masked"));
            }
            if len > spec.max_reply + 14 || message.len() + len > spec.max_reply + 14 {
                return Err(HelloError::Invalid("reply too large"));
            }
            if buf.len() < len {
                break;
            }
            let frame_bytes = buf.split_to(len);
            match h.kind {
                Kind::Close => return Err(HelloError::Closed),
                Kind::Ping | Kind::Pong => continue,
                Kind::Data => message.extend_from_slice(&frame_bytes[h.header_len..]),
            }
            if !h.fin {
                continue;
            }
            let reply: Value = serde_json::from_slice(&std::mem::take(&mut message))
                .map_err(|_| HelloError::Invalid("reply is not JSON"))?;
            if all_hold(&spec.ready, &reply) {
                return Ok((reply, buf.freeze()));
            }
            if all_hold(&spec.refused, &reply) {
                let code = reply.pointer("/code").and_then(Value::as_i64);
                return Err(HelloError::Refused { code });
            }
        }
        let mut chunk = [0u8; 4096];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| HelloError::Closed)?;
        if n == 0 {
            return Err(HelloError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> HelloSpec {
        HelloSpec {
            frames: vec![r#"{"action":"configureSession"}"#.into()],
            ready: vec![
                Condition::eq("/class", json!("SessionResponse")),
                Condition::eq("/code", json!(200)),
            ],
            refused: vec![
                Condition::eq("/type", json!("response")),
                Condition::ne("/code", json!(200)),
            ],
            deadline: Duration::from_secs(5),
            max_reply: 64 * 1024,
        }
    }

    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame::encode(&mut out, fin, opcode, payload, None);
        out
    }

    #[tokio::test]
    async fn ready_reply_completes_and_leftover_is_kept() {
        let (mut ours, mut theirs) = tokio::io::duplex(4096);
        let mut reply = server_frame(true, 9, b"");
        reply.extend(server_frame(false, 1, br#"{"class":"Session"#));
        reply.extend(server_frame(
            true,
            0,
            br#"Response","code":200,"type":"response"}"#,
        ));
        reply.extend(server_frame(true, 1, b"next"));
        theirs.write_all(&reply).await.unwrap();
        let (ready, rest) = exchange(&mut ours, Bytes::new(), &spec()).await.unwrap();
        assert_eq!(ready["code"], 200);
        assert_eq!(&rest[..], &server_frame(true, 1, b"next")[..]);
        let mut sent = [0u8; 6];
        theirs.read_exact(&mut sent).await.unwrap();
        assert_eq!(sent[0], 0x81, "hello is a text frame");
        assert!(sent[1] & 0x80 != 0, "hello is masked");
    }

    #[tokio::test]
    async fn error_frame_is_a_refusal_with_its_code() {
        let (mut ours, mut theirs) = tokio::io::duplex(4096);
        let reply = server_frame(
            true,
            1,
            br#"{"type":"response","class":"string","code":4007,"body":"x"}"#,
        );
        theirs.write_all(&reply).await.unwrap();
        let err = exchange(&mut ours, Bytes::new(), &spec())
            .await
            .unwrap_err();
        assert!(
            matches!(err, HelloError::Refused { code: Some(4007) }),
            "{err:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn silence_hits_the_deadline() {
        let (mut ours, _theirs) = tokio::io::duplex(4096);
        let err = exchange(&mut ours, Bytes::new(), &spec())
            .await
            .unwrap_err();
        assert!(matches!(err, HelloError::Timeout(_)));
    }

    #[tokio::test]
    async fn close_during_hello_is_reported() {
        let (mut ours, mut theirs) = tokio::io::duplex(4096);
        theirs
            .write_all(&server_frame(true, 8, &[0x03, 0xe8]))
            .await
            .unwrap();
        assert!(matches!(
            exchange(&mut ours, Bytes::new(), &spec()).await,
            Err(HelloError::Closed)
        ));
    }
}
