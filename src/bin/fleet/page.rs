//! One page-like client: holds a chat through the load balancer the way a Messenger page
//! would, and checks what it received.
//!
//! First connection: `GET {path}`, then `SessionReady` (`newSession: true`) with a resume
//! ticket. On any drop (close 1001 on a drain, no close frame when a replica is killed) it
//! waits a page's backoff (a random delay between half and all of `backoff_min`, doubling per
//! failed attempt), reconnects with `?resume=first-frame&after=<last message id>`, sends the
//! latest ticket as its first frame, expects `newSession: false`, reads the replay up to
//! `ReplayDone`, and carries on. The time from the drop (the close frame, or the end of the
//! stream) to `ReplayDone` is its reconnect time.
//!
//! Checks: the agent's periodic texts arrive exactly once each and in order, `agent message
//! 1` to `agent message K`; every guest text is echoed exactly once (a text whose echo did
//! not come back before a drop, nor in the replay, is sent again, as a careful page would);
//! every reconnect resumes; every replay is complete; guestgate closes only with 1001 (or
//! not at all, when a replica dies). Every wait has a deadline.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::wire::{self, MessageKind, Seen};

/// Close codes a page of this fleet may see from guestgate: 1001 (drain) and 1006 (no close
/// frame: the replica died). Anything else is a failure.
pub const EXPECTED_CLOSES: [u16; 2] = [1001, ABNORMAL];

/// The code a page reports when the connection ended without a close frame.
pub const ABNORMAL: u16 = 1006;

/// Problems kept per client (the count of each kind is kept in full).
const MAX_PROBLEMS: usize = 5;

/// How long a finished page waits for the echo of its last guest text.
const LAST_ECHO_WAIT: Duration = Duration::from_secs(5);

/// How long a close handshake may take.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What every page of the fleet shares.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The load balancer's frontend.
    pub target: SocketAddr,
    /// The Genesys route's path.
    pub path: String,
    /// The `Origin` pages send.
    pub origin: String,
    /// The fake agent's last message number: a page is done when it has seen it.
    pub agent_max: u64,
    /// How often a page writes a guest text (`None`: never).
    pub guest_every: Option<Duration>,
    /// The first reconnect waits between half and all of this.
    pub backoff_min: Duration,
    /// The longest backoff.
    pub backoff_max: Duration,
    /// Bound on each step of a connection: TCP connect, upgrade, `SessionReady`, replay.
    pub step_timeout: Duration,
    /// A live connection that delivers nothing for this long is treated as stalled.
    pub silence_timeout: Duration,
}

/// Fleet-wide gauges for the status file (updated as pages go).
#[derive(Debug, Default)]
pub struct Live {
    /// Pages connected and past their replay.
    pub connected: AtomicUsize,
    /// Pages that have seen every agent message and closed.
    pub finished: AtomicUsize,
    /// Pages that reached their first `SessionReady`.
    pub started: AtomicUsize,
    /// Agent messages received (duplicates included).
    pub agent_messages: AtomicU64,
    /// Reconnects completed (up to `ReplayDone`).
    pub reconnects: AtomicU64,
    /// Connection attempts that failed before `SessionReady`.
    pub failed_attempts: AtomicU64,
}

/// What one page saw, for the summary.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Outcome {
    /// The page's number.
    pub id: usize,
    /// Its source address (each page has its own, so per-address limits apply per page).
    pub source: String,
    /// The highest agent message number seen in order.
    pub agent_last: u64,
    /// Agent messages received, duplicates included.
    pub agent_frames: u64,
    /// Agent messages skipped (never received before a later one).
    pub agent_lost: u64,
    /// Agent messages received again or out of order.
    pub agent_doubled: u64,
    /// Connections that got `SessionReady`.
    pub connections: u64,
    /// Reconnects greeted with `newSession: false`.
    pub resumed: u64,
    /// Reconnects greeted with a new session (the conversation was lost).
    pub fresh_on_reconnect: u64,
    /// Messages delivered by replays.
    pub replayed: u64,
    /// Replays that did not find the page's last message (`complete: false`).
    pub replays_incomplete: u64,
    /// Close codes guestgate ended connections with (1006: no close frame).
    pub closes: BTreeMap<u16, u64>,
    /// Attempts that failed before `SessionReady`, by cause.
    pub failed_attempts: BTreeMap<String, u64>,
    /// Drop (the close frame's arrival, or the end of the stream) to `ReplayDone` (or
    /// `SessionReady` when there was nothing to replay), per reconnect, in milliseconds: the
    /// close handshake, the page's backoff and the new connection's set-up and replay.
    pub reconnect_ms: Vec<u64>,
    /// From a close frame (or the end of the stream) to the end of the close handshake, per
    /// lost connection, in milliseconds: how long the page waited before it could reconnect.
    pub close_wait_ms: Vec<u64>,
    /// TCP connect to `SessionReady`, per connection, in milliseconds.
    pub setup_ms: Vec<u64>,
    /// Milliseconds from the fleet's start to this page's first `SessionReady`.
    pub first_ready_ms: Option<u64>,
    /// Guest texts written (each counted once, however often sent).
    pub guest_sent: u64,
    /// Guest texts whose echo came back.
    pub guest_echoed: u64,
    /// Guest texts sent again after a reconnect (not echoed before the drop nor replayed).
    pub guest_resent: u64,
    /// Guest echoes received more than once.
    pub guest_doubled: u64,
    /// Guest texts never echoed by the end.
    pub guest_unconfirmed: u64,
    /// guestgate refusals of page requests (`Error`, `MessageNotSent`).
    pub refused: u64,
    /// Whether it saw agent message `agent_max` and closed normally.
    pub finished: bool,
    /// What went wrong, first few.
    pub problems: Vec<String>,
}

impl Outcome {
    fn problem(&mut self, text: impl Into<String>) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(text.into());
        }
    }

    /// Reconnects completed: every connection after the first.
    pub fn reconnects(&self) -> u64 {
        self.connections.saturating_sub(1)
    }

    /// Why this page failed, or `None` when it passed. A page passes when it saw every agent
    /// message exactly once in order, every reconnect resumed its conversation with a complete
    /// replay, every guest text came back exactly once, guestgate closed it only with
    /// [`EXPECTED_CLOSES`], and it reconnected at least `min_reconnects` times.
    pub fn verdict(&self, agent_max: u64, min_reconnects: u64) -> Option<String> {
        let mut why = Vec::new();
        if !self.finished || self.agent_last != agent_max {
            why.push(format!(
                "saw agent messages up to {} of {agent_max}",
                self.agent_last
            ));
        }
        if self.agent_lost > 0 || self.agent_doubled > 0 {
            why.push(format!(
                "{} agent messages lost, {} doubled",
                self.agent_lost, self.agent_doubled
            ));
        }
        if self.fresh_on_reconnect > 0 {
            why.push(format!(
                "{} reconnects started a new session",
                self.fresh_on_reconnect
            ));
        }
        if self.replays_incomplete > 0 {
            why.push(format!("{} incomplete replays", self.replays_incomplete));
        }
        let unexpected: Vec<String> = self
            .closes
            .iter()
            .filter(|(code, _)| !EXPECTED_CLOSES.contains(code))
            .map(|(code, n)| format!("{n}x {code}"))
            .collect();
        if !unexpected.is_empty() {
            why.push(format!("closed with {}", unexpected.join(", ")));
        }
        if self.guest_doubled > 0 || self.guest_unconfirmed > 0 {
            why.push(format!(
                "guest texts: {} echoed twice, {} never echoed",
                self.guest_doubled, self.guest_unconfirmed
            ));
        }
        if self.reconnects() < min_reconnects {
            why.push(format!(
                "reconnected {} times, expected at least {min_reconnects}",
                self.reconnects()
            ));
        }
        why.extend(self.problems.iter().cloned());
        (!why.is_empty()).then(|| why.join("; "))
    }
}

/// How one connection ended.
enum Ending {
    /// The page saw every agent message and closed with 1000.
    Finished,
    /// guestgate closed it (code) or it dropped (1006), after `SessionReady`, at that instant
    /// (the close frame's arrival, not the end of the close handshake).
    Lost(u16, Instant),
    /// It failed before `SessionReady`: refused, timed out, or closed (code in the label).
    Failed(String),
    /// The fleet was told to stop.
    Stopped,
}

/// One page: its settings, its source address and where it reports.
pub struct Page {
    /// The page's number.
    pub id: usize,
    /// The loopback address its connections come from.
    pub source: IpAddr,
    /// Fleet-wide settings.
    pub settings: Arc<Settings>,
    /// Fleet-wide gauges.
    pub live: Arc<Live>,
    /// Cancelled when the fleet stops (deadline or signal).
    pub stop: CancellationToken,
    /// When the fleet started.
    pub epoch: Instant,
}

/// The conversation as the page knows it, across connections.
#[derive(Default)]
struct Memory {
    ticket: Option<String>,
    after: Option<String>,
    /// When the last connection was lost (`None` before the first).
    dropped_at: Option<Instant>,
    /// The guest text waiting for its echo: (number, text).
    outstanding: Option<(u64, String)>,
    guest_next: u64,
    echoed: std::collections::HashSet<String>,
}

type Ws = WebSocketStream<TcpStream>;

impl Page {
    /// Chats until the agent's last message arrives or the fleet stops; returns what it saw.
    pub async fn run(self) -> Outcome {
        let mut out = Outcome {
            id: self.id,
            source: self.source.to_string(),
            ..Outcome::default()
        };
        let mut memory = Memory::default();
        let mut failures_in_a_row = 0u32;
        loop {
            if memory.dropped_at.is_some() || failures_in_a_row > 0 {
                let delay = self.backoff(failures_in_a_row);
                tokio::select! {
                    () = sleep(delay) => {}
                    () = self.stop.cancelled() => break,
                }
            }
            match self.connect_once(&mut memory, &mut out).await {
                Ending::Finished => {
                    out.finished = true;
                    self.live.finished.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ending::Stopped => break,
                Ending::Lost(code, at) => {
                    *out.closes.entry(code).or_default() += 1;
                    out.close_wait_ms.push(millis(at.elapsed()));
                    // A drop during a reconnect's replay keeps the first drop's time.
                    memory.dropped_at.get_or_insert(at);
                    failures_in_a_row = 0;
                }
                Ending::Failed(label) => {
                    *out.failed_attempts.entry(label).or_default() += 1;
                    self.live.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    failures_in_a_row += 1;
                }
            }
        }
        if memory.outstanding.is_some() {
            out.guest_unconfirmed += 1;
        }
        out
    }

    /// A page's backoff: between half and all of `backoff_min * 2^failures`, capped.
    fn backoff(&self, failures: u32) -> Duration {
        let s = &self.settings;
        let cap = s
            .backoff_min
            .saturating_mul(1 << failures.min(10))
            .min(s.backoff_max);
        let half = cap / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// One connection, from TCP connect to its end.
    async fn connect_once(&self, memory: &mut Memory, out: &mut Outcome) -> Ending {
        let s = &self.settings;
        let started = Instant::now();
        let resuming = memory.ticket.is_some();
        let after = if resuming { memory.after.clone() } else { None };
        let mut ws = tokio::select! {
            opened = self.open(resuming, after.as_deref()) => match opened {
                Ok(ws) => ws,
                Err(label) => return Ending::Failed(label),
            },
            () = self.stop.cancelled() => return Ending::Stopped,
        };
        if let Some(ticket) = &memory.ticket
            && ws
                .send(Message::text(wire::resume_frame(ticket)))
                .await
                .is_err()
        {
            return Ending::Failed("resume frame not sent".into());
        }
        // The greeting.
        let ready = match self.next_text(&mut ws, s.step_timeout).await {
            Next::Text(text) => wire::classify(&text),
            Next::Closed(code, _) => {
                return Ending::Failed(format!("closed {code} before SessionReady"));
            }
            Next::Silent => return Ending::Failed("no SessionReady in time".into()),
        };
        let Seen::SessionReady {
            new_session,
            ticket,
        } = ready
        else {
            out.problem(format!("first frame was not SessionReady: {ready:?}"));
            return Ending::Failed("first frame not SessionReady".into());
        };
        out.connections += 1;
        out.setup_ms.push(millis(started.elapsed()));
        if out.first_ready_ms.is_none() {
            out.first_ready_ms = Some(millis(self.epoch.elapsed()));
            self.live.started.fetch_add(1, Ordering::Relaxed);
        }
        match (resuming, new_session) {
            (false, Some(true)) => {}
            (true, Some(false)) => out.resumed += 1,
            (true, _) => {
                out.fresh_on_reconnect += 1;
                out.problem(format!(
                    "reconnect {} started a new session (newSession {new_session:?})",
                    out.connections - 1
                ));
            }
            (false, other) => out.problem(format!("first connection: newSession {other:?}")),
        }
        match ticket {
            Some(t) => memory.ticket = Some(t),
            None => out.problem("SessionReady without a resume ticket"),
        }
        // The replay, when the page named its last message.
        if after.is_some() {
            let deadline = Instant::now() + s.step_timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let text = match self.next_text(&mut ws, left).await {
                    Next::Text(text) => text,
                    Next::Closed(code, at) => return Ending::Lost(code, at),
                    Next::Silent => {
                        out.problem("no ReplayDone in time");
                        return Ending::Failed("no ReplayDone in time".into());
                    }
                };
                if let Seen::ReplayDone { count, complete } = wire::classify(&text) {
                    out.replayed += count;
                    if !complete {
                        out.replays_incomplete += 1;
                    }
                    break;
                }
                self.on_text(&text, memory, out);
            }
        }
        if let Some(at) = memory.dropped_at.take() {
            out.reconnect_ms.push(millis(at.elapsed()));
            self.live.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.live.connected.fetch_add(1, Ordering::Relaxed);
        let ending = self.converse(&mut ws, memory, out).await;
        self.live.connected.fetch_sub(1, Ordering::Relaxed);
        ending
    }

    /// TCP from the page's own address, then the upgrade, each within the step timeout.
    async fn open(&self, resuming: bool, after: Option<&str>) -> Result<Ws, String> {
        let s = &self.settings;
        let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {}", e.kind()))?;
        socket
            .bind(SocketAddr::new(self.source, 0))
            .map_err(|e| format!("bind: {}", e.kind()))?;
        let tcp = match timeout(s.step_timeout, socket.connect(s.target)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(format!("connect: {}", e.kind())),
            Err(_) => return Err("connect timed out".into()),
        };
        let _ = tcp.set_nodelay(true);
        let url = format!(
            "ws://{}{}",
            s.target,
            wire::path_and_query(&s.path, resuming, after)
        );
        let mut request = url
            .into_client_request()
            .map_err(|e| format!("request: {e}"))?;
        let origin = s.origin.parse().map_err(|_| "origin header".to_owned())?;
        request.headers_mut().insert(http::header::ORIGIN, origin);
        match timeout(
            s.step_timeout,
            tokio_tungstenite::client_async(request, tcp),
        )
        .await
        {
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(tungstenite::Error::Http(response))) => Err(format!(
                "upgrade refused: HTTP {}",
                response.status().as_u16()
            )),
            Ok(Err(e)) => Err(format!("upgrade failed: {}", short_error(&e))),
            Err(_) => Err("upgrade timed out".into()),
        }
    }

    /// The live part of a connection: messages in, guest texts out, until it ends.
    async fn converse(&self, ws: &mut Ws, memory: &mut Memory, out: &mut Outcome) -> Ending {
        let s = &self.settings;
        // A text that was not echoed before the drop, nor replayed, never reached Genesys.
        if let Some((_, text)) = &memory.outstanding {
            out.guest_resent += 1;
            let _ = ws.send(Message::text(wire::guest_text(text))).await;
        }
        let mut guest_timer = s.guest_every.map(|every| {
            let first = Instant::now() + every.mul_f64(rand::random::<f64>());
            tokio::time::interval_at(first, every)
        });
        let mut finishing_since: Option<Instant> = None;
        loop {
            if out.agent_last >= s.agent_max {
                let since = *finishing_since.get_or_insert_with(Instant::now);
                if memory.outstanding.is_none() || since.elapsed() >= LAST_ECHO_WAIT {
                    close_normally(ws).await;
                    return Ending::Finished;
                }
            }
            let wait = match finishing_since {
                Some(since) => LAST_ECHO_WAIT.saturating_sub(since.elapsed()),
                None => s.silence_timeout,
            };
            let tick = async {
                match guest_timer.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                next = self.next_text(ws, wait) => match next {
                    Next::Text(text) => self.on_text(&text, memory, out),
                    Next::Closed(code, at) => return Ending::Lost(code, at),
                    Next::Silent if finishing_since.is_some() => {}
                    Next::Silent => {
                        out.problem(format!("nothing received for {wait:?}"));
                        let _ = timeout(CLOSE_WAIT, ws.close(None)).await;
                        return Ending::Lost(ABNORMAL, Instant::now());
                    }
                },
                () = tick, if finishing_since.is_none() && memory.outstanding.is_none() => {
                    memory.guest_next += 1;
                    let text = format!("guest {}-{}", self.id, memory.guest_next);
                    out.guest_sent += 1;
                    let _ = ws.send(Message::text(wire::guest_text(&text))).await;
                    memory.outstanding = Some((memory.guest_next, text));
                }
                () = self.stop.cancelled() => {
                    close_normally(ws).await;
                    return Ending::Stopped;
                }
            }
        }
    }

    /// Checks one text frame against what the page expects.
    fn on_text(&self, text: &str, memory: &mut Memory, out: &mut Outcome) {
        match wire::classify(text) {
            Seen::Message { id, kind } => {
                if let Some(id) = id {
                    memory.after = Some(id);
                }
                match kind {
                    MessageKind::Agent(n) => {
                        out.agent_frames += 1;
                        self.live.agent_messages.fetch_add(1, Ordering::Relaxed);
                        if n == out.agent_last + 1 {
                            out.agent_last = n;
                        } else if n <= out.agent_last {
                            out.agent_doubled += 1;
                            out.problem(format!(
                                "agent message {n} again (after {})",
                                out.agent_last
                            ));
                        } else {
                            out.agent_lost += n - out.agent_last - 1;
                            out.problem(format!(
                                "agent message {n} after {}: {} missing",
                                out.agent_last,
                                n - out.agent_last - 1
                            ));
                            out.agent_last = n;
                        }
                    }
                    MessageKind::GuestEcho(text) => {
                        if !memory.echoed.insert(text.clone()) {
                            out.guest_doubled += 1;
                            out.problem(format!("guest text {text:?} echoed twice"));
                        } else if memory.outstanding.as_ref().is_some_and(|(_, t)| *t == text) {
                            memory.outstanding = None;
                            out.guest_echoed += 1;
                        } else {
                            out.problem(format!("echo of a text not sent: {text:?}"));
                        }
                    }
                    MessageKind::Other => {}
                }
            }
            Seen::SessionEnded(reason) => out.problem(format!("session ended: {reason}")),
            Seen::Refused { class, code } => {
                out.refused += 1;
                out.problem(format!("request refused: {class} {code}"));
            }
            Seen::SessionReady { .. } => out.problem("a second SessionReady"),
            Seen::ReplayDone { .. } => out.problem("ReplayDone without a replay"),
            Seen::Other => {}
        }
    }

    /// The next text frame within `wait`; pings are answered by tungstenite on the way.
    async fn next_text(&self, ws: &mut Ws, wait: Duration) -> Next {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, ws.next()).await {
                Err(_) => return Next::Silent,
                Ok(None) | Ok(Some(Err(_))) => return Next::Closed(ABNORMAL, Instant::now()),
                Ok(Some(Ok(Message::Text(t)))) => return Next::Text(t.as_str().to_owned()),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    let at = Instant::now();
                    let code = frame.map_or(1005, |f| u16::from(f.code));
                    // Let tungstenite answer the close and see the end of the stream.
                    let _ = timeout(CLOSE_WAIT, async { while ws.next().await.is_some() {} }).await;
                    return Next::Closed(code, at);
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

/// What the next read brought.
enum Next {
    Text(String),
    /// The connection ended: guestgate's close code, or 1006 without a close frame, and when
    /// the close frame (or the end) arrived.
    Closed(u16, Instant),
    /// Nothing within the wait.
    Silent,
}

/// Closes with 1000 and waits (bounded) for the close handshake.
async fn close_normally(ws: &mut Ws) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "page done".into(),
    };
    let _ = timeout(CLOSE_WAIT, async {
        if ws.close(Some(frame)).await.is_ok() {
            while ws.next().await.is_some() {}
        }
    })
    .await;
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A short label for a handshake error (no URL: it would carry nothing secret, but labels
/// are counted, so they must not vary per page).
fn short_error(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Io(io) => format!("io {}", io.kind()),
        tungstenite::Error::Protocol(p) => format!("protocol: {p}"),
        other => other.to_string(),
    }
}

/// The source address of page `id`: `127.1.x.y`, one per page, so HAProxy forwards a distinct
/// client address for each and guestgate's per-address limits apply per page.
pub fn source_of(id: usize) -> IpAddr {
    let id = id % (255 * 255);
    IpAddr::from([127, 1, (id / 255) as u8, (id % 255 + 1) as u8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passing() -> Outcome {
        Outcome {
            agent_last: 10,
            agent_frames: 10,
            connections: 4,
            resumed: 3,
            finished: true,
            closes: BTreeMap::from([(1001, 2), (ABNORMAL, 1)]),
            ..Outcome::default()
        }
    }

    #[test]
    fn a_page_passes_only_with_every_message_once_and_resumed_reconnects() {
        assert_eq!(passing().verdict(10, 3), None);
        let v = |o: Outcome| o.verdict(10, 3).unwrap_or_default();
        assert!(
            v(Outcome {
                agent_last: 9,
                ..passing()
            })
            .contains("up to 9 of 10")
        );
        assert!(
            v(Outcome {
                agent_lost: 1,
                ..passing()
            })
            .contains("1 agent messages lost")
        );
        assert!(
            v(Outcome {
                agent_doubled: 2,
                ..passing()
            })
            .contains("2 doubled")
        );
        assert!(
            v(Outcome {
                fresh_on_reconnect: 1,
                ..passing()
            })
            .contains("new session")
        );
        assert!(
            v(Outcome {
                replays_incomplete: 1,
                ..passing()
            })
            .contains("incomplete")
        );
        assert!(
            v(Outcome {
                connections: 3,
                ..passing()
            })
            .contains("reconnected 2 times")
        );
        assert!(
            v(Outcome {
                guest_doubled: 1,
                ..passing()
            })
            .contains("echoed twice")
        );
        let closes = BTreeMap::from([(1001, 1), (1011, 1), (4503, 2)]);
        assert!(
            v(Outcome {
                closes,
                ..passing()
            })
            .contains("closed with 1x 1011, 2x 4503")
        );
    }

    #[test]
    fn every_page_has_its_own_loopback_address() {
        assert_eq!(source_of(0), IpAddr::from([127, 1, 0, 1]));
        assert_eq!(source_of(254), IpAddr::from([127, 1, 0, 255]));
        assert_eq!(source_of(255), IpAddr::from([127, 1, 1, 1]));
        let all: std::collections::HashSet<_> = (0..1000).map(source_of).collect();
        assert_eq!(all.len(), 1000);
        assert!(all.iter().all(IpAddr::is_loopback));
    }
}
