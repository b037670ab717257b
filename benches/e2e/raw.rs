//! The lean instrument's WebSocket plumbing: the upgrade done with tungstenite's handshake
//! helpers on a plain `TcpStream` (keeping any bytes read past the HTTP head), then frames
//! spoken directly: header parsing and encoding, masking, and a bounded read buffer that
//! payloads are streamed out of, so no message is ever allocated or reassembled.
//!
//! The load generator's client and the echo upstream cost CPU on the same two cores as the
//! relay under test; the leaner they are, the more of the relay's own cost the throughput
//! figures show. `Instrument::Tungstenite` keeps the earlier tokio-tungstenite client and echo
//! selectable so older figures stay reproducible.

use std::sync::atomic::{AtomicU8, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tungstenite::handshake::machine::TryParse;

/// Which client and echo implementation the harness uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Instrument {
    /// Frames spoken directly on the socket (pre-encoded sends, streamed checks).
    Raw,
    /// tokio-tungstenite client and echo (message API), as in the first harness runs.
    Tungstenite,
}

impl Instrument {
    /// The name printed in report headers.
    pub fn name(self) -> &'static str {
        match self {
            Instrument::Raw => "raw frames",
            Instrument::Tungstenite => "tokio-tungstenite",
        }
    }
}

static INSTRUMENT: AtomicU8 = AtomicU8::new(0);

/// Chooses the instrument for this process (the echo upstream reads it when it accepts).
pub fn set_instrument(i: Instrument) {
    INSTRUMENT.store(i as u8, Ordering::Relaxed);
}

/// The instrument chosen for this process (raw unless set otherwise).
pub fn instrument() -> Instrument {
    match INSTRUMENT.load(Ordering::Relaxed) {
        0 => Instrument::Raw,
        _ => Instrument::Tungstenite,
    }
}

/// Opcodes (RFC 6455 section 5.2).
pub mod op {
    /// Continuation of a fragmented message.
    pub const CONT: u8 = 0x0;
    /// Text data.
    pub const TEXT: u8 = 0x1;
    /// Binary data.
    pub const BINARY: u8 = 0x2;
    /// Connection close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// Initial read buffer size; payloads larger than the buffer are streamed through it in pieces.
pub const READ_BUF: usize = 64 * 1024;

/// The most a read buffer grows to when larger frames arrive: one 1 MiB frame and its header.
/// Fewer, larger reads cut the instrument's kernel time per 1 MiB round trip by roughly a
/// sixth on the development VM.
pub const MAX_READ_BUF: usize = (1 << 20) + 64;

/// Longest HTTP head accepted during the upgrade.
const MAX_HEAD: usize = 16 * 1024;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// FIN bit.
    pub fin: bool,
    /// RSV1..3 as a 3-bit number.
    pub rsv: u8,
    /// Opcode (low 4 bits of the first byte).
    pub opcode: u8,
    /// Masking key, when the mask bit is set.
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
    /// Bytes the header itself takes.
    pub header_len: usize,
}

/// Parses a frame header from the front of `b`: `None` while incomplete, an error for a
/// 64-bit length with its most significant bit set.
pub fn parse_header(b: &[u8]) -> Result<Option<Header>, String> {
    if b.len() < 2 {
        return Ok(None);
    }
    let masked = b[1] & 0x80 != 0;
    let len7 = b[1] & 0x7F;
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header_len = 2 + ext + if masked { 4 } else { 0 };
    if b.len() < header_len {
        return Ok(None);
    }
    let len = match len7 {
        126 => u16::from_be_bytes([b[2], b[3]]) as u64,
        127 => {
            let l = u64::from_be_bytes(b[2..10].try_into().expect("8 bytes"));
            if l >> 63 != 0 {
                return Err("frame length has its most significant bit set".into());
            }
            l
        }
        n => n as u64,
    };
    let mask = masked.then(|| b[2 + ext..6 + ext].try_into().expect("4 bytes"));
    Ok(Some(Header {
        fin: b[0] & 0x80 != 0,
        rsv: (b[0] >> 4) & 0x7,
        opcode: b[0] & 0x0F,
        mask,
        len,
        header_len,
    }))
}

/// A frame header (minimal length encoding, RSV bits clear): the bytes and how many are used.
pub fn header_bytes(fin: bool, opcode: u8, mask: Option<[u8; 4]>, len: u64) -> ([u8; 14], usize) {
    let mut h = [0u8; 14];
    h[0] = if fin { 0x80 } else { 0 } | (opcode & 0x0F);
    let m = if mask.is_some() { 0x80 } else { 0 };
    let mut n = if len < 126 {
        h[1] = m | len as u8;
        2
    } else if len <= u16::MAX as u64 {
        h[1] = m | 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        h[1] = m | 127;
        h[2..10].copy_from_slice(&len.to_be_bytes());
        10
    };
    if let Some(k) = mask {
        h[n..n + 4].copy_from_slice(&k);
        n += 4;
    }
    (h, n)
}

/// Appends a frame header (minimal length encoding, RSV bits clear) to `out`.
pub fn put_header(out: &mut Vec<u8>, fin: bool, opcode: u8, mask: Option<[u8; 4]>, len: u64) {
    let (h, n) = header_bytes(fin, opcode, mask, len);
    out.extend_from_slice(&h[..n]);
}

/// Appends a whole frame to `out`, masking the payload with `mask` if given.
pub fn put_frame(out: &mut Vec<u8>, fin: bool, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) {
    put_header(out, fin, opcode, mask, payload.len() as u64);
    let at = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = mask {
        xor_mask(&mut out[at..], k, 0);
    }
}

/// XORs `buf` with `key`, as if `buf` started `offset` bytes into the masked payload.
pub fn xor_mask(buf: &mut [u8], key: [u8; 4], offset: u64) {
    let r = (offset % 4) as usize;
    let k = [key[r], key[(r + 1) % 4], key[(r + 2) % 4], key[(r + 3) % 4]];
    let k8 = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().expect("8 bytes")) ^ k8;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the key phase is `k` again.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i % 4];
    }
}

/// The echo's output buffer: server frames are assembled here (payloads unmasked on the way
/// in, in one pass) and written out before the next read. It is kept 16 bytes larger than the
/// read buffer: reading at most that many bytes of client frames between flushes never
/// produces more than that plus a close frame, since a server header is never longer than the
/// masked client header it answers.
pub struct OutBuf {
    buf: Vec<u8>,
    len: usize,
}

impl Default for OutBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl OutBuf {
    /// An empty buffer matching a new `InBuf`.
    pub fn new() -> Self {
        Self {
            buf: vec![0; READ_BUF + 16],
            len: 0,
        }
    }

    /// Grows to match a read buffer of `read_capacity` bytes.
    pub fn fit(&mut self, read_capacity: usize) {
        if self.buf.len() < read_capacity + 16 {
            self.buf.resize(read_capacity + 16, 0);
        }
    }

    /// The bytes assembled so far.
    pub fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Forgets the assembled bytes.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends an unmasked frame header.
    pub fn header(&mut self, fin: bool, opcode: u8, len: u64) {
        let (h, n) = header_bytes(fin, opcode, None, len);
        self.buf[self.len..self.len + n].copy_from_slice(&h[..n]);
        self.len += n;
    }

    /// Appends `src` unmasked with `key`, `src` starting `offset` bytes into the payload.
    pub fn unmasked(&mut self, src: &[u8], key: [u8; 4], offset: u64) {
        let dst = &mut self.buf[self.len..self.len + src.len()];
        let r = (offset % 4) as usize;
        let k = [key[r], key[(r + 1) % 4], key[(r + 2) % 4], key[(r + 3) % 4]];
        let k8 = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
        let mut d8 = dst.chunks_exact_mut(8);
        let mut s8 = src.chunks_exact(8);
        for (d, s) in (&mut d8).zip(&mut s8) {
            let v = u64::from_ne_bytes(s.try_into().expect("8 bytes")) ^ k8;
            d.copy_from_slice(&v.to_ne_bytes());
        }
        for (i, (d, s)) in d8
            .into_remainder()
            .iter_mut()
            .zip(s8.remainder())
            .enumerate()
        {
            *d = s ^ k[i % 4];
        }
        self.len += src.len();
    }
}

/// A read buffer: bytes in `start..end` are read but not yet consumed. It starts at
/// `READ_BUF` bytes and grows (once, up to `MAX_READ_BUF`) when a larger frame arrives.
pub struct InBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Default for InBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl InBuf {
    /// An empty buffer of `READ_BUF` bytes.
    pub fn new() -> Self {
        Self {
            buf: vec![0; READ_BUF],
            start: 0,
            end: 0,
        }
    }

    /// The buffer's size.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Grows the buffer so that a frame of `frame_len` bytes (header included) fits, up to
    /// `MAX_READ_BUF`.
    pub fn fit_frame(&mut self, frame_len: u64) {
        let want = frame_len.min(MAX_READ_BUF as u64) as usize;
        if want > self.buf.len() {
            self.buf.resize(want, 0);
        }
    }

    /// The unconsumed bytes.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start);
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads at least one more byte (as many as the socket has and fit); end of stream is an
    /// error. Unconsumed bytes move to the front only when the buffer's tail is full.
    pub async fn read_more<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<usize, String> {
        if self.end == self.buf.len() {
            if self.start == 0 {
                return Err("read buffer full without a complete header".into());
            }
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        match r.read(&mut self.buf[self.end..]).await {
            Ok(0) => Err("connection ended".into()),
            Ok(n) => {
                self.end += n;
                Ok(n)
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// Reads until at least `n` (at most `READ_BUF`) bytes are unconsumed.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, r: &mut R, n: usize) -> Result<(), String> {
        while self.end - self.start < n {
            self.read_more(r).await?;
        }
        Ok(())
    }

    /// The next frame header (consumed), reading as needed.
    pub async fn header<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<Header, String> {
        loop {
            if let Some(h) = parse_header(self.data())? {
                self.consume(h.header_len);
                return Ok(h);
            }
            self.read_more(r).await?;
        }
    }
}

/// Client side of the upgrade on `tcp` (request built by tungstenite, response parsed by it,
/// checked here: 101, `Upgrade: websocket`, `Connection: upgrade`, the accept key, and no
/// extension or subprotocol). Returns the read buffer holding whatever followed the head.
pub async fn client_handshake<S>(tcp: &mut S, url: &str) -> Result<InBuf, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use tungstenite::client::IntoClientRequest;
    use tungstenite::handshake::client::{Response, generate_request};
    let req = url.into_client_request().map_err(|e| e.to_string())?;
    let (bytes, key) = generate_request(req).map_err(|e| e.to_string())?;
    tcp.write_all(&bytes)
        .await
        .map_err(|e| format!("writing the upgrade request: {e}"))?;
    let mut inbuf = InBuf::new();
    let (n, resp) = loop {
        match Response::try_parse(inbuf.data()).map_err(|e| format!("upgrade response: {e}"))? {
            Some(parsed) => break parsed,
            None if inbuf.data().len() > MAX_HEAD => return Err("upgrade response too long".into()),
            None => inbuf.read_more(tcp).await?,
        };
    };
    inbuf.consume(n);
    let h = resp.headers();
    let has = |name: &str, want: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(want)))
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(format!("upgrade refused: {}", resp.status()));
    }
    if !has("upgrade", "websocket") || !has("connection", "upgrade") {
        return Err("upgrade response lacks Upgrade/Connection headers".into());
    }
    if h.get("sec-websocket-accept").map(|v| v.as_bytes()) != Some(accept.as_bytes()) {
        return Err("upgrade response has the wrong Sec-WebSocket-Accept".into());
    }
    if h.contains_key("sec-websocket-extensions") || h.contains_key("sec-websocket-protocol") {
        return Err("server negotiated an extension or subprotocol nobody asked for".into());
    }
    Ok(inbuf)
}

/// Server side of the upgrade on `tcp` (request parsed and validated, response built by
/// tungstenite; no extension or subprotocol is accepted). Returns the read buffer holding
/// whatever followed the request head (a client may pipeline frames behind it).
pub async fn server_handshake<S>(tcp: &mut S) -> Result<InBuf, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use tungstenite::handshake::server::{Request, create_response, write_response};
    let mut inbuf = InBuf::new();
    let (n, req) = loop {
        match Request::try_parse(inbuf.data()).map_err(|e| format!("upgrade request: {e}"))? {
            Some(parsed) => break parsed,
            None if inbuf.data().len() > MAX_HEAD => return Err("upgrade request too long".into()),
            None => inbuf.read_more(tcp).await?,
        };
    };
    inbuf.consume(n);
    let resp = create_response(&req).map_err(|e| format!("upgrade request: {e}"))?;
    let mut head = Vec::new();
    write_response(&mut head, &resp).map_err(|e| e.to_string())?;
    tcp.write_all(&head)
        .await
        .map_err(|e| format!("writing the upgrade response: {e}"))?;
    Ok(inbuf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        for len in [0usize, 1, 7, 125, 126, 127, 65535, 65536, 1 << 20] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            for mask in [None, Some([0x12, 0x34, 0x56, 0x78])] {
                for (fin, opcode) in [(true, op::BINARY), (false, op::TEXT), (true, op::CONT)] {
                    let mut out = Vec::new();
                    put_frame(&mut out, fin, opcode, mask, &payload);
                    let h = parse_header(&out).unwrap().unwrap();
                    assert_eq!((h.fin, h.rsv, h.opcode, h.mask), (fin, 0, opcode, mask));
                    assert_eq!(h.len, len as u64);
                    assert_eq!(out.len(), h.header_len + len);
                    // Every shorter prefix of the header is "incomplete", not an error.
                    for cut in 0..h.header_len {
                        assert_eq!(parse_header(&out[..cut]).unwrap(), None);
                    }
                    let mut body = out[h.header_len..].to_vec();
                    if let Some(k) = h.mask {
                        assert!(len < 8 || body != payload, "masking changed nothing");
                        xor_mask(&mut body, k, 0);
                    }
                    assert_eq!(body, payload);
                }
            }
        }
    }

    #[test]
    fn unmasking_in_pieces_matches_unmasking_at_once() {
        let key = [0xA1, 0xB2, 0xC3, 0xD4];
        let data: Vec<u8> = (0..1000).map(|i| (i * 7) as u8).collect();
        let mut whole = data.clone();
        xor_mask(&mut whole, key, 0);
        let naive: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        assert_eq!(whole, naive);
        for cuts in [[1usize, 2, 3], [5, 13, 999], [8, 16, 17]] {
            let mut pieces = data.clone();
            let mut at = 0;
            for &c in cuts.iter().chain(&[data.len()]) {
                xor_mask(&mut pieces[at..c], key, at as u64);
                at = c;
            }
            assert_eq!(pieces, naive);
        }
    }

    #[test]
    fn out_buffer_unmasks_like_xor_mask() {
        let key = [0xA1, 0xB2, 0xC3, 0xD4];
        let data: Vec<u8> = (0..1000).map(|i| (i * 13) as u8).collect();
        let mut masked = Vec::new();
        put_frame(&mut masked, false, op::BINARY, Some(key), &data);
        let h = parse_header(&masked).unwrap().unwrap();
        let body = &masked[h.header_len..];
        let mut out = OutBuf::new();
        out.header(h.fin, h.opcode, h.len);
        for (from, to) in [(0, 3), (3, 11), (11, 500), (500, 1000)] {
            out.unmasked(&body[from..to], key, from as u64);
        }
        let mut want = Vec::new();
        put_frame(&mut want, false, op::BINARY, None, &data);
        assert_eq!(out.data(), &want[..]);
    }

    #[test]
    fn oversized_length_is_an_error() {
        let mut b = vec![0x82, 127];
        b.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert!(parse_header(&b).is_err());
    }

    #[tokio::test]
    async fn handshakes_keep_frames_that_follow_the_head() {
        use tungstenite::client::IntoClientRequest;
        // A client that pipelines a frame behind its request in one write: the server keeps it.
        let (mut c, mut s) = tokio::io::duplex(64 * 1024);
        let req = "ws://127.0.0.1:1/".into_client_request().unwrap();
        let (mut bytes, _key) = tungstenite::handshake::client::generate_request(req).unwrap();
        put_frame(&mut bytes, true, op::BINARY, Some([1, 2, 3, 4]), b"early");
        c.write_all(&bytes).await.unwrap();
        let inbuf = server_handshake(&mut s).await.unwrap();
        let h = parse_header(inbuf.data()).unwrap().unwrap();
        assert_eq!(
            (h.opcode, h.len, h.mask),
            (op::BINARY, 5, Some([1, 2, 3, 4]))
        );

        // A server that writes a frame right after its response: the client keeps it.
        let (mut c, mut s) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            server_handshake(&mut s).await.unwrap();
            let mut frame = Vec::new();
            put_frame(&mut frame, true, op::TEXT, None, b"hello");
            s.write_all(&frame).await.unwrap();
            s
        });
        let mut inbuf = client_handshake(&mut c, "ws://127.0.0.1:1/").await.unwrap();
        let h = inbuf.header(&mut c).await.unwrap();
        assert_eq!((h.opcode, h.len, h.mask), (op::TEXT, 5, None));
        inbuf.fill(&mut c, 5).await.unwrap();
        assert_eq!(inbuf.data(), b"hello");
        drop(server.await.unwrap());
    }
}
