//! The load generator's client side: open WebSocket connections to a target, keep a window of
//! messages in flight on each, check every echo byte for byte, and time round trips; and the
//! connect-cycle workload (connect, one echo, close, again).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;

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
) -> Result<Sample, String> {
    let payloads = Arc::new(payloads(size, window + 1));
    let opened = futures::future::join_all((0..conns).map(|_| connect(addr))).await;
    let wss: Vec<Ws> = opened.into_iter().collect::<Result<_, _>>()?;
    let from = Instant::now() + warmup;
    let until = from + duration;
    let tasks: Vec<_> = wss
        .into_iter()
        .map(|ws| tokio::spawn(drive(ws, payloads.clone(), window, from, until)))
        .collect();
    let cpu = |pid: Option<u32>| pid.map_or(0.0, |p| crate::procs::cpu_secs(Some(p)));
    tokio::time::sleep_until(from.into()).await;
    let (relay0, own0) = (cpu(relay), crate::procs::cpu_secs(None));
    tokio::time::sleep_until(until.into()).await;
    let mut sample = Sample {
        secs: duration.as_secs_f64(),
        relay_cpu: cpu(relay) - relay0,
        own_cpu: crate::procs::cpu_secs(None) - own0,
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
            credit.acquire().await.expect("never closed").forget();
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
            let got = next_data(&mut stream).await?;
            let now = Instant::now();
            if got != payloads[j % payloads.len()] {
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

/// Runs `workers` loops of connect → one 64-byte echo → close against `addr` for `duration`.
/// The sample counts completed cycles and their latencies.
pub async fn cycles(
    addr: SocketAddr,
    workers: usize,
    duration: Duration,
) -> Result<Sample, String> {
    let payload = payloads(64, 1).remove(0);
    let started = Instant::now();
    let until = started + duration;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let payload = payload.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < until {
                    let t0 = Instant::now();
                    let mut ws = connect(addr).await?;
                    echo_once(&mut ws, &payload).await?;
                    close(ws).await;
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
    Ok(sample)
}
