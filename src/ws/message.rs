//! Whole messages out of a frame stream, for the places that act on message contents (the
//! hello exchange) rather than forwarding byte ranges as the relay does.
//!
//! [`MessageReader`] buffers what one peer sends, checks every header with the shared
//! [`MessageState`] (mask direction, control frame rules, continuation order, limits) before
//! it buffers the payload, reassembles fragmented data messages and hands control frames back
//! one at a time, so the caller can answer a ping. Bytes behind the last event taken stay in
//! the buffer, in order, for whoever reads the connection next ([`MessageReader::into_rest`]).

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::frame::{self, Header, Kind, Limits, MessageState, Side, Violation};

/// How much room is made in the buffer before each read.
const READ_CHUNK: usize = 4096;

/// One thing read from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete data message: fragments reassembled, payload unmasked.
    Message {
        /// The opcode of its first frame: 1 text, 2 binary.
        opcode: u8,
        /// The whole payload.
        payload: Vec<u8>,
    },
    /// A ping, with the payload (at most 125 bytes) its pong must echo.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// A close frame, with its status code when it carries one.
    Close(Option<u16>),
}

/// Why [`MessageReader::read_event`] returned no event.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer broke RFC 6455 or a size limit.
    #[error("peer sent an invalid frame: {}", .0.detail())]
    Violation(Violation),
    /// Reading from the peer failed.
    #[error("reading a frame from the peer: {0}")]
    Io(#[from] std::io::Error),
    /// The peer ended the stream without a close frame.
    #[error("peer ended the stream while a frame was expected")]
    Eof,
}

/// Turns the bytes of one peer into [`Event`]s.
#[derive(Debug)]
pub struct MessageReader {
    state: MessageState,
    buf: BytesMut,
    /// A header already admitted whose payload is not all buffered yet.
    pending: Option<Header>,
    message: Vec<u8>,
    opcode: u8,
}

impl MessageReader {
    /// A reader for frames from `source`, starting with `prefix` (bytes already read past the
    /// handshake).
    pub fn new(source: Side, limits: Limits, prefix: &[u8]) -> Self {
        Self {
            state: MessageState::new(source, limits),
            buf: BytesMut::from(prefix),
            pending: None,
            message: Vec::new(),
            opcode: 0,
        }
    }

    /// Adds bytes read from the peer.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next event from the bytes buffered so far; `Ok(None)` means more bytes are needed.
    /// A header is checked (and an oversized one refused) before its payload is waited for.
    pub fn next_event(&mut self) -> Result<Option<Event>, Violation> {
        loop {
            let header = match self.pending {
                Some(h) => h,
                None => {
                    let Some(h) = frame::parse_header(&self.buf)? else {
                        return Ok(None);
                    };
                    self.state.admit(&h)?;
                    self.pending = Some(h);
                    h
                }
            };
            let len = usize::try_from(header.frame_len())
                .map_err(|_| Violation::TooBig("frame over the size limit"))?;
            if self.buf.len() < len {
                return Ok(None);
            }
            self.pending = None;
            let mut bytes = self.buf.split_to(len);
            let payload = &mut bytes[header.header_len..];
            if let Some(mask) = header.mask {
                frame::apply_mask(payload, mask);
            }
            match header.kind {
                Kind::Ping => return Ok(Some(Event::Ping(payload.to_vec()))),
                Kind::Pong => return Ok(Some(Event::Pong)),
                Kind::Close => return Ok(Some(Event::Close(frame::close_code(payload)))),
                Kind::Data => {
                    if header.opcode != 0 {
                        self.opcode = header.opcode;
                    }
                    self.message.extend_from_slice(payload);
                    if header.fin {
                        return Ok(Some(Event::Message {
                            opcode: self.opcode,
                            payload: std::mem::take(&mut self.message),
                        }));
                    }
                }
            }
        }
    }

    /// The next event, reading from `stream` as long as more bytes are needed.
    pub async fn read_event<S>(&mut self, stream: &mut S) -> Result<Event, ReadError>
    where
        S: AsyncRead + Unpin,
    {
        loop {
            if let Some(event) = self.next_event().map_err(ReadError::Violation)? {
                return Ok(event);
            }
            self.buf.reserve(READ_CHUNK);
            if stream.read_buf(&mut self.buf).await? == 0 {
                return Err(ReadError::Eof);
            }
        }
    }

    /// The bytes buffered behind the last event taken, untouched and in order.
    pub fn into_rest(self) -> Bytes {
        self.buf.freeze()
    }
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
