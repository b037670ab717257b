//! `guestgate-abuse`: plays a hostile browser against a running guestgate (started by
//! `scripts/ci/abuse.sh`, never by this binary) and prints one JSON line of figures per
//! scenario: `{"scenario":..,"pass":..,"problems":[..],...}`. It checks what a browser can see
//! (close codes, timings) and what the fake upstream counted (`guestgate-fake`'s stats
//! endpoint); the script checks guestgate's memory and descriptors from `/proc`.
//!
//! Loopback only: a non-loopback target or stats address is refused. Every scenario is bounded
//! in connections and in time (`--max-secs`). Exit status: 0 pass, 1 a bound did not hold,
//! 2 usage or set-up error.

mod client;
mod report;
mod scenarios;
mod upstream;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use client::Target;
use report::Report;

/// Every attack this binary knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// N connections each send the largest message the Genesys route allows, `[0,0,...]`.
    Huge,
    /// One message a byte over the limit, whole and fragmented: close 1009 expected.
    OverLimit,
    /// One message in many tiny fragments.
    Fragments,
    /// A fragmented message that never ends (a fragment every 250 ms keeps the leg busy).
    UnfinishedFragments,
    /// Pings as fast as possible: the rate limit must close the browser.
    PingFlood,
    /// `onMessage` requests as fast as possible: the rate limit must close the browser.
    MessageFlood,
    /// Connections that upgrade and reset at once, during the upstream set-up.
    ResetStorm,
    /// Thousands of idle TCP sockets from 127.0.0.2, then a browser from 127.0.0.1 chats.
    IdleFlood,
    /// Upgrade requests sent one byte per second.
    SlowHeaders,
    /// Upgraded connections that trickle one byte of a frame header per second.
    SlowFrames,
    /// Browsers that never read while the upstream floods them.
    SlowReaders,
    /// Resume tickets tampered with, expired, and renewed past the maximum lifetime.
    Tickets,
}

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "guestgate-abuse",
    about = "Hostile-browser scenarios against a running guestgate on loopback"
)]
pub struct Args {
    /// The scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// guestgate's browser listener (loopback only).
    #[arg(long)]
    pub target: SocketAddr,
    /// `guestgate-fake`'s stats endpoint (loopback only).
    #[arg(long)]
    pub fake_stats: SocketAddr,
    /// The Origin header to send (one the routes allow).
    #[arg(long, default_value = "https://chat.abuse.test")]
    pub origin: String,
    /// The Genesys-preset route's path.
    #[arg(long, default_value = "/chat")]
    pub genesys_path: String,
    /// The plain route to the echo upstream.
    #[arg(long, default_value = "/echo")]
    pub echo_path: String,
    /// The plain route to the flood upstream.
    #[arg(long, default_value = "/flood")]
    pub flood_path: String,
    /// The Genesys route's browser message limit in bytes (`guestgate check` prints it).
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_message: u64,
    /// Hostile connections (each scenario has its own default).
    #[arg(long)]
    pub connections: Option<usize>,
    /// The documented bound for unfinished fragmented messages, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub fragment_bound_secs: f64,
    /// guestgate's `server.handshake_timeout`, in seconds (slow headers must end within it).
    #[arg(long, default_value_t = 10.0)]
    pub handshake_timeout_secs: f64,
    /// Close codes that count as "the rate limit closed the browser" (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1008,1013,4429")]
    pub rate_limit_codes: Vec<u16>,
    /// guestgate's `server.max_connections` (the idle flood fills them first).
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// The fake Genesys's own latency answering `configureSession`, in milliseconds: part of
    /// every chat's set-up that guestgate does not control (the idle flood's bound adds it).
    #[arg(long, default_value_t = 0)]
    pub upstream_latency_ms: u64,
    /// The Genesys route's `edge.max_concurrent_setups` (the reset storm's bound).
    #[arg(long, default_value_t = 50)]
    pub max_setups: usize,
    /// The resume `ttl`, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub ticket_ttl_secs: f64,
    /// The resume `max_lifetime`, in seconds.
    #[arg(long, default_value_t = 4.0)]
    pub ticket_max_lifetime_secs: f64,
    /// The flood route's `relay.write_stall_timeout`, in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub write_stall_secs: f64,
    /// The flood route's `relay.close_timeout`, in seconds: a stalled relay is gone within
    /// `write_stall_timeout` plus this.
    #[arg(long, default_value_t = 5.0)]
    pub close_timeout_secs: f64,
    /// Upper bound on the scenario's run time, in seconds.
    #[arg(long, default_value_t = 60)]
    pub max_secs: u64,
}

impl Args {
    /// The address this scenario's ordinary connections come from, `127.10.<scenario>.1`, so
    /// per-address rates spent by one scenario do not leak into the next.
    pub fn home(&self) -> std::net::IpAddr {
        std::net::IpAddr::from([127, 10, self.scenario as u8, 1])
    }

    /// The browser-side target.
    pub fn browser(&self) -> Target {
        Target {
            addr: self.target,
            origin: self.origin.clone(),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    for (what, addr) in [("target", args.target), ("fake stats", args.fake_stats)] {
        if !addr.ip().is_loopback() {
            eprintln!("guestgate-abuse: refusing {what} {addr}: loopback only");
            return ExitCode::from(2);
        }
    }
    let name = args
        .scenario
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    let limit = Duration::from_secs(args.max_secs);
    let report = match tokio::time::timeout(limit, scenarios::run(&args)).await {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => {
            eprintln!("guestgate-abuse {name}: {e}");
            return ExitCode::from(2);
        }
        Err(_) => {
            let mut r = Report::new();
            r.fail(format!("scenario did not finish within {}s", args.max_secs));
            r
        }
    };
    println!("{}", report.to_json(&name));
    if report.pass() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
