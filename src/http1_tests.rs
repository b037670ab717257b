//! Reading request heads and writing the one response, over in-memory pipes.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

const UPGRADE: &[u8] = b"GET /chat?resume=abc HTTP/1.1\r\nHost: gg.example\r\n\
    Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: https://a.example\r\n\r\n";

async fn read_from(pieces: Vec<Vec<u8>>) -> Result<Head, HeadError> {
    let (mut client, mut server) = duplex(64 * 1024);
    let writer = tokio::spawn(async move {
        for piece in pieces {
            client.write_all(&piece).await.unwrap();
            client.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
        // Dropping `client` ends the stream.
    });
    let head = read_head(&mut server).await;
    writer.await.unwrap();
    head
}

#[tokio::test]
async fn an_upgrade_head_parses_with_its_target_and_headers() {
    let head = read_from(vec![UPGRADE.to_vec()]).await.unwrap();
    let req = &head.request;
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri().path(), "/chat");
    assert_eq!(req.uri().query(), Some("resume=abc"));
    assert_eq!(req.headers()["origin"], "https://a.example");
    assert_eq!(req.headers()["sec-websocket-version"], "13");
    assert!(!head.has_body);
    assert!(head.ahead.is_empty());
}

#[tokio::test]
async fn bytes_behind_the_head_are_kept_exactly() {
    let mut bytes = UPGRADE.to_vec();
    bytes.extend_from_slice(&[0x81, 0x85, 1, 2, 3, 4, 9, 9, 9, 9, 9]);
    let head = read_from(vec![bytes]).await.unwrap();
    assert_eq!(&head.ahead[..], &[0x81, 0x85, 1, 2, 3, 4, 9, 9, 9, 9, 9]);
}

#[tokio::test]
async fn a_head_sent_one_byte_at_a_time_still_parses() {
    let pieces = UPGRADE.iter().map(|b| vec![*b]).collect();
    let head = read_from(pieces).await.unwrap();
    assert_eq!(head.request.uri().path(), "/chat");
}

#[tokio::test]
async fn a_head_over_the_limit_is_too_large_and_reading_stops_there() {
    let mut bytes = b"GET / HTTP/1.1\r\n".to_vec();
    while bytes.len() <= MAX_HEAD_BYTES + 4096 {
        bytes.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    // Never terminated: the reader must give up at the limit, not wait for more.
    let (mut client, mut server) = duplex(256 * 1024);
    client.write_all(&bytes).await.unwrap();
    let result = tokio::time::timeout(std::time::Duration::from_secs(5), read_head(&mut server))
        .await
        .expect("the reader stops at the limit by itself");
    assert_eq!(result.err(), Some(HeadError::TooLarge));
    let response = HeadError::TooLarge.response().unwrap();
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
}

#[tokio::test]
async fn too_many_header_lines_are_too_large() {
    let mut bytes = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        bytes.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    assert_eq!(
        read_from(vec![bytes]).await.err(),
        Some(HeadError::TooLarge)
    );
}

#[tokio::test]
async fn garbage_is_malformed_and_an_early_close_is_closed() {
    let garbage = read_from(vec![
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
    ])
    .await;
    assert!(matches!(garbage, Err(HeadError::Malformed(_))));
    assert_eq!(
        garbage.err().unwrap().response().unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let cut = read_from(vec![UPGRADE[..40].to_vec()]).await;
    assert_eq!(cut.err(), Some(HeadError::Closed));
    assert!(HeadError::Closed.response().is_none());
}

#[tokio::test]
async fn a_body_is_announced_by_content_length_or_transfer_encoding() {
    let with = |extra: &str| format!("GET /chat HTTP/1.1\r\nHost: h\r\n{extra}\r\n").into_bytes();
    assert!(
        !read_from(vec![with("Content-Length: 0\r\n")])
            .await
            .unwrap()
            .has_body
    );
    assert!(
        read_from(vec![with("Content-Length: 5\r\n")])
            .await
            .unwrap()
            .has_body
    );
    assert!(
        read_from(vec![with("Transfer-Encoding: chunked\r\n")])
            .await
            .unwrap()
            .has_body
    );
}

#[test]
fn the_101_names_the_chosen_protocol_only_when_there_is_one() {
    let with = String::from_utf8(switching_protocols(
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        Some("mqtt"),
    ))
    .unwrap();
    assert_eq!(
        with,
        "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nsec-websocket-protocol: mqtt\r\n\r\n"
    );
    let without = String::from_utf8(switching_protocols("x", None)).unwrap();
    assert!(!without.contains("sec-websocket-protocol"));
    assert!(without.ends_with("sec-websocket-accept: x\r\n\r\n"));
}

#[tokio::test]
async fn a_response_says_close_carries_its_length_and_ends_the_stream() {
    let (mut client, mut server) = duplex(64 * 1024);
    let mut response = crate::handshake::plain(StatusCode::TOO_MANY_REQUESTS, "slow down");
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, 7.into());
    respond_and_close(&mut server, response).await.unwrap();
    let mut out = String::new();
    client.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{head}"
    );
    let lines: Vec<&str> = head.lines().collect();
    assert!(lines.contains(&"connection: close"), "{head}");
    assert!(lines.contains(&"retry-after: 7"), "{head}");
    assert!(lines.contains(&"content-length: 10"), "{head}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("date: ") && l.ends_with(" GMT")),
        "{head}"
    );
    assert_eq!(body, "slow down\n");
}
