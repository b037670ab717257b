//! `guestgate demo`: guestgate and a fake upstream in one process on loopback, so a new user
//! sees the whole path work with one command and no accounts.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::net::TcpListener;

use crate::app;
use crate::config::Config;
use crate::mock::{FakeBehavior, FakeUpstream};

/// Runs the demo until `stop` resolves.
pub async fn run(
    listen: SocketAddr,
    admin_listen: SocketAddr,
    stop: impl Future<Output = ()>,
) -> ExitCode {
    let fake_listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("guestgate demo: binding the fake upstream on 127.0.0.1: {e}");
            return ExitCode::from(1);
        }
    };
    let fake = FakeUpstream::start(fake_listener, FakeBehavior::Echo);
    let upstream = fake.url().parse().expect("fake upstream URL is valid");
    let mut config = Config::one_liner(listen, upstream);
    config.server.admin_listen = admin_listen;
    let running = match app::start(&config, None).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("guestgate demo: {e}");
            return ExitCode::from(1);
        }
    };
    println!("guestgate demo is running (Ctrl-C to stop)");
    println!("  websocket:  ws://{}/ws", running.addr);
    println!(
        "  upstream:   {} (in-process fake, echoes every message)",
        fake.url()
    );
    println!("  health:     http://{}/healthz", running.admin_addr);
    println!(
        "  try it:     websocat ws://{}/ws   or any WebSocket client",
        running.addr
    );
    stop.await;
    running.shutdown();
    running.wait().await;
    ExitCode::SUCCESS
}
