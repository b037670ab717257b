//! `guestgate-loadgen`: the end-to-end harness on loopback sockets. It puts the real guestgate
//! binary beside a direct connection to the echo upstream and a naive message-level relay, in
//! one run with the targets interleaved, and prints throughput, latency, connect-cycle and
//! idle-memory figures with guestgate's ratios. How to run and read it: `benches/README.md`.
//!
//! Modes: `throughput`, `cycles`, `idle`, `naive-relay` (the naive relay as a server, which
//! the other modes start as a child process) and `tcp-forward` (a byte-level TCP forwarder,
//! copying or splicing: the floor references `throughput --floor` and `cycles --floor` add).
//! Everything binds and connects to 127.0.0.1 only, runs for a bounded time and stops its
//! children by pid.

#[path = "../../benches/e2e/echo.rs"]
mod echo;
#[path = "../../benches/e2e/forward.rs"]
mod forward;
#[path = "../../benches/e2e/load.rs"]
mod load;
#[path = "../../benches/e2e/naive.rs"]
mod naive;
#[path = "../../benches/e2e/procs.rs"]
mod procs;
#[path = "../../benches/e2e/raw.rs"]
mod raw;
#[path = "../../benches/e2e/report.rs"]
mod report;
#[path = "../../benches/e2e/targets.rs"]
mod targets;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use tokio::net::{TcpListener, TcpStream};

use raw::Instrument;
use report::{Cell, Target};
use targets::Targets;

#[derive(Parser)]
#[command(
    name = "guestgate-loadgen",
    about = "End-to-end load harness: guestgate vs direct vs a naive relay, on loopback"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Messages per second, MB/s and p99 RTT for each target and payload size.
    Throughput(ThroughputArgs),
    /// Connect, one echo, close, again: cycles per second through each target.
    Cycles(CyclesArgs),
    /// Resident memory per idle relayed connection, guestgate vs the naive relay.
    Idle(IdleArgs),
    /// Run the naive message-level relay as a server (started by the other modes).
    NaiveRelay {
        /// Listen address (loopback).
        #[arg(long)]
        listen: SocketAddr,
        /// Upstream URL, e.g. ws://127.0.0.1:9000/ (loopback).
        #[arg(long)]
        upstream: url::Url,
        /// Exit when standard input closes (the harness holds it open).
        #[arg(long)]
        exit_on_stdin_eof: bool,
    },
    /// Run a byte-level TCP forwarder (no WebSocket work) as a server: the floor reference
    /// `--floor` adds (started by the other modes).
    TcpForward {
        /// Listen address (loopback).
        #[arg(long)]
        listen: SocketAddr,
        /// Upstream address, e.g. 127.0.0.1:9000 (loopback).
        #[arg(long)]
        upstream: SocketAddr,
        /// Move bytes with splice(2) through a pipe per direction (Linux) instead of copying
        /// through a 64 KiB buffer.
        #[arg(long)]
        splice: bool,
        /// Exit when standard input closes (the harness holds it open).
        #[arg(long)]
        exit_on_stdin_eof: bool,
    },
}

#[derive(Args)]
struct Binary {
    /// The guestgate binary to measure (default: `guestgate` next to this binary).
    #[arg(long)]
    guestgate: Option<PathBuf>,
    /// Run guestgate from a generated config file with this `relay.buffer_bytes` instead of
    /// `serve --upstream` with the defaults (for tuning experiments).
    #[arg(long)]
    guestgate_buffer_bytes: Option<usize>,
}

/// Which load-generator client and echo upstream the harness runs.
#[derive(Args)]
struct InstrumentArg {
    /// `raw`: frames pre-encoded and checked as they stream, no per-message allocation;
    /// `tungstenite`: the tokio-tungstenite client and echo of the earlier figures.
    #[arg(long, value_enum, default_value_t = Instrument::Raw)]
    instrument: Instrument,
}

#[derive(Args)]
struct ThroughputArgs {
    #[command(flatten)]
    bin: Binary,
    #[command(flatten)]
    inst: InstrumentArg,
    /// Connections per target.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Payload sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = [64, 16384, 1048576])]
    sizes: Vec<usize>,
    /// Measured seconds per cell.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Unmeasured seconds before each cell's window.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Rounds; each round runs every size through direct, guestgate, naive (and the floor
    /// targets) in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also measure the floor: byte-level TCP forwarders (`tcp-copy`, `tcp-splice`) that do
    /// no WebSocket work, interleaved with the other targets in every round.
    #[arg(long)]
    floor: bool,
}

#[derive(Args)]
struct CyclesArgs {
    #[command(flatten)]
    bin: Binary,
    #[command(flatten)]
    inst: InstrumentArg,
    /// Concurrent connect loops per target.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds per cell.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Rounds of direct, guestgate, naive (and the floor targets).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also measure the byte-level TCP forwarders (`tcp-copy`, `tcp-splice`).
    #[arg(long)]
    floor: bool,
}

#[derive(Args)]
struct IdleArgs {
    #[command(flatten)]
    bin: Binary,
    #[command(flatten)]
    inst: InstrumentArg,
    /// Idle connections to open through each relay.
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// Seconds to wait after the last connection before reading RSS.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Connections opened concurrently.
    #[arg(long, default_value_t = 64)]
    open_concurrency: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    let result = runtime.block_on(async move {
        match cli.mode {
            Mode::Throughput(a) => throughput(a).await,
            Mode::Cycles(a) => cycles(a).await,
            Mode::Idle(a) => idle(a).await,
            Mode::NaiveRelay {
                listen,
                upstream,
                exit_on_stdin_eof,
            } => naive_relay(listen, upstream, exit_on_stdin_eof).await,
            Mode::TcpForward {
                listen,
                upstream,
                splice,
                exit_on_stdin_eof,
            } => tcp_forward(listen, upstream, splice, exit_on_stdin_eof).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guestgate-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

async fn throughput(a: ThroughputArgs) -> Result<(), String> {
    let instrument = a.inst.instrument;
    raw::set_instrument(instrument);
    let round_targets = Target::round(a.floor);
    let cell_bound = a.warmup + a.duration + 20.0;
    let cells_per_size = round_targets.len() as f64;
    let lifetime =
        secs(a.rounds as f64 * a.sizes.len() as f64 * cells_per_size * cell_bound + 120.0);
    let targets = Targets::start(
        a.bin.guestgate.as_deref(),
        a.bin.guestgate_buffer_bytes,
        a.floor,
        lifetime,
    )
    .await?;
    let mut cells: Vec<Cell> = Vec::new();
    for round in 1..=a.rounds {
        for &size in &a.sizes {
            for &t in &round_targets {
                let addr = targets.addr(t)?;
                let sample = load::throughput(
                    addr,
                    targets.pid(t),
                    a.connections,
                    a.window,
                    size,
                    secs(a.warmup),
                    secs(a.duration),
                    instrument,
                )
                .await
                .map_err(|e| format!("{} {}: {e}", t.name(), report::size_label(size)))?;
                let rate = sample.msgs as f64 / sample.secs;
                eprintln!(
                    "round {round}/{}  {:>7}  {:<10}  {rate:>10.0} msg/s",
                    a.rounds,
                    report::size_label(size),
                    t.name()
                );
                report::add(&mut cells, t, size, sample);
            }
        }
    }
    println!(
        "\nthroughput: {} connections x {} in flight per target, {} s per cell, {} rounds, {} CPUs, instrument: {}",
        a.connections,
        a.window,
        a.duration,
        a.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        instrument.name()
    );
    report::print_throughput(&mut cells, &a.sizes);
    Ok(())
}

async fn cycles(a: CyclesArgs) -> Result<(), String> {
    let instrument = a.inst.instrument;
    raw::set_instrument(instrument);
    let round_targets = Target::round(a.floor);
    let per_round = round_targets.len() as f64;
    let lifetime = secs(a.rounds as f64 * per_round * (a.duration + 20.0) + 120.0);
    let targets = Targets::start(
        a.bin.guestgate.as_deref(),
        a.bin.guestgate_buffer_bytes,
        a.floor,
        lifetime,
    )
    .await?;
    let mut cells: Vec<Cell> = Vec::new();
    for round in 1..=a.rounds {
        for &t in &round_targets {
            let sample = load::cycles(
                targets.addr(t)?,
                a.concurrency,
                secs(a.duration),
                instrument,
            )
            .await
            .map_err(|e| format!("{}: {e}", t.name()))?;
            let rate = sample.msgs as f64 / sample.secs;
            eprintln!(
                "round {round}/{}  {:<10}  {rate:>8.0} cycles/s",
                a.rounds,
                t.name()
            );
            report::add(&mut cells, t, 0, sample);
        }
    }
    println!(
        "\nconnect cycles (connect, one 64 B echo, close): {} concurrent loops per target, {} s per cell, {} rounds, instrument: {}",
        a.concurrency,
        a.duration,
        a.rounds,
        instrument.name()
    );
    report::print_cycles(&mut cells);
    Ok(())
}

async fn idle(a: IdleArgs) -> Result<(), String> {
    let instrument = a.inst.instrument;
    raw::set_instrument(instrument);
    // This process holds a client and an echo socket per connection; each relay holds two.
    let need = 2 * a.connections as u64 + 256;
    match procs::open_files_limit() {
        Some(limit) if limit >= need => {}
        limit => {
            let limit = limit.map_or("unknown".to_string(), |l| l.to_string());
            return Err(format!(
                "the open-files limit is {limit}, {need} are needed for {} connections: \
                 run `ulimit -n {need}` (or higher, up to `ulimit -Hn`) in this shell first",
                a.connections
            ));
        }
    }
    let targets = Targets::start(
        a.bin.guestgate.as_deref(),
        a.bin.guestgate_buffer_bytes,
        false,
        Duration::from_secs(900),
    )
    .await?;
    let payload = load::payloads(64, 1).remove(0);
    let mut rows = Vec::new();
    for (t, child) in [
        (Target::Guestgate, &targets.guestgate),
        (Target::Naive, &targets.naive),
    ] {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = child.rss_kib()?;
        let first = a.connections / 5;
        let mut held =
            open_idle(child.addr, first, a.open_concurrency, &payload, instrument).await?;
        tokio::time::sleep(secs(a.settle)).await;
        let at_first = child.rss_kib()?;
        held.extend(
            open_idle(
                child.addr,
                a.connections - first,
                a.open_concurrency,
                &payload,
                instrument,
            )
            .await?,
        );
        tokio::time::sleep(secs(a.settle)).await;
        let after = child.rss_kib()?;
        eprintln!(
            "{}: {} idle connections open; RSS {before} -> {at_first} -> {after} KiB",
            t.name(),
            held.len()
        );
        rows.push(report::IdleRow {
            target: t,
            connections: held.len(),
            first,
            before,
            at_first,
            after,
        });
        // Close them all politely (bounded), so the next relay starts from a quiet machine.
        futures::stream::iter(held.into_iter().map(load::Client::close))
            .buffer_unordered(a.open_concurrency)
            .collect::<Vec<()>>()
            .await;
    }
    println!(
        "\nidle memory: {} idle WebSocket connections through each relay (one 64 B echo each, then silent), instrument: {}",
        a.connections,
        instrument.name()
    );
    report::print_idle(&rows);
    Ok(())
}

/// Opens `n` connections through `addr`, each checked with one echo, and keeps them open.
async fn open_idle(
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
    payload: &bytes::Bytes,
    instrument: Instrument,
) -> Result<Vec<load::Client>, String> {
    let opened: Vec<Result<load::Client, String>> = futures::stream::iter(0..n)
        .map(|_| async move {
            let mut client = load::Client::open(addr, instrument).await?;
            client.echo_once(payload).await?;
            Ok(client)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    opened.into_iter().collect()
}

/// The naive relay as a server: accept, upgrade, connect the upstream, relay messages.
async fn naive_relay(
    listen: SocketAddr,
    upstream: url::Url,
    stdin_eof: bool,
) -> Result<(), String> {
    let up_addr = upstream
        .socket_addrs(|| Some(80))
        .map_err(|e| format!("upstream {upstream}: {e}"))?
        .into_iter()
        .next()
        .ok_or("upstream has no address")?;
    if !listen.ip().is_loopback() || !up_addr.ip().is_loopback() {
        return Err("the naive relay only listens on and connects to loopback addresses".into());
    }
    if stdin_eof {
        exit_on_stdin_eof();
    }
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("binding {listen}: {e}"))?;
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(browser) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            let Ok(up_tcp) = TcpStream::connect(up_addr).await else {
                return;
            };
            let _ = up_tcp.set_nodelay(true);
            let Ok((up, _)) = tokio_tungstenite::client_async(upstream.as_str(), up_tcp).await
            else {
                return;
            };
            naive::relay(browser, up).await;
        });
    }
}

/// Exits the process when standard input closes (the harness holds the pipe open).
fn exit_on_stdin_eof() {
    std::thread::spawn(|| {
        use std::io::Read;
        let mut buf = [0u8; 64];
        while let Ok(n) = std::io::stdin().read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        std::process::exit(0);
    });
}

/// A byte-level TCP forwarder as a server: accept, connect the upstream, forward both ways.
async fn tcp_forward(
    listen: SocketAddr,
    upstream: SocketAddr,
    splice: bool,
    stdin_eof: bool,
) -> Result<(), String> {
    if !listen.ip().is_loopback() || !upstream.ip().is_loopback() {
        return Err("the forwarder only listens on and connects to loopback addresses".into());
    }
    let mode = if splice {
        forward::Mode::Splice
    } else {
        forward::Mode::Copy
    };
    if !mode.supported() {
        return Err("--splice needs Linux (splice(2))".into());
    }
    if stdin_eof {
        exit_on_stdin_eof();
    }
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("binding {listen}: {e}"))?;
    forward::serve(listener, upstream, mode).await;
    Ok(())
}
