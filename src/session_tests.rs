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

/// Sets a flag when dropped: stands for the set-up's state (its upstream connection).
struct DropFlag(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_browser_that_resets_during_set_up_drops_the_set_up() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let (ours, browser) = tokio::io::duplex(1024);
    let mut leg = crate::relay::Leg::new(ours);
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = DropFlag(dropped.clone());
    // A set-up that would take an hour (an upstream that never answers).
    let setup = async move {
        let _state = guard;
        tokio::time::sleep(Duration::from_secs(3600)).await;
        "established"
    };
    let watched = super::unless_browser_leaves(&mut leg, setup);
    tokio::pin!(watched);
    let before = tokio::time::timeout(Duration::from_millis(100), &mut watched).await;
    assert!(
        before.is_err(),
        "the set-up ended while the browser was still there"
    );
    assert!(!dropped.load(Ordering::SeqCst));
    drop(browser); // the browser resets
    let started = tokio::time::Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(1), watched).await;
    assert_eq!(out, Ok(None), "the set-up was not cancelled");
    assert!(
        dropped.load(Ordering::SeqCst),
        "the set-up's state is still alive"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn bytes_sent_during_set_up_are_kept_up_to_the_read_ahead_bound() {
    use tokio::io::AsyncWriteExt;

    let (ours, mut browser) = tokio::io::duplex(64 << 10);
    let mut leg = crate::relay::Leg::new(ours);
    let sent: Vec<u8> = (0..super::SETUP_READ_AHEAD + 1000)
        .map(|i| i as u8)
        .collect();
    browser.write_all(&sent).await.unwrap();
    let setup = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        7
    };
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        super::unless_browser_leaves(&mut leg, setup),
    )
    .await;
    assert_eq!(out, Ok(Some(7)), "a browser that speaks early is not gone");
    assert_eq!(&leg.prefix[..], &sent[..super::SETUP_READ_AHEAD]);
    // The rest is still in the socket for the relay.
    let mut rest = vec![0u8; 1000];
    leg.io.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest[..], &sent[super::SETUP_READ_AHEAD..]);
}
