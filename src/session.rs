//! One browser connection after its upgrade: open the upstream leg, relay, and record how it
//! ended. Upstream failures reach the browser as a close frame with a documented code.
//!
//! While the upstream is being set up the browser leg is watched: what the page sends is kept
//! (at most [`SETUP_READ_AHEAD`] bytes, then reading pauses until the relay starts), and a
//! browser that goes away (EOF, reset) cancels the set-up at once: its future is dropped, which
//! drops the upstream connection, token fetch or hello in flight.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::auth::resume::wants_first_frame;
use crate::auth::resume_frame::{
    FIRST_FRAME_WAIT, FirstFrame, FirstFrameError, read_first_frame, wants_sign_in_frame,
};
use crate::close_code::{self, CloseCode};
use crate::edge::SetupGuard;
use crate::metrics::Metrics;
use crate::preset::{Mediator, MediatorContext};
use crate::relay::{self, Leg, LiveStats, Pump, PumpConfig, PumpStats, RelayExtras, Side};
use crate::route::Route;
use crate::setup::{self, BrowserRequest};
use crate::upstream::UpstreamStream;
use crate::ws::frame::OwnFrame;

/// Most bytes read from the browser while its upstream is being set up. The page normally
/// waits for the greeting before it speaks; reading stops at this bound (the socket's own
/// buffers then apply back-pressure) and resumes when the relay starts.
pub const SETUP_READ_AHEAD: usize = 4 << 10;

/// Bytes in flight each way between the relay and a preset's mediator.
const MEDIATOR_BUFFER: usize = 64 << 10;

/// Runs one upgraded browser connection to its end. `setup_slot` is held while the upstream
/// session is being set up (the route's cap on concurrent set-ups) and released before relaying.
/// Not an `async fn`: its arguments would be kept twice in the future (rust-lang/rust#62958).
#[allow(clippy::manual_async_fn)] // on purpose, see above
pub fn run<'a, S>(
    browser: Leg<S>,
    request: BrowserRequest,
    route: &'a Route,
    setup_slot: SetupGuard,
    shutdown: &'a CancellationToken,
    metrics: &'a Metrics,
) -> impl Future<Output = ()> + 'a
where
    S: relay::Transport,
{
    async move {
        let open = metrics.open_connection(&route.name);
        let started = Instant::now();
        let conn = request.conn;
        // Boxed: the set-up's state (first frame, upstream connect, errors, greeting) is large
        // and short-lived; the task keeps room only for the relay that follows it.
        let set_up = Box::pin(set_up(
            browser, request, route, setup_slot, shutdown, metrics, started,
        ));
        let Some((browser, established)) = set_up.await else {
            return;
        };
        relay_phase(
            browser,
            established,
            route,
            shutdown,
            metrics,
            started,
            conn,
        )
        .await;
        drop(open);
    }
}

/// Everything before the relay: the first frame when the page announced one, the upstream
/// session (cancelled if the browser leaves), the outcome's metrics and close code, the
/// greeting. `None` when the connection ended here.
async fn set_up<S>(
    mut browser: Leg<S>,
    mut request: BrowserRequest,
    route: &Route,
    setup_slot: SetupGuard,
    shutdown: &CancellationToken,
    metrics: &Metrics,
    started: Instant,
) -> Option<(Leg<S>, setup::Established)>
where
    S: relay::Transport,
{
    let resume_frame = route
        .resume
        .as_ref()
        .is_some_and(|(_, resume)| wants_first_frame(request.query.as_deref(), &resume.param));
    if resume_frame || wants_sign_in_frame(request.query.as_deref()) {
        // The page keeps its ticket (or sign-in code) out of the URL: it is the first frame,
        // read (bounded in size and time) before any upstream work and never relayed.
        // Boxed: the read's buffers are needed once, not kept in every connection's task.
        match Box::pin(read_first_frame(
            &mut browser.io,
            &mut browser.prefix,
            FIRST_FRAME_WAIT,
        ))
        .await
        {
            Ok(FirstFrame::Resume(ticket)) => request.resume_ticket = Some(ticket),
            Ok(FirstFrame::SignIn { code, ticket }) => {
                request.sign_in = Some(code);
                request.resume_ticket = ticket;
            }
            Err(FirstFrameError::Closed) => {
                metrics.observe_session_setup(&route.name, "browser_gone", started.elapsed());
                metrics.connection_finished(&route.name, "browser_gone");
                return None;
            }
            Err(e) => {
                debug!(route = %route.name, error = %e, "no resume frame where the page announced one");
                let code = close_code::RESUME_FRAME_EXPECTED;
                metrics.observe_session_setup(&route.name, "rejected", started.elapsed());
                metrics.connection_finished(&route.name, "rejected");
                metrics.record_close(&route.name, "guestgate", Some(code.code));
                Box::pin(reject(browser, code, route)).await;
                return None;
            }
        }
    }
    let established = tokio::select! {
        biased;
        _ = shutdown.cancelled() => {
            Box::pin(reject(browser, close_code::GOING_AWAY, route)).await;
            metrics.connection_finished(&route.name, "shutdown");
            return None;
        }
        // Boxed: the upstream set-up's state is only needed until it is done.
        result = unless_browser_leaves(&mut browser, Box::pin(setup::establish(route, &request, metrics))) => result,
    };
    drop(setup_slot);
    let Some(established) = established else {
        // The browser went away first: the set-up (and its upstream connection) is dropped.
        debug!(route = %route.name, "browser went away during set-up; set-up cancelled");
        metrics.observe_session_setup(&route.name, "browser_gone", started.elapsed());
        metrics.connection_finished(&route.name, "browser_gone");
        metrics.record_close(&route.name, "browser", None);
        return None;
    };
    let established = match established {
        Ok(established) => established,
        Err(e) => {
            let code = e.close_code();
            let outcome = if e.is_browser_request() {
                // The browser's own request is at fault; nothing failed upstream.
                debug!(route = %route.name, error = %e, close_code = code.code, "browser request refused during set-up");
                "rejected"
            } else {
                warn!(conn = request.conn, route = %route.name, error = %e, close_code = code.code, "upstream session set-up failed");
                metrics.upstream_failed(&route.name, e.kind());
                "upstream_failed"
            };
            metrics.observe_session_setup(&route.name, outcome, started.elapsed());
            metrics.connection_finished(&route.name, outcome);
            metrics.record_close(&route.name, "guestgate", Some(code.code));
            Box::pin(reject(browser, code, route)).await;
            return None;
        }
    };
    metrics.observe_session_setup(&route.name, "relayed", started.elapsed());
    if let Some(greeting) = &established.greeting
        && send_greeting(&mut browser.io, greeting).await.is_err()
    {
        metrics.connection_finished(&route.name, "relayed");
        return None;
    }
    Some((browser, established))
}

/// Relays an established session to its end, publishing its traffic while it lasts, and
/// records how it ended.
async fn relay_phase<S>(
    browser: Leg<S>,
    established: setup::Established,
    route: &Route,
    shutdown: &CancellationToken,
    metrics: &Metrics,
    started: Instant,
    conn: u64,
) where
    S: relay::Transport,
{
    let live = (
        Arc::new(LiveStats::default()),
        Arc::new(LiveStats::default()),
    );
    let extras = RelayExtras {
        transform: established.transform,
        live: Some(live.clone()),
    };
    let mut flushed = Flushed::default();
    // No future is bound to a local here: rustc keeps room for a moved-from local across
    // the await that follows, which would hold the relay's state twice in every task.
    let report = match established.mediator {
        None => {
            publishing(
                relay::relay_transports(
                    browser,
                    established.upstream,
                    &route.relay,
                    extras,
                    shutdown,
                ),
                route,
                metrics,
                &live,
                &mut flushed,
            )
            .await
        }
        Some(mediator) => {
            publishing(
                mediated(
                    browser,
                    mediator,
                    established.upstream,
                    route,
                    extras,
                    shutdown,
                    metrics,
                ),
                route,
                metrics,
                &live,
                &mut flushed,
            )
            .await
        }
    };
    flushed.flush(
        metrics,
        &route.name,
        report.from_browser,
        report.from_upstream,
    );
    record(metrics, &route.name, &report);
    info!(
        conn,
        route = %route.name,
        duration_ms = started.elapsed().as_millis() as u64,
        closer = report.closer().as_str(),
        why = report.ending.why(),
        code_to_browser = report.code_to_browser,
        code_to_upstream = report.code_to_upstream,
        bytes_from_browser = report.from_browser.bytes,
        bytes_from_upstream = report.from_upstream.bytes,
        messages_from_browser = report.from_browser.messages,
        messages_from_upstream = report.from_upstream.messages,
        spliced_from_browser = report.from_browser.spliced,
        spliced_from_upstream = report.from_upstream.spliced,
        "connection ended"
    );
}

/// The relay of a mediated route, boxed: only mediated routes pay for the mediator's state; a
/// plain relay's task stays as small as before. The relay's upstream leg is an in-process
/// duplex; the mediator owns its other end and the real upstream leg. When the relay ends,
/// its end is dropped, which ends the mediator too.
fn mediated<'a, S>(
    browser: Leg<S>,
    mediator: Mediator,
    upstream: Leg<UpstreamStream>,
    route: &'a Route,
    extras: RelayExtras,
    shutdown: &'a CancellationToken,
    metrics: &'a Metrics,
) -> Pin<Box<dyn Future<Output = relay::RelayReport> + Send + 'a>>
where
    S: relay::Transport,
{
    let (relay_end, mediator_end) = tokio::io::duplex(MEDIATOR_BUFFER);
    let relay =
        relay::relay_transports(browser, Leg::new(relay_end), &route.relay, extras, shutdown);
    let ctx = MediatorContext {
        route: &route.name,
        relay: &route.relay,
        resume: route.resume.as_ref(),
        metrics,
    };
    let mediate = mediator.run(mediator_end, upstream, ctx);
    Box::pin(async { tokio::join!(relay, mediate).0 })
}

/// Waits for `relay` while publishing its live traffic to the metrics every
/// `relay.metrics_flush_interval`, so long chats show up while they last.
fn publishing<'a, F>(
    relay: F,
    route: &'a Route,
    metrics: &'a Metrics,
    live: &'a (Arc<LiveStats>, Arc<LiveStats>),
    flushed: &'a mut Flushed,
) -> Publishing<'a, F>
where
    F: Future<Output = relay::RelayReport>,
{
    let tick = tokio::time::interval_at(
        tokio::time::Instant::now() + route.relay.metrics_flush,
        route.relay.metrics_flush,
    );
    Publishing {
        relay,
        tick,
        route,
        metrics,
        live,
        flushed,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`publishing`]. A plain struct rather than an `async` block: the relay
    /// is most of a connection's state, and an `async` block that pins a captured future
    /// (`tokio::pin!`) moves it into a second slot, which rustc keeps beside the first
    /// (rust-lang/rust#62958): every connection would hold its relay state twice.
    struct Publishing<'a, F> {
        #[pin]
        relay: F,
        tick: tokio::time::Interval,
        route: &'a Route,
        metrics: &'a Metrics,
        live: &'a (Arc<LiveStats>, Arc<LiveStats>),
        flushed: &'a mut Flushed,
    }
}

impl<F: Future<Output = relay::RelayReport>> Future for Publishing<'_, F> {
    type Output = relay::RelayReport;

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        if let std::task::Poll::Ready(report) = this.relay.poll(cx) {
            return std::task::Poll::Ready(report);
        }
        while this.tick.poll_tick(cx).is_ready() {
            let (up, down) = (this.live.0.snapshot(), this.live.1.snapshot());
            this.flushed.flush(this.metrics, &this.route.name, up, down);
        }
        std::task::Poll::Pending
    }
}

/// Runs `setup` while watching the browser leg: bytes the browser sends are appended to its
/// `prefix` (at most [`SETUP_READ_AHEAD`], then reading pauses); if the browser's transport
/// ends (EOF or error) first, `setup` is dropped unfinished and `None` is returned.
pub async fn unless_browser_leaves<S, F>(browser: &mut Leg<S>, setup: F) -> Option<F::Output>
where
    S: AsyncRead + Unpin,
    F: Future,
{
    let mut ahead = BytesMut::new();
    ahead.extend_from_slice(&browser.prefix);
    let result = {
        let watch = watch_browser(&mut browser.io, &mut ahead);
        tokio::pin!(setup);
        tokio::pin!(watch);
        // The watch first: a browser already gone costs no upstream work at all.
        tokio::select! {
            biased;
            () = &mut watch => None,
            result = &mut setup => Some(result),
        }
    };
    browser.prefix = ahead.freeze();
    result
}

/// Reads the browser into `ahead` until it holds [`SETUP_READ_AHEAD`] bytes (then waits
/// forever) or the transport ends (then returns). Cancel-safe: no byte read is lost.
async fn watch_browser<S>(io: &mut S, ahead: &mut BytesMut)
where
    S: AsyncRead + Unpin,
{
    use bytes::BufMut;
    while ahead.len() < SETUP_READ_AHEAD {
        let room = SETUP_READ_AHEAD - ahead.len();
        match io.read_buf(&mut (&mut *ahead).limit(room)).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
    std::future::pending().await
}

/// Writes guestgate's greeting (a text message) to the browser and flushes it: a TLS leg
/// holds written records until flushed, and the relay may not write (or flush) that leg again
/// until the upstream speaks.
async fn send_greeting<S>(browser: &mut S, greeting: &str) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let mut frame = Vec::new();
    crate::ws::frame::encode(&mut frame, true, 1, greeting.as_bytes(), None);
    browser.write_all(&frame).await?;
    browser.flush().await
}

/// Traffic already added to the metrics for one connection. The pumps count locally and
/// publish per-connection totals; only the deltas reach the shared counters, every
/// `relay.metrics_flush_interval` and at the end, so the hot path never touches a shared cache line.
#[derive(Default)]
struct Flushed {
    from_browser: PumpStats,
    from_upstream: PumpStats,
}

impl Flushed {
    fn flush(
        &mut self,
        metrics: &Metrics,
        route: &str,
        from_browser: PumpStats,
        from_upstream: PumpStats,
    ) {
        for (direction, now, before) in [
            ("browser_to_upstream", from_browser, &mut self.from_browser),
            (
                "upstream_to_browser",
                from_upstream,
                &mut self.from_upstream,
            ),
        ] {
            let delta = now.since(before);
            if delta != PumpStats::default() {
                metrics.record_traffic(route, direction, delta.frames, delta.messages, delta.bytes);
            }
            if delta.spliced > 0 {
                metrics.record_spliced(route, direction, delta.spliced);
            }
            *before = now;
        }
    }
}

/// Adds one finished relay's close and outcome to the metrics.
fn record(metrics: &Metrics, route: &str, report: &relay::RelayReport) {
    metrics.record_close(route, report.closer().as_str(), report.code_to_browser);
    metrics.connection_finished(route, report.ending.outcome());
}

/// Closes a browser connection before any relaying: sends the close frame, reads the browser's
/// reply (so the connection is not reset with unread bytes), then ends the TCP stream.
pub async fn reject<S>(browser: Leg<S>, code: CloseCode, route: &Route)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (rd, mut wr) = tokio::io::split(browser.io);
    let frame = OwnFrame::close(code.code, code.reason, Side::Browser);
    let limit = route.relay.close_timeout;
    if tokio::time::timeout(limit, wr.write_all(frame.as_bytes()))
        .await
        .is_err()
    {
        return;
    }
    let rd = std::io::Cursor::new(browser.prefix).chain(rd);
    let mut drain = Pump::new(
        rd,
        tokio::io::sink(),
        PumpConfig {
            source: Side::Browser,
            limits: route.relay.browser_limits,
            buffer_size: route.relay.buffer_size,
            idle_timeout: limit,
            ping_interval: None,
            write_stall: limit,
            rate: None,
            message_timeout: None,
        },
    );
    drain.drain(limit).await;
    let _ = tokio::time::timeout(limit, wr.shutdown()).await;
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
