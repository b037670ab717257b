//! The browser listener: a bounded accept loop, one task per connection that reads its one
//! request head (`http1`) and upgrades it or answers it, and the two-phase shutdown (close
//! 1001 to every relay, wait for the grace period, then cut the rest).

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, debug_span, error, info, warn};

use crate::close_code;
use crate::config::ServerConfig;
use crate::edge::{AcceptGate, Admission, Now, Rejection, SetupGuard};
use crate::handshake;
use crate::http1;
use crate::log_throttle::LogThrottle;
use crate::metrics::Metrics;
use crate::relay::Leg;
use crate::route::Route;
use crate::session;
use crate::setup::BrowserRequest;

/// Static files served on the browser listener: path -> (content type, body).
pub type AssetFn = fn(&str) -> Option<(&'static str, &'static str)>;

/// An admin POST action: returns a short text for the response body.
pub type AdminAction = Arc<dyn Fn() -> String + Send + Sync>;

/// Optional additions, used by `guestgate demo`: a page on the browser listener and admin
/// actions (e.g. dropping the fake upstream's sockets to show a reconnect).
#[derive(Default, Clone)]
pub struct Extras {
    /// Files answered to plain GETs on the browser listener.
    pub assets: Option<AssetFn>,
    /// `POST <path>` on the admin listener runs the action.
    pub admin_actions: Vec<(&'static str, AdminAction)>,
}

/// Where [`Gateway::panic_hook`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicPoint {
    /// In the accept loop, after each accepted connection.
    AcceptLoop,
    /// In a connection's task, just before its session runs.
    Session,
}

/// A test hook called at each [`PanicPoint`]; tests make it panic there.
pub type PanicHook = Arc<dyn Fn(PanicPoint) + Send + Sync>;

/// At most one warning per this interval about connections closed by the per-address cap.
const PER_IP_REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Process-wide state shared by the listener, the sessions and the admin endpoints.
pub struct Gateway {
    /// Listener settings.
    pub settings: ServerConfig,
    /// Routes by path.
    pub routes: Vec<Arc<Route>>,
    /// Set when shutdown begins; `/readyz` turns 503.
    pub draining: AtomicBool,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Demo additions.
    pub extras: Extras,
    /// TLS on the browser listener, when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Browser connections currently held (handshaking or relaying).
    pub open_connections: AtomicUsize,
    /// Connection tasks that panicked so far.
    pub connection_panics: AtomicUsize,
    /// For tests only: called at each [`PanicPoint`], so a test can make guestgate panic
    /// there and check what the browser and the process see. Unset in production.
    #[doc(hidden)]
    pub panic_hook: std::sync::OnceLock<PanicHook>,
    /// The per-address cap checked as each connection is accepted.
    pub accept_gate: AcceptGate,
    /// The warning about connections the per-address cap closed: one line per interval.
    per_ip_refusals: LogThrottle,
    next_id: AtomicU64,
}

impl Gateway {
    /// A gateway serving `routes`.
    pub fn new(
        settings: ServerConfig,
        routes: Vec<Arc<Route>>,
        metrics: Arc<Metrics>,
        extras: Extras,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Arc<Self> {
        // Any route's trusted proxy carries many clients: exempt it from the accept-time cap.
        let proxies = routes
            .iter()
            .flat_map(|r| r.edge.trusted_proxies().iter().copied())
            .collect();
        let accept_gate = AcceptGate::new(settings.accept_cap_per_ip(), proxies);
        Arc::new(Self {
            accept_gate,
            settings,
            routes,
            metrics,
            extras,
            tls,
            draining: AtomicBool::new(false),
            open_connections: AtomicUsize::new(0),
            connection_panics: AtomicUsize::new(0),
            panic_hook: std::sync::OnceLock::new(),
            per_ip_refusals: LogThrottle::new(PER_IP_REFUSAL_LOG_INTERVAL),
            next_id: AtomicU64::new(1),
        })
    }

    fn hook(&self, at: PanicPoint) {
        if let Some(hook) = self.panic_hook.get() {
            hook(at);
        }
    }

    /// The route for a request path: the route with exactly that path, else the catch-all
    /// route `/` (for every path but guestgate's own `/_…` ones). Config order plays no part,
    /// and paths are unique, so no route can shadow another.
    pub fn route(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.path == path).or_else(|| {
            self.routes
                .iter()
                .find(|r| r.path == "/" && !path.starts_with("/_"))
        })
    }
}

/// How the shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Connections still open when the grace period ran out, which were cut.
    pub aborted: usize,
    /// Connection tasks that panicked while serving (each closed its browser with 1011 when
    /// it could).
    pub connection_panics: usize,
    /// The accept loop itself panicked: guestgate stopped serving and must exit non-zero.
    pub server_panicked: bool,
}

/// Serves browsers on `listener` until `shutdown` resolves, then drains.
pub async fn run(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> DrainReport {
    let stop = CancellationToken::new();
    let hard_stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let aborted = Arc::new(AtomicUsize::new(0));
    let permits = Arc::new(Semaphore::new(gateway.settings.max_connections));
    // With a drain delay, the signal first takes the replica out of rotation (`/readyz` 503,
    // new upgrades refused with 503) while live relays continue; the drain starts after it.
    let delay = gateway.settings.drain_delay;
    let draining = gateway.clone();
    let shutdown = async move {
        shutdown.await;
        if !delay.is_zero() {
            draining.draining.store(true, Ordering::Relaxed);
            info!(delay = ?delay, "leaving rotation: /readyz answers 503; relays continue until the drain");
            tokio::time::sleep(delay).await;
        }
    };
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accepting a browser connection failed; backing off");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        gateway.hook(PanicPoint::AcceptLoop);
        // Counted from this moment, before a byte is read; the excess is closed unread.
        let ip_slot = match gateway.accept_gate.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(rejection) => {
                gateway.metrics.edge_rejected(rejection.reason_label());
                drop((tcp, permit));
                if let Some(closed) = gateway.per_ip_refusals.occurred() {
                    warn!(
                        peer = %peer.ip(),
                        closed,
                        every = ?PER_IP_REFUSAL_LOG_INTERVAL,
                        "closed connections unread: their address already holds \
                         server.max_connections_per_ip (`closed` counts them since the previous \
                         such line; at most one line `every`)"
                    );
                }
                continue;
            }
        };
        let id = gateway.next_id.fetch_add(1, Ordering::Relaxed);
        // A debug-level span: entered and left on every poll of the connection task, it costs
        // about as much as the connection's own log line, so it is there when debugging only;
        // the lines logged at info and above name the connection with a `conn` field instead.
        let span = debug_span!("conn", id);
        let (gateway, stop, hard_stop, aborted) = (
            gateway.clone(),
            stop.clone(),
            hard_stop.clone(),
            aborted.clone(),
        );
        tracker.spawn(
            async move {
                let _permit = permit;
                let _ip_slot = ip_slot;
                gateway.open_connections.fetch_add(1, Ordering::Relaxed);
                // A bug in one connection must not leak its slot or vanish unlogged; the
                // session's own panics are caught closer in (to send 1011), this is the rest.
                let serve = AssertUnwindSafe(serve_connection(tcp, peer, id, &gateway, &stop));
                tokio::select! {
                    served = serve.catch_unwind() => if let Err(panic) = served {
                        gateway.connection_panics.fetch_add(1, Ordering::Relaxed);
                        error!(%peer, panic = panic_text(&panic), "connection task panicked");
                    },
                    // Polled on every wake-up of the task: the cheap watch, not the token's
                    // locks, which every connection shares.
                    () = crate::relay::cancel::cancelled(&hard_stop) => {
                        aborted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                gateway.open_connections.fetch_sub(1, Ordering::Relaxed);
            }
            .instrument(span),
        );
    }

    drop(listener);
    gateway.draining.store(true, Ordering::Relaxed);
    let open = gateway.open_connections.load(Ordering::Relaxed);
    info!(open, grace = ?gateway.settings.shutdown_grace, "draining: closing every relay with 1001");
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(gateway.settings.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        hard_stop.cancel();
        tracker.wait().await;
    }
    let aborted = aborted.load(Ordering::Relaxed);
    if aborted > 0 {
        warn!(
            aborted,
            "grace period over: cut connections that had not closed"
        );
    } else {
        info!("drained: every connection closed");
    }
    DrainReport {
        aborted,
        connection_panics: gateway.connection_panics.load(Ordering::Relaxed),
        server_panicked: false,
    }
}

/// The message of a caught panic, for the log.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-text panic payload)")
}

/// An accepted upgrade: what the connection task needs to run the session.
struct Upgrade {
    route: Arc<Route>,
    /// Holds the client's per-IP slot until the connection ends.
    _admission: Admission,
    /// Holds a place among the route's concurrent set-ups until the upstream is ready.
    setup_slot: SetupGuard,
    request: BrowserRequest,
}

/// What one request gets.
enum Answer {
    /// A 101 (the bytes to send); the session follows.
    Upgrade(Upgrade, Vec<u8>),
    /// A plain response, then the connection closes.
    Respond(Response<Full<Bytes>>),
}

/// Runs one TCP connection: TLS first when the listener has it, then its one request.
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    conn: u64,
    gateway: &Arc<Gateway>,
    stop: &CancellationToken,
) {
    let _ = tcp.set_nodelay(true);
    // Each variant is boxed so the task keeps room only for the one it runs (the TLS state is
    // large, and a plain connection should not pay for it).
    let Some(acceptor) = &gateway.tls else {
        return Box::pin(serve_http(tcp, peer, conn, gateway, stop)).await;
    };
    let handshake = Box::pin(tokio::time::timeout(
        gateway.settings.handshake_timeout,
        acceptor.accept(tcp),
    ));
    let accepted = tokio::select! {
        _ = stop.cancelled() => return,
        accepted = handshake => accepted,
    };
    match accepted {
        Ok(Ok(tls)) => Box::pin(serve_http(Box::new(tls), peer, conn, gateway, stop)).await,
        Ok(Err(e)) => debug!(%peer, error = %e, "browser tls handshake failed"),
        Err(_) => debug!(%peer, "browser tls handshake timed out"),
    }
}

/// Reads the browser's one request and answers it; an upgrade runs the session in the same
/// task.
async fn serve_http<S>(
    io: S,
    peer: SocketAddr,
    conn: u64,
    gateway: &Arc<Gateway>,
    stop: &CancellationToken,
) where
    S: crate::relay::Transport,
{
    // Boxed: the request head and the handshake's timer are needed once, not kept in the task
    // for the life of the relay.
    let Some((browser, upgrade)) = Box::pin(upgrade_or_answer(io, peer, conn, gateway, stop)).await
    else {
        return;
    };
    let spare = browser.io.spare_handle();
    let route = &upgrade.route;
    // Awaited where it is built: a future bound to a local and then awaited is kept twice in
    // this task's state (rustc keeps room for the moved-from local).
    let session = AssertUnwindSafe(async {
        gateway.hook(PanicPoint::Session);
        session::run(
            browser,
            upgrade.request,
            route,
            upgrade.setup_slot,
            stop,
            &gateway.metrics,
        )
        .await;
    })
    .catch_unwind()
    .await;
    if let Err(panic) = session {
        gateway.connection_panics.fetch_add(1, Ordering::Relaxed);
        error!(route = %route.name, panic = panic_text(&panic), "session panicked; closing the browser with 1011");
        gateway
            .metrics
            .connection_finished(&route.name, "internal_error");
        gateway
            .metrics
            .record_close(&route.name, "guestgate", Some(close_code::INTERNAL.code));
        // Boxed: only a panicked session needs room for it.
        Box::pin(close_after_panic(spare, route)).await;
    }
}

/// Reads the request head and either answers it (then the connection ends: `None`) or sends
/// the 101 and hands back the upgraded leg with the bytes read past the head. The head and the
/// 101 share the handshake timeout.
async fn upgrade_or_answer<S>(
    mut io: S,
    peer: SocketAddr,
    conn: u64,
    gateway: &Gateway,
    stop: &CancellationToken,
) -> Option<(Leg<S>, Upgrade)>
where
    S: crate::relay::Transport,
{
    let deadline = tokio::time::Instant::now() + gateway.settings.handshake_timeout;
    let head = tokio::select! {
        _ = stop.cancelled() => return None,
        head = tokio::time::timeout_at(deadline, http1::read_head(&mut io)) => head,
    };
    let head = match head {
        Ok(Ok(head)) => head,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "no usable request head from the browser");
            if let Some(response) = e.response() {
                let answer = http1::respond_and_close(&mut io, response);
                let _ = tokio::time::timeout_at(deadline, answer).await;
            }
            return None;
        }
        Err(_) => {
            debug!(%peer, "browser sent no whole request head in time");
            return None;
        }
    };
    let (upgrade, switching_protocols) = match handle(&head, peer, conn, gateway) {
        Answer::Upgrade(upgrade, switching_protocols) => (upgrade, switching_protocols),
        Answer::Respond(response) => {
            let answer = http1::respond_and_close(&mut io, response);
            let _ = tokio::time::timeout_at(deadline, answer).await;
            return None;
        }
    };
    let sent = tokio::time::timeout_at(deadline, async {
        io.write_all(&switching_protocols).await?;
        io.flush().await
    });
    if !matches!(sent.await, Ok(Ok(()))) {
        debug!(%peer, "browser went away before the 101 was sent");
        return None;
    }
    let browser = Leg {
        io,
        prefix: head.ahead,
    };
    Some((browser, upgrade))
}

/// Tells the browser of a panicked session that guestgate failed (1011), over the spare
/// handle on its socket. Plain TCP only (a TLS leg's state died with the session; that browser
/// just sees the connection end). Best effort: if the panic struck inside a frame to the
/// browser, the browser sees the close frame as a protocol error instead.
async fn close_after_panic(spare: Option<socket2::Socket>, route: &Route) {
    let Some(tcp) = spare
        .map(std::net::TcpStream::from)
        .and_then(|s| TcpStream::from_std(s).ok())
    else {
        return;
    };
    session::reject(Leg::new(tcp), close_code::INTERNAL, route).await;
}

/// Answers one HTTP request on the browser listener: route, upgrade checks, edge policy.
fn handle(head: &http1::Head, peer: SocketAddr, conn: u64, gateway: &Gateway) -> Answer {
    let req = &head.request;
    if let Some(response) = static_asset(req, gateway) {
        return Answer::Respond(response);
    }
    let Some(route) = gateway.route(req.uri().path()) else {
        gateway.metrics.edge_rejected("bad_request");
        return Answer::Respond(handshake::plain(
            StatusCode::NOT_FOUND,
            "no websocket route at this path",
        ));
    };
    if gateway.draining.load(Ordering::Relaxed) {
        return Answer::Respond(refuse(gateway, &Rejection::Draining));
    }
    let accept = match handshake::accept_key(req.method(), req.headers()) {
        // Bytes behind the head of an upgrade are frames; a body there would be read as some.
        Ok(_) if head.has_body => Err(handshake::UpgradeRefusal::Malformed(
            "an upgrade request has no body",
        )),
        checked => checked,
    };
    let accept = match accept {
        Ok(accept) => accept,
        Err(refusal) => {
            gateway.metrics.edge_rejected("bad_request");
            return Answer::Respond(handshake::plain(refusal.status(), refusal.to_string()));
        }
    };
    let subprotocol = match handshake::negotiate(req.headers(), &route.subprotocols) {
        Ok(subprotocol) => subprotocol,
        Err(refusal) => {
            gateway.metrics.edge_rejected("bad_request");
            return Answer::Respond(handshake::plain(refusal.status(), refusal.to_string()));
        }
    };
    let query = req.uri().query();
    let admission = match route.edge.check(peer, req.headers(), query, Now::system()) {
        Ok(admission) => admission,
        Err(rejection) => return Answer::Respond(refuse(gateway, &rejection)),
    };
    let setup_slot = match route.edge.try_begin_setup() {
        Ok(slot) => slot,
        Err(rejection) => return Answer::Respond(refuse(gateway, &rejection)),
    };
    let switching_protocols = http1::switching_protocols(&accept, subprotocol.answer());
    let upgrade = Upgrade {
        route: route.clone(),
        _admission: admission,
        setup_slot,
        request: BrowserRequest {
            query: query.map(str::to_owned),
            subprotocol,
            resume_ticket: None,
            sign_in: None,
            conn,
        },
    };
    Answer::Upgrade(upgrade, switching_protocols)
}

/// Answers a plain GET for one of the configured static files.
fn static_asset(req: &Request<()>, gateway: &Gateway) -> Option<Response<Full<Bytes>>> {
    let assets = gateway.extras.assets?;
    if req.method() != http::Method::GET || req.headers().contains_key(http::header::UPGRADE) {
        return None;
    }
    let (content_type, body) = assets(req.uri().path())?;
    Some(
        Response::builder()
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("static response parts are valid"),
    )
}

/// A plain HTTP refusal for an edge rejection, counted, with Retry-After where it applies.
fn refuse(gateway: &Gateway, rejection: &Rejection) -> Response<Full<Bytes>> {
    gateway.metrics.edge_rejected(rejection.reason_label());
    debug!(?rejection, "upgrade refused at the edge");
    let mut response = handshake::plain(rejection.status(), rejection.to_string());
    if let Some(secs) = rejection.retry_after_secs() {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, secs.into());
    }
    response
}
