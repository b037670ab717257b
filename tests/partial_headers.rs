//! Frame headers that arrive in several TCP segments: guestgate parses headers without
//! copying payloads, so a header cut anywhere (inside the 2 first bytes, the extended length
//! or the mask) must be reassembled and the message relayed byte for byte, on both legs.

mod common;

use common::split_echo::{SplitEcho, every_header_byte, write_in_pieces};
use common::*;
use guestgate::ws::frame::encode;

/// Sends `payload` as one masked frame cut at `cuts`, and checks the echo that comes back.
async fn round_trip(c: &mut RawClient, opcode: u8, payload: &[u8], cuts: fn(&[u8]) -> Vec<usize>) {
    let mut frame = Vec::new();
    encode(&mut frame, true, opcode, payload, MASK);
    let cuts = cuts(&frame);
    write_in_pieces(&mut c.tcp, &frame, &cuts).await;
    let (op, echoed) = c.frame().await.expect("the echo arrives");
    assert_eq!(op, opcode, "cut at {cuts:?}");
    assert!(
        echoed == payload,
        "the echo of a {}-byte payload cut at {cuts:?} differs",
        payload.len()
    );
}

/// Asserts the upstream received exactly `sent` as whole data frames, in order.
fn assert_upstream_got(up: &SplitEcho, sent: &[(u8, Vec<u8>)]) {
    let got: Vec<(u8, Vec<u8>)> = up
        .received()
        .into_iter()
        .filter(|(_, op, _)| *op < 8)
        .map(|(fin, op, payload)| {
            assert!(fin, "a whole message arrives as one final frame");
            (op, payload)
        })
        .collect();
    assert_eq!(got.len(), sent.len());
    for (i, (g, s)) in got.iter().zip(sent).enumerate() {
        assert!(g == s, "message {i}: the upstream got different bytes");
    }
}

/// Ends the relay with a close handshake (the upstream echoes the close).
async fn close(c: &mut RawClient) {
    c.send(true, 8, &close_payload(1000, ""), MASK).await;
    assert_eq!(c.close_frame().await.0, 1000);
}

#[tokio::test]
async fn headers_sent_one_byte_at_a_time_are_relayed_intact_both_ways() {
    // The upstream cuts its echoes' headers after every byte too.
    let up = SplitEcho::start(|_, frame| every_header_byte(frame)).await;
    let gg = gateway(&config_for(&up.url())).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    // A 7-bit, a 16-bit and a 64-bit length, text and binary.
    let sent: Vec<(u8, Vec<u8>)> = vec![
        (1, b"hello, byte by byte".to_vec()),
        (2, (0..300).map(|i| (i % 256) as u8).collect()),
        (2, (0..70_000).map(|i| (i % 253) as u8).collect()),
        (1, "é".repeat(200).into_bytes()),
    ];
    for (opcode, payload) in &sent {
        round_trip(&mut c, *opcode, payload, every_header_byte).await;
    }
    close(&mut c).await;
    assert_upstream_got(&up, &sent);
}

/// Messages for the every-position test: one per cut position of the browser's header
/// (2 + 8 extended length + 4 mask = 14 bytes, so cuts 1..=13).
const POSITIONS: usize = 13;
/// Long enough to need the 64-bit extended length.
const LONG: usize = 70_000;

#[tokio::test]
async fn a_64_bit_length_header_cut_at_every_position_is_relayed_intact_both_ways() {
    // The upstream's echo header is 10 bytes (no mask): its n-th echo is cut at 1 + n % 9,
    // so every position 1..=9 is cut at least once.
    let up = SplitEcho::start(|n, _| vec![1 + n % 9]).await;
    let gg = gateway(&config_for(&up.url())).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    let mut sent = Vec::new();
    for n in 0..POSITIONS {
        let payload: Vec<u8> = (0..LONG).map(|i| (i * 7 + n) as u8).collect();
        let mut frame = Vec::new();
        encode(&mut frame, true, 2, &payload, MASK);
        assert_eq!(frame[1] & 0x7f, 127, "a 64-bit extended length");
        write_in_pieces(&mut c.tcp, &frame, &[n + 1]).await;
        let (op, echoed) = c.frame().await.expect("the echo arrives");
        assert_eq!(op, 2, "browser cut at {}", n + 1);
        assert!(echoed == payload, "browser cut at {}: echo differs", n + 1);
        sent.push((2, payload));
    }
    close(&mut c).await;
    assert_upstream_got(&up, &sent);
}
