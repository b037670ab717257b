//! The naive message-level relay guestgate is compared with: tokio-tungstenite on both legs,
//! every message decoded (unmasked, reassembled) on one leg and re-encoded (re-masked toward
//! the upstream) on the other with `next()` / `send()`. This is what a straightforward proxy
//! looks like, and the baseline the relay core has to beat.
//!
//! Shared by `benches/relay_core.rs` (in-memory pipes) and the `guestgate-loadgen` binary
//! (loopback sockets, `naive-relay` mode), so both measure the same code.

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;

/// Relays messages between a browser leg (tungstenite in the server role) and an upstream leg
/// (client role) until either side closes or fails. Pings and pongs are answered by
/// tungstenite on each leg and not forwarded; a close is forwarded and ends that direction.
pub async fn relay<B, U>(browser: WebSocketStream<B>, upstream: WebSocketStream<U>)
where
    B: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut to_browser, mut from_browser) = browser.split();
    let (mut to_upstream, mut from_upstream) = upstream.split();
    let up = async {
        while let Some(Ok(msg)) = from_browser.next().await {
            if forward(&mut to_upstream, msg).await.is_break() {
                break;
            }
        }
        // The browser is gone or closed: make sure the upstream hears about it.
        let _ = to_upstream.close().await;
    };
    let down = async {
        while let Some(Ok(msg)) = from_upstream.next().await {
            if forward(&mut to_browser, msg).await.is_break() {
                break;
            }
        }
        let _ = to_browser.close().await;
    };
    tokio::join!(up, down);
}

/// Sends one message on; `Break` once a close went through or the other leg failed.
async fn forward<S>(sink: &mut S, msg: Message) -> std::ops::ControlFlow<()>
where
    S: futures::Sink<Message> + Unpin,
{
    use std::ops::ControlFlow::{Break, Continue};
    match msg {
        Message::Text(_) | Message::Binary(_) => match sink.send(msg).await {
            Ok(()) => Continue(()),
            Err(_) => Break(()),
        },
        Message::Close(_) => {
            let _ = sink.send(msg).await;
            Break(())
        }
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Continue(()),
    }
}
