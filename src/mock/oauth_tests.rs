//! Tests for `FakeOAuth`, using raw HTTP/1.1 requests over loopback.

use std::future::Future;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("test timed out")
}

async fn start() -> FakeOAuthHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    FakeOAuth::start(
        listener,
        FakeOAuthConfig {
            expires_in: 600,
            ..FakeOAuthConfig::default()
        },
    )
}

struct HttpReply {
    status: u16,
    head: String,
    body: String,
}

impl HttpReply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// One `Connection: close` request; reads the whole answer.
async fn post(h: &FakeOAuthHandle, path: &str, auth: Option<&str>, body: &str) -> HttpReply {
    let mut tcp = TcpStream::connect(h.addr()).await.unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    HttpReply {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

fn basic(id: &str, secret: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    format!("Basic {b}")
}

const GRANT: &str = "grant_type=client_credentials";

#[tokio::test]
async fn issues_tokens_for_basic_or_form_credentials() {
    within(async {
        let h = start().await;
        let r = post(
            &h,
            "/oauth/token",
            Some(&basic("fake-client-id", "fake-client-secret")),
            GRANT,
        )
        .await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["access_token"], "fake-access-1");
        assert_eq!(v["token_type"], "bearer");
        assert_eq!(v["expires_in"], 600);

        let form = format!("{GRANT}&client_id=fake-client-id&client_secret=fake-client-secret");
        let r = post(&h, "/oauth/token", None, &form).await;
        assert_eq!(r.json()["access_token"], "fake-access-2");
        assert_eq!((h.token_fetches(), h.tokens_issued()), (2, 2));
    })
    .await
}

#[tokio::test]
async fn rejects_bad_secrets_and_grants() {
    within(async {
        let h = start().await;
        let r = post(
            &h,
            "/oauth/token",
            Some(&basic("fake-client-id", "wrong")),
            GRANT,
        )
        .await;
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["error"], "invalid_client");
        let r = post(&h, "/oauth/token", None, GRANT).await;
        assert_eq!(r.status, 401);
        let auth = basic("fake-client-id", "fake-client-secret");
        let r = post(&h, "/oauth/token", Some(&auth), "grant_type=password").await;
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (400, Some("unsupported_grant_type"))
        );
        assert_eq!((h.token_fetches(), h.tokens_issued()), (3, 0));
        assert_eq!(post(&h, "/elsewhere", None, "").await.status, 404);
    })
    .await
}

#[tokio::test]
async fn guest_create_requires_an_issued_live_bearer() {
    within(async {
        let h = start().await;
        let auth = basic("fake-client-id", "fake-client-secret");
        let access =
            post(&h, "/oauth/token", Some(&auth), GRANT).await.json()["access_token"].clone();
        let bearer = format!("Bearer {}", access.as_str().unwrap());
        let r = post(&h, "/api/v2/guests", Some(&bearer), "").await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert!(v["id"].as_str().unwrap().starts_with("guest-"));
        let token = v["token"].as_str().unwrap();
        assert!(token.starts_with("guest-token-"));
        assert_eq!(h.guest_tokens(), vec![token.to_owned()]);

        assert_eq!(
            post(&h, "/api/v2/guests", Some("Bearer forged"), "")
                .await
                .status,
            401
        );
        assert_eq!(post(&h, "/api/v2/guests", None, "").await.status, 401);
        h.revoke_tokens();
        assert_eq!(
            post(&h, "/api/v2/guests", Some(&bearer), "").await.status,
            401
        );
        assert_eq!(h.guest_creates(), 4);
    })
    .await
}

#[tokio::test]
async fn failure_modes_switch_at_runtime() {
    within(async {
        let h = start().await;
        let auth = basic("fake-client-id", "fake-client-secret");
        h.set_mode(OAuthMode::Status(500));
        assert_eq!(
            post(&h, "/oauth/token", Some(&auth), GRANT).await.status,
            500
        );
        h.set_mode(OAuthMode::Status(429));
        let r = post(&h, "/oauth/token", Some(&auth), GRANT).await;
        assert_eq!(r.status, 429);
        assert!(r.head.contains("retry-after: 1"), "{}", r.head);
        h.set_mode(OAuthMode::Status(401));
        assert_eq!(
            post(&h, "/oauth/token", Some(&auth), GRANT).await.json()["error"],
            "invalid_client"
        );
        h.set_mode(OAuthMode::BadJson);
        let r = post(&h, "/oauth/token", Some(&auth), GRANT).await;
        assert_eq!(r.status, 200);
        assert!(serde_json::from_str::<Value>(&r.body).is_err());

        h.set_mode(OAuthMode::Hang);
        let hung = tokio::time::timeout(
            Duration::from_millis(300),
            post(&h, "/oauth/token", Some(&auth), GRANT),
        );
        assert!(hung.await.is_err(), "hang mode answered");

        h.set_mode(OAuthMode::Ok);
        h.set_delay(Duration::from_millis(200));
        let t0 = std::time::Instant::now();
        assert_eq!(
            post(&h, "/oauth/token", Some(&auth), GRANT).await.status,
            200
        );
        assert!(t0.elapsed() >= Duration::from_millis(200));
        assert_eq!((h.token_fetches(), h.tokens_issued()), (6, 1));
        h.shutdown().await;
        assert!(TcpStream::connect(h.addr()).await.is_err());
    })
    .await
}
