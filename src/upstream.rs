//! Opening the upstream leg: TCP, TLS for `wss://`, and the WebSocket upgrade through hyper's
//! client, after which the raw stream and any bytes read past the 101 response are handed to
//! the relay.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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

async fn upgrade(
    stream: UpstreamStream,
    target: &UpstreamTarget,
    protocol: Option<&str>,
    host: &str,
) -> Result<UpstreamConn, UpstreamError> {
    let bad = |problem| UpstreamError::BadHandshake {
        host: host.to_owned(),
        problem,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| bad("http handshake failed"))?;
    let conn = tokio::spawn(conn.with_upgrades());

    let key = tungstenite::handshake::client::generate_key();
    let path = match target.url.query() {
        Some(q) => format!("{}?{q}", target.url.path()),
        None => target.url.path().to_owned(),
    };
    let mut request = Request::get(path)
        .header(header::HOST, host_header(&target.url))
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, &key)
        .body(Empty::<Bytes>::new())
        .map_err(|_| bad("could not build the upgrade request"))?;
    for (name, value) in &target.headers {
        request.headers_mut().append(name, value.clone());
    }
    if let Some(protocol) = protocol {
        let value =
            HeaderValue::from_str(protocol).map_err(|_| bad("subprotocol is not a valid token"))?;
        request
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    let response = sender.send_request(request).await.map_err(|e| {
        if e.is_parse() || e.is_parse_status() {
            bad("no valid http response to the upgrade request")
        } else {
            // Reset, EOF or closed before a response: the upstream is not there, not wrong.
            UpstreamError::Connect {
                host: host.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "connection closed before the upgrade response",
                ),
            }
        }
    })?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        conn.abort();
        return Err(UpstreamError::Refused {
            host: host.to_owned(),
            status: response.status(),
        });
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if response
        .headers()
        .get(header::SEC_WEBSOCKET_ACCEPT)
        .map(|v| v.as_bytes())
        != Some(accept.as_bytes())
    {
        return Err(bad("wrong or missing Sec-WebSocket-Accept"));
    }
    if response
        .headers()
        .contains_key(header::SEC_WEBSOCKET_EXTENSIONS)
    {
        return Err(bad("upstream accepted an extension that was not offered"));
    }
    let selected = response
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .cloned();
    if selected.as_ref().map(HeaderValue::as_bytes) != protocol.map(str::as_bytes) {
        conn.abort();
        return Err(UpstreamError::Subprotocol {
            host: host.to_owned(),
            asked: protocol.map(str::to_owned),
            got: selected.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        });
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|_| bad("upgrade did not complete"))?;
    let parts = upgraded
        .downcast::<TokioIo<UpstreamStream>>()
        .map_err(|_| bad("upgraded stream has an unexpected type"))?;
    Ok(UpstreamConn {
        stream: parts.io.into_inner(),
        // A right-sized copy: keeping hyper's read buffer would pin 8 KiB per connection.
        prefix: Bytes::copy_from_slice(&parts.read_buf),
    })
}

fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}
