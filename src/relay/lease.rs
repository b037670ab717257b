//! Read buffers that are held only while a connection has bytes in flight.
//!
//! An idle relayed connection should cost a few hundred bytes, not two read buffers. A pump
//! borrows a buffer from a per-thread free list just for the duration of a read poll; if the
//! read is not ready the buffer goes straight back, so parked connections hold none. Busy
//! connections keep theirs across reads, so there is no allocation per frame or per read.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, ReadBuf};

/// Bytes of spare buffers kept per thread for reuse; beyond this they are freed.
const POOL_BYTES: usize = 4 << 20;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// Takes a buffer of `size` bytes from this thread's pool, or allocates one.
fn take(size: usize) -> Box<[u8]> {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        while let Some(buf) = pool.pop() {
            if buf.len() == size {
                return buf;
            }
        }
        vec![0u8; size].into_boxed_slice()
    })
}

/// Returns a buffer to this thread's pool.
fn give_back(buf: Box<[u8]>) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if (pool.len() + 1) * buf.len() <= POOL_BYTES {
            pool.push(buf);
        }
    });
}

/// A buffer slot that is empty while the connection is idle.
#[derive(Default)]
pub struct Lease {
    buf: Option<Box<[u8]>>,
    size: usize,
}

impl Lease {
    /// An empty slot that will lease buffers of `size` bytes.
    pub fn new(size: usize) -> Self {
        Self { buf: None, size }
    }

    /// The leased bytes (empty when nothing is leased).
    pub fn bytes(&self) -> &[u8] {
        self.buf.as_deref().unwrap_or(&[])
    }

    /// The leased bytes, mutably (empty when nothing is leased).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.buf.as_deref_mut().unwrap_or(&mut [])
    }

    /// True while a buffer is held.
    #[cfg(test)]
    pub fn is_held(&self) -> bool {
        self.buf.is_some()
    }

    /// Gives the buffer back; the caller must have no unprocessed bytes in it.
    pub fn release(&mut self) {
        if let Some(buf) = self.buf.take() {
            give_back(buf);
        }
    }

    /// Reads from `src` into the buffer after the first `keep` bytes. When the read is not
    /// ready and `keep` is zero the buffer is released before parking. Returns bytes read
    /// (0 means end of stream).
    pub async fn read_from<R: AsyncRead + Unpin>(
        &mut self,
        src: &mut R,
        keep: usize,
    ) -> io::Result<usize> {
        poll_fn(|cx| {
            let size = self.size;
            let buf = self.buf.get_or_insert_with(|| take(size));
            let mut rb = ReadBuf::new(&mut buf[keep..]);
            match Pin::new(&mut *src).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => {
                    if keep == 0 {
                        self.release();
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn parked_read_holds_no_buffer_and_busy_read_keeps_it() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let mut lease = Lease::new(1024);
        let read = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            lease.read_from(&mut b, 0),
        )
        .await;
        assert!(read.is_err(), "nothing was written, the read must park");
        assert!(!lease.is_held(), "a parked read must not hold a buffer");

        a.write_all(b"hello").await.unwrap();
        let n = lease.read_from(&mut b, 0).await.unwrap();
        assert_eq!(&lease.bytes()[..n], b"hello");
        assert!(lease.is_held());
    }

    #[tokio::test]
    async fn keeps_a_prefix_when_reading_more() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let mut lease = Lease::new(16);
        a.write_all(b"ab").await.unwrap();
        lease.read_from(&mut b, 0).await.unwrap();
        a.write_all(b"cd").await.unwrap();
        let n = lease.read_from(&mut b, 2).await.unwrap();
        assert_eq!(&lease.bytes()[..2 + n], b"abcd");
    }
}
