//! Single flight, the cache, and refresh ahead of expiry.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_callers_on_a_cold_cache_share_one_fetch() {
    within(async {
        let fake = FakeEndpoint::start(
            vec![],
            with_delay(ok_token("tok-1", 3600), Duration::from_millis(200)),
        )
        .await;
        let src = source(fake.config());
        let mut callers = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let src = src.clone();
            callers.spawn(async move { src.token().await });
        }
        let tokens = callers.join_all().await;
        assert_eq!(tokens.len(), 200);
        for token in tokens {
            assert_eq!(token.unwrap().expose(), "tok-1");
        }
        assert_eq!(fake.hits(), 1);
        assert_eq!(src.fetch_count(), 1);
        // And a warm cache costs nothing.
        src.token().await.unwrap();
        assert_eq!(fake.hits(), 1);
    })
    .await;
}

#[tokio::test]
async fn refreshes_ahead_of_expiry_without_making_callers_wait() {
    within(async {
        let fake = FakeEndpoint::start(
            vec![ok_token("tok-1", 120), ok_token("tok-2", 120)],
            ok_token("tok-3", 120),
        )
        .await;
        let mut config = fake.config();
        config.refresh_before = Duration::from_secs(60);
        let src = source(config);

        assert_eq!(src.token().await.unwrap().expose(), "tok-1");
        let left = src.seconds_until_expiry().unwrap();
        assert!((119.0..=120.0).contains(&left), "{left}");

        src.advance_clock(Duration::from_secs(59));
        assert_eq!(src.token().await.unwrap().expose(), "tok-1");
        src.settle().await;
        assert_eq!(fake.hits(), 1, "not yet due for refresh");

        // Due (less than refresh_before left) but still valid: the caller gets the current
        // token at once and one refresh runs in the background.
        src.advance_clock(Duration::from_secs(2));
        assert_eq!(src.token().await.unwrap().expose(), "tok-1");
        assert_eq!(src.token().await.unwrap().expose(), "tok-1");
        src.settle().await;
        assert_eq!(fake.hits(), 2);
        assert_eq!(src.token().await.unwrap().expose(), "tok-2");
        assert!(src.seconds_until_expiry().unwrap() > 119.0);

        // Expired outright: callers wait for the new token.
        src.advance_clock(Duration::from_secs(121));
        assert_eq!(src.seconds_until_expiry(), Some(0.0));
        assert_eq!(src.token().await.unwrap().expose(), "tok-3");
        assert_eq!(fake.hits(), 3);
    })
    .await;
}

#[tokio::test]
async fn short_lifetimes_refresh_at_half_life() {
    within(async {
        let fake = FakeEndpoint::start(vec![], ok_token("tok", 10)).await;
        let src = source(fake.config()); // refresh_before 60s > the 10s lifetime
        src.token().await.unwrap();
        src.advance_clock(Duration::from_secs(4));
        src.token().await.unwrap();
        src.settle().await;
        assert_eq!(fake.hits(), 1);
        src.advance_clock(Duration::from_secs(2));
        src.token().await.unwrap();
        src.settle().await;
        assert_eq!(fake.hits(), 2);
    })
    .await;
}

#[tokio::test]
async fn an_expiring_token_keeps_serving_while_the_endpoint_is_down() {
    within(async {
        let fake = FakeEndpoint::start(vec![ok_token("tok", 120)], respond(500, "down")).await;
        let mut config = fake.config();
        config.max_attempts = 1;
        config.breaker_failures = 2;
        config.breaker_cooldown = Duration::from_secs(300);
        let src = source(config);
        src.token().await.unwrap();
        src.advance_clock(Duration::from_secs(70)); // due, 50s left
        for _ in 0..5 {
            assert_eq!(src.token().await.unwrap().expose(), "tok");
            src.settle().await;
        }
        assert_eq!(
            fake.hits(),
            3,
            "two failed refreshes, then the breaker holds"
        );
        assert!(src.is_healthy(), "a valid token is cached");
        src.advance_clock(Duration::from_secs(51));
        assert!(!src.is_healthy());
        assert_eq!(
            src.token().await.unwrap_err().kind(),
            TokenFetchOutcome::BreakerOpen
        );
    })
    .await;
}
