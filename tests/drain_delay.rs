//! `server.drain_delay`: on shutdown the replica first leaves rotation (`/readyz` 503, new
//! upgrades refused with 503) while live relays go on; only after the delay are they closed
//! with 1001. A load balancer health-checking `/readyz` thus stops sending pages to a draining
//! replica before those pages reconnect.

mod common;

use std::time::{Duration, Instant};

use common::*;
use guestgate::app;
use guestgate::mock::FakeBehavior;

const DELAY: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn a_drain_delay_leaves_rotation_first_and_keeps_relaying_until_it_ends() {
    let up = fake(FakeBehavior::Echo).await;
    let mut config = config_for(&up.url());
    config.server.drain_delay = DELAY;
    let gg = app::start(&config, None).await.expect("guestgate starts");
    let mut live = RawClient::connect(gg.addr, "").await;
    live.send(true, 1, b"before", MASK).await;
    assert_eq!(live.frame().await.unwrap().1, b"before");
    assert_eq!(http_get(gg.admin_addr, "/readyz").await.0, 200);

    let started = Instant::now();
    gg.shutdown();
    // Out of rotation at once...
    let mut ready = 200;
    while ready == 200 && started.elapsed() < DELAY {
        ready = http_get(gg.admin_addr, "/readyz").await.0;
    }
    assert_eq!(ready, 503, "readyz must fail during the delay");
    // ... while the live relay still works and new upgrades are refused.
    live.send(true, 1, b"during", MASK).await;
    assert_eq!(live.frame().await.unwrap().1, b"during");
    let mut tcp = tokio::net::TcpStream::connect(gg.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            gg.addr
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 503");
    assert!(started.elapsed() < DELAY, "checked within the delay");
    // Then the drain: 1001, not before the delay.
    assert_eq!(live.close_frame().await.0, 1001);
    assert!(
        started.elapsed() >= DELAY,
        "closed after {:?}",
        started.elapsed()
    );
    live.send(true, 8, &close_payload(1001, ""), MASK).await;
    let report = tokio::time::timeout(STEP, gg.wait()).await.unwrap();
    assert_eq!(report.aborted, 0);
}
