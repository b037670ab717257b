//! `guestgate-soak`: the two ends of `scripts/soak.sh`. `echo` is a plain WebSocket echo
//! upstream that keeps no history (so a long run does not grow it); `clients` holds many
//! browser-like connections through guestgate for a fixed time, each sending a message at a
//! steady interval and checking the echo, and prints a status line every few seconds and a
//! final `RESULT` line. Loopback only; every wait is bounded.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout};
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

/// Bound on a connect, an echo, and a close handshake.
const STEP: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(
    name = "guestgate-soak",
    about = "Soak ends for scripts/soak.sh: an echo upstream and a fleet of clients"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// A WebSocket echo upstream; prints `listening ADDR` once bound.
    Echo {
        /// Listen address (loopback).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Hold `--connections` connections to `--url` for `--seconds`, one echo per connection
    /// every `--interval` seconds.
    Clients {
        /// guestgate's browser URL, e.g. ws://127.0.0.1:8080/ws.
        #[arg(long)]
        url: String,
        /// Connections to hold.
        #[arg(long, default_value_t = 5000)]
        connections: usize,
        /// Seconds from the first connect until the connections close.
        #[arg(long, default_value_t = 300)]
        seconds: u64,
        /// Seconds between two messages on one connection.
        #[arg(long, default_value_t = 5.0)]
        interval: f64,
        /// Bytes per message.
        #[arg(long, default_value_t = 64)]
        message_bytes: usize,
        /// Connections being opened at once during the ramp-up.
        #[arg(long, default_value_t = 64)]
        open_concurrency: usize,
        /// Seconds between status lines.
        #[arg(long, default_value_t = 10)]
        report_every: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().mode {
        Mode::Echo { listen } => echo(listen).await,
        Mode::Clients {
            url,
            connections,
            seconds,
            interval,
            message_bytes,
            open_concurrency,
            report_every,
        } => {
            let plan = Plan {
                url,
                connections,
                run_for: Duration::from_secs(seconds),
                interval: Duration::from_secs_f64(interval.max(0.01)),
                message_bytes: message_bytes.max(16),
                open_concurrency: open_concurrency.max(1),
                report_every: Duration::from_secs(report_every.max(1)),
            };
            clients(plan).await
        }
    }
}

async fn echo(listen: SocketAddr) -> ExitCode {
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("binding {listen}: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    println!("listening {addr}");
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(Ok(mut ws)) = timeout(STEP, tokio_tungstenite::accept_async(tcp)).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_close() {
                    let _ = ws.flush().await;
                    return;
                }
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    return;
                }
            }
        });
    }
}

struct Plan {
    url: String,
    connections: usize,
    run_for: Duration,
    interval: Duration,
    message_bytes: usize,
    open_concurrency: usize,
    report_every: Duration,
}

/// Fleet-wide counters.
#[derive(Default)]
struct Stats {
    open: AtomicU64,
    opened: AtomicU64,
    connect_errors: AtomicU64,
    messages: AtomicU64,
    /// Wrong echo, no echo in time, or the connection ended early.
    message_errors: AtomicU64,
    /// The closing handshake did not end with our own 1000.
    close_errors: AtomicU64,
    /// Slowest first echo of a connection (it may wait for guestgate's upstream connect), in
    /// microseconds.
    max_first_rtt_us: AtomicU64,
    /// Slowest later echo, in microseconds.
    max_rtt_us: AtomicU64,
}

impl Stats {
    fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "open={} opened={} messages={} connect_errors={} message_errors={} close_errors={} max_first_rtt_ms={:.1} max_rtt_ms={:.1}",
            g(&self.open),
            g(&self.opened),
            g(&self.messages),
            g(&self.connect_errors),
            g(&self.message_errors),
            g(&self.close_errors),
            g(&self.max_first_rtt_us) as f64 / 1000.0,
            g(&self.max_rtt_us) as f64 / 1000.0
        )
    }

    fn errors(&self) -> u64 {
        self.connect_errors.load(Ordering::Relaxed)
            + self.message_errors.load(Ordering::Relaxed)
            + self.close_errors.load(Ordering::Relaxed)
    }
}

async fn clients(plan: Plan) -> ExitCode {
    let plan = Arc::new(plan);
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let deadline = started + plan.run_for;

    let reporter = {
        let (stats, every) = (stats.clone(), plan.report_every);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(Instant::now() + every, every);
            loop {
                tick.tick().await;
                println!("t={}s {}", started.elapsed().as_secs(), stats.line());
            }
        })
    };

    // Ramp up with bounded concurrency; each connection then runs on its own until the deadline.
    let permits = Arc::new(tokio::sync::Semaphore::new(plan.open_concurrency));
    let mut tasks = Vec::with_capacity(plan.connections);
    for id in 0..plan.connections {
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let (plan, stats) = (plan.clone(), stats.clone());
        tasks.push(tokio::spawn(async move {
            one(id, permit, &plan, &stats, deadline).await;
        }));
    }
    let ramp = started.elapsed();
    println!(
        "ramp: {} connection attempts in {:.1}s",
        plan.connections,
        ramp.as_secs_f64()
    );
    for t in tasks {
        let _ = t.await;
    }
    reporter.abort();
    println!(
        "RESULT seconds={:.0} connections={} {}",
        started.elapsed().as_secs_f64(),
        plan.connections,
        stats.line()
    );
    if stats.errors() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn one(
    id: usize,
    permit: tokio::sync::OwnedSemaphorePermit,
    plan: &Plan,
    stats: &Stats,
    deadline: Instant,
) {
    let connected = timeout(STEP, tokio_tungstenite::connect_async(plan.url.as_str())).await;
    drop(permit);
    let mut ws = match connected {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => {
            stats.connect_errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("connection {id}: connect failed: {e}");
            return;
        }
        Err(_) => {
            stats.connect_errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("connection {id}: connect timed out");
            return;
        }
    };
    stats.opened.fetch_add(1, Ordering::Relaxed);
    stats.open.fetch_add(1, Ordering::Relaxed);
    // Spread the connections' messages over the interval.
    let first = Instant::now() + plan.interval.mul_f64(rand::random::<f64>());
    let mut tick = tokio::time::interval_at(first, plan.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    let ok = loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break true,
            _ = tick.tick() => {}
        }
        seq += 1;
        let mut text = format!("soak {id} {seq} ");
        while text.len() < plan.message_bytes {
            text.push('x');
        }
        let sent = Instant::now();
        if ws.send(Message::text(text.clone())).await.is_err() {
            eprintln!("connection {id}: send failed");
            break false;
        }
        match echo_of(&mut ws).await {
            Ok(got) if got == text => {
                stats.messages.fetch_add(1, Ordering::Relaxed);
                let slowest = if seq == 1 {
                    &stats.max_first_rtt_us
                } else {
                    &stats.max_rtt_us
                };
                slowest.fetch_max(sent.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            Ok(_) => {
                eprintln!("connection {id}: wrong echo");
                break false;
            }
            Err(why) => {
                eprintln!("connection {id}: {why}");
                break false;
            }
        }
    };
    stats.open.fetch_sub(1, Ordering::Relaxed);
    if !ok {
        stats.message_errors.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let _ = ws
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "soak done".into(),
        })))
        .await;
    let reply = timeout(STEP, async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await;
    if !matches!(reply, Ok(Some(1000))) {
        stats.close_errors.fetch_add(1, Ordering::Relaxed);
        eprintln!("connection {id}: close reply {reply:?}");
    }
}

/// The next text message, skipping control frames.
async fn echo_of(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Result<String, String> {
    let wait = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
                Some(Ok(Message::Close(f))) => return Err(format!("closed by the relay: {f:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("read failed: {e}")),
                None => return Err("stream ended".into()),
            }
        }
    };
    timeout(STEP, wait)
        .await
        .unwrap_or_else(|_| Err("no echo within 10 s".into()))
}
