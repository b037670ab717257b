//! The attacks, one function per scenario, and what every scenario checks afterwards: no
//! upstream socket it caused is still open once its browsers are gone.

mod floods;
mod messages;
mod pre_upgrade;
mod slow;
mod tickets;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

use crate::client::{Client, ClientError, Ending, Watch};
use crate::report::Report;
use crate::upstream;
use crate::{Args, Scenario};

/// How long upstream sockets may take to close after the attack ends.
const SETTLE: Duration = Duration::from_secs(10);

/// Runs the scenario `args` names; `Err` only when the scenario could not be run at all.
pub async fn run(args: &Args) -> Result<Report, String> {
    let before = upstream::counts(args.fake_stats).await?;
    let mut report = Report::new();
    match args.scenario {
        Scenario::Huge => messages::huge(args, &mut report).await,
        Scenario::OverLimit => messages::over_limit(args, &mut report).await,
        Scenario::Fragments => messages::fragments(args, &mut report).await,
        Scenario::UnfinishedFragments => messages::unfinished(args, &mut report).await,
        Scenario::PingFlood => floods::ping_flood(args, &mut report).await,
        Scenario::MessageFlood => floods::message_flood(args, &mut report).await,
        Scenario::ResetStorm => pre_upgrade::reset_storm(args, &mut report).await,
        Scenario::IdleFlood => pre_upgrade::idle_flood(args, &mut report).await,
        Scenario::SlowHeaders => pre_upgrade::slow_headers(args, &mut report).await,
        Scenario::SlowFrames => slow::slow_frames(args, &mut report).await,
        Scenario::SlowReaders => slow::slow_readers(args, &mut report).await,
        Scenario::Tickets => tickets::tickets(args, &mut report).await,
    }
    .map_err(|e| e.to_string())?;
    let (after, settled) = upstream::settle(args.fake_stats, before.open(), SETTLE).await?;
    // Set-ups still in flight when the sockets closed may still reach the fake: look again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = match upstream::counts(args.fake_stats).await {
        Ok(c) if settled => c,
        _ => after,
    };
    let delta = |u: &str, k: &str| after.get(u, k).saturating_sub(before.get(u, k));
    report.set("upstream_sessions_created", delta("genesys", "sessions"));
    report.set(
        "upstream_connects",
        delta("genesys", "accepted") + delta("echo", "accepted") + delta("flood", "accepted"),
    );
    if args.scenario == Scenario::ResetStorm {
        let created = delta("genesys", "sessions");
        report.check(created <= args.max_setups as u64, || {
            format!(
                "the storm created {created} upstream sessions (max_concurrent_setups {})",
                args.max_setups
            )
        });
    }
    report.set(
        "upstream_open_after",
        after.open() - before.open().min(after.open()),
    );
    report.check(settled && after.open() <= before.open(), || {
        format!(
            "{} upstream sockets still open {}s after the attack",
            after.open() - before.open().min(after.open()),
            SETTLE.as_secs()
        )
    });
    Ok(report)
}

/// Opens a connection on the Genesys route and waits for `SessionReady`; returns the client
/// and the greeting's body.
pub async fn open_genesys(
    args: &Args,
    query: &str,
    source: Option<IpAddr>,
) -> Result<(Client, Value), ClientError> {
    let path = format!("{}{query}", args.genesys_path);
    let source = source.or(Some(args.home()));
    let mut c = Client::open(&args.browser(), &path, source, Duration::from_secs(10)).await?;
    let body = c.session_ready(Duration::from_secs(10)).await?;
    Ok((c, body))
}

/// Counts endings by label, e.g. `{"1008": 7, "dropped": 1}`.
pub fn tally(endings: impl IntoIterator<Item = Ending>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in endings {
        *out.entry(e.label()).or_insert(0) += 1;
    }
    out
}

/// Records a watch's figures under `prefix`.
pub fn record_watch(report: &mut Report, prefix: &str, w: &Watch) {
    report.set(&format!("{prefix}ending"), w.ending.label());
    report.set(&format!("{prefix}frames_received"), w.frames);
    report.set(&format!("{prefix}secs"), (w.secs * 1000.0).round() / 1000.0);
}

/// A loopback source address `127.<a>.<b>.<c>` for the `i`-th connection of a storm that
/// spreads over addresses (so per-address limits do not hide what it tests).
pub fn spread_source(second_octet: u8, i: usize) -> IpAddr {
    let n = i as u32;
    IpAddr::from([127, second_octet, (n / 250) as u8, (n % 250 + 1) as u8])
}
