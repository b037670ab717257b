//! The browser listener: a bounded accept loop, hyper for the HTTP upgrade, one task per
//! connection, and the two-phase shutdown (close 1001 to every relay, wait for the grace
//! period, then cut the rest).

use std::convert::Infallible;
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
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::close_code;
use crate::config::ServerConfig;
use crate::edge::{AcceptGate, Admission, Now, Rejection, SetupGuard};
use crate::handshake;
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
                continue;
            }
        };
        let id = gateway.next_id.fetch_add(1, Ordering::Relaxed);
        let span = info_span!("conn", id);
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
                let serve = AssertUnwindSafe(serve_connection(tcp, peer, &gateway, &stop));
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

/// What a request handler hands back to its connection task when it accepts an upgrade.
struct Upgrade {
    on_upgrade: OnUpgrade,
    route: Arc<Route>,
    /// Holds the client's per-IP slot until the connection ends.
    _admission: Admission,
    /// Holds a place among the route's concurrent set-ups until the upstream is ready.
    setup_slot: SetupGuard,
    request: BrowserRequest,
}

/// Runs hyper on one TCP connection; if it upgrades, runs the session in the same task.
/// Accepts TLS first when the listener has it, then serves HTTP on the stream.
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    gateway: &Arc<Gateway>,
    stop: &CancellationToken,
) {
    let _ = tcp.set_nodelay(true);
    // Each variant is boxed so the task keeps room only for the one it runs (the TLS state is
    // large, and a plain connection should not pay for it).
    let Some(acceptor) = &gateway.tls else {
        return Box::pin(serve_http(tcp, peer, gateway, stop)).await;
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
        Ok(Ok(tls)) => Box::pin(serve_http(Box::new(tls), peer, gateway, stop)).await,
        Ok(Err(e)) => debug!(%peer, error = %e, "browser tls handshake failed"),
        Err(_) => debug!(%peer, "browser tls handshake timed out"),
    }
}

/// Runs hyper on one browser stream; if it upgrades, runs the session in the same task.
async fn serve_http<S>(io: S, peer: SocketAddr, gateway: &Arc<Gateway>, stop: &CancellationToken)
where
    S: crate::relay::Transport,
{
    let (tx, rx) = oneshot::channel::<Upgrade>();
    let tx = std::sync::Mutex::new(Some(tx));
    let service = service_fn(|req: Request<Incoming>| {
        let mut answer = handle(req, peer, gateway, &tx);
        // One plain request per connection: a refusal or a static file ends it, so a
        // keep-alive loop of GETs cannot hold a connection (and its slot) indefinitely.
        if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
            answer.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        async move { Ok::<_, Infallible>(answer) }
    });
    // Boxed so the per-connection task does not keep room for hyper's state after the upgrade.
    let conn = Box::pin(
        http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(gateway.settings.handshake_timeout)
            .max_buf_size(16 * 1024)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades(),
    );
    tokio::select! {
        result = conn => if let Err(e) = result {
            debug!(%peer, error = %e, "browser http connection ended with an error");
        },
        _ = stop.cancelled() => return,
    }
    // No upgrade was handed over if the sender is still here: let `rx` see that.
    drop(tx);
    let Ok(upgrade) = rx.await else {
        return;
    };
    let upgraded = match upgrade.on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => return debug!(error = %e, "browser upgrade did not complete"),
    };
    let Ok(parts) = upgraded.downcast::<TokioIo<S>>() else {
        return warn!("upgraded browser stream has an unexpected type");
    };
    let browser = Leg {
        io: parts.io.into_inner(),
        // A right-sized copy: keeping hyper's read buffer would pin 8 KiB per connection.
        prefix: Bytes::copy_from_slice(&parts.read_buf),
    };
    // Release hyper's read buffer now, not when this task ends.
    drop(parts.read_buf);
    let spare = browser.io.spare_handle();
    let route = &upgrade.route;
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
    });
    if let Err(panic) = session.catch_unwind().await {
        gateway.connection_panics.fetch_add(1, Ordering::Relaxed);
        error!(route = %route.name, panic = panic_text(&panic), "session panicked; closing the browser with 1011");
        gateway
            .metrics
            .connection_finished(&route.name, "internal_error");
        gateway
            .metrics
            .record_close(&route.name, "guestgate", Some(close_code::INTERNAL.code));
        close_after_panic(spare, route).await;
    }
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
fn handle(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    gateway: &Gateway,
    upgrade_slot: &std::sync::Mutex<Option<oneshot::Sender<Upgrade>>>,
) -> Response<Full<Bytes>> {
    if let Some(response) = static_asset(&req, gateway) {
        return response;
    }
    let Some(route) = gateway.route(req.uri().path()) else {
        gateway.metrics.edge_rejected("bad_request");
        return handshake::plain(StatusCode::NOT_FOUND, "no websocket route at this path");
    };
    if gateway.draining.load(Ordering::Relaxed) {
        return refuse(gateway, &Rejection::Draining);
    }
    let accept = match handshake::accept_key(req.method(), req.headers()) {
        Ok(accept) => accept,
        Err(refusal) => {
            gateway.metrics.edge_rejected("bad_request");
            return handshake::plain(refusal.status(), refusal.to_string());
        }
    };
    let subprotocol = match handshake::negotiate(req.headers(), &route.subprotocols) {
        Ok(subprotocol) => subprotocol,
        Err(refusal) => {
            gateway.metrics.edge_rejected("bad_request");
            return handshake::plain(refusal.status(), refusal.to_string());
        }
    };
    let query = req.uri().query();
    let admission = match route.edge.check(peer, req.headers(), query, Now::system()) {
        Ok(admission) => admission,
        Err(rejection) => return refuse(gateway, &rejection),
    };
    let setup_slot = match route.edge.try_begin_setup() {
        Ok(slot) => slot,
        Err(rejection) => return refuse(gateway, &rejection),
    };
    let upgrade = Upgrade {
        on_upgrade: hyper::upgrade::on(&mut req),
        route: route.clone(),
        _admission: admission,
        setup_slot,
        request: BrowserRequest {
            query: req.uri().query().map(str::to_owned),
            subprotocol,
            resume_ticket: None,
            sign_in: None,
        },
    };
    let answer = upgrade.request.subprotocol.answer().map(str::to_owned);
    let sender = upgrade_slot.lock().expect("upgrade slot lock").take();
    if sender.is_some_and(|tx| tx.send(upgrade).is_ok()) {
        handshake::switching_protocols(&accept, answer.as_deref())
    } else {
        handshake::plain(StatusCode::BAD_REQUEST, "one upgrade per connection")
    }
}

/// Answers a plain GET for one of the configured static files.
fn static_asset(req: &Request<Incoming>, gateway: &Gateway) -> Option<Response<Full<Bytes>>> {
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
