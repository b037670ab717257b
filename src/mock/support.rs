//! Plumbing shared by the fakes: the accept loop and its shutdown, upgrade-request capture,
//! and append-only observation logs that tests can wait on.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tungstenite::handshake::server::{ErrorResponse, Request};
use tungstenite::protocol::WebSocketConfig;

/// Largest message and frame the fakes accept: comfortably above the 16 MiB messages tests
/// push through the relay, so a limit hit is always guestgate's, never the fake's.
pub const MAX_MESSAGE_SIZE: usize = 64 << 20;

/// The body Genesys (an AWS API Gateway authorizer) sends with its 403 at upgrade time.
pub const GENESYS_FORBIDDEN_BODY: &str =
    r#"{"Message":"User is not authorized to access this resource with an explicit deny"}"#;

/// WebSocket settings used by every fake: big limits, and (tungstenite has no deflate
/// support compiled in) never any extension.
pub(crate) fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE))
}

/// Locks a mutex, ignoring poisoning: a panicking test thread must not hide later observations.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a fake saw in one HTTP upgrade request, accepted or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// Request target as sent (path and query), e.g. `/v1?deploymentId=abc`.
    pub uri: String,
    /// `Origin` header.
    pub origin: Option<String>,
    /// `Sec-WebSocket-Extensions` header (the relay should never offer any).
    pub extensions: Option<String>,
    /// `Sec-WebSocket-Protocol` header.
    pub protocol: Option<String>,
    /// `Authorization` header.
    pub authorization: Option<String>,
    /// `Cookie` header.
    pub cookie: Option<String>,
    /// Every header, lowercase name and value, in arrival order.
    pub headers: Vec<(String, String)>,
}

impl UpgradeRequest {
    /// Captures the interesting parts of a tungstenite handshake request.
    pub fn from_request(req: &Request) -> Self {
        let get = |name: &str| {
            let values: Vec<&str> = req
                .headers()
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| values.join(", "))
        };
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        UpgradeRequest {
            uri: req.uri().to_string(),
            origin: get("origin"),
            extensions: get("sec-websocket-extensions"),
            protocol: get("sec-websocket-protocol"),
            authorization: get("authorization"),
            cookie: get("cookie"),
            headers,
        }
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request path without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.uri.split_once('?')?.1;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// Builds the plain HTTP answer used to refuse an upgrade.
pub(crate) fn refusal(status: u16, body: &str) -> ErrorResponse {
    let content_type = if body.starts_with('{') {
        "application/json"
    } else {
        "text/plain"
    };
    let mut resp = http::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len().to_string())
        .header("connection", "close")
        .body(Some(body.to_owned()))
        .unwrap_or_else(|_| http::Response::new(Some(body.to_owned())));
    if resp.status().is_success() {
        // tungstenite refuses a "successful" refusal; a test asking for one gets a 500.
        *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    }
    resp
}

/// Returned when a `wait_for_*` helper runs out of time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("timed out after {waited:?} waiting for {wanted} {what} at the fake, saw {seen}")]
pub struct WaitTimeout {
    /// What was being counted.
    pub what: &'static str,
    /// How many were wanted.
    pub wanted: usize,
    /// How many had arrived when time ran out.
    pub seen: usize,
    /// How long the helper waited.
    pub waited: Duration,
}

/// An append-only list of observations with a counter tests can wait on.
#[derive(Debug)]
pub(crate) struct Log<T> {
    what: &'static str,
    items: Mutex<Vec<T>>,
    count: watch::Sender<usize>,
}

impl<T: Clone> Log<T> {
    pub(crate) fn new(what: &'static str) -> Self {
        Log {
            what,
            items: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
        }
    }

    pub(crate) fn push(&self, item: T) {
        let len = {
            let mut items = lock(&self.items);
            items.push(item);
            items.len()
        };
        self.count.send_replace(len);
    }

    pub(crate) fn snapshot(&self) -> Vec<T> {
        lock(&self.items).clone()
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.items).len()
    }

    /// Waits until at least `n` items are logged, then returns all of them.
    pub(crate) async fn wait_for(&self, n: usize, within: Duration) -> Result<Vec<T>, WaitTimeout> {
        let mut rx = self.count.subscribe();
        match tokio::time::timeout(within, rx.wait_for(|c| *c >= n)).await {
            Ok(_) => Ok(self.snapshot()),
            Err(_) => Err(WaitTimeout {
                what: self.what,
                wanted: n,
                seen: self.len(),
                waited: within,
            }),
        }
    }
}

/// Owns a fake's tasks: the accept loop and one task per connection. Dropping it stops them.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    addr: SocketAddr,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Lifecycle {
    /// Spawns the accept loop; `serve` runs once per accepted TCP connection and is dropped
    /// (closing its socket) at shutdown.
    pub(crate) fn spawn<F, Fut>(listener: TcpListener, serve: F) -> Self
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let addr = listener
            .local_addr()
            .expect("fake listener has a local address");
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (c, t) = (cancel.clone(), tracker.clone());
        tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = c.cancelled() => return,
                    a = listener.accept() => a,
                };
                match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let conn = serve(stream);
                        let c = c.clone();
                        t.spawn(async move {
                            tokio::select! {
                                _ = c.cancelled() => {}
                                _ = conn => {}
                            }
                        });
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "fake upstream accept failed; backing off");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
        Lifecycle {
            addr,
            cancel,
            tracker,
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs a background task of the fake (a timer, say) until it ends or the fake stops;
    /// `shutdown` waits for it like for a connection.
    pub(crate) fn spawn_task<Fut>(&self, task: Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let c = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = c.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// Stops accepting, drops every connection, and waits for the tasks to finish.
    pub(crate) async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for Lifecycle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
