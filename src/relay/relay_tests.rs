//! Relay tests over in-memory pipes: byte fidelity, keepalive, close handshakes, violations.

use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::ws::frame::{self, PING_PAYLOAD, encode};

const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

fn cfg() -> RelayConfig {
    RelayConfig {
        browser_ping: None,
        upstream_ping: None,
        buffer_size: 4096,
        close_timeout: Duration::from_millis(500),
        ..RelayConfig::default()
    }
}

fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::new();
    encode(&mut out, fin, opcode, payload, mask);
    out
}

/// The browser's and upstream's ends of a running relay.
struct Harness {
    browser: DuplexStream,
    upstream: DuplexStream,
    relay: tokio::task::JoinHandle<RelayReport>,
    shutdown: CancellationToken,
}

fn start(cfg: RelayConfig) -> Harness {
    start_with(cfg, RelayExtras::default())
}

/// A relay between two in-memory pipes, with per-connection additions.
fn start_with(cfg: RelayConfig, extras: RelayExtras) -> Harness {
    let (browser, browser_far) = tokio::io::duplex(1 << 16);
    let (upstream, upstream_far) = tokio::io::duplex(1 << 16);
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let relay = tokio::spawn(async move {
        relay_with(
            Leg::new(browser_far),
            Leg::new(upstream_far),
            &cfg,
            extras,
            &token,
        )
        .await
    });
    Harness {
        browser,
        upstream,
        relay,
        shutdown,
    }
}

async fn read_exact(s: &mut DuplexStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut buf))
        .await
        .expect("timed out reading")
        .expect("read failed");
    buf
}

/// Reads one whole frame and returns (opcode, unmasked payload).
async fn read_frame(s: &mut DuplexStream) -> (u8, Vec<u8>) {
    let mut head = read_exact(s, 2).await;
    let mut len = u64::from(head[1] & 0x7f);
    if len == 126 {
        let ext = read_exact(s, 2).await;
        len = u64::from(u16::from_be_bytes([ext[0], ext[1]]));
        head.extend(ext);
    } else if len == 127 {
        let ext = read_exact(s, 8).await;
        len = u64::from_be_bytes(ext.clone().try_into().unwrap());
    }
    let mask = if head[1] & 0x80 != 0 {
        Some(<[u8; 4]>::try_from(read_exact(s, 4).await).unwrap())
    } else {
        None
    };
    let mut payload = read_exact(s, len as usize).await;
    if let Some(m) = mask {
        frame::apply_mask(&mut payload, m);
    }
    (head[0] & 0x0f, payload)
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

async fn expect_close(s: &mut DuplexStream, code: u16) -> String {
    let (op, payload) = read_frame(s).await;
    assert_eq!(op, 8, "expected a close frame, got opcode {op}");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code);
    String::from_utf8(payload[2..].to_vec()).unwrap()
}

async fn report(h: Harness) -> RelayReport {
    drop(h.browser);
    drop(h.upstream);
    tokio::time::timeout(Duration::from_secs(10), h.relay)
        .await
        .expect("relay did not end")
        .unwrap()
}

#[tokio::test]
async fn frames_pass_byte_for_byte_both_ways() {
    let mut h = start(cfg());
    let mut sent = frame(true, 1, b"hello", MASK);
    sent.extend(frame(false, 2, &[1, 2, 3], MASK));
    sent.extend(frame(true, 9, b"p", MASK));
    sent.extend(frame(true, 0, &[4; 70_000], MASK));
    sent.extend(frame(true, 2, b"", MASK));
    h.browser.write_all(&sent).await.unwrap();
    assert_eq!(read_exact(&mut h.upstream, sent.len()).await, sent);

    let back = frame(true, 2, &[9; 300], None);
    h.upstream.write_all(&back).await.unwrap();
    assert_eq!(read_exact(&mut h.browser, back.len()).await, back);

    h.browser
        .write_all(&frame(true, 8, &close_payload(1000, "bye"), MASK))
        .await
        .unwrap();
    assert_eq!(expect_close(&mut h.upstream, 1000).await, "bye");
    h.upstream
        .write_all(&frame(true, 8, &close_payload(1000, "ok"), None))
        .await
        .unwrap();
    assert_eq!(expect_close(&mut h.browser, 1000).await, "ok");
    let r = report(h).await;
    assert_eq!(r.closer(), Closer::Browser);
    assert_eq!(
        (r.code_to_upstream, r.code_to_browser),
        (Some(1000), Some(1000))
    );
    assert_eq!(r.from_browser.messages, 3);
    assert_eq!(r.from_browser.frames, 6);
    assert_eq!(r.from_upstream.messages, 1);
}

#[tokio::test]
async fn upstream_close_with_reason_reaches_the_browser() {
    let mut h = start(cfg());
    h.upstream
        .write_all(&frame(true, 8, &close_payload(4000, "agent left"), None))
        .await
        .unwrap();
    assert_eq!(expect_close(&mut h.browser, 4000).await, "agent left");
    h.browser
        .write_all(&frame(true, 8, &close_payload(4000, ""), MASK))
        .await
        .unwrap();
    expect_close(&mut h.upstream, 4000).await;
    let r = report(h).await;
    assert_eq!(r.closer(), Closer::Upstream);
}

#[tokio::test]
async fn unmasked_browser_frame_gets_1002_and_upstream_1001() {
    let mut h = start(cfg());
    h.browser
        .write_all(&frame(true, 1, b"x", None))
        .await
        .unwrap();
    let reason = expect_close(&mut h.browser, 1002).await;
    assert_eq!(reason, "protocol error");
    expect_close(&mut h.upstream, 1001).await;
    let r = report(h).await;
    assert_eq!(
        r.ending,
        Ending::Violation(
            Side::Browser,
            Violation::Protocol("browser frame not masked")
        )
    );
    assert_eq!(
        (r.code_to_browser, r.code_to_upstream),
        (Some(1002), Some(1001))
    );
}

#[tokio::test]
async fn message_over_limit_gets_1009_and_nothing_of_it_is_forwarded() {
    let mut c = cfg();
    c.browser_limits.max_message = 10;
    let mut h = start(c);
    let at_limit = frame(true, 2, &[7; 10], MASK);
    h.browser.write_all(&at_limit).await.unwrap();
    h.browser
        .write_all(&frame(false, 2, &[1; 6], MASK))
        .await
        .unwrap();
    h.browser
        .write_all(&frame(true, 0, &[1; 5], MASK))
        .await
        .unwrap();
    expect_close(&mut h.browser, 1009).await;
    let mut expected = at_limit;
    expected.extend(frame(false, 2, &[1; 6], MASK));
    assert_eq!(read_exact(&mut h.upstream, expected.len()).await, expected);
    expect_close(&mut h.upstream, 1001).await;
}

#[tokio::test]
async fn masked_upstream_frame_is_a_bad_gateway_for_the_browser() {
    let mut h = start(cfg());
    h.upstream
        .write_all(&frame(true, 1, b"x", MASK))
        .await
        .unwrap();
    expect_close(&mut h.upstream, 1002).await;
    expect_close(&mut h.browser, 4502).await;
}

#[tokio::test]
async fn upstream_transport_loss_becomes_4503() {
    let mut h = start(cfg());
    h.upstream
        .write_all(&frame(false, 1, b"half", None))
        .await
        .unwrap();
    let got = read_exact(&mut h.browser, 6).await;
    assert_eq!(&got[2..], b"half");
    drop(h.upstream);
    assert_eq!(
        expect_close(&mut h.browser, 4503).await,
        "upstream connection lost"
    );
}

#[tokio::test]
async fn browser_transport_loss_becomes_1001_upstream() {
    let mut h = start(cfg());
    drop(h.browser);
    assert_eq!(
        expect_close(&mut h.upstream, 1001).await,
        "browser went away"
    );
    let r = tokio::time::timeout(Duration::from_secs(10), h.relay)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.closer(), Closer::Browser);
}

#[tokio::test(start_paused = true)]
async fn pings_are_sent_and_their_pongs_consumed() {
    let mut c = cfg();
    c.upstream_ping = Some(Duration::from_secs(15));
    let mut h = start(c);
    tokio::time::sleep(Duration::from_secs(16)).await;
    let (op, payload) = read_frame(&mut h.upstream).await;
    assert_eq!((op, payload.as_slice()), (9, &PING_PAYLOAD[..]));
    // The answer is consumed; a pong that does not answer guestgate is forwarded.
    h.upstream
        .write_all(&frame(true, 10, PING_PAYLOAD, None))
        .await
        .unwrap();
    let other = frame(true, 10, b"page", None);
    h.upstream.write_all(&other).await.unwrap();
    assert_eq!(read_exact(&mut h.browser, other.len()).await, other);
}

#[tokio::test(start_paused = true)]
async fn silent_browser_is_closed_with_4408() {
    let mut c = cfg();
    c.idle_timeout = Duration::from_secs(60);
    let mut h = start(c);
    // Upstream traffic does not keep the browser leg alive.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(25)).await;
        h.upstream
            .write_all(&frame(true, 1, b"tick", None))
            .await
            .unwrap();
        read_frame(&mut h.browser).await;
    }
    let r = expect_close(&mut h.browser, 4408).await;
    assert_eq!(r, "idle timeout");
}

#[tokio::test]
async fn shutdown_sends_1001_to_both_legs() {
    let mut h = start(cfg());
    h.shutdown.cancel();
    expect_close(&mut h.browser, 1001).await;
    expect_close(&mut h.upstream, 1001).await;
    h.browser
        .write_all(&frame(true, 8, &close_payload(1001, ""), MASK))
        .await
        .unwrap();
    h.upstream
        .write_all(&frame(true, 8, &close_payload(1001, ""), None))
        .await
        .unwrap();
    let r = report(h).await;
    assert_eq!(r.ending, Ending::Shutdown);
}

fn chunked_stream() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    let message = (
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..3000),
        1usize..4,
    );
    (
        prop::collection::vec(message, 1..12),
        prop::collection::vec(1usize..5000, 1..40),
    )
        .prop_map(|(messages, cuts)| {
            let mut bytes = Vec::new();
            for (text, payload, parts) in messages {
                let step = payload.len() / parts + 1;
                let pieces: Vec<&[u8]> = payload.chunks(step).collect();
                let pieces = if pieces.is_empty() {
                    vec![&[][..]]
                } else {
                    pieces
                };
                for (i, piece) in pieces.iter().enumerate() {
                    let opcode = if i > 0 {
                        0
                    } else if text {
                        1
                    } else {
                        2
                    };
                    encode(&mut bytes, i + 1 == pieces.len(), opcode, piece, MASK);
                    if i == 0 {
                        encode(&mut bytes, true, 9, b"between", MASK);
                    }
                }
            }
            (bytes, cuts)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_stream_in_any_chunks_arrives_identical((bytes, cuts) in chunked_stream()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut h = start(RelayConfig { buffer_size: 1024, ..cfg() });
            let expected = bytes.clone();
            let mut browser = h.browser;
            let writer = tokio::spawn(async move {
                let mut rest = &bytes[..];
                for cut in cuts.iter().cycle() {
                    if rest.is_empty() { break; }
                    let n = (*cut).min(rest.len());
                    browser.write_all(&rest[..n]).await.unwrap();
                    rest = &rest[n..];
                    tokio::task::yield_now().await;
                }
                browser
            });
            let got = read_exact(&mut h.upstream, expected.len()).await;
            prop_assert_eq!(got, expected);
            h.browser = writer.await.unwrap();
            h.shutdown.cancel();
            Ok(())
        })?;
    }
}

#[tokio::test(start_paused = true)]
async fn slow_browser_stops_upstream_reads_then_stalls_out() {
    let h = start(RelayConfig {
        write_stall: Duration::from_secs(30),
        ..cfg()
    });
    let (mut up_rd, mut up_wr) = tokio::io::split(h.upstream);
    let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = tokio::spawn({
        let taken = taken.clone();
        async move {
            let chunk = frame(true, 2, &[5; 16 * 1024], None);
            for _ in 0..64 {
                if up_wr.write_all(&chunk).await.is_err() {
                    break;
                }
                taken.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    // The browser reads nothing. guestgate must stop reading the upstream (backpressure) and,
    // once its write has made no progress for write_stall, tell the upstream the browser is gone.
    // Just before the stall fires (paused time), only what fits in the pipes and one buffer was
    // taken from the upstream, not all 1 MiB. (Afterwards guestgate drains the upstream,
    // discarding, until its close reply.)
    tokio::time::sleep(Duration::from_secs(29)).await;
    let taken = taken.load(std::sync::atomic::Ordering::Relaxed);
    assert!(taken < 300 * 1024, "the upstream wrote {taken} bytes");
    let mut head = [0u8; 2];
    loop {
        up_rd.read_exact(&mut head).await.unwrap();
        if head[0] & 0x0f == 8 {
            break;
        }
    }
    let mut rest = vec![0u8; usize::from(head[1] & 0x7f) + 4];
    up_rd.read_exact(&mut rest).await.unwrap();
    let mut payload = rest[4..].to_vec();
    frame::apply_mask(&mut payload, rest[..4].try_into().unwrap());
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
    assert_eq!(&payload[2..], b"browser went away");
    writer.abort();
    drop(h.browser);
    let r = tokio::time::timeout(Duration::from_secs(60), h.relay)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.ending, Ending::DestinationStalled(Side::Browser));
    assert_eq!(r.code_to_upstream, Some(1001));
}

struct Upper;

impl MessageTransform for Upper {
    fn transform(&mut self, opcode: u8, message: &[u8]) -> Result<Vec<u8>, &'static str> {
        if opcode != 1 {
            return Err("only text messages are allowed");
        }
        Ok(message.to_ascii_uppercase())
    }
}

fn start_with_transform(cfg: RelayConfig) -> Harness {
    let transform: Box<dyn MessageTransform> = Box::new(Upper);
    start_with(
        cfg,
        RelayExtras {
            transform: Some(transform),
            live: None,
        },
    )
}

#[tokio::test]
async fn slow_path_reassembles_rewrites_and_remasks() {
    let mut h = start_with_transform(cfg());
    let mut sent = frame(false, 1, b"hel", MASK);
    sent.extend(frame(true, 9, b"ping", MASK));
    sent.extend(frame(true, 0, b"lo", MASK));
    // Arrive in awkward pieces.
    for piece in sent.chunks(3) {
        h.browser.write_all(piece).await.unwrap();
    }
    // The ping is relayed verbatim; the message comes whole, rewritten, with its own mask.
    assert_eq!(
        read_exact(&mut h.upstream, 10).await,
        frame(true, 9, b"ping", MASK)
    );
    let head = read_exact(&mut h.upstream, 2).await;
    assert_eq!(head, [0x81, 0x80 | 5]);
    let mask: [u8; 4] = read_exact(&mut h.upstream, 4).await.try_into().unwrap();
    let mut payload = read_exact(&mut h.upstream, 5).await;
    frame::apply_mask(&mut payload, mask);
    assert_eq!(payload, b"HELLO");
    // Upstream to browser stays verbatim.
    let back = frame(true, 1, b"lower", None);
    h.upstream.write_all(&back).await.unwrap();
    assert_eq!(read_exact(&mut h.browser, back.len()).await, back);
}

#[tokio::test]
async fn slow_path_refusal_closes_the_browser_with_1008() {
    let mut h = start_with_transform(cfg());
    h.browser
        .write_all(&frame(true, 1, b"ok", MASK))
        .await
        .unwrap();
    read_frame(&mut h.upstream).await;
    h.browser
        .write_all(&frame(true, 2, b"bin", MASK))
        .await
        .unwrap();
    assert_eq!(
        expect_close(&mut h.browser, 1008).await,
        "only text messages are allowed"
    );
    assert_eq!(
        expect_close(&mut h.upstream, 1001).await,
        "browser connection failed"
    );
}

#[tokio::test]
async fn misbehaving_browser_gets_the_upstreams_in_flight_reply_before_1002() {
    let mut h = start(cfg());
    h.browser
        .write_all(&frame(true, 1, b"valid", MASK))
        .await
        .unwrap();
    read_frame(&mut h.upstream).await;
    h.browser
        .write_all(&frame(true, 1, b"unmasked", None))
        .await
        .unwrap();
    // The upstream hears 1001 first, still sends its reply, then answers the close.
    expect_close(&mut h.upstream, 1001).await;
    h.upstream
        .write_all(&frame(true, 1, b"echo: valid", None))
        .await
        .unwrap();
    h.upstream
        .write_all(&frame(true, 8, &close_payload(1001, ""), None))
        .await
        .unwrap();
    assert_eq!(
        read_frame(&mut h.browser).await,
        (1, b"echo: valid".to_vec())
    );
    assert_eq!(expect_close(&mut h.browser, 1002).await, "protocol error");
}

#[test]
fn the_closer_and_the_outcome_derive_from_the_ending() {
    let cases = [
        (
            Ending::CloseHandshake {
                initiator: Side::Upstream,
            },
            Closer::Upstream,
            "relayed",
        ),
        (
            Ending::CloseTimedOut {
                initiator: Side::Browser,
            },
            Closer::Browser,
            "relayed",
        ),
        (
            Ending::TransportLost(Side::Browser),
            Closer::Browser,
            "relayed",
        ),
        (
            Ending::DestinationFailed(Side::Upstream),
            Closer::Upstream,
            "relayed",
        ),
        (
            Ending::DestinationStalled(Side::Browser),
            Closer::Guestgate,
            "relayed",
        ),
        (Ending::Idle(Side::Upstream), Closer::Guestgate, "relayed"),
        (Ending::Refused("not allowed"), Closer::Guestgate, "relayed"),
        (Ending::Shutdown, Closer::Guestgate, "shutdown"),
    ];
    for (ending, closer, outcome) in cases {
        assert_eq!(
            (ending.closer(), ending.outcome()),
            (closer, outcome),
            "{ending:?}"
        );
        assert!(!ending.why().is_empty());
    }
    assert_eq!(Ending::Refused("not allowed").why(), "not allowed");
}

#[tokio::test(start_paused = true)]
async fn after_an_upstream_stall_the_browsers_close_reply_is_read_at_once() {
    let close_timeout = Duration::from_secs(2);
    let h = start(RelayConfig {
        write_stall: Duration::from_secs(3),
        close_timeout,
        ..cfg()
    });
    // The upstream reads nothing: a 100 KiB browser message fills its pipe and stalls.
    let _upstream = h.upstream;
    let (mut b_rd, mut b_wr) = tokio::io::split(h.browser);
    b_wr.write_all(&frame(true, 2, &[3; 100 * 1024], MASK))
        .await
        .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(60), async {
        let (op, payload) = read_frame_from(&mut b_rd).await;
        assert_eq!(op, 8);
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 4504);
        String::from_utf8(payload[2..].to_vec()).unwrap()
    })
    .await
    .expect("the browser is told the upstream timed out");
    assert!(!reason.is_empty());
    let replied = tokio::time::Instant::now();
    b_wr.write_all(&frame(true, 8, &close_payload(1000, ""), MASK))
        .await
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(60), h.relay)
        .await
        .unwrap()
        .unwrap();
    let took = replied.elapsed();
    assert!(
        took < close_timeout / 4,
        "the close reply waited {took:?} behind the stalled write"
    );
    assert_eq!(r.ending, Ending::DestinationStalled(Side::Upstream));
    assert_eq!((r.code_to_browser, r.code_to_upstream), (Some(4504), None));
}

/// [`read_frame`] for any reader, small frames only.
async fn read_frame_from<R: tokio::io::AsyncRead + Unpin>(s: &mut R) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await.unwrap();
    let len = usize::from(head[1] & 0x7f);
    assert!(len < 126, "small frames only");
    let mut key = [0u8; 4];
    if head[1] & 0x80 != 0 {
        s.read_exact(&mut key).await.unwrap();
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.unwrap();
    frame::apply_mask(&mut payload, key);
    (head[0] & 0x0f, payload)
}

#[tokio::test(start_paused = true)]
async fn shutdown_mid_frame_finishes_the_frame_then_sends_1001() {
    let mut h = start(cfg());
    let payload: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    let whole = frame(true, 2, &payload, None);
    let head_len = whole.len() - payload.len();
    // The upstream is in the middle of a large message when shutdown fires.
    h.upstream
        .write_all(&whole[..head_len + 10_000])
        .await
        .unwrap();
    let mut got = read_exact(&mut h.browser, head_len + 10_000).await;
    h.shutdown.cancel();
    let (mut up_rd, mut up_wr) = tokio::io::split(h.upstream);
    let rest = whole[head_len + 10_000..].to_vec();
    let writer = tokio::spawn(async move {
        up_wr.write_all(&rest).await.unwrap();
        up_wr
    });
    got.extend(read_exact(&mut h.browser, whole.len() - got.len()).await);
    assert!(
        got == whole,
        "the browser got the whole frame, byte for byte"
    );
    expect_close(&mut h.browser, 1001).await;
    let mut up_wr = writer.await.unwrap();
    let (op, close) = read_frame_from(&mut up_rd).await;
    assert_eq!((op, &close[..2]), (8, &1001u16.to_be_bytes()[..]));
    h.browser
        .write_all(&frame(true, 8, &close_payload(1001, ""), MASK))
        .await
        .unwrap();
    up_wr
        .write_all(&frame(true, 8, &close_payload(1001, ""), None))
        .await
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), h.relay)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.ending, Ending::Shutdown);
    assert_eq!(
        (r.code_to_browser, r.code_to_upstream),
        (Some(1001), Some(1001))
    );
}

#[path = "limits_tests.rs"]
mod limits;
