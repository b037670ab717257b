//! Criterion benches for the relay core over in-memory pipes (`tokio::io::duplex`), side by side
//! with a naive message-level tokio-tungstenite relay over the same pipes.
//!
//! Each iteration the "browser" writes a batch of pre-encoded masked binary frames and the
//! "upstream" end reads and counts bytes until the whole batch has arrived; throughput is the
//! payload bytes of browser→upstream messages. Relay setup and teardown are outside the timed
//! part (`iter_custom`). A `frame_scan` group times header parsing and admission alone.
//!
//! Run: `cargo bench --bench relay_core` (see `benches/README.md`).

#[path = "e2e/naive.rs"]
mod naive;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use guestgate::relay::{Leg, LiveStats, RelayConfig, RelayExtras, relay, relay_with};
use guestgate::ws::frame::{self, Limits, MessageState, Side};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::runtime::Runtime;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tungstenite::protocol::Role;

/// Capacity of each in-memory pipe, roughly a loopback socket buffer.
const PIPE: usize = 64 << 10;

/// Payload sizes and how many messages one iteration sends.
const CASES: [(usize, usize, &str); 3] = [
    (64, 1024, "64B"),
    (16 << 10, 64, "16KiB"),
    (1 << 20, 4, "1MiB"),
];

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the bench runtime")
}

/// `count` masked binary frames of `size` bytes each, as a browser would send them.
fn browser_batch(size: usize, count: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
    let mut out = Vec::with_capacity(count * (size + 14));
    for i in 0..count {
        let mask = (i as u32).wrapping_mul(0x9E37_79B9).to_be_bytes();
        frame::encode(&mut out, true, 2, &payload, Some(mask));
    }
    out
}

/// Which relay sits between the pipes.
#[derive(Clone, Copy)]
enum Impl {
    Guestgate,
    /// guestgate with per-connection live traffic counters, as `serve` runs it for metrics.
    GuestgateMetrics,
    Naive,
}

/// Starts `which` between two fresh pipes; returns the browser's end, the upstream's end and
/// the relay task.
async fn start(which: Impl) -> (DuplexStream, DuplexStream, tokio::task::JoinHandle<()>) {
    let (browser, relay_browser_side) = duplex(PIPE);
    let (upstream, relay_upstream_side) = duplex(PIPE);
    let task = match which {
        Impl::Guestgate => tokio::spawn(async move {
            let cfg = RelayConfig::default();
            let stop = CancellationToken::new();
            let leg_b = Leg::new(relay_browser_side);
            let leg_u = Leg::new(relay_upstream_side);
            black_box(relay(leg_b, leg_u, &cfg, &stop).await);
        }),
        Impl::GuestgateMetrics => tokio::spawn(async move {
            let cfg = RelayConfig::default();
            let stop = CancellationToken::new();
            let leg_b = Leg::new(relay_browser_side);
            let leg_u = Leg::new(relay_upstream_side);
            let live = (
                Arc::new(LiveStats::default()),
                Arc::new(LiveStats::default()),
            );
            let extras = RelayExtras {
                transform: None,
                live: Some(live.clone()),
            };
            black_box(relay_with(leg_b, leg_u, &cfg, extras, &stop).await);
            black_box(live.0.snapshot());
        }),
        Impl::Naive => tokio::spawn(async move {
            let b = WebSocketStream::from_raw_socket(relay_browser_side, Role::Server, None).await;
            let u = WebSocketStream::from_raw_socket(relay_upstream_side, Role::Client, None).await;
            naive::relay(b, u).await;
        }),
    };
    (browser, upstream, task)
}

/// Reads exactly `n` bytes (discarding them) from `rd`.
async fn read_count(rd: &mut DuplexStream, mut n: usize, buf: &mut [u8]) {
    while n > 0 {
        let want = n.min(buf.len());
        let got = rd.read(&mut buf[..want]).await.expect("upstream read");
        assert!(got > 0, "relay closed the upstream pipe early");
        n -= got;
    }
}

/// Sends `iters` batches through a fresh relay and returns the time the batches took.
async fn run_batches(which: Impl, batch: &[u8], iters: u64) -> Duration {
    let (mut browser, mut upstream, task) = start(which).await;
    let mut buf = vec![0u8; 256 << 10];
    let started = Instant::now();
    for _ in 0..iters {
        let write = browser.write_all(batch);
        let read = read_count(&mut upstream, batch.len(), &mut buf);
        let (w, ()) = tokio::join!(write, read);
        w.expect("browser write");
    }
    let took = started.elapsed();
    drop(browser);
    drop(upstream);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    took
}

/// Outside the timing: one message goes through each relay and arrives as a frame carrying
/// the same payload (byte for byte after unmasking), so the bench measures working relays.
fn check_relays(rt: &Runtime) {
    rt.block_on(async {
        for which in [Impl::Guestgate, Impl::Naive] {
            let sent = browser_batch(1000, 1);
            let (mut browser, mut upstream, _task) = start(which).await;
            browser.write_all(&sent).await.unwrap();
            let mut got = vec![0u8; sent.len()];
            upstream.read_exact(&mut got).await.unwrap();
            let h = frame::parse_header(&got).unwrap().expect("a whole header");
            let mut payload = got[h.header_len..].to_vec();
            frame::apply_mask(
                &mut payload,
                h.mask.expect("upstream-bound frames are masked"),
            );
            let expect: Vec<u8> = (0..1000).map(|i| (i * 31 + 7) as u8).collect();
            assert_eq!(payload, expect, "relay altered the payload");
        }
    });
}

fn relay_throughput(c: &mut Criterion) {
    let rt = runtime();
    check_relays(&rt);
    let mut group = c.benchmark_group("relay_browser_to_upstream");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for (size, count, label) in CASES {
        let batch = browser_batch(size, count);
        group.throughput(Throughput::Bytes((size * count) as u64));
        for (which, name) in [
            (Impl::Guestgate, "guestgate"),
            (Impl::GuestgateMetrics, "guestgate_metrics"),
            (Impl::Naive, "naive"),
        ] {
            group.bench_with_input(BenchmarkId::new(name, label), &batch, |b, batch| {
                b.to_async(&rt)
                    .iter_custom(|iters| run_batches(which, batch, iters));
            });
        }
    }
    group.finish();
}

fn frame_scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_scan");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(2));
    // 1024 masked 64-byte frames: header parse and admission per frame, payload skipped.
    let batch = browser_batch(64, 1024);
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("parse_and_admit_64B_frames", |b| {
        b.iter(|| {
            let limits = Limits {
                max_frame: 16 << 20,
                max_message: 16 << 20,
            };
            let mut state = MessageState::new(Side::Browser, limits);
            let mut at = 0;
            let mut messages = 0u32;
            while at < batch.len() {
                let h = frame::parse_header(&batch[at..]).unwrap().unwrap();
                messages += state.admit(&h).unwrap() as u32;
                at += h.frame_len() as usize;
            }
            black_box(messages)
        });
    });
    group.finish();
}

criterion_group!(benches, relay_throughput, frame_scan);
criterion_main!(benches);
