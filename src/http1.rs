//! The browser listener's HTTP/1.1, kept to what a WebSocket endpoint needs: read one request
//! head, answer it once. Every browser connection carries exactly one request: the upgrade,
//! after which the socket belongs to the relay, or one plain request (a refusal, a static
//! file) answered with `Connection: close`. A general HTTP server (keep-alive, bodies,
//! pipelining, a connection task and an upgrade channel per connection) would be work spent
//! on every connection for requests this listener never serves.
//!
//! Bounds: the head must fit in [`MAX_HEAD_BYTES`] with at most [`MAX_HEADERS`] header lines
//! (else 431), parse as HTTP/1.x (else 400), and arrive within the caller's handshake
//! timeout. The read buffer starts small and grows only while a head is incomplete; bytes the
//! browser sent past the head are returned right-sized, so nothing of it is kept for the life
//! of the connection.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest request head accepted (request line and headers).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header lines accepted in one request.
pub const MAX_HEADERS: usize = 64;
/// First read buffer: a browser's upgrade request (Origin, User-Agent, a few cookies) fits.
const FIRST_READ: usize = 2048;

/// Why no request head could be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    /// The browser closed (or reset) before a whole head arrived; nothing to answer.
    #[error("browser closed the connection before a whole request head arrived")]
    Closed,
    /// The head is longer than [`MAX_HEAD_BYTES`] or has more than [`MAX_HEADERS`] headers.
    #[error("request head over {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} headers")]
    TooLarge,
    /// Not an HTTP/1.x request.
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
}

impl HeadError {
    /// The response owed to the browser, if any.
    pub fn response(&self) -> Option<Response<Full<Bytes>>> {
        let status = match self {
            HeadError::Closed => return None,
            HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::Malformed(_) => StatusCode::BAD_REQUEST,
        };
        Some(crate::handshake::plain(status, self.to_string()))
    }
}

/// One parsed request head.
pub struct Head {
    /// Method, target, version and headers; the body is never read.
    pub request: Request<()>,
    /// True when the head announces a body (`Content-Length` other than 0, or
    /// `Transfer-Encoding`).
    pub has_body: bool,
    /// Bytes received after the head (for an upgrade: the browser's first frames).
    pub ahead: Bytes,
}

/// Reads one request head from `io`. The caller bounds the time.
pub async fn read_head<S: AsyncRead + Unpin>(io: &mut S) -> Result<Head, HeadError> {
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    loop {
        // Below the bound here (the check after the read ends the loop there): grow by
        // doubling, never past it.
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len().min(MAX_HEAD_BYTES - buf.len()));
        }
        let room = MAX_HEAD_BYTES - buf.len();
        match (&mut *io).take(room as u64).read_buf(&mut buf).await {
            Ok(0) | Err(_) => return Err(HeadError::Closed),
            Ok(_) => {}
        }
        // Reparsing from the start is cheap at these sizes and only happens for heads that
        // arrive in pieces.
        if let Some(head) = parse(&buf)? {
            return Ok(head);
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Parses `buf` as a request head; `None` while it is incomplete.
fn parse(buf: &[u8]) -> Result<Option<Head>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("not an HTTP/1.x request")),
    };
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| HeadError::Malformed("bad method"))?;
    let uri: Uri = req
        .path
        .unwrap_or_default()
        .parse()
        .map_err(|_| HeadError::Malformed("bad request target"))?;
    let mut map = HeaderMap::with_capacity(req.headers.len());
    let mut has_body = false;
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HeadError::Malformed("bad header name"))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| HeadError::Malformed("bad header value"))?;
        if name == http::header::TRANSFER_ENCODING
            || (name == http::header::CONTENT_LENGTH && value.as_bytes() != b"0")
        {
            has_body = true;
        }
        map.append(name, value);
    }
    let version = match req.version {
        Some(0) => http::Version::HTTP_10,
        _ => http::Version::HTTP_11,
    };
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = map;
    Ok(Some(Head {
        request,
        has_body,
        ahead: Bytes::copy_from_slice(&buf[len..]),
    }))
}

/// The 101 response as bytes: no extensions; the subprotocol when one was chosen.
pub fn switching_protocols(accept: &str, protocol: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
          sec-websocket-accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    if let Some(protocol) = protocol {
        out.extend_from_slice(b"\r\nsec-websocket-protocol: ");
        out.extend_from_slice(protocol.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// Writes `response` as the connection's only answer (`Connection: close`, a `Date`, the
/// body's length), then ends the write side.
pub async fn respond_and_close<S: AsyncWrite + Unpin>(
    io: &mut S,
    response: Response<Full<Bytes>>,
) -> std::io::Result<()> {
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == http::header::CONNECTION || name == http::header::CONTENT_LENGTH {
            continue;
        }
        header_line(&mut out, name.as_str(), value.as_bytes());
    }
    header_line(&mut out, "connection", b"close");
    header_line(
        &mut out,
        "content-length",
        body.len().to_string().as_bytes(),
    );
    header_line(
        &mut out,
        "date",
        httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    io.write_all(&out).await?;
    io.flush().await?;
    io.shutdown().await
}

fn header_line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[path = "http1_tests.rs"]
mod tests;
