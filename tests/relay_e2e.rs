//! End-to-end relay tests on real loopback sockets: guestgate in process in front of a
//! programmable fake upstream, driven by tokio-tungstenite clients and a raw-socket client.

mod common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use guestgate::mock::FakeBehavior;
use tokio_tungstenite::connect_async;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

async fn ws_client(
    addr: std::net::SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (ws, _) = connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("upgrade through guestgate");
    ws
}

async fn next(
    ws: &mut (impl StreamExt<Item = Result<Message, tungstenite::Error>> + Unpin),
) -> Message {
    tokio::time::timeout(STEP, ws.next())
        .await
        .expect("timed out")
        .expect("stream ended")
        .expect("ws error")
}

#[tokio::test]
async fn messages_of_every_kind_round_trip_through_the_relay() {
    let up = fake(FakeBehavior::Echo).await;
    let gg = gateway(&config_for(&up.url())).await;
    let mut ws = ws_client(gg.addr).await;
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    let cases = vec![
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text(""),
        Message::binary(Vec::<u8>::new()),
        Message::binary(big.clone()),
        Message::text("é".repeat(40_000)),
    ];
    for m in &cases {
        ws.send(m.clone()).await.unwrap();
        assert_eq!(&next(&mut ws).await, m);
    }
    ws.close(Some(CloseFrame {
        code: CloseCode::from(4001),
        reason: "client bye".into(),
    }))
    .await
    .unwrap();
    match next(&mut ws).await {
        Message::Close(Some(f)) => {
            assert_eq!((u16::from(f.code), f.reason.as_str()), (4001, "client bye"))
        }
        other => panic!("expected the echoed close, got {other:?}"),
    }
    let got = up.wait_for_received(cases.len() + 1, STEP).await.unwrap();
    assert!(matches!(got.last(), Some(Message::Close(Some(f))) if u16::from(f.code) == 4001));
}

#[tokio::test]
async fn fragmented_message_with_interleaved_ping_arrives_whole() {
    let up = fake(FakeBehavior::Echo).await;
    let gg = gateway(&config_for(&up.url())).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    c.send(false, 1, b"frag", MASK).await;
    c.send(true, 9, b"are you there", MASK).await;
    c.send(false, 0, b"men", MASK).await;
    c.send(true, 0, b"ted", MASK).await;
    // The upstream answers the ping (relayed verbatim) and echoes the reassembled text.
    assert_eq!(c.frame().await.unwrap(), (10, b"are you there".to_vec()));
    assert_eq!(c.frame().await.unwrap(), (1, b"fragmented".to_vec()));
}

#[tokio::test]
async fn no_extensions_are_negotiated_on_either_leg() {
    let up = fake(FakeBehavior::Echo).await;
    let gg = gateway(&config_for(&up.url())).await;
    let c = RawClient::connect(
        gg.addr,
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    )
    .await;
    assert!(
        !c.response_head
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions")
    );
    let reqs = up.wait_for_requests(1, STEP).await.unwrap();
    assert_eq!(reqs[0].header("sec-websocket-extensions"), None);
}

#[tokio::test]
async fn browser_cookie_and_authorization_never_reach_the_upstream() {
    let up = fake(FakeBehavior::Echo).await;
    let gg = gateway(&config_for(&up.url())).await;
    let _c = RawClient::connect(
        gg.addr,
        "Cookie: session=abc\r\nAuthorization: Bearer page-token\r\n",
    )
    .await;
    let reqs = up.wait_for_requests(1, STEP).await.unwrap();
    assert_eq!(reqs[0].header("cookie"), None);
    assert_eq!(reqs[0].header("authorization"), None);
}

#[tokio::test]
async fn upstream_refusing_the_upgrade_gives_4403_with_a_reason() {
    let up = fake(FakeBehavior::genesys_forbidden()).await;
    let gg = gateway(&config_for(&up.url())).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    let (code, reason) = c.close_frame().await;
    assert_eq!(code, 4403);
    assert!(reason.contains("deploymentId"), "{reason}");
}

#[tokio::test]
async fn unreachable_upstream_gives_4503() {
    // Bound and never listening: connections to it are refused, and no other socket (this
    // test's own guestgate included) can take the port meanwhile, as it could once dropped.
    let refusing = tokio::net::TcpSocket::new_v4().unwrap();
    refusing.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("ws://{}/", refusing.local_addr().unwrap());
    let gg = gateway(&config_for(&url)).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    assert_eq!(c.close_frame().await, (4503, "upstream unavailable".into()));
}

#[tokio::test]
async fn slow_upstream_handshake_gives_4504() {
    let up = fake(FakeBehavior::HandshakeDelay(Duration::from_secs(5))).await;
    let mut config = config_for(&up.url());
    config.routes[0].connect_timeout = Duration::from_millis(300);
    let gg = gateway(&config).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    assert_eq!(c.close_frame().await.0, 4504);
}

#[tokio::test]
async fn upstream_close_code_and_reason_reach_the_browser() {
    let up = fake(FakeBehavior::AcceptThenClose {
        code: 4000,
        reason: "agent ended the chat".into(),
    })
    .await;
    let gg = gateway(&config_for(&up.url())).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    assert_eq!(c.close_frame().await, (4000, "agent ended the chat".into()));
}

#[tokio::test]
async fn upstream_dropping_without_close_gives_4503() {
    let up = fake(FakeBehavior::AcceptThenDrop).await;
    let gg = gateway(&config_for(&up.url())).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    assert_eq!(
        c.close_frame().await,
        (4503, "upstream connection lost".into())
    );
}

#[tokio::test]
async fn upstream_dying_mid_frame_ends_the_browser_stream_without_a_forged_close() {
    let up = fake(FakeBehavior::DropMidMessage).await;
    let gg = gateway(&config_for(&up.url())).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    // The header and the 10 bytes that arrived were forwarded; a close frame cannot follow
    // inside a frame, so the stream just ends.
    let mut got = Vec::new();
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(STEP, c.tcp.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got[..4], &[0x82, 126, 0x03, 0xe8]);
    assert_eq!(got.len(), 4 + 10);
}

/// (fin, opcode, payload, mask) of a frame a test client sends.
type Frame = (bool, u8, Vec<u8>, Option<[u8; 4]>);

#[tokio::test]
async fn protocol_violations_from_the_browser_get_the_right_code() {
    let up = fake(FakeBehavior::Echo).await;
    let mut config = config_for(&up.url());
    config.routes[0].relay.browser_max_frame_bytes = Some(1000);
    config.routes[0].relay.browser_max_message_bytes = Some(1500);
    let gg = gateway(&config).await;
    let cases: Vec<(Vec<Frame>, u16)> = vec![
        (vec![(true, 1, b"plain".to_vec(), None)], 1002),
        (vec![(true, 3, b"x".to_vec(), MASK)], 1002),
        (vec![(true, 9, vec![0; 126], MASK)], 1002),
        (vec![(false, 9, vec![], MASK)], 1002),
        (vec![(true, 0, b"x".to_vec(), MASK)], 1002),
        (
            vec![
                (false, 1, b"x".to_vec(), MASK),
                (true, 1, b"y".to_vec(), MASK),
            ],
            1002,
        ),
        (vec![(true, 2, vec![0; 1000], MASK)], 0),
        (vec![(true, 2, vec![0; 1001], MASK)], 1009),
        (
            vec![
                (false, 2, vec![0; 1000], MASK),
                (true, 0, vec![0; 500], MASK),
            ],
            0,
        ),
        (
            vec![
                (false, 2, vec![0; 1000], MASK),
                (true, 0, vec![0; 501], MASK),
            ],
            1009,
        ),
    ];
    for (frames, expected) in cases {
        let mut c = RawClient::connect(gg.addr, "").await;
        for (fin, op, payload, mask) in &frames {
            c.send(*fin, *op, payload, *mask).await;
        }
        if expected == 0 {
            // At the limit: relayed and echoed.
            let (op, payload) = c.frame().await.unwrap();
            assert_eq!(op, 2);
            assert_eq!(
                payload.len(),
                frames.iter().map(|f| f.2.len()).sum::<usize>()
            );
        } else {
            assert_eq!(
                c.close_frame().await.0,
                expected,
                "{:?}",
                frames
                    .iter()
                    .map(|f| (f.0, f.1, f.2.len()))
                    .collect::<Vec<_>>()
            );
        }
    }
    // A reserved-bit frame as well.
    let mut c = RawClient::connect(gg.addr, "").await;
    use tokio::io::AsyncWriteExt;
    c.tcp.write_all(&[0xC1, 0x80, 0, 0, 0, 0]).await.unwrap();
    assert_eq!(c.close_frame().await.0, 1002);
}

#[tokio::test]
async fn graceful_shutdown_sends_1001_and_readyz_turns_503() {
    let up = fake(FakeBehavior::Echo).await;
    let gg = gateway(&config_for(&up.url())).await;
    assert_eq!(http_get(gg.admin_addr, "/readyz").await.0, 200);
    let mut ws = ws_client(gg.addr).await;
    ws.send(Message::text("before")).await.unwrap();
    next(&mut ws).await;
    gg.shutdown();
    match next(&mut ws).await {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1001),
        other => panic!("expected close 1001, got {other:?}"),
    }
    // Like a browser, keep polling so the close reply goes out.
    tokio::spawn(async move { while ws.next().await.is_some() {} });
    let upstream_msgs = up.wait_for_received(2, STEP).await.unwrap();
    assert!(
        matches!(upstream_msgs.last(), Some(Message::Close(Some(f))) if u16::from(f.code) == 1001)
    );
    let report = tokio::time::timeout(STEP, gg.wait()).await.unwrap();
    assert_eq!(report.aborted, 0);
}

#[tokio::test]
async fn health_endpoints_answer() {
    let up = fake(FakeBehavior::Echo).await;
    let gg = gateway(&config_for(&up.url())).await;
    assert_eq!(
        http_get(gg.admin_addr, "/healthz").await,
        (200, r#"{"status":"ok"}"#.into())
    );
    assert_eq!(
        http_get(gg.admin_addr, "/readyz").await,
        (200, r#"{"ready":true}"#.into())
    );
}

#[tokio::test]
async fn plain_http_on_the_websocket_path_gets_426() {
    let up = fake(FakeBehavior::Echo).await;
    let gg = gateway(&config_for(&up.url())).await;
    assert_eq!(http_get(gg.addr, "/ws").await.0, 426);
}

#[tokio::test]
async fn metrics_count_a_relayed_connection_and_an_upstream_failure() {
    let up = fake(FakeBehavior::Echo).await;
    let gg = gateway(&config_for(&up.url())).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    c.send(true, 1, b"counted", MASK).await;
    assert_eq!(c.frame().await.unwrap(), (1, b"counted".to_vec()));
    c.send(true, 8, &close_payload(1000, ""), MASK).await;
    assert_eq!(c.close_frame().await.0, 1000);
    up.set_behavior(FakeBehavior::genesys_forbidden());
    let mut refused = RawClient::connect(gg.addr, "").await;
    assert_eq!(refused.close_frame().await.0, 4403);
    refused.send(true, 8, &close_payload(4403, ""), MASK).await;

    let mut text = String::new();
    for _ in 0..50 {
        text = http_get(gg.admin_addr, "/metrics").await.1;
        if text
            .contains(r#"guestgate_connections_total{outcome="upstream_failed",route="default"} 1"#)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for line in [
        r#"guestgate_connections_total{outcome="relayed",route="default"} 1"#,
        r#"guestgate_connections_total{outcome="upstream_failed",route="default"} 1"#,
        r#"guestgate_upstream_failures_total{kind="refused",route="default"} 1"#,
        r#"guestgate_messages_total{direction="browser_to_upstream",route="default"} 1"#,
        r#"guestgate_closes_total{code_class="normal",initiator="browser",route="default"} 1"#,
        r#"guestgate_closes_total{code_class="gg_refused",initiator="guestgate",route="default"} 1"#,
        r#"guestgate_connections_open{route="default"} 0"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    // 7 payload bytes + 6 header bytes, then the close frame (2 + 4 + 2).
    assert!(
        text.contains(
            r#"guestgate_bytes_total{direction="browser_to_upstream",route="default"} 21"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn connections_that_never_upgrade_release_their_slot() {
    let up = fake(FakeBehavior::Echo).await;
    let gg = gateway(&config_for(&up.url())).await;
    drop(tokio::net::TcpStream::connect(gg.addr).await.unwrap());
    assert_eq!(http_get(gg.addr, "/ws").await.0, 426);
    for _ in 0..100 {
        if gg
            .gateway
            .open_connections
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        gg.gateway
            .open_connections
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    gg.shutdown();
    let report = tokio::time::timeout(STEP, gg.wait()).await.unwrap();
    assert_eq!(report.aborted, 0);
}

#[tokio::test]
async fn traffic_of_a_live_connection_reaches_the_metrics_before_it_ends() {
    let up = fake(FakeBehavior::Echo).await;
    let mut config = config_for(&up.url());
    config.routes[0].relay.metrics_flush_interval = Duration::from_millis(200);
    let gg = gateway(&config).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    for _ in 0..3 {
        c.send(true, 2, &[7; 100], MASK).await;
        c.frame().await.unwrap();
    }
    let want = r#"guestgate_messages_total{direction="browser_to_upstream",route="default"} 3"#;
    let mut text = String::new();
    for _ in 0..50 {
        text = http_get(gg.admin_addr, "/metrics").await.1;
        if text.contains(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(text.contains(want), "{text}");
    assert!(
        text.contains(r#"guestgate_connections_open{route="default"} 1"#),
        "still open"
    );
    // Closing adds only what is new: the close frame, not the messages again.
    c.send(true, 8, &close_payload(1000, ""), MASK).await;
    c.close_frame().await;
    for _ in 0..50 {
        text = http_get(gg.admin_addr, "/metrics").await.1;
        if text.contains(r#"guestgate_connections_open{route="default"} 0"#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(text.contains(want), "{text}");
    assert!(
        text.contains(
            r#"guestgate_frames_total{direction="browser_to_upstream",route="default"} 4"#
        ),
        "{text}"
    );
}

/// The value of one sample line of `/metrics`, or `None` when the series is not exposed.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// `guestgate_bytes_total` of the default route in `direction`.
fn bytes_series(direction: &str) -> String {
    format!(r#"guestgate_bytes_total{{direction="{direction}",route="default"}}"#)
}

/// `guestgate_spliced_bytes_total` of the default route in `direction`.
fn spliced_series(direction: &str) -> String {
    format!(r#"guestgate_spliced_bytes_total{{direction="{direction}",route="default"}}"#)
}

/// The 1 MiB payload [`one_mib_relayed`] sends.
const MIB: u64 = 1 << 20;
/// Frame bytes the browser sends for it: the binary frame (2-byte header, 8-byte extended
/// length, 4-byte mask, payload), then an empty masked close frame (2 + 4).
const MIB_BROWSER_TO_UPSTREAM: u64 = 2 + 8 + 4 + MIB + 2 + 4;
/// Frame bytes the upstream sends back: the unmasked echo (2 + 8 + payload), then its empty
/// close reply (2).
const MIB_UPSTREAM_TO_BROWSER: u64 = 2 + 8 + MIB + 2;

/// Sends a 1 MiB message through a gateway on plain TCP legs, closes, waits (with a deadline)
/// until `/metrics` has counted every frame byte of both directions, and returns that text.
async fn one_mib_relayed(splice: bool) -> String {
    let up = fake(FakeBehavior::Echo).await;
    let mut config = config_for(&up.url());
    config.routes[0].relay.splice = splice;
    let gg = gateway(&config).await;
    let mut ws = ws_client(gg.addr).await;
    let big: Vec<u8> = (0..MIB).map(|i| (i % 241) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(big));
    ws.close(None).await.unwrap();
    let _ = next(&mut ws).await;
    let counted = |text: &str| {
        sample(text, &bytes_series("browser_to_upstream")) == Some(MIB_BROWSER_TO_UPSTREAM)
            && sample(text, &bytes_series("upstream_to_browser")) == Some(MIB_UPSTREAM_TO_BROWSER)
    };
    metrics_when(gg.admin_addr, "every relayed byte counted", counted).await
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn large_messages_on_plain_tcp_legs_are_spliced_not_copied() {
    let text = one_mib_relayed(true).await;
    // At most one read buffer (64 KiB) of each payload is copied: the rest was spliced.
    for direction in ["browser_to_upstream", "upstream_to_browser"] {
        let spliced = sample(&text, &spliced_series(direction));
        assert!(
            spliced.is_some_and(|n| (MIB - (64 << 10)..=MIB).contains(&n)),
            "{direction}: spliced {spliced:?} of a 1 MiB payload in\n{text}"
        );
    }
}

#[tokio::test]
async fn with_relay_splice_off_nothing_is_spliced() {
    // `one_mib_relayed` returns only once the traffic was counted, so an absent series
    // below means nothing was spliced, not that nothing was counted yet.
    let text = one_mib_relayed(false).await;
    for direction in ["browser_to_upstream", "upstream_to_browser"] {
        let spliced = sample(&text, &spliced_series(direction));
        assert!(
            matches!(spliced, None | Some(0)),
            "{direction}: spliced {spliced:?} with relay.splice off in\n{text}"
        );
    }
}
