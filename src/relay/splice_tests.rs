//! The relay between two plain TCP legs on loopback sockets, where large payloads are spliced:
//! bytes arrive identical, counters show which path carried them, and closes still work.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::ws::frame::encode;

const MASK: Option<[u8; 4]> = Some([0x5a, 0x01, 0xc3, 0x7e]);

fn cfg(splice: bool) -> RelayConfig {
    RelayConfig {
        browser_ping: None,
        upstream_ping: None,
        close_timeout: Duration::from_millis(500),
        splice,
        ..RelayConfig::default()
    }
}

fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::new();
    encode(&mut out, fin, opcode, payload, mask);
    out
}

/// A payload where every position differs from its neighbours, so a shifted, dropped or
/// repeated byte shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

use super::tcp::loopback_pair as socket_pair;

/// The browser's and upstream's far ends of a relay over real sockets.
struct Harness {
    browser: TcpStream,
    upstream: TcpStream,
    relay: tokio::task::JoinHandle<RelayReport>,
}

/// Starts `relay_tcp`; `browser_prefix` plays the bytes read past the browser's handshake.
async fn start(cfg: RelayConfig, browser_prefix: Vec<u8>) -> Harness {
    let (browser, browser_far) = socket_pair().await;
    let (upstream, upstream_far) = socket_pair().await;
    let relay = tokio::spawn(async move {
        let browser = Leg {
            io: browser_far,
            prefix: browser_prefix.into(),
        };
        relay_tcp(
            browser,
            Leg::new(upstream_far),
            &cfg,
            RelayExtras::default(),
            &CancellationToken::new(),
        )
        .await
    });
    Harness {
        browser,
        upstream,
        relay,
    }
}

/// Writes `bytes` on `to` while reading as many from `from`; returns what was read.
async fn pass(to: &mut TcpStream, from: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    let mut got = vec![0; bytes.len()];
    let (written, read) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(to.write_all(bytes), from.read_exact(&mut got))
    })
    .await
    .expect("relay stalled");
    written.unwrap();
    read.unwrap();
    got
}

/// Closes from the browser with 1000, answers from the upstream, and returns the report.
async fn close(mut h: Harness) -> RelayReport {
    let close = frame(true, 8, &1000u16.to_be_bytes(), MASK);
    assert_eq!(pass(&mut h.browser, &mut h.upstream, &close).await, close);
    let reply = frame(true, 8, &1000u16.to_be_bytes(), None);
    assert_eq!(pass(&mut h.upstream, &mut h.browser, &reply).await, reply);
    tokio::time::timeout(Duration::from_secs(10), h.relay)
        .await
        .expect("relay did not end")
        .unwrap()
}

/// Large and small messages, a fragmented one with a ping between its fragments, both ways.
fn traffic(mask: Option<[u8; 4]>, seed: u8) -> (Vec<u8>, u64) {
    let mut bytes = frame(true, 2, &pattern(1 << 20, seed), mask);
    bytes.extend(frame(true, 1, b"small", mask));
    bytes.extend(frame(false, 2, &pattern(300_000, seed ^ 1), mask));
    bytes.extend(frame(true, 9, b"keepalive?", mask));
    bytes.extend(frame(true, 0, &pattern(70_000, seed ^ 2), mask));
    bytes.extend(frame(true, 2, &pattern(40_000, seed ^ 3), mask));
    (bytes, 4)
}

#[tokio::test]
async fn spliced_payloads_arrive_identical_both_ways() {
    let mut h = start(cfg(true), Vec::new()).await;
    let (up, up_messages) = traffic(MASK, 7);
    assert_eq!(pass(&mut h.browser, &mut h.upstream, &up).await, up);
    let (down, down_messages) = traffic(None, 9);
    assert_eq!(pass(&mut h.upstream, &mut h.browser, &down).await, down);

    let report = close(h).await;
    assert_eq!(report.closer(), Closer::Browser);
    assert_eq!(report.code_to_upstream, Some(1000));
    assert_eq!(report.code_to_browser, Some(1000));
    // Every byte is counted (the masked close is 8 bytes, the reply 4), and most of the
    // payload bytes never touched the read buffer.
    assert_eq!(report.from_browser.bytes, up.len() as u64 + 8);
    assert_eq!(report.from_upstream.bytes, down.len() as u64 + 4);
    assert_eq!(report.from_browser.messages, up_messages);
    assert_eq!(report.from_upstream.messages, down_messages);
    for stats in [report.from_browser, report.from_upstream] {
        assert!(
            stats.spliced > (1 << 20),
            "expected the large payloads to be spliced, got {stats:?}"
        );
    }
}

#[tokio::test]
async fn with_splice_off_the_same_bytes_are_copied() {
    let mut h = start(cfg(false), Vec::new()).await;
    let (up, _) = traffic(MASK, 3);
    assert_eq!(pass(&mut h.browser, &mut h.upstream, &up).await, up);
    let report = close(h).await;
    assert_eq!(report.from_browser.spliced, 0);
    assert_eq!(report.from_upstream.spliced, 0);
}

#[tokio::test]
async fn read_ahead_bytes_go_first_even_inside_a_large_frame() {
    // The handshake read the header and the first 100 000 payload bytes of a 300 KiB frame:
    // more than one read buffer, so the pump meets the large frame before the prefix is used
    // up and must not splice from the socket yet.
    let whole = frame(true, 2, &pattern(300 << 10, 11), MASK);
    let (prefix, rest) = whole.split_at(100_014);
    let h = start(cfg(true), prefix.to_vec()).await;
    let (mut browser, mut upstream) = (h.browser, h.upstream);
    let mut got = vec![0; whole.len()];
    let (written, read) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(browser.write_all(rest), upstream.read_exact(&mut got))
    })
    .await
    .expect("relay stalled: bytes out of order or lost");
    written.unwrap();
    read.unwrap();
    assert!(
        got == whole,
        "the read-ahead bytes must come first, then the rest in order"
    );
    let report = close(Harness {
        browser,
        upstream,
        relay: h.relay,
    })
    .await;
    assert!(report.from_browser.spliced > 0);
}

#[tokio::test]
async fn a_limit_still_applies_to_a_frame_that_would_be_spliced() {
    let cfg = RelayConfig {
        browser_limits: Limits {
            max_frame: 100_000,
            max_message: 100_000,
        },
        ..cfg(true)
    };
    let mut h = start(cfg, Vec::new()).await;
    let too_big = frame(true, 2, &pattern(100_001, 5), MASK);
    h.browser.write_all(&too_big).await.unwrap();
    // The browser is told 1009 and nothing of the frame reaches the upstream.
    let mut head = [0u8; 4];
    h.browser.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], 0x88, "a close frame");
    let code = u16::from_be_bytes([head[2], head[3]]);
    assert_eq!(code, 1009);
    let mut first = [0u8; 2];
    h.upstream.read_exact(&mut first).await.unwrap();
    assert_eq!(
        first[0], 0x88,
        "the upstream's first frame is guestgate's close"
    );
}

#[tokio::test]
async fn upstream_lost_mid_spliced_payload_ends_the_relay() {
    let mut h = start(cfg(true), Vec::new()).await;
    // Half of a 1 MiB frame, then the upstream goes away.
    let whole = frame(true, 2, &pattern(1 << 20, 1), None);
    let half = &whole[..whole.len() / 2];
    assert_eq!(pass(&mut h.upstream, &mut h.browser, half).await, half);
    drop(h.upstream);
    let report = tokio::time::timeout(Duration::from_secs(10), h.relay)
        .await
        .expect("relay did not end")
        .unwrap();
    assert_eq!(report.closer(), Closer::Upstream);
    assert!(report.from_upstream.spliced > 0);
    // Mid-frame no close frame can be written (it would land inside the cut frame); the
    // browser's connection is ended with FIN instead, as on the copying path.
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), h.browser.read_to_end(&mut rest))
        .await
        .expect("browser leg was not ended")
        .expect("an orderly end, not a reset");
    assert_eq!(n, 0, "nothing may follow the cut frame");
}

/// Messages of small and large payloads (some fragmented, a ping after each first fragment),
/// the bytes the browser already sent during the handshake, and the sizes of the writes that
/// deliver the rest.
fn spliceable_stream() -> impl proptest::strategy::Strategy<Value = (Vec<u8>, usize, Vec<usize>)> {
    use proptest::prelude::*;
    let size = prop_oneof![0usize..200, 30_000usize..300_000];
    let message = (size, any::<u8>(), 1usize..4);
    (
        prop::collection::vec(message, 1..6),
        0usize..100_000,
        prop::collection::vec(1usize..200_000, 1..12),
    )
        .prop_map(|(messages, prefix, cuts)| {
            let mut bytes = Vec::new();
            for (len, seed, parts) in messages {
                let payload = pattern(len, seed);
                let step = len / parts + 1;
                let mut pieces: Vec<&[u8]> = payload.chunks(step).collect();
                if pieces.is_empty() {
                    pieces.push(&[]);
                }
                for (i, piece) in pieces.iter().enumerate() {
                    let opcode = if i == 0 { 2 } else { 0 };
                    encode(&mut bytes, i + 1 == pieces.len(), opcode, piece, MASK);
                    if i == 0 {
                        encode(&mut bytes, true, 9, b"between", MASK);
                    }
                }
            }
            let prefix = prefix.min(bytes.len());
            (bytes, prefix, cuts)
        })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    #[test]
    fn any_stream_over_tcp_arrives_identical((bytes, prefix, cuts) in spliceable_stream()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let h = start(cfg(true), bytes[..prefix].to_vec()).await;
            let (mut browser, mut upstream) = (h.browser, h.upstream);
            let rest = bytes[prefix..].to_vec();
            let writer = tokio::spawn(async move {
                let mut rest = &rest[..];
                for cut in cuts.iter().cycle() {
                    if rest.is_empty() {
                        break;
                    }
                    let n = (*cut).min(rest.len());
                    browser.write_all(&rest[..n]).await.unwrap();
                    rest = &rest[n..];
                    tokio::task::yield_now().await;
                }
                browser
            });
            let mut got = vec![0; bytes.len()];
            tokio::time::timeout(Duration::from_secs(20), upstream.read_exact(&mut got))
                .await
                .expect("relay stalled")
                .unwrap();
            proptest::prop_assert!(got == bytes, "bytes differ");
            let browser = writer.await.unwrap();
            let report = close(Harness { browser, upstream, relay: h.relay }).await;
            proptest::prop_assert_eq!(report.from_browser.bytes, bytes.len() as u64 + 8);
            Ok(())
        })?;
    }
}
