//! The browser listener: a bounded accept loop, hyper for the HTTP upgrade, one task per
//! connection, and the two-phase shutdown (close 1001 to every relay, wait for the grace
//! period, then cut the rest).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
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
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::ServerConfig;
use crate::handshake;
use crate::metrics::Metrics;
use crate::relay::Leg;
use crate::route::Route;
use crate::session;

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
    /// Browser connections currently held (handshaking or relaying).
    pub open_connections: AtomicUsize,
    next_id: AtomicU64,
}

impl Gateway {
    /// A gateway serving `routes`.
    pub fn new(
        settings: ServerConfig,
        routes: Vec<Arc<Route>>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings,
            routes,
            metrics,
            draining: AtomicBool::new(false),
            open_connections: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        })
    }

    fn route(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes
            .iter()
            .find(|r| r.path == path || (r.path == "/" && !path.starts_with("/_")))
    }
}

/// How the shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Connections still open when the grace period ran out, which were cut.
    pub aborted: usize,
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
                gateway.open_connections.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = serve_connection(tcp, peer, &gateway, &stop) => {}
                    _ = hard_stop.cancelled() => { aborted.fetch_add(1, Ordering::Relaxed); }
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
    DrainReport { aborted }
}

/// The upgraded connection a request handler hands back to its connection task.
type Upgrade = (OnUpgrade, Arc<Route>);

/// Runs hyper on one TCP connection; if it upgrades, runs the session in the same task.
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    gateway: &Arc<Gateway>,
    stop: &CancellationToken,
) {
    let _ = tcp.set_nodelay(true);
    let (tx, rx) = oneshot::channel::<Upgrade>();
    let tx = std::sync::Mutex::new(Some(tx));
    let service = service_fn(|req: Request<Incoming>| {
        let answer = handle(req, gateway, &tx);
        async move { Ok::<_, Infallible>(answer) }
    });
    // Boxed so the per-connection task does not keep room for hyper's state after the upgrade.
    let conn = Box::pin(
        http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(gateway.settings.handshake_timeout)
            .max_buf_size(16 * 1024)
            .serve_connection(TokioIo::new(tcp), service)
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
    let Ok((on_upgrade, route)) = rx.await else {
        return;
    };
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => return debug!(error = %e, "browser upgrade did not complete"),
    };
    let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
        return warn!("upgraded browser stream has an unexpected type");
    };
    let browser = Leg {
        io: parts.io.into_inner(),
        // A right-sized copy: keeping hyper's read buffer would pin 8 KiB per connection.
        prefix: Bytes::copy_from_slice(&parts.read_buf),
    };
    // Release hyper's read buffer now, not when this task ends.
    drop(parts.read_buf);
    session::run(browser, &route, stop, &gateway.metrics).await;
}

/// Answers one HTTP request on the browser listener.
fn handle(
    mut req: Request<Incoming>,
    gateway: &Gateway,
    upgrade_slot: &std::sync::Mutex<Option<oneshot::Sender<Upgrade>>>,
) -> Response<Full<Bytes>> {
    let Some(route) = gateway.route(req.uri().path()) else {
        return handshake::plain(StatusCode::NOT_FOUND, "no websocket route at this path");
    };
    if gateway.draining.load(Ordering::Relaxed) {
        return handshake::plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "guestgate is shutting down",
        );
    }
    let accept = match handshake::accept_key(req.method(), req.headers()) {
        Ok(accept) => accept,
        Err(refusal) => return handshake::plain(refusal.status(), refusal.to_string()),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let sender = upgrade_slot.lock().expect("upgrade slot lock").take();
    match sender.map(|tx| tx.send((on_upgrade, route.clone()))) {
        Some(Ok(())) => handshake::switching_protocols(&accept),
        _ => handshake::plain(StatusCode::BAD_REQUEST, "one upgrade per connection"),
    }
}
