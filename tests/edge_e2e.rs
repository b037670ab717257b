//! Edge policy on real sockets: refusals are plain HTTP before the upgrade, and cost nothing
//! upstream.

mod common;

use common::*;
use guestgate::mock::FakeBehavior;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends an upgrade request with `extra` headers; returns the response head.
async fn upgrade_head(addr: std::net::SocketAddr, extra: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(STEP, tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn origin_outside_the_allowlist_is_refused_before_any_upstream_work() {
    let up = fake(FakeBehavior::Echo).await;
    let mut config = config_for(&up.url());
    config.routes[0].edge =
        guestgate::edge::EdgeConfig::one_liner(vec!["https://www.example.com".into()]);
    let gg = gateway(&config).await;
    let refused = upgrade_head(gg.addr, "Origin: https://www.example.com.evil.example\r\n").await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    let missing = upgrade_head(gg.addr, "").await;
    assert!(missing.starts_with("HTTP/1.1 403"), "{missing}");
    let allowed = upgrade_head(gg.addr, "Origin: https://WWW.example.com:443\r\n").await;
    assert!(allowed.starts_with("HTTP/1.1 101"), "{allowed}");
    up.wait_for_requests(1, STEP).await.unwrap();
    assert_eq!(
        up.requests().len(),
        1,
        "refused browsers must not reach the upstream"
    );
    let (_, metrics) = http_get(gg.admin_addr, "/metrics").await;
    assert!(
        metrics.contains(r#"guestgate_edge_rejections_total{reason="origin"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn handshake_rate_per_ip_answers_429_with_retry_after() {
    let up = fake(FakeBehavior::Echo).await;
    let mut config = config_for(&up.url());
    config.routes[0].edge.handshake_rate_per_ip =
        guestgate::edge::Limit::Max(guestgate::edge::RateConfig {
            per_second: 0.5,
            burst: 2,
        });
    let gg = gateway(&config).await;
    for _ in 0..2 {
        assert!(upgrade_head(gg.addr, "").await.starts_with("HTTP/1.1 101"));
    }
    let third = upgrade_head(gg.addr, "").await;
    assert!(third.starts_with("HTTP/1.1 429"), "{third}");
    assert!(
        third.to_ascii_lowercase().contains("retry-after: 2"),
        "{third}"
    );
}

#[tokio::test]
async fn per_ip_connection_cap_is_released_when_a_connection_ends() {
    let up = fake(FakeBehavior::Echo).await;
    let mut config = config_for(&up.url());
    config.routes[0].edge.max_connections_per_ip = guestgate::edge::Limit::Max(1);
    let gg = gateway(&config).await;
    let mut first = RawClient::connect(gg.addr, "").await;
    let second = upgrade_head(gg.addr, "").await;
    assert!(second.starts_with("HTTP/1.1 429"), "{second}");
    first.send(true, 8, &close_payload(1000, ""), MASK).await;
    first.close_frame().await;
    drop(first);
    let mut admitted = false;
    for _ in 0..50 {
        if upgrade_head(gg.addr, "").await.starts_with("HTTP/1.1 101") {
            admitted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(admitted, "the slot was not released");
}

#[tokio::test]
async fn site_ticket_is_required_and_verified_before_the_upgrade() {
    let up = fake(FakeBehavior::Echo).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("ticket.key");
    std::fs::write(&key_file, "a-shared-site-ticket-key-of-32-bytes!!").unwrap();
    let mut config = config_for(&up.url());
    config.routes[0].edge.ticket =
        Some(toml::from_str(&format!("key = {{ file = \"{}\" }}", key_file.display())).unwrap());
    let gg = gateway(&config).await;
    let key = guestgate::secret::Secret::new("a-shared-site-ticket-key-of-32-bytes!!");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = guestgate::edge::mint_ticket(&key, now + 30, Some("default"));
    let forged = guestgate::edge::mint_ticket(
        &guestgate::secret::Secret::new("another-key-entirely-of-32-bytes!!!"),
        now + 30,
        Some("default"),
    );
    let expired = guestgate::edge::mint_ticket(&key, now - 30, Some("default"));
    let other_route = guestgate::edge::mint_ticket(&key, now + 30, Some("elsewhere"));

    let head = |q: String| async move {
        let mut tcp = TcpStream::connect(gg.addr).await.unwrap();
        let req = format!(
            "GET /ws{q} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(STEP, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&buf[..12.min(n)]).into_owned()
    };
    assert_eq!(head(String::new()).await, "HTTP/1.1 403");
    assert_eq!(head(format!("?ticket={forged}")).await, "HTTP/1.1 403");
    assert_eq!(head(format!("?ticket={expired}")).await, "HTTP/1.1 403");
    assert_eq!(head(format!("?ticket={other_route}")).await, "HTTP/1.1 403");
    assert_eq!(up.accepted(), 0);
    assert_eq!(head(format!("?ticket={good}")).await, "HTTP/1.1 101");
}
