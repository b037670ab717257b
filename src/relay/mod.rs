//! The forwarding core: two [`Pump`]s moving frames verbatim between a browser and an
//! upstream; `close` decides what each leg is told when the relay ends.
//!
//! Data path: `browser socket → Pump(browser→upstream) → upstream socket` and the mirror
//! image. Neither pump unmasks, re-masks or copies payloads; see `docs/architecture.md` for why the
//! browser's masking key can stay on the upstream leg. On two plain TCP legs the unread part
//! of a large payload does not even pass through the pump's buffer (`splice`).
//!
//! # Shutdown
//!
//! When `shutdown` fires, both directions stop reading new frames. A direction caught inside
//! a frame first forwards the rest of that frame (and nothing after it), both directions
//! sharing one `close_timeout` deadline; then each leg gets close 1001 `guestgate is shutting
//! down`, and each peer's close reply is awaited for up to another `close_timeout`. A leg
//! whose frame does not complete by the deadline gets no close frame (one cannot be written
//! inside a frame): its connection is ended (TCP FIN / TLS close_notify) with the frame
//! truncated, and the report still says [`Ending::Shutdown`].

pub mod cancel;
mod close;
mod lease;
pub mod pump;
mod rate;
pub mod rewrite;
pub mod splice;
mod stats;
pub mod tcp;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::Either;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub use crate::ws::frame::{Limits, Side, Violation};
pub use close::Ending;
pub use pump::{Limit, LiveStats, Pump, PumpConfig, PumpEnd, PumpStats};
pub use rate::RateLimit;
pub use rewrite::MessageTransform;
pub use tcp::Transport;

/// Relay settings shared by every connection of a route.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// Limits on frames the browser sends.
    pub browser_limits: Limits,
    /// Limits on frames the upstream sends.
    pub upstream_limits: Limits,
    /// Size of each leased read buffer.
    pub buffer_size: usize,
    /// Splice large payloads between plain TCP legs instead of copying them.
    pub splice: bool,
    /// A leg silent for this long is closed.
    pub idle_timeout: Duration,
    /// Ping interval toward the browser (None: no pings).
    pub browser_ping: Option<Duration>,
    /// Ping interval toward the upstream (None: no pings).
    pub upstream_ping: Option<Duration>,
    /// A write making no progress this long ends the relay.
    pub write_stall: Duration,
    /// How long a close handshake may take before the connection is dropped.
    pub close_timeout: Duration,
    /// How often a live connection's traffic is added to the shared metrics.
    pub metrics_flush: Duration,
    /// Limit on browser messages, pings included (None: unlimited).
    pub browser_rate: Option<RateLimit>,
    /// A fragmented browser message must be complete this long after its first fragment.
    pub message_timeout: Option<Duration>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        let limits = Limits {
            max_frame: 16 << 20,
            max_message: 16 << 20,
        };
        Self {
            browser_limits: limits,
            upstream_limits: limits,
            // Large reads cut the syscalls for big messages; idle connections hold none. Kept
            // below glibc's 128 KiB mmap threshold, which otherwise makes freed buffers stick.
            buffer_size: 64 << 10,
            splice: true,
            idle_timeout: Duration::from_secs(120),
            browser_ping: Some(Duration::from_secs(30)),
            upstream_ping: Some(Duration::from_secs(30)),
            write_stall: Duration::from_secs(30),
            close_timeout: Duration::from_secs(5),
            metrics_flush: Duration::from_secs(10),
            browser_rate: None,
            message_timeout: Some(Duration::from_secs(10)),
        }
    }
}

/// Who ended the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    /// The browser sent a close frame or went away.
    Browser,
    /// The upstream sent a close frame or went away.
    Upstream,
    /// guestgate ended it (limits, protocol, timeouts, shutdown).
    Guestgate,
}

impl Closer {
    /// The metric and log label.
    pub fn as_str(self) -> &'static str {
        match self {
            Closer::Browser => "browser",
            Closer::Upstream => "upstream",
            Closer::Guestgate => "guestgate",
        }
    }
}

/// What happened to one relayed connection, for the log line and metrics.
#[derive(Debug, Clone, Copy)]
pub struct RelayReport {
    /// How it ended; who ended it, the log text and the metric outcome derive from this.
    pub ending: Ending,
    /// Close code the browser received (relayed or guestgate's own), if one was sent.
    pub code_to_browser: Option<u16>,
    /// Close code the upstream received, if one was sent.
    pub code_to_upstream: Option<u16>,
    /// Browser → upstream counters.
    pub from_browser: PumpStats,
    /// Upstream → browser counters.
    pub from_upstream: PumpStats,
}

impl RelayReport {
    /// Who ended the relay (see [`Ending::closer`]).
    pub fn closer(&self) -> Closer {
        self.ending.closer()
    }
}

/// One side of a relay: its transport and any frame bytes already read from it during the
/// handshake (they belong to the frame stream).
pub struct Leg<S> {
    /// The transport.
    pub io: S,
    /// Bytes read past the handshake.
    pub prefix: Bytes,
}

impl<S> Leg<S> {
    /// A leg with nothing read ahead.
    pub fn new(io: S) -> Self {
        Self {
            io,
            prefix: Bytes::new(),
        }
    }
}

/// Relays frames between `browser` and `upstream` until either side closes or fails, or
/// `shutdown` fires (both legs then get 1001).
pub fn relay<'a, B, U>(
    browser: Leg<B>,
    upstream: Leg<U>,
    cfg: &'a RelayConfig,
    shutdown: &'a CancellationToken,
) -> impl Future<Output = RelayReport> + 'a
where
    B: AsyncRead + AsyncWrite + Unpin + 'a,
    U: AsyncRead + AsyncWrite + Unpin + 'a,
{
    relay_with(browser, upstream, cfg, RelayExtras::default(), shutdown)
}

/// Per-connection additions to a relay.
#[derive(Default)]
pub struct RelayExtras {
    /// Rewrites browser messages (the slow path) when given.
    pub transform: Option<Box<dyn MessageTransform>>,
    /// Where each direction publishes its running totals: (from browser, from upstream).
    pub live: Option<(Arc<LiveStats>, Arc<LiveStats>)>,
}

/// [`relay`] with per-connection additions. Always copies payloads through the read buffer;
/// [`relay_transports`] splices them when both legs are plain TCP.
///
/// The relay functions build their pumps before returning the future (they are not `async
/// fn`s): the future then holds the pumps once, not also the moved-from originals, which
/// keeps every idle connection smaller.
pub fn relay_with<'a, B, U>(
    browser: Leg<B>,
    upstream: Leg<U>,
    cfg: &'a RelayConfig,
    extras: RelayExtras,
    shutdown: &'a CancellationToken,
) -> impl Future<Output = RelayReport> + 'a
where
    B: AsyncRead + AsyncWrite + Unpin + 'a,
    U: AsyncRead + AsyncWrite + Unpin + 'a,
{
    let (browser_rd, browser_wr) = tokio::io::split(browser.io);
    let (upstream_rd, upstream_wr) = tokio::io::split(upstream.io);
    let (up, down) = pumps(
        (browser_rd, browser.prefix, browser_wr),
        (upstream_rd, upstream.prefix, upstream_wr),
        cfg,
        extras,
    );
    run_pumps(up, down, cfg, shutdown)
}

/// [`relay_with`] for two plain TCP legs: payloads too large for one read move socket to
/// socket with splice(2) (when `cfg.splice` is on and the platform has it).
pub fn relay_tcp<'a>(
    browser: Leg<TcpStream>,
    upstream: Leg<TcpStream>,
    cfg: &'a RelayConfig,
    extras: RelayExtras,
    shutdown: &'a CancellationToken,
) -> impl Future<Output = RelayReport> + 'a {
    let (browser_rd, browser_wr) = tcp::split(browser.io);
    let (upstream_rd, upstream_wr) = tcp::split(upstream.io);
    let splicers = (cfg.splice && splice::SUPPORTED).then(|| {
        (
            splice::Splicer::new(
                browser_rd.socket().clone(),
                upstream_wr.socket().clone(),
                browser.prefix.len() as u64,
            ),
            splice::Splicer::new(
                upstream_rd.socket().clone(),
                browser_wr.socket().clone(),
                upstream.prefix.len() as u64,
            ),
        )
    });
    let (mut up, mut down) = pumps(
        (browser_rd, browser.prefix, browser_wr),
        (upstream_rd, upstream.prefix, upstream_wr),
        cfg,
        extras,
    );
    if let Some((to_upstream, to_browser)) = splicers {
        up = up.with_splicer(to_upstream);
        down = down.with_splicer(to_browser);
    }
    run_pumps(up, down, cfg, shutdown)
}

/// Relays between any two transports, taking [`relay_tcp`]'s path when both are plain TCP.
pub fn relay_transports<'a, B, U>(
    browser: Leg<B>,
    upstream: Leg<U>,
    cfg: &'a RelayConfig,
    extras: RelayExtras,
    shutdown: &'a CancellationToken,
) -> impl Future<Output = RelayReport> + 'a
where
    B: Transport,
    U: Transport,
{
    if browser.io.is_plain_tcp() && upstream.io.is_plain_tcp() {
        match (browser.io.into_plain_tcp(), upstream.io.into_plain_tcp()) {
            (Ok(b), Ok(u)) => {
                let browser = Leg {
                    io: b,
                    prefix: browser.prefix,
                };
                let upstream = Leg {
                    io: u,
                    prefix: upstream.prefix,
                };
                return Either::Left(relay_tcp(browser, upstream, cfg, extras, shutdown));
            }
            _ => unreachable!("is_plain_tcp promised a TCP socket"),
        }
    }
    Either::Right(relay_with(browser, upstream, cfg, extras, shutdown))
}

/// One leg's read half, the bytes read past its handshake, and its write half.
type Halves<R, W> = (R, Bytes, W);

/// A read half with the leg's read-ahead bytes in front.
type Prefixed<R> = tokio::io::Chain<std::io::Cursor<Bytes>, R>;

/// The two directions of a relay: browser → upstream and upstream → browser.
#[allow(clippy::type_complexity)]
fn pumps<BR, BW, UR, UW>(
    browser: Halves<BR, BW>,
    upstream: Halves<UR, UW>,
    cfg: &RelayConfig,
    extras: RelayExtras,
) -> (Pump<Prefixed<BR>, UW>, Pump<Prefixed<UR>, BW>)
where
    BR: AsyncRead + Unpin,
    BW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    let (browser_rd, browser_prefix, browser_wr) = browser;
    let (upstream_rd, upstream_prefix, upstream_wr) = upstream;
    let browser_rd = std::io::Cursor::new(browser_prefix).chain(browser_rd);
    let upstream_rd = std::io::Cursor::new(upstream_prefix).chain(upstream_rd);
    let pump_cfg = |source, limits, ping| PumpConfig {
        source,
        limits,
        buffer_size: cfg.buffer_size,
        idle_timeout: cfg.idle_timeout,
        ping_interval: ping,
        write_stall: cfg.write_stall,
        rate: None,
        message_timeout: None,
    };
    let mut up = Pump::new(
        browser_rd,
        upstream_wr,
        PumpConfig {
            rate: cfg.browser_rate,
            message_timeout: cfg.message_timeout,
            ..pump_cfg(Side::Browser, cfg.browser_limits, cfg.upstream_ping)
        },
    );
    if let Some(transform) = extras.transform {
        up = up.with_transform(transform);
    }
    let mut down = Pump::new(
        upstream_rd,
        browser_wr,
        pump_cfg(Side::Upstream, cfg.upstream_limits, cfg.browser_ping),
    );
    if let Some((from_browser, from_upstream)) = extras.live {
        up = up.with_live_stats(from_browser);
        down = down.with_live_stats(from_upstream);
    }
    (up, down)
}

/// Runs both directions until one ends, then completes the close and reports.
///
/// Not an `async fn`: an `async fn` keeps its by-value arguments twice in its state (rustc
/// #62958), which for two pumps is about 1 KiB per connection. The `async move` block keeps
/// them once.
#[allow(clippy::manual_async_fn)]
fn run_pumps<'a, R1, W1, R2, W2>(
    mut up: Pump<R1, W1>,
    mut down: Pump<R2, W2>,
    cfg: &'a RelayConfig,
    shutdown: &'a CancellationToken,
) -> impl Future<Output = RelayReport> + 'a
where
    R1: AsyncRead + Unpin + 'a,
    W1: AsyncWrite + Unpin + 'a,
    R2: AsyncRead + Unpin + 'a,
    W2: AsyncWrite + Unpin + 'a,
{
    async move {
        // One cheap shutdown watch for both directions (see `cancel`), not a token poll per
        // read in each pump.
        let (source, end) = tokio::select! {
            () = cancel::cancelled(shutdown) => (Side::Browser, PumpEnd::Cancelled),
            end = up.run() => (Side::Browser, end),
            end = down.run() => (Side::Upstream, end),
        };
        let (mut report, plan) = match source {
            Side::Browser => {
                Box::pin(close::finish(end, Side::Browser, &mut up, &mut down, cfg)).await
            }
            Side::Upstream => {
                Box::pin(close::finish(end, Side::Upstream, &mut down, &mut up, cfg)).await
            }
        };
        report.from_browser = up.stats();
        report.from_upstream = down.stats();
        if plan.shutdown_browser {
            down.shutdown_destination().await;
        }
        if plan.shutdown_upstream {
            up.shutdown_destination().await;
        }
        report
    }
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;

#[cfg(all(test, target_os = "linux"))]
#[path = "splice_tests.rs"]
mod splice_tests;
