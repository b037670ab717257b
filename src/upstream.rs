//! Opening the upstream leg: TCP, TLS for `wss://`, and the WebSocket upgrade, after which the
//! raw stream and any bytes read past the 101 response are handed to the relay.
//!
//! The upgrade speaks HTTP/1.1 directly on the stream (no HTTP client, no spawned connection
//! task): the request is built into one buffer and written at once, and the response head is
//! read into a bounded buffer (at most [`MAX_RESPONSE_HEAD`] bytes) and parsed with `httparse`.
//! The 101 is checked as RFC 6455 section 4.1 asks: `Upgrade: websocket`, `Connection: upgrade`,
//! the `Sec-WebSocket-Accept` derived from our key, no extension (none is offered) and exactly
//! the subprotocol asked for. Error texts are fixed strings: no header value or URL query
//! (which may carry credentials) ever ends up in one.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::Url;

use crate::close_code::{self, CloseCode};

/// The upstream's transport: plain TCP, or TLS over TCP. The TLS state is boxed so a relayed
/// connection's future stays small (rustls' connection state is over a kilobyte).
pub enum UpstreamStream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            UpstreamStream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            UpstreamStream::Tls(tls) => {
                let $s = Pin::new(tls.as_mut());
                $e
            }
        }
    };
}

impl crate::relay::Transport for UpstreamStream {
    fn is_plain_tcp(&self) -> bool {
        matches!(self, UpstreamStream::Plain(_))
    }

    fn into_plain_tcp(self) -> Result<TcpStream, Self> {
        match self {
            UpstreamStream::Plain(tcp) => Ok(tcp),
            tls => Err(tls),
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

/// An upgraded upstream connection.
pub struct UpstreamConn {
    /// The raw stream, positioned after the 101 response.
    pub stream: UpstreamStream,
    /// Frame bytes the upstream sent right behind its 101 response.
    pub prefix: Bytes,
}

/// Why the upstream leg could not be opened. The text never contains URL query values, which
/// may carry credentials.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connect or DNS failed.
    #[error("connecting to upstream {host}: {source}")]
    Connect {
        /// Host and port.
        host: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The TLS handshake failed.
    #[error("tls handshake with upstream {host}: {source}")]
    Tls {
        /// Host and port.
        host: String,
        /// What rustls said.
        source: std::io::Error,
    },
    /// The upstream answered the upgrade with another status.
    #[error("upstream {host} refused the websocket upgrade with HTTP {status}")]
    Refused {
        /// Host and port.
        host: String,
        /// The status it sent.
        status: StatusCode,
    },
    /// The upstream's 101 response was not a valid WebSocket handshake.
    #[error("upstream {host} sent an invalid handshake response: {problem}")]
    BadHandshake {
        /// Host and port.
        host: String,
        /// What was wrong.
        problem: &'static str,
    },
    /// The upstream's 101 did not select the subprotocol guestgate asked for (or selected one
    /// when none was asked for).
    #[error("upstream {host} answered subprotocol {got:?} where {asked:?} was asked for")]
    Subprotocol {
        /// Host and port.
        host: String,
        /// What guestgate asked for (the one agreed with the browser).
        asked: Option<String>,
        /// What the upstream selected.
        got: Option<String>,
    },
    /// Connecting took longer than the route's connect timeout.
    #[error("connecting to upstream {host} timed out after {after:?}")]
    Timeout {
        /// Host and port.
        host: String,
        /// The configured timeout.
        after: Duration,
    },
}

impl UpstreamError {
    /// The close code and reason the browser receives for this failure.
    pub fn close_code(&self) -> CloseCode {
        match self {
            UpstreamError::Refused { status, .. } => match status.as_u16() {
                401 | 403 => close_code::UPSTREAM_REFUSED,
                429 => close_code::UPSTREAM_RATE_LIMITED,
                _ => close_code::UPSTREAM_UNAVAILABLE,
            },
            UpstreamError::Connect { .. } | UpstreamError::Tls { .. } => {
                close_code::UPSTREAM_UNAVAILABLE
            }
            UpstreamError::BadHandshake { .. } => close_code::UPSTREAM_BAD,
            UpstreamError::Subprotocol { .. } => close_code::UPSTREAM_SUBPROTOCOL,
            UpstreamError::Timeout { .. } => close_code::UPSTREAM_TIMEOUT,
        }
    }

    /// A closed-set label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::Tls { .. } => "tls",
            UpstreamError::Refused { .. } => "refused",
            UpstreamError::BadHandshake { .. } => "bad_handshake",
            UpstreamError::Subprotocol { .. } => "subprotocol",
            UpstreamError::Timeout { .. } => "timeout",
        }
    }
}

/// What to connect to and how.
#[derive(Clone)]
pub struct UpstreamTarget {
    /// The upstream WebSocket URL.
    pub url: Url,
    /// Extra request headers (Origin, Authorization from the auth flow, ...).
    pub headers: HeaderMap,
    /// TLS settings for `wss://`.
    pub tls: Arc<rustls::ClientConfig>,
    /// Limit for the whole connect (TCP, TLS, upgrade).
    pub timeout: Duration,
}

/// `host:port` of a URL, safe to log.
pub fn host_label(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or("?"),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// Connects and upgrades, asking for `protocol` when given. No extensions are offered. The
/// upstream must select exactly the protocol asked for (and none when none was asked for).
pub async fn connect(
    target: &UpstreamTarget,
    protocol: Option<&str>,
) -> Result<UpstreamConn, UpstreamError> {
    let host = host_label(&target.url);
    match tokio::time::timeout(target.timeout, connect_inner(target, protocol, &host)).await {
        Ok(result) => result,
        Err(_) => Err(UpstreamError::Timeout {
            host,
            after: target.timeout,
        }),
    }
}

async fn connect_inner(
    target: &UpstreamTarget,
    protocol: Option<&str>,
    host: &str,
) -> Result<UpstreamConn, UpstreamError> {
    let url = &target.url;
    let hostname = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let tcp = TcpStream::connect((hostname.as_str(), port))
        .await
        .map_err(|source| UpstreamError::Connect {
            host: host.to_owned(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let stream = if url.scheme() == "wss" {
        let name = rustls_pki_types::ServerName::try_from(hostname.clone()).map_err(|e| {
            UpstreamError::Tls {
                host: host.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            }
        })?;
        let tls = TlsConnector::from(target.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|source| UpstreamError::Tls {
                host: host.to_owned(),
                source,
            })?;
        UpstreamStream::Tls(Box::new(tls))
    } else {
        UpstreamStream::Plain(tcp)
    };
    upgrade(stream, target, protocol, host).await
}

/// The longest upgrade response head (status line and headers) accepted from the upstream.
pub(crate) const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// The response head buffer's first size; it doubles up to [`MAX_RESPONSE_HEAD`] when needed.
const INITIAL_RESPONSE_READ: usize = 1024;
/// The most response headers parsed (hyper's client default); more is a bad handshake.
const MAX_RESPONSE_HEADERS: usize = 100;

async fn upgrade(
    mut stream: UpstreamStream,
    target: &UpstreamTarget,
    protocol: Option<&str>,
    host: &str,
) -> Result<UpstreamConn, UpstreamError> {
    let key = tungstenite::handshake::client::generate_key();
    let request = upgrade_request(target, protocol, &key).map_err(|problem| bad(host, problem))?;
    // Reset or EOF before a complete response: the upstream is not there, not wrong.
    let closed = || UpstreamError::Connect {
        host: host.to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "connection closed before the upgrade response",
        ),
    };
    stream.write_all(&request).await.map_err(|_| closed())?;
    stream.flush().await.map_err(|_| closed())?;
    drop(request);

    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut buf = Vec::with_capacity(INITIAL_RESPONSE_READ);
    let head_len = loop {
        if buf.len() == buf.capacity() {
            if buf.len() >= MAX_RESPONSE_HEAD {
                return Err(bad(host, "upgrade response head is too long"));
            }
            let grown = (buf.capacity() * 2).min(MAX_RESPONSE_HEAD);
            buf.reserve_exact(grown - buf.len());
        }
        let before = buf.len();
        // `buf` has spare capacity here, so `read_buf` fills it without growing the vector.
        let n = stream.read_buf(&mut buf).await.map_err(|_| closed())?;
        if n == 0 {
            return Err(closed());
        }
        // Parsing starts over on each try, so try on the first read (a non-HTTP greeting fails
        // right away) and then only when a line ended: the head can only complete there, and a
        // malformed line is caught at its end. A 1-byte dribble costs one parse per line.
        if before == 0 || buf[before..].contains(&b'\n') {
            if let Some(len) = check_response(&buf, &accept, protocol, host)? {
                break len;
            }
        }
    };
    let prefix = match &buf[head_len..] {
        [] => Bytes::new(),
        // A right-sized copy: the read buffer is not pinned for the connection's lifetime.
        rest => Bytes::copy_from_slice(rest),
    };
    Ok(UpstreamConn { stream, prefix })
}

fn bad(host: &str, problem: &'static str) -> UpstreamError {
    UpstreamError::BadHandshake {
        host: host.to_owned(),
        problem,
    }
}

/// The upgrade request, in one buffer: request line, `Host`, the WebSocket headers, the
/// target's extra headers and the subprotocol when one is asked for.
fn upgrade_request(
    target: &UpstreamTarget,
    protocol: Option<&str>,
    key: &str,
) -> Result<Vec<u8>, &'static str> {
    let url = &target.url;
    if let Some(p) = protocol {
        HeaderValue::from_str(p).map_err(|_| "subprotocol is not a valid token")?;
    }
    let host = url.host_str().unwrap_or_default();
    // `url` percent-encodes controls in the path and query; checked rather than assumed.
    if [url.path(), url.query().unwrap_or_default(), host]
        .iter()
        .any(|part| has_line_break(part.as_bytes()))
    {
        return Err("request target contains a line break");
    }
    let extra: usize = target
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let mut buf = Vec::with_capacity(
        160 + url.path().len()
            + url.query().map_or(0, |q| q.len() + 1)
            + host.len()
            + key.len()
            + protocol.map_or(0, |p| p.len() + 26)
            + extra,
    );
    buf.extend_from_slice(b"GET ");
    buf.extend_from_slice(url.path().as_bytes());
    if let Some(query) = url.query() {
        buf.push(b'?');
        buf.extend_from_slice(query.as_bytes());
    }
    buf.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    buf.extend_from_slice(host.as_bytes());
    if let Some(port) = url.port() {
        use std::io::Write as _;
        let _ = write!(buf, ":{port}");
    }
    buf.extend_from_slice(b"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n");
    buf.extend_from_slice(b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ");
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\r\n");
    for (name, value) in &target.headers {
        if protocol.is_some() && name == header::SEC_WEBSOCKET_PROTOCOL {
            // The negotiated subprotocol replaces one given with the route's headers.
            continue;
        }
        push_header(&mut buf, name.as_str().as_bytes(), value.as_bytes())?;
    }
    if let Some(protocol) = protocol {
        push_header(&mut buf, b"Sec-WebSocket-Protocol", protocol.as_bytes())?;
    }
    buf.extend_from_slice(b"\r\n");
    Ok(buf)
}

/// Appends `name: value` and a line end. `HeaderName` and `HeaderValue` cannot hold CR or LF;
/// checked again here because a line break would let a value inject request headers.
fn push_header(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) -> Result<(), &'static str> {
    if has_line_break(name) || has_line_break(value) {
        return Err("request header contains a line break");
    }
    buf.extend_from_slice(name);
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
    Ok(())
}

fn has_line_break(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b == b'\r' || b == b'\n')
}

/// Parses and checks the upgrade response in `buf`: `Ok(None)` while the head is incomplete,
/// `Ok(Some(head length))` for a valid 101, the matching error otherwise.
fn check_response(
    buf: &[u8],
    accept: &str,
    protocol: Option<&str>,
    host: &str,
) -> Result<Option<usize>, UpstreamError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(bad(host, "no valid http response to the upgrade request")),
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| bad(host, "no valid http response to the upgrade request"))?;
    if status != StatusCode::SWITCHING_PROTOCOLS {
        return Err(UpstreamError::Refused {
            host: host.to_owned(),
            status,
        });
    }
    let mut upgrade = None;
    let mut connection_upgrade = false;
    let mut accepted = None;
    let mut selected = None;
    let mut extensions = false;
    for h in response.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("upgrade") {
            let websocket = h.value.trim_ascii().eq_ignore_ascii_case(b"websocket");
            upgrade = Some(upgrade.unwrap_or(true) && websocket);
        } else if name.eq_ignore_ascii_case("connection") {
            connection_upgrade |= h
                .value
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
        } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
            if accepted.replace(h.value).is_some() {
                return Err(bad(host, "duplicate Sec-WebSocket-Accept"));
            }
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            if selected.replace(h.value).is_some() {
                return Err(bad(host, "duplicate Sec-WebSocket-Protocol"));
            }
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            extensions = true;
        }
    }
    match upgrade {
        None => return Err(bad(host, "missing Upgrade header")),
        Some(false) => return Err(bad(host, "Upgrade header is not websocket")),
        Some(true) => {}
    }
    if !connection_upgrade {
        return Err(bad(host, "Connection header lacks the upgrade token"));
    }
    if accepted != Some(accept.as_bytes()) {
        return Err(bad(host, "wrong or missing Sec-WebSocket-Accept"));
    }
    if extensions {
        return Err(bad(
            host,
            "upstream accepted an extension that was not offered",
        ));
    }
    if selected != protocol.map(str::as_bytes) {
        return Err(UpstreamError::Subprotocol {
            host: host.to_owned(),
            asked: protocol.map(str::to_owned),
            got: selected.map(|v| String::from_utf8_lossy(v).into_owned()),
        });
    }
    Ok(Some(head_len))
}

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
