//! Scraping guestgate's admin `/metrics` during a cell, as a Prometheus server would: a plain
//! HTTP/1.1 GET over a fresh loopback TCP connection every interval, checked for status 200
//! and a known metric family. Used by the `guestgate+obs` target (`--observability`), whose
//! cost against plain guestgate the harness measures.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A metric family every guestgate `/metrics` page has (`src/metrics/mod.rs`).
pub const FAMILY: &str = "guestgate_connections_total";

/// Longest one scrape may take (connect, request, whole response).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest response read; a page beyond it counts as failed.
const MAX_PAGE: usize = 8 << 20;

/// What the scrapes of one or more cells came to.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Scrapes answered 200 with [`FAMILY`] in the body.
    pub ok: u64,
    /// Scrapes that failed (connect, timeout, status, body).
    pub failed: u64,
    /// The first failure, for the report.
    pub first_failure: Option<String>,
    /// Response bytes read by the successful scrapes.
    pub bytes: u64,
}

impl Stats {
    /// Adds another run's counts.
    pub fn add(&mut self, o: Stats) {
        self.ok += o.ok;
        self.failed += o.failed;
        self.bytes += o.bytes;
        if self.first_failure.is_none() {
            self.first_failure = o.first_failure;
        }
    }

    fn record(&mut self, r: Result<usize, String>) {
        match r {
            Ok(n) => {
                self.ok += 1;
                self.bytes += n as u64;
            }
            Err(e) => {
                self.failed += 1;
                self.first_failure.get_or_insert(e);
            }
        }
    }
}

/// A scraper running in the background until [`Scraper::stop`].
pub struct Scraper {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Stats>,
}

impl Scraper {
    /// Starts scraping `http://admin/metrics`: at once, then every `every`.
    pub fn start(admin: SocketAddr, every: Duration) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut stats = Stats::default();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => return stats,
                    _ = tick.tick() => stats.record(scrape(admin).await),
                }
            }
        });
        Self { stop, task }
    }

    /// Stops scraping (an ongoing scrape is finished first) and returns the counts.
    pub async fn stop(self) -> Stats {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_else(|e| Stats {
            failed: 1,
            first_failure: Some(format!("scraper task: {e}")),
            ..Stats::default()
        })
    }
}

/// One scrape: GET /metrics, `Connection: close`, read to the end; the response's length
/// when it is a 200 containing [`FAMILY`].
pub async fn scrape(admin: SocketAddr) -> Result<usize, String> {
    let once = async {
        let mut tcp = TcpStream::connect(admin)
            .await
            .map_err(|e| format!("connect {admin}: {e}"))?;
        let req = format!(
            "GET /metrics HTTP/1.1\r\nHost: {admin}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut page = Vec::with_capacity(16 << 10);
        (&mut tcp)
            .take(MAX_PAGE as u64 + 1)
            .read_to_end(&mut page)
            .await
            .map_err(|e| format!("read: {e}"))?;
        check(&page)
    };
    tokio::time::timeout(SCRAPE_TIMEOUT, once)
        .await
        .map_err(|_| format!("no whole answer within {SCRAPE_TIMEOUT:?}"))?
}

/// Checks a whole HTTP response: status 200, [`FAMILY`] in it, not over [`MAX_PAGE`].
fn check(page: &[u8]) -> Result<usize, String> {
    if page.len() > MAX_PAGE {
        return Err(format!("page larger than {MAX_PAGE} bytes"));
    }
    let text = String::from_utf8_lossy(page);
    let status = text.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("status line {status:?}"));
    }
    if !text.contains(FAMILY) {
        return Err(format!("200 without {FAMILY} ({} bytes)", page.len()));
    }
    Ok(page.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_wants_200_and_the_family() {
        let ok = format!("HTTP/1.1 200 OK\r\n\r\n# TYPE {FAMILY} counter\n{FAMILY} 3\n");
        assert_eq!(check(ok.as_bytes()), Ok(ok.len()));
        assert!(check(b"HTTP/1.1 404 Not Found\r\n\r\nmetrics are off\n").is_err());
        assert!(check(b"HTTP/1.1 200 OK\r\n\r\nsomething else\n").is_err());
    }

    #[tokio::test]
    async fn scraper_counts_failures_against_a_closed_port() {
        let port = crate::procs::free_port().unwrap();
        let s = Scraper::start(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_millis(20),
        );
        tokio::time::sleep(Duration::from_millis(70)).await;
        let stats = s.stop().await;
        assert_eq!(stats.ok, 0);
        assert!(stats.failed >= 2, "{stats:?}");
        assert!(stats.first_failure.is_some());
    }
}
