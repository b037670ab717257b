//! Byte-level TCP forwarders, the "floor" references of the throughput harness: they do no
//! WebSocket work at all (the upgrade and every frame pass through blindly), so they show
//! what any relay in front of the echo has to pay on this machine just to move the bytes
//! through two loopback TCP legs.
//!
//! * [`Mode::Copy`]: `tokio::io::copy_bidirectional_with_sizes` with a 64 KiB buffer per
//!   direction (each byte copied into user space and out again).
//! * [`Mode::Splice`]: splice(2) through a pipe in each direction, using guestgate's own
//!   [`Splicer`](guestgate::relay::splice::Splicer) (Linux only; no byte enters user space).
//!
//! Every socket has TCP_NODELAY. An end of stream on one leg is passed on as a write
//! shutdown of the other; an error on either direction drops the whole pair.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// Buffer per direction of the copying forwarder.
pub const COPY_BUFFER: usize = 64 << 10;

/// How a forwarder moves bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read into a user-space buffer, write it out (`copy_bidirectional`).
    Copy,
    /// splice(2) socket -> pipe -> socket.
    Splice,
}

impl Mode {
    /// Whether this platform can run the mode.
    pub fn supported(self) -> bool {
        match self {
            Mode::Copy => true,
            Mode::Splice => guestgate::relay::splice::SUPPORTED,
        }
    }
}

/// Accepts connections on `listener` forever; forwards each to a new connection to
/// `upstream`, both directions, until both have ended.
pub async fn serve(listener: TcpListener, upstream: SocketAddr, mode: Mode) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            let Ok(up) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = forward(client, up, mode).await;
        });
    }
}

/// Forwards bytes between `a` and `b` in both directions until both directions ended.
pub async fn forward(a: TcpStream, b: TcpStream, mode: Mode) -> io::Result<()> {
    let _ = a.set_nodelay(true);
    let _ = b.set_nodelay(true);
    match mode {
        Mode::Copy => copy(a, b).await,
        Mode::Splice => splice(a, b).await,
    }
}

async fn copy(mut a: TcpStream, mut b: TcpStream) -> io::Result<()> {
    tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, COPY_BUFFER, COPY_BUFFER)
        .await
        .map(|_| ())
}

#[cfg(target_os = "linux")]
async fn splice(a: TcpStream, b: TcpStream) -> io::Result<()> {
    use std::sync::Arc;
    let (a, b) = (Arc::new(a), Arc::new(b));
    // On the first error the other direction is dropped with the sockets.
    tokio::try_join!(one_way(a.clone(), b.clone()), one_way(b, a)).map(|_| ())
}

#[cfg(not(target_os = "linux"))]
async fn splice(_: TcpStream, _: TcpStream) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "splice(2) forwarding needs Linux",
    ))
}

/// Splices `src` into `dst` until `src` ends, then shuts down `dst`'s write side.
#[cfg(target_os = "linux")]
async fn one_way(
    src: std::sync::Arc<TcpStream>,
    dst: std::sync::Arc<TcpStream>,
) -> io::Result<u64> {
    use guestgate::relay::splice::Splicer;
    /// Asked for per fill; the splicer caps it at its pipe's capacity.
    const FILL: u64 = 1 << 20;
    let mut splicer = Splicer::new(src, dst.clone(), 0);
    let mut total = 0u64;
    loop {
        let n = splicer.fill(FILL).await?;
        if n == 0 {
            break;
        }
        while splicer.in_pipe() > 0 {
            splicer.drain_some().await?;
        }
        total += n as u64;
    }
    let _ = socket2::SockRef::from(&*dst).shutdown(std::net::Shutdown::Write);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A forwarder of `mode` in front of a fresh upstream listener; returns the forwarder's
    /// address and the upstream listener.
    async fn forwarder(mode: Mode) -> (SocketAddr, TcpListener) {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = front.local_addr().unwrap();
        tokio::spawn(serve(front, upstream.local_addr().unwrap(), mode));
        (addr, upstream)
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i >> 8) as u8)
            .collect()
    }

    /// 3 MB each way at the same time (more than a pipe and a socket buffer hold), then each
    /// side's end of stream reaches the other.
    async fn both_directions_and_eof(mode: Mode) {
        let (addr, upstream) = forwarder(mode).await;
        let (up, down) = (pattern(3_000_000, 1), pattern(3_000_000, 2));
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = upstream.accept().await.unwrap();
        let run = async {
            let (mut crd, mut cwr) = client.into_split();
            let (mut srd, mut swr) = server.into_split();
            let client_side = async {
                cwr.write_all(&up).await.unwrap();
                cwr.shutdown().await.unwrap();
                let mut got = Vec::new();
                crd.read_to_end(&mut got).await.unwrap();
                got
            };
            let server_side = async {
                let mut got = Vec::new();
                // Ends only when the client's write shutdown came through the forwarder.
                srd.read_to_end(&mut got).await.unwrap();
                swr.write_all(&down).await.unwrap();
                swr.shutdown().await.unwrap();
                got
            };
            tokio::join!(client_side, server_side)
        };
        let (at_client, at_server) = tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("forwarding timed out");
        assert!(at_server == up, "{mode:?}: upstream got different bytes");
        assert!(at_client == down, "{mode:?}: client got different bytes");
    }

    /// Bytes both ways interleaved (request, response, request...) over one connection.
    async fn ping_pong(mode: Mode) {
        let (addr, upstream) = forwarder(mode).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = upstream.accept().await.unwrap();
        let run = async {
            for round in 0..20u8 {
                let msg = pattern(1000 + round as usize * 5000, round);
                client.write_all(&msg).await.unwrap();
                let mut got = vec![0; msg.len()];
                server.read_exact(&mut got).await.unwrap();
                assert!(got == msg);
                server.write_all(&got[..10]).await.unwrap();
                let mut back = [0u8; 10];
                client.read_exact(&mut back).await.unwrap();
                assert_eq!(back[..], msg[..10]);
            }
            // The upstream hangs up: the client sees end of stream.
            drop(server);
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
        };
        tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("forwarding timed out");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn copy_forwards_both_ways_and_passes_eof_on() {
        both_directions_and_eof(Mode::Copy).await;
        ping_pong(Mode::Copy).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn splice_forwards_both_ways_and_passes_eof_on() {
        if !Mode::Splice.supported() {
            return;
        }
        both_directions_and_eof(Mode::Splice).await;
        ping_pong(Mode::Splice).await;
    }
}
