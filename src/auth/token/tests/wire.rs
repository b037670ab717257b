//! What goes to the token endpoint, how its replies are read, and what errors may quote.

use super::*;

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
