//! Attacks around the upgrade: connections that reset as soon as they are upgraded (while
//! their upstream set-up runs), thousands of idle TCP sockets from one address, and upgrade
//! requests trickled one byte per second.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::{open_genesys, spread_source};
use crate::Args;
use crate::client::{ClientError, echo_request, tcp_connect, upgrade_request};
use crate::report::Report;

/// The address idle sockets come from.
const IDLE_SOURCE: [u8; 4] = [127, 0, 0, 2];
/// The address slow-header sockets come from.
const SLOW_SOURCE: [u8; 4] = [127, 0, 0, 3];
/// Browsers that try to chat during the idle flood.
const CHATS: usize = 3;
/// How soon a normal browser must be chatting during the idle flood.
const CHAT_WITHIN: Duration = Duration::from_secs(1);

/// Outcome of one reset-storm connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storm {
    Upgraded,
    Refused,
    Failed,
}

/// 1000 connections (from spread addresses) upgrade on the Genesys route and reset at once.
pub async fn reset_storm(args: &Args, report: &mut Report) -> Result<(), ClientError> {
    let n = args.connections.unwrap_or(1000);
    // "Open and reset at once": every connection gets its answer (101 or a refusal) first,
    // then all reset together, so each admitted set-up holds its slot until the reset and the
    // cap, not the order of arrival, decides how many set-ups begin.
    let all_answered = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let one = |i: usize| {
        let all_answered = all_answered.clone();
        async move {
            let run = async {
                let mut s = tcp_connect(args.target, Some(spread_source(2, i))).await?;
                s.write_all(upgrade_request(&args.browser(), &args.genesys_path).as_bytes())
                    .await
                    .map_err(|source| ClientError::Io {
                        what: "writing the upgrade request",
                        source,
                    })?;
                let mut head = [0u8; 12];
                let got = s.read_exact(&mut head).await.is_ok();
                let outcome = if got && head.starts_with(b"HTTP/1.1 101") {
                    Storm::Upgraded
                } else {
                    Storm::Refused
                };
                Ok::<_, ClientError>((s, outcome))
            };
            let answered = timeout(Duration::from_secs(10), run).await;
            all_answered.wait().await;
            match answered {
                Ok(Ok((s, outcome))) => {
                    let _ = s.set_zero_linger();
                    drop(s);
                    outcome
                }
                _ => Storm::Failed,
            }
        }
    };
    let started = Instant::now();
    let outcomes = join_all((0..n).map(one)).await;
    let count = |o: Storm| outcomes.iter().filter(|x| **x == o).count();
    report.set("connections", n);
    report.set("upgraded", count(Storm::Upgraded));
    report.set("refused", count(Storm::Refused));
    report.set("failed", count(Storm::Failed));
    report.set("storm_secs", started.elapsed().as_secs_f64());
    report.set("max_setups", args.max_setups);
    Ok(())
}

/// Idle TCP sockets from 127.0.0.2, each re-opened as soon as guestgate drops it (as a real
/// attacker would), then a chat from 127.0.0.1 that must work within 1 s.
pub async fn idle_flood(args: &Args, report: &mut Report) -> Result<(), ClientError> {
    let n = args.connections.unwrap_or(3000);
    let source = IpAddr::from(IDLE_SOURCE);
    let stop = CancellationToken::new();
    let connected = Arc::new(AtomicUsize::new(0));
    let reopened = Arc::new(AtomicUsize::new(0));
    let mut holders = Vec::with_capacity(n);
    for _ in 0..n {
        let (stop, connected, reopened) = (stop.clone(), connected.clone(), reopened.clone());
        let target = args.target;
        holders.push(tokio::spawn(async move {
            let mut first = true;
            while !stop.is_cancelled() {
                let attempt = timeout(Duration::from_secs(2), tcp_connect(target, Some(source)));
                let Ok(Ok(mut s)) = attempt.await else {
                    continue;
                };
                connected.fetch_add(usize::from(first), Ordering::Relaxed);
                reopened.fetch_add(usize::from(!first), Ordering::Relaxed);
                first = false;
                let mut sink = [0u8; 64];
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = s.read(&mut sink) => {}
                }
                let _ = s.set_zero_linger();
            }
        }));
    }
    // Let the flood fill guestgate's slots (`server.max_connections`) and some of its accept
    // queue, at most 4 s; then chat at once, well before the handshake timeout frees the
    // first wave.
    let full = n.min(args.max_connections + 50);
    let filling = Instant::now();
    while connected.load(Ordering::Relaxed) < full && filling.elapsed() < Duration::from_secs(4) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    report.set("fill_secs", filling.elapsed().as_secs_f64());
    report.set("idle_sockets", connected.load(Ordering::Relaxed));
    // Three browsers, 300 ms apart, so one lucky moment (a wave of idle sockets just timed
    // out) does not hide the queue the others wait in; the slowest counts.
    let mut slowest = 0.0f64;
    let mut failure = None;
    for i in 0..CHATS {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let started = Instant::now();
        let chat = async {
            let (mut c, _) = open_genesys(args, "", Some(IpAddr::from([127, 0, 0, 1]))).await?;
            c.send_json(&echo_request("still here")).await?;
            c.wait_json(Duration::from_secs(10), |v| {
                v["body"]["text"] == "still here"
            })
            .await
        };
        match timeout(Duration::from_secs(10), chat).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => failure = Some(format!("the browser from 127.0.0.1 could not chat: {e}")),
            Err(_) => failure = Some("the browser from 127.0.0.1 could not chat within 10s".into()),
        }
        slowest = slowest.max(started.elapsed().as_secs_f64());
    }
    stop.cancel();
    report.set("chats", CHATS);
    report.set("slowest_chat_secs", (slowest * 1000.0).round() / 1000.0);
    report.set("idle_reopened", reopened.load(Ordering::Relaxed));
    match failure {
        Some(f) => report.fail(f),
        None => {
            // Within a second of guestgate's own time: the upstream's latency is added.
            let bound = CHAT_WITHIN.as_secs_f64() + args.upstream_latency_ms as f64 / 1000.0;
            report.set("chat_bound_secs", bound);
            report.check(slowest <= bound, || {
                format!("a browser from 127.0.0.1 needed {slowest:.2}s to chat (bound {bound:.1}s: 1s plus the upstream's own latency)")
            })
        }
    }
    let _ = timeout(Duration::from_secs(5), join_all(holders)).await;
    Ok(())
}

/// Upgrade requests written one byte per second: guestgate must drop each within its
/// `handshake_timeout` (plus 1.5 s).
pub async fn slow_headers(args: &Args, report: &mut Report) -> Result<(), ClientError> {
    let n = args.connections.unwrap_or(200);
    let bound = args.handshake_timeout_secs;
    let request = upgrade_request(&args.browser(), &args.genesys_path);
    let give_up = Duration::from_secs_f64(bound + 3.0);
    let one = |_| {
        let request = request.clone();
        async move {
            let s = tcp_connect(args.target, Some(IpAddr::from(SLOW_SOURCE)))
                .await
                .ok()?;
            let started = Instant::now();
            let (mut rd, mut wr) = s.into_split();
            let trickle = async move {
                for b in request.bytes() {
                    if wr.write_all(&[b]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                std::future::pending::<()>().await;
            };
            // guestgate dropping us shows up as EOF, a reset, or a 408 before EOF.
            let closed = async {
                let mut sink = [0u8; 512];
                while let Ok(n) = rd.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            };
            let ended = tokio::select! {
                _ = trickle => false,
                r = timeout(give_up, closed) => r.is_ok(),
            };
            Some((ended, started.elapsed().as_secs_f64()))
        }
    };
    let results = join_all((0..n).map(one)).await;
    let connected: Vec<_> = results.into_iter().flatten().collect();
    let dropped = connected.iter().filter(|(ended, _)| *ended).count();
    let slowest = connected
        .iter()
        .filter(|(ended, _)| *ended)
        .map(|(_, s)| *s)
        .fold(0.0, f64::max);
    report.set("connections", connected.len());
    report.set("dropped_by_guestgate", dropped);
    report.set("slowest_drop_secs", (slowest * 1000.0).round() / 1000.0);
    report.set("bound_secs", bound);
    report.check(dropped == connected.len() && slowest <= bound + 1.5, || {
        format!(
            "{dropped} of {} slow-header connections dropped, the slowest after {slowest:.1}s \
             (bound {bound}s + 1.5s)",
            connected.len()
        )
    });
    Ok(())
}
