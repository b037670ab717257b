//! The echo upstream every target talks to: a minimal tokio-tungstenite server that sends each
//! text or binary message straight back and answers a close. Unlike `guestgate::mock`'s
//! `FakeUpstream` it records nothing, so it can run under load for minutes in constant memory.

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tungstenite::Message;

/// Accepts and echoes on `listener` until the process ends.
pub async fn serve(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                tokio::spawn(echo(tcp));
            }
            // EMFILE and friends: back off instead of spinning.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

async fn echo(tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        let sent = match msg {
            Message::Text(_) | Message::Binary(_) => ws.send(msg).await,
            // tungstenite queued the close reply; flush it and hang up (server closes first).
            Message::Close(_) => {
                let _ = ws.flush().await;
                return;
            }
            _ => Ok(()),
        };
        if sent.is_err() {
            return;
        }
    }
}
