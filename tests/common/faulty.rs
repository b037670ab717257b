//! A fault-injecting TCP proxy for tests: it sits between guestgate and an upstream (the fake
//! WebSocket upstream or the fake OAuth token endpoint) on 127.0.0.1 and forwards bytes, or
//! delays, stalls, resets, half-closes or truncates them.
//!
//! Faults are counted in bytes per connection so a test can cut exactly at a frame boundary
//! or in the middle of a frame. The fault in force when a connection is accepted applies to
//! that connection for its whole life; [`FaultyProxy::set_fault`] changes it for later ones.
//!
//! Everything is bounded: a proxied connection lives at most [`MAX_LIFE`], and dropping the
//! handle (or [`FaultyProxy::shutdown`]) closes the listener and every connection.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The longest a proxied connection lives, whatever its fault (stalls included).
pub const MAX_LIFE: Duration = Duration::from_secs(20);

/// How often a stalled direction checks whether its source has gone away.
const STALL_POLL: Duration = Duration::from_millis(25);

/// Read size per direction.
const CHUNK: usize = 16 * 1024;

/// A direction through the proxy, seen from guestgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// guestgate to the upstream (requests, browser frames).
    Up,
    /// The upstream to guestgate (responses, upstream frames).
    Down,
    /// Both directions; byte counts are the sum of the two.
    Both,
}

/// What the proxy does to each connection accepted while the fault is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    Pass,
    /// Forward everything, each chunk delivered this long after it was read.
    Latency(Duration),
    /// Forward this many bytes in the direction(s), then stop reading and forwarding there,
    /// keeping both sockets open (the peers see silence, then back-pressure).
    StallAfter(u64, Dir),
    /// Forward this many bytes in the direction(s), then reset both sockets (RST, `SO_LINGER`
    /// zero).
    ResetAfter(u64, Dir),
    /// Forward this many bytes in the direction(s), then shut down the write side toward that
    /// direction's receiver (it reads EOF); what its sender still sends is read and dropped.
    /// The opposite direction keeps flowing.
    HalfCloseAfter(u64, Dir),
    /// Forward this many bytes in total (both directions), then close both sockets (FIN).
    CapBytes(u64),
    /// Close the listener: connecting fails with ECONNREFUSED until the fault changes.
    RefuseConnections,
}

impl Fault {
    /// The byte limit and the direction it counts, for the byte-triggered faults.
    fn trigger(self) -> Option<(u64, Dir)> {
        match self {
            Fault::StallAfter(n, d) | Fault::ResetAfter(n, d) | Fault::HalfCloseAfter(n, d) => {
                Some((n, d))
            }
            Fault::CapBytes(n) => Some((n, Dir::Both)),
            Fault::Pass | Fault::Latency(_) | Fault::RefuseConnections => None,
        }
    }
}

#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    target: SocketAddr,
    /// (fault, generation).
    fault: watch::Sender<(Fault, u64)>,
    /// The generation the accept loop has applied.
    applied: watch::Sender<u64>,
    accepted: AtomicUsize,
    live: AtomicUsize,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// A running proxy. Dropping it stops the proxy and closes every connection.
#[derive(Debug)]
pub struct FaultyProxy {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl FaultyProxy {
    /// Starts a proxy on 127.0.0.1:0 forwarding to `target` with `fault`. Must be called
    /// inside a tokio runtime.
    pub async fn start(target: SocketAddr, fault: Fault) -> FaultyProxy {
        let listener = listen("127.0.0.1:0".parse().unwrap()).expect("proxy binds");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            addr,
            target,
            fault: watch::Sender::new((fault, 0)),
            applied: watch::Sender::new(0),
            accepted: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
        });
        let proxy = FaultyProxy {
            shared: shared.clone(),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        proxy.tracker.spawn(accept_loop(
            listener,
            shared,
            proxy.cancel.clone(),
            proxy.tracker.clone(),
        ));
        proxy.wait_applied(0).await;
        proxy
    }

    /// The listening address (stable across [`Fault::RefuseConnections`]).
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `ws://127.0.0.1:PORT/`, for a WebSocket upstream behind the proxy.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.addr())
    }

    /// `http://127.0.0.1:PORT{path}`, for an HTTP endpoint behind the proxy.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// Changes the fault for connections accepted from now on; returns once the listener
    /// reflects it (closed for [`Fault::RefuseConnections`], open otherwise).
    pub async fn set_fault(&self, fault: Fault) {
        let generation = self.shared.fault.borrow().1 + 1;
        self.shared.fault.send_replace((fault, generation));
        self.wait_applied(generation).await;
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        self.shared.fault.borrow().0
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Proxied connections still open.
    pub fn live(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// Bytes forwarded so far over every connection: (up, down).
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.shared.bytes_up.load(Ordering::SeqCst),
            self.shared.bytes_down.load(Ordering::SeqCst),
        )
    }

    /// Waits (at most `within`) until no proxied connection is open; returns whether it got
    /// there.
    pub async fn wait_idle(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.live() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Stops accepting, closes every connection and waits (bounded) for the tasks to end.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
    }

    async fn wait_applied(&self, generation: u64) {
        let mut rx = self.shared.applied.subscribe();
        tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|g| *g >= generation))
            .await
            .expect("the proxy applies a fault within 5 s")
            .expect("the proxy is running");
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A listener with `SO_REUSEADDR`, so the port can be bound again after
/// [`Fault::RefuseConnections`] while connections accepted earlier are still open.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let mut listener = Some(listener);
    let mut faults = shared.fault.subscribe();
    loop {
        let (fault, generation) = *faults.borrow_and_update();
        if fault == Fault::RefuseConnections {
            listener = None;
        } else if listener.is_none() {
            // Rebinding the same port can fail briefly; retry within a bound.
            let mut tries = 0;
            listener = loop {
                match listen(shared.addr) {
                    Ok(l) => break Some(l),
                    Err(e) if tries < 200 => {
                        tries += 1;
                        tracing::debug!(error = %e, "faulty proxy rebind failed; retrying");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => panic!("faulty proxy cannot bind {} again: {e}", shared.addr),
                }
            };
        }
        shared.applied.send_replace(generation);
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            changed = faults.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            accepted = async {
                match &listener {
                    Some(l) => l.accept().await,
                    None => std::future::pending().await,
                }
            } => accepted,
        };
        let Ok((client, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        shared.live.fetch_add(1, Ordering::SeqCst);
        let (shared, cancel) = (shared.clone(), cancel.clone());
        tracker.spawn(async move {
            let _live = LiveGuard(&shared.live);
            serve(client, fault, &shared, &cancel).await;
        });
    }
}

struct LiveGuard<'a>(&'a AtomicUsize);

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How a direction (or the whole connection) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// This direction is finished (its receiver got EOF); the other one may go on.
    Done,
    /// Tear the connection down with RST on both sockets.
    ResetAll,
    /// Tear the connection down with FIN on both sockets.
    CloseAll,
}

/// Per-connection byte counts and the fault.
struct Conn<'a> {
    fault: Fault,
    up: AtomicU64,
    down: AtomicU64,
    shared: &'a Shared,
}

impl Conn<'_> {
    fn counter(&self, dir: Dir) -> &AtomicU64 {
        match dir {
            Dir::Up => &self.up,
            _ => &self.down,
        }
    }

    /// How many of `n` bytes read in `dir` may pass before the fault triggers (all of them
    /// when the fault does not watch `dir`); counts them as forwarded.
    fn reserve(&self, dir: Dir, n: u64) -> u64 {
        let allowed = match self.fault.trigger() {
            Some((limit, watched)) if watched == dir || watched == Dir::Both => {
                let used = match watched {
                    Dir::Both => self.up.load(Ordering::SeqCst) + self.down.load(Ordering::SeqCst),
                    _ => self.counter(dir).load(Ordering::SeqCst),
                };
                n.min(limit.saturating_sub(used))
            }
            _ => n,
        };
        self.counter(dir).fetch_add(allowed, Ordering::SeqCst);
        let total = match dir {
            Dir::Up => &self.shared.bytes_up,
            _ => &self.shared.bytes_down,
        };
        total.fetch_add(allowed, Ordering::SeqCst);
        allowed
    }

    /// Whether the fault has triggered for `dir`.
    fn triggered(&self, dir: Dir) -> bool {
        match self.fault.trigger() {
            Some((limit, Dir::Both)) => {
                self.up.load(Ordering::SeqCst) + self.down.load(Ordering::SeqCst) >= limit
            }
            Some((limit, watched)) if watched == dir => {
                self.counter(dir).load(Ordering::SeqCst) >= limit
            }
            _ => false,
        }
    }
}

async fn serve(client: TcpStream, fault: Fault, shared: &Shared, cancel: &CancellationToken) {
    let server = match tokio::time::timeout(MAX_LIFE, TcpStream::connect(shared.target)).await {
        Ok(Ok(s)) => s,
        _ => {
            // Nothing to proxy to: the client gets a reset, as if the target refused.
            let _ = client.set_zero_linger();
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut server_rd, mut server_wr) = server.into_split();
    let conn = Conn {
        fault,
        up: AtomicU64::new(0),
        down: AtomicU64::new(0),
        shared,
    };
    let end = {
        let up = forward(&mut client_rd, &mut server_wr, Dir::Up, &conn);
        let down = forward(&mut server_rd, &mut client_wr, Dir::Down, &conn);
        tokio::pin!(up, down);
        let life = tokio::time::sleep(MAX_LIFE);
        tokio::pin!(life);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            let end = tokio::select! {
                _ = cancel.cancelled() => End::CloseAll,
                _ = &mut life => End::CloseAll,
                e = &mut up, if !up_done => { up_done = e == End::Done; e }
                e = &mut down, if !down_done => { down_done = e == End::Done; e }
            };
            if end != End::Done {
                break end;
            }
            if up_done && down_done {
                break End::CloseAll;
            }
        }
    };
    let client = client_rd.reunite(client_wr);
    let server = server_rd.reunite(server_wr);
    if end == End::ResetAll {
        for s in [&client, &server].into_iter().flatten() {
            let _ = s.set_zero_linger();
        }
    }
    drop((client, server));
}

/// Moves bytes from `rd` to `wr` under the connection's fault.
async fn forward(
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    dir: Dir,
    conn: &Conn<'_>,
) -> End {
    if let Fault::Latency(delay) = conn.fault {
        return delayed(rd, wr, dir, delay, conn).await;
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        if conn.triggered(dir) {
            return act(rd, wr, conn.fault).await;
        }
        let n = match rd.read(&mut buf).await {
            Ok(0) => {
                let _ = wr.shutdown().await;
                return End::Done;
            }
            Ok(n) => n,
            Err(_) => return End::ResetAll,
        };
        let allowed = conn.reserve(dir, n as u64) as usize;
        if allowed > 0 && wr.write_all(&buf[..allowed]).await.is_err() {
            return End::ResetAll;
        }
    }
}

/// What a triggered direction does.
async fn act(rd: &mut OwnedReadHalf, wr: &mut OwnedWriteHalf, fault: Fault) -> End {
    match fault {
        Fault::ResetAfter(..) => End::ResetAll,
        Fault::CapBytes(_) => End::CloseAll,
        Fault::StallAfter(..) => {
            // Read nothing more, so the sender's buffers fill; end when the sender goes away.
            loop {
                match rd.ready(Interest::READABLE).await {
                    Ok(r) if r.is_read_closed() || r.is_error() => return End::CloseAll,
                    Ok(_) => tokio::time::sleep(STALL_POLL).await,
                    Err(_) => return End::CloseAll,
                }
            }
        }
        Fault::HalfCloseAfter(..) => {
            let _ = wr.shutdown().await;
            let mut sink = vec![0u8; CHUNK];
            loop {
                match rd.read(&mut sink).await {
                    Ok(0) => return End::Done,
                    Ok(_) => {}
                    Err(_) => return End::ResetAll,
                }
            }
        }
        Fault::Pass | Fault::Latency(_) | Fault::RefuseConnections => {
            unreachable!("never triggered")
        }
    }
}

/// Forwards with every chunk held back `delay` after it was read, keeping order.
async fn delayed(
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    dir: Dir,
    delay: Duration,
    conn: &Conn<'_>,
) -> End {
    let (tx, mut rx) = mpsc::channel::<(Instant, Option<Vec<u8>>)>(64);
    let reader = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let chunk = match rd.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => Some(buf[..n].to_vec()),
                Err(_) => return End::ResetAll,
            };
            let eof = chunk.is_none();
            if tx.send((Instant::now() + delay, chunk)).await.is_err() || eof {
                return End::Done;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            match chunk {
                Some(c) => {
                    conn.reserve(dir, c.len() as u64);
                    if wr.write_all(&c).await.is_err() {
                        return End::ResetAll;
                    }
                }
                None => {
                    let _ = wr.shutdown().await;
                    return End::Done;
                }
            }
        }
        End::Done
    };
    tokio::pin!(reader, writer);
    tokio::select! {
        r = &mut reader => match r {
            End::Done => writer.await,
            other => other,
        },
        w = &mut writer => w,
    }
}
