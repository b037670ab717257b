//! Fault tolerance: a fault-injecting TCP proxy (`common::faulty`) sits between guestgate and
//! the fake upstream, or in front of the fake OAuth token endpoint. Every fault must end in
//! the close code the README documents, and after N faulted connections guestgate must hold
//! nothing: the open-connections gauge and metric back to 0, the proxy's connections closed
//! from guestgate's side, and the process's fd count back near the baseline.
//!
//! guestgate runs in this process, so the fd count covers the fakes and the proxy too; the
//! tests run one at a time (`SERIAL`) so no other test's sockets blur the count. Run with
//! `--nocapture` to see the observed codes and the fd figures.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::faulty::{Dir, Fault, FaultyProxy};
use common::*;
use futures::{SinkExt, StreamExt};
use guestgate::app::Running;
use guestgate::config::Config;
use guestgate::mock::{
    FakeBehavior, FakeOAuth, FakeOAuthConfig, FakeOAuthHandle, FakeUpstreamHandle,
};
use guestgate::ws::frame::{self, encode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tungstenite::Message;

/// One test at a time: the fd count is process-wide.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `test` on its own runtime while holding `SERIAL`; the runtime (and every socket left
/// in it) is gone before the next test takes its baseline.
fn serial(test: impl std::future::Future<Output = ()>) {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

/// Faulted connections per fault.
const N: usize = 50;
/// Open fds allowed above the baseline once everything has settled.
const FD_MARGIN: usize = 10;
/// Live tokio tasks allowed above the baseline once everything has settled (an HTTP client
/// pool may keep a housekeeping task).
const TASK_MARGIN: usize = 3;
/// Bound on every wait for things to settle.
const SETTLE: Duration = Duration::from_secs(5);

/// Bytes of the raw client's masked 4-byte text frame, and of its unmasked echo.
const PING_UP: u64 = 2 + 4 + 4;
const PING_DOWN: u64 = 2 + 4;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Browser side

/// How one browser connection ended.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// A close frame from guestgate: code and reason.
    Close(u16, String),
    /// The stream ended without a close frame.
    NoClose,
    /// Something else went wrong in the scenario.
    Unexpected(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Close(code, reason) => write!(f, "{code} {reason:?}"),
            Outcome::NoClose => write!(f, "no close frame"),
            Outcome::Unexpected(what) => write!(f, "unexpected: {what}"),
        }
    }
}

fn close(code: u16, reason: &str) -> Outcome {
    Outcome::Close(code, reason.to_owned())
}

/// Reads one frame: (opcode, payload); None on EOF or error (also mid-frame).
async fn read_frame<R: AsyncRead + Unpin>(rd: &mut R) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    rd.read_exact(&mut head).await.ok()?;
    let mut len = u64::from(head[1] & 0x7f);
    if len == 126 {
        let mut ext = [0u8; 2];
        rd.read_exact(&mut ext).await.ok()?;
        len = u64::from(u16::from_be_bytes(ext));
    } else if len == 127 {
        let mut ext = [0u8; 8];
        rd.read_exact(&mut ext).await.ok()?;
        len = u64::from_be_bytes(ext);
    }
    let mut payload = vec![0u8; len as usize];
    rd.read_exact(&mut payload).await.ok()?;
    Some((head[0] & 0x0f, payload))
}

/// Reads until a close frame (or the end of the stream), bounded by `STEP`.
async fn read_close<R: AsyncRead + Unpin>(rd: &mut R) -> Outcome {
    let read = async {
        loop {
            match read_frame(rd).await {
                None => return Outcome::NoClose,
                Some((8, payload)) => {
                    let code = frame::close_code(&payload).unwrap_or(1005);
                    let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or(&[]));
                    return Outcome::Close(code, reason.into_owned());
                }
                Some(_) => {}
            }
        }
    };
    tokio::time::timeout(STEP, read)
        .await
        .unwrap_or_else(|_| Outcome::Unexpected("no close frame and no end within 10 s".into()))
}

/// Waits for the end of the connection, answers a close frame like a browser, and reads to
/// EOF (bounded) so guestgate's close handshake completes.
async fn ending(c: &mut RawClient) -> Outcome {
    let outcome = read_close(&mut c.tcp).await;
    if let Outcome::Close(code, _) = outcome {
        let mut reply = Vec::new();
        encode(&mut reply, true, 8, &close_payload(code, ""), MASK);
        let _ = c.tcp.write_all(&reply).await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(SETTLE, c.tcp.read_to_end(&mut rest)).await;
    }
    outcome
}

/// Sends a text message and expects it back.
async fn echo(c: &mut RawClient, text: &[u8]) -> Result<(), Outcome> {
    c.send(true, 1, text, MASK).await;
    match tokio::time::timeout(STEP, read_frame(&mut c.tcp)).await {
        Ok(Some((1, p))) if p == text => Ok(()),
        Ok(Some((8, p))) => Err(Outcome::Close(
            frame::close_code(&p).unwrap_or(1005),
            String::from_utf8_lossy(&p[2..]).into_owned(),
        )),
        other => Err(Outcome::Unexpected(format!(
            "instead of the echo: {other:?}"
        ))),
    }
}

/// Connects and waits for the end (faults during the upstream set-up).
async fn just_connect(addr: SocketAddr) -> Outcome {
    let mut c = RawClient::connect(addr, "").await;
    ending(&mut c).await
}

/// Connects, exchanges one message, then waits for the end (faults mid-session).
async fn echo_then_wait(addr: SocketAddr) -> Outcome {
    let mut c = RawClient::connect(addr, "").await;
    if let Err(o) = echo(&mut c, b"ping").await {
        return o;
    }
    ending(&mut c).await
}

/// Connects, exchanges one message, then pings every 100 ms (so the browser leg never idles)
/// until guestgate closes.
async fn echo_then_ping(addr: SocketAddr) -> Outcome {
    let mut c = RawClient::connect(addr, "").await;
    if let Err(o) = echo(&mut c, b"ping").await {
        return o;
    }
    let outcome = {
        let (mut rd, mut wr) = c.tcp.split();
        let pinger = async {
            let mut ping = Vec::new();
            encode(&mut ping, true, 9, b"still here", MASK);
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if wr.write_all(&ping).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            o = read_close(&mut rd) => o,
            _ = pinger => unreachable!(),
        }
    };
    if let Outcome::Close(code, _) = outcome {
        let mut reply = Vec::new();
        encode(&mut reply, true, 8, &close_payload(code, ""), MASK);
        let _ = c.tcp.write_all(&reply).await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(SETTLE, c.tcp.read_to_end(&mut rest)).await;
    }
    outcome
}

/// Connects, exchanges one message, then sends 1 MiB binary messages as fast as guestgate
/// takes them until it closes (write stalls toward the upstream).
async fn echo_then_flood(addr: SocketAddr) -> Outcome {
    let mut c = RawClient::connect(addr, "").await;
    if let Err(o) = echo(&mut c, b"ping").await {
        return o;
    }
    let (mut rd, mut wr) = c.tcp.split();
    let mut big = Vec::new();
    encode(&mut big, true, 2, &vec![0x5a; 1 << 20], MASK);
    let flood = async {
        for _ in 0..64 {
            if wr.write_all(&big).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    // No close reply: the browser is stuck mid-frame, as a real one would be.
    tokio::select! {
        o = read_close(&mut rd) => o,
        _ = flood => unreachable!(),
    }
}

/// Connects, sends a 1000-byte binary message and reads whatever comes back (a cut in the
/// middle of the echo).
async fn big_echo_then_wait(addr: SocketAddr) -> Outcome {
    let mut c = RawClient::connect(addr, "").await;
    c.send(true, 2, &[7u8; 1000], MASK).await;
    ending(&mut c).await
}

/// Runs `n` connections of `scenario`, `concurrency` at a time; counts the outcomes.
async fn run_many<F, Fut>(n: usize, concurrency: usize, scenario: F) -> BTreeMap<Outcome, usize>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let outcomes: Vec<Outcome> = futures::stream::iter(0..n)
        .map(|_| scenario())
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut counts = BTreeMap::new();
    for o in outcomes {
        *counts.entry(o).or_insert(0) += 1;
    }
    counts
}

fn assert_all(label: &str, counts: &BTreeMap<Outcome, usize>, expected: &Outcome, n: usize) {
    let shown: Vec<String> = counts.iter().map(|(o, c)| format!("{c} x {o}")).collect();
    println!("[faults] {label}: {}", shown.join(", "));
    assert_eq!(
        counts.get(expected).copied().unwrap_or(0),
        n,
        "{label}: expected {n} x {expected}, got {}",
        shown.join(", ")
    );
}

// ---------------------------------------------------------------------------------------------
// guestgate and its surroundings

/// Sums `guestgate_connections_open` over its series.
async fn connections_open_metric(gg: &Running) -> f64 {
    let (status, body) = http_get(gg.admin_addr, "/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| l.starts_with("guestgate_connections_open"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    while !ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {SETTLE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the process holds when nothing is going on.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    fds: usize,
    tasks: usize,
    rss_kib: u64,
}

impl Baseline {
    fn now() -> Baseline {
        Baseline {
            fds: open_fds(),
            tasks: alive_tasks(),
            rss_kib: rss_kib(),
        }
    }
}

/// Prints every open fd, with its TCP line for sockets, to explain a failed fd check.
fn dump_fds() {
    let tcp = std::fs::read_to_string("/proc/self/net/tcp").unwrap_or_default();
    for e in std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
    {
        let link = std::fs::read_link(e.path())
            .map(|l| l.display().to_string())
            .unwrap_or_default();
        let inode = link.trim_start_matches("socket:[").trim_end_matches(']');
        let line = tcp
            .lines()
            .find(|l| l.split_whitespace().nth(9) == Some(inode))
            .unwrap_or("");
        println!("  fd {:?} -> {link} {line}", e.file_name());
    }
}

/// After faulted connections: guestgate holds no connection (gauge and metric), the proxy's
/// connections were closed from both ends (when `proxy_drains`), and the process's fds and
/// live tokio tasks are back near the baseline.
async fn assert_no_leak(
    label: &str,
    gg: &Running,
    proxy: &FaultyProxy,
    proxy_drains: bool,
    baseline: Baseline,
) {
    let Baseline {
        fds: baseline_fds,
        tasks: baseline_tasks,
        rss_kib: rss_before,
    } = baseline;
    let gauge = &gg.gateway.open_connections;
    wait_for("open_connections back to 0", || {
        gauge.load(Ordering::SeqCst) == 0
    })
    .await;
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let open = connections_open_metric(gg).await;
        if open == 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{label}: guestgate_connections_open stuck at {open}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if proxy_drains {
        assert!(
            proxy.wait_idle(SETTLE).await,
            "{label}: {} proxied connections still open: guestgate kept its end",
            proxy.live()
        );
    } else {
        // The proxy itself holds these (a stalled reader never sees guestgate's FIN behind
        // megabytes of unread data); guestgate's gauge above already says it let go.
        println!(
            "[faults] {label}: proxy still holds {} stalled connections; closing them",
            proxy.live()
        );
        proxy.shutdown().await;
    }
    // Peers close their ends a moment later: wait until the count is back at the baseline
    // (+2) or has stopped falling for half a second.
    let deadline = tokio::time::Instant::now() + SETTLE;
    let mut fds = open_fds();
    let mut last_drop = tokio::time::Instant::now();
    while fds > baseline_fds + 2
        && tokio::time::Instant::now() < deadline
        && last_drop.elapsed() < Duration::from_millis(500)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = open_fds();
        if now < fds {
            last_drop = tokio::time::Instant::now();
        }
        fds = now;
    }
    let deadline = tokio::time::Instant::now() + SETTLE;
    let mut tasks = alive_tasks();
    while tasks > baseline_tasks && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        tasks = alive_tasks();
    }
    println!(
        "[faults] {label}: open_connections 0, guestgate_connections_open 0, \
         fds {fds} (baseline {baseline_fds}), tokio tasks {tasks} (baseline {baseline_tasks}), \
         test-process RSS {rss_before} KiB -> {} KiB",
        rss_kib()
    );
    assert!(
        tasks <= baseline_tasks + TASK_MARGIN,
        "{label}: {tasks} tasks alive, baseline {baseline_tasks} (+{TASK_MARGIN} allowed)"
    );
    if fds > baseline_fds + FD_MARGIN {
        dump_fds();
    }
    assert!(
        fds <= baseline_fds + FD_MARGIN,
        "{label}: {fds} fds open, baseline {baseline_fds} (+{FD_MARGIN} allowed)"
    );
}

/// guestgate in front of the proxy in front of an echo upstream.
struct WsRig {
    gg: Running,
    proxy: FaultyProxy,
    upstream: FakeUpstreamHandle,
    /// Bytes of the upgrade request (guestgate to upstream) and of the 101 response.
    hs_up: u64,
    hs_down: u64,
    baseline: Baseline,
}

impl WsRig {
    /// Starts everything with the route tuned by `tune`, runs one clean connection to learn
    /// the handshake sizes, and takes the fd baseline.
    async fn start(tune: impl FnOnce(&mut Config)) -> WsRig {
        let upstream = fake(FakeBehavior::Echo).await;
        let proxy = FaultyProxy::start(upstream.addr(), Fault::Pass).await;
        let mut config = config_for(&proxy.ws_url());
        config.routes[0].connect_timeout = Duration::from_millis(400);
        config.routes[0].relay.close_timeout = Duration::from_millis(300);
        tune(&mut config);
        let gg = gateway(&config).await;

        let mut c = RawClient::connect(gg.addr, "").await;
        echo(&mut c, b"ping")
            .await
            .expect("a clean connection relays");
        let (up, down) = proxy.bytes();
        c.send(true, 8, &close_payload(1000, "warm-up done"), MASK)
            .await;
        assert_eq!(ending(&mut c).await, close(1000, "warm-up done"));
        drop(c);
        let gauge = &gg.gateway.open_connections;
        wait_for("the warm-up connection to end", || {
            gauge.load(Ordering::SeqCst) == 0 && proxy.live() == 0
        })
        .await;
        WsRig {
            hs_up: up - PING_UP,
            hs_down: down - PING_DOWN,
            baseline: Baseline::now(),
            gg,
            proxy,
            upstream,
        }
    }

    /// Under each fault in turn, runs `n` connections of `scenario` (`concurrency` at a time)
    /// and asserts that every one of them ends with `expected`.
    async fn each_fault_ends_with<F, Fut>(
        &self,
        faults: &[Fault],
        phase: &str,
        (n, concurrency): (usize, usize),
        expected: &Outcome,
        scenario: F,
    ) where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Outcome>,
    {
        for &fault in faults {
            self.proxy.set_fault(fault).await;
            let counts = run_many(n, concurrency, &scenario).await;
            assert_all(&format!("{fault:?} {phase}"), &counts, expected, n);
        }
    }

    async fn no_leak(&self, label: &str, proxy_drains: bool) {
        assert_no_leak(label, &self.gg, &self.proxy, proxy_drains, self.baseline).await
    }

    /// After the fault is lifted, a new connection relays again.
    async fn recovers(&self) {
        self.proxy.set_fault(Fault::Pass).await;
        let mut c = RawClient::connect(self.gg.addr, "").await;
        echo(&mut c, b"after the fault")
            .await
            .expect("a connection after the fault relays");
        c.send(true, 8, &close_payload(1000, ""), MASK).await;
        assert_eq!(ending(&mut c).await, close(1000, ""));
    }

    /// Stops everything before the next test takes its baseline.
    async fn finish(self) {
        self.gg.shutdown();
        let report = self.gg.wait().await;
        assert_eq!(report.aborted, 0);
        self.proxy.shutdown().await;
        self.upstream.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Faults between guestgate and the upstream WebSocket

#[test]
fn latency_delays_but_keeps_every_message_intact_and_in_order() {
    serial(async {
        let rig = WsRig::start(|_| {}).await;
        rig.proxy
            .set_fault(Fault::Latency(Duration::from_millis(40)))
            .await;

        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", rig.gg.addr))
            .await
            .unwrap();
        let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
        let messages = vec![
            Message::text("first"),
            Message::binary(vec![0u8, 1, 2, 255]),
            Message::text(""),
            Message::binary(big),
            Message::text("é".repeat(40_000)),
            Message::text("last"),
        ];
        let started = std::time::Instant::now();
        for m in &messages {
            ws.send(m.clone()).await.unwrap();
        }
        for m in &messages {
            let got = tokio::time::timeout(STEP, ws.next())
                .await
                .expect("echo within 10 s")
                .expect("stream open")
                .expect("no ws error");
            assert_eq!(&got, m);
        }
        // Each direction adds 40 ms.
        assert!(started.elapsed() >= Duration::from_millis(80));
        ws.close(None).await.unwrap();
        while let Ok(Some(Ok(_))) = tokio::time::timeout(STEP, ws.next()).await {}

        let counts = run_many(N, N, || async {
            let mut c = RawClient::connect(rig.gg.addr, "").await;
            for i in 0..3 {
                if let Err(o) = echo(&mut c, format!("message {i}").as_bytes()).await {
                    return o;
                }
            }
            c.send(true, 8, &close_payload(1000, "done"), MASK).await;
            ending(&mut c).await
        })
        .await;
        assert_all("latency 40ms", &counts, &close(1000, "done"), N);
        rig.no_leak("latency", true).await;
        rig.finish().await;
    });
}

#[test]
fn reset_mid_session_gives_4503_upstream_connection_lost() {
    serial(async {
        let rig = WsRig::start(|_| {}).await;
        // The first echo gets through, then both sockets are reset.
        rig.proxy
            .set_fault(Fault::ResetAfter(rig.hs_down + PING_DOWN, Dir::Down))
            .await;
        let counts = run_many(N, N, || echo_then_wait(rig.gg.addr)).await;
        assert_all(
            "reset mid-session",
            &counts,
            &close(4503, "upstream connection lost"),
            N,
        );
        assert_eq!(rig.proxy.connections(), 1 + N);
        rig.no_leak("reset mid-session", true).await;
        rig.recovers().await;
        rig.finish().await;
    });
}

#[test]
fn reset_or_eof_during_the_upstream_upgrade_gives_4503() {
    serial(async {
        let rig = WsRig::start(|_| {}).await;
        // The connect succeeds, but the upstream's answer never completes: reset before the
        // request, reset after the request, reset in the middle of the 101 response, and EOF
        // instead of a response. No response is not a wrong response: the upstream is unavailable.
        let faults = [
            Fault::ResetAfter(0, Dir::Up),
            Fault::ResetAfter(rig.hs_up, Dir::Up),
            Fault::ResetAfter(rig.hs_down / 2, Dir::Down),
            Fault::HalfCloseAfter(0, Dir::Down),
            Fault::CapBytes(rig.hs_up + rig.hs_down / 2),
        ];
        rig.each_fault_ends_with(
            &faults,
            "during the upgrade",
            (N / faults.len(), 10),
            &close(4503, "upstream unavailable"),
            || just_connect(rig.gg.addr),
        )
        .await;
        rig.no_leak("reset/eof during the upgrade", true).await;
        rig.recovers().await;
        rig.finish().await;
    });
}

#[test]
fn stall_during_the_upstream_upgrade_gives_4504() {
    serial(async {
        let rig = WsRig::start(|_| {}).await;
        let faults = [
            // Nothing forwarded at all: the upgrade request is swallowed.
            Fault::StallAfter(0, Dir::Both),
            // The request goes through, the 101 response stops half way.
            Fault::StallAfter(rig.hs_down / 2, Dir::Down),
        ];
        for fault in faults {
            rig.proxy.set_fault(fault).await;
            let started = std::time::Instant::now();
            let counts = run_many(N / 2, N / 2, || just_connect(rig.gg.addr)).await;
            assert_all(
                &format!("{fault:?} during the upgrade"),
                &counts,
                &close(4504, "upstream timed out"),
                N / 2,
            );
            // connect_timeout is 400 ms.
            assert!(started.elapsed() >= Duration::from_millis(400));
        }
        // guestgate gives up its end, so the proxy sees it close every stalled connection.
        rig.no_leak("stall during the upgrade", true).await;
        rig.recovers().await;
        rig.finish().await;
    });
}

#[test]
fn upstream_silent_mid_session_gives_4504_after_the_idle_timeout() {
    serial(async {
        let rig = WsRig::start(|c| {
            c.routes[0].relay.idle_timeout = Duration::from_millis(500);
        })
        .await;
        let faults = [
            // Nothing more from the upstream (guestgate's pings and the browser's reach it).
            Fault::StallAfter(rig.hs_down + PING_DOWN, Dir::Down),
            // Nothing more either way.
            Fault::StallAfter(rig.hs_up + PING_UP + rig.hs_down + PING_DOWN, Dir::Both),
        ];
        rig.each_fault_ends_with(
            &faults,
            "mid-session, browser pinging",
            (N / 2, N / 2),
            &close(4504, "upstream timed out"),
            || echo_then_ping(rig.gg.addr),
        )
        .await;
        rig.no_leak("stall mid-session", true).await;
        rig.recovers().await;
        rig.finish().await;
    });
}

#[test]
fn write_stall_toward_the_upstream_ends_the_relay_with_4504() {
    serial(async {
        let rig = WsRig::start(|c| {
            c.routes[0].relay.write_stall_timeout = Duration::from_millis(300);
        })
        .await;
        // The upstream stops reading right after the first message: guestgate's writes fill the
        // socket buffers (several MiB on loopback) and then make no progress.
        rig.proxy
            .set_fault(Fault::StallAfter(rig.hs_up + PING_UP, Dir::Up))
            .await;
        // Each of these parks ~10 MiB in kernel buffers, so fewer of them.
        let n = 10;
        let counts = run_many(n, 2, || echo_then_flood(rig.gg.addr)).await;
        assert_all(
            "write stall toward the upstream",
            &counts,
            &close(4504, "upstream timed out"),
            n,
        );
        rig.no_leak("write stall", false).await;
        rig.finish().await;
    });
}

#[test]
fn half_close_mid_session_gives_4503_upstream_connection_lost() {
    serial(async {
        let rig = WsRig::start(|_| {}).await;
        let faults = [
            // guestgate reads EOF from the upstream after the first echo.
            Fault::HalfCloseAfter(rig.hs_down + PING_DOWN, Dir::Down),
            // The upstream reads EOF after the first message, answers it and hangs up.
            Fault::HalfCloseAfter(rig.hs_up + PING_UP, Dir::Up),
        ];
        rig.each_fault_ends_with(
            &faults,
            "mid-session",
            (N / 2, N / 2),
            &close(4503, "upstream connection lost"),
            || echo_then_wait(rig.gg.addr),
        )
        .await;
        rig.no_leak("half-close mid-session", true).await;
        rig.recovers().await;
        rig.finish().await;
    });
}

#[test]
fn byte_cap_at_a_frame_boundary_gives_4503_and_mid_frame_ends_the_stream() {
    serial(async {
        let rig = WsRig::start(|_| {}).await;
        // Both sockets closed right after the first echo: a clean cut between frames.
        rig.proxy
            .set_fault(Fault::CapBytes(
                rig.hs_up + PING_UP + rig.hs_down + PING_DOWN,
            ))
            .await;
        let counts = run_many(N / 2, N / 2, || echo_then_wait(rig.gg.addr)).await;
        assert_all(
            "byte cap between frames",
            &counts,
            &close(4503, "upstream connection lost"),
            N / 2,
        );
        // Cut 500 bytes into the 1000-byte echo (4-byte header): the browser already holds part
        // of a frame, so no close frame can follow; the stream just ends (README).
        let browser_frame = 2 + 2 + 4 + 1000;
        rig.proxy
            .set_fault(Fault::CapBytes(
                rig.hs_up + browser_frame + rig.hs_down + 4 + 500,
            ))
            .await;
        let counts = run_many(N / 2, N / 2, || big_echo_then_wait(rig.gg.addr)).await;
        assert_all("byte cap mid-frame", &counts, &Outcome::NoClose, N / 2);
        rig.no_leak("byte cap", true).await;
        rig.recovers().await;
        rig.finish().await;
    });
}

#[test]
fn refused_connections_give_4503_upstream_unavailable() {
    serial(async {
        let rig = WsRig::start(|_| {}).await;
        rig.proxy.set_fault(Fault::RefuseConnections).await;
        let counts = run_many(N, N, || just_connect(rig.gg.addr)).await;
        assert_all(
            "connection refused",
            &counts,
            &close(4503, "upstream unavailable"),
            N,
        );
        assert_eq!(rig.proxy.connections(), 1, "only the warm-up got through");
        rig.no_leak("connection refused", true).await;
        rig.recovers().await;
        rig.finish().await;
    });
}

// ---------------------------------------------------------------------------------------------
// Faults in front of the OAuth token endpoint (the declarative flow)

const SECRET: &str = "fault-test-secret";

/// guestgate with the OAuth flow; the token endpoint is behind the proxy, the guest step and
/// the upstream are reached directly. Every connection starts cold (no token cached yet) and
/// the breaker never opens, so each faulted fetch reaches the proxy.
struct OAuthRig {
    gg: Running,
    proxy: FaultyProxy,
    oauth: FakeOAuthHandle,
    upstream: FakeUpstreamHandle,
    baseline: Baseline,
    _dir: tempfile::TempDir,
}

impl OAuthRig {
    async fn start(fault: Fault) -> OAuthRig {
        let oauth = FakeOAuth::start(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            FakeOAuthConfig {
                client_secret: SECRET.into(),
                ..FakeOAuthConfig::default()
            },
        );
        let upstream = fake(FakeBehavior::Echo).await;
        let proxy = FaultyProxy::start(oauth.addr(), Fault::Pass).await;
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("client-secret");
        std::fs::write(&secret_file, SECRET).unwrap();
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
shutdown_grace = "3s"

[[routes]]
name = "vendor"
path = "/ws"
edge.allow_any_origin = true
# Bursts of connections from one address: the per-IP defaults would refuse them.
edge.max_connections_per_ip = "off"
edge.handshake_rate_per_ip = "off"

[routes.relay]
close_timeout = "300ms"

[routes.flow]
upstream = "{ws}?guest={{{{steps.guest.token}}}}"

[routes.flow.oauth]
token_url = "{token_url}"
client_id = "fake-client-id"
client_secret = {{ file = "{secret_file}" }}
request_timeout = "400ms"
max_attempts = 1
breaker_failures = 100000

[[routes.flow.steps]]
name = "guest"
url = "{guests_url}"
headers = {{ Authorization = "Bearer {{{{oauth.access_token}}}}" }}
extract = {{ token = "/token" }}
"#,
            ws = upstream.url(),
            token_url = proxy.http_url("/oauth/token"),
            guests_url = oauth.guests_url(),
            secret_file = secret_file.display(),
        );
        let gg = gateway(&Config::parse(&text).expect("config parses")).await;
        proxy.set_fault(fault).await;
        OAuthRig {
            baseline: Baseline::now(),
            gg,
            proxy,
            oauth,
            upstream,
            _dir: dir,
        }
    }

    /// `n` cold connections, `concurrency` at a time, each expected to end with `expected`.
    async fn faulted(&self, label: &str, n: usize, concurrency: usize, expected: Outcome) {
        let counts = run_many(n, concurrency, || just_connect(self.gg.addr)).await;
        assert_all(label, &counts, &expected, n);
        assert_eq!(
            self.upstream.accepted(),
            0,
            "{label}: no upstream connection without a token"
        );
        assert!(
            self.proxy.connections() >= 1,
            "{label}: the fault was exercised"
        );
    }

    /// After the fault is lifted a connection gets a token and relays.
    async fn recovers(&self) {
        self.proxy.set_fault(Fault::Pass).await;
        let mut c = RawClient::connect(self.gg.addr, "").await;
        echo(&mut c, b"after the fault")
            .await
            .expect("a connection after the fault relays");
        c.send(true, 8, &close_payload(1000, ""), MASK).await;
        assert_eq!(ending(&mut c).await, close(1000, ""));
        assert!(self.oauth.tokens_issued() >= 1);
    }

    async fn no_leak(&self, label: &str) {
        assert_no_leak(label, &self.gg, &self.proxy, true, self.baseline).await
    }

    async fn finish(self) {
        self.gg.shutdown();
        let report = self.gg.wait().await;
        assert_eq!(report.aborted, 0);
        self.proxy.shutdown().await;
        self.oauth.shutdown().await;
        self.upstream.shutdown().await;
    }
}

#[test]
fn token_endpoint_reset_gives_4503() {
    serial(async {
        let rig = OAuthRig::start(Fault::ResetAfter(0, Dir::Up)).await;
        rig.faulted(
            "token endpoint reset on connect",
            N / 2,
            5,
            close(4503, "upstream unavailable"),
        )
        .await;
        // Reset after the first bytes of the response.
        rig.proxy.set_fault(Fault::ResetAfter(20, Dir::Down)).await;
        rig.faulted(
            "token endpoint reset mid-response",
            N / 2,
            5,
            close(4503, "upstream unavailable"),
        )
        .await;
        rig.no_leak("token endpoint reset").await;
        rig.recovers().await;
        rig.finish().await;
    });
}

#[test]
fn token_endpoint_stall_gives_4504() {
    serial(async {
        let rig = OAuthRig::start(Fault::StallAfter(0, Dir::Both)).await;
        rig.faulted(
            "token endpoint silent",
            N / 2,
            10,
            close(4504, "upstream timed out"),
        )
        .await;
        // The request arrives and the answer stops after its first bytes.
        rig.proxy.set_fault(Fault::StallAfter(20, Dir::Down)).await;
        rig.faulted(
            "token endpoint stalls mid-response",
            N / 2,
            10,
            close(4504, "upstream timed out"),
        )
        .await;
        rig.no_leak("token endpoint stall").await;
        rig.recovers().await;
        rig.finish().await;
    });
}

#[test]
fn token_endpoint_half_close_cap_and_refusal_give_4503() {
    serial(async {
        let rig = OAuthRig::start(Fault::HalfCloseAfter(0, Dir::Down)).await;
        rig.faulted(
            "token endpoint half-close",
            N / 3,
            5,
            close(4503, "upstream unavailable"),
        )
        .await;
        rig.proxy.set_fault(Fault::CapBytes(1)).await;
        rig.faulted(
            "token endpoint byte cap",
            N / 3,
            5,
            close(4503, "upstream unavailable"),
        )
        .await;
        rig.proxy.set_fault(Fault::RefuseConnections).await;
        rig.faulted(
            "token endpoint refused",
            N / 3,
            5,
            close(4503, "upstream unavailable"),
        )
        .await;
        rig.no_leak("token endpoint half-close/cap/refused").await;
        rig.recovers().await;
        rig.finish().await;
    });
}

#[test]
fn token_endpoint_latency_still_relays() {
    serial(async {
        let rig = OAuthRig::start(Fault::Latency(Duration::from_millis(100))).await;
        let counts = run_many(10, 10, || async {
            let mut c = RawClient::connect(rig.gg.addr, "").await;
            if let Err(o) = echo(&mut c, b"slow token, fine relay").await {
                return o;
            }
            c.send(true, 8, &close_payload(1000, "done"), MASK).await;
            ending(&mut c).await
        })
        .await;
        assert_all(
            "token endpoint latency 100ms",
            &counts,
            &close(1000, "done"),
            10,
        );
        assert_eq!(
            rig.oauth.token_fetches(),
            1,
            "one fetch for every waiting connection"
        );
        // The token connection (kept alive by the HTTP client) and the guest-step connections
        // (pooled) stay open by design: close the pool's peers before counting.
        rig.oauth.shutdown().await;
        rig.proxy.shutdown().await;
        rig.no_leak("token endpoint latency").await;
        rig.finish().await;
    });
}

/// A browser query that breaks the flow route's allowlist is the browser's fault: it gets
/// 1008, counts as a `rejected` connection, and is not an upstream failure (it would
/// otherwise page whoever watches `guestgate_upstream_failures_total`).
#[test]
fn a_bad_browser_query_is_counted_as_rejected_not_as_an_upstream_failure() {
    serial(async {
        let upstream = fake(FakeBehavior::Echo).await;
        let config = Config::parse(&format!(
            r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
shutdown_grace = "3s"

[[routes]]
name = "vendor"
path = "/ws"
edge.allow_any_origin = true

[routes.flow]
upstream = "{ws}?lang={{{{query.lang}}}}"
query = [{{ name = "lang", charset = "alnum", max_len = 8 }}]
"#,
            ws = upstream.url()
        ))
        .unwrap();
        let gg = gateway(&config).await;
        // Too long, outside the charset, and not sent at all (the template needs it).
        for path in [
            "/ws?lang=far-too-long-a-value",
            "/ws?lang=%3Cscript%3E",
            "/ws",
        ] {
            let mut c = RawClient::connect_path(gg.addr, path, "").await;
            let (code, _) = c.close_frame().await;
            assert_eq!(code, 1008, "{path}");
        }
        let (_, metrics) = http_get(gg.admin_addr, "/metrics").await;
        for line in [
            r#"guestgate_connections_total{outcome="rejected",route="vendor"} 3"#,
            r#"guestgate_connections_total{outcome="upstream_failed",route="vendor"} 0"#,
            r#"guestgate_upstream_failures_total{kind="step",route="vendor"} 0"#,
            r#"guestgate_session_setup_seconds_count{outcome="rejected",route="vendor"} 3"#,
        ] {
            assert!(metrics.contains(line), "missing {line}\n{metrics}");
        }
        gg.shutdown();
        gg.wait().await;
    });
}

/// A bug that panics a connection's task: the browser gets 1011 (not a silent reset), the
/// panic is counted, and guestgate keeps serving other connections.
#[test]
fn a_panicking_connection_task_closes_its_browser_with_1011() {
    serial(async {
        let upstream = fake(FakeBehavior::Echo).await;
        let gg = gateway(&config_for(&upstream.url())).await;
        let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let hook_armed = armed.clone();
        let _ = gg.gateway.panic_hook.set(std::sync::Arc::new(move |at| {
            if at == guestgate::server::PanicPoint::Session
                && hook_armed.swap(false, Ordering::SeqCst)
            {
                panic!("test hook: a bug in the session");
            }
        }));
        let mut c = RawClient::connect(gg.addr, "").await;
        let (code, _) = tokio::time::timeout(SETTLE, c.close_frame())
            .await
            .expect("a close frame, not silence");
        assert_eq!(code, 1011);
        // The next connection is served normally.
        let mut c = RawClient::connect(gg.addr, "").await;
        c.send(true, 1, b"still here", MASK).await;
        assert_eq!(c.frame().await.unwrap(), (1, b"still here".to_vec()));
        drop(c);
        let (_, metrics) = http_get(gg.admin_addr, "/metrics").await;
        assert!(
            metrics.contains(
                r#"guestgate_connections_total{outcome="internal_error",route="default"} 1"#
            ),
            "{metrics}"
        );
        gg.shutdown();
        let report = gg.wait().await;
        assert_eq!(report.connection_panics, 1);
        assert!(!report.server_panicked);
    });
}

/// A panic in the accept loop stops guestgate serving: the report says so (the binary then
/// exits 1) instead of the process idling on with no listener.
#[test]
fn a_panicking_accept_loop_is_reported() {
    serial(async {
        let upstream = fake(FakeBehavior::Echo).await;
        let gg = gateway(&config_for(&upstream.url())).await;
        let _ = gg.gateway.panic_hook.set(std::sync::Arc::new(|at| {
            if at == guestgate::server::PanicPoint::AcceptLoop {
                panic!("test hook: a bug in the accept loop");
            }
        }));
        let _c = tokio::net::TcpStream::connect(gg.addr).await.unwrap();
        let report = tokio::time::timeout(SETTLE, gg.until_stopped(std::future::pending()))
            .await
            .expect("the server's end is noticed without a shutdown request");
        assert!(report.server_panicked);
    });
}
