//! The slow path's reassembly is bounded by the route's message limit: an over-limit message
//! is refused from a frame header, before its payload is absorbed or rewritten.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::relay::{Leg, Limits, RelayConfig, RelayExtras, RelayReport, relay_with};

const MASK: Option<[u8; 4]> = Some([1, 2, 3, 4]);

/// Records the length of every message it is given and passes it through.
struct Record(Arc<Mutex<Vec<usize>>>);

impl MessageTransform for Record {
    fn transform(&mut self, _opcode: u8, message: &[u8]) -> Result<Vec<u8>, &'static str> {
        self.0.lock().unwrap().push(message.len());
        Ok(message.to_vec())
    }
}

struct Harness {
    browser: DuplexStream,
    upstream: DuplexStream,
    seen: Arc<Mutex<Vec<usize>>>,
    relay: tokio::task::JoinHandle<RelayReport>,
}

fn start(max_frame: u64, max_message: u64) -> Harness {
    let cfg = RelayConfig {
        browser_limits: Limits {
            max_frame,
            max_message,
        },
        browser_ping: None,
        upstream_ping: None,
        buffer_size: 4096,
        close_timeout: Duration::from_millis(500),
        ..RelayConfig::default()
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (browser, browser_far) = tokio::io::duplex(1 << 16);
    let (upstream, upstream_far) = tokio::io::duplex(1 << 16);
    let extras = RelayExtras {
        transform: Some(Box::new(Record(seen.clone()))),
        live: None,
    };
    let relay = tokio::spawn(async move {
        let token = CancellationToken::new();
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
        seen,
        relay,
    }
}

fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode(&mut out, fin, opcode, payload, MASK);
    out
}

/// Reads until the stream ends; returns the first frame's opcode and payload (unmasked).
async fn first_frame(s: &mut DuplexStream) -> (u8, Vec<u8>) {
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all))
        .await
        .expect("timed out")
        .unwrap();
    let h = frame::parse_header(&all).unwrap().expect("a whole frame");
    let mut payload = all[h.header_len..h.frame_len() as usize].to_vec();
    if let Some(mask) = h.mask {
        frame::apply_mask(&mut payload, mask);
    }
    (h.opcode, payload)
}

#[tokio::test]
async fn a_fragmented_message_over_the_limit_is_refused_before_it_is_absorbed() {
    let mut h = start(1000, 1500);
    // Exactly at the limit: reassembled and rewritten whole.
    let mut sent = frame(false, 1, &[b'a'; 1000]);
    sent.extend(frame(true, 0, &[b'b'; 500]));
    h.browser.write_all(&sent).await.unwrap();
    // One byte over, in three fragments: the third header already exceeds the limit.
    let mut sent = frame(false, 1, &[b'c'; 1000]);
    sent.extend(frame(false, 0, &[b'd'; 400]));
    sent.extend(frame(true, 0, &[b'e'; 101]));
    h.browser.write_all(&sent).await.unwrap();

    let mut upstream = Vec::new();
    let read = h.upstream.read_to_end(&mut upstream);
    let (browser_close, _) = tokio::join!(first_frame(&mut h.browser), read);
    assert_eq!(browser_close.0, 8);
    assert_eq!(&browser_close.1[..2], &1009u16.to_be_bytes());
    // Only the message at the limit ever reached the transform.
    assert_eq!(*h.seen.lock().unwrap(), vec![1500]);
    // Upstream got that message, then a close; none of the refused message's bytes.
    let first = frame::parse_header(&upstream).unwrap().unwrap();
    assert_eq!((first.opcode, first.payload_len), (1, 1500));
    let rest = &upstream[first.frame_len() as usize..];
    assert_eq!(rest[0], 0x88, "a close frame follows");
    assert!(!upstream.windows(4).any(|w| w == b"cccc" || w == b"dddd"));
    let report = h.relay.await.unwrap();
    assert_eq!(report.code_to_browser, Some(1009));
}

#[tokio::test]
async fn a_frame_over_the_limit_is_refused_from_its_header_alone() {
    let mut h = start(1000, 1500);
    // Only the header of a 16 MiB frame: the refusal cannot depend on its payload.
    let mut head = Vec::new();
    frame::encode(&mut head, true, 1, &[], MASK);
    head[1] = 0x80 | 127;
    head.splice(2..2, (16u64 << 20).to_be_bytes());
    h.browser.write_all(&head).await.unwrap();
    let (op, payload) = first_frame(&mut h.browser).await;
    assert_eq!((op, &payload[..2]), (8, &1009u16.to_be_bytes()[..]));
    assert!(h.seen.lock().unwrap().is_empty());
    drop(h.upstream);
}
