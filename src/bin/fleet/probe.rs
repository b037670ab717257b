//! One-shot probes for the key rotation: open a conversation and keep its resume ticket, or
//! present a kept ticket and report whether it resumed (`newSession: false`) or started
//! afresh (the ticket no longer opens: expired or its key retired).
//!
//! Tickets are bearer credentials: they are read from and written to files (created 0600),
//! never printed. The probe prints one JSON line: `{"newSession":true|false|null}`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio::time::timeout;
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;

use crate::wire::{self, Seen};

/// Where the probe connects and what it presents.
pub struct Probe<'a> {
    /// The load balancer's frontend.
    pub target: SocketAddr,
    /// The route's path.
    pub path: &'a str,
    /// The `Origin` to send.
    pub origin: &'a str,
    /// The probe's source address.
    pub source: IpAddr,
    /// A ticket file to present (first-frame), if any.
    pub ticket_in: Option<&'a Path>,
    /// Where to keep the ticket `SessionReady` carries, if anywhere.
    pub ticket_out: Option<&'a Path>,
    /// Bound on the whole probe.
    pub limit: Duration,
}

/// Runs the probe: the greeting's `newSession`, or why there was none.
pub async fn run(p: &Probe<'_>) -> Result<Option<bool>, String> {
    timeout(p.limit, greet(p))
        .await
        .map_err(|_| format!("no SessionReady within {:?}", p.limit))?
}

async fn greet(p: &Probe<'_>) -> Result<Option<bool>, String> {
    let ticket = match p.ticket_in {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("reading the ticket file: {}", e.kind()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(SocketAddr::new(p.source, 0))
        .map_err(|e| format!("bind {}: {e}", p.source))?;
    let tcp = socket
        .connect(p.target)
        .await
        .map_err(|e| format!("connect {}: {e}", p.target))?;
    let url = format!(
        "ws://{}{}",
        p.target,
        wire::path_and_query(p.path, ticket.is_some(), None)
    );
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        http::header::ORIGIN,
        p.origin.parse().map_err(|_| "bad origin".to_owned())?,
    );
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .map_err(|e| match e {
            tungstenite::Error::Http(r) => format!("upgrade refused: HTTP {}", r.status()),
            other => format!("upgrade failed: {other}"),
        })?;
    if let Some(t) = &ticket {
        ws.send(Message::text(wire::resume_frame(t)))
            .await
            .map_err(|e| format!("sending the resume frame: {e}"))?;
    }
    let greeting = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => break wire::classify(t.as_str()),
            Some(Ok(Message::Close(f))) => {
                return Err(format!(
                    "closed before SessionReady: {:?}",
                    f.map(|f| u16::from(f.code))
                ));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("reading: {e}")),
            None => return Err("connection ended before SessionReady".into()),
        }
    };
    let Seen::SessionReady {
        new_session,
        ticket,
    } = greeting
    else {
        return Err(format!("first frame was not SessionReady: {greeting:?}"));
    };
    if let (Some(path), Some(t)) = (p.ticket_out, ticket) {
        write_private(path, &t).map_err(|e| format!("writing the ticket file: {}", e.kind()))?;
    }
    let _ = timeout(Duration::from_secs(2), ws.close(None)).await;
    Ok(new_session)
}

/// Writes `text` to a file only the owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)?.write_all(text.as_bytes())
}
