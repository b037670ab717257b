//! Retries, timeouts, backoff, the circuit breaker, and the outcomes they report.

use super::*;

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    within(async {
        let fake = FakeEndpoint::start(
            vec![respond(500, "oops"), respond(503, "busy")],
            ok_token("tok", 3600),
        )
        .await;
        let (hook, outcomes) = recorder();
        let src = source(fake.config()).with_outcome_hook(hook);
        assert_eq!(src.token().await.unwrap().expose(), "tok");
        assert_eq!(fake.hits(), 3);
        assert_eq!(
            *outcomes.lock().unwrap(),
            [
                TokenFetchOutcome::Transient,
                TokenFetchOutcome::Transient,
                TokenFetchOutcome::Success
            ]
        );
        assert!(src.is_healthy());
    })
    .await;
}

#[tokio::test]
async fn transient_failures_give_up_after_max_attempts() {
    within(async {
        let fake = FakeEndpoint::start(vec![], respond(502, "bad gateway")).await;
        let mut config = fake.config();
        config.max_attempts = 3;
        let err = source(config).token().await.unwrap_err();
        assert!(
            matches!(err, TokenError::Transient { attempts: 3, .. }),
            "{err}"
        );
        assert_eq!(fake.hits(), 3);
        let text = err.to_string();
        assert!(text.starts_with(&format!("fetching oauth token from {}", fake.url())));
        assert!(text.contains("502"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    within(async {
        let fake = FakeEndpoint::start(
            vec![with_header(respond(429, "slow down"), "retry-after", "1")],
            ok_token("tok", 3600),
        )
        .await;
        let mut config = fake.config();
        config.backoff_max = Duration::from_secs(5);
        let src = source(config);
        src.token().await.unwrap();
        let seen = fake.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        let gap = seen[1].at - seen[0].at;
        // The backoff alone would wait at most 5ms.
        assert!(gap >= Duration::from_millis(990), "{gap:?}");
    })
    .await;
}

#[tokio::test]
async fn retry_after_is_capped_at_backoff_max() {
    within(async {
        let fake = FakeEndpoint::start(
            vec![with_header(
                respond(429, "slow down"),
                "retry-after",
                "3600",
            )],
            ok_token("tok", 3600),
        )
        .await;
        let mut config = fake.config();
        config.backoff_max = Duration::from_millis(150);
        let started = std::time::Instant::now();
        source(config).token().await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(fake.hits(), 2);
        assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    })
    .await;
}

#[tokio::test]
async fn a_hung_endpoint_times_out_within_request_timeout() {
    within(async {
        let fake = FakeEndpoint::start(vec![], Reply::Hang).await;
        let mut config = fake.config();
        config.request_timeout = Duration::from_millis(300);
        config.max_attempts = 1;
        let (hook, outcomes) = recorder();
        let src = source(config.clone()).with_outcome_hook(hook);
        let started = std::time::Instant::now();
        let err = src.token().await.unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            matches!(err, TokenError::Timeout { attempts: 1, .. }),
            "{err}"
        );
        assert_eq!(err.kind(), TokenFetchOutcome::Timeout);
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        assert_eq!(*outcomes.lock().unwrap(), [TokenFetchOutcome::Timeout]);

        // Timeouts are transient: with attempts left, they are retried.
        config.max_attempts = 2;
        let err = source(config).token().await.unwrap_err();
        assert!(
            matches!(err, TokenError::Timeout { attempts: 2, .. }),
            "{err}"
        );
        assert_eq!(fake.hits(), 3);
    })
    .await;
}

#[tokio::test]
async fn invalid_client_is_rejected_without_retry_until_the_cooldown() {
    within(async {
        let fake = FakeEndpoint::start(
            vec![],
            respond(
                401,
                r#"{"error":"invalid_client","error_description":"bad"}"#,
            ),
        )
        .await;
        let (hook, outcomes) = recorder();
        let src = source(fake.config()).with_outcome_hook(hook);
        assert!(src.is_healthy());

        let err = src.token().await.unwrap_err();
        match &err {
            TokenError::Rejected { status, error, .. } => {
                assert_eq!(*status, 401);
                assert_eq!(error.as_deref(), Some("invalid_client"));
            }
            other => panic!("expected Rejected, got {other}"),
        }
        assert!(err.to_string().contains("invalid_client"), "{err}");
        assert_eq!(fake.hits(), 1, "a rejection is not retried");
        assert!(!src.is_healthy());

        let err = src.token().await.unwrap_err();
        assert!(matches!(err, TokenError::BreakerOpen { .. }), "{err}");
        assert!(err.to_string().contains("401"), "says why: {err}");
        assert_eq!(fake.hits(), 1);

        src.advance_clock(src.config().breaker_cooldown);
        let err = src.token().await.unwrap_err();
        assert_eq!(err.kind(), TokenFetchOutcome::Rejected);
        assert_eq!(fake.hits(), 2);
        assert_eq!(
            *outcomes.lock().unwrap(),
            [
                TokenFetchOutcome::Rejected,
                TokenFetchOutcome::BreakerOpen,
                TokenFetchOutcome::Rejected
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn breaker_opens_after_n_failures_and_fails_fast() {
    within(async {
        let fake = FakeEndpoint::start(vec![], respond(500, "down")).await;
        let mut config = fake.config();
        config.max_attempts = 1;
        config.breaker_failures = 3;
        let src = source(config.clone());
        for n in 1..=3 {
            let err = src.token().await.unwrap_err();
            assert_eq!(err.kind(), TokenFetchOutcome::Transient);
            assert_eq!(fake.hits(), n);
        }
        assert!(!src.is_healthy());
        assert_eq!(src.breaker_state(), BreakerState::Open);
        for _ in 0..10 {
            let err = src.token().await.unwrap_err();
            assert!(
                matches!(err, TokenError::BreakerOpen { failures: 3, .. }),
                "{err}"
            );
        }
        assert_eq!(fake.hits(), 3, "an open breaker sends nothing");

        // Half-open: one trial; it fails, so the breaker opens again.
        src.advance_clock(config.breaker_cooldown);
        assert_eq!(src.breaker_state(), BreakerState::HalfOpen);
        assert_eq!(
            src.token().await.unwrap_err().kind(),
            TokenFetchOutcome::Transient
        );
        assert_eq!(fake.hits(), 4);
        assert_eq!(
            src.token().await.unwrap_err().kind(),
            TokenFetchOutcome::BreakerOpen
        );
        assert_eq!(fake.hits(), 4);

        // The endpoint recovers; the next trial closes the breaker.
        fake.set_fallback(ok_token("tok", 3600));
        src.advance_clock(config.breaker_cooldown);
        assert_eq!(src.token().await.unwrap().expose(), "tok");
        assert_eq!(src.breaker_state(), BreakerState::Closed);
        assert!(src.is_healthy());
    })
    .await;
}

#[tokio::test]
async fn a_breaker_opening_mid_fetch_ends_the_retries() {
    within(async {
        let fake = FakeEndpoint::start(vec![], respond(503, "down")).await;
        let mut config = fake.config();
        config.max_attempts = 10;
        config.breaker_failures = 3;
        let src = source(config);
        let err = src.token().await.unwrap_err();
        assert!(
            matches!(err, TokenError::Transient { attempts: 3, .. }),
            "{err}"
        );
        assert_eq!(fake.hits(), 3);
    })
    .await;
}

#[tokio::test]
async fn backoff_between_retries_stays_within_its_bounds() {
    within(async {
        let fake = FakeEndpoint::start(
            vec![respond(500, ""), respond(500, ""), respond(500, "")],
            ok_token("tok", 3600),
        )
        .await;
        let mut config = fake.config();
        config.backoff_base = Duration::from_millis(100);
        config.backoff_max = Duration::from_millis(150);
        let backoff = Backoff::new(config.backoff_base, config.backoff_max);
        source(config).token().await.unwrap();
        let seen = fake.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 4);
        // Each gap is the jittered delay plus a loopback round trip; allow for the latter.
        let slack = Duration::from_millis(250);
        for (i, pair) in seen.windows(2).enumerate() {
            let gap = pair[1].at - pair[0].at;
            let ceiling = backoff.ceiling(i as u32);
            assert!(gap <= ceiling + slack, "retry {i}: {gap:?} > {ceiling:?}");
        }
    })
    .await;
}
