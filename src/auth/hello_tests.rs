//! The hello exchange over in-memory pipes: what guestgate writes, how each kind of upstream
//! reply ends the exchange, and which bytes are handed on to the relay.

use serde_json::json;
use tokio::io::{AsyncWriteExt, DuplexStream};

use super::*;
use crate::ws::frame::Limits;

const READY: &[u8] = br#"{"class":"SessionResponse","code":200,"type":"response"}"#;

fn spec() -> HelloSpec {
    HelloSpec {
        frames: vec![r#"{"action":"configureSession"}"#.into()],
        ready: vec![
            Condition::eq("/class", json!("SessionResponse")),
            Condition::eq("/code", json!(200)),
        ],
        refused: vec![
            Condition::eq("/type", json!("response")),
            Condition::ne("/code", json!(200)),
        ],
        deadline: Duration::from_secs(5),
        max_reply: 64 * 1024,
    }
}

fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode(&mut out, fin, opcode, payload, None);
    out
}

/// Runs the exchange against `wire`, written by the upstream before guestgate reads.
async fn run(wire: &[u8]) -> (Result<(Value, Bytes), HelloError>, DuplexStream) {
    let (mut ours, mut theirs) = tokio::io::duplex(1 << 20);
    theirs.write_all(wire).await.unwrap();
    let result = exchange(&mut ours, Bytes::new(), &spec()).await;
    (result, theirs)
}

/// Everything guestgate wrote, decoded as client frames (which must be masked).
async fn written(theirs: &mut DuplexStream, count: usize) -> Vec<Event> {
    let limits = Limits {
        max_frame: 1 << 16,
        max_message: 1 << 16,
    };
    let mut reader = MessageReader::new(Side::Browser, limits, b"");
    let mut events = Vec::new();
    for _ in 0..count {
        events.push(reader.read_event(theirs).await.expect("a masked frame"));
    }
    events
}

fn text(payload: &str) -> Event {
    Event::Message {
        opcode: 1,
        payload: payload.as_bytes().to_vec(),
    }
}

#[tokio::test]
async fn hello_frames_are_masked_text_frames() {
    let (result, mut theirs) = run(&server_frame(true, 1, READY)).await;
    result.unwrap();
    let mut raw = [0u8; 2];
    tokio::io::AsyncReadExt::read_exact(&mut theirs, &mut raw)
        .await
        .unwrap();
    assert_eq!(raw[0], 0x81, "hello is a final text frame");
    assert!(raw[1] & 0x80 != 0, "hello is masked");
}

#[tokio::test]
async fn fragmented_ready_reply_is_reassembled() {
    let (first, rest) = READY.split_at(10);
    let (second, third) = rest.split_at(20);
    let mut wire = server_frame(false, 1, first);
    wire.extend(server_frame(false, 0, second));
    wire.extend(server_frame(true, 0, third));
    let (result, mut theirs) = run(&wire).await;
    let (ready, rest) = result.unwrap();
    assert_eq!(ready["class"], "SessionResponse");
    assert!(rest.is_empty());
    let hello = text(r#"{"action":"configureSession"}"#);
    assert_eq!(written(&mut theirs, 1).await, vec![hello]);
}

#[tokio::test]
async fn ping_in_the_middle_is_answered_with_a_masked_pong() {
    let (first, second) = READY.split_at(7);
    let mut wire = server_frame(false, 1, first);
    wire.extend(server_frame(true, 9, b"are you there"));
    wire.extend(server_frame(true, 0, second));
    let (result, mut theirs) = run(&wire).await;
    assert_eq!(result.unwrap().0["code"], 200);
    let events = written(&mut theirs, 2).await;
    assert_eq!(events[0], text(r#"{"action":"configureSession"}"#));
    // The reader on this side only accepts masked frames, so the pong was masked.
    assert_eq!(events[1], Event::Pong);
}

#[tokio::test]
async fn pong_echoes_the_ping_payload() {
    let mut wire = server_frame(true, 9, b"echo me");
    wire.extend(server_frame(true, 1, READY));
    let (result, mut theirs) = run(&wire).await;
    result.unwrap();
    let mut raw = Vec::new();
    let hello_len = 6 + r#"{"action":"configureSession"}"#.len();
    let want = hello_len + 6 + b"echo me".len();
    raw.resize(want, 0);
    tokio::io::AsyncReadExt::read_exact(&mut theirs, &mut raw)
        .await
        .unwrap();
    let pong = &raw[hello_len..];
    let h = frame::parse_header(pong).unwrap().unwrap();
    assert_eq!((h.kind, h.fin, h.payload_len), (frame::Kind::Pong, true, 7));
    let (payload, n) = frame::control_payload(pong, &h);
    assert_eq!(&payload[..n], b"echo me");
}

#[tokio::test]
async fn close_during_hello_is_reported() {
    let (result, _theirs) = run(&server_frame(true, 8, &[0x03, 0xe8])).await;
    assert!(matches!(result, Err(HelloError::Closed)), "{result:?}");
}

#[tokio::test]
async fn close_between_fragments_is_reported() {
    let mut wire = server_frame(false, 1, b"{\"class\"");
    wire.extend(server_frame(true, 8, &[0x03, 0xe9]));
    let (result, _theirs) = run(&wire).await;
    assert!(matches!(result, Err(HelloError::Closed)), "{result:?}");
}

#[tokio::test]
async fn oversize_reply_is_invalid() {
    let big = vec![b' '; 64 * 1024 + 1];
    // The header alone is enough: the payload never arrives.
    let wire = server_frame(true, 1, &big);
    let (result, _theirs) = run(&wire[..10]).await;
    assert!(
        matches!(
            result,
            Err(HelloError::Invalid("frame over the size limit"))
        ),
        "{result:?}"
    );

    let half = vec![b' '; 32 * 1024 + 1];
    let mut wire = server_frame(false, 1, &half);
    wire.extend(server_frame(true, 0, &half));
    let (result, _theirs) = run(&wire).await;
    assert!(
        matches!(
            result,
            Err(HelloError::Invalid("message over the size limit"))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn leftover_after_ready_is_kept_in_order() {
    let mut after = server_frame(true, 1, b"first");
    after.extend(server_frame(true, 9, b"p"));
    after.extend(server_frame(false, 2, b"frag"));
    // Half a frame: the relay gets the header and what there is of the payload.
    after.extend(&server_frame(true, 0, b"never finished")[..5]);
    let mut wire = server_frame(true, 1, READY);
    wire.extend(&after);
    let (result, _theirs) = run(&wire).await;
    let (ready, rest) = result.unwrap();
    assert_eq!(ready["code"], 200);
    assert_eq!(&rest[..], &after[..]);
}

#[tokio::test]
async fn ready_reply_in_the_prefix_needs_no_read() {
    let (mut ours, _theirs) = tokio::io::duplex(4096);
    let mut prefix = server_frame(true, 1, READY);
    prefix.extend(server_frame(true, 1, b"next"));
    let (ready, rest) = exchange(&mut ours, Bytes::from(prefix), &spec())
        .await
        .unwrap();
    assert_eq!(ready["code"], 200);
    assert_eq!(&rest[..], &server_frame(true, 1, b"next")[..]);
}

#[tokio::test]
async fn protocol_violations_are_invalid() {
    let mut masked = Vec::new();
    frame::encode(&mut masked, true, 1, READY, Some([1, 2, 3, 4]));
    let cases = [
        (
            server_frame(true, 0, READY),
            "continuation frame outside a message",
        ),
        (
            [server_frame(false, 1, b"{"), server_frame(true, 1, READY)].concat(),
            "new message inside a fragmented one",
        ),
        (server_frame(false, 9, b""), "fragmented control frame"),
        (masked, "upstream frame masked"),
    ];
    for (wire, why) in cases {
        let (result, _theirs) = run(&wire).await;
        assert!(
            matches!(result, Err(HelloError::Invalid(w)) if w == why),
            "{why}: {result:?}"
        );
    }
}

#[tokio::test]
async fn error_frame_is_a_refusal_with_its_code() {
    let reply = server_frame(
        true,
        1,
        br#"{"type":"response","class":"string","code":4007,"body":"x"}"#,
    );
    let (result, _theirs) = run(&reply).await;
    assert!(
        matches!(result, Err(HelloError::Refused { code: Some(4007) })),
        "{result:?}"
    );
}

#[tokio::test]
async fn other_replies_before_ready_are_skipped() {
    let mut wire = server_frame(true, 1, br#"{"type":"message","class":"Event"}"#);
    wire.extend(server_frame(true, 10, b"unsolicited"));
    wire.extend(server_frame(true, 1, READY));
    let (result, _theirs) = run(&wire).await;
    assert_eq!(result.unwrap().0["code"], 200);
}

#[tokio::test]
async fn a_stream_ending_mid_reply_is_closed() {
    let wire = server_frame(true, 1, READY);
    let (mut ours, mut theirs) = tokio::io::duplex(4096);
    theirs.write_all(&wire[..wire.len() - 3]).await.unwrap();
    drop(theirs);
    let result = exchange(&mut ours, Bytes::new(), &spec()).await;
    assert!(matches!(result, Err(HelloError::Closed)), "{result:?}");
}

#[tokio::test(start_paused = true)]
async fn silence_hits_the_deadline() {
    let (mut ours, _theirs) = tokio::io::duplex(4096);
    let err = exchange(&mut ours, Bytes::new(), &spec())
        .await
        .unwrap_err();
    assert!(matches!(err, HelloError::Timeout(_)));
}
