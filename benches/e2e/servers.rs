//! The servers `guestgate-loadgen` runs as child processes of itself: the naive relay
//! (`naive-relay`) and the byte-level TCP forwarders (`tcp-forward`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::{forward, naive};

/// The naive relay as a server: accept, upgrade, connect the upstream, relay messages.
pub async fn naive_relay(
    listen: SocketAddr,
    upstream: url::Url,
    stdin_eof: bool,
) -> Result<(), String> {
    let up_addr = upstream
        .socket_addrs(|| Some(80))
        .map_err(|e| format!("upstream {upstream}: {e}"))?
        .into_iter()
        .next()
        .ok_or("upstream has no address")?;
    if !listen.ip().is_loopback() || !up_addr.ip().is_loopback() {
        return Err("the naive relay only listens on and connects to loopback addresses".into());
    }
    if stdin_eof {
        exit_on_stdin_eof();
    }
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("binding {listen}: {e}"))?;
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(browser) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            let Ok(up_tcp) = TcpStream::connect(up_addr).await else {
                return;
            };
            let _ = up_tcp.set_nodelay(true);
            let Ok((up, _)) = tokio_tungstenite::client_async(upstream.as_str(), up_tcp).await
            else {
                return;
            };
            naive::relay(browser, up).await;
        });
    }
}

/// Exits the process when standard input closes (the harness holds the pipe open).
fn exit_on_stdin_eof() {
    std::thread::spawn(|| {
        use std::io::Read;
        let mut buf = [0u8; 64];
        while let Ok(n) = std::io::stdin().read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        std::process::exit(0);
    });
}

/// A byte-level TCP forwarder as a server: accept, connect the upstream, forward both ways.
pub async fn tcp_forward(
    listen: SocketAddr,
    upstream: SocketAddr,
    splice: bool,
    stdin_eof: bool,
) -> Result<(), String> {
    if !listen.ip().is_loopback() || !upstream.ip().is_loopback() {
        return Err("the forwarder only listens on and connects to loopback addresses".into());
    }
    let mode = if splice {
        forward::Mode::Splice
    } else {
        forward::Mode::Copy
    };
    if !mode.supported() {
        return Err("--splice needs Linux (splice(2))".into());
    }
    if stdin_eof {
        exit_on_stdin_eof();
    }
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("binding {listen}: {e}"))?;
    forward::serve(listener, upstream, mode).await;
    Ok(())
}
