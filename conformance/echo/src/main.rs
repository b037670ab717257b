//! `guestgate-echo [ADDR]`: the reference upstream for `scripts/ci/autobahn.sh`. A plain
//! tokio-tungstenite echo server, configured like guestgate's `mock::FakeUpstream` with
//! `FakeBehavior::Echo`: text and binary messages are echoed as the same type, pings are
//! answered and closes echoed by tungstenite, messages and frames up to 64 MiB, no extensions.
//! Serves on ADDR (default 127.0.0.1:9001; port 0 picks one) until SIGINT or SIGTERM and
//! prints `listening on ws://ADDR/` once bound.

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const MAX_MESSAGE_SIZE: usize = 64 << 20;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on ws://{}/", listener.local_addr()?);
    let mut term = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(echo(stream));
                }
                Err(e) => eprintln!("accept failed: {e}"),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
        }
    }
}

async fn echo(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE));
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    // The same loop as FakeUpstream's echo: a read error (protocol violation, invalid UTF-8)
    // ends the connection the way tungstenite leaves it.
    while let Some(Ok(msg)) = ws.next().await {
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
