//! Plain TCP legs: telling them apart from TLS ones, and splitting them into halves that keep
//! the socket reachable, so the relay can hand payload bytes to the kernel (see `splice`).
//!
//! tokio's own split halves hide the socket; these share it through an `Arc` and implement
//! reads and writes with the socket's readiness and `try_read`/`try_write`, as tokio does.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A relay transport that may be a plain TCP socket underneath. Both legs being plain TCP
/// lets the relay move large payloads socket to socket without copying them through user
/// space.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// True when nothing (such as TLS) sits between the relay and the TCP socket.
    fn is_plain_tcp(&self) -> bool;

    /// The TCP socket, when [`Transport::is_plain_tcp`]; otherwise `self` back.
    fn into_plain_tcp(self) -> Result<TcpStream, Self>
    where
        Self: Sized;

    /// A second handle on the plain TCP socket (a duplicated descriptor), kept aside so a
    /// close frame can still be written if the task owning the transport panics. `None` for
    /// TLS: its session state goes down with the task.
    fn spare_handle(&self) -> Option<socket2::Socket> {
        None
    }
}

/// An in-process leg (a preset's mediator sits at its other end).
impl Transport for tokio::io::DuplexStream {
    fn is_plain_tcp(&self) -> bool {
        false
    }

    fn into_plain_tcp(self) -> Result<TcpStream, Self> {
        Err(self)
    }
}

impl Transport for TcpStream {
    fn is_plain_tcp(&self) -> bool {
        true
    }

    fn into_plain_tcp(self) -> Result<TcpStream, Self> {
        Ok(self)
    }

    fn spare_handle(&self) -> Option<socket2::Socket> {
        socket2::SockRef::from(self).try_clone().ok()
    }
}

impl Transport for Box<tokio_rustls::server::TlsStream<TcpStream>> {
    fn is_plain_tcp(&self) -> bool {
        false
    }

    fn into_plain_tcp(self) -> Result<TcpStream, Self> {
        Err(self)
    }

    fn spare_handle(&self) -> Option<socket2::Socket> {
        None
    }
}

/// Splits a socket into a read half and a write half that both keep it reachable.
pub fn split(stream: TcpStream) -> (TcpRead, TcpWrite) {
    let stream = Arc::new(stream);
    (TcpRead(stream.clone()), TcpWrite(stream))
}

/// The read half of [`split`].
#[derive(Debug)]
pub struct TcpRead(Arc<TcpStream>);

/// The write half of [`split`]. Shutting it down sends FIN; dropping it does not.
#[derive(Debug)]
pub struct TcpWrite(Arc<TcpStream>);

impl TcpRead {
    /// The socket.
    pub fn socket(&self) -> &Arc<TcpStream> {
        &self.0
    }
}

impl TcpWrite {
    /// The socket.
    pub fn socket(&self) -> &Arc<TcpStream> {
        &self.0
    }
}

impl AsyncRead for TcpRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let asked = unfilled.len();
            let read = short_io_clears_readiness(&self.0, Interest::READABLE, asked, || {
                recv(&self.0, unfilled)
            });
            match read {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for TcpWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            let wrote = short_io_clears_readiness(&self.0, Interest::WRITABLE, buf.len(), || {
                send(&self.0, buf)
            });
            match wrote {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(self.0.as_ref()).shutdown(std::net::Shutdown::Write))
    }
}

/// One `recv` on the socket. Linux: a direct system call (rustix), skipping the C library's
/// wrapper, which switches thread cancellation on and off around every call (about 1.5 % of
/// the relay's CPU at 64-byte messages).
#[cfg(target_os = "linux")]
fn recv(socket: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::net::recv(socket, buf, rustix::net::RecvFlags::empty())?.0)
}

/// One `send` on the socket, without SIGPIPE (see [`recv`] on the direct system call).
#[cfg(target_os = "linux")]
fn send(socket: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    Ok(rustix::net::send(
        socket,
        buf,
        rustix::net::SendFlags::NOSIGNAL,
    )?)
}

#[cfg(not(target_os = "linux"))]
fn recv(socket: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::Read;
    (&*socket2::SockRef::from(socket)).read(buf)
}

#[cfg(not(target_os = "linux"))]
fn send(socket: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    use std::io::Write;
    (&*socket2::SockRef::from(socket)).write(buf)
}

/// Runs one read or write `op` of `asked` bytes under the socket's readiness. As in tokio's own `TcpStream`, a transfer shorter than asked means the socket is
/// drained (or full), so the readiness is cleared right away instead of one more system call
/// failing with `EAGAIN` first. `try_io` clears it when its closure reports `WouldBlock`, and
/// only for the readiness event it started with, so a wake-up arriving meanwhile is kept.
fn short_io_clears_readiness(
    socket: &TcpStream,
    interest: Interest,
    asked: usize,
    op: impl FnOnce() -> io::Result<usize>,
) -> io::Result<usize> {
    let mut done = 0;
    let result = socket.try_io(interest, || {
        done = op()?;
        if 0 < done && done < asked {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(done)
        }
    });
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && done > 0 => Ok(done),
        other => other,
    }
}

/// Two connected loopback sockets (client, accepted), for tests.
#[cfg(test)]
pub(crate) async fn loopback_pair() -> (TcpStream, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use loopback_pair as pair;

    #[tokio::test]
    async fn halves_carry_bytes_both_ways_and_shutdown_sends_eof() {
        let (ours, mut peer) = pair().await;
        let (mut rd, mut wr) = split(ours);
        wr.write_all(b"to peer").await.unwrap();
        let mut got = [0u8; 7];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"to peer");

        peer.write_all(b"to us").await.unwrap();
        let mut got = [0u8; 5];
        rd.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"to us");

        wr.shutdown().await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(
            peer.read_to_end(&mut rest).await.unwrap(),
            0,
            "FIN after shutdown"
        );
    }

    #[tokio::test]
    async fn a_read_parks_until_bytes_arrive() {
        let (ours, mut peer) = pair().await;
        let (mut rd, _wr) = split(ours);
        let mut buf = [0u8; 4];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(30), rd.read(&mut buf)).await;
        assert!(early.is_err(), "nothing was sent, the read must wait");
        peer.write_all(b"late").await.unwrap();
        let n = rd.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"late");
    }
}
