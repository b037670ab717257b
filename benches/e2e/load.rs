//! The load generator's client side: open WebSocket connections to a target, keep a window of
//! messages in flight on each, check every echo byte for byte, and time round trips; and the
//! connect-cycle workload (connect, one echo, close, again).
//!
//! Two clients (`raw::Instrument`): the **raw** one (default) encodes each in-flight slot's
//! masked binary frame once and sends it with one `write_all`, and checks echoes as they
//! stream through a fixed read buffer (unmasked, FIN, binary, exact length, payload byte for
//! byte against the slot sent k-th), allocating nothing per message (the read buffer grows
//! once, to hold one frame of at most 1 MiB); the **tungstenite** one is the tokio-tungstenite
//! message client of the first harness runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;

use crate::raw::{self, Instrument, op};

/// A client connection.
pub type Ws = WebSocketStream<TcpStream>;

/// Longest any single connect, handshake or close may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// What one measured cell produced.
#[derive(Debug, Default)]
pub struct Sample {
    /// Round trips completed inside the measurement window.
    pub msgs: u64,
    /// Length of the measurement window.
    pub secs: f64,
    /// Round-trip times inside the window, in microseconds.
    pub rtts_us: Vec<u32>,
    /// CPU seconds the relay process used inside the window (0 for a direct connection).
    pub relay_cpu: f64,
    /// CPU seconds this process (load generator and echo upstream) used inside the window.
    pub own_cpu: f64,
    /// The whole machine's CPU time inside the window, by kind.
    pub machine: crate::procs::MachineTicks,
}

impl Sample {
    /// Adds another window's round trips, time, latencies and relay CPU to this one (the
    /// per-window machine and own-CPU readings are not summed).
    pub fn absorb(&mut self, other: Sample) {
        self.msgs += other.msgs;
        self.secs += other.secs;
        self.relay_cpu += other.relay_cpu;
        self.rtts_us.extend(other.rtts_us);
    }
}

/// Opens one WebSocket connection to `addr` (TCP_NODELAY, no extensions).
pub async fn connect(addr: SocketAddr) -> Result<Ws, String> {
    let open = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("tcp connect {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let url = format!("ws://{addr}/");
        let (ws, _) = tokio_tungstenite::client_async(url, tcp)
            .await
            .map_err(|e| format!("websocket upgrade via {addr}: {e}"))?;
        Ok(ws)
    };
    tokio::time::timeout(STEP_TIMEOUT, open)
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
}

/// `count` distinct payloads of `size` bytes: pseudo-random bytes with the index mixed in, so a
/// reordered, duplicated or corrupted echo fails the byte-for-byte comparison.
pub fn payloads(size: usize, count: usize) -> Vec<Bytes> {
    (0..count)
        .map(|k| {
            let mut x =
                0x2545_F491_4F6C_DD1D_u64 ^ (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let bytes: Vec<u8> = (0..size)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            Bytes::from(bytes)
        })
        .collect()
}

/// Sends one message and checks that the echo is identical.
pub async fn echo_once(ws: &mut Ws, payload: &Bytes) -> Result<(), String> {
    ws.send(Message::Binary(payload.clone()))
        .await
        .map_err(|e| format!("send: {e}"))?;
    match next_data(ws).await? {
        got if got == *payload => Ok(()),
        got => Err(format!(
            "echo differs: {} bytes back for {}",
            got.len(),
            payload.len()
        )),
    }
}

/// The next text or binary message's bytes (pings and pongs are skipped).
async fn next_data<S>(stream: &mut S) -> Result<Bytes, String>
where
    S: futures::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    loop {
        match stream.next().await {
            Some(Ok(Message::Binary(b))) => return Ok(b),
            Some(Ok(Message::Text(t))) => return Ok(Bytes::from(t.as_str().to_owned())),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => return Err(format!("unexpected message {other:?}")),
            Some(Err(e)) => return Err(format!("receive: {e}")),
            None => return Err("connection ended mid-run".into()),
        }
    }
}

/// Sends a close and reads until the peer closes (bounded).
pub async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(STEP_TIMEOUT, async {
        let _ = ws.send(Message::Close(None)).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Runs `conns` connections against `addr`, each with `window` messages of `size` bytes in
/// flight, for `warmup` then a measured `duration`; `relay` is the relay's pid, whose CPU time
/// is read at the window's edges.
#[allow(clippy::too_many_arguments)]
pub async fn throughput(
    addr: SocketAddr,
    relay: Option<u32>,
    conns: usize,
    window: usize,
    size: usize,
    warmup: Duration,
    duration: Duration,
    instrument: Instrument,
) -> Result<Sample, String> {
    let payloads = payloads(size, window + 1);
    let (tasks, from, until): (Vec<_>, _, _) = match instrument {
        Instrument::Tungstenite => {
            let payloads = Arc::new(payloads);
            let opened = futures::future::join_all((0..conns).map(|_| connect(addr))).await;
            let wss: Vec<Ws> = opened.into_iter().collect::<Result<_, _>>()?;
            let (from, until) = window_edges(warmup, duration);
            let tasks = wss
                .into_iter()
                .map(|ws| tokio::spawn(drive(ws, payloads.clone(), window, from, until)))
                .collect();
            (tasks, from, until)
        }
        Instrument::Raw => {
            let slots = Arc::new(slots(payloads));
            let opened = futures::future::join_all((0..conns).map(|_| RawClient::connect(addr)));
            let conns: Vec<RawClient> = opened.await.into_iter().collect::<Result<_, _>>()?;
            let (from, until) = window_edges(warmup, duration);
            let tasks = conns
                .into_iter()
                .map(|c| tokio::spawn(drive_raw(c, slots.clone(), window, from, until)))
                .collect();
            (tasks, from, until)
        }
    };
    let cpu = |pid: Option<u32>| pid.map_or(0.0, |p| crate::procs::cpu_secs(Some(p)));
    let machine = crate::procs::MachineTicks::now;
    tokio::time::sleep_until(from.into()).await;
    let (relay0, own0, machine0) = (cpu(relay), crate::procs::cpu_secs(None), machine());
    tokio::time::sleep_until(until.into()).await;
    let mut sample = Sample {
        secs: duration.as_secs_f64(),
        relay_cpu: cpu(relay) - relay0,
        own_cpu: crate::procs::cpu_secs(None) - own0,
        machine: machine().since(machine0),
        ..Sample::default()
    };
    let limit = warmup + duration + Duration::from_secs(60);
    for task in tasks {
        let joined = tokio::time::timeout_at((Instant::now() + limit).into(), task).await;
        let (msgs, rtts) = joined
            .map_err(|_| "a connection did not finish in time".to_string())?
            .map_err(|e| format!("connection task failed: {e}"))??;
        sample.msgs += msgs;
        sample.rtts_us.extend(rtts);
    }
    Ok(sample)
}

/// The measurement window: it opens `warmup` from now and lasts `duration`.
fn window_edges(warmup: Duration, duration: Duration) -> (Instant, Instant) {
    let from = Instant::now() + warmup;
    (from, from + duration)
}

/// One connection's load loop: a writer keeps `window` messages in flight until `until`, a
/// reader checks each echo in order; returns (round trips in the window, their RTTs).
async fn drive(
    ws: Ws,
    payloads: Arc<Vec<Bytes>>,
    window: usize,
    from: Instant,
    until: Instant,
) -> Result<(u64, Vec<u32>), String> {
    let (mut sink, mut stream) = ws.split();
    let credit = Semaphore::new(window);
    let (sent_at, mut sent_rx) = mpsc::unbounded_channel::<Instant>();
    let writer = async {
        let mut i = 0;
        loop {
            // Closed when the reader failed: stop sending.
            let Ok(permit) = credit.acquire().await else {
                break;
            };
            permit.forget();
            if Instant::now() >= until {
                break;
            }
            let _ = sent_at.send(Instant::now());
            let msg = Message::Binary(payloads[i % payloads.len()].clone());
            sink.send(msg).await.map_err(|e| format!("send: {e}"))?;
            i += 1;
        }
        drop(sent_at);
        Ok::<_, String>(())
    };
    let reader = async {
        let (mut count, mut rtts) = (0u64, Vec::new());
        let mut j = 0;
        while let Some(t0) = sent_rx.recv().await {
            let got = match next_data(&mut stream).await {
                Ok(got) => got,
                Err(e) => {
                    credit.close();
                    return Err(e);
                }
            };
            let now = Instant::now();
            if got != payloads[j % payloads.len()] {
                credit.close();
                return Err(format!(
                    "echo {j} differs from what was sent ({} bytes)",
                    got.len()
                ));
            }
            if now >= from && now < until {
                count += 1;
                rtts.push((now - t0).as_micros().min(u32::MAX as u128) as u32);
            }
            credit.add_permits(1);
            j += 1;
        }
        Ok((count, rtts))
    };
    let (w, r) = tokio::join!(writer, reader);
    w?;
    let result = r?;
    if let Ok(ws) = sink.reunite(stream) {
        close(ws).await;
    }
    Ok(result)
}

/// One raw in-flight slot: its payload and its masked binary frame, encoded once.
pub struct Slot {
    payload: Bytes,
    frame: Vec<u8>,
}

/// Encodes each payload's frame once, each with its own random mask key.
pub fn slots(payloads: Vec<Bytes>) -> Vec<Slot> {
    payloads
        .into_iter()
        .map(|payload| {
            let mut frame = Vec::with_capacity(payload.len() + 14);
            raw::put_frame(&mut frame, true, op::BINARY, Some(rand::random()), &payload);
            Slot { payload, frame }
        })
        .collect()
}

/// A raw-frame client connection: the socket after the upgrade and its read buffer, which
/// keeps any bytes that followed the upgrade response.
pub struct RawClient {
    tcp: TcpStream,
    inbuf: raw::InBuf,
}

/// What `next_echo` found.
#[derive(Debug)]
enum Reply {
    /// The expected echo, checked.
    Echo,
    /// A ping from the server, to be answered with this payload.
    Ping(Vec<u8>),
}

/// Reads the next server frame and checks that it is the echo of `expected`: unmasked, RSV
/// bits clear, FIN, binary, exactly `expected.len()` bytes, equal byte for byte (compared as
/// it streams through `inbuf`). Pongs are skipped; a ping is handed back to be answered;
/// anything else (a close, text, a fragment, a short read) is an error.
async fn next_echo<R>(r: &mut R, inbuf: &mut raw::InBuf, expected: &[u8]) -> Result<Reply, String>
where
    R: tokio::io::AsyncRead + Unpin,
{
    loop {
        let h = inbuf.header(r).await?;
        if h.mask.is_some() || h.rsv != 0 {
            return Err(format!("server frame is masked or has RSV bits: {h:?}"));
        }
        match h.opcode {
            op::PING | op::PONG if h.fin && h.len <= 125 => {
                let len = h.len as usize;
                inbuf.fill(r, len).await?;
                let payload = inbuf.data()[..len].to_vec();
                inbuf.consume(len);
                if h.opcode == op::PING {
                    return Ok(Reply::Ping(payload));
                }
                continue;
            }
            op::BINARY if h.fin => {}
            op::CLOSE => {
                let len = (h.len as usize).min(125);
                let _ = inbuf.fill(r, len).await;
                let code = inbuf
                    .data()
                    .get(..2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]));
                return Err(format!("the server closed mid-run (code {code:?})"));
            }
            _ => return Err(format!("unexpected frame instead of a binary echo: {h:?}")),
        }
        inbuf.fit_frame(h.header_len as u64 + h.len);
        if h.len != expected.len() as u64 {
            return Err(format!(
                "echo is {} bytes, {} were sent",
                h.len,
                expected.len()
            ));
        }
        let mut done = 0;
        while done < expected.len() {
            if inbuf.data().is_empty() {
                inbuf.read_more(r).await?;
            }
            let n = inbuf.data().len().min(expected.len() - done);
            let (got, want) = (&inbuf.data()[..n], &expected[done..done + n]);
            if got != want {
                let at = done + got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                return Err(format!("echo differs from what was sent at byte {at}"));
            }
            inbuf.consume(n);
            done += n;
        }
        return Ok(Reply::Echo);
    }
}

/// A masked pong frame answering `payload`.
fn pong(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 6);
    raw::put_frame(&mut frame, true, op::PONG, Some(rand::random()), payload);
    frame
}

impl RawClient {
    /// A client on an upgraded socket whose read buffer holds what followed the upgrade.
    pub fn from_parts(tcp: TcpStream, inbuf: raw::InBuf) -> Self {
        Self { tcp, inbuf }
    }

    /// Opens one connection to `addr` (TCP_NODELAY) and upgrades it (no extensions).
    pub async fn connect(addr: SocketAddr) -> Result<Self, String> {
        let open = async {
            let mut tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("tcp connect {addr}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let inbuf = raw::client_handshake(&mut tcp, &format!("ws://{addr}/"))
                .await
                .map_err(|e| format!("websocket upgrade via {addr}: {e}"))?;
            Ok(Self { tcp, inbuf })
        };
        tokio::time::timeout(STEP_TIMEOUT, open)
            .await
            .map_err(|_| format!("connecting to {addr} timed out"))?
    }

    /// Sends one binary message and checks that the echo is identical.
    pub async fn echo_once(&mut self, payload: &[u8]) -> Result<(), String> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        raw::put_frame(&mut frame, true, op::BINARY, Some(rand::random()), payload);
        self.tcp
            .write_all(&frame)
            .await
            .map_err(|e| format!("send: {e}"))?;
        loop {
            match next_echo(&mut self.tcp, &mut self.inbuf, payload).await? {
                Reply::Echo => return Ok(()),
                Reply::Ping(p) => self
                    .tcp
                    .write_all(&pong(&p))
                    .await
                    .map_err(|e| format!("send: {e}"))?,
            }
        }
    }

    /// Sends a close (1000) and reads until the peer's close or end of stream (bounded).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(STEP_TIMEOUT, async {
            let mut frame = Vec::with_capacity(8);
            let code = 1000u16.to_be_bytes();
            raw::put_frame(&mut frame, true, op::CLOSE, Some(rand::random()), &code);
            self.tcp
                .write_all(&frame)
                .await
                .map_err(|e| e.to_string())?;
            loop {
                let h = self.inbuf.header(&mut self.tcp).await?;
                if h.opcode == op::CLOSE {
                    return Ok::<_, String>(());
                }
                let mut left = h.len;
                while left > 0 {
                    if self.inbuf.data().is_empty() {
                        self.inbuf.read_more(&mut self.tcp).await?;
                    }
                    let n = (self.inbuf.data().len() as u64).min(left);
                    self.inbuf.consume(n as usize);
                    left -= n;
                }
            }
        })
        .await;
    }
}

/// The raw client's load loop, like `drive`: the writer sends the slots' pre-encoded frames
/// in turn (one `write_all` each) and answers pings between them; the reader checks the k-th
/// echo against the k-th slot sent.
async fn drive_raw(
    conn: RawClient,
    slots: Arc<Vec<Slot>>,
    window: usize,
    from: Instant,
    until: Instant,
) -> Result<(u64, Vec<u32>), String> {
    let RawClient { mut tcp, mut inbuf } = conn;
    let (mut rd, mut wr) = tcp.split();
    let credit = Semaphore::new(window);
    let (sent_at, mut sent_rx) = mpsc::unbounded_channel::<Instant>();
    let (pongs, mut pongs_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = async {
        let mut i = 0;
        loop {
            tokio::select! {
                biased;
                Some(p) = pongs_rx.recv() => {
                    wr.write_all(&pong(&p)).await.map_err(|e| format!("send: {e}"))?;
                    continue;
                }
                permit = credit.acquire() => match permit {
                    Ok(permit) => permit.forget(),
                    // Closed when the reader failed: stop sending.
                    Err(_) => break,
                },
            }
            if Instant::now() >= until {
                break;
            }
            let _ = sent_at.send(Instant::now());
            let frame = &slots[i % slots.len()].frame;
            wr.write_all(frame)
                .await
                .map_err(|e| format!("send: {e}"))?;
            i += 1;
        }
        drop(sent_at);
        Ok::<_, String>(())
    };
    let reader = async {
        let (mut count, mut rtts) = (0u64, Vec::new());
        let mut j = 0;
        while let Some(t0) = sent_rx.recv().await {
            let expected = &slots[j % slots.len()].payload;
            loop {
                match next_echo(&mut rd, &mut inbuf, expected).await {
                    Ok(Reply::Echo) => break,
                    Err(e) => {
                        credit.close();
                        return Err(format!("echo {j}: {e}"));
                    }
                    Ok(Reply::Ping(p)) => {
                        let _ = pongs.send(p);
                    }
                }
            }
            let now = Instant::now();
            if now >= from && now < until {
                count += 1;
                rtts.push((now - t0).as_micros().min(u32::MAX as u128) as u32);
            }
            credit.add_permits(1);
            j += 1;
        }
        Ok::<_, String>((count, rtts))
    };
    let (w, r) = tokio::join!(writer, reader);
    w?;
    let result = r?;
    RawClient { tcp, inbuf }.close().await;
    Ok(result)
}

/// A client connection of either instrument, for the connect-cycle and idle workloads.
pub enum Client {
    /// tokio-tungstenite (boxed: its stream is several times larger than the raw client).
    Tungstenite(Box<Ws>),
    /// Raw frames.
    Raw(RawClient),
}

impl Client {
    /// Opens one connection to `addr` with `instrument`'s client.
    pub async fn open(addr: SocketAddr, instrument: Instrument) -> Result<Self, String> {
        Ok(match instrument {
            Instrument::Tungstenite => Client::Tungstenite(Box::new(connect(addr).await?)),
            Instrument::Raw => Client::Raw(RawClient::connect(addr).await?),
        })
    }

    /// Sends one message and checks that the echo is identical.
    pub async fn echo_once(&mut self, payload: &Bytes) -> Result<(), String> {
        match self {
            Client::Tungstenite(ws) => echo_once(ws, payload).await,
            Client::Raw(c) => c.echo_once(payload).await,
        }
    }

    /// Closes politely (bounded).
    pub async fn close(self) {
        match self {
            Client::Tungstenite(ws) => close(*ws).await,
            Client::Raw(c) => c.close().await,
        }
    }
}

/// Runs `workers` loops of connect → one 64-byte echo → close against `addr` for `duration`.
/// The sample counts completed cycles and their latencies, and the CPU time of the relay
/// process `relay` over the run.
pub async fn cycles(
    addr: SocketAddr,
    relay: Option<u32>,
    workers: usize,
    duration: Duration,
    instrument: Instrument,
) -> Result<Sample, String> {
    let payload = payloads(64, 1).remove(0);
    let cpu = |pid: Option<u32>| pid.map_or(0.0, |p| crate::procs::cpu_secs(Some(p)));
    let (relay0, own0, machine0) = (
        cpu(relay),
        crate::procs::cpu_secs(None),
        crate::procs::MachineTicks::now(),
    );
    let started = Instant::now();
    let until = started + duration;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let payload = payload.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < until {
                    let t0 = Instant::now();
                    let mut client = Client::open(addr, instrument).await?;
                    client.echo_once(&payload).await?;
                    client.close().await;
                    lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                Ok::<_, String>(lat)
            })
        })
        .collect();
    let mut sample = Sample::default();
    for task in tasks {
        let lat = task
            .await
            .map_err(|e| format!("cycle task failed: {e}"))??;
        sample.msgs += lat.len() as u64;
        sample.rtts_us.extend(lat);
    }
    // The last cycles finish a little after `until`: divide by the time actually taken.
    sample.secs = started.elapsed().as_secs_f64();
    sample.relay_cpu = cpu(relay) - relay0;
    sample.own_cpu = crate::procs::cpu_secs(None) - own0;
    sample.machine = crate::procs::MachineTicks::now().since(machine0);
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn echo(instrument: Instrument) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(crate::echo::serve_with(l, instrument));
        addr
    }

    /// An echo that returns each binary message altered by `alter`.
    async fn bad_echo(alter: fn(Bytes) -> Message) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                    while let Some(Ok(Message::Binary(b))) = ws.next().await {
                        if ws.send(alter(b)).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_client_works_with_every_echo() {
        for echo_kind in [Instrument::Raw, Instrument::Tungstenite] {
            let addr = echo(echo_kind).await;
            for client in [Instrument::Raw, Instrument::Tungstenite] {
                // 200 000 bytes is larger than the raw read buffer: echoes stream through it.
                for size in [64, 200_000] {
                    let d = Duration::from_millis(200);
                    let s = throughput(addr, None, 3, 4, size, d, d, client)
                        .await
                        .unwrap_or_else(|e| panic!("{client:?} -> {echo_kind:?} {size}: {e}"));
                    assert!(s.msgs > 0, "{client:?} -> {echo_kind:?} {size}: no echoes");
                }
                let c = cycles(addr, None, 2, Duration::from_millis(100), client).await;
                assert!(c.unwrap().msgs > 0);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn raw_client_fails_on_a_corrupted_or_wrong_echo() {
        fn flip_last(b: Bytes) -> Message {
            let mut v = b.to_vec();
            *v.last_mut().unwrap() ^= 1;
            Message::Binary(v.into())
        }
        fn as_text(b: Bytes) -> Message {
            Message::text(format!("{} bytes", b.len()))
        }
        fn truncated(b: Bytes) -> Message {
            Message::Binary(b.slice(1..))
        }
        for (alter, want) in [
            (
                flip_last as fn(Bytes) -> Message,
                "differs from what was sent at byte 99999",
            ),
            (as_text, "unexpected frame"),
            (truncated, "99999 bytes, 100000 were sent"),
        ] {
            let addr = bad_echo(alter).await;
            let d = Duration::from_millis(100);
            let err = throughput(addr, None, 1, 2, 100_000, d, d, Instrument::Raw)
                .await
                .unwrap_err();
            assert!(err.contains(want), "{err}");
            let old = throughput(addr, None, 1, 2, 100_000, d, d, Instrument::Tungstenite);
            assert!(old.await.is_err());
            let mut c = RawClient::connect(addr).await.unwrap();
            let err = c.echo_once(&[7u8; 100_000]).await.unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }
}
