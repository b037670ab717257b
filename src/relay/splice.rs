//! Payload bytes from one plain TCP socket to another without passing through user space:
//! splice(2) from the source socket into a pipe, then from the pipe into the destination
//! (Linux; elsewhere the relay always copies).
//!
//! The pump still reads and checks every frame header itself. Only the part of a large
//! frame's payload that has not been read yet when its header was admitted takes this path,
//! so limits, masking rules and message boundaries are enforced exactly as when copying, and
//! the bytes on the wire are the same. Pipes are leased per frame from a small per-thread
//! pool, so an idle connection holds none.

/// A frame's unread payload must be at least this long to be spliced; shorter remainders are
/// cheaper to copy with the next read.
pub const MIN_PAYLOAD: u64 = 32 << 10;

#[cfg(target_os = "linux")]
pub use linux::Splicer;
#[cfg(not(target_os = "linux"))]
pub use other::Splicer;

/// Whether this platform can splice.
pub const SUPPORTED: bool = cfg!(target_os = "linux");

#[cfg(target_os = "linux")]
mod linux {
    use std::cell::RefCell;
    use std::io;
    use std::os::fd::OwnedFd;
    use std::sync::Arc;

    use rustix::pipe::{PipeFlags, SpliceFlags};
    use tokio::io::Interest;
    use tokio::net::TcpStream;

    /// Pipe capacity asked for; the kernel may give less (per-user pipe limits).
    const PIPE_BYTES: usize = 256 << 10;
    /// Empty pipes kept per thread for reuse (two descriptors each; more are created and
    /// closed as needed when many connections splice at once).
    const POOL_PIPES: usize = 4;

    thread_local! {
        static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
    }

    /// Both ends of a non-blocking pipe.
    struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
        capacity: usize,
    }

    impl Pipe {
        /// An empty pipe from this thread's pool, or a new one.
        fn take() -> io::Result<Pipe> {
            if let Some(pipe) = POOL.with(|p| p.borrow_mut().pop()) {
                return Ok(pipe);
            }
            let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
            let capacity = rustix::pipe::fcntl_setpipe_size(&write, PIPE_BYTES)
                .or_else(|_| rustix::pipe::fcntl_getpipe_size(&write))?;
            Ok(Pipe {
                read,
                write,
                capacity,
            })
        }

        /// Returns an empty pipe to this thread's pool (or closes it when the pool is full).
        fn give_back(self) {
            POOL.with(|p| {
                let mut pool = p.borrow_mut();
                if pool.len() < POOL_PIPES {
                    pool.push(self);
                }
            });
        }
    }

    /// Moves payload bytes from `src` to `dst` through a leased pipe.
    pub struct Splicer {
        src: Arc<TcpStream>,
        dst: Arc<TcpStream>,
        /// Bytes the source had delivered before the relay started; they come through the
        /// normal read path, so splicing may only start once that many bytes were read.
        src_prefix: u64,
        pipe: Option<Pipe>,
        /// Bytes in the pipe, not yet written to `dst`.
        in_pipe: usize,
    }

    impl Splicer {
        /// A splicer from `src` to `dst`; the first `src_prefix` source bytes are read ahead.
        pub fn new(src: Arc<TcpStream>, dst: Arc<TcpStream>, src_prefix: u64) -> Self {
            Self {
                src,
                dst,
                src_prefix,
                pipe: None,
                in_pipe: 0,
            }
        }

        /// True once `read_so_far` source bytes include the whole read-ahead prefix.
        pub fn usable(&self, read_so_far: u64) -> bool {
            read_so_far >= self.src_prefix
        }

        /// Bytes taken from the source and not yet written to the destination.
        pub fn in_pipe(&self) -> usize {
            self.in_pipe
        }

        /// Moves up to `want` bytes from the source into the (empty) pipe, waiting until the
        /// source has some. `Ok(0)` is the source's end of stream.
        pub async fn fill(&mut self, want: u64) -> io::Result<usize> {
            debug_assert_eq!(self.in_pipe, 0, "fill only an empty pipe");
            let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
            loop {
                // A pipe is taken only once the socket has bytes, so a slow sender in the
                // middle of a large frame parks without holding one.
                self.src.readable().await?;
                let pipe = match self.pipe.take() {
                    Some(pipe) => pipe,
                    None => Pipe::take()?,
                };
                let pipe = self.pipe.insert(pipe);
                let len = want.min(pipe.capacity as u64) as usize;
                // The pipe is empty, so EAGAIN means the socket has nothing: `try_io` then
                // clears the readiness and the next `readable` waits. A short splice does not
                // mean the same (the pipe's slots may be used up by small segments), so unlike
                // a short read it leaves the readiness alone.
                let moved = self.src.try_io(Interest::READABLE, || {
                    Ok(rustix::pipe::splice(
                        &*self.src,
                        None,
                        &pipe.write,
                        None,
                        len,
                        flags,
                    )?)
                });
                match moved {
                    Ok(n) => {
                        self.in_pipe = n;
                        self.release();
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.release();
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
        }

        /// Writes some of the pipe's bytes to the destination, waiting until it takes some.
        pub async fn drain_some(&mut self) -> io::Result<usize> {
            let Some(pipe) = self.pipe.as_ref() else {
                return Ok(0);
            };
            let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
            let len = self.in_pipe;
            loop {
                self.dst.writable().await?;
                // The pipe has bytes, so EAGAIN means the socket's send buffer is full.
                let moved = self.dst.try_io(Interest::WRITABLE, || {
                    Ok(rustix::pipe::splice(
                        &pipe.read, None, &*self.dst, None, len, flags,
                    )?)
                });
                match moved {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.in_pipe -= n;
                        if self.in_pipe == 0 {
                            self.release();
                        }
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
        }

        /// Gives an empty pipe back to the pool.
        fn release(&mut self) {
            if self.in_pipe == 0
                && let Some(pipe) = self.pipe.take()
            {
                pipe.give_back();
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::time::Duration;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        use crate::relay::tcp::loopback_pair as pair;

        #[tokio::test]
        async fn moves_bytes_and_holds_a_pipe_only_while_bytes_are_in_it() {
            let (mut sender, src) = pair().await;
            let (dst, mut receiver) = pair().await;
            let mut splicer = Splicer::new(Arc::new(src), Arc::new(dst), 0);

            let parked =
                tokio::time::timeout(Duration::from_millis(30), splicer.fill(1 << 20)).await;
            assert!(parked.is_err(), "nothing was sent, fill must wait");
            assert!(splicer.pipe.is_none(), "a parked fill must not hold a pipe");

            sender.write_all(&[7u8; 100_000]).await.unwrap();
            let mut moved = 0;
            let mut got = vec![0u8; 100_000];
            while moved < got.len() {
                let n = splicer.fill(1 << 20).await.unwrap();
                assert!(splicer.pipe.is_some() && splicer.in_pipe() == n);
                while splicer.in_pipe() > 0 {
                    splicer.drain_some().await.unwrap();
                }
                assert!(
                    splicer.pipe.is_none(),
                    "an emptied pipe goes back to the pool"
                );
                moved += n;
            }
            receiver.read_exact(&mut got).await.unwrap();
            assert!(got.iter().all(|&b| b == 7));

            drop(sender);
            assert_eq!(splicer.fill(1 << 20).await.unwrap(), 0, "end of stream");
            assert!(splicer.pipe.is_none());
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod other {
    use std::convert::Infallible;
    use std::io;
    use std::sync::Arc;

    use tokio::net::TcpStream;

    /// Never constructed off Linux.
    pub struct Splicer(Infallible);

    impl Splicer {
        /// Unreachable off Linux ([`super::SUPPORTED`] is false).
        pub fn new(_: Arc<TcpStream>, _: Arc<TcpStream>, _: u64) -> Self {
            unreachable!("splice is only used on Linux")
        }
        pub fn usable(&self, _: u64) -> bool {
            match self.0 {}
        }
        pub fn in_pipe(&self) -> usize {
            match self.0 {}
        }
        pub async fn fill(&mut self, _: u64) -> io::Result<usize> {
            match self.0 {}
        }
        pub async fn drain_some(&mut self) -> io::Result<usize> {
            match self.0 {}
        }
    }
}
