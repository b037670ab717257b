//! The fleet's summary: one check per page plus the fleet-wide checks, the figures the
//! operator's guide quotes (reconnect time percentiles, set-up rate, message rate), printed
//! as text ending in `fleet: N passed, M failed` and written as JSON for the script.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::page::Outcome;

/// Nearest-rank percentile of `values` (`q` in 0..=100); `None` when empty.
pub fn percentile(values: &[u64], q: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p99 and max of a series, as JSON (nulls when empty).
fn spread(values: &[u64]) -> Value {
    json!({
        "n": values.len(),
        "p50": percentile(values, 50.0),
        "p99": percentile(values, 99.0),
        "max": values.iter().max(),
    })
}

fn spread_text(values: &[u64]) -> String {
    match (
        percentile(values, 50.0),
        percentile(values, 99.0),
        values.iter().max(),
    ) {
        (Some(p50), Some(p99), Some(max)) => {
            format!(
                "p50 {p50} ms, p99 {p99} ms, max {max} ms (n={})",
                values.len()
            )
        }
        _ => "none".into(),
    }
}

/// What the pages are checked against.
#[derive(Debug, Clone, Copy)]
pub struct Expectations {
    /// The agent's last message number.
    pub agent_max: u64,
    /// Reconnects each page must have made (the restarts it lived through).
    pub min_reconnects: u64,
    /// Connection attempts allowed to fail before `SessionReady`, fleet-wide.
    pub allowed_failed_attempts: u64,
}

/// The fleet's outcome.
pub struct Summary {
    /// Check name -> failure text (`None`: passed), in print order.
    pub checks: Vec<(String, Option<String>)>,
    /// Every figure, as written to the JSON report.
    pub figures: Value,
    /// The text summary.
    pub text: String,
}

impl Summary {
    /// Checks that passed.
    pub fn passed(&self) -> usize {
        self.checks.iter().filter(|(_, f)| f.is_none()).count()
    }

    /// Checks that failed.
    pub fn failed(&self) -> usize {
        self.checks.len() - self.passed()
    }

    /// The closing line.
    pub fn closing_line(&self) -> String {
        format!("fleet: {} passed, {} failed", self.passed(), self.failed())
    }
}

/// Sums over pages.
#[derive(Default)]
struct Totals {
    agent_frames: u64,
    agent_lost: u64,
    agent_doubled: u64,
    connections: u64,
    reconnects: u64,
    resumed: u64,
    fresh: u64,
    replayed: u64,
    incomplete: u64,
    guest_sent: u64,
    guest_echoed: u64,
    guest_resent: u64,
    guest_doubled: u64,
    guest_unconfirmed: u64,
    refused: u64,
    closes: BTreeMap<u16, u64>,
    failed: BTreeMap<String, u64>,
    reconnect_ms: Vec<u64>,
    close_wait_ms: Vec<u64>,
    setup_ms: Vec<u64>,
    first_ready_ms: Vec<u64>,
}

impl Totals {
    fn of(pages: &[Outcome]) -> Self {
        let mut t = Totals::default();
        for p in pages {
            t.agent_frames += p.agent_frames;
            t.agent_lost += p.agent_lost;
            t.agent_doubled += p.agent_doubled;
            t.connections += p.connections;
            t.reconnects += p.reconnects();
            t.resumed += p.resumed;
            t.fresh += p.fresh_on_reconnect;
            t.replayed += p.replayed;
            t.incomplete += p.replays_incomplete;
            t.guest_sent += p.guest_sent;
            t.guest_echoed += p.guest_echoed;
            t.guest_resent += p.guest_resent;
            t.guest_doubled += p.guest_doubled;
            t.guest_unconfirmed += p.guest_unconfirmed;
            t.refused += p.refused;
            for (code, n) in &p.closes {
                *t.closes.entry(*code).or_default() += n;
            }
            for (label, n) in &p.failed_attempts {
                *t.failed.entry(label.clone()).or_default() += n;
            }
            t.reconnect_ms.extend(&p.reconnect_ms);
            t.close_wait_ms.extend(&p.close_wait_ms);
            t.setup_ms.extend(&p.setup_ms);
            t.first_ready_ms.extend(p.first_ready_ms);
        }
        t
    }

    fn closes_in(&self, range: std::ops::RangeInclusive<u16>) -> u64 {
        self.closes
            .iter()
            .filter(|(c, _)| range.contains(c))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Builds the summary of a finished fleet run that lasted `elapsed`.
pub fn summarize(pages: &[Outcome], expect: Expectations, elapsed: Duration) -> Summary {
    let t = Totals::of(pages);
    let clients = pages.len() as u64;
    let internal = t.closes.get(&1011).copied().unwrap_or(0);
    let private = t.closes_in(4000..=4999);
    let failed_attempts: u64 = t.failed.values().sum();
    let secs = elapsed.as_secs_f64().max(0.001);
    let ramp_ms = (t.first_ready_ms.len() as u64 == clients)
        .then(|| t.first_ready_ms.iter().max().copied())
        .flatten();
    let setups_per_sec = ramp_ms.map(|ms| clients as f64 / (ms.max(1) as f64 / 1000.0));

    let mut checks: Vec<(String, Option<String>)> = Vec::new();
    let mut check = |name: &str, ok: bool, why: String| {
        checks.push((name.to_owned(), (!ok).then_some(why)));
    };
    check(
        "every page got a session",
        t.first_ready_ms.len() as u64 == clients,
        format!(
            "{} of {clients} pages never got SessionReady",
            clients - t.first_ready_ms.len() as u64
        ),
    );
    check(
        "no close 1011",
        internal == 0,
        format!("{internal} connections closed with 1011"),
    );
    check(
        "no close 4xxx",
        private == 0,
        format!("{private} connections closed with a 4xxx code"),
    );
    check(
        "no agent message lost or doubled",
        t.agent_lost == 0 && t.agent_doubled == 0,
        format!("{} lost, {} doubled", t.agent_lost, t.agent_doubled),
    );
    check(
        "every reconnect resumed its conversation",
        t.fresh == 0 && t.incomplete == 0,
        format!(
            "{} reconnects got a new session, {} replays were incomplete",
            t.fresh, t.incomplete
        ),
    );
    check(
        "every guest text echoed exactly once",
        t.guest_doubled == 0 && t.guest_unconfirmed == 0 && t.guest_echoed == t.guest_sent,
        format!(
            "{} sent, {} echoed, {} twice, {} never",
            t.guest_sent, t.guest_echoed, t.guest_doubled, t.guest_unconfirmed
        ),
    );
    check(
        "connection attempts failed within the allowance",
        failed_attempts <= expect.allowed_failed_attempts,
        format!(
            "{failed_attempts} attempts failed (allowed {}): {:?}",
            expect.allowed_failed_attempts, t.failed
        ),
    );
    let mut failed_pages = Vec::new();
    for p in pages {
        let verdict = p.verdict(expect.agent_max, expect.min_reconnects);
        if let Some(why) = &verdict {
            failed_pages.push(json!({"id": p.id, "source": p.source, "why": why}));
        }
        checks.push((format!("page {}", p.id), verdict));
    }

    let closes: BTreeMap<String, u64> = t.closes.iter().map(|(c, n)| (c.to_string(), *n)).collect();
    let figures = json!({
        "clients": clients,
        "agent_max": expect.agent_max,
        "min_reconnects": expect.min_reconnects,
        "elapsed_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "agent_messages": t.agent_frames,
        "agent_lost": t.agent_lost,
        "agent_doubled": t.agent_doubled,
        "agent_messages_per_sec": t.agent_frames as f64 / secs,
        "connections": t.connections,
        "reconnects": t.reconnects,
        "resumed": t.resumed,
        "fresh_on_reconnect": t.fresh,
        "replayed": t.replayed,
        "replays_incomplete": t.incomplete,
        "guest_sent": t.guest_sent,
        "guest_echoed": t.guest_echoed,
        "guest_resent": t.guest_resent,
        "guest_doubled": t.guest_doubled,
        "guest_unconfirmed": t.guest_unconfirmed,
        "refused": t.refused,
        "closes": closes,
        "closes_1011": internal,
        "closes_4xxx": private,
        "failed_attempts": t.failed,
        "reconnect_ms": spread(&t.reconnect_ms),
        "close_wait_ms": spread(&t.close_wait_ms),
        "setup_ms": spread(&t.setup_ms),
        "ramp_ms": ramp_ms,
        "ramp_setups_per_sec": setups_per_sec,
        "failed_pages": failed_pages.iter().take(20).collect::<Vec<_>>(),
    });

    let mut text = String::new();
    let w = &mut text;
    let _ = writeln!(
        w,
        "fleet: {clients} pages, agent messages 1..={} each, at least {} reconnects each, {:.1} s",
        expect.agent_max, expect.min_reconnects, secs
    );
    let _ = writeln!(
        w,
        "  agent messages received: {} ({:.0}/s); lost {}, doubled {}",
        t.agent_frames,
        t.agent_frames as f64 / secs,
        t.agent_lost,
        t.agent_doubled
    );
    let _ = writeln!(
        w,
        "  guest texts: {} sent, {} echoed once, {} sent again after a drop, {} echoed twice, {} never echoed",
        t.guest_sent, t.guest_echoed, t.guest_resent, t.guest_doubled, t.guest_unconfirmed
    );
    let _ = writeln!(
        w,
        "  connections: {} = {} first + {} reconnects; resumed {}, new session {}; replayed {} messages, {} replays incomplete",
        t.connections,
        t.connections - t.reconnects,
        t.reconnects,
        t.resumed,
        t.fresh,
        t.replayed,
        t.incomplete
    );
    let closes_text: Vec<String> = t.closes.iter().map(|(c, n)| format!("{c} x{n}")).collect();
    let _ = writeln!(
        w,
        "  closes from guestgate (1006 = no close frame): {}; 1011: {internal}; 4xxx: {private}",
        if closes_text.is_empty() {
            "none".to_owned()
        } else {
            closes_text.join(", ")
        }
    );
    let _ = writeln!(
        w,
        "  failed connection attempts: {failed_attempts} {:?}; refused requests: {}",
        t.failed, t.refused
    );
    let _ = writeln!(
        w,
        "  reconnect time (close frame or drop to ReplayDone, backoff included): {}",
        spread_text(&t.reconnect_ms)
    );
    let _ = writeln!(
        w,
        "  close handshake (close frame to the end of the connection): {}",
        spread_text(&t.close_wait_ms)
    );
    let _ = writeln!(
        w,
        "  set-up time (TCP connect to SessionReady): {}",
        spread_text(&t.setup_ms)
    );
    match (ramp_ms, setups_per_sec) {
        (Some(ms), Some(rate)) => {
            let _ = writeln!(
                w,
                "  ramp: {clients} first sessions within {ms} ms ({rate:.0} set-ups/s)"
            );
        }
        _ => {
            let _ = writeln!(w, "  ramp: not every page got a session");
        }
    }
    for (name, failure) in &checks {
        if !name.starts_with("page ") {
            match failure {
                None => {
                    let _ = writeln!(w, "  ok    {name}");
                }
                Some(why) => {
                    let _ = writeln!(w, "  FAIL  {name}: {why}");
                }
            }
        }
    }
    let page_failures = failed_pages.len();
    let _ = writeln!(
        w,
        "  pages: {} passed, {page_failures} failed",
        pages.len() - page_failures
    );
    for f in failed_pages.iter().take(10) {
        let _ = writeln!(
            w,
            "  FAIL  page {} ({}): {}",
            f["id"], f["source"], f["why"]
        );
    }
    Summary {
        checks,
        figures,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::ABNORMAL;

    fn page(id: usize) -> Outcome {
        Outcome {
            id,
            agent_last: 5,
            agent_frames: 5,
            connections: 3,
            resumed: 2,
            finished: true,
            first_ready_ms: Some(100 + id as u64),
            closes: BTreeMap::from([(1001, 1), (ABNORMAL, 1)]),
            reconnect_ms: vec![300, 700],
            setup_ms: vec![5, 6, 7],
            ..Outcome::default()
        }
    }

    const EXPECT: Expectations = Expectations {
        agent_max: 5,
        min_reconnects: 2,
        allowed_failed_attempts: 0,
    };

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[3, 1, 2], 0.0), Some(1));
    }

    #[test]
    fn a_clean_run_passes_every_check() {
        let s = summarize(&[page(0), page(1)], EXPECT, Duration::from_secs(2));
        assert_eq!(s.closing_line(), "fleet: 9 passed, 0 failed");
        assert_eq!(s.figures["reconnects"], 4);
        assert_eq!(s.figures["reconnect_ms"]["p99"], 700);
        assert_eq!(s.figures["ramp_ms"], 101);
        assert!(s.text.contains("1001 x2, 1006 x2"), "{}", s.text);
    }

    #[test]
    fn a_1011_a_4503_a_lost_message_or_a_failed_attempt_fail_the_fleet() {
        let mut bad = page(1);
        bad.closes.insert(1011, 1);
        bad.closes.insert(4503, 1);
        bad.agent_lost = 1;
        bad.failed_attempts
            .insert("upgrade refused: HTTP 503".into(), 1);
        let s = summarize(&[page(0), bad], EXPECT, Duration::from_secs(2));
        let failed: Vec<&str> = s
            .checks
            .iter()
            .filter(|(_, f)| f.is_some())
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(
            failed,
            [
                "no close 1011",
                "no close 4xxx",
                "no agent message lost or doubled",
                "connection attempts failed within the allowance",
                "page 1"
            ]
        );
        assert_eq!(s.closing_line(), "fleet: 4 passed, 5 failed");
    }

    #[test]
    fn a_page_without_a_session_fails_the_ramp() {
        let mut never = page(1);
        never.first_ready_ms = None;
        let s = summarize(&[page(0), never], EXPECT, Duration::from_secs(2));
        assert!(s.checks[0].1.as_deref() == Some("1 of 2 pages never got SessionReady"));
        assert!(s.figures["ramp_ms"].is_null());
    }
}
