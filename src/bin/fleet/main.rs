//! `guestgate-fleet`: page-like chat clients for `scripts/ci/fleet.sh`, which puts three
//! guestgate replicas behind HAProxy and restarts, kills and re-keys them while these pages
//! chat through the load balancer.
//!
//! `run`: N pages (see [`page`]) each hold a Genesys conversation in which the fake agent
//! writes `agent message 1..=K`; each reconnects on every drop and resumes, and checks that it
//! saw every agent message exactly once and in order. While running it rewrites a status
//! file (`--status`, one line of JSON: pages connected, finished, reconnects so far) so the
//! script can wait for the fleet to settle between restarts. It ends when every page has
//! seen message K, at `--max-secs`, or on SIGTERM/SIGINT, and prints a summary ending in the
//! plain line `fleet: N passed, M failed` (one check per page plus the fleet-wide checks);
//! `--report` gets the figures as JSON. Exit status: 0 all passed, 1 a check failed, 2 usage.
//!
//! `probe`: one connection, to keep a resume ticket or to present a kept one (see [`probe`]).
//!
//! Loopback only: a non-loopback target is refused.

mod page;
mod probe;
mod report;
mod wire;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use page::{Live, Page, Settings};
use report::Expectations;

#[derive(Debug, Parser)]
#[command(
    name = "guestgate-fleet",
    about = "Page-like chat clients through a load balancer in front of guestgate replicas"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run N pages until each has seen every agent message.
    Run(RunArgs),
    /// One connection: keep a new conversation's ticket, or present a kept ticket.
    Probe(ProbeArgs),
}

#[derive(Debug, clap::Args)]
struct Target {
    /// The load balancer's frontend (loopback only).
    #[arg(long)]
    target: SocketAddr,
    /// The Genesys route's path.
    #[arg(long, default_value = "/chat")]
    path: String,
    /// The Origin the pages send (one the route allows).
    #[arg(long, default_value = "https://chat.fleet.test")]
    origin: String,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// Pages; page i connects from 127.1.(i / 255).(i % 255 + 1).
    #[arg(long, default_value_t = 300)]
    clients: usize,
    /// The fake agent's last message number (`guestgate-fake --agent-max`).
    #[arg(long)]
    agent_max: u64,
    /// Each page writes a guest text this often, in milliseconds (0: never).
    #[arg(long, default_value_t = 4000)]
    guest_every_ms: u64,
    /// Pages start over this many milliseconds (0: all at once).
    #[arg(long, default_value_t = 0)]
    ramp_ms: u64,
    /// A page's first reconnect waits between half and all of this (the demo page's 500 ms).
    #[arg(long, default_value_t = 500)]
    backoff_min_ms: u64,
    /// The longest backoff, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    backoff_max_ms: u64,
    /// Bound on each step of a connection (connect, upgrade, SessionReady, replay), seconds.
    #[arg(long, default_value_t = 10)]
    step_timeout_secs: u64,
    /// A live connection silent this long is treated as stalled, seconds.
    #[arg(long, default_value_t = 15)]
    silence_timeout_secs: u64,
    /// Reconnects every page must have made by the end.
    #[arg(long, default_value_t = 0)]
    min_reconnects: u64,
    /// Connection attempts that may fail fleet-wide before SessionReady.
    #[arg(long, default_value_t = 0)]
    allowed_failed_attempts: u64,
    /// Upper bound on the run, seconds.
    #[arg(long, default_value_t = 300)]
    max_secs: u64,
    /// Rewritten every 100 ms with the fleet's progress (one line of JSON).
    #[arg(long)]
    status: Option<PathBuf>,
    /// Where to write the figures (JSON).
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
    #[command(flatten)]
    target: Target,
    /// The probe's source address (loopback).
    #[arg(long, default_value = "127.2.0.1")]
    source: IpAddr,
    /// Present the ticket in this file (first frame).
    #[arg(long)]
    ticket_in: Option<PathBuf>,
    /// Keep the ticket SessionReady carries in this file (mode 0600).
    #[arg(long)]
    ticket_out: Option<PathBuf>,
    /// Upper bound on the probe, seconds.
    #[arg(long, default_value_t = 10)]
    max_secs: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let target = match &cli.command {
        Command::Run(a) => &a.target,
        Command::Probe(a) => &a.target,
    };
    if !target.target.ip().is_loopback() {
        eprintln!(
            "guestgate-fleet: refusing target {}: loopback only",
            target.target
        );
        return ExitCode::from(2);
    }
    match cli.command {
        Command::Run(args) => run(args).await,
        Command::Probe(args) => probe_once(args).await,
    }
}

async fn probe_once(args: ProbeArgs) -> ExitCode {
    if !args.source.is_loopback() {
        eprintln!("guestgate-fleet: the probe's source must be a loopback address");
        return ExitCode::from(2);
    }
    let p = probe::Probe {
        target: args.target.target,
        path: &args.target.path,
        origin: &args.target.origin,
        source: args.source,
        ticket_in: args.ticket_in.as_deref(),
        ticket_out: args.ticket_out.as_deref(),
        limit: Duration::from_secs(args.max_secs),
    };
    match probe::run(&p).await {
        Ok(new_session) => {
            println!("{}", json!({ "newSession": new_session }));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("guestgate-fleet probe: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: RunArgs) -> ExitCode {
    if args.clients == 0 || args.agent_max == 0 {
        eprintln!("guestgate-fleet: --clients and --agent-max must be at least 1");
        return ExitCode::from(2);
    }
    let settings = Arc::new(Settings {
        target: args.target.target,
        path: args.target.path.clone(),
        origin: args.target.origin.clone(),
        agent_max: args.agent_max,
        guest_every: (args.guest_every_ms > 0).then(|| Duration::from_millis(args.guest_every_ms)),
        backoff_min: Duration::from_millis(args.backoff_min_ms),
        backoff_max: Duration::from_millis(args.backoff_max_ms.max(args.backoff_min_ms)),
        step_timeout: Duration::from_secs(args.step_timeout_secs),
        silence_timeout: Duration::from_secs(args.silence_timeout_secs),
    });
    let live = Arc::new(Live::default());
    let stop = CancellationToken::new();
    let epoch = Instant::now();
    let deadline = Duration::from_secs(args.max_secs);

    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..args.clients {
        let page = Page {
            id,
            source: page::source_of(id),
            settings: settings.clone(),
            live: live.clone(),
            stop: stop.clone(),
            epoch,
        };
        let start = Duration::from_millis(args.ramp_ms * id as u64 / args.clients as u64);
        tasks.spawn(async move {
            tokio::time::sleep(start).await;
            page.run().await
        });
    }

    let status = args.status.clone().map(|path| {
        let (live, stop) = (live.clone(), stop.clone());
        let clients = args.clients;
        tokio::spawn(async move {
            loop {
                write_status(&path, &live, clients, epoch);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    () = stop.cancelled() => break,
                }
            }
            write_status(&path, &live, clients, epoch);
        })
    });

    // Stop at the deadline or on a signal; pages close normally and report.
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! {
                () = tokio::time::sleep(deadline) => eprintln!("guestgate-fleet: deadline reached; stopping"),
                _ = tokio::signal::ctrl_c() => eprintln!("guestgate-fleet: interrupted; stopping"),
                _ = term.recv() => eprintln!("guestgate-fleet: terminated; stopping"),
            }
            stop.cancel();
        });
    }

    let mut pages = Vec::with_capacity(args.clients);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(outcome) => pages.push(outcome),
            Err(e) => eprintln!("guestgate-fleet: a page task failed: {e}"),
        }
    }
    let elapsed = epoch.elapsed();
    stop.cancel();
    if let Some(status) = status {
        let _ = status.await;
    }
    // A page whose task failed did not report: it fails as a page that saw nothing.
    let reported: std::collections::HashSet<usize> = pages.iter().map(|p| p.id).collect();
    for id in (0..args.clients).filter(|id| !reported.contains(id)) {
        pages.push(page::Outcome {
            id,
            source: page::source_of(id).to_string(),
            problems: vec!["the page's task failed".into()],
            ..page::Outcome::default()
        });
    }
    pages.sort_by_key(|p| p.id);
    let summary = report::summarize(
        &pages,
        Expectations {
            agent_max: args.agent_max,
            min_reconnects: args.min_reconnects,
            allowed_failed_attempts: args.allowed_failed_attempts,
        },
        elapsed,
    );
    print!("{}", summary.text);
    let mut figures = summary.figures.clone();
    figures["passed"] = json!(summary.passed());
    figures["failed"] = json!(summary.failed());
    if let Some(path) = &args.report
        && let Err(e) = std::fs::write(path, format!("{figures}\n"))
    {
        eprintln!("guestgate-fleet: writing {}: {e}", path.display());
    }
    println!("{}", summary.closing_line());
    if summary.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Rewrites the status file (write then rename, so a reader never sees half of it).
fn write_status(path: &std::path::Path, live: &Live, clients: usize, epoch: Instant) {
    let body = json!({
        "elapsed_ms": u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX),
        "clients": clients,
        "started": live.started.load(Ordering::Relaxed),
        "connected": live.connected.load(Ordering::Relaxed),
        "finished": live.finished.load(Ordering::Relaxed),
        "reconnects": live.reconnects.load(Ordering::Relaxed),
        "failed_attempts": live.failed_attempts.load(Ordering::Relaxed),
        "agent_messages": live.agent_messages.load(Ordering::Relaxed),
    });
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, format!("{body}\n")).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}
