//! Genesys-preset session set-ups per second: the `setups` mode. The fake Genesys Web
//! Messaging socket (`guestgate::mock::genesys`) runs in the harness process with a fixed
//! latency before each `configureSession` answer; guestgate runs the `genesys-web-messaging`
//! preset in front of it. Each of `concurrency` loops opens a WebSocket through guestgate,
//! reads until guestgate's `SessionReady` (guestgate upgraded, connected upstream, configured
//! the session and got its answer), closes, and starts again. Beside it, the same loops talk
//! to the fake directly (upgrade, `configureSession` with a fresh token, `SessionResponse`,
//! close): the fake's own set-up time, which guestgate's is compared with.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use guestgate::mock::genesys::{DEFAULT_DEPLOYMENT_ID, FakeGenesys, FakeGenesysConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::load::{RawClient, Sample};
use crate::procs::{self, cpu_secs};
use crate::raw::{self, op};

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
    let config = format!(
        "[[routes]]\npath = \"/\"\n\n[routes.edge]\nallow_any_origin = true\n\
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
    let per_cell = s.duration.as_secs_f64() + 20.0;
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
    let mut rows: Vec<(Via, Sample, Vec<f64>)> = vec![
        (Via::Fake, Sample::default(), Vec::new()),
        (Via::Guestgate, Sample::default(), Vec::new()),
    ];
    for round in 1..=s.rounds {
        for (via, total, rates) in rows.iter_mut() {
            let (target, pid) = match via {
                Via::Fake => (fake.addr(), None),
                Via::Guestgate => (addr, Some(gg.pid)),
            };
            let sample = cell(*via, target, pid, s.concurrency, s.duration).await?;
            let rate = sample.msgs as f64 / sample.secs;
            eprintln!("round {round}/{}  {via:?}  {rate:>8.0} set-ups/s", s.rounds);
            rates.push(rate);
            total.msgs += sample.msgs;
            total.secs += sample.secs;
            total.relay_cpu += sample.relay_cpu;
            total.rtts_us.extend(sample.rtts_us);
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
