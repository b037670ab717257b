//! Hostile message shapes on the Genesys route (the rewrite path): the largest message the
//! route allows, one byte more, many tiny fragments, and a fragmented message that never ends.

use std::time::Duration;

use futures::future::join_all;
use tokio::io::AsyncWriteExt;

use super::{open_genesys, record_watch, tally};
use crate::Args;
use crate::client::{ClientError, Ending, client_frame, zero_array};
use crate::report::Report;

/// Fragment size of the `fragments` scenario.
const TINY_FRAGMENT: usize = 16;
/// The `fragments` message is capped at this size whatever the route's limit.
const FRAGMENTED_MESSAGE_CAP: usize = 1 << 20;

/// Whether an ending is a bounded, documented one: a close frame other than 1011, or the TCP
/// connection ended after guestgate refused to read on.
fn bounded(e: Ending) -> bool {
    matches!(e, Ending::Close(c) if c != 1011) || e == Ending::Dropped
}

/// N connections each send one `[0,0,...]` of exactly the route's limit, all at once.
pub async fn huge(args: &Args, report: &mut Report) -> Result<(), ClientError> {
    let n = args.connections.unwrap_or(8);
    let len = args.max_message as usize;
    let mut frame = Vec::with_capacity(len + 14);
    client_frame(&mut frame, true, 1, &zero_array(len));
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(open_genesys(args, "", None).await?.0);
    }
    let watches = join_all(
        clients
            .iter_mut()
            .map(|c| c.send_watching(&frame, Duration::from_secs(30))),
    )
    .await;
    report.set("connections", n);
    report.set("message_bytes", len);
    report.set(
        "endings",
        serde_json::to_value(tally(watches.iter().map(|w| w.ending))).unwrap(),
    );
    let slowest = watches.iter().map(|w| w.secs).fold(0.0, f64::max);
    report.set("slowest_close_secs", (slowest * 1000.0).round() / 1000.0);
    let unbounded = watches.iter().filter(|w| !bounded(w.ending)).count();
    report.check(unbounded == 0, || {
        format!("{unbounded} of {n} connections were not closed (or closed with 1011) within 30s")
    });
    Ok(())
}

/// One byte over the limit, as one frame and as fragments: both must end with 1009.
pub async fn over_limit(args: &Args, report: &mut Report) -> Result<(), ClientError> {
    let len = args.max_message as usize + 1;
    let message = zero_array(len);
    let mut whole = Vec::with_capacity(len + 14);
    client_frame(&mut whole, true, 1, &message);
    let mut fragmented = Vec::with_capacity(len + 64);
    let pieces: Vec<&[u8]> = message.chunks(len.div_ceil(4)).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let opcode = if i == 0 { 1 } else { 0 };
        client_frame(&mut fragmented, i + 1 == pieces.len(), opcode, piece);
    }
    report.set("message_bytes", len);
    for (name, bytes) in [("whole_", whole), ("fragmented_", fragmented)] {
        let (mut c, _) = open_genesys(args, "", None).await?;
        let w = c.send_watching(&bytes, Duration::from_secs(15)).await;
        record_watch(report, name, &w);
        report.check(w.ending == Ending::Close(1009), || {
            format!("{name}: expected close 1009, got {}", w.ending.label())
        });
    }
    Ok(())
}

/// One message of `[0,0,...]` (the route's limit, at most 1 MiB) in 16-byte fragments.
pub async fn fragments(args: &Args, report: &mut Report) -> Result<(), ClientError> {
    let len = (args.max_message as usize).min(FRAGMENTED_MESSAGE_CAP);
    let message = zero_array(len);
    let pieces: Vec<&[u8]> = message.chunks(TINY_FRAGMENT).collect();
    let mut bytes = Vec::with_capacity(len + pieces.len() * 6);
    for (i, piece) in pieces.iter().enumerate() {
        let opcode = if i == 0 { 1 } else { 0 };
        client_frame(&mut bytes, i + 1 == pieces.len(), opcode, piece);
    }
    let (mut c, _) = open_genesys(args, "", None).await?;
    let w = c.send_watching(&bytes, Duration::from_secs(20)).await;
    report.set("message_bytes", len);
    report.set("fragments", pieces.len());
    record_watch(report, "", &w);
    report.check(bounded(w.ending), || {
        format!("expected a close within 20s, got {}", w.ending.label())
    });
    Ok(())
}

/// A text message whose fragments keep coming (one every 250 ms) and never finish: guestgate
/// must close within the documented bound.
pub async fn unfinished(args: &Args, report: &mut Report) -> Result<(), ClientError> {
    let bound = args.fragment_bound_secs;
    let (c, _) = open_genesys(args, "", None).await?;
    let (mut reader, mut writer) = c.into_split();
    let attack = async move {
        let mut first = Vec::new();
        client_frame(&mut first, false, 1, b"[0");
        if writer.write_all(&first).await.is_err() {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let mut more = Vec::new();
            client_frame(&mut more, false, 0, b",0");
            if writer.write_all(&more).await.is_err() {
                return;
            }
        }
    };
    let w = reader
        .watch(attack, Duration::from_secs_f64(bound + 3.0))
        .await;
    report.set("bound_secs", bound);
    record_watch(report, "", &w);
    report.check(bounded(w.ending) && w.secs <= bound + 1.0, || {
        format!(
            "expected a close within {bound}s (+1s), got {} after {:.1}s",
            w.ending.label(),
            w.secs
        )
    });
    Ok(())
}
