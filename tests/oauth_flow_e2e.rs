//! The declarative flow end to end, in the shape the forum question describes: OAuth client
//! credentials, create a guest with the access token, put the guest token in the upstream URL.
//! The browser holds nothing; token endpoint failures reach it as documented close codes.

mod common;

use std::time::Duration;

use common::*;
use guestgate::config::Config;
use guestgate::mock::{
    FakeBehavior, FakeOAuth, FakeOAuthConfig, FakeOAuthHandle, FakeUpstreamHandle, OAuthMode,
};
use tokio::net::TcpListener;

const SECRET: &str = "canary-secret-7d1e9b";

struct World {
    oauth: FakeOAuthHandle,
    upstream: FakeUpstreamHandle,
    _dir: tempfile::TempDir,
    config_text: String,
}

async fn world() -> World {
    let oauth = FakeOAuth::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        FakeOAuthConfig {
            client_secret: SECRET.into(),
            ..FakeOAuthConfig::default()
        },
    );
    let upstream = fake(FakeBehavior::Echo).await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("client-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let config_text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
shutdown_grace = "3s"

[[routes]]
name = "vendor"
path = "/ws"
edge.allow_any_origin = true
# 200 connections from one address at once: the per-IP defaults would refuse most of them.
edge.max_connections_per_ip = "off"
edge.handshake_rate_per_ip = "off"

[routes.flow]
upstream = "{ws}?guest={{{{steps.guest.token}}}}"

[routes.flow.oauth]
token_url = "{token_url}"
client_id = "fake-client-id"
client_secret = {{ file = "{secret_file}" }}
request_timeout = "500ms"
max_attempts = 2
backoff_base = "20ms"
backoff_max = "50ms"

[[routes.flow.steps]]
name = "guest"
url = "{guests_url}"
headers = {{ Authorization = "Bearer {{{{oauth.access_token}}}}" }}
extract = {{ token = "/token" }}
"#,
        ws = upstream.url(),
        token_url = oauth.token_url(),
        guests_url = oauth.guests_url(),
        secret_file = secret_file.display(),
    );
    World {
        oauth,
        upstream,
        _dir: dir,
        config_text,
    }
}

#[tokio::test]
async fn guest_token_goes_into_the_upstream_url_and_never_to_the_browser() {
    let w = world().await;
    let gg = gateway(&Config::parse(&w.config_text).unwrap()).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    c.send(true, 1, b"hello vendor", MASK).await;
    assert_eq!(c.frame().await.unwrap(), (1, b"hello vendor".to_vec()));
    let guest_token = w.oauth.guest_tokens()[0].clone();
    let request = &w.upstream.requests()[0];
    assert_eq!(
        request.query_param("guest").as_deref(),
        Some(guest_token.as_str())
    );
    assert_eq!(w.oauth.token_fetches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_cold_connections_fetch_one_token() {
    let w = world().await;
    let gg = gateway(&Config::parse(&w.config_text).unwrap()).await;
    let clients = (0..200).map(|_| {
        let addr = gg.addr;
        tokio::spawn(async move {
            let mut c = RawClient::connect(addr, "").await;
            c.send(true, 1, b"x", MASK).await;
            assert_eq!(c.frame().await.unwrap(), (1, b"x".to_vec()));
            c
        })
    });
    let clients = futures::future::join_all(clients).await;
    assert_eq!(clients.len(), 200);
    assert_eq!(
        w.oauth.token_fetches(),
        1,
        "one token for every waiting connection"
    );
    assert_eq!(w.oauth.guest_creates(), 200);
}

async fn close_code_with_token_endpoint(mode: OAuthMode) -> (u16, String) {
    let w = world().await;
    w.oauth.set_mode(mode);
    let gg = gateway(&Config::parse(&w.config_text).unwrap()).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    let closed = c.close_frame().await;
    assert_eq!(
        w.upstream.accepted(),
        0,
        "no upstream connection without a token"
    );
    closed
}

#[tokio::test]
async fn token_endpoint_failures_map_to_documented_close_codes() {
    assert_eq!(
        close_code_with_token_endpoint(OAuthMode::Status(401))
            .await
            .0,
        4401
    );
    assert_eq!(
        close_code_with_token_endpoint(OAuthMode::Status(500))
            .await
            .0,
        4503
    );
    assert_eq!(
        close_code_with_token_endpoint(OAuthMode::Status(429))
            .await
            .0,
        4503
    );
    assert_eq!(
        close_code_with_token_endpoint(OAuthMode::Hang).await.0,
        4504
    );
    assert_eq!(
        close_code_with_token_endpoint(OAuthMode::BadJson).await.0,
        4502
    );
}

#[tokio::test]
async fn failing_token_source_turns_readyz_503() {
    let w = world().await;
    w.oauth.set_mode(OAuthMode::Status(401));
    let gg = gateway(&Config::parse(&w.config_text).unwrap()).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    assert_eq!(c.close_frame().await.0, 4401);
    let (status, body) = http_get(gg.admin_addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("oauth token source failing"), "{body}");
    let (_, metrics) = http_get(gg.admin_addr, "/metrics").await;
    assert!(
        metrics.contains(r#"guestgate_token_fetches_total{outcome="rejected",route="vendor"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_appear_nowhere_a_person_or_browser_can_see() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let w = world().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guestgate.toml");
    std::fs::write(&path, &w.config_text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_guestgate"))
        .args(["serve", "--config"])
        .arg(&path)
        .args(["--log", "debug"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = line_tx.send(all.clone());
        }
        all
    });
    let mut seen = String::new();
    while !seen.contains("guestgate is serving") {
        seen = line_rx.recv_timeout(STEP).expect("guestgate started");
    }
    let plain = strip_ansi(&seen);
    let addr: std::net::SocketAddr = after(&plain, "listen=").parse().unwrap();
    let admin: std::net::SocketAddr = after(&plain, "admin=").parse().unwrap();

    let mut received = Vec::new();
    let mut c = RawClient::connect(addr, "").await;
    c.send(true, 1, b"hi", MASK).await;
    received.extend(c.frame().await.unwrap().1);
    received.extend(c.response_head.bytes());
    // A failing connection's messages too.
    w.oauth.set_mode(OAuthMode::Status(401));
    // The cached token still works, so force a failure through the guest step instead.
    w.oauth.revoke_tokens();
    let mut failed = RawClient::connect(addr, "").await;
    let (code, reason) = failed.close_frame().await;
    assert_eq!(code, 4401);
    received.extend(reason.bytes());
    failed.send(true, 8, &close_payload(4401, ""), MASK).await;
    c.send(true, 8, &close_payload(1000, "bye"), MASK).await;
    let (_, bye) = c.close_frame().await;
    received.extend(bye.bytes());
    let (_, metrics) = http_get(admin, "/metrics").await;
    let (_, ready) = http_get(admin, "/readyz").await;
    let (_, health) = http_get(admin, "/healthz").await;

    let check = Command::new(env!("CARGO_BIN_EXE_guestgate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(check.status.success());
    let check_out = String::from_utf8_lossy(&check.stdout).into_owned()
        + &String::from_utf8_lossy(&check.stderr);

    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let logs = reader.join().unwrap() + &stderr;

    let access_token = "fake-access-1";
    let guest_token = w.oauth.guest_tokens()[0].clone();
    let received = String::from_utf8_lossy(&received).into_owned();
    for (what, text) in [
        ("logs", &logs),
        ("browser bytes", &received),
        ("metrics", &metrics),
        ("readyz", &ready),
        ("healthz", &health),
        ("check", &check_out),
    ] {
        for secret in [SECRET, access_token, guest_token.as_str()] {
            assert!(
                !text.contains(secret),
                "{secret} appeared in {what}:\n{text}"
            );
        }
    }
    assert!(
        logs.contains("connection ended"),
        "the logs are real:\n{logs}"
    );
}

#[test]
fn upstream_host_is_fixed_by_config() {
    let text = r#"
[[routes]]
edge.allow_any_origin = true
[routes.flow]
upstream = "{{query.host}}/socket"
query = [{ name = "host" }]
"#;
    let config = Config::parse(text).unwrap();
    let err = guestgate::app::prepare_routes(&config)
        .err()
        .expect("a browser-chosen host is refused");
    assert!(err.to_string().contains("flow.upstream"), "{err}");
    let _ = Duration::ZERO;
}
