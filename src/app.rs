//! Assembling a running guestgate from a validated [`Config`]: prepare routes (so bad settings
//! fail before any port is bound), bind both listeners, and run them until asked to stop.
//! `main`, the demo and the integration tests all start guestgate through here.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::config::Config;
use crate::metrics::{self, Metrics};
use crate::route::{Route, RouteError};
use crate::server::{self, DrainReport, Extras, Gateway};
use crate::tls_server::ReloadingCert;

/// Why guestgate could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A route's settings could not be prepared (TLS files, header values).
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The browser listener's certificate could not be loaded.
    #[error(transparent)]
    Tls(#[from] crate::tls_server::CertError),
    /// The metrics could not be registered.
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A listener could not be bound.
    #[error("binding {what} listener on {addr}: {source}")]
    Bind {
        /// `browser` or `admin`.
        what: &'static str,
        /// The configured address.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// A running guestgate.
pub struct Running {
    /// The bound browser address (useful with port 0).
    pub addr: SocketAddr,
    /// The bound admin address.
    pub admin_addr: SocketAddr,
    /// Shared state (draining flag, open connections).
    pub gateway: Arc<Gateway>,
    stop: CancellationToken,
    task: JoinHandle<DrainReport>,
}

impl Running {
    /// Begins the graceful shutdown.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Waits for the drain to finish.
    pub async fn wait(self) -> DrainReport {
        finished(self.task.await)
    }

    /// Serves until `stop` resolves, then drains; or returns as soon as the server stops on
    /// its own (its accept loop panicked), so the process does not idle on without a listener.
    pub async fn until_stopped(mut self, stop: impl Future<Output = ()>) -> DrainReport {
        tokio::select! {
            _ = stop => {
                tracing::info!("shutdown requested");
                self.shutdown();
                self.wait().await
            }
            ended = &mut self.task => finished(ended),
        }
    }
}

/// The drain report of a finished server task.
fn finished(ended: Result<DrainReport, tokio::task::JoinError>) -> DrainReport {
    ended.unwrap_or_else(|e| {
        let panic = e.try_into_panic().ok();
        let text = panic.as_deref().map_or("(cancelled)", server::panic_text);
        tracing::error!(
            panic = text,
            "the browser listener's task ended abnormally; guestgate stopped serving"
        );
        DrainReport {
            aborted: 0,
            connection_panics: 0,
            server_panicked: true,
        }
    })
}

/// Prepares every route of `config`; fails before anything is bound.
pub fn prepare_routes(config: &Config) -> Result<Vec<Arc<Route>>, RouteError> {
    prepare_routes_with(config, None)
}

/// [`prepare_routes`], reporting token fetches to `metrics`.
pub fn prepare_routes_with(
    config: &Config,
    metrics: Option<&Arc<Metrics>>,
) -> Result<Vec<Arc<Route>>, RouteError> {
    config
        .routes
        .iter()
        .map(|r| Route::from_config(r, metrics))
        .collect()
}

/// The accept queue length asked of the kernel (which caps it at `net.core.somaxconn`, 4096 by
/// default since Linux 5.4). `TcpListener::bind` asks for 128, and a reconnect storm (every
/// browser of a deploy or a network blip coming back at once) overflows that: the dropped SYNs
/// are retried by the client's kernel only after a second. nginx is deployed with the same
/// `backlog=4096`.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener on `addr` like `TcpListener::bind` (SO_REUSEADDR on Unix), with an accept
/// queue of [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Prepares routes, binds the listeners and starts serving. Metrics go to `registry`, or to a
/// fresh one when `None`; either way `/metrics` on the admin listener serves it.
pub async fn start(
    config: &Config,
    registry: Option<prometheus::Registry>,
) -> Result<Running, StartError> {
    start_with(config, registry, Extras::default()).await
}

/// [`start`] with the demo's additions.
pub async fn start_with(
    config: &Config,
    registry: Option<prometheus::Registry>,
    extras: Extras,
) -> Result<Running, StartError> {
    let registry = registry.unwrap_or_default();
    let metrics = Metrics::new(&registry)?;
    let routes = prepare_routes_with(config, Some(&metrics))?;
    let certificate = match &config.server.tls {
        Some(tls) => Some(ReloadingCert::load(tls)?),
        None => None,
    };
    for route in &routes {
        metrics.init_route(&route.name);
        if let crate::route::RouteUpstream::Preset(preset) = &route.upstream {
            preset.init_metrics(&route.name, &metrics);
        }
    }
    let bind = |what, addr| listen(addr).map_err(|source| StartError::Bind { what, addr, source });
    let listener = bind("browser", config.server.listen)?;
    let admin_listener = bind("admin", config.server.admin_listen)?;
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    let admin_addr = admin_listener
        .local_addr()
        .expect("bound listener has an address");
    // Off the start-up path: a deployment that is not Active is worth a warning, never a wait.
    crate::preset::genesys::doctor::spawn_startup_check(config);
    let admin_stop = CancellationToken::new();
    let acceptor = certificate.map(|cert| {
        tokio::spawn(cert.clone().watch(admin_stop.clone()));
        tokio_rustls::TlsAcceptor::from(cert.server_config())
    });
    let gateway = Gateway::new(config.server.clone(), routes, metrics, extras, acceptor);
    let render: admin::MetricsRenderer = Arc::new(move || metrics::render(&registry));
    let stop = CancellationToken::new();
    tokio::spawn(admin::run(
        admin_listener,
        gateway.clone(),
        Some(render),
        admin_stop.clone(),
    ));
    let task = {
        let (gateway, stop) = (gateway.clone(), stop.clone());
        tokio::spawn(async move {
            let report = server::run(listener, gateway, stop.cancelled_owned()).await;
            admin_stop.cancel();
            report
        })
    };
    Ok(Running {
        addr,
        admin_addr,
        gateway,
        stop,
        task,
    })
}
