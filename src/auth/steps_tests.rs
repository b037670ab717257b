//! Tests for auth steps against the fake OAuth server and small hyper endpoints.

use std::convert::Infallible;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use crate::auth::http_client::build_http_client;
use crate::auth::token::{OAuthConfig, TokenSource};
use crate::mock::{FakeOAuth, FakeOAuthConfig, FakeOAuthHandle};
use crate::secret::SecretSource;

/// Every test is bounded, whatever goes wrong.
const LIMIT: Duration = Duration::from_secs(20);

fn client() -> reqwest::Client {
    build_http_client(None, Duration::from_secs(5)).unwrap()
}

async fn fake() -> FakeOAuthHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    FakeOAuth::start(listener, FakeOAuthConfig::default())
}

/// A real access token from the fake's token endpoint.
async fn access_token(fake: &FakeOAuthHandle) -> Secret {
    let source = SecretSource {
        file: None,
        env: Some("GUESTGATE_TEST_UNUSED".into()),
    };
    let config = OAuthConfig::new(fake.token_url().parse().unwrap(), "fake-client-id", source);
    let tokens = TokenSource::new(config, Secret::new("fake-client-secret"), client());
    tokens.token().await.unwrap().secret().clone()
}

fn guest_step(fake: &FakeOAuthHandle) -> StepConfig {
    let mut step = StepConfig::new("guest", fake.guests_url());
    step.headers.insert(
        "Authorization".into(),
        "Bearer {{oauth.access_token}}".into(),
    );
    step.extract.insert("guest_token".into(), "/token".into());
    step
}

fn prepare(steps: &[StepConfig]) -> Vec<PreparedStep> {
    let mut known = Known::new().with_oauth().with_session_token();
    prepare_steps(steps, "routes[0].steps", &mut known).unwrap()
}

/// What a [`recorder`] endpoint received.
#[derive(Debug)]
struct Seen {
    method: String,
    uri: String,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

/// An endpoint that answers every request with `status` and `body` and reports each request.
async fn recorder(status: u16, body: Bytes) -> (String, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, reply) = (tx.clone(), body.clone());
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (tx, reply) = (tx.clone(), reply.clone());
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.unwrap().to_bytes().to_vec();
                    let _ = tx.send(Seen {
                        method: parts.method.to_string(),
                        uri: parts.uri.to_string(),
                        headers: parts.headers,
                        body,
                    });
                    let mut resp = Response::new(Full::new(reply));
                    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    (format!("http://{addr}"), rx)
}

#[tokio::test]
async fn creates_a_guest_and_extracts_its_token() {
    tokio::time::timeout(LIMIT, async {
        let fake = fake().await;
        let steps = prepare(&[guest_step(&fake)]);
        let mut values = Values::new();
        values.set_access_token(access_token(&fake).await);
        run_steps(&client(), &steps, &mut values).await.unwrap();
        let issued = fake.guest_tokens();
        assert_eq!(issued.len(), 1);
        let got = values.step_value("guest", "guest_token").unwrap();
        assert_eq!(got.expose(), issued[0]);
        fake.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn wrong_bearer_is_an_auth_failure_without_the_token() {
    tokio::time::timeout(LIMIT, async {
        let fake = fake().await;
        let steps = prepare(&[guest_step(&fake)]);
        let mut values = Values::new();
        values.set_access_token(Secret::new("canary-wrong-token"));
        let err = run_steps(&client(), &steps, &mut values).await.unwrap_err();
        assert!(
            matches!(err, StepError::Status { status: 401, .. }),
            "{err:?}"
        );
        assert_eq!(err.close_hint(), CloseHint::Auth);
        assert_eq!(err.kind_label(), "status");
        assert_eq!(err.step(), "guest");
        let text = format!("{err} {err:?}");
        assert!(!text.contains("canary"), "{text}");
        assert!(text.contains("POST 127.0.0.1:"), "{text}");
        assert!(text.contains("/api/v2/guests: http 401"), "{text}");
        assert!(values.step_value("guest", "guest_token").is_none());
        fake.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn missing_pointer_is_reported() {
    tokio::time::timeout(LIMIT, async {
        let fake = fake().await;
        let mut step = guest_step(&fake);
        step.extract.insert("nope".into(), "/no/such".into());
        let steps = prepare(&[step]);
        let mut values = Values::new();
        values.set_access_token(access_token(&fake).await);
        let err = run_steps(&client(), &steps, &mut values).await.unwrap_err();
        assert_eq!(
            err,
            StepError::Missing {
                step: "guest".into(),
                pointer: "/no/such".into()
            }
        );
        assert_eq!(err.close_hint(), CloseHint::Unavailable);
        assert_eq!(
            err.to_string(),
            "step guest: the reply has no value at /no/such"
        );
        // All or nothing: the value that was there is not kept either.
        assert!(values.step_value("guest", "guest_token").is_none());
        fake.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_silent_endpoint_times_out() {
    tokio::time::timeout(LIMIT, async {
        // Bound but never accepted: the kernel completes the handshake, nobody answers.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut step =
            StepConfig::new("slow", format!("http://{}/x", silent.local_addr().unwrap()));
        step.timeout = Duration::from_millis(300);
        let steps = prepare(&[step]);
        let started = Instant::now();
        let err = run_steps(&client(), &steps, &mut Values::new())
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(
                err,
                StepError::Transport {
                    kind: TransportKind::Timeout,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert_eq!(err.kind_label(), "timeout");
        assert_eq!(err.close_hint(), CloseHint::Unavailable);
        drop(silent);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn connect_refused_is_a_transport_error() {
    tokio::time::timeout(LIMIT, async {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let steps = prepare(&[StepConfig::new("s", format!("http://{addr}/x?secret=1"))]);
        let err = run_steps(&client(), &steps, &mut Values::new())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StepError::Transport {
                    kind: TransportKind::Connect,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.kind_label(), "transport");
        assert!(!err.to_string().contains("secret"), "{err}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn later_steps_use_earlier_values_encoded_per_context() {
    tokio::time::timeout(LIMIT, async {
        let fake = fake().await;
        let (base, mut seen) = recorder(200, Bytes::from_static(br#"{"n": 5, "obj": {}}"#)).await;
        let mut second = StepConfig::new(
            "session",
            format!("{base}/s/{{{{steps.guest.guest_token}}}}?t={{{{session.token}}}}"),
        );
        second.method = StepMethod::Put;
        second.json = Some(json!({"guest": "{{steps.guest.guest_token}}", "k": [1, true]}));
        second
            .headers
            .insert("X-Session".into(), "{{session.token}}".into());
        second.extract.insert("n".into(), "/n".into());
        let steps = prepare(&[guest_step(&fake), second]);
        let mut values = Values::new();
        values.set_access_token(access_token(&fake).await);
        values.set_session_token(Secret::new("a b&c"));
        run_steps(&client(), &steps, &mut values).await.unwrap();

        let guest = fake.guest_tokens().remove(0);
        let req = seen.recv().await.unwrap();
        assert_eq!(req.method, "PUT");
        assert_eq!(req.uri, format!("/s/{guest}?t=a%20b%26c"));
        assert_eq!(req.headers["x-session"], "a b&c");
        assert_eq!(req.headers["content-type"], "application/json");
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body, json!({"guest": guest, "k": [1, true]}));
        assert_eq!(values.step_value("session", "n").unwrap().expose(), "5");
        fake.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn form_bodies_are_url_encoded() {
    tokio::time::timeout(LIMIT, async {
        let (base, mut seen) = recorder(204, Bytes::new()).await;
        let mut step = StepConfig::new("f", format!("{base}/form"));
        step.form = Some([("tok".to_owned(), "{{session.token}}".to_owned())].into());
        let steps = prepare(&[step]);
        let mut values = Values::new();
        values.set_session_token(Secret::new("x=1&y"));
        run_steps(&client(), &steps, &mut values).await.unwrap();
        let req = seen.recv().await.unwrap();
        assert_eq!(
            req.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(req.body, b"tok=x%3D1%26y");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn bad_replies_are_described_not_quoted() {
    tokio::time::timeout(LIMIT, async {
        let cases: [(u16, Bytes, &str, &str); 4] = [
            (500, Bytes::from_static(b"{\"canary\":1}"), "/n", "status"),
            (
                200,
                Bytes::from_static(b"canary not json"),
                "/n",
                "bad_response",
            ),
            (
                200,
                Bytes::from_static(b"{\"n\":{\"canary\":1}}"),
                "/n",
                "bad_value",
            ),
            (
                200,
                Bytes::from(vec![b' '; MAX_BODY + 1]),
                "/n",
                "bad_response",
            ),
        ];
        for (status, body, pointer, label) in cases {
            let (base, _seen) = recorder(status, body).await;
            let mut step = StepConfig::new("s", format!("{base}/x?q={{{{session.token}}}}"));
            step.extract.insert("n".into(), pointer.into());
            let steps = prepare(&[step]);
            let mut values = Values::new();
            values.set_session_token(Secret::new("canary-session"));
            let err = run_steps(&client(), &steps, &mut values).await.unwrap_err();
            assert_eq!(err.kind_label(), label, "{err:?}");
            let text = format!("{err} {err:?}");
            assert!(!text.contains("canary"), "{text}");
            assert!(!text.contains("q="), "{text}");
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_missing_value_fails_before_sending() {
    let steps = prepare(&[StepConfig::new("s", "http://127.0.0.1:9/{{session.token}}")]);
    let err = run_steps(&client(), &steps, &mut Values::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "step s: building the request: no value for {{session.token}}"
    );
    assert_eq!(err.kind_label(), "render");
}

#[test]
fn config_defaults_and_durations() {
    let step: StepConfig = toml::from_str(
        "name = \"guest\"\nurl = \"https://api.example.com/g\"\n[extract]\ntoken = \"/token\"",
    )
    .unwrap();
    assert_eq!(step.method, StepMethod::Post);
    assert_eq!(step.timeout, DEFAULT_TIMEOUT);
    let step: StepConfig =
        toml::from_str("name = \"g\"\nmethod = \"GET\"\nurl = \"https://h/\"\ntimeout = \"300ms\"")
            .unwrap();
    assert_eq!(step.method, StepMethod::Get);
    assert_eq!(step.timeout, Duration::from_millis(300));
    assert!(toml::from_str::<StepConfig>("name = \"g\"\nurl = \"https://h/\"\nbody = 1").is_err());
}

#[test]
fn validation_names_every_bad_key() {
    let mut a = StepConfig::new("a", "https://{{query.host}}/x");
    a.method = StepMethod::Get;
    a.json = Some(json!({"x": "{{steps.b.v}}"}));
    a.headers.insert("Host".into(), "evil".into());
    a.headers.insert("X-Bad".into(), "{{nope}}".into());
    a.timeout = Duration::ZERO;
    a.extract.insert("v".into(), "token".into());
    let mut b = StepConfig::new("a", "https://h.example/{{steps.a.v}}");
    b.json = Some(json!({}));
    b.form = Some(BTreeMap::new());
    let mut known = Known::new();
    let err = prepare_steps(&[a, b], "routes[0].steps", &mut known).unwrap_err();
    for expected in [
        "routes[0].steps[0].url: undeclared placeholder(s) {{query.host}}",
        "routes[0].steps[0].headers.Host: cannot be set by a step",
        "routes[0].steps[0].headers.X-Bad: unknown placeholder(s) {{\"nope\"}}",
        "routes[0].steps[0].method: a GET step cannot have a body",
        "routes[0].steps[0].timeout:",
        "routes[0].steps[0].extract.v: must be a JSON pointer",
        "routes[0].steps[1].name: \"a\" is used by an earlier step",
        "routes[0].steps[1].form: give at most one",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in {err}");
    }
    // A step may use the values of earlier steps, not of later ones.
    assert!(!err.contains("steps[1].url"), "{err}");
    let fwd = StepConfig::new("a", "https://h.example/{{steps.b.v}}");
    let err = fwd.validate("s[0]", &Known::new()).unwrap_err();
    assert!(
        err.starts_with("s[0].url: undeclared placeholder(s) {{steps.b.v}}"),
        "{err}"
    );
}

#[test]
fn targets_show_the_configured_path_only() {
    let mut known = Known::new().with_session_token();
    let step = StepConfig::new(
        "a",
        "https://h.example:8443/v1/{{session.token}}?k={{uuid}}#f",
    )
    .prepare("s", &known)
    .unwrap();
    assert_eq!(step.target(), "POST h.example:8443/v1/{{session.token}}");
    let bare = prepare_steps(&[StepConfig::new("b", "http://h.example")], "s", &mut known).unwrap();
    assert_eq!(bare[0].target(), "POST h.example/");
    assert_eq!(bare[0].name(), "b");
}
