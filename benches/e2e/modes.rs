//! The measuring modes of `guestgate-loadgen`: `throughput` (every size and load shape through
//! every target, interleaved per round), `cycles` (connect, one echo, close), `idle` (memory
//! per idle relayed connection). `setups` lives in `setups.rs`. With `--observability`,
//! `throughput` and `cycles` also measure `guestgate+obs` right after plain guestgate in every
//! round, scraping its `/metrics` during its cells.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;

use crate::load::Sample;
use crate::raw::{self, Instrument};
use crate::report::{self, Cell, Target};
use crate::scrape::{self, Scraper};
use crate::targets::Targets;
use crate::{CyclesArgs, IdleArgs, ThroughputArgs, load, nginx, procs, tables};

/// How often `guestgate+obs`'s `/metrics` is scraped during its cells.
const SCRAPE_EVERY: Duration = Duration::from_secs(1);

/// Runs one cell, `cell`, against `t`; when `t` is `guestgate+obs`, its `/metrics` is scraped
/// every [`SCRAPE_EVERY`] while the cell runs and the scrapes are added to `stats`.
async fn observed(
    targets: &Targets,
    t: Target,
    stats: &mut scrape::Stats,
    cell: impl Future<Output = Result<Sample, String>>,
) -> Result<Sample, String> {
    let scraper = match (t, targets.obs_admin()) {
        (Target::GuestgateObs, Some(admin)) => Some(Scraper::start(admin, SCRAPE_EVERY)),
        _ => None,
    };
    let sample = cell.await;
    if let Some(scraper) = scraper {
        stats.add(scraper.stop().await);
    }
    sample
}

/// `s` seconds (negative counts as zero).
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// The `throughput` mode.
pub async fn throughput(a: ThroughputArgs) -> Result<(), String> {
    let instrument = a.inst.instrument;
    raw::set_instrument(instrument);
    let nginx_bin = nginx_binary(a.bin.nginx.as_deref());
    let cells_per_round = (a.sizes.len() * a.shapes.len() * 7) as f64;
    let cell_bound = a.warmup + a.duration + 20.0;
    let lifetime = secs(a.rounds as f64 * cells_per_round * cell_bound + 120.0);
    let targets = Targets::start(
        a.bin.guestgate.as_deref(),
        a.bin.guestgate_buffer_bytes,
        nginx_bin.as_deref(),
        a.floor,
        a.observability,
        lifetime,
    )
    .await?;
    let round_targets = targets.round();
    let mut cells: Vec<Cell> = Vec::new();
    let mut scrapes = scrape::Stats::default();
    for round in 1..=a.rounds {
        for &shape in &a.shapes {
            for &size in &a.sizes {
                for &t in &round_targets {
                    let label = format!("{} @{}", report::size_label(size), shape.label());
                    let cell = load::throughput(
                        targets.addr(t)?,
                        targets.pid(t),
                        shape.conns,
                        shape.window,
                        size,
                        secs(a.warmup),
                        secs(a.duration),
                        instrument,
                    );
                    let sample = observed(&targets, t, &mut scrapes, cell)
                        .await
                        .map_err(|e| format!("{} {label}: {e}", t.name()))?;
                    let rate = sample.msgs as f64 / sample.secs;
                    eprintln!(
                        "round {round}/{}  {label:>14}  {:<13}  {rate:>10.0} msg/s",
                        a.rounds,
                        t.name()
                    );
                    report::add(&mut cells, t, size, shape, sample);
                }
            }
        }
    }
    let shapes: Vec<String> = a.shapes.iter().map(|s| s.label()).collect();
    println!(
        "\nthroughput: load shapes (connections x in flight) {} per target, {} s per cell, {} rounds, {} CPUs, instrument: {}",
        shapes.join(", "),
        a.duration,
        a.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        instrument.name()
    );
    tables::print_throughput(&mut cells, &a.sizes, &a.shapes);
    if a.observability {
        let keys: Vec<(usize, report::Shape)> = a
            .shapes
            .iter()
            .flat_map(|&shape| a.sizes.iter().map(move |&size| (size, shape)))
            .collect();
        tables::print_obs(&cells, &keys, "msg", &scrapes, targets.obs_log_lines());
    }
    Ok(())
}

/// The `cycles` mode.
pub async fn cycles(a: CyclesArgs) -> Result<(), String> {
    let instrument = a.inst.instrument;
    raw::set_instrument(instrument);
    let nginx_bin = nginx_binary(a.bin.nginx.as_deref());
    let lifetime = secs(a.rounds as f64 * 7.0 * (a.duration + 20.0) + 120.0);
    let targets = Targets::start(
        a.bin.guestgate.as_deref(),
        a.bin.guestgate_buffer_bytes,
        nginx_bin.as_deref(),
        a.floor,
        a.observability,
        lifetime,
    )
    .await?;
    let round_targets = targets.round();
    let shape = report::Shape {
        conns: a.concurrency,
        window: 1,
    };
    let mut cells: Vec<Cell> = Vec::new();
    let mut scrapes = scrape::Stats::default();
    for round in 1..=a.rounds {
        for &t in &round_targets {
            let cell = load::cycles(
                targets.addr(t)?,
                targets.pid(t),
                a.concurrency,
                secs(a.duration),
                instrument,
            );
            let sample = observed(&targets, t, &mut scrapes, cell)
                .await
                .map_err(|e| format!("{}: {e}", t.name()))?;
            let rate = sample.msgs as f64 / sample.secs;
            eprintln!(
                "round {round}/{}  {:<13}  {rate:>8.0} cycles/s",
                a.rounds,
                t.name()
            );
            report::add(&mut cells, t, 0, shape, sample);
        }
    }
    println!(
        "\nconnect cycles (connect, one 64 B echo, close): {} concurrent loops per target, {} s per cell, {} rounds, instrument: {}",
        a.concurrency,
        a.duration,
        a.rounds,
        instrument.name()
    );
    tables::print_cycles(&mut cells);
    if a.observability {
        tables::print_obs(
            &cells,
            &[(0, shape)],
            "cycle",
            &scrapes,
            targets.obs_log_lines(),
        );
    }
    Ok(())
}

/// The `idle` mode.
pub async fn idle(a: IdleArgs) -> Result<(), String> {
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
        None,
        false,
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
        let echo = (!a.handshake_only).then_some(&payload);
        let mut held = open_idle(child.addr, first, a.open_concurrency, echo, instrument).await?;
        tokio::time::sleep(secs(a.settle)).await;
        let at_first = child.rss_kib()?;
        held.extend(
            open_idle(
                child.addr,
                a.connections - first,
                a.open_concurrency,
                echo,
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
        rows.push(tables::IdleRow {
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
    let shape = if a.handshake_only {
        "silent from the upgrade on"
    } else {
        "one 64 B echo each, then silent"
    };
    println!(
        "\nidle memory: {} idle WebSocket connections through each relay ({shape}), instrument: {}",
        a.connections,
        instrument.name()
    );
    tables::print_idle(&rows);
    Ok(())
}

/// Opens `n` connections through `addr`, each checked with one echo of `echo` when given,
/// and keeps them open.
async fn open_idle(
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
    echo: Option<&bytes::Bytes>,
    instrument: Instrument,
) -> Result<Vec<load::Client>, String> {
    let opened: Vec<Result<load::Client, String>> = futures::stream::iter(0..n)
        .map(|_| async move {
            let mut client = load::Client::open(addr, instrument).await?;
            if let Some(payload) = echo {
                client.echo_once(payload).await?;
            }
            Ok(client)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    opened.into_iter().collect()
}

/// The nginx binary to run as a peer (`--nginx`, `PATH`, `/usr/sbin/nginx`); says so when
/// there is none, and the nginx column is then left out.
fn nginx_binary(explicit: Option<&std::path::Path>) -> Option<std::path::PathBuf> {
    let found = nginx::find(explicit);
    if found.is_none() {
        eprintln!(
            "nginx: not found (no --nginx, none on PATH, no /usr/sbin/nginx): the nginx column is absent. \
             On Debian: apt-get install nginx"
        );
    }
    found
}
