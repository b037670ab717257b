//! A real Prometheus scraping a running guestgate: guestgate in process in front of a fake
//! upstream, Prometheus (Debian's `prometheus` binary) as a child process scraping the admin
//! listener every second, and assertions on what Prometheus's query API answers, so the
//! exposition format, the series names and the label sets are checked by the consumer that
//! matters. The same Prometheus loads `deploy/monitoring/alerts.yml` (every rule must evaluate
//! without error) and runs every query of `deploy/monitoring/grafana-dashboard.json`.
//!
//! Skips (passing, with a line on stderr that the test harness does not capture) when no
//! `prometheus` binary is found, unless `GUESTGATE_REQUIRE_PROMETHEUS=1` (or `true`): then it
//! fails. `scripts/ci/prometheus.sh`, which CI runs through `scripts/test.sh`, installs
//! Prometheus and then runs this test with that flag, so CI cannot pass without the scrape.
//! (The flag is not derived from `CI`: `scripts/test.sh` runs every test once before that
//! script has installed Prometheus on a fresh machine.)
//! `GUESTGATE_PROMETHEUS=/path/to/prometheus` picks a binary explicitly.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use guestgate::mock::FakeBehavior;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// Relayed browser connections the test opens.
const RELAYED: usize = 3;
/// Text messages each relayed connection sends (and gets echoed).
const MESSAGES_EACH: usize = 4;
/// How long Prometheus may take to start and scrape the expected values.
const PROMETHEUS_DEADLINE: Duration = Duration::from_secs(60);
/// Alerting rules `deploy/monitoring/alerts.yml` holds at least.
const MIN_ALERT_RULES: usize = 5;

/// The Prometheus binary to run, or why there is none.
fn prometheus_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("GUESTGATE_PROMETHEUS") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "GUESTGATE_PROMETHEUS={} is not a file",
            path.display()
        );
        return Ok(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| "no prometheus binary on PATH or in /usr/bin".to_owned())
}

/// A Prometheus child process, killed (and reaped) on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Prometheus {
    /// Writes a config scraping `target` every second into `dir` and starts Prometheus on a
    /// free loopback port with its storage in `dir`.
    fn start(binary: &Path, dir: &Path, target: SocketAddr) -> Prometheus {
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring/alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - '{rules}'\n\
             scrape_configs:\n  - job_name: guestgate\n    static_configs:\n      \
             - targets: ['{target}']\n",
            rules = rules.display(),
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        // Prometheus cannot report a port it picked itself, so take a free one and hand it
        // over; another process grabbing it in between makes Prometheus exit, which the
        // readiness wait reports with Prometheus's log.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let log = dir.join("prometheus.log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        Prometheus { child, addr, log }
    }

    /// Panics with `msg` and the end of Prometheus's log.
    fn fail(&self, msg: &str) -> ! {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        panic!("{msg}\n--- prometheus log (end) ---\n{tail}");
    }

    /// Fails at once if Prometheus has exited (bad config, port taken).
    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.fail(&format!("prometheus exited early: {status}"));
        }
    }

    /// GETs `path` from Prometheus's HTTP API and returns the JSON `data` of a successful
    /// answer; `Err` says what went wrong (not up yet, HTTP error, API error).
    async fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) = http_get_full(self.addr, path).await?;
        let json: Value = serde_json::from_str(&body)
            .map_err(|e| format!("GET {path}: {status}, not JSON ({e}): {body}"))?;
        if status != 200 || json["status"] != "success" {
            return Err(format!("GET {path}: {status}: {body}"));
        }
        Ok(json["data"].clone())
    }

    /// Runs an instant query; returns each result series as (labels, value).
    async fn query(&self, promql: &str) -> Result<Vec<(Value, f64)>, String> {
        let data = self
            .api(&format!("/api/v1/query?query={}", percent_encode(promql)))
            .await?;
        let series = data["result"]
            .as_array()
            .ok_or_else(|| format!("{promql}: result is not a vector: {data}"))?;
        series
            .iter()
            .map(|s| {
                let value = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .ok_or_else(|| format!("{promql}: no numeric value in {s}"))?;
                Ok((s["metric"].clone(), value))
            })
            .collect()
    }

    /// Runs one check once: `Ok` with what was seen, `Err` with why it is not satisfied yet.
    async fn attempt(&self, check: &Check<'_>) -> Result<String, String> {
        match check {
            Check::Value(promql, expect) => {
                let series = self.query(promql).await?;
                match series.as_slice() {
                    [(_, value)] if expect.accepts(*value) => Ok(format!("{promql} = {value}")),
                    _ => Err(format!("{promql} = {series:?}, expected {expect:?}")),
                }
            }
            Check::RulesHealthy => {
                let data = self.api("/api/v1/rules").await?;
                let rules: Vec<&Value> = data["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                    .collect();
                if rules.len() < MIN_ALERT_RULES {
                    return Err(format!("{} rules loaded", rules.len()));
                }
                match rules.iter().find(|r| r["health"] != "ok") {
                    Some(r) => Err(format!(
                        "rule {} is {}: {}",
                        r["name"], r["health"], r["lastError"]
                    )),
                    None => Ok(format!("{} alert rules evaluate cleanly", rules.len())),
                }
            }
        }
    }

    /// Polls `check` until it holds or `deadline` passes (then fails with the last answer).
    async fn wait_for(&mut self, check: Check<'_>, deadline: Instant) -> String {
        loop {
            self.check_alive();
            let last = match self.attempt(&check).await {
                Ok(seen) => return seen,
                Err(e) => e,
            };
            if Instant::now() > deadline {
                self.fail(&format!("timed out; last answer: {last}"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a query's single value must be.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Eq(f64),
    Positive,
}

impl Expect {
    fn accepts(self, value: f64) -> bool {
        match self {
            Expect::Eq(want) => value == want,
            Expect::Positive => value > 0.0,
        }
    }
}

/// Something [`Prometheus::wait_for`] polls for.
enum Check<'a> {
    /// An instant query returns exactly one series, with an acceptable value.
    Value(&'a str, Expect),
    /// At least [`MIN_ALERT_RULES`] rules are loaded, and all evaluated without error.
    RulesHealthy,
}

/// A plain HTTP/1.1 GET with hyper's connection-level client: (status, body).
async fn http_get_full(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let fail = |e: &dyn std::fmt::Display| format!("GET http://{addr}{path}: {e}");
    let tcp = TcpStream::connect(addr).await.map_err(|e| fail(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| fail(&e))?;
    tokio::spawn(conn);
    let request = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail(&e))?;
    let response = tokio::time::timeout(STEP, sender.send_request(request))
        .await
        .map_err(|e| fail(&e))?
        .map_err(|e| fail(&e))?;
    let status = response.status().as_u16();
    let body = tokio::time::timeout(STEP, response.into_body().collect())
        .await
        .map_err(|e| fail(&e))?
        .map_err(|e| fail(&e))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Percent-encodes a query parameter value (everything but RFC 3986 unreserved characters).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every PromQL expression of the Grafana dashboard's panels as (panel title, expression),
/// with Grafana's variables replaced by values Prometheus accepts.
fn dashboard_queries() -> Vec<(String, String)> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let top = dashboard["panels"]
        .as_array()
        .expect("the dashboard has panels");
    // Collapsed rows keep their panels inside the row.
    let panels = top
        .iter()
        .flat_map(|p| std::iter::once(p).chain(p["panels"].as_array().into_iter().flatten()));
    let mut out = Vec::new();
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = target["expr"].as_str() else {
                continue;
            };
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$route", ".*")
                .replace("$instance", ".*");
            out.push((panel["title"].to_string(), expr));
        }
    }
    out
}

/// Opens a relayed connection, sends [`MESSAGES_EACH`] text messages and reads their echoes,
/// then closes normally.
async fn relay_one(addr: SocketAddr, n: usize) {
    let mut c = RawClient::connect(addr, "").await;
    for i in 0..MESSAGES_EACH {
        let text = format!("conn {n} message {i}");
        c.send(true, 1, text.as_bytes(), MASK).await;
        assert_eq!(c.frame().await.unwrap(), (1, text.into_bytes()));
    }
    c.send(true, 8, &close_payload(1000, ""), MASK).await;
    assert_eq!(c.close_frame().await.0, 1000);
}

/// Whether the environment demands a real Prometheus (`GUESTGATE_REQUIRE_PROMETHEUS`).
fn prometheus_required() -> bool {
    matches!(
        std::env::var("GUESTGATE_REQUIRE_PROMETHEUS").as_deref(),
        Ok("1" | "true")
    )
}

/// Says on the real stderr that the test is skipped: `eprintln!` output of a passing test is
/// captured and thrown away by the harness, which would make the skip silent.
fn announce_skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED a_real_prometheus_scrapes_the_expected_series_and_values: {why} (install \
         Debian's `prometheus`, or run scripts/ci/prometheus.sh, which does and sets \
         GUESTGATE_REQUIRE_PROMETHEUS=1)"
    );
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_expected_series_and_values() {
    let binary = match prometheus_binary() {
        Ok(binary) => binary,
        Err(why) if prometheus_required() => {
            panic!("GUESTGATE_REQUIRE_PROMETHEUS is set but {why}")
        }
        Err(why) => {
            announce_skip(&why);
            return;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), scrape_test(&binary))
        .await
        .expect("the Prometheus scrape test took over 2 minutes");
}

async fn scrape_test(binary: &Path) {
    let up = fake(FakeBehavior::Echo).await;
    let gg = gateway(&config_for(&up.url())).await;
    let dir = tempfile::tempdir().unwrap();
    // Start Prometheus first: it takes a moment, and the traffic below then lands between
    // scrapes as it would in production.
    let mut prom = Prometheus::start(binary, dir.path(), gg.admin_addr);

    for n in 0..RELAYED {
        relay_one(gg.addr, n).await;
    }
    up.set_behavior(FakeBehavior::genesys_forbidden());
    let mut refused = RawClient::connect(gg.addr, "").await;
    assert_eq!(refused.close_frame().await.0, 4403);
    refused.send(true, 8, &close_payload(4403, ""), MASK).await;

    let deadline = Instant::now() + PROMETHEUS_DEADLINE;
    let relayed = Expect::Eq(RELAYED as f64);
    let sent = Expect::Eq((RELAYED * MESSAGES_EACH) as f64);
    let one = Expect::Eq(1.0);
    let checks = [
        (r#"up{job="guestgate"}"#, one),
        (r#"guestgate_build_info{job="guestgate"}"#, one),
        (
            r#"process_resident_memory_bytes{job="guestgate"}"#,
            Expect::Positive,
        ),
        (r#"guestgate_connections_total{outcome="relayed"}"#, relayed),
        (
            r#"guestgate_connections_total{outcome="upstream_failed"}"#,
            one,
        ),
        (r#"guestgate_upstream_failures_total{kind="refused"}"#, one),
        (
            r#"guestgate_messages_total{direction="browser_to_upstream"}"#,
            sent,
        ),
        (
            r#"guestgate_messages_total{direction="upstream_to_browser"}"#,
            sent,
        ),
        (
            r#"guestgate_closes_total{initiator="browser",code_class="normal"}"#,
            relayed,
        ),
        (
            r#"guestgate_closes_total{initiator="guestgate",code_class="gg_refused"}"#,
            one,
        ),
        (
            r#"guestgate_session_setup_seconds_count{outcome="relayed"}"#,
            relayed,
        ),
        (r#"guestgate_connections_open"#, Expect::Eq(0.0)),
    ];
    for (promql, expect) in checks {
        let seen = prom.wait_for(Check::Value(promql, expect), deadline).await;
        eprintln!("prometheus: {seen}");
    }

    // Every alert rule loads and evaluates against real series without error.
    let seen = prom.wait_for(Check::RulesHealthy, deadline).await;
    eprintln!("prometheus: {seen}");

    // Every dashboard query parses and runs.
    let queries = dashboard_queries();
    assert!(
        queries.len() >= 15,
        "only {} dashboard queries",
        queries.len()
    );
    for (panel, expr) in &queries {
        if let Err(e) = prom.query(expr).await {
            prom.fail(&format!(
                "dashboard panel {panel}: query {expr} failed: {e}"
            ));
        }
    }
    eprintln!("prometheus: all {} dashboard queries run", queries.len());
    gg.shutdown();
}
