//! Frame headers: parsing and RFC 6455 validation from the header alone, and encoding the few
//! frames guestgate writes itself (pings, closes, the hello, rewritten messages).
//!
//! Payload bytes are never touched here; the relay's pump forwards them by range and
//! [`super::message`] reassembles them where contents matter. Parsing leans on
//! tungstenite's [`FrameHeader::parse`]; the checks it leaves to the caller (mask direction,
//! RSV bits, control frame rules, continuation order, limits) live in [`MessageState`].

use std::io::Cursor;

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// Which peer produced the bytes being scanned. Browser frames must be masked (client frames),
/// upstream frames must not be (server frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The browser leg (guestgate is the server).
    Browser,
    /// The upstream leg (guestgate is the client).
    Upstream,
}

impl Side {
    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Browser => "browser",
            Side::Upstream => "upstream",
        }
    }

    /// The other leg.
    pub fn other(self) -> Side {
        match self {
            Side::Browser => Side::Upstream,
            Side::Upstream => Side::Browser,
        }
    }
}

/// Size limits for one direction, checked from frame headers before any payload is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload of a single frame.
    pub max_frame: u64,
    /// Largest total payload of one (possibly fragmented) message.
    pub max_message: u64,
}

/// A frame broke the protocol or a limit. The static text is safe to log and to send as a
/// close reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// RFC 6455 was broken; answered with 1002.
    Protocol(&'static str),
    /// A frame or message exceeded the configured limit; answered with 1009.
    TooBig(&'static str),
}

impl Violation {
    /// The human-readable description.
    pub fn detail(self) -> &'static str {
        match self {
            Violation::Protocol(s) | Violation::TooBig(s) => s,
        }
    }
}

/// The kind of a frame, reduced to what the relay acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text, binary or continuation.
    Data,
    /// Close frame.
    Close,
    /// Ping frame.
    Ping,
    /// Pong frame.
    Pong,
}

/// A parsed, validated frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the frame is.
    pub kind: Kind,
    /// FIN bit.
    pub fin: bool,
    /// The raw opcode (for data frames: 0 continuation, 1 text, 2 binary).
    pub opcode: u8,
    /// The masking key, present on browser frames.
    pub mask: Option<[u8; 4]>,
    /// Header length in bytes.
    pub header_len: usize,
    /// Payload length in bytes.
    pub payload_len: u64,
}

impl Header {
    /// Header plus payload.
    pub fn frame_len(&self) -> u64 {
        self.header_len as u64 + self.payload_len
    }
}

/// Parses one header at the start of `bytes`. `Ok(None)` means more bytes are needed.
pub fn parse_header(bytes: &[u8]) -> Result<Option<Header>, Violation> {
    let mut cursor = Cursor::new(bytes);
    let (raw, payload_len) = match FrameHeader::parse(&mut cursor) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Ok(None),
        Err(_) => return Err(Violation::Protocol("reserved opcode")),
    };
    if raw.rsv1 || raw.rsv2 || raw.rsv3 {
        return Err(Violation::Protocol(
            "reserved bits set without an extension",
        ));
    }
    if payload_len >> 63 != 0 {
        return Err(Violation::Protocol(
            "frame length has the most significant bit set",
        ));
    }
    let (kind, opcode) = match raw.opcode {
        OpCode::Data(Data::Continue) => (Kind::Data, 0),
        OpCode::Data(Data::Text) => (Kind::Data, 1),
        OpCode::Data(Data::Binary) => (Kind::Data, 2),
        OpCode::Control(Control::Close) => (Kind::Close, 8),
        OpCode::Control(Control::Ping) => (Kind::Ping, 9),
        OpCode::Control(Control::Pong) => (Kind::Pong, 10),
        _ => return Err(Violation::Protocol("reserved opcode")),
    };
    Ok(Some(Header {
        kind,
        fin: raw.is_final,
        opcode,
        mask: raw.mask,
        header_len: cursor.position() as usize,
        payload_len,
    }))
}

/// Per-direction message state: whether a fragmented message is open and how large it is.
#[derive(Debug, Clone, Copy)]
pub struct MessageState {
    source: Side,
    limits: Limits,
    in_message: bool,
    message_len: u64,
}

impl MessageState {
    /// A fresh state for frames coming from `source`.
    pub fn new(source: Side, limits: Limits) -> Self {
        Self {
            source,
            limits,
            in_message: false,
            message_len: 0,
        }
    }

    /// True while a fragmented message has started and not yet finished.
    pub fn in_message(&self) -> bool {
        self.in_message
    }

    /// Checks a header against the protocol and the limits and advances the message state.
    /// Returns true when the frame completes a data message.
    pub fn admit(&mut self, h: &Header) -> Result<bool, Violation> {
        match (self.source, h.mask.is_some()) {
            (Side::Browser, false) => return Err(Violation::Protocol("browser frame not masked")),
            (Side::Upstream, true) => return Err(Violation::Protocol("upstream frame masked")),
            _ => {}
        }
        if h.kind != Kind::Data {
            if !h.fin {
                return Err(Violation::Protocol("fragmented control frame"));
            }
            if h.payload_len > 125 {
                return Err(Violation::Protocol("control frame payload over 125 bytes"));
            }
            if h.kind == Kind::Close && h.payload_len == 1 {
                return Err(Violation::Protocol("close frame with a one-byte payload"));
            }
            return Ok(false);
        }
        match (h.opcode, self.in_message) {
            (0, false) => return Err(Violation::Protocol("continuation frame outside a message")),
            (1 | 2, true) => {
                return Err(Violation::Protocol("new message inside a fragmented one"));
            }
            _ => {}
        }
        if h.payload_len > self.limits.max_frame {
            return Err(Violation::TooBig("frame over the size limit"));
        }
        let total = self.message_len.saturating_add(h.payload_len);
        if total > self.limits.max_message {
            return Err(Violation::TooBig("message over the size limit"));
        }
        if h.fin {
            self.in_message = false;
            self.message_len = 0;
        } else {
            self.in_message = true;
            self.message_len = total;
        }
        Ok(h.fin)
    }
}

/// Applies (or removes) a WebSocket mask in place.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// The payload guestgate puts in its own pings, so the answering pongs can be recognised and
/// consumed instead of forwarded.
pub const PING_PAYLOAD: &[u8; 8] = b"gg-alive";

/// Largest frame guestgate writes itself: a 125-byte control payload behind a 6-byte header.
pub const MAX_OWN_FRAME: usize = 131;

/// A small frame guestgate writes itself, held inline so writing it never allocates.
#[derive(Clone, Copy)]
pub struct OwnFrame {
    bytes: [u8; MAX_OWN_FRAME],
    len: u8,
}

impl OwnFrame {
    /// Encodes a control frame toward `to`: masked with a fresh random key when it goes
    /// upstream, unmasked toward the browser. `payload` is truncated to 125 bytes.
    pub fn control(opcode: u8, payload: &[u8], to: Side) -> Self {
        let payload = &payload[..payload.len().min(125)];
        let mut bytes = [0u8; MAX_OWN_FRAME];
        bytes[0] = 0x80 | opcode;
        let mut at = 2;
        if to == Side::Upstream {
            let mask: [u8; 4] = rand::random();
            bytes[1] = 0x80 | payload.len() as u8;
            bytes[2..6].copy_from_slice(&mask);
            at = 6;
            bytes[at..at + payload.len()].copy_from_slice(payload);
            apply_mask(&mut bytes[at..at + payload.len()], mask);
        } else {
            bytes[1] = payload.len() as u8;
            bytes[at..at + payload.len()].copy_from_slice(payload);
        }
        Self {
            bytes,
            len: (at + payload.len()) as u8,
        }
    }

    /// A close frame with a code and a reason (cut to fit at a UTF-8 boundary).
    pub fn close(code: u16, reason: &str, to: Side) -> Self {
        let mut payload = [0u8; 125];
        payload[..2].copy_from_slice(&code.to_be_bytes());
        let mut cut = reason.len().min(123);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        payload[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
        Self::control(8, &payload[..2 + cut], to)
    }

    /// A keepalive ping carrying [`PING_PAYLOAD`].
    pub fn ping(to: Side) -> Self {
        Self::control(9, PING_PAYLOAD, to)
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// Appends one complete frame to `out`, masking the payload when `mask` is given. Used for
/// frames guestgate builds itself on the slow path and by tests and fakes.
pub fn encode(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
    let body = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[body..], mask);
    }
}

/// Appends one complete frame addressed `to` a leg: masked with a fresh random key toward the
/// upstream (guestgate is the client there), unmasked toward the browser.
pub fn encode_to(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8], to: Side) {
    let mask = (to == Side::Upstream).then(rand::random::<[u8; 4]>);
    encode(out, fin, opcode, payload, mask);
}

/// Reads the (unmasked) payload of a small control frame whose bytes are all present.
pub fn control_payload(frame: &[u8], h: &Header) -> ([u8; 125], usize) {
    let n = h.payload_len as usize;
    let mut out = [0u8; 125];
    out[..n].copy_from_slice(&frame[h.header_len..h.header_len + n]);
    if let Some(mask) = h.mask {
        apply_mask(&mut out[..n], mask);
    }
    (out, n)
}

/// The status code carried by a close payload, if any.
pub fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
