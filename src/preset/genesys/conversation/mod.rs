//! The Genesys conversation layer: one task per connection between the relay and the Genesys
//! socket, acting on whole messages where Messenger features need it.
//!
//! ```text
//! browser ══ relay (limits, rates, pings, drain) ══ duplex ══ Conversation ══ Genesys socket
//! ```
//!
//! The relay keeps every browser-facing guarantee (frame and message limits, message rate,
//! idle and write-stall timers, shutdown with 1001); its "upstream" is an in-process duplex
//! whose other end this layer owns. Here each page request is checked (allowlist, shape),
//! gets the session token inserted, and `onMessage` is paced to Genesys's 2 per second
//! ([`pacing`]); guestgate's own requests (`guestgate.getHistory`, `guestgate.startNew`) are
//! answered here; upstream messages are passed on unchanged except the `JwtResponse`s this
//! layer asked for (the JWT never reaches the page) and live copies of messages a reconnect
//! already replayed from history ([`history`]). A session that ends upstream (expired,
//! cleared) is announced with a `SessionEnded` frame and the close code
//! [`close_code::SESSION_ENDED`](crate::close_code::SESSION_ENDED).
//!
//! Control frames pass through: the relay's keepalive pings reach Genesys and its pongs come
//! back, so the relay's idle timer still measures the real upstream. Close frames pass through
//! both ways with their codes.

mod events;
mod frames;
mod history;
mod pacing;
mod page;
mod signin;
mod upstream;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::Instant;
use tracing::debug;

pub use history::HistoryApi;
pub use signin::SignInState;

use crate::close_code::{self, CloseCode};
use crate::preset::MediatorContext;
use crate::relay::Leg;
use crate::secret::Secret;
use crate::ws::frame::{self, OwnFrame, Side};
use crate::ws::message::{Event, MessageReader};
use history::JwtCache;
use pacing::Pacer;

/// `onMessage` requests Genesys accepts per session per [`PACING_WINDOW`].
pub const MESSAGES_PER_WINDOW: usize = 2;

/// Most messages a replay buffers from the live socket while history is read.
const REPLAY_BUFFER_FRAMES: usize = 256;

/// Most bytes a replay buffers from the live socket while history is read.
const REPLAY_BUFFER_BYTES: usize = 1 << 20;

/// A page may ask for a history page at most this often.
pub const HISTORY_EVERY: Duration = Duration::from_secs(1);

/// What one connection's conversation is set up with (by the preset's set-up).
pub struct Conversation {
    /// The session token (a bearer credential: never sent to the page).
    pub token: Secret,
    /// The deployment, for `configureSession` with `startNew`.
    pub deployment_id: String,
    /// Page actions passed to Genesys.
    pub allowed: Vec<String>,
    /// Whether the route allows attachment actions.
    pub attachments: bool,
    /// The `SessionReady` frame, sent first.
    pub greeting: String,
    /// A reconnecting page's last message id: replay what came after it.
    pub after: Option<String>,
    /// The history API.
    pub api: std::sync::Arc<HistoryApi>,
    /// How many paced requests may wait.
    pub queue_capacity: usize,
    /// How long a `getJwt` (and a replay) may take.
    pub reply_timeout: Duration,
    /// Signed-in customers, when the route has them.
    pub sign_in: Option<SignInState>,
    /// Send presence `Join` first (a new session on an auto-start deployment).
    pub join: bool,
}

/// A history read waiting for a JWT or an HTTP answer.
#[derive(Debug, Clone)]
enum Pending {
    /// A page's `guestgate.getHistory`.
    Page {
        number: u32,
        size: u32,
        tracing_id: Option<String>,
    },
    /// A reconnect's replay after this id.
    Replay { after: String },
}

impl Pending {
    fn kind(&self) -> &'static str {
        match self {
            Pending::Page { .. } => "page",
            Pending::Replay { .. } => "replay",
        }
    }
}

/// The answer of a history read.
type HistoryDone = (Pending, Result<HistoryOutcome, history::HistoryError>);

enum HistoryOutcome {
    Page(history::Page),
    Replay(Vec<Value>, bool),
}

type HistoryFuture = std::pin::Pin<Box<dyn Future<Output = HistoryDone> + Send>>;

/// Frames held back while a replay reads history, delivered after it.
#[derive(Default)]
struct ReplayBuffer {
    frames: Vec<(u8, Vec<u8>)>,
    bytes: usize,
}

/// How the conversation ended, and so what is left of the close (the relay's report carries
/// the codes the browser saw).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The page sent a close, already passed to Genesys: Genesys's reply goes back.
    PageClosed(Option<u16>),
    /// Genesys sent a close, already passed to the page: the page's reply goes back.
    UpstreamClosed(Option<u16>),
    /// The page side ended without a close (or could not be written): Genesys hears 1001.
    PageLost,
    /// Genesys ended without a close (or could not be written): the page hears 4503.
    UpstreamLost,
    /// guestgate closed both sides itself (session ended, request refused, protocol broken):
    /// the page's reply is read.
    Closed,
}

/// The conversation's state between events.
struct State<'a, P, U> {
    conv: Conversation,
    ctx: MediatorContext<'a>,
    token_json: String,
    page_wr: WriteHalf<P>,
    up_wr: WriteHalf<U>,
    pacer: Pacer,
    jwt: JwtCache,
    /// A read waiting for `getJwt`'s answer, and until when.
    awaiting_jwt: Option<(Pending, Instant)>,
    http: Option<HistoryFuture>,
    last_history_request: Option<Instant>,
    replay: Option<(ReplayBuffer, Instant)>,
    replayed_ids: HashSet<String>,
    start_new_pending: bool,
    jwt_requests: u64,
    auth: signin::AuthProgress,
}

impl Conversation {
    /// Runs the conversation until either side ends it. `page` is the relay's end of the
    /// duplex; `upstream` the Genesys socket after `configureSession`.
    pub async fn run<P, U>(self, page: P, upstream: Leg<U>, ctx: MediatorContext<'_>)
    where
        P: AsyncRead + AsyncWrite + Unpin,
        U: AsyncRead + AsyncWrite + Unpin,
    {
        let relay = ctx.relay;
        let (mut page_rd, page_wr) = tokio::io::split(page);
        let (mut up_rd, up_wr) = tokio::io::split(upstream.io);
        let mut page_reader = MessageReader::new(Side::Browser, relay.browser_limits, &[]);
        let mut up_reader =
            MessageReader::new(Side::Upstream, relay.upstream_limits, &upstream.prefix);
        let token_json = serde_json::to_string(self.token.expose()).expect("a string serialises");
        let capacity = self.queue_capacity;
        let refresh_at = self
            .sign_in
            .as_ref()
            .and_then(|s| s.tokens.as_ref())
            .map(|t| signin::refresh_time(t.exp, crate::auth::resume::unix_now()));
        let mut s = State {
            conv: self,
            ctx,
            token_json,
            page_wr,
            up_wr,
            pacer: Pacer::new(MESSAGES_PER_WINDOW, capacity),
            jwt: JwtCache::default(),
            awaiting_jwt: None,
            http: None,
            last_history_request: None,
            replay: None,
            replayed_ids: HashSet::new(),
            start_new_pending: false,
            jwt_requests: 0,
            auth: signin::AuthProgress {
                refresh_at,
                ..signin::AuthProgress::default()
            },
        };
        let end = s
            .converse(&mut page_rd, &mut page_reader, &mut up_rd, &mut up_reader)
            .await;
        debug!(route = %s.ctx.route, end = ?end, "genesys conversation ended");
    }
}

impl<P, U> State<'_, P, U>
where
    P: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    async fn converse(
        &mut self,
        page_rd: &mut ReadHalf<P>,
        page_reader: &mut MessageReader,
        up_rd: &mut ReadHalf<U>,
        up_reader: &mut MessageReader,
    ) -> End {
        let greeting = std::mem::take(&mut self.conv.greeting);
        if self.send_page(1, greeting.as_bytes()).await.is_err() {
            self.finish(End::PageLost, page_rd, page_reader, up_rd, up_reader)
                .await;
            return End::PageLost;
        }
        if self.conv.join {
            // As the official client does for a new session when the deployment auto-starts:
            // once, paced like any onMessage.
            let join = serde_json::json!({
                "action": "onMessage",
                "token": self.conv.token.expose(),
                "message": {"type": "Event", "events": [{"eventType": "Presence", "presence": {"type": "Join"}}]},
            });
            if let pacing::Offer::SendNow(bytes) =
                self.pacer
                    .offer(join.to_string().into_bytes(), false, Instant::now())
                && self.send_upstream(1, &bytes).await.is_err()
            {
                self.finish(End::UpstreamLost, page_rd, page_reader, up_rd, up_reader)
                    .await;
                return End::UpstreamLost;
            }
        }
        if let Some(after) = self.conv.after.take() {
            let deadline = Instant::now() + self.conv.reply_timeout * 2;
            self.replay = Some((ReplayBuffer::default(), deadline));
            if self.start_history(Pending::Replay { after }).await.is_err() {
                self.finish(End::UpstreamLost, page_rd, page_reader, up_rd, up_reader)
                    .await;
                return End::UpstreamLost;
            }
        }
        loop {
            let release = self.pacer.next_release();
            let jwt_deadline = self.awaiting_jwt.as_ref().map(|(_, at)| *at);
            let replay_deadline = self.replay.as_ref().map(|(_, at)| *at);
            let refresh_due = self.refresh_due();
            let http = &mut self.http;
            let auth_call = &mut self.auth.call;
            let end = tokio::select! {
                event = page_reader.read_event(page_rd) => self.on_page(event).await,
                event = up_reader.read_event(up_rd) => self.on_upstream(event).await,
                () = sleep_until(release) => self.release_paced().await,
                done = async { http.as_mut().expect("guarded").await }, if http.is_some() => {
                    self.http = None;
                    self.on_history(done).await.err().map(|_| End::PageLost)
                }
                () = sleep_until(jwt_deadline) => {
                    let (pending, _) = self.awaiting_jwt.take().expect("guarded");
                    self.ctx.metrics.genesys.jwt(self.ctx.route, "timeout");
                    let failed = (pending, Err(history::HistoryError::NoJwt));
                    self.on_history(failed).await.err().map(|_| End::PageLost)
                }
                done = async { auth_call.as_mut().expect("guarded").await }, if auth_call.is_some() => {
                    self.auth.call = None;
                    self.on_auth_done(done).await
                }
                () = sleep_until(refresh_due) => {
                    self.start_refresh();
                    None
                }
                () = sleep_until(replay_deadline) => {
                    debug!(route = %self.ctx.route, "replay took too long; delivering live messages");
                    self.http = None;
                    self.awaiting_jwt = None;
                    self.finish_replay(Vec::new(), false).await.err().map(|_| End::PageLost)
                }
            };
            if let Some(end) = end {
                self.finish(end, page_rd, page_reader, up_rd, up_reader)
                    .await;
                return end;
            }
        }
    }

    /// Sends the paced requests whose turn has come.
    async fn release_paced(&mut self) -> Option<End> {
        for request in self.pacer.release(Instant::now()) {
            if self.send_upstream(1, &request).await.is_err() {
                return Some(End::UpstreamLost);
            }
        }
        None
    }

    /// Completes the close `end` left open, each wait bounded by the close timeout.
    async fn finish(
        &mut self,
        end: End,
        page_rd: &mut ReadHalf<P>,
        page_reader: &mut MessageReader,
        up_rd: &mut ReadHalf<U>,
        up_reader: &mut MessageReader,
    ) {
        let limit = self.ctx.relay.close_timeout;
        match end {
            End::PageClosed(code) => {
                let reply = read_close(up_reader, up_rd, limit).await;
                self.close(Side::Browser, reply.unwrap_or(code), "").await;
            }
            End::UpstreamClosed(code) => {
                let reply = read_close(page_reader, page_rd, limit).await;
                self.close(Side::Upstream, reply.unwrap_or(code), "").await;
            }
            End::PageLost => {
                let code = close_code::BROWSER_GONE;
                self.close(Side::Upstream, Some(code.code), code.reason)
                    .await;
            }
            End::UpstreamLost => {
                self.close_page(close_code::UPSTREAM_LOST).await;
                read_close(page_reader, page_rd, limit).await;
            }
            End::Closed => {
                read_close(page_reader, page_rd, limit).await;
            }
        }
    }

    /// Writes a data message to the page (through the relay), unless a replay holds it back.
    async fn deliver(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        if let Some((buffer, _)) = &mut self.replay {
            if buffer.frames.len() < REPLAY_BUFFER_FRAMES
                && buffer.bytes + payload.len() <= REPLAY_BUFFER_BYTES
            {
                buffer.bytes += payload.len();
                buffer.frames.push((opcode, payload.to_vec()));
                return Ok(());
            }
            debug!(route = %self.ctx.route, "replay buffer full; delivering live messages");
            self.http = None;
            self.awaiting_jwt = None;
            self.finish_replay(Vec::new(), false).await?;
        }
        self.send_page(opcode, payload).await
    }

    /// Writes a data message to the page now.
    async fn send_page(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 10);
        frame::encode(&mut out, true, opcode, payload, None);
        self.write_page(&out).await
    }

    async fn write_page(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        with_stall(self.ctx.relay.write_stall, self.page_wr.write_all(bytes)).await
    }

    /// Writes a data message to Genesys (masked, as a client must).
    async fn send_upstream(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 14);
        frame::encode(&mut out, true, opcode, payload, Some(rand::random()));
        self.write_upstream(&out).await
    }

    async fn write_upstream(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        with_stall(self.ctx.relay.write_stall, self.up_wr.write_all(bytes)).await
    }

    /// Sends a close frame to one side (errors ignored: the side may be gone).
    async fn close(&mut self, to: Side, code: Option<u16>, reason: &str) {
        let frame = match code {
            Some(code) => OwnFrame::close(code, reason, to),
            None => OwnFrame::control(8, &[], to),
        };
        let _ = match to {
            Side::Browser => self.write_page(frame.as_bytes()).await,
            Side::Upstream => self.write_upstream(frame.as_bytes()).await,
        };
    }

    /// Closes the page side with a documented code.
    async fn close_page(&mut self, code: CloseCode) {
        self.close(Side::Browser, Some(code.code), code.reason)
            .await;
    }

    /// Ends the replay: `messages` from history first (oldest first), then the live frames it
    /// held back (minus copies of replayed messages), then `ReplayDone`.
    async fn finish_replay(&mut self, messages: Vec<Value>, complete: bool) -> std::io::Result<()> {
        let Some((buffer, _)) = self.replay.take() else {
            return Ok(());
        };
        let count = messages.len();
        for m in &messages {
            if let Some(id) = m.get("id").and_then(Value::as_str) {
                self.replayed_ids.insert(id.to_owned());
            }
            self.send_page(1, frames::replayed(m).as_bytes()).await?;
        }
        self.ctx.metrics.genesys.replayed(self.ctx.route, count);
        for (opcode, payload) in buffer.frames {
            if opcode == 1 && self.is_replayed_copy(&payload) {
                continue;
            }
            self.send_page(opcode, &payload).await?;
        }
        self.send_page(1, frames::replay_done(count, complete).as_bytes())
            .await
    }

    /// Whether an upstream message is a live copy of one the replay delivered.
    fn is_replayed_copy(&self, payload: &[u8]) -> bool {
        if self.replayed_ids.is_empty() {
            return false;
        }
        matches!(events::classify(payload), events::Upstream::Message { id: Some(id) } if self.replayed_ids.contains(&id))
    }
}

/// Reads until a close frame (its code) or the end of the stream (`None`), within `limit`;
/// `Some(None)` is a close frame without a code.
async fn read_close<R>(
    reader: &mut MessageReader,
    rd: &mut R,
    limit: Duration,
) -> Option<Option<u16>>
where
    R: AsyncRead + Unpin,
{
    tokio::time::timeout(limit, async {
        loop {
            match reader.read_event(rd).await {
                Ok(Event::Close(code)) => return Some(code),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    })
    .await
    .unwrap_or(None)
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `write` bounded by the write-stall timeout.
async fn with_stall<F>(stall: Duration, write: F) -> std::io::Result<()>
where
    F: Future<Output = std::io::Result<()>>,
{
    match tokio::time::timeout(stall, write).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}
