//! Limits kept over time on the browser leg: the message rate (pings included) and the
//! deadline on a fragmented message. Paused time throughout.

use super::*;

fn limited(per_second: u32, burst: u32) -> RelayConfig {
    RelayConfig {
        browser_rate: Some(RateLimit { per_second, burst }),
        ..cfg()
    }
}

/// Sends `n` frames of `opcode` at once and reads them on the upstream side.
async fn send_and_forward(h: &mut Harness, n: usize, opcode: u8) {
    let mut burst = Vec::new();
    for _ in 0..n {
        burst.extend(frame(true, opcode, b"hi", MASK));
    }
    h.browser.write_all(&burst).await.unwrap();
    for _ in 0..n {
        let (op, payload) = read_frame(&mut h.upstream).await;
        assert_eq!((op, &payload[..]), (opcode, &b"hi"[..]));
    }
}

#[tokio::test(start_paused = true)]
async fn messages_over_the_rate_close_the_browser_with_4420() {
    let mut h = start(limited(5, 20));
    send_and_forward(&mut h, 20, 1).await;
    // 1 s later five more tokens are back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    send_and_forward(&mut h, 5, 1).await;
    h.browser
        .write_all(&frame(true, 1, b"one too many", MASK))
        .await
        .unwrap();
    let reason = expect_close(&mut h.browser, 4420).await;
    assert_eq!(reason, "message rate too high");
    expect_close(&mut h.upstream, 1001).await;
    let r = report(h).await;
    assert_eq!(
        r.ending,
        Ending::Limited(Side::Browser, Limit::Rate),
        "{r:?}"
    );
    assert_eq!(r.code_to_browser, Some(4420));
    assert_eq!(
        r.from_browser.messages, 25,
        "the message over the rate went through"
    );
}

#[tokio::test(start_paused = true)]
async fn pings_count_against_the_rate() {
    let mut h = start(limited(5, 20));
    send_and_forward(&mut h, 20, 9).await;
    h.browser
        .write_all(&frame(true, 9, b"hi", MASK))
        .await
        .unwrap();
    expect_close(&mut h.browser, 4420).await;
}

#[tokio::test(start_paused = true)]
async fn a_fragmented_message_counts_once() {
    let mut h = start(limited(1, 2));
    let mut msg = frame(false, 1, b"a", MASK);
    for _ in 0..10 {
        msg.extend(frame(false, 0, b"b", MASK));
    }
    msg.extend(frame(true, 0, b"c", MASK));
    msg.extend(frame(true, 1, b"d", MASK));
    h.browser.write_all(&msg).await.unwrap();
    for _ in 0..13 {
        read_frame(&mut h.upstream).await;
    }
    h.browser
        .write_all(&frame(true, 1, b"e", MASK))
        .await
        .unwrap();
    expect_close(&mut h.browser, 4420).await;
}

#[tokio::test(start_paused = true)]
async fn without_a_rate_a_flood_passes() {
    let mut h = start(cfg());
    send_and_forward(&mut h, 500, 1).await;
    send_and_forward(&mut h, 500, 9).await;
}

fn timed(message_timeout: Duration) -> RelayConfig {
    RelayConfig {
        message_timeout: Some(message_timeout),
        idle_timeout: Duration::from_secs(120),
        ..cfg()
    }
}

#[tokio::test(start_paused = true)]
async fn a_fragmented_message_that_keeps_coming_is_closed_at_its_deadline() {
    let mut h = start(timed(Duration::from_secs(10)));
    let started = tokio::time::Instant::now();
    h.browser
        .write_all(&frame(false, 1, b"[0", MASK))
        .await
        .unwrap();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if h.browser
                .write_all(&frame(false, 0, b",0", MASK))
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(11), trickle).await;
    let reason = expect_close(&mut h.browser, 4408).await;
    assert_eq!(reason, "message not completed in time");
    let r = report(h).await;
    assert_eq!(
        r.ending,
        Ending::Limited(Side::Browser, Limit::MessageTimeout)
    );
    assert!(started.elapsed() >= Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn a_stalled_fragmented_message_is_closed_before_the_idle_timeout() {
    let mut h = start(timed(Duration::from_secs(10)));
    let started = tokio::time::Instant::now();
    h.browser
        .write_all(&frame(false, 1, b"[0", MASK))
        .await
        .unwrap();
    expect_close(&mut h.browser, 4408).await;
    let took = started.elapsed();
    assert!(
        (Duration::from_secs(10)..Duration::from_secs(11)).contains(&took),
        "closed after {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_fragmented_message_within_its_deadline_passes() {
    let mut h = start(timed(Duration::from_secs(10)));
    h.browser
        .write_all(&frame(false, 1, b"a", MASK))
        .await
        .unwrap();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        h.browser
            .write_all(&frame(false, 0, b"b", MASK))
            .await
            .unwrap();
    }
    h.browser
        .write_all(&frame(true, 0, b"c", MASK))
        .await
        .unwrap();
    for _ in 0..10 {
        read_frame(&mut h.upstream).await;
    }
    // The next message has a deadline of its own.
    tokio::time::sleep(Duration::from_secs(5)).await;
    h.browser
        .write_all(&frame(false, 1, b"a", MASK))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(9)).await;
    h.browser
        .write_all(&frame(true, 0, b"z", MASK))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut h.upstream).await.1, b"a");
    assert_eq!(read_frame(&mut h.upstream).await.1, b"z");
}
