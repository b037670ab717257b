//! `guestgate-echo [--fail-with-close] [ADDR]`: the reference upstream for
//! `scripts/ci/autobahn.sh`. A plain tokio-tungstenite echo server, configured like guestgate's
//! `mock::FakeUpstream` with `FakeBehavior::Echo`: text and binary messages are echoed as the
//! same type, pings are answered and closes echoed by tungstenite, messages and frames up to
//! 64 MiB, no extensions. Serves on ADDR (default 127.0.0.1:9001; port 0 picks one) until
//! SIGINT or SIGTERM and prints `listening on ws://ADDR/` once bound.
//!
//! When a read fails (invalid UTF-8, a protocol violation), tungstenite leaves the connection
//! to the caller, and by default the echo just drops it, as FakeUpstream does: the peer sees
//! the TCP connection end without a close frame. With `--fail-with-close` it fails the
//! connection the way RFC 6455 section 7.1.7 recommends instead: it sends a Close frame first,
//! 1007 for invalid UTF-8 and 1002 for a protocol violation (1009 for a message over the size
//! limit, section 7.4.1), then closes its sending side and waits briefly for the peer to hang
//! up.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Message, WebSocketConfig};

const MAX_MESSAGE_SIZE: usize = 64 << 20;

/// How long `--fail-with-close` waits for the peer to hang up after its close frame.
const LINGER: Duration = Duration::from_secs(2);

const USAGE: &str = "usage: guestgate-echo [--fail-with-close] [ADDR]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut addr = None;
    let mut fail_with_close = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--fail-with-close" => fail_with_close = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ if arg.starts_with('-') || addr.is_some() => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
            _ => addr = Some(arg),
        }
    }
    let addr = addr.unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    let mode = if fail_with_close {
        " (read errors fail with a close frame)"
    } else {
        ""
    };
    println!("listening on ws://{}/{mode}", listener.local_addr()?);
    let mut term = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(echo(stream, fail_with_close));
                }
                Err(e) => eprintln!("accept failed: {e}"),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
        }
    }
}

async fn echo(stream: TcpStream, fail_with_close: bool) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE));
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    // The same loop as FakeUpstream's echo: by default a read error (protocol violation,
    // invalid UTF-8) ends the connection the way tungstenite leaves it.
    loop {
        let msg = match ws.next().await {
            Some(Ok(msg)) => msg,
            Some(Err(e)) => {
                if fail_with_close {
                    fail(ws, &e).await;
                }
                return;
            }
            None => return,
        };
        if msg.is_close() {
            // tungstenite queued the same close as the reply; flush it and hang up.
            let _ = ws.flush().await;
            return;
        }
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            return;
        }
    }
}

/// The close code RFC 6455 (section 7.4.1) gives a read error, if it is one the endpoint
/// must answer by failing the connection (and not a lost or already closed transport).
fn close_for(e: &Error) -> Option<(CloseCode, &'static str)> {
    match e {
        Error::Utf8(_) => Some((CloseCode::Invalid, "invalid UTF-8")),
        Error::Protocol(_) => Some((CloseCode::Protocol, "protocol error")),
        Error::Capacity(_) => Some((CloseCode::Size, "message too big")),
        _ => None,
    }
}

/// Fails the connection after a read error the RFC 6455 7.1.7 way: close frame, then hang up.
///
/// tokio-tungstenite's stream is fused after the error (further reads return `None`), but its
/// sink still works: tungstenite reports invalid UTF-8 and protocol violations without
/// changing its state, so the close goes out as a normal close frame. When the state no
/// longer allows one (the peer had closed or reset first), nothing is sent. After the frame,
/// the sending side is shut down (the server closes TCP first, section 7.1.1) and whatever the
/// peer still sends (its close reply) is read and discarded until it hangs up, at most for
/// `LINGER`, so that unread data does not turn the close into a reset.
async fn fail(mut ws: WebSocketStream<TcpStream>, e: &Error) {
    let Some((code, reason)) = close_for(e) else {
        return;
    };
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    if ws.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let tcp = ws.get_mut();
    if tcp.shutdown().await.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
}
