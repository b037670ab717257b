//! Read buffers that are held only while a connection has bytes in flight.
//!
//! An idle relayed connection should cost a few hundred bytes, not two read buffers. A pump
//! borrows a buffer from a per-thread free list just for the duration of a read poll; if the
//! read is not ready the buffer goes straight back, so parked connections hold none. Busy
//! connections keep theirs across reads, so there is no allocation per frame or per read.
//! Spares are pooled per buffer size (routes may differ), within one byte bound per thread.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, ReadBuf};

/// Bytes of spare buffers kept per thread for reuse, all sizes together; beyond this they are
/// freed.
const POOL_BYTES: usize = 4 << 20;

/// Spare buffers, one stack per buffer size: routes may configure different
/// `relay.buffer_bytes`, and a connection of one route must neither get a buffer of another's
/// size nor throw the other's spares away.
#[derive(Default)]
struct Pool {
    /// (buffer size, spare buffers of exactly that size). A handful of entries: one per
    /// distinct configured size.
    by_size: Vec<(usize, Vec<Box<[u8]>>)>,
    /// Bytes held in all stacks.
    bytes: usize,
}

impl Pool {
    fn take(&mut self, size: usize) -> Option<Box<[u8]>> {
        let (_, stack) = self.by_size.iter_mut().find(|(s, _)| *s == size)?;
        let buf = stack.pop()?;
        self.bytes -= buf.len();
        Some(buf)
    }

    fn give_back(&mut self, buf: Box<[u8]>) {
        let size = buf.len();
        if self.bytes + size > POOL_BYTES {
            return; // freed
        }
        self.bytes += size;
        match self.by_size.iter_mut().find(|(s, _)| *s == size) {
            Some((_, stack)) => stack.push(buf),
            None => self.by_size.push((size, vec![buf])),
        }
    }
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// Takes a buffer of `size` bytes from this thread's pool, or allocates one.
fn take(size: usize) -> Box<[u8]> {
    POOL.with(|p| p.borrow_mut().take(size))
        .unwrap_or_else(|| vec![0u8; size].into_boxed_slice())
}

/// Returns a buffer to this thread's pool (or frees it when the pool is full).
fn give_back(buf: Box<[u8]>) {
    POOL.with(|p| p.borrow_mut().give_back(buf));
}

#[cfg(test)]
fn pooled_of(pool: &Pool, size: usize) -> usize {
    pool.by_size
        .iter()
        .find(|(s, _)| *s == size)
        .map_or(0, |(_, stack)| stack.len())
}

#[cfg(test)]
fn pooled_bytes(pool: &Pool) -> usize {
    let counted: usize = pool
        .by_size
        .iter()
        .flat_map(|(_, st)| st)
        .map(|b| b.len())
        .sum();
    assert_eq!(counted, pool.bytes, "the running byte count is exact");
    counted
}

/// The longest frame header (2 bytes, 8 of extended length, 4 of mask): a parked read that
/// keeps no more than this moves it out of the buffer and gives the buffer back.
pub const INLINE: usize = 14;

/// A buffer slot that is empty while the connection is idle.
#[derive(Default)]
pub struct Lease {
    buf: Option<Box<[u8]>>,
    size: usize,
    /// While no buffer is held: the start of a frame header that is still incomplete (a peer
    /// trickling a header byte by byte pins 14 bytes here, not a whole buffer).
    inline: [u8; INLINE],
    inline_len: u8,
}

impl Lease {
    /// An empty slot that will lease buffers of `size` bytes.
    pub fn new(size: usize) -> Self {
        Self {
            buf: None,
            size,
            inline: [0; INLINE],
            inline_len: 0,
        }
    }

    /// The leased bytes; without a buffer, the kept start of an incomplete header (or none).
    pub fn bytes(&self) -> &[u8] {
        match &self.buf {
            Some(buf) => buf,
            None => &self.inline[..usize::from(self.inline_len)],
        }
    }

    /// The leased bytes, mutably; without a buffer, the kept start of an incomplete header.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.buf {
            Some(buf) => buf,
            None => &mut self.inline[..usize::from(self.inline_len)],
        }
    }

    /// A buffer, holding whatever was kept inline at its front.
    fn buffer(&mut self) -> &mut [u8] {
        let (size, kept) = (self.size, usize::from(self.inline_len));
        let buf = self.buf.get_or_insert_with(|| take(size));
        buf[..kept].copy_from_slice(&self.inline[..kept]);
        self.inline_len = 0;
        buf
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
    /// ready and `keep` is at most [`INLINE`] bytes, those are moved inline and the buffer is
    /// released before parking. Returns bytes read (0 means end of stream).
    pub async fn read_from<R: AsyncRead + Unpin>(
        &mut self,
        src: &mut R,
        keep: usize,
    ) -> io::Result<usize> {
        poll_fn(|cx| {
            let buf = self.buffer();
            let mut rb = ReadBuf::new(&mut buf[keep..]);
            match Pin::new(&mut *src).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => {
                    if keep <= INLINE {
                        self.park(keep);
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl Lease {
    /// Moves the first `keep` (at most [`INLINE`]) bytes inline and gives the buffer back.
    fn park(&mut self, keep: usize) {
        if let Some(buf) = self.buf.take() {
            self.inline[..keep].copy_from_slice(&buf[..keep]);
            self.inline_len = keep as u8;
            give_back(buf);
        }
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

    /// Spare buffers of `size` bytes in this thread's pool.
    fn pooled(size: usize) -> usize {
        POOL.with(|p| pooled_of(&p.borrow(), size))
    }

    #[test]
    fn buffers_of_different_sizes_are_all_kept_for_reuse() {
        // Two routes with different `buffer_bytes` on one thread.
        let (small, big) = (take(1024), take(2048));
        give_back(big);
        give_back(small);
        drop(take(2048));
        assert_eq!(
            pooled(1024),
            1,
            "taking a big buffer threw the small one away"
        );
        assert_eq!(pooled(2048), 0);
        let again = take(1024);
        assert_eq!(again.len(), 1024);
        assert_eq!(pooled(1024), 0, "the pooled small buffer is reused");
    }

    #[test]
    fn the_pool_stays_within_its_byte_bound() {
        let size = 64 << 10;
        let spares: Vec<_> = (0..POOL_BYTES / size + 8).map(|_| take(size)).collect();
        let odd: Vec<_> = (0..8).map(|i| take(1000 + i)).collect();
        spares.into_iter().chain(odd).for_each(give_back);
        let held = POOL.with(|p| pooled_bytes(&p.borrow()));
        assert!(held <= POOL_BYTES, "{held} bytes pooled");
        assert_eq!(pooled(size), POOL_BYTES / size);
    }

    #[tokio::test]
    async fn a_parked_read_keeps_a_partial_header_inline_and_no_buffer() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let mut lease = Lease::new(1024);
        // A peer trickling a 14-byte header: one byte, then nothing for a while.
        a.write_all(&[0x81]).await.unwrap();
        let n = lease.read_from(&mut b, 0).await.unwrap();
        assert_eq!(n, 1);
        let parked = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            lease.read_from(&mut b, 1),
        )
        .await;
        assert!(
            parked.is_err(),
            "nothing more was written, the read must park"
        );
        assert!(
            !lease.is_held(),
            "a parked partial header must not pin a buffer"
        );
        assert_eq!(
            lease.bytes(),
            &[0x81],
            "the kept byte is still there, inline"
        );
        a.write_all(&[0xfe, 0x01]).await.unwrap();
        let n = lease.read_from(&mut b, 1).await.unwrap();
        assert!(lease.is_held());
        assert_eq!(
            &lease.bytes()[..1 + n],
            &[0x81, 0xfe, 0x01],
            "in order after the wait"
        );

        // More than a header's worth kept (a partial control frame): the buffer stays.
        let (mut c, mut d) = tokio::io::duplex(64);
        let mut lease = Lease::new(1024);
        c.write_all(&[0u8; INLINE + 1]).await.unwrap();
        lease.read_from(&mut d, 0).await.unwrap();
        let parked = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            lease.read_from(&mut d, INLINE + 1),
        )
        .await;
        assert!(parked.is_err());
        assert!(lease.is_held());
        assert_eq!(lease.bytes()[..INLINE + 1], [0u8; INLINE + 1]);
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
