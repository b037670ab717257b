//! Safe defaults on real sockets: a preset route whose config sets no edge limits still caps
//! connections and handshakes per client address.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use guestgate::mock::genesys::{FakeGenesys, FakeGenesysConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A response header's value (the head is lowercase-insensitive here).
fn header(head: &str, name: &str) -> String {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {name} in {head}"))
}

/// Sends an upgrade request and reads the response head, and a refusal's body after it;
/// keeps the socket open.
async fn upgrade(addr: SocketAddr) -> (String, TcpStream) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Origin: https://www.site.example\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(STEP, tcp.read(&mut byte))
            .await
            .expect("response head timed out")
            .unwrap();
        assert_eq!(n, 1, "connection closed before the response head ended");
        head.push(byte[0]);
    }
    let mut head = String::from_utf8(head).unwrap();
    if !head.starts_with("HTTP/1.1 101") {
        // Refusals are short plain-text bodies: append it so callers can tell them apart.
        let len: usize = header(&head, "content-length").parse().unwrap();
        let mut body = vec![0u8; len];
        tokio::time::timeout(STEP, tcp.read_exact(&mut body))
            .await
            .expect("refusal body timed out")
            .unwrap();
        head.push_str(&String::from_utf8(body).unwrap());
    }
    (head, tcp)
}

fn retry_after(head: &str) -> Duration {
    Duration::from_secs(header(head, "retry-after").parse().unwrap())
}

#[tokio::test]
async fn preset_route_without_edge_limits_refuses_the_51st_connection_from_one_address() {
    let fake = FakeGenesys::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        FakeGenesysConfig::default(),
    );
    let any = "127.0.0.1:0".parse().unwrap();
    let config = guestgate::demo::demo_config(any, any, &fake.url(), None);
    assert!(config.routes[0].edge.max_connections_per_ip.is_unset());
    assert!(config.routes[0].edge.handshake_rate_per_ip.is_unset());
    let gg = gateway(&config).await;

    // Open 50, waiting out the default handshake rate (burst 20, then 5/s) as told.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut held = Vec::new();
    let mut first_rate_refusal = None;
    let started = tokio::time::Instant::now();
    while held.len() < 50 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "held only {}",
            held.len()
        );
        let (head, tcp) = upgrade(gg.addr).await;
        if head.starts_with("HTTP/1.1 101") {
            held.push(tcp);
        } else {
            assert!(head.starts_with("HTTP/1.1 429"), "{head}");
            assert!(head.contains("too many connection attempts"), "{head}");
            first_rate_refusal.get_or_insert((held.len(), started.elapsed()));
            tokio::time::sleep(retry_after(&head)).await;
        }
    }
    // The bucket holds 20 and refills at 5/s while the burst is being opened, so on a slow
    // machine a few more get through before the first refusal: exactly as many as the refill
    // allows, never fewer than the burst.
    let (admitted, elapsed) = first_rate_refusal.expect("the default handshake rate refused one");
    let refilled = (elapsed.as_secs_f64() * 5.0).ceil() as usize;
    assert!(
        (20..=20 + refilled).contains(&admitted),
        "the default handshake burst is 20 (+{refilled} refilled in {elapsed:?}); {admitted} were admitted first"
    );

    let (head, _tcp) = upgrade(gg.addr).await;
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(
        head.contains("too many connections from this address"),
        "{head}"
    );
    metrics_when(gg.admin_addr, "a per-IP cap refusal", |m| {
        m.contains(r#"guestgate_edge_rejections_total{reason="per_ip_cap"} 1"#)
    })
    .await;
}
