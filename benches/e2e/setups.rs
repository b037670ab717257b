//! Genesys-preset session set-ups per second: the `setups` mode. The fake Genesys Web
//! Messaging socket (`guestgate::mock::genesys`) runs in the harness process with a fixed
//! latency before each `configureSession` answer; guestgate runs the `genesys-web-messaging`
//! preset in front of it. Each of `concurrency` loops opens a WebSocket through guestgate,
//! reads until guestgate's `SessionReady` (guestgate upgraded, connected upstream, configured
//! the session and got its answer), closes, and starts again. Beside it, the same loops talk
//! to the fake directly (upgrade, `configureSession` with a fresh token, `SessionResponse`,
//! close): the fake's own set-up time, which guestgate's is compared with.
//!
//! That is the closed loop (the default). With a rate (`--rate N`) the mode is an open loop
//! instead: set-ups are started at fixed intervals, N per second, each on its own task, whatever
//! the earlier ones are doing, with at most `max_outstanding` under way (a start that would
//! exceed it is counted as dropped); each set-up's latency runs from its scheduled start, so
//! a harness or target that falls behind shows as latency (no coordinated omission), and a
//! failed set-up is counted as an error instead of ending the run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use guestgate::mock::genesys::{DEFAULT_DEPLOYMENT_ID, FakeGenesys, FakeGenesysConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::load::{RawClient, Sample};
use crate::procs::{self, cpu_secs};
use crate::raw::{self, op};

/// Distinct error messages an open-loop path keeps for the report.
const ERROR_KINDS: usize = 4;

impl Open {
    fn error(&mut self, e: String, n: u64) {
        self.errors += n;
        if let Some(kind) = self.error_kinds.iter_mut().find(|(k, _)| *k == e) {
            kind.1 += n;
        } else if self.error_kinds.len() < ERROR_KINDS {
            self.error_kinds.push((e, n));
        }
    }

    /// The first error, for tests.
    #[cfg(test)]
    fn first_error(&self) -> Option<&str> {
        self.error_kinds.first().map(|(k, _)| k.as_str())
    }
}

/// Longest one set-up may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// What to measure against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Straight to the fake (the client sends `configureSession` itself).
    Fake,
    /// Through guestgate's preset (guestgate sends it and answers `SessionReady`).
    Guestgate,
}

/// Settings of a `setups` run.
pub struct Settings {
    /// The guestgate binary.
    pub guestgate: std::path::PathBuf,
    /// Concurrent set-up loops.
    pub concurrency: usize,
    /// Seconds per cell.
    pub duration: Duration,
    /// Rounds of fake, guestgate.
    pub rounds: usize,
    /// The fake's delay before answering `configureSession`.
    pub latency: Duration,
    /// Open loop: set-ups started per second (`None`: closed loop with `concurrency` loops).
    pub rate: Option<f64>,
    /// Open loop: most set-ups under way at once; a start beyond it is dropped and counted.
    pub max_outstanding: usize,
}

/// One path's open-loop results over all rounds.
#[derive(Default)]
struct Open {
    /// Completed set-ups, their latencies (from the scheduled start), window lengths, CPU.
    sample: Sample,
    /// Set-ups scheduled (started or dropped).
    scheduled: u64,
    /// Set-ups that failed or timed out.
    errors: u64,
    /// Set-ups not started because `max_outstanding` were under way.
    dropped: u64,
    /// The distinct error messages (at most [`ERROR_KINDS`]) and how often each came; the
    /// rest are counted in `errors` only.
    error_kinds: Vec<(String, u64)>,
    /// Achieved set-ups per second in each round.
    rates: Vec<f64>,
}

/// Runs the mode and prints its table.
pub async fn run(s: Settings) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("binding the fake Genesys: {e}"))?;
    let fake = FakeGenesys::start(
        listener,
        FakeGenesysConfig {
            agent_reply: false,
            rate_limit_per_sec: 0,
            configure_delay: s.latency,
            ..FakeGenesysConfig::default()
        },
    );
    // Every set-up comes from 127.0.0.1: the per-address caps (the server's, default 256
    // connections, whose excess is closed unread, and the route's) are switched off, or a
    // stall of a quarter second at 1000 set-ups/s ends in refused connections.
    let config = format!(
        "[server]\nmax_connections_per_ip = \"off\"\n\n\
         [[routes]]\npath = \"/\"\n\n[routes.edge]\nallow_any_origin = true\n\
         max_connections_per_ip = \"off\"\nhandshake_rate_per_ip = \"off\"\n\n[routes.genesys]\nbase_url = \"{}\"\n\
         deployment_id = \"{DEFAULT_DEPLOYMENT_ID}\"\norigin = \"https://loadgen.guestgate.example\"\n",
        fake.url()
    );
    let path = std::env::temp_dir().join(format!(
        "guestgate-loadgen-setups-{}.toml",
        std::process::id()
    ));
    std::fs::write(&path, config).map_err(|e| format!("writing {}: {e}", path.display()))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], procs::free_port()?));
    let args: Vec<String> = [
        "serve",
        "--config",
        &path.to_string_lossy(),
        "--listen",
        &addr.to_string(),
        "--admin-listen",
        "127.0.0.1:0",
        "--log",
        "warn",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    if let Some(rate) = s.rate {
        // Each set-up under way holds a client socket and the fake's socket in this process.
        let need = 2 * s.max_outstanding as u64 + 256;
        if let Some(limit) = procs::open_files_limit().filter(|&l| l < need) {
            return Err(format!(
                "the open-files limit is {limit}, {need} are needed for --max-outstanding {}: \
                 run `ulimit -n {need}` first or lower --max-outstanding",
                s.max_outstanding
            ));
        }
        if !(rate > 0.0 && rate.is_finite()) {
            return Err(format!("--rate {rate}: must be a positive number"));
        }
    }
    // A cell ends at most two step timeouts (set-up, close) after its window.
    let per_cell = s.duration.as_secs_f64() + 2.0 * STEP_TIMEOUT.as_secs_f64() + 10.0;
    let lifetime = Duration::from_secs_f64(s.rounds as f64 * 2.0 * per_cell + 60.0);
    let gg = procs::spawn("guestgate", &s.guestgate, &args, addr, lifetime).await;
    let _ = std::fs::remove_file(&path);
    let gg = gg?;
    eprintln!(
        "fake Genesys {} (in process, {:?} before each configureSession answer); guestgate pid {} on {addr}",
        fake.addr(),
        s.latency,
        gg.pid
    );
    // Where each path's set-ups go, and the process whose CPU is charged to them.
    let endpoint = |via: Via| match via {
        Via::Fake => (fake.addr(), None),
        Via::Guestgate => (addr, Some(gg.pid)),
    };
    if let Some(rate) = s.rate {
        let mut rows = [
            (Via::Fake, Open::default()),
            (Via::Guestgate, Open::default()),
        ];
        for round in 1..=s.rounds {
            for (via, total) in rows.iter_mut() {
                let (target, pid) = endpoint(*via);
                let cell = open_cell(*via, target, pid, rate, s.max_outstanding, s.duration);
                let c = cell.await;
                let achieved = c.sample.msgs as f64 / c.sample.secs.max(1e-9);
                eprintln!(
                    "round {round}/{}  {via:?}  {achieved:>8.0} set-ups/s ({rate} offered, {} errors, {} dropped)",
                    s.rounds, c.errors, c.dropped
                );
                total.rates.push(achieved);
                total.scheduled += c.scheduled;
                total.dropped += c.dropped;
                let counted: u64 = c.error_kinds.iter().map(|(_, n)| n).sum();
                for (e, n) in c.error_kinds {
                    total.error(e, n);
                }
                total.errors += c.errors - counted;
                total.sample.absorb(c.sample);
            }
        }
        println!(
            "\nGenesys-preset session set-ups, open loop: {rate} set-ups/s offered at fixed intervals (at most {} under way), fake upstream latency {} ms before each configureSession answer, {} s per cell, {} rounds; latency from each set-up's scheduled start",
            s.max_outstanding,
            s.latency.as_millis(),
            s.duration.as_secs_f64(),
            s.rounds
        );
        print_open(rate, &mut rows);
        fake.shutdown().await;
        return Ok(());
    }
    let mut rows: Vec<(Via, Sample, Vec<f64>)> = vec![
        (Via::Fake, Sample::default(), Vec::new()),
        (Via::Guestgate, Sample::default(), Vec::new()),
    ];
    for round in 1..=s.rounds {
        for (via, total, rates) in rows.iter_mut() {
            let (target, pid) = endpoint(*via);
            let sample = cell(*via, target, pid, s.concurrency, s.duration).await?;
            let rate = sample.msgs as f64 / sample.secs;
            eprintln!("round {round}/{}  {via:?}  {rate:>8.0} set-ups/s", s.rounds);
            rates.push(rate);
            total.absorb(sample);
        }
    }
    println!(
        "\nGenesys-preset session set-ups: {} concurrent loops, fake upstream latency {} ms before each configureSession answer, {} s per cell, {} rounds",
        s.concurrency,
        s.latency.as_millis(),
        s.duration.as_secs_f64(),
        s.rounds
    );
    print(&mut rows);
    fake.shutdown().await;
    Ok(())
}

fn print(rows: &mut [(Via, Sample, Vec<f64>)]) {
    println!(
        "\n{:<22} {:>10} {:>9} {:>9} {:>9} {:>15}  per round",
        "path", "set-ups/s", "p50 ms", "p99 ms", "relay%", "relay us/setup"
    );
    let mut p99s = Vec::new();
    for (via, s, rates) in rows.iter_mut() {
        s.rtts_us.sort_unstable();
        let pct = |p: f64| {
            let i = ((s.rtts_us.len().max(1) - 1) as f64 * p).round() as usize;
            s.rtts_us.get(i).map_or(f64::NAN, |&us| us as f64 / 1000.0)
        };
        let (relay_pct, relay_us) = match via {
            Via::Fake => ("-".to_string(), "-".to_string()),
            Via::Guestgate => (
                format!("{:.0}", s.relay_cpu * 100.0 / s.secs.max(1e-9)),
                format!("{:.1}", s.relay_cpu * 1e6 / s.msgs.max(1) as f64),
            ),
        };
        let spread: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "{:<22} {:>10.0} {:>9.2} {:>9.2} {:>9} {:>15}  {}",
            match via {
                Via::Fake => "fake (direct)",
                Via::Guestgate => "guestgate preset",
            },
            s.msgs as f64 / s.secs.max(1e-9),
            pct(0.5),
            pct(0.99),
            relay_pct,
            relay_us,
            spread.join(", ")
        );
        p99s.push(pct(0.99));
    }
    if let [fake, gg] = p99s[..] {
        let verdict = if gg - fake <= 5.0 { "met" } else { "NOT met" };
        println!(
            "\np99 set-up latency, guestgate - fake: {:+.2} ms (issue target: within 5 ms): {verdict}",
            gg - fake
        );
    }
}

/// The `p`-th percentile of sorted `us`, in milliseconds.
fn pct_ms(us: &[u32], p: f64) -> f64 {
    let i = ((us.len().max(1) - 1) as f64 * p).round() as usize;
    us.get(i).map_or(f64::NAN, |&us| us as f64 / 1000.0)
}

/// The open-loop table and the p99 verdict.
fn print_open(rate: f64, rows: &mut [(Via, Open)]) {
    println!(
        "\n{:<18} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>7} {:>15}  set-ups/s per round",
        "path",
        "offered/s",
        "set-ups/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "errors",
        "dropped",
        "relay%",
        "relay us/setup"
    );
    let mut p99s = Vec::new();
    for (via, o) in rows.iter_mut() {
        let s = &mut o.sample;
        s.rtts_us.sort_unstable();
        let (relay_pct, relay_us) = match via {
            Via::Fake => ("-".to_string(), "-".to_string()),
            Via::Guestgate => (
                format!("{:.0}", s.relay_cpu * 100.0 / s.secs.max(1e-9)),
                format!("{:.1}", s.relay_cpu * 1e6 / s.msgs.max(1) as f64),
            ),
        };
        let spread: Vec<String> = o.rates.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "{:<18} {:>9} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>8} {:>7} {:>15}  {}",
            match via {
                Via::Fake => "fake (direct)",
                Via::Guestgate => "guestgate preset",
            },
            rate,
            s.msgs as f64 / s.secs.max(1e-9),
            pct_ms(&s.rtts_us, 0.5),
            pct_ms(&s.rtts_us, 0.9),
            pct_ms(&s.rtts_us, 0.99),
            pct_ms(&s.rtts_us, 1.0),
            o.errors,
            o.dropped,
            relay_pct,
            relay_us,
            spread.join(", ")
        );
        p99s.push(pct_ms(&s.rtts_us, 0.99));
    }
    for (via, o) in rows.iter() {
        for (e, n) in &o.error_kinds {
            println!("{via:?}: {n} of {} errors: {e}", o.errors);
        }
    }
    if let [fake, gg] = p99s[..] {
        let clean = rows.iter().all(|(_, o)| o.errors == 0 && o.dropped == 0);
        let verdict = match (gg - fake <= 5.0, clean) {
            (true, true) => "met",
            (true, false) => "met on the completed set-ups, but some failed or were dropped",
            (false, _) => "NOT met",
        };
        println!(
            "\np99 set-up latency, guestgate - fake: {:+.2} ms (issue target: within 5 ms): {verdict}",
            gg - fake
        );
    }
}

/// One open-loop cell: set-ups against `addr` started at `rate` per second, at fixed
/// intervals, for `duration`, each on its own task, at most `bound` under way. Latency runs
/// from the scheduled start. The cell's length is from the first scheduled start to the end
/// of the last set-up; the relay's CPU is read at its edges.
async fn open_cell(
    via: Via,
    addr: SocketAddr,
    relay: Option<u32>,
    rate: f64,
    bound: usize,
    duration: Duration,
) -> Open {
    let cpu0 = relay.map_or(0.0, |p| cpu_secs(Some(p)));
    let permits = Arc::new(Semaphore::new(bound.max(1)));
    let count = (duration.as_secs_f64() * rate).round() as u64;
    let mut tasks = JoinSet::new();
    let mut open = Open {
        scheduled: count,
        ..Open::default()
    };
    let start = Instant::now();
    for i in 0..count {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            open.dropped += 1;
            continue;
        };
        tasks.spawn(async move {
            // Held until the connection is closed: a closing set-up is still under way.
            let _permit = permit;
            let done = tokio::time::timeout(STEP_TIMEOUT, set_up(via, addr)).await;
            let us = at.elapsed().as_micros().min(u32::MAX as u128) as u32;
            match done {
                Ok(Ok(client)) => {
                    client.close().await;
                    Ok(us)
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(format!("a set-up via {via:?} took over {STEP_TIMEOUT:?}")),
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined
            .map_err(|e| format!("set-up task: {e}"))
            .and_then(|r| r)
        {
            Ok(us) => {
                open.sample.msgs += 1;
                open.sample.rtts_us.push(us);
            }
            Err(e) => open.error(e, 1),
        }
    }
    open.sample.secs = start.elapsed().as_secs_f64();
    open.sample.relay_cpu = relay.map_or(0.0, |p| cpu_secs(Some(p))) - cpu0;
    open
}

/// One cell: `workers` set-up loops against `addr` for `duration`.
async fn cell(
    via: Via,
    addr: SocketAddr,
    relay: Option<u32>,
    workers: usize,
    duration: Duration,
) -> Result<Sample, String> {
    let cpu0 = relay.map_or(0.0, |p| cpu_secs(Some(p)));
    let started = Instant::now();
    let until = started + duration;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < until {
                    let t0 = Instant::now();
                    let client = tokio::time::timeout(STEP_TIMEOUT, set_up(via, addr))
                        .await
                        .map_err(|_| format!("a set-up via {via:?} timed out"))??;
                    lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    client.close().await;
                }
                Ok::<_, String>(lat)
            })
        })
        .collect();
    let mut sample = Sample::default();
    for task in tasks {
        let lat = task.await.map_err(|e| format!("set-up task: {e}"))??;
        sample.msgs += lat.len() as u64;
        sample.rtts_us.extend(lat);
    }
    sample.secs = started.elapsed().as_secs_f64();
    sample.relay_cpu = relay.map_or(0.0, |p| cpu_secs(Some(p))) - cpu0;
    Ok(sample)
}

/// Opens a connection and completes one session set-up on it.
async fn set_up(via: Via, addr: SocketAddr) -> Result<RawClient, String> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("tcp connect {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let url = match via {
        Via::Fake => format!("ws://{addr}/v1?deploymentId={DEFAULT_DEPLOYMENT_ID}"),
        Via::Guestgate => format!("ws://{addr}/"),
    };
    let mut inbuf = raw::client_handshake(&mut tcp, &url)
        .await
        .map_err(|e| format!("upgrade via {via:?}: {e}"))?;
    let want = match via {
        Via::Fake => {
            let req = format!(
                r#"{{"action":"configureSession","deploymentId":"{DEFAULT_DEPLOYMENT_ID}","token":"{}"}}"#,
                uuid::Uuid::new_v4()
            );
            let mut frame = Vec::with_capacity(req.len() + 14);
            raw::put_frame(
                &mut frame,
                true,
                op::TEXT,
                Some(rand::random()),
                req.as_bytes(),
            );
            tcp.write_all(&frame)
                .await
                .map_err(|e| format!("send: {e}"))?;
            "\"SessionResponse\""
        }
        Via::Guestgate => "\"SessionReady\"",
    };
    loop {
        let h = inbuf.header(&mut tcp).await?;
        let len = h.len as usize;
        if h.opcode != op::TEXT || !h.fin || len > 16 << 10 {
            return Err(format!("via {via:?}: unexpected frame {h:?} during set-up"));
        }
        inbuf.fit_frame(len as u64);
        inbuf.fill(&mut tcp, len).await?;
        let text = String::from_utf8_lossy(&inbuf.data()[..len]).into_owned();
        inbuf.consume(len);
        if text.contains("\"code\":4") || text.contains("\"class\":\"Error") {
            return Err(format!("via {via:?}: set-up failed: {text}"));
        }
        if text.contains(want) {
            return Ok(RawClient::from_parts(tcp, inbuf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fake(delay: Duration) -> guestgate::mock::genesys::FakeGenesysHandle {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        FakeGenesys::start(
            listener,
            FakeGenesysConfig {
                agent_reply: false,
                rate_limit_per_sec: 0,
                configure_delay: delay,
                ..FakeGenesysConfig::default()
            },
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_starts_on_schedule_and_counts_drops_and_errors() {
        let delay = Duration::from_millis(50);
        let fake = fake(delay).await;
        let window = Duration::from_millis(300);
        // 100/s for 0.3 s: 30 set-ups, none refused, each at least the fake's delay.
        let o = open_cell(Via::Fake, fake.addr(), None, 100.0, 1024, window).await;
        assert_eq!(
            (o.scheduled, o.errors, o.dropped),
            (30, 0, 0),
            "{:?}",
            o.first_error()
        );
        assert_eq!(o.sample.msgs, 30);
        assert!(o.sample.rtts_us.iter().all(|&us| us >= 50_000));
        // One under way at a time while each takes 50 ms: most starts are dropped, and every
        // scheduled one is accounted for.
        let o = open_cell(Via::Fake, fake.addr(), None, 100.0, 1, window).await;
        assert!(o.dropped >= 15, "{} dropped", o.dropped);
        assert_eq!(o.sample.msgs + o.dropped + o.errors, 30);
        fake.shutdown().await;
        // Nothing listening: every set-up is an error, none ends the cell.
        let closed = SocketAddr::from(([127, 0, 0, 1], procs::free_port().unwrap()));
        let o = open_cell(Via::Guestgate, closed, None, 100.0, 1024, window).await;
        assert_eq!((o.sample.msgs, o.errors), (0, 30));
        assert!(o.first_error().unwrap().contains("tcp connect"));
    }
}
