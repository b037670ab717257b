//! Plain HTTP on the fake's listener: the request head is read first; a WebSocket upgrade goes
//! on to tungstenite with the head replayed, anything else gets one plain HTTP answer and the
//! connection closes:
//!
//! - `GET /webdeployments/v1/deployments/{id}/config.json`: a known deployment's public config;
//! - `GET /api/v2/webmessaging/messages`: the history REST API (`history`);
//! - `PUT`, `GET .../download` and `OPTIONS` under `/storage/`: the attachment storage
//!   (`attachments`);
//! - `POST .../token/oauthcodegrantjwtexchange`, `POST .../token/refresh` and `DELETE
//!   .../token/revoke` under `/api/v2/webdeployments/`: authenticated messaging (`auth`);
//! - `GET /idp/authorize` and `GET /idp/approve`: the stand-in identity provider (`idp`);
//! - 404 for other paths, 405 for other methods.
//!
//! Heads are bounded ([`MAX_HEAD`]) and so are bodies ([`MAX_UPLOAD_BYTES`] for uploads,
//! [`MAX_JSON_BODY`] for the token endpoints); each has a deadline.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::MAX_UPLOAD_BYTES;
use super::attachments::{STORAGE_PREFIX, preflight};
use super::auth::{Endpoint, MAX_JSON_BODY};
use super::idp::{APPROVE_PATH, AUTHORIZE_PATH};
use super::protocol::State;

/// Longest request head the fake reads before giving up on a connection.
const MAX_HEAD: usize = 16 * 1024;

/// How long a client may take to send its request head.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);

/// How long a client may take to send a request body.
const BODY_DEADLINE: Duration = Duration::from_secs(30);

/// How long the fake keeps reading (and discarding) after a plain answer, until the client
/// closes.
const LINGER: Duration = Duration::from_secs(2);

/// Where a deployment's public config lives, around its id.
const CONFIG_PREFIX: &str = "/webdeployments/v1/deployments/";
const CONFIG_SUFFIX: &str = "/config.json";

/// The history REST path.
pub(super) const HISTORY_PATH: &str = "/api/v2/webmessaging/messages";

/// A TCP stream whose first bytes (a request head already read) are served again.
#[derive(Debug)]
pub(super) struct Replayed {
    head: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for Replayed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.head.len() {
            let n = buf.remaining().min(this.head.len() - this.pos);
            buf.put_slice(&this.head[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replayed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// What the first request on a connection is.
pub(super) enum Incoming {
    /// A WebSocket upgrade: hand the stream (head replayed) to tungstenite.
    Upgrade(Replayed),
    /// Plain HTTP: already answered.
    Answered,
    /// The client went away, sent too much, or took too long.
    Gone,
}

/// A plain request's head.
#[derive(Debug)]
pub(super) struct PlainRequest {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) query: String,
    /// Every header as sent, in order.
    pub(super) headers: Vec<(String, String)>,
}

impl PlainRequest {
    fn parse(head: &str) -> Self {
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or("").split(' ');
        let method = request_line.next().unwrap_or("").to_owned();
        let target = request_line.next().unwrap_or("");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let headers = lines
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        PlainRequest {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
        }
    }

    /// Every value of a header, by case-insensitive name.
    pub(super) fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of a header.
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).first().copied()
    }

    /// The first value of a query parameter, percent-decoded.
    pub(super) fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// `Content-Length`, when there is exactly one and it is a number.
    pub(super) fn content_length(&self) -> Option<u64> {
        match self.header_values("content-length").as_slice() {
            [one] => one.parse().ok(),
            _ => None,
        }
    }

    /// Whether the body is chunked (the fake's storage wants a length, like S3).
    pub(super) fn chunked(&self) -> bool {
        self.header("transfer-encoding").is_some()
    }

    fn wants_upgrade(&self) -> bool {
        self.header_values("upgrade")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("websocket"))
    }
}

/// A plain answer.
#[derive(Debug)]
pub(super) struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    pub(super) fn new(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Reply {
            status,
            headers: vec![("content-type", content_type.to_owned())],
            body,
        }
    }

    /// A JSON answer.
    pub(super) fn json(status: u16, body: &Value) -> Self {
        Reply::new(status, "application/json", body.to_string().into_bytes())
    }

    /// An answer without a body or content type (e.g. 204).
    pub(super) fn empty(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A plain-text answer.
    pub(super) fn text(status: u16, body: &str) -> Self {
        Reply::new(status, "text/plain", body.as_bytes().to_vec())
    }

    /// Adds a header.
    pub(super) fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Lets any origin read the answer (what a storage bucket's CORS rule does).
    pub(super) fn with_cors(self) -> Self {
        self.header("access-control-allow-origin", "*".into())
            .header("access-control-expose-headers", "ETag".into())
    }

    fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            204 => "No Content",
            302 => "Found",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            411 => "Length Required",
            413 => "Payload Too Large",
            415 => "Unsupported Media Type",
            429 => "Too Many Requests",
            _ => "Error",
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason());
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        // A 204 has no body, so no length either (RFC 9110, section 8.6).
        if self.status != 204 {
            out.push_str(&format!("content-length: {}\r\n", self.body.len()));
        }
        out.push_str("connection: close\r\n\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Reads the request head and answers it unless it asks for a WebSocket upgrade.
pub(super) async fn route(mut stream: TcpStream, state: &State) -> Incoming {
    let (buf, head_len) = match tokio::time::timeout(HEAD_DEADLINE, read_head(&mut stream)).await {
        Ok(Some(read)) => read,
        _ => return Incoming::Gone,
    };
    let req = PlainRequest::parse(&String::from_utf8_lossy(&buf[..head_len]));
    if req.wants_upgrade() {
        return Incoming::Upgrade(Replayed {
            head: buf,
            pos: 0,
            inner: stream,
        });
    }
    state.config_requests.push(req.path.clone());
    let host = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let reply = if req.content_length().unwrap_or(0) > MAX_UPLOAD_BYTES as u64 {
        Reply::text(413, "Payload Too Large")
    } else if req.method == "PUT" && req.path.starts_with(STORAGE_PREFIX) {
        upload(&mut stream, state, &req, buf[head_len..].to_vec()).await
    } else if let Some(e) = Endpoint::at(&req.path).filter(|e| e.method() == req.method) {
        let body = match e {
            Endpoint::Revoke => Ok(Vec::new()),
            _ => json_body(&mut stream, &req, buf[head_len..].to_vec()).await,
        };
        state.auth_rest(e, &req, body)
    } else {
        answer(state, &req, &host)
    };
    let _ = stream.write_all(&reply.to_bytes()).await;
    let _ = stream.shutdown().await;
    // Closing with unread bytes (a refused upload's body) would reset the connection, and the
    // client might lose the answer: read until the client closes, for a little while.
    let linger = async {
        let mut sink = [0u8; 16 * 1024];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(LINGER, linger).await;
    Incoming::Answered
}

/// A `PUT` to an upload URL: checked, then its body read (`early` is what came with the head).
async fn upload(
    stream: &mut TcpStream,
    state: &State,
    req: &PlainRequest,
    early: Vec<u8>,
) -> Reply {
    let id = &req.path[STORAGE_PREFIX.len()..];
    if id.contains('/') {
        return Reply::text(405, "Method Not Allowed");
    }
    let expected = match state.upload_check(req, id) {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    match tokio::time::timeout(BODY_DEADLINE, read_body(stream, early, expected)).await {
        Ok(Some(body)) => state.upload_store(id, body),
        _ => Reply::text(400, "Incomplete body"),
    }
}

/// Reads a token request's JSON body (`early` is what came with the head), or the answer to
/// give instead: 411 without a length, 413 over [`MAX_JSON_BODY`], 400 when cut short.
async fn json_body(
    stream: &mut TcpStream,
    req: &PlainRequest,
    early: Vec<u8>,
) -> Result<Vec<u8>, Reply> {
    let len = match req.content_length() {
        Some(n) if !req.chunked() => n,
        _ => return Err(Reply::text(411, "Length Required")),
    };
    if len > MAX_JSON_BODY as u64 {
        return Err(Reply::text(413, "Payload Too Large"));
    }
    match tokio::time::timeout(BODY_DEADLINE, read_body(stream, early, len as usize)).await {
        Ok(Some(body)) => Ok(body),
        _ => Err(Reply::text(400, "Incomplete body")),
    }
}

/// The answer to any plain request but an upload or a token request.
fn answer(state: &State, req: &PlainRequest, host: &str) -> Reply {
    if let Some(rest) = req.path.strip_prefix(STORAGE_PREFIX) {
        return match (req.method.as_str(), rest.split_once('/')) {
            ("OPTIONS", _) => preflight(req),
            ("GET", Some((id, "download"))) => state.download(req, id),
            _ => Reply::new(
                403,
                "application/xml",
                b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>".to_vec(),
            )
            .with_cors(),
        };
    }
    if req.method != "GET" || Endpoint::at(&req.path).is_some() {
        return Reply::text(405, "Method Not Allowed");
    }
    if req.path == AUTHORIZE_PATH {
        return state.idp_authorize(req);
    }
    if req.path == APPROVE_PATH {
        return state.idp_approve(req);
    }
    if req.path == HISTORY_PATH {
        let (status, body) = state.history_page(req.header("authorization"), &req.query);
        return Reply::json(status, &body);
    }
    let id = req
        .path
        .strip_prefix(CONFIG_PREFIX)
        .and_then(|rest| rest.strip_suffix(CONFIG_SUFFIX))
        .filter(|id| !id.contains('/'));
    match id.and_then(|id| state.public_config(id, host)) {
        Some(body) => Reply::json(200, &body),
        None => Reply::text(404, "Not Found"),
    }
}

/// Reads up to the blank line ending a request head; returns everything read and the head's
/// length (body bytes may follow). `None` if the peer closes first or the head is too long.
async fn read_head(stream: &mut TcpStream) -> Option<(Vec<u8>, usize)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        let searched_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf[searched_from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            return Some((buf, searched_from + at + 4));
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
    }
}

/// Reads a body of exactly `len` bytes, `early` included; `None` if the peer stops short or
/// sends more with the head than announced.
async fn read_body(stream: &mut TcpStream, mut body: Vec<u8>, len: usize) -> Option<Vec<u8>> {
    if body.len() > len {
        return None;
    }
    body.reserve_exact(len - body.len());
    let mut chunk = vec![0u8; 64 * 1024];
    while body.len() < len {
        let want = (len - body.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..want]).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(body)
}
