//! `guestgate-loadgen`: the end-to-end harness on loopback sockets. It puts the real guestgate
//! binary beside a direct connection to the echo upstream, nginx (when installed) and a naive
//! message-level relay, in one run with the targets interleaved, and prints throughput,
//! latency, CPU per message, connect-cycle, session set-up and idle-memory figures with
//! guestgate's ratios. How to run and read it: `benches/README.md`.
//!
//! Modes: `throughput`, `cycles`, `setups`, `idle`, `naive-relay` (the naive relay as a
//! server, which the other modes start as a child process) and `tcp-forward` (a byte-level TCP
//! forwarder, copying or splicing: the floor references `throughput --floor` and `cycles
//! --floor` add). This file is the command line; the modes live in `benches/e2e/`.
//! Everything binds and connects to 127.0.0.1 only, runs for a bounded time and stops its
//! children by pid.

#[path = "../../benches/e2e/echo.rs"]
mod echo;
#[path = "../../benches/e2e/forward.rs"]
mod forward;
#[path = "../../benches/e2e/load.rs"]
mod load;
#[path = "../../benches/e2e/modes.rs"]
mod modes;
#[path = "../../benches/e2e/naive.rs"]
mod naive;
#[path = "../../benches/e2e/nginx.rs"]
mod nginx;
#[path = "../../benches/e2e/procs.rs"]
mod procs;
#[path = "../../benches/e2e/raw.rs"]
mod raw;
#[path = "../../benches/e2e/report.rs"]
mod report;
#[path = "../../benches/e2e/scrape.rs"]
mod scrape;
#[path = "../../benches/e2e/servers.rs"]
mod servers;
#[path = "../../benches/e2e/setups.rs"]
mod setups;
#[path = "../../benches/e2e/tables.rs"]
mod tables;
#[path = "../../benches/e2e/targets.rs"]
mod targets;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use modes::secs;
use raw::Instrument;
use report::Shape;

#[derive(Parser)]
#[command(
    name = "guestgate-loadgen",
    about = "End-to-end load harness: guestgate vs direct, nginx and a naive relay, on loopback"
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
    /// Genesys-preset session set-ups per second through guestgate, against the in-process
    /// fake with a fixed upstream latency, beside the fake's own set-up time.
    Setups(SetupsArgs),
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
    /// The nginx binary run as a peer (default: `nginx` on PATH, else /usr/sbin/nginx; the
    /// nginx column is absent when there is none).
    #[arg(long)]
    nginx: Option<PathBuf>,
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
    /// Load shapes, CONNECTIONSxIN_FLIGHT: each size runs at each shape.
    #[arg(long, value_delimiter = ',', default_values = ["1x16", "64x16"])]
    shapes: Vec<Shape>,
    /// Payload sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = [64, 1024, 16384, 1048576])]
    sizes: Vec<usize>,
    /// Measured seconds per cell.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Unmeasured seconds before each cell's window.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Rounds; each round runs every shape and size through direct, guestgate, nginx, naive
    /// (and the floor targets) in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also measure the floor: byte-level TCP forwarders (`tcp-copy`, `tcp-splice`) that do
    /// no WebSocket work, interleaved with the other targets in every round.
    #[arg(long)]
    floor: bool,
    /// Also measure `guestgate+obs` (right after guestgate in each round): guestgate with
    /// `--log info` and its `/metrics` scraped every second; prints the cost against "< 3 %".
    #[arg(long)]
    observability: bool,
}

#[derive(Args)]
struct CyclesArgs {
    #[command(flatten)]
    bin: Binary,
    #[command(flatten)]
    inst: InstrumentArg,
    /// Concurrent connect loops per target.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds per cell.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Rounds of direct, guestgate, nginx, naive (and the floor targets).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also measure the byte-level TCP forwarders (`tcp-copy`, `tcp-splice`).
    #[arg(long)]
    floor: bool,
    /// Also measure `guestgate+obs` (right after guestgate in each round): guestgate with
    /// `--log info` and its `/metrics` scraped every second; prints the cost against "< 3 %".
    #[arg(long)]
    observability: bool,
}

#[derive(Args)]
struct SetupsArgs {
    /// The guestgate binary to measure (default: `guestgate` next to this binary).
    #[arg(long)]
    guestgate: Option<PathBuf>,
    /// Concurrent set-up loops.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds per cell.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Rounds of fake-direct, guestgate.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// The fake's delay before answering each configureSession, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Open loop: start this many set-ups per second at fixed intervals, each on its own task
    /// (latency from the scheduled start), instead of `--concurrency` closed loops; e.g. 500.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: most set-ups under way at once; starts beyond it are counted as dropped.
    #[arg(long, default_value_t = 1024)]
    max_outstanding: usize,
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
    /// Leave each connection silent right after its upgrade (no echo): the handshake-only
    /// reading. The relays then hold connections that never carried a message.
    #[arg(long)]
    handshake_only: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    let result = runtime.block_on(async move {
        match cli.mode {
            Mode::Throughput(a) => modes::throughput(a).await,
            Mode::Cycles(a) => modes::cycles(a).await,
            Mode::Setups(a) => setups(a).await,
            Mode::Idle(a) => modes::idle(a).await,
            Mode::NaiveRelay {
                listen,
                upstream,
                exit_on_stdin_eof,
            } => servers::naive_relay(listen, upstream, exit_on_stdin_eof).await,
            Mode::TcpForward {
                listen,
                upstream,
                splice,
                exit_on_stdin_eof,
            } => servers::tcp_forward(listen, upstream, splice, exit_on_stdin_eof).await,
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

async fn setups(a: SetupsArgs) -> Result<(), String> {
    let me = std::env::current_exe().map_err(|e| format!("locating this binary: {e}"))?;
    let guestgate = a
        .guestgate
        .unwrap_or_else(|| me.with_file_name("guestgate"));
    if !guestgate.is_file() {
        return Err(format!(
            "{} not found: build it with `cargo build --release --bin guestgate` or pass --guestgate",
            guestgate.display()
        ));
    }
    setups::run(setups::Settings {
        guestgate,
        concurrency: a.concurrency.max(1),
        duration: secs(a.duration),
        rounds: a.rounds.max(1),
        latency: std::time::Duration::from_millis(a.latency_ms),
        rate: a.rate,
        max_outstanding: a.max_outstanding.max(1),
    })
    .await
}
