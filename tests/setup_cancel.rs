//! A browser that leaves during set-up cancels it: a storm of connections that upgrade and
//! reset at once against a Genesys route creates at most `max_concurrent_setups` upstream
//! sessions, every set-up is cancelled as soon as its browser goes, and no upstream socket
//! stays open.

mod common;

use std::time::Duration;

use common::*;
use guestgate::mock::genesys::{FakeGenesys, FakeGenesysConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Concurrent set-ups the route allows.
const MAX_SETUPS: u32 = 8;
/// Connections in the storm.
const STORM: usize = 100;
/// How long the fake upstream takes to answer `configureSession`.
const CONFIGURE_DELAY: Duration = Duration::from_secs(3);

#[tokio::test]
async fn a_reset_storm_leaves_no_upstream_work_behind() {
    // An upstream slow to answer configureSession: set-ups are still in flight when the
    // browsers reset, so only cancellation closes their upstream sockets in time.
    let fake = FakeGenesys::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        FakeGenesysConfig {
            configure_delay: CONFIGURE_DELAY,
            ..FakeGenesysConfig::default()
        },
    );
    let any = "127.0.0.1:0".parse().unwrap();
    let mut config = guestgate::demo::demo_config(any, any, &fake.url(), None);
    let edge = &mut config.routes[0].edge;
    edge.max_concurrent_setups = guestgate::edge::Limit::Max(MAX_SETUPS);
    // Every browser here comes from 127.0.0.1: the per-address defaults would refuse most of
    // the storm before set-up, and this test is about the set-ups that do begin.
    edge.max_connections_per_ip = guestgate::edge::Limit::Off;
    edge.handshake_rate_per_ip = guestgate::edge::Limit::Off;
    config.server.shutdown_grace = Duration::from_secs(1);
    let gg = gateway(&config).await;
    let addr = gg.addr;

    // All connections upgrade (or are refused at the edge) first, then all reset at once.
    let open = move || async move {
        let mut tcp = TcpStream::connect(addr).await.ok()?;
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Origin: https://chat.guestgate.example\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        tokio::time::timeout(STEP, tcp.read_exact(&mut head))
            .await
            .ok()?
            .ok()?;
        Some((tcp, head.starts_with(b"HTTP/1.1 101")))
    };
    let opened = futures::future::join_all((0..STORM).map(|_| open())).await;
    let upgraded = opened.iter().flatten().filter(|(_, up)| *up).count();
    assert!(upgraded > 0, "no connection of the storm was upgraded");
    assert!(upgraded <= MAX_SETUPS as usize, "{upgraded} upgraded");
    let reset_at = tokio::time::Instant::now();
    for (tcp, _) in opened.into_iter().flatten() {
        // RST instead of FIN, as an attacker's script would.
        tcp.set_zero_linger().unwrap();
        drop(tcp);
    }

    // Every set-up is cancelled as its browser goes, long before the upstream would answer.
    let want =
        format!(r#"guestgate_connections_total{{outcome="browser_gone",route="demo"}} {upgraded}"#);
    metrics_when(gg.admin_addr, "set-ups cancelled", |t| t.contains(&want)).await;
    assert!(
        reset_at.elapsed() < CONFIGURE_DELAY,
        "set-ups ran until the upstream answered"
    );
    assert!(
        fake.accepted() <= MAX_SETUPS as usize,
        "{} upstream connections",
        fake.accepted()
    );
    // configureSession requests already sent still land after the delay (the fake counts
    // them although the socket is gone): at most the cap, and no upstream socket stays open.
    let deadline = reset_at + CONFIGURE_DELAY + STEP;
    while fake.open_sockets() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        fake.open_sockets(),
        0,
        "upstream sockets outlived their browsers"
    );
    assert!(
        fake.sessions_created() <= MAX_SETUPS as usize,
        "{} upstream sessions for a cap of {MAX_SETUPS}",
        fake.sessions_created()
    );
}
