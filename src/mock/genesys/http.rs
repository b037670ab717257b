//! Plain HTTP on the fake's listener: the request head is read first; a WebSocket upgrade goes
//! on to tungstenite with the head replayed, anything else gets a plain HTTP answer (the
//! public `config.json` of a known deployment, 404 for other paths, 405 for other methods).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::protocol::State;

/// Longest request head the fake reads before giving up on a connection.
const MAX_HEAD: usize = 16 * 1024;

/// How long a client may take to send its request head.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);

/// Where a deployment's public config lives, around its id.
const CONFIG_PREFIX: &str = "/webdeployments/v1/deployments/";
const CONFIG_SUFFIX: &str = "/config.json";

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

/// Reads the request head and answers it unless it asks for a WebSocket upgrade.
pub(super) async fn route(mut stream: TcpStream, state: &State) -> Incoming {
    let head = match tokio::time::timeout(HEAD_DEADLINE, read_head(&mut stream)).await {
        Ok(Some(head)) => head,
        _ => return Incoming::Gone,
    };
    let text = String::from_utf8_lossy(&head).into_owned();
    let wants_upgrade = text.lines().skip(1).any(|line| {
        line.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("upgrade") && v.trim().eq_ignore_ascii_case("websocket")
        })
    });
    if wants_upgrade {
        return Incoming::Upgrade(Replayed {
            head,
            pos: 0,
            inner: stream,
        });
    }
    let mut request_line = text.lines().next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("");
    let target = request_line.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    state.config_requests.push(path.to_owned());
    let host = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (status, body) = answer(state, method, path, &host);
    let (reason, content_type) = match status {
        200 => ("OK", "application/json"),
        404 => ("Not Found", "text/plain"),
        _ => ("Method Not Allowed", "text/plain"),
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    Incoming::Answered
}

/// Status and body for a plain request.
fn answer(state: &State, method: &str, path: &str, host: &str) -> (u16, String) {
    if method != "GET" {
        return (405, "Method Not Allowed".into());
    }
    let id = path
        .strip_prefix(CONFIG_PREFIX)
        .and_then(|rest| rest.strip_suffix(CONFIG_SUFFIX))
        .filter(|id| !id.contains('/'));
    match id.and_then(|id| state.public_config(id, host)) {
        Some(body) => (200, body.to_string()),
        None => (404, "Not Found".into()),
    }
}

/// Reads up to the blank line ending a request head; `None` if the peer closes first or the
/// head is too long.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&chunk[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Some(head);
        }
        if head.len() > MAX_HEAD {
            return None;
        }
    }
}
