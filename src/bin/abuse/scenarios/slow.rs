//! Slow peers after the upgrade: browsers that trickle a frame header one byte per second
//! (the relay's slow-loris), and browsers that never read while the upstream floods them.
//! Their memory cost is measured by the script from `/proc`; this side checks they still
//! work (slow frames) or are ended with their upstream (slow readers).

use std::time::Duration;

use futures::future::join_all;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::spread_source;
use crate::Args;
use crate::client::{Client, ClientError, client_frame};
use crate::report::Report;
use crate::upstream;

/// Second octet of the spread addresses slow-frame connections come from.
const SLOW_FRAMES_NET: u8 = 4;
/// Second octet of the spread addresses slow readers come from.
const SLOW_READERS_NET: u8 = 5;
/// Pause between two trickled header bytes.
const TRICKLE: Duration = Duration::from_millis(800);

/// Connections on the echo route that send a 6-byte masked header one byte at a time, then
/// the payload, and expect the echo.
pub async fn slow_frames(args: &Args, report: &mut Report) -> Result<(), ClientError> {
    let n = args.connections.unwrap_or(300);
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let source = Some(spread_source(SLOW_FRAMES_NET, i));
        let target = args.browser();
        let open = Client::open(&target, &args.echo_path, source, Duration::from_secs(5));
        clients.push(open.await?);
    }
    let mut frame = Vec::new();
    client_frame(&mut frame, true, 1, b"slow!");
    let started = Instant::now();
    let results = join_all(clients.iter_mut().map(|c| {
        let frame = frame.clone();
        async move {
            // Header bytes one by one, the last of them together with the payload.
            for b in &frame[..5] {
                c.stream.write_all(&[*b]).await.ok()?;
                tokio::time::sleep(TRICKLE).await;
            }
            c.stream.write_all(&frame[5..]).await.ok()?;
            let echoed = c.read_frame(Duration::from_secs(5)).await.ok()??;
            Some(echoed.payload == b"slow!")
        }
    }))
    .await;
    let echoed = results.iter().filter(|r| **r == Some(true)).count();
    report.set("connections", n);
    report.set("trickle_secs", started.elapsed().as_secs_f64());
    report.set("echoed", echoed);
    report.check(echoed == n, || {
        format!("only {echoed} of {n} trickled frames were echoed")
    });
    Ok(())
}

/// Browsers on the flood route that never read. guestgate must stop reading the upstream
/// (memory stays bounded) and, after `write_stall_timeout`, end both legs.
pub async fn slow_readers(args: &Args, report: &mut Report) -> Result<(), ClientError> {
    let n = args.connections.unwrap_or(50);
    let before = upstream::counts(args.fake_stats)
        .await
        .map_err(ClientError::Unexpected)?;
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let source = Some(spread_source(SLOW_READERS_NET, i));
        let target = args.browser();
        let open = Client::open(&target, &args.flood_path, source, Duration::from_secs(5));
        clients.push(open.await?);
    }
    let started = Instant::now();
    // Hold without reading; watch the flood upstream's sockets go.
    let bound = args.write_stall_secs + args.close_timeout_secs;
    let within = Duration::from_secs_f64(bound + 4.0);
    let mut ended_after = None;
    while started.elapsed() < within {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let c = upstream::counts(args.fake_stats)
            .await
            .map_err(ClientError::Unexpected)?;
        if c.get("flood", "open") <= before.get("flood", "open") {
            ended_after = Some(started.elapsed().as_secs_f64());
            break;
        }
    }
    report.set("connections", n);
    report.set("write_stall_secs", args.write_stall_secs);
    match ended_after {
        Some(s) => {
            report.set("upstreams_ended_secs", (s * 1000.0).round() / 1000.0);
            report.check(s <= args.write_stall_secs + 3.0, || {
                format!(
                    "stalled relays ended after {s:.1}s (write_stall_timeout {}s)",
                    args.write_stall_secs
                )
            });
        }
        None => report.fail(format!(
            "flood upstreams of never-reading browsers still open after {:.0}s",
            within.as_secs_f64()
        )),
    }
    for c in clients {
        c.reset();
    }
    Ok(())
}
