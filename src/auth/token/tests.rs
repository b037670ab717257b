//! Token source tests against a tiny programmable token endpoint on 127.0.0.1.
//!
//! Requests use real sockets and real timeouts; token expiry is tested by moving the source's
//! clock skew forward, so no test sleeps for a token's lifetime and no paused-time
//! auto-advance can fire a request timeout while a socket read is pending.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;
use crate::auth::http_client::build_http_client;

const CANARY_SECRET: &str = "canary-secret-9f2c";
const CANARY_TOKEN: &str = "canary-access-token-77e1";
const CLIENT_ID: &str = "guestgate-test";

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test timed out")
}

/// What the fake endpoint does with one request.
#[derive(Clone)]
enum Reply {
    Respond {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
        delay: Duration,
    },
    /// Accepts the request and never answers.
    Hang,
}

fn ok_token(token: &str, expires_in: u64) -> Reply {
    respond(
        200,
        &format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{expires_in}}}"#),
    )
}

fn respond(status: u16, body: &str) -> Reply {
    Reply::Respond {
        status,
        headers: vec![("content-type", "application/json".to_owned())],
        body: body.to_owned(),
        delay: Duration::ZERO,
    }
}

fn with_delay(reply: Reply, by: Duration) -> Reply {
    match reply {
        Reply::Respond {
            status,
            headers,
            body,
            ..
        } => Reply::Respond {
            status,
            headers,
            body,
            delay: by,
        },
        Reply::Hang => Reply::Hang,
    }
}

fn with_header(reply: Reply, name: &'static str, value: &str) -> Reply {
    match reply {
        Reply::Respond {
            status,
            mut headers,
            body,
            delay,
        } => {
            headers.push((name, value.to_owned()));
            Reply::Respond {
                status,
                headers,
                body,
                delay,
            }
        }
        Reply::Hang => Reply::Hang,
    }
}

/// One request as the endpoint saw it.
#[derive(Clone, Debug)]
struct Seen {
    at: std::time::Instant,
    authorization: Option<String>,
    content_type: Option<String>,
    body: String,
}

/// A token endpoint that plays `script` in order, then repeats `fallback`.
#[derive(Clone)]
struct FakeEndpoint {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    fallback: Arc<Mutex<Reply>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeEndpoint {
    async fn start(script: Vec<Reply>, fallback: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Self {
            addr: listener.local_addr().unwrap(),
            hits: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
            fallback: Arc::new(Mutex::new(fallback)),
            seen: Arc::default(),
        };
        let shared = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let fake = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let fake = fake.clone();
                        async move { Ok::<_, Infallible>(fake.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        fake
    }

    async fn handle(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<Full<Bytes>> {
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let authorization = header("authorization");
        let content_type = header("content-type");
        let body = req.into_body().collect().await.unwrap().to_bytes();
        self.seen.lock().unwrap().push(Seen {
            at: std::time::Instant::now(),
            authorization,
            content_type,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        self.hits.fetch_add(1, Ordering::SeqCst);
        let reply = self.script.lock().unwrap().pop_front();
        let reply = reply.unwrap_or_else(|| self.fallback.lock().unwrap().clone());
        match reply {
            Reply::Hang => std::future::pending().await,
            Reply::Respond {
                status,
                headers,
                body,
                delay,
            } => {
                tokio::time::sleep(delay).await;
                let mut resp = hyper::Response::builder().status(status);
                for (name, value) in headers {
                    resp = resp.header(name, value);
                }
                resp.body(Full::new(Bytes::from(body))).unwrap()
            }
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn set_fallback(&self, reply: Reply) {
        *self.fallback.lock().unwrap() = reply;
    }

    fn url(&self) -> url::Url {
        format!("http://{}/oauth/token", self.addr).parse().unwrap()
    }

    fn config(&self) -> OAuthConfig {
        let mut config = OAuthConfig::new(
            self.url(),
            CLIENT_ID,
            SecretSource {
                file: None,
                env: Some("GUESTGATE_TEST_UNUSED".into()),
            },
        );
        config.request_timeout = Duration::from_secs(5);
        config.backoff_base = Duration::from_millis(5);
        config.backoff_max = Duration::from_millis(20);
        config
    }
}

fn source(config: OAuthConfig) -> TokenSource {
    let client = build_http_client(None, Duration::from_secs(5)).unwrap();
    TokenSource::new(config, Secret::new(CANARY_SECRET), client)
}

fn recorder() -> (OutcomeHook, Arc<Mutex<Vec<TokenFetchOutcome>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let hook: OutcomeHook = Arc::new(move |o| sink.lock().unwrap().push(o));
    (hook, seen)
}

/// Waits for a background refresh, if one is under way.
async fn settle(source: &TokenSource) {
    let fetch = lock(&source.inner.inflight).clone();
    if let Some(fetch) = fetch {
        let _ = fetch.await;
    }
}

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
async fn sends_client_credentials_by_basic_auth_or_form() {
    within(async {
        let fake = FakeEndpoint::start(vec![], ok_token("tok", 3600)).await;
        let mut config = fake.config();
        config.scope = Some("a b".into());
        config.audience = Some("https://api.example".into());
        source(config.clone()).token().await.unwrap();
        config.client_auth = ClientAuth::Form;
        source(config).token().await.unwrap();

        let seen = fake.seen.lock().unwrap().clone();
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{CLIENT_ID}:{CANARY_SECRET}"));
        assert_eq!(
            seen[0].authorization.as_deref(),
            Some(format!("Basic {basic}").as_str())
        );
        assert_eq!(
            seen[0].content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            seen[0].body,
            "grant_type=client_credentials&scope=a+b&audience=https%3A%2F%2Fapi.example"
        );
        assert_eq!(seen[1].authorization, None);
        assert_eq!(
            seen[1].body,
            format!(
                "grant_type=client_credentials&scope=a+b&audience=https%3A%2F%2Fapi.example\
                 &client_id={CLIENT_ID}&client_secret={CANARY_SECRET}"
            )
        );
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
        let clock = &src.inner.clock;

        assert_eq!(src.token().await.unwrap().expose(), "tok-1");
        let left = src.seconds_until_expiry().unwrap();
        assert!((119.0..=120.0).contains(&left), "{left}");

        clock.advance(Duration::from_secs(59));
        assert_eq!(src.token().await.unwrap().expose(), "tok-1");
        settle(&src).await;
        assert_eq!(fake.hits(), 1, "not yet due for refresh");

        // Due (less than refresh_before left) but still valid: the caller gets the current
        // token at once and one refresh runs in the background.
        clock.advance(Duration::from_secs(2));
        assert_eq!(src.token().await.unwrap().expose(), "tok-1");
        assert_eq!(src.token().await.unwrap().expose(), "tok-1");
        settle(&src).await;
        assert_eq!(fake.hits(), 2);
        assert_eq!(src.token().await.unwrap().expose(), "tok-2");
        assert!(src.seconds_until_expiry().unwrap() > 119.0);

        // Expired outright: callers wait for the new token.
        clock.advance(Duration::from_secs(121));
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
        src.inner.clock.advance(Duration::from_secs(4));
        src.token().await.unwrap();
        settle(&src).await;
        assert_eq!(fake.hits(), 1);
        src.inner.clock.advance(Duration::from_secs(2));
        src.token().await.unwrap();
        settle(&src).await;
        assert_eq!(fake.hits(), 2);
    })
    .await;
}

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
async fn connect_errors_are_transient() {
    within(async {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let mut config = FakeEndpoint::start(vec![], Reply::Hang).await.config();
        config.token_url = format!("http://{addr}/token").parse().unwrap();
        config.max_attempts = 2;
        let err = source(config).token().await.unwrap_err();
        assert!(
            matches!(err, TokenError::Transient { attempts: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().to_lowercase().contains("connect"), "{err}");
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
async fn unusable_bodies_are_bad_responses_and_retried() {
    within(async {
        let fake = FakeEndpoint::start(vec![], respond(200, "not json {")).await;
        let mut config = fake.config();
        config.max_attempts = 2;
        let err = source(config.clone()).token().await.unwrap_err();
        assert!(
            matches!(err, TokenError::BadResponse { attempts: 2, .. }),
            "{err}"
        );
        assert_eq!(fake.hits(), 2);

        config.max_attempts = 1;
        for body in [
            r#"[1, 2]"#,
            r#"{"token_type":"bearer","expires_in":60}"#,
            r#"{"access_token":"","expires_in":60}"#,
            r#"{"access_token":"has space","expires_in":60}"#,
            r#"{"access_token":"t","token_type":"mac","expires_in":60}"#,
            r#"{"access_token":"t","expires_in":-5}"#,
            r#"{"access_token":"t","expires_in":"soon"}"#,
        ] {
            fake.set_fallback(respond(200, body));
            let err = source(config.clone()).token().await.unwrap_err();
            assert_eq!(err.kind(), TokenFetchOutcome::BadResponse, "{body}: {err}");
        }
    })
    .await;
}

#[tokio::test]
async fn lenient_where_providers_differ() {
    within(async {
        let fake = FakeEndpoint::start(
            vec![
                respond(200, r#"{"access_token":"a","token_type":"BEARER"}"#),
                respond(200, r#"{"access_token":"b","expires_in":"300"}"#),
            ],
            Reply::Hang,
        )
        .await;
        let src = source(fake.config());
        assert_eq!(src.token().await.unwrap().expose(), "a");
        let left = src.seconds_until_expiry().unwrap();
        assert!(
            (3599.0..=3600.0).contains(&left),
            "default lifetime: {left}"
        );

        let src = source(fake.config());
        assert_eq!(src.token().await.unwrap().expose(), "b");
        let left = src.seconds_until_expiry().unwrap();
        assert!((299.0..=300.0).contains(&left), "{left}");
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

        src.inner.clock.advance(src.config().breaker_cooldown);
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
async fn other_client_errors_are_rejections_too() {
    within(async {
        let fake = FakeEndpoint::start(vec![], Reply::Hang).await;
        for (status, body) in [
            (400, r#"{"error":"invalid_grant"}"#),
            (400, r#"{"error":"unauthorized_client"}"#),
            (403, "forbidden"),
            (404, "<html>not found</html>"),
        ] {
            fake.set_fallback(respond(status, body));
            let before = fake.hits();
            let err = source(fake.config()).token().await.unwrap_err();
            assert!(
                matches!(err, TokenError::Rejected { status: s, .. } if s == status),
                "{status}: {err}"
            );
            assert_eq!(fake.hits() - before, 1);
        }
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
        src.inner.clock.advance(config.breaker_cooldown);
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
        src.inner.clock.advance(config.breaker_cooldown);
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
async fn an_expiring_token_keeps_serving_while_the_endpoint_is_down() {
    within(async {
        let fake = FakeEndpoint::start(vec![ok_token("tok", 120)], respond(500, "down")).await;
        let mut config = fake.config();
        config.max_attempts = 1;
        config.breaker_failures = 2;
        config.breaker_cooldown = Duration::from_secs(300);
        let src = source(config);
        src.token().await.unwrap();
        src.inner.clock.advance(Duration::from_secs(70)); // due, 50s left
        for _ in 0..5 {
            assert_eq!(src.token().await.unwrap().expose(), "tok");
            settle(&src).await;
        }
        assert_eq!(
            fake.hits(),
            3,
            "two failed refreshes, then the breaker holds"
        );
        assert!(src.is_healthy(), "a valid token is cached");
        src.inner.clock.advance(Duration::from_secs(51));
        assert!(!src.is_healthy());
        assert_eq!(
            src.token().await.unwrap_err().kind(),
            TokenFetchOutcome::BreakerOpen
        );
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

#[tokio::test]
async fn secrets_never_appear_in_errors() {
    within(async {
        let canary_bodies = [
            (
                401,
                format!(
                    r#"{{"error":"invalid_client","error_description":"{CANARY_SECRET} {CANARY_TOKEN}"}}"#
                ),
            ),
            (
                400,
                format!(r#"{{"error":"{CANARY_SECRET}","error_description":"x"}}"#),
            ),
            (500, format!("{CANARY_SECRET} {CANARY_TOKEN}")),
            (200, format!("{CANARY_TOKEN} {CANARY_SECRET} {{")),
            (
                200,
                format!(r#"{{"access_token":"{CANARY_TOKEN}","token_type":"{CANARY_SECRET}"}}"#),
            ),
            (
                200,
                format!(r#"{{"access_token":"{CANARY_TOKEN}","expires_in":"{CANARY_SECRET}"}}"#),
            ),
            (
                200,
                format!(r#"{{"access_token":{{"{CANARY_TOKEN}":1}},"expires_in":60}}"#),
            ),
        ];
        let fake = FakeEndpoint::start(vec![], Reply::Hang).await;
        let mut errors = Vec::new();
        for client_auth in [ClientAuth::Basic, ClientAuth::Form] {
            for (status, body) in &canary_bodies {
                fake.set_fallback(respond(*status, body));
                let mut config = fake.config();
                config.client_auth = client_auth;
                config.max_attempts = 1;
                config.breaker_failures = 1;
                let src = source(config);
                errors.push(src.token().await.unwrap_err());
                errors.push(src.token().await.unwrap_err()); // breaker open, quoting the last
            }
        }
        fake.set_fallback(Reply::Hang);
        let mut config = fake.config();
        config.request_timeout = Duration::from_millis(100);
        config.max_attempts = 1;
        errors.push(source(config).token().await.unwrap_err());

        for err in &errors {
            for text in [err.to_string(), format!("{err:?}")] {
                assert!(!text.contains(CANARY_SECRET), "{text}");
                assert!(!text.contains(CANARY_TOKEN), "{text}");
                assert!(!text.contains("canary"), "{text}");
            }
        }

        fake.set_fallback(ok_token(CANARY_TOKEN, 3600));
        let src = source(fake.config());
        let token = src.token().await.unwrap();
        assert_eq!(token.expose(), CANARY_TOKEN);
        for text in [
            format!("{token:?}"),
            format!("{:?}", token.bearer()),
            format!("{src:?}"),
        ] {
            assert!(!text.contains("canary"), "{text}");
        }
    })
    .await;
}

#[test]
fn config_defaults_and_unknown_keys() {
    let config: OAuthConfig = toml::from_str(
        r#"
        token_url = "https://login.mypurecloud.com/oauth/token"
        client_id = "abc"
        client_secret = { env = "GENESYS_CLIENT_SECRET" }
        refresh_before = "2m"
        client_auth = "form"
        "#,
    )
    .unwrap();
    assert_eq!(config.refresh_before, Duration::from_secs(120));
    assert_eq!(config.client_auth, ClientAuth::Form);
    assert_eq!(config.request_timeout, Duration::from_secs(10));
    assert_eq!(config.max_attempts, 4);
    assert_eq!(config.backoff_base, Duration::from_millis(200));
    assert_eq!(config.backoff_max, Duration::from_secs(10));
    assert_eq!(config.breaker_failures, 5);
    assert_eq!(config.breaker_cooldown, Duration::from_secs(30));
    assert_eq!(config.validate("routes.chat.oauth"), Ok(()));

    let round_trip: OAuthConfig = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
    assert_eq!(round_trip, config);

    let err = toml::from_str::<OAuthConfig>(
        r#"
        token_url = "https://login.example/oauth/token"
        client_id = "abc"
        client_secret = { env = "X" }
        client_secret_value = "inline"
        "#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("client_secret_value"), "{err}");
}

#[test]
fn validate_names_the_key() {
    let good = OAuthConfig::new(
        "https://login.example/oauth/token".parse().unwrap(),
        "abc",
        SecretSource {
            file: None,
            env: Some("X".into()),
        },
    );
    assert_eq!(good.validate("routes.chat.oauth"), Ok(()));

    let check = |edit: &dyn Fn(&mut OAuthConfig), want: &str| {
        let mut config = good.clone();
        edit(&mut config);
        let err = config.validate("routes.chat.oauth").unwrap_err();
        assert!(err.contains(want), "want {want:?} in {err:?}");
    };
    check(
        &|c| c.token_url = "ftp://login.example/token".parse().unwrap(),
        "routes.chat.oauth.token_url: must be http or https",
    );
    check(
        &|c| c.token_url = "https://id:pw@login.example/token".parse().unwrap(),
        "routes.chat.oauth.token_url: must not contain credentials",
    );
    check(
        &|c| c.client_id = " ".into(),
        "routes.chat.oauth.client_id: must not be empty",
    );
    check(
        &|c| c.client_id = "a:b".into(),
        "routes.chat.oauth.client_id: must not contain ':'",
    );
    check(
        &|c| c.client_secret.file = Some("/run/secret".into()),
        "routes.chat.oauth.client_secret: give exactly one of `file` or `env`",
    );
    check(
        &|c| c.scope = Some(String::new()),
        "routes.chat.oauth.scope: must not be empty when set",
    );
    check(
        &|c| c.request_timeout = Duration::ZERO,
        "routes.chat.oauth.request_timeout: must be greater than zero",
    );
    check(
        &|c| c.max_attempts = 0,
        "routes.chat.oauth.max_attempts: must be at least 1",
    );
    check(
        &|c| c.backoff_base = Duration::from_secs(60),
        "routes.chat.oauth.backoff_base: must not exceed backoff_max",
    );
    check(
        &|c| c.breaker_failures = 0,
        "routes.chat.oauth.breaker_failures: must be at least 1",
    );

    // Several problems are all reported.
    let mut config = good.clone();
    config.max_attempts = 0;
    config.breaker_failures = 0;
    let err = config.validate("oauth").unwrap_err();
    assert!(
        err.contains("oauth.max_attempts") && err.contains("oauth.breaker_failures"),
        "{err}"
    );
}

#[test]
fn outcome_labels_are_distinct() {
    let labels: std::collections::HashSet<_> = TokenFetchOutcome::ALL
        .iter()
        .map(|o| o.as_label())
        .collect();
    assert_eq!(labels.len(), TokenFetchOutcome::ALL.len());
}
