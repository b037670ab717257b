//! Session-level unit tests: what the browser leg receives from guestgate itself.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, DuplexStream, ReadBuf};

use super::send_greeting;

/// A transport that, like a TLS stream, may hold written bytes until it is flushed: writes
/// go to a buffer, only `flush` hands them to the peer.
struct DeliversOnFlush {
    inner: DuplexStream,
    held: Vec<u8>,
}

impl AsyncRead for DeliversOnFlush {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for DeliversOnFlush {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.held.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let this = &mut *self;
            let n = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, &this.held))?;
            this.held.drain(..n);
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test(start_paused = true)]
async fn the_greeting_reaches_a_browser_whose_transport_buffers_until_flush() {
    let (ours, mut browser) = tokio::io::duplex(1024);
    let mut ours = DeliversOnFlush {
        inner: ours,
        held: Vec::new(),
    };
    send_greeting(&mut ours, "hi").await.unwrap();
    let mut got = [0u8; 4];
    let read = tokio::time::timeout(Duration::from_secs(5), browser.read_exact(&mut got)).await;
    assert!(
        read.is_ok(),
        "the greeting was left in the transport's buffer"
    );
    assert_eq!(&got, &[0x81, 2, b'h', b'i']);
}
