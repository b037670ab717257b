//! Reads `guestgate-fake`'s session counts, so a scenario can say how much upstream work its
//! attack caused and whether any of it is still open.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// The fake's counts, as its stats endpoint returns them.
#[derive(Debug, Clone)]
pub struct Counts(pub Value);

impl Counts {
    /// One counter, e.g. `("genesys", "sessions")`; 0 when absent.
    pub fn get(&self, upstream: &str, key: &str) -> u64 {
        self.0[upstream][key].as_u64().unwrap_or(0)
    }

    /// Upstream sockets still open, over every upstream.
    pub fn open(&self) -> u64 {
        ["genesys", "echo", "flood"]
            .iter()
            .map(|u| self.get(u, "open"))
            .sum()
    }
}

/// Fetches the counts once.
pub async fn counts(stats: SocketAddr) -> Result<Counts, String> {
    let run = async {
        let mut s = TcpStream::connect(stats)
            .await
            .map_err(|e| format!("connecting to the fake's stats at {stats}: {e}"))?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| format!("asking the fake for its stats: {e}"))?;
        let mut text = String::new();
        s.read_to_string(&mut text)
            .await
            .map_err(|e| format!("reading the fake's stats: {e}"))?;
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        serde_json::from_str(body)
            .map(Counts)
            .map_err(|e| format!("parsing the fake's stats: {e}"))
    };
    timeout(Duration::from_secs(5), run)
        .await
        .map_err(|_| "the fake's stats did not answer within 5s".to_owned())?
}

/// Polls until no upstream socket is open beyond `baseline_open`, or `within` passes; returns
/// the last counts and whether they settled.
pub async fn settle(
    stats: SocketAddr,
    baseline_open: u64,
    within: Duration,
) -> Result<(Counts, bool), String> {
    let deadline = Instant::now() + within;
    loop {
        let c = counts(stats).await?;
        if c.open() <= baseline_open {
            return Ok((c, true));
        }
        if Instant::now() >= deadline {
            return Ok((c, false));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
