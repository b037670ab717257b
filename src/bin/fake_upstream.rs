//! `guestgate-fake`: the upstreams `scripts/ci/abuse.sh` puts behind a real guestgate, as one
//! process on loopback. It serves the in-process [`FakeGenesys`] (the Genesys route's
//! upstream), a history-free echo (the plain route's upstream), a flood upstream that writes
//! binary messages as fast as its peer takes them (for slow-reader attacks), and a tiny HTTP
//! endpoint whose `GET /` answers one JSON object of session counts, so the attacker can check
//! from outside how much upstream work guestgate did and whether any of it stayed open.
//!
//! The Genesys address also serves the fake's history REST API and attachment storage;
//! `--agent-every-ms`/`--agent-max` make its agent write on a timer (see `FakeGenesysConfig`).
//! `--auth` turns on authenticated messaging for its deployment (the token endpoints and the
//! stand-in identity provider's `/idp/authorize` page on the same address; register the site's
//! callback with `--auth-redirect-uri`).
//!
//! Prints one line `{"genesys":ADDR,"echo":ADDR,"flood":ADDR,"stats":ADDR}` once every
//! listener is bound, then runs until SIGTERM/SIGINT.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Parser;
use futures::{SinkExt, StreamExt};
use guestgate::mock::genesys::{DEFAULT_DEPLOYMENT_ID, FakeDeployment};
use guestgate::mock::{FakeGenesys, FakeGenesysConfig, FakeGenesysHandle};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tungstenite::Message;

/// Size of one flood message.
const FLOOD_MESSAGE_BYTES: usize = 16 * 1024;

#[derive(Parser)]
#[command(
    name = "guestgate-fake",
    about = "Fake upstreams (Genesys, echo, flood) with session counts, for the abuse suite"
)]
struct Cli {
    /// Loopback address to bind every listener on (port 0 each).
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// The fake Genesys's `onMessage` limit per session per second (0: none).
    #[arg(long, default_value_t = 2)]
    genesys_rate_limit: u32,
    /// Upstream latency: milliseconds the fake Genesys waits before answering
    /// `configureSession` (0: at once).
    #[arg(long, default_value_t = 0)]
    configure_delay_ms: u64,
    /// The fake Genesys's agent writes "agent message N" to every live session this often,
    /// in milliseconds, whether or not a socket is open (0: never).
    #[arg(long, default_value_t = 0)]
    agent_every_ms: u64,
    /// At most this many periodic agent messages per conversation (0: no limit).
    #[arg(long, default_value_t = 0)]
    agent_max: u64,
    /// Enable authenticated (signed-in) messaging on the fake Genesys's deployment.
    #[arg(long)]
    auth: bool,
    /// With --auth: let a guest session be upgraded to an authenticated one
    /// (`auth.allowSessionUpgrade`).
    #[arg(long, requires = "auth")]
    auth_allow_session_upgrade: bool,
    /// A redirect URI the stand-in identity provider accepts (repeatable).
    #[arg(long = "auth-redirect-uri", value_name = "URI")]
    auth_redirect_uris: Vec<String>,
    /// Lifetime of an authenticated JWT, in seconds.
    #[arg(long, default_value_t = 900)]
    auth_jwt_lifetime_secs: u64,
    /// Lifetime of a refresh token, in seconds.
    #[arg(long, default_value_t = 86_400)]
    refresh_token_lifetime_secs: u64,
    /// Requests per minute each token endpoint takes (0: no limit).
    #[arg(long, default_value_t = 60)]
    auth_rate_per_minute: u32,
}

/// Open and total sockets of one plain upstream.
#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    open: AtomicUsize,
}

/// Decrements `open` when a connection task ends, however it ends.
struct OpenGuard(Arc<Counts>);

impl OpenGuard {
    fn new(counts: &Arc<Counts>) -> Self {
        counts.accepted.fetch_add(1, Ordering::SeqCst);
        counts.open.fetch_add(1, Ordering::SeqCst);
        OpenGuard(counts.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.bind.is_loopback() {
        eprintln!(
            "guestgate-fake: refusing to bind {}: loopback only",
            cli.bind
        );
        return ExitCode::from(2);
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guestgate-fake: {e}");
            ExitCode::from(1)
        }
    }
}

async fn bind(ip: IpAddr, what: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::new(ip, 0))
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("binding the {what} listener: {e}")))
}

async fn run(cli: Cli) -> std::io::Result<()> {
    let deployment = FakeDeployment {
        auth_enabled: cli.auth,
        allow_session_upgrade: cli.auth_allow_session_upgrade,
        ..FakeDeployment::default()
    };
    let secs = std::time::Duration::from_secs;
    let genesys = FakeGenesys::start(
        bind(cli.bind, "genesys").await?,
        FakeGenesysConfig {
            agent_reply: false,
            rate_limit_per_sec: cli.genesys_rate_limit,
            configure_delay: std::time::Duration::from_millis(cli.configure_delay_ms),
            agent_every: (cli.agent_every_ms > 0)
                .then(|| std::time::Duration::from_millis(cli.agent_every_ms)),
            agent_max: cli.agent_max,
            deployments: [(DEFAULT_DEPLOYMENT_ID.to_owned(), deployment)].into(),
            auth_redirect_uris: cli.auth_redirect_uris,
            auth_jwt_lifetime: secs(cli.auth_jwt_lifetime_secs),
            refresh_token_lifetime: secs(cli.refresh_token_lifetime_secs),
            auth_rate_per_minute: cli.auth_rate_per_minute,
            ..FakeGenesysConfig::default()
        },
    );
    let echo_listener = bind(cli.bind, "echo").await?;
    let flood_listener = bind(cli.bind, "flood").await?;
    let stats_listener = bind(cli.bind, "stats").await?;
    let (echo, flood) = (Arc::new(Counts::default()), Arc::new(Counts::default()));
    println!(
        "{}",
        json!({
            "genesys": genesys.addr().to_string(),
            "echo": echo_listener.local_addr()?.to_string(),
            "flood": flood_listener.local_addr()?.to_string(),
            "stats": stats_listener.local_addr()?.to_string(),
        })
    );
    tokio::spawn(accept_loop(echo_listener, echo.clone(), serve_echo));
    tokio::spawn(accept_loop(flood_listener, flood.clone(), serve_flood));
    let stats = tokio::spawn(serve_stats(stats_listener, genesys.clone(), echo, flood));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    stats.abort();
    genesys.shutdown().await;
    Ok(())
}

async fn accept_loop<F, Fut>(listener: TcpListener, counts: Arc<Counts>, serve: F)
where
    F: Fn(TcpStream, OpenGuard) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, OpenGuard::new(&counts)));
            }
            // EMFILE and friends: back off instead of spinning.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

/// Echoes data messages back; keeps nothing.
async fn serve_echo(stream: TcpStream, _open: OpenGuard) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        let reply = match msg {
            Message::Text(_) | Message::Binary(_) => msg,
            Message::Close(_) => break,
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            return;
        }
    }
    let _ = ws.close(None).await;
}

/// Writes binary messages as fast as the peer takes them, until it goes away.
async fn serve_flood(stream: TcpStream, _open: OpenGuard) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut incoming) = ws.split();
    let payload = bytes::Bytes::from(vec![0x5a_u8; FLOOD_MESSAGE_BYTES]);
    let writer = async { while sink.send(Message::Binary(payload.clone())).await.is_ok() {} };
    // Reading keeps control frames (and the peer's close) flowing.
    let reader = async { while let Some(Ok(_)) = incoming.next().await {} };
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
    }
}

/// `GET /` (any request, really) answers the counts as JSON and closes.
async fn serve_stats(
    listener: TcpListener,
    genesys: FakeGenesysHandle,
    echo: Arc<Counts>,
    flood: Arc<Counts>,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let mut head = [0u8; 1024];
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(1), stream.read(&mut head)).await;
        let count = |c: &Counts| json!({"accepted": c.accepted.load(Ordering::SeqCst), "open": c.open.load(Ordering::SeqCst)});
        let body = json!({
            "genesys": {
                "accepted": genesys.accepted(),
                "open": genesys.open_sockets(),
                "sessions": genesys.sessions_created(),
                "requests": genesys.request_count(),
                "auth_exchanges": genesys.auth_exchanges(),
                "auth_refreshes": genesys.auth_refreshes(),
                "auth_revokes": genesys.auth_revokes(),
            },
            "echo": count(&echo),
            "flood": count(&flood),
        })
        .to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}
