//! Rate attacks on the Genesys route: pings and `onMessage` requests as fast as the socket
//! takes them. The browser message rate limit (pings included) must close the browser with
//! its documented code, or tell it so with a guestgate frame, long before the flood ends.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::{open_genesys, record_watch};
use crate::Args;
use crate::client::{ClientError, Ending, Watch, client_frame};
use crate::report::Report;
use crate::upstream;

/// How long a flood lasts at most.
const FLOOD_FOR: Duration = Duration::from_secs(3);
/// Frames written per batch.
const BATCH: usize = 200;
/// Most frames one flood sends.
const MAX_FRAMES: u64 = 50_000;

/// Pings with a 16-byte payload.
pub async fn ping_flood(args: &Args, report: &mut Report) -> Result<(), ClientError> {
    flood(args, report, 9, b"abuse-ping-flood").await
}

/// `onMessage` text requests.
pub async fn message_flood(args: &Args, report: &mut Report) -> Result<(), ClientError> {
    let msg = br#"{"action":"onMessage","message":{"type":"Text","text":"flood"}}"#;
    flood(args, report, 1, msg).await
}

async fn flood(
    args: &Args,
    report: &mut Report,
    opcode: u8,
    payload: &[u8],
) -> Result<(), ClientError> {
    let requests_before = upstream::counts(args.fake_stats)
        .await
        .map(|c| c.get("genesys", "requests"))
        .unwrap_or(0);
    let (c, _) = open_genesys(args, "", None).await?;
    let (mut reader, mut writer) = c.into_split();
    let mut batch = Vec::new();
    for _ in 0..BATCH {
        client_frame(&mut batch, true, opcode, payload);
    }
    let sent = std::sync::atomic::AtomicU64::new(0);
    let attack = async {
        let started = Instant::now();
        while started.elapsed() < FLOOD_FOR && sent.load(ORDER) < MAX_FRAMES {
            if writer.write_all(&batch).await.is_err() {
                return;
            }
            sent.fetch_add(BATCH as u64, ORDER);
        }
    };
    let w = reader
        .watch(attack, FLOOD_FOR + Duration::from_secs(2))
        .await;
    let requests_after = upstream::counts(args.fake_stats)
        .await
        .map(|c| c.get("genesys", "requests"))
        .unwrap_or(0);
    report.set("frames_sent", sent.load(ORDER));
    report.set(
        "upstream_requests",
        requests_after.saturating_sub(requests_before),
    );
    record_watch(report, "", &w);
    report.set("guestgate_frames", w.guestgate_classes.clone());
    let limited = rate_limited(&w, &args.rate_limit_codes);
    report.check(limited, || {
        format!(
            "expected the rate limit (close {:?} or a guestgate rate frame), got {} after {} frames",
            args.rate_limit_codes,
            w.ending.label(),
            sent.load(ORDER)
        )
    });
    Ok(())
}

const ORDER: std::sync::atomic::Ordering = std::sync::atomic::Ordering::Relaxed;

/// Whether the watch saw the rate limit act: a close with one of `codes`, or a frame of
/// guestgate's own whose class names a rate.
fn rate_limited(w: &Watch, codes: &[u16]) -> bool {
    let closed = matches!(w.ending, Ending::Close(c) if codes.contains(&c));
    let told = w
        .guestgate_classes
        .iter()
        .any(|c| c.to_ascii_lowercase().contains("rate"));
    closed || told
}
