//! Connections that never upgrade: counted per address from the moment they are accepted, so
//! one address cannot fill `server.max_connections`, and a connection serves at most one
//! plain request.
//!
//! Uses 127.0.0.2 as a second client address (Linux routes all of 127/8 to `lo`).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use guestgate::config::ServerConfig;
use guestgate::mock::FakeBehavior;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const FLOOD: usize = 5000;

/// The soft open-files limit, from `/proc/self/limits`.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

async fn connect_from(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(to).await
}

/// Whether the server has closed `tcp` (EOF or reset) within `wait`.
async fn closed_within(tcp: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(wait, tcp.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_flood_from_one_address_does_not_lock_out_another() {
    // Client and server sockets both live in this process.
    let need = 2 * FLOOD as u64 + 512;
    match open_files_limit() {
        Some(limit) if limit >= need => {}
        other => {
            eprintln!(
                "SKIPPED idle_flood_from_one_address_does_not_lock_out_another: the open-files \
                 limit is {other:?}, {need} are needed; run under `ulimit -n {need}`"
            );
            return;
        }
    }
    let up = fake(FakeBehavior::Echo).await;
    let mut config = config_for(&up.url());
    // The one-liner switches the cap off; a config file gets the default.
    let cap = ServerConfig::default().max_connections_per_ip;
    config.server.max_connections_per_ip = cap;
    let cap = config.server.accept_cap_per_ip().unwrap() as usize;
    // Fewer slots than the flood has connections: without a per-address cap the flood
    // would hold all of them and the browser would wait in the accept queue.
    config.server.max_connections = 4096;
    // Long enough that header_read_timeout does not close the idle ones during the test.
    config.server.handshake_timeout = Duration::from_secs(60);
    let gg = gateway(&config).await;

    let attacker: IpAddr = "127.0.0.2".parse().unwrap();
    let mut idle = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        idle.push(
            connect_from(attacker, gg.addr)
                .await
                .expect("flood connect"),
        );
    }

    // A browser from another address gets in and chats at once.
    let started = Instant::now();
    let echoed = tokio::time::timeout(Duration::from_secs(1), async {
        let mut c = RawClient::connect(gg.addr, "").await;
        c.send(true, 1, b"still here", MASK).await;
        c.frame().await
    })
    .await
    .expect("the browser chatted within 1 s of a 5000-connection idle flood");
    assert_eq!(echoed, Some((1, b"still here".to_vec())));
    eprintln!(
        "browser connected and echoed in {:?} beside {FLOOD} idle connections",
        started.elapsed()
    );

    // The flood's excess was closed; exactly `cap` are still held.
    let checks = idle
        .iter_mut()
        .map(|tcp| closed_within(tcp, Duration::from_secs(3)));
    let closed = futures::future::join_all(checks)
        .await
        .into_iter()
        .filter(|&closed| closed)
        .count();
    assert_eq!(closed, FLOOD - cap, "excess idle connections closed");
    let text = metrics_when(gg.admin_addr, "per-address refusals", |m| {
        m.contains(&format!(
            r#"guestgate_edge_rejections_total{{reason="per_ip_cap"}} {}"#,
            FLOOD - cap
        ))
    })
    .await;
    assert!(text.contains("per_ip_cap"));
}

#[tokio::test]
async fn a_connection_serves_one_plain_request_then_closes() {
    let up = fake(FakeBehavior::Echo).await;
    let gg = gateway(&config_for(&up.url())).await;
    let mut tcp = TcpStream::connect(gg.addr).await.unwrap();
    let get = format!("GET /ws HTTP/1.1\r\nHost: {}\r\n\r\n", gg.addr);
    // Two pipelined plain GETs: only the first is answered, then the connection ends.
    tcp.write_all(format!("{get}{get}").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(STEP, tcp.read_to_string(&mut out))
        .await
        .expect("the connection was kept open after a plain request")
        .unwrap();
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    assert!(
        out.to_ascii_lowercase().contains("connection: close"),
        "{out}"
    );
}

#[test]
fn connections_closed_by_the_cap_are_logged_once_per_interval() {
    let logs = CapturedLog::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    // This thread only: the runtime below runs every task of guestgate's on it.
    let _logging = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let up = fake(FakeBehavior::Echo).await;
        let mut config = config_for(&up.url());
        config.server.max_connections_per_ip = guestgate::edge::Limit::Max(2);
        let gg = gateway(&config).await;
        let client: IpAddr = "127.0.0.3".parse().unwrap();
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(connect_from(client, gg.addr).await.expect("connect"));
        }
        // Two are held; three are closed unread, each counted.
        metrics_when(gg.admin_addr, "three per-address refusals", |m| {
            m.contains(r#"guestgate_edge_rejections_total{reason="per_ip_cap"} 3"#)
        })
        .await;
    });
    let text = logs.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("server.max_connections_per_ip"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one line for three refusals within 10 s: {text}"
    );
    assert!(lines[0].contains("WARN"), "{}", lines[0]);
    assert!(lines[0].contains("peer=127.0.0.3"), "{}", lines[0]);
    assert!(lines[0].contains("closed=1"), "{}", lines[0]);
}
