//! Unit tests of the upstream upgrade against a scripted fake upstream on 127.0.0.1: the request
//! bytes guestgate sends, and how each kind of response is judged (variant and close code).

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use url::Url;

use super::{MAX_RESPONSE_HEAD, UpstreamConn, UpstreamError, UpstreamTarget, check_response};
use crate::close_code;

/// Bound on every await in these tests.
const DEADLINE: Duration = Duration::from_secs(5);

/// A query value and a header value that must never show up in an error.
const QUERY_SECRET: &str = "q-secret-7f3a";
const HEADER_SECRET: &str = "h-secret-91bc";

/// Builds the response chunks from the request's `Sec-WebSocket-Key`.
type Reply = Box<dyn FnOnce(&str) -> Vec<Vec<u8>> + Send>;

/// How the fake upstream answers once it has read the request head.
struct Script {
    /// The response chunks, given the request's `Sec-WebSocket-Key`; each is written (and
    /// flushed) on its own.
    reply: Reply,
    /// Sleep between chunks, so they reach guestgate as separate reads.
    pause: Option<Duration>,
    /// Close right after the reply instead of holding the connection until guestgate drops it.
    close: bool,
}

fn answer(reply: impl FnOnce(&str) -> Vec<Vec<u8>> + Send + 'static) -> Script {
    Script {
        reply: Box::new(reply),
        pause: None,
        close: false,
    }
}

/// A 101 with a correct accept for `key`, `extra` header lines (each ending in CRLF) and the
/// blank line.
fn ok_101(key: &str, extra: &str) -> Vec<u8> {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// Serves one connection on 127.0.0.1 by `script`; the task yields the request head it read.
async fn fake_upstream(script: Script) -> (u16, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let (mut tcp, _) = timeout(DEADLINE, listener.accept())
            .await
            .expect("accept in time")
            .expect("accept");
        let mut request = Vec::new();
        let mut chunk = [0u8; 4096];
        while !request.ends_with(b"\r\n\r\n") {
            let n = timeout(DEADLINE, tcp.read(&mut chunk))
                .await
                .expect("request in time")
                .expect("read request");
            if n == 0 {
                // guestgate gave up before sending a request.
                return request;
            }
            request.extend_from_slice(&chunk[..n]);
            assert!(request.len() < 64 * 1024, "request head runs on");
        }
        let text = String::from_utf8(request.clone()).expect("utf-8 request");
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap_or_default()
            .to_owned();
        for part in (script.reply)(&key) {
            // guestgate may hang up mid-reply (that is what some tests check).
            if timeout(DEADLINE, tcp.write_all(&part)).await.is_err() {
                break;
            }
            let _ = timeout(DEADLINE, tcp.flush()).await;
            if let Some(pause) = script.pause {
                tokio::time::sleep(pause).await;
            }
        }
        if !script.close {
            // Hold until guestgate closes its side (or the deadline).
            let _ = timeout(DEADLINE, async {
                while let Ok(n) = tcp.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        }
        request
    });
    (port, task)
}

fn target(port: u16, headers: HeaderMap) -> UpstreamTarget {
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    UpstreamTarget {
        url: Url::parse(&format!(
            "ws://127.0.0.1:{port}/chat/v1?token={QUERY_SECRET}&x=1"
        ))
        .expect("url"),
        headers,
        tls: Arc::new(tls),
        timeout: DEADLINE,
    }
}

fn secret_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("origin", HeaderValue::from_static("https://shop.example"));
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {HEADER_SECRET}")).expect("value"),
    );
    headers
}

/// Connects to a fake upstream running `script`; returns the outcome and the request head.
async fn run(
    script: Script,
    protocol: Option<&str>,
) -> (Result<UpstreamConn, UpstreamError>, Vec<u8>) {
    let (port, server) = fake_upstream(script).await;
    let target = target(port, secret_headers());
    let result = timeout(DEADLINE * 2, super::connect(&target, protocol))
        .await
        .expect("connect in time");
    // The fake holds until guestgate's side is gone; an error already dropped it.
    let result = match result {
        Ok(mut conn) => {
            let _ = timeout(DEADLINE, conn.stream.shutdown()).await;
            Ok(conn)
        }
        Err(e) => Err(e),
    };
    let request = timeout(DEADLINE * 2, server)
        .await
        .expect("fake upstream in time")
        .expect("fake upstream task");
    (result, request)
}

/// The error, after checking it carries no secret from the URL query or the headers.
fn expect_err(result: Result<UpstreamConn, UpstreamError>) -> UpstreamError {
    let err = match result {
        Ok(_) => panic!("upgrade succeeded where it should fail"),
        Err(e) => e,
    };
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(QUERY_SECRET), "query secret in {text}");
        assert!(!text.contains(HEADER_SECRET), "header secret in {text}");
    }
    err
}

fn bad_problem(err: &UpstreamError) -> &'static str {
    match err {
        UpstreamError::BadHandshake { problem, .. } => {
            assert_eq!(err.close_code(), close_code::UPSTREAM_BAD);
            assert_eq!(err.kind(), "bad_handshake");
            problem
        }
        other => panic!("expected BadHandshake, got {other:?}"),
    }
}

#[tokio::test]
async fn request_carries_host_key_version_extra_headers_and_protocol() {
    let (result, request) = run(
        answer(|key| vec![ok_101(key, "Sec-WebSocket-Protocol: v1.guest\r\n")]),
        Some("v1.guest"),
    )
    .await;
    let conn = result.expect("upgrade");
    assert!(conn.prefix.is_empty());

    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(&request).expect("request parses") {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => panic!("incomplete request"),
    };
    assert_eq!(len, request.len(), "nothing behind the request head");
    assert_eq!(parsed.method, Some("GET"));
    assert_eq!(
        parsed.path,
        Some(format!("/chat/v1?token={QUERY_SECRET}&x=1").as_str())
    );
    assert_eq!(parsed.version, Some(1));
    let got: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8(h.value.to_vec()).expect("utf-8 value"),
            )
        })
        .collect();
    let key = got
        .iter()
        .find(|(n, _)| n == "sec-websocket-key")
        .map(|(_, v)| v.clone())
        .expect("key sent");
    assert_eq!(key.len(), 24, "16 random bytes in base64");
    let host = got
        .iter()
        .find(|(n, _)| n == "host")
        .map(|(_, v)| v.clone())
        .expect("host sent");
    assert!(
        host.starts_with("127.0.0.1:") && host["127.0.0.1:".len()..].parse::<u16>().is_ok(),
        "host with port: {host}"
    );
    let expected: Vec<(String, String)> = [
        ("host", host.as_str()),
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", key.as_str()),
        ("origin", "https://shop.example"),
        ("authorization", &format!("Bearer {HEADER_SECRET}")),
        ("sec-websocket-protocol", "v1.guest"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn two_connects_send_different_keys() {
    let (first, one) = run(answer(|key| vec![ok_101(key, "")]), None).await;
    let (second, two) = run(answer(|key| vec![ok_101(key, "")]), None).await;
    first.expect("first upgrade");
    second.expect("second upgrade");
    let key = |r: &[u8]| {
        String::from_utf8_lossy(r)
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ").map(str::to_owned))
            .expect("key")
    };
    assert_ne!(key(&one), key(&two));
}

#[tokio::test]
async fn wrong_accept_is_a_bad_handshake() {
    let (result, _) = run(
        answer(|_| vec![ok_101("not-the-key-we-sent=====", "")]),
        None,
    )
    .await;
    let err = expect_err(result);
    assert_eq!(bad_problem(&err), "wrong or missing Sec-WebSocket-Accept");
}

#[tokio::test]
async fn forbidden_is_refused_403() {
    let (result, _) = run(
        answer(|_| vec![b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden".to_vec()]),
        None,
    )
    .await;
    let err = expect_err(result);
    match &err {
        UpstreamError::Refused { status, .. } => assert_eq!(*status, StatusCode::FORBIDDEN),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(err.close_code(), close_code::UPSTREAM_REFUSED);
    assert_eq!(err.close_code().code, 4403);
}

#[tokio::test]
async fn frame_bytes_behind_the_101_become_the_prefix_exactly() {
    let frame = [0x81u8, 0x05, b'h', b'e', b'l', b'l', b'o', 0x89, 0x00];
    let (result, _) = run(
        answer(move |key| {
            let mut all = ok_101(key, "");
            all.extend_from_slice(&frame);
            vec![all]
        }),
        None,
    )
    .await;
    let conn = result.expect("upgrade");
    assert_eq!(&conn.prefix[..], &frame[..]);
}

#[tokio::test]
async fn head_dribbled_one_byte_at_a_time_still_upgrades() {
    let frame = [0x82u8, 0x03, 1, 2, 3];
    let (port, server) = fake_upstream(Script {
        reply: Box::new(move |key| {
            let mut all = ok_101(key, "X-Note: slow\r\n");
            all.extend_from_slice(&frame);
            all.into_iter().map(|b| vec![b]).collect()
        }),
        pause: Some(Duration::from_millis(1)),
        close: true,
    })
    .await;
    let target = target(port, HeaderMap::new());
    let mut conn = timeout(DEADLINE * 2, super::connect(&target, None))
        .await
        .expect("connect in time")
        .expect("upgrade");
    // Whatever of the frame did not come with the head arrives on the stream.
    let mut rest = Vec::new();
    timeout(DEADLINE, conn.stream.read_to_end(&mut rest))
        .await
        .expect("rest in time")
        .expect("read rest");
    let mut seen = conn.prefix.to_vec();
    seen.extend_from_slice(&rest);
    assert_eq!(seen, frame);
    timeout(DEADLINE, server)
        .await
        .expect("fake in time")
        .expect("fake task");
}

#[test]
fn every_proper_prefix_of_a_head_is_incomplete_and_the_whole_is_accepted() {
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let head = ok_101(key, "Sec-WebSocket-Protocol: v1\r\n");
    for end in 0..head.len() {
        match check_response(&head[..end], &accept, Some("v1"), "h:1") {
            Ok(None) => {}
            other => panic!("prefix of {end} bytes: {:?}", other.map(|_| ())),
        }
    }
    let mut with_frame = head.clone();
    with_frame.extend_from_slice(&[0x81, 0x00]);
    assert_eq!(
        check_response(&with_frame, &accept, Some("v1"), "h:1").expect("valid"),
        Some(head.len())
    );
}

#[tokio::test]
async fn head_over_the_limit_is_a_bad_handshake() {
    // Header lines without an end, far past the limit: guestgate stops reading at the limit
    // instead of buffering on (it would otherwise sit until the connect timeout).
    let (result, _) = run(
        answer(|_| {
            let mut parts = vec![b"HTTP/1.1 101 Switching Protocols\r\n".to_vec()];
            let line = format!("X-Pad: {}\r\n", "a".repeat(1000)).into_bytes();
            parts.extend(std::iter::repeat_n(line, 4 * MAX_RESPONSE_HEAD / 1000));
            parts
        }),
        None,
    )
    .await;
    let err = expect_err(result);
    assert_eq!(bad_problem(&err), "upgrade response head is too long");
}

#[tokio::test]
async fn head_just_under_the_limit_is_accepted() {
    let (result, _) = run(
        answer(|key| {
            let base = ok_101(key, "").len();
            let pad = MAX_RESPONSE_HEAD - base - "X-Pad: \r\n".len();
            vec![ok_101(key, &format!("X-Pad: {}\r\n", "a".repeat(pad)))]
        }),
        None,
    )
    .await;
    let conn = result.expect("a head of exactly the limit upgrades");
    assert!(conn.prefix.is_empty());
}

#[tokio::test]
async fn too_many_headers_is_a_bad_handshake() {
    let (result, _) = run(
        answer(|key| vec![ok_101(key, &"X-A: 1\r\n".repeat(200))]),
        None,
    )
    .await;
    let err = expect_err(result);
    assert_eq!(
        bad_problem(&err),
        "no valid http response to the upgrade request"
    );
}

#[tokio::test]
async fn eof_mid_head_is_a_connect_error() {
    let (result, _) = run(
        Script {
            reply: Box::new(|_| vec![b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: web".to_vec()]),
            pause: None,
            close: true,
        },
        None,
    )
    .await;
    let err = expect_err(result);
    match &err {
        UpstreamError::Connect { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionAborted);
            assert_eq!(
                source.to_string(),
                "connection closed before the upgrade response"
            );
        }
        other => panic!("expected Connect, got {other:?}"),
    }
    assert_eq!(err.close_code(), close_code::UPSTREAM_UNAVAILABLE);
}

#[tokio::test]
async fn eof_before_any_response_is_a_connect_error() {
    let (result, _) = run(
        Script {
            reply: Box::new(|_| Vec::new()),
            pause: None,
            close: true,
        },
        None,
    )
    .await;
    let err = expect_err(result);
    assert!(matches!(err, UpstreamError::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn non_http_greeting_is_a_bad_handshake_without_waiting() {
    let (result, _) = run(answer(|_| vec![b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()]), None).await;
    let err = expect_err(result);
    assert_eq!(
        bad_problem(&err),
        "no valid http response to the upgrade request"
    );
}

/// A 101 whose headers are `lines` (each ending in CRLF) plus a correct accept.
fn custom_101(lines: &'static str) -> Script {
    answer(move |key| {
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        vec![
            format!(
                "HTTP/1.1 101 Switching Protocols\r\n{lines}Sec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .into_bytes(),
        ]
    })
}

#[tokio::test]
async fn missing_upgrade_header_is_a_bad_handshake() {
    let (result, _) = run(custom_101("Connection: Upgrade\r\n"), None).await;
    assert_eq!(bad_problem(&expect_err(result)), "missing Upgrade header");
}

#[tokio::test]
async fn upgrade_to_something_else_is_a_bad_handshake() {
    let (result, _) = run(custom_101("Upgrade: h2c\r\nConnection: Upgrade\r\n"), None).await;
    assert_eq!(
        bad_problem(&expect_err(result)),
        "Upgrade header is not websocket"
    );
}

#[tokio::test]
async fn connection_without_upgrade_token_is_a_bad_handshake() {
    for lines in [
        "Upgrade: websocket\r\n",
        "Upgrade: websocket\r\nConnection: keep-alive\r\n",
        "Upgrade: websocket\r\nConnection: upgraded\r\n",
    ] {
        let (result, _) = run(custom_101(lines), None).await;
        assert_eq!(
            bad_problem(&expect_err(result)),
            "Connection header lacks the upgrade token",
            "{lines:?}"
        );
    }
}

#[tokio::test]
async fn header_names_and_tokens_are_case_insensitive() {
    let (result, _) = run(
        answer(|key| {
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            vec![
                format!(
                    "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n\
                     CONNECTION: keep-alive, UPGRADE\r\nsec-websocket-accept: {accept}\r\n\r\n"
                )
                .into_bytes(),
            ]
        }),
        None,
    )
    .await;
    result.expect("upgrade");
}

#[tokio::test]
async fn accepted_extension_is_a_bad_handshake() {
    let (result, _) = run(
        answer(|key| {
            vec![ok_101(
                key,
                "Sec-WebSocket-Extensions: permessage-deflate\r\n",
            )]
        }),
        None,
    )
    .await;
    assert_eq!(
        bad_problem(&expect_err(result)),
        "upstream accepted an extension that was not offered"
    );
}

#[tokio::test]
async fn duplicate_accept_or_protocol_is_a_bad_handshake() {
    let (result, _) = run(
        answer(|key| {
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            vec![ok_101(key, &format!("Sec-WebSocket-Accept: {accept}\r\n"))]
        }),
        None,
    )
    .await;
    assert_eq!(
        bad_problem(&expect_err(result)),
        "duplicate Sec-WebSocket-Accept"
    );
    let (result, _) = run(
        answer(|key| {
            vec![ok_101(
                key,
                "Sec-WebSocket-Protocol: v1\r\nSec-WebSocket-Protocol: v1\r\n",
            )]
        }),
        Some("v1"),
    )
    .await;
    assert_eq!(
        bad_problem(&expect_err(result)),
        "duplicate Sec-WebSocket-Protocol"
    );
}

#[tokio::test]
async fn subprotocol_mismatch_is_a_subprotocol_error() {
    // Case matters, as before.
    let (result, _) = run(
        answer(|key| vec![ok_101(key, "Sec-WebSocket-Protocol: V1\r\n")]),
        Some("v1"),
    )
    .await;
    let err = expect_err(result);
    match &err {
        UpstreamError::Subprotocol { asked, got, .. } => {
            assert_eq!(asked.as_deref(), Some("v1"));
            assert_eq!(got.as_deref(), Some("V1"));
        }
        other => panic!("expected Subprotocol, got {other:?}"),
    }
    assert_eq!(err.close_code(), close_code::UPSTREAM_SUBPROTOCOL);

    // One selected where none was asked for.
    let (result, _) = run(
        answer(|key| vec![ok_101(key, "Sec-WebSocket-Protocol: v1\r\n")]),
        None,
    )
    .await;
    match expect_err(result) {
        UpstreamError::Subprotocol { asked, got, .. } => {
            assert_eq!(asked, None);
            assert_eq!(got.as_deref(), Some("v1"));
        }
        other => panic!("expected Subprotocol, got {other:?}"),
    }

    // None selected where one was asked for.
    let (result, _) = run(answer(|key| vec![ok_101(key, "")]), Some("v1")).await;
    match expect_err(result) {
        UpstreamError::Subprotocol { asked, got, .. } => {
            assert_eq!(asked.as_deref(), Some("v1"));
            assert_eq!(got, None);
        }
        other => panic!("expected Subprotocol, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_subprotocol_is_rejected_before_any_request() {
    let (result, request) = run(answer(|key| vec![ok_101(key, "")]), Some("v1\u{7f}")).await;
    assert_eq!(
        bad_problem(&expect_err(result)),
        "subprotocol is not a valid token"
    );
    assert!(request.is_empty(), "nothing was sent: {request:?}");
}

#[tokio::test]
async fn route_protocol_header_is_replaced_by_the_negotiated_one() {
    let (port, server) = fake_upstream(answer(|key| {
        vec![ok_101(key, "Sec-WebSocket-Protocol: v2\r\n")]
    }))
    .await;
    let mut headers = HeaderMap::new();
    headers.insert("sec-websocket-protocol", HeaderValue::from_static("v1"));
    let target = target(port, headers);
    let conn = timeout(DEADLINE * 2, super::connect(&target, Some("v2")))
        .await
        .expect("connect in time")
        .expect("upgrade");
    drop(conn);
    let request = timeout(DEADLINE * 2, server)
        .await
        .expect("fake in time")
        .expect("fake task");
    let text = String::from_utf8(request).expect("utf-8");
    let protocols: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.to_ascii_lowercase()
                .starts_with("sec-websocket-protocol:")
        })
        .collect();
    assert_eq!(protocols, ["Sec-WebSocket-Protocol: v2"]);
}
