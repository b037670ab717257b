//! Tests for `FakeUpstream`: each behaviour is checked from a real client on loopback.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error as WsError, Message};

use super::*;

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("test timed out")
}

async fn start(behavior: FakeBehavior) -> FakeUpstreamHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    FakeUpstream::start(listener, behavior)
}

async fn connect(h: &FakeUpstreamHandle) -> Result<Client, WsError> {
    tokio_tungstenite::connect_async(h.url())
        .await
        .map(|(ws, _)| ws)
}

/// Sends a raw upgrade request and returns everything the server wrote until EOF.
async fn raw_upgrade(h: &FakeUpstreamHandle) -> Vec<u8> {
    let mut tcp = TcpStream::connect(h.addr()).await.unwrap();
    let req = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
               Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out).await;
    out
}

#[tokio::test]
async fn echo_returns_same_types_and_records_everything() {
    within(async {
        let h = start(FakeBehavior::Echo).await;
        let mut ws = connect(&h).await.unwrap();
        ws.send(Message::text("hello")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
        ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::binary(vec![1u8, 2, 3])
        );
        ws.send(Message::Ping("p".into())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::Pong("p".into()));
        let frame = CloseFrame {
            code: CloseCode::Library(4001),
            reason: "bye".into(),
        };
        ws.send(Message::Close(Some(frame.clone()))).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::Close(Some(frame.clone()))
        );

        let got = h
            .wait_for_received(4, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(got[0], Message::text("hello"));
        assert_eq!(got[2], Message::Ping("p".into()));
        assert_eq!(got[3], Message::Close(Some(frame)));
        assert_eq!(h.accepted(), 1);
        assert_eq!(h.received_on(0).len(), 4);
    })
    .await
}

#[tokio::test]
async fn echo_handles_sixteen_mebibyte_messages() {
    within(async {
        let h = start(FakeBehavior::Echo).await;
        let cfg = ws_config();
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(h.url(), Some(cfg), false)
            .await
            .unwrap();
        let big = vec![7u8; 16 << 20];
        ws.send(Message::binary(big.clone())).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_data().len(), big.len());
    })
    .await
}

#[tokio::test]
async fn records_upgrade_headers_and_never_negotiates_extensions() {
    within(async {
        let h = start(FakeBehavior::Echo).await;
        let mut req = format!("{}chat?x=1", h.url())
            .into_client_request()
            .unwrap();
        let hd = req.headers_mut();
        hd.insert("origin", "https://site.example".parse().unwrap());
        hd.insert(
            "sec-websocket-extensions",
            "permessage-deflate".parse().unwrap(),
        );
        hd.insert(
            "sec-websocket-protocol",
            "v1.chat, v2.chat".parse().unwrap(),
        );
        hd.insert("authorization", "Bearer abc".parse().unwrap());
        hd.insert("cookie", "a=b".parse().unwrap());
        let (_ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert!(resp.headers().get("sec-websocket-extensions").is_none());
        assert_eq!(resp.headers()["sec-websocket-protocol"], "v1.chat");

        let r = &h.requests()[0];
        assert_eq!(r.uri, "/chat?x=1");
        assert_eq!(r.path(), "/chat");
        assert_eq!(r.query_param("x").as_deref(), Some("1"));
        assert_eq!(r.origin.as_deref(), Some("https://site.example"));
        assert_eq!(r.extensions.as_deref(), Some("permessage-deflate"));
        assert_eq!(r.protocol.as_deref(), Some("v1.chat, v2.chat"));
        assert_eq!(r.authorization.as_deref(), Some("Bearer abc"));
        assert_eq!(r.cookie.as_deref(), Some("a=b"));
        assert_eq!(r.header("Origin"), Some("https://site.example"));
    })
    .await
}

#[tokio::test]
async fn refuse_upgrade_answers_with_status_and_body() {
    within(async {
        let h = start(FakeBehavior::genesys_forbidden()).await;
        match connect(&h).await {
            Err(WsError::Http(resp)) => {
                assert_eq!(resp.status(), 403);
                let body = String::from_utf8(resp.body().clone().unwrap()).unwrap();
                assert!(body.contains("explicit deny"), "{body}");
            }
            other => panic!("expected an HTTP refusal, got {other:?}"),
        }
        assert_eq!((h.accepted(), h.refused(), h.requests().len()), (0, 1, 1));
    })
    .await
}

#[tokio::test]
async fn accept_then_close_sends_the_given_close() {
    within(async {
        let h = start(FakeBehavior::AcceptThenClose {
            code: 4003,
            reason: "nope".into(),
        })
        .await;
        let mut ws = connect(&h).await.unwrap();
        match ws.next().await.unwrap().unwrap() {
            Message::Close(Some(f)) => {
                assert_eq!(u16::from(f.code), 4003);
                assert_eq!(f.reason.as_str(), "nope");
            }
            other => panic!("expected close, got {other:?}"),
        }
        // Polling again flushes our automatic close reply, which the fake records.
        assert!(!matches!(ws.next().await, Some(Ok(_))));
        let got = h
            .wait_for_received(1, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(matches!(got[0], Message::Close(_)));
    })
    .await
}

#[tokio::test]
async fn accept_then_drop_ends_without_close_frame() {
    within(async {
        let h = start(FakeBehavior::AcceptThenDrop).await;
        let mut ws = connect(&h).await.unwrap();
        match ws.next().await {
            Some(Err(WsError::Protocol(_))) | Some(Err(WsError::Io(_))) | None => {}
            other => panic!("expected an abrupt end, got {other:?}"),
        }
        assert_eq!(h.accepted(), 1);
    })
    .await
}

#[tokio::test]
async fn drop_mid_message_writes_a_truncated_frame() {
    within(async {
        let h = start(FakeBehavior::DropMidMessage).await;
        let out = raw_upgrade(&h).await;
        let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(out.starts_with(b"HTTP/1.1 101"));
        let mut expected = vec![0x82, 126, 0x03, 0xE8];
        expected.extend_from_slice(&[0xAB; 10]);
        assert_eq!(&out[end..], &expected[..]);
    })
    .await
}

#[tokio::test]
async fn handshake_delay_holds_the_upgrade() {
    within(async {
        let h = start(FakeBehavior::HandshakeDelay(Duration::from_millis(300))).await;
        let t0 = Instant::now();
        let too_short = tokio::time::timeout(Duration::from_millis(100), connect(&h)).await;
        assert!(too_short.is_err(), "upgrade answered before the delay");
        let mut ws = connect(&h).await.unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(300));
        ws.send(Message::text("after")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("after"));
    })
    .await
}

#[tokio::test]
async fn silent_never_answers_pings() {
    within(async {
        let h = start(FakeBehavior::Silent).await;
        let mut ws = connect(&h).await.unwrap();
        ws.send(Message::Ping("x".into())).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_millis(300), ws.next()).await;
        assert!(reply.is_err(), "silent fake answered: {reply:?}");
        assert!(h.received().is_empty());
    })
    .await
}

#[tokio::test]
async fn behavior_changes_apply_to_new_connections_and_shutdown_stops() {
    within(async {
        let h = start(FakeBehavior::Echo).await;
        let mut first = connect(&h).await.unwrap();
        h.set_behavior(FakeBehavior::RefuseUpgrade {
            status: 503,
            body: "busy".into(),
        });
        assert!(matches!(connect(&h).await, Err(WsError::Http(r)) if r.status() == 503));
        // The connection accepted earlier keeps echoing.
        first.send(Message::text("still")).await.unwrap();
        assert_eq!(first.next().await.unwrap().unwrap(), Message::text("still"));

        h.shutdown().await;
        assert!(!matches!(first.next().await, Some(Ok(Message::Text(_)))));
        assert!(connect(&h).await.is_err());
    })
    .await
}
