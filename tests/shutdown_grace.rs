//! The end of a graceful shutdown's grace period: relays that have not finished their close
//! handshake by then are cut, the drain report counts exactly those, and their browsers see the
//! connection end.

mod common;

use std::time::{Duration, Instant};

use common::*;
use guestgate::app;
use guestgate::mock::FakeBehavior;
use tokio::io::AsyncReadExt;

/// Relays that never answer the shutdown's close 1001 (neither browser nor upstream).
const STUCK: usize = 2;
/// `server.shutdown_grace` for this test: long enough for a well-behaved relay to close on a
/// busy machine, short enough to keep the test quick.
const GRACE: Duration = Duration::from_secs(1);

/// The value of a sample line of a Prometheus text exposition, `None` if absent.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn relays_still_open_when_the_grace_ends_are_cut_and_counted() {
    let up = fake(FakeBehavior::Echo).await;
    let mut config = config_for(&up.url());
    config.server.shutdown_grace = GRACE;
    // Nothing but the grace may end the stuck relays: no close-handshake or idle give-up first.
    config.routes[0].relay.close_timeout = Duration::from_secs(60);
    config.routes[0].relay.idle_timeout = Duration::from_secs(60);
    let registry = prometheus::Registry::new();
    let gg = app::start(&config, Some(registry.clone()))
        .await
        .expect("guestgate starts");

    // One relay that closes properly (echo upstream, browser answers the close) ...
    let mut polite = RawClient::connect(gg.addr, "").await;
    up.wait_for_requests(1, STEP).await.unwrap();
    // ... and relays whose upstream never reads and whose browser never answers.
    up.set_behavior(FakeBehavior::Silent);
    let mut stuck = Vec::new();
    for _ in 0..STUCK {
        stuck.push(RawClient::connect(gg.addr, "").await);
    }
    // Shut down only once every relay is past its set-up (a set-up in progress ends
    // differently, with no grace involved).
    let relaying = format!(
        r#"guestgate_session_setup_seconds_count{{outcome="relayed",route="default"}} {}"#,
        STUCK + 1
    );
    metrics_when(gg.admin_addr, "every relay set up", |text| {
        text.contains(&relaying)
    })
    .await;

    let started = Instant::now();
    gg.shutdown();
    assert_eq!(polite.close_frame().await.0, 1001);
    polite.send(true, 8, &close_payload(1001, ""), MASK).await;
    for browser in &mut stuck {
        assert_eq!(browser.close_frame().await.0, 1001);
    }
    let report = tokio::time::timeout(STEP, gg.wait())
        .await
        .expect("the drain ends within the grace plus the abort");
    let took = started.elapsed();

    assert_eq!(report.aborted, STUCK, "only the stuck relays are cut");
    assert!(took >= GRACE, "cut after {took:?}, before the grace");
    // The polite browser's relay ended with the close handshake, the stuck ones were cut:
    // every browser sees its connection end (EOF or reset), with nothing after the close.
    for (i, browser) in std::iter::once(&mut polite).chain(&mut stuck).enumerate() {
        let mut rest = Vec::new();
        match tokio::time::timeout(STEP, browser.tcp.read_to_end(&mut rest)).await {
            Err(_) => panic!("browser {i}: connection still open after the drain"),
            Ok(Ok(_)) => assert!(rest.is_empty(), "browser {i}: {rest:?} after the close"),
            Ok(Err(e)) => assert_eq!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset,
                "browser {i}: {e}"
            ),
        }
    }
    // Cut relays give their gauge back too.
    let text = guestgate::metrics::render(&registry);
    assert_eq!(
        sample(&text, r#"guestgate_connections_open{route="default"}"#),
        Some(0.0),
        "{text}"
    );
}
