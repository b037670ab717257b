//! Tests for `FakeGenesys`, driven by a real WebSocket client on loopback.

use std::future::Future;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Error as WsError, Message};

use super::*;

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("test timed out")
}

async fn start(config: FakeGenesysConfig) -> FakeGenesysHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    FakeGenesys::start(listener, config)
}

async fn connect_to(url: &str, origin: Option<&str>) -> Result<Client, WsError> {
    let mut req = url.into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

async fn connect(h: &FakeGenesysHandle) -> Client {
    connect_to(
        &h.url_for(DEFAULT_DEPLOYMENT_ID),
        Some("https://site.example"),
    )
    .await
    .unwrap()
}

async fn send(ws: &mut Client, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

async fn recv(ws: &mut Client) -> Value {
    loop {
        match ws
            .next()
            .await
            .expect("socket ended")
            .expect("socket error")
        {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(c) => panic!("unexpected close {c:?}"),
            _ => {}
        }
    }
}

fn configure(token: &str) -> Value {
    json!({"action":"configureSession","deploymentId":DEFAULT_DEPLOYMENT_ID,"token":token})
}

fn text(token: &str, text: &str) -> Value {
    json!({"action":"onMessage","token":token,"message":{"type":"Text","text":text}})
}

fn no_agent() -> FakeGenesysConfig {
    FakeGenesysConfig {
        agent_reply: false,
        ..FakeGenesysConfig::default()
    }
}

#[tokio::test]
async fn upgrade_refused_for_unknown_deployment_path_or_origin() {
    within(async {
        let config = FakeGenesysConfig {
            allowed_origins: vec!["https://site.example".into()],
            ..FakeGenesysConfig::default()
        };
        let h = start(config).await;
        let good_origin = Some("https://site.example");
        let refused = [
            (h.url_for("nope"), good_origin),
            (h.url(), good_origin),
            (
                format!("ws://{}/v2?deploymentId={DEFAULT_DEPLOYMENT_ID}", h.addr()),
                good_origin,
            ),
            (
                h.url_for(DEFAULT_DEPLOYMENT_ID),
                Some("https://evil.example"),
            ),
            (h.url_for(DEFAULT_DEPLOYMENT_ID), None),
        ];
        for (url, origin) in &refused {
            match connect_to(url, *origin).await {
                Err(WsError::Http(resp)) => {
                    assert_eq!(resp.status(), 403, "{url}");
                    let body = String::from_utf8(resp.body().clone().unwrap()).unwrap();
                    assert!(body.contains("explicit deny"));
                }
                other => panic!("{url} {origin:?}: expected 403, got {other:?}"),
            }
        }
        connect(&h).await;
        assert_eq!((h.refused(), h.accepted()), (5, 1));
        assert_eq!(
            h.upgrade_requests()[0]
                .query_param("deploymentId")
                .as_deref(),
            Some("nope")
        );
    })
    .await
}

#[tokio::test]
async fn sessions_resume_by_token_across_sockets() {
    within(async {
        let h = start(no_agent()).await;
        let mut ws = connect(&h).await;
        let mut req = configure("tok-1");
        req["tracingId"] = "trace-1".into();
        send(&mut ws, req).await;
        let r = recv(&mut ws).await;
        assert_eq!(
            (r["type"].as_str(), r["class"].as_str(), r["code"].as_i64()),
            (Some("response"), Some("SessionResponse"), Some(200))
        );
        assert_eq!(r["body"]["connected"], true);
        assert_eq!(r["body"]["newSession"], true);
        assert_eq!(r["body"]["readOnly"], false);
        assert_eq!(r["body"]["maxCustomDataBytes"], 2048);
        assert_eq!(r["tracingId"], "trace-1");
        send(&mut ws, text("tok-1", "first")).await;
        assert_eq!(recv(&mut ws).await["body"]["text"], "first");
        drop(ws);

        let mut again = connect(&h).await;
        send(&mut again, configure("tok-1")).await;
        assert_eq!(recv(&mut again).await["body"]["newSession"], false);
        send(&mut again, text("tok-1", "second")).await;
        recv(&mut again).await;
        let texts: Vec<Value> = h
            .history("tok-1")
            .unwrap()
            .iter()
            .map(|m| m["text"].clone())
            .collect();
        assert_eq!(texts, vec![json!("first"), json!("second")]);
        assert_eq!(h.tokens_seen(), vec!["tok-1".to_string()]);
        assert!(h.requests().iter().all(|r| r["token"] == "tok-1"));
    })
    .await
}

#[tokio::test]
async fn token_errors_are_error_frames() {
    within(async {
        let h = start(no_agent()).await;
        let mut ws = connect(&h).await;
        send(&mut ws, text("never-configured", "hi")).await;
        let r = recv(&mut ws).await;
        assert_eq!(
            (r["class"].as_str(), r["code"].as_i64()),
            (Some("string"), Some(4007))
        );
        assert_eq!(r["body"], "session not found");

        send(
            &mut ws,
            json!({"action":"onMessage","message":{"type":"Text","text":"x"}}),
        )
        .await;
        assert_eq!(recv(&mut ws).await["code"], 400);

        // Known token, but this socket has not configured a session yet.
        let mut other = connect(&h).await;
        send(&mut other, configure("tok-2")).await;
        recv(&mut other).await;
        send(&mut ws, text("tok-2", "hi")).await;
        assert_eq!(recv(&mut ws).await["code"], 400);

        send(
            &mut other,
            json!({"action":"echo","message":{"type":"Text","text":"x"},"tracingId":"t"}),
        )
        .await;
        let r = recv(&mut other).await;
        assert_eq!(
            (r["code"].as_i64(), r["tracingId"].as_str()),
            (Some(400), Some("t"))
        );
    })
    .await
}

#[tokio::test]
async fn on_message_echoes_then_agent_types_and_replies() {
    within(async {
        let h = start(FakeGenesysConfig::default()).await;
        let mut ws = connect(&h).await;
        send(&mut ws, configure("tok")).await;
        recv(&mut ws).await;
        let mut req = text("tok", "hello");
        req["tracingId"] = "t-9".into();
        send(&mut ws, req).await;
        let echo = recv(&mut ws).await;
        assert_eq!(
            (echo["type"].as_str(), echo["class"].as_str()),
            (Some("message"), Some("StructuredMessage"))
        );
        assert_eq!(echo["body"]["direction"], "Inbound");
        assert_eq!(echo["body"]["type"], "Text");
        assert_eq!(echo["body"]["text"], "hello");
        assert_eq!(echo["tracingId"], "t-9");
        let typing = recv(&mut ws).await;
        assert_eq!(typing["body"]["direction"], "Outbound");
        assert_eq!(typing["body"]["events"][0]["eventType"], "Typing");
        let reply = recv(&mut ws).await;
        assert_eq!(reply["body"]["direction"], "Outbound");
        assert_eq!(reply["body"]["text"], "Agent: you said \"hello\"");
        assert_eq!(h.history("tok").unwrap().len(), 2);

        send(
            &mut ws,
            json!({"action":"echo","token":"tok","message":{"type":"Text","text":"ping"}}),
        )
        .await;
        let r = recv(&mut ws).await;
        assert_eq!(
            (r["type"].as_str(), r["class"].as_str()),
            (Some("response"), Some("StructuredMessage"))
        );
        assert_eq!(r["body"]["text"], "ping");
    })
    .await
}

#[tokio::test]
async fn more_than_the_rate_limit_gets_429() {
    within(async {
        let h = start(no_agent()).await;
        let mut ws = connect(&h).await;
        send(&mut ws, configure("tok")).await;
        recv(&mut ws).await;
        for i in 0..3 {
            send(&mut ws, text("tok", &format!("m{i}"))).await;
        }
        assert_eq!(recv(&mut ws).await["code"], 200);
        assert_eq!(recv(&mut ws).await["code"], 200);
        let r = recv(&mut ws).await;
        assert_eq!(
            (r["class"].as_str(), r["code"].as_i64()),
            (Some("TooManyRequestsErrorMessage"), Some(429))
        );
        assert_eq!(r["body"]["retryAfter"], 1);
        assert_eq!(r["body"]["errorCode"], 4029);
        assert_eq!(h.history("tok").unwrap().len(), 2);
    })
    .await
}

#[tokio::test]
async fn expired_sessions_get_event_then_close_and_4006() {
    within(async {
        let config = FakeGenesysConfig {
            session_lifetime: Some(Duration::from_millis(300)),
            ..no_agent()
        };
        let h = start(config).await;
        let mut ws = connect(&h).await;
        send(&mut ws, configure("tok")).await;
        assert!(recv(&mut ws).await["body"]["expirationDate"].is_u64());
        assert_eq!(recv(&mut ws).await["class"], "SessionExpiredEvent");
        match ws.next().await {
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1000),
            other => panic!("expected close, got {other:?}"),
        }
        let mut again = connect(&h).await;
        send(&mut again, configure("tok")).await;
        assert_eq!(recv(&mut again).await["code"], 4006);
    })
    .await
}

#[tokio::test]
async fn configure_delay_holds_back_the_session_response() {
    within(async {
        let delay = Duration::from_millis(200);
        let h = start(FakeGenesysConfig {
            configure_delay: delay,
            ..no_agent()
        })
        .await;
        let mut ws = connect(&h).await;
        let t0 = tokio::time::Instant::now();
        send(&mut ws, configure("tok")).await;
        let reply = recv(&mut ws).await;
        assert_eq!(reply["class"], "SessionResponse");
        assert!(t0.elapsed() >= delay, "answered after {:?}", t0.elapsed());
    })
    .await
}

#[tokio::test]
async fn counts_open_sockets_and_sessions_created() {
    within(async {
        let h = start(FakeGenesysConfig::default()).await;
        assert_eq!((h.open_sockets(), h.sessions_created()), (0, 0));
        let mut ws = connect(&h).await;
        send(&mut ws, configure("count-token")).await;
        recv(&mut ws).await;
        let mut again = connect(&h).await;
        send(&mut again, configure("count-token")).await; // a resume, not a new session
        recv(&mut again).await;
        assert_eq!(h.open_sockets(), 2);
        assert_eq!(h.sessions_created(), 1);
        assert_eq!(h.request_count(), 2);
        drop(ws);
        drop(again);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while h.open_sockets() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            h.open_sockets(),
            0,
            "sockets still counted open after the peer left"
        );
    })
    .await;
}

/// Sends one plain HTTP request and returns the status and body of the answer.
async fn plain(h: &FakeGenesysHandle, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(h.addr()).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n\r\n", h.addr());
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

#[tokio::test]
async fn plain_gets_get_config_json_or_404_and_other_methods_405() {
    within(async {
        let h = start(FakeGenesysConfig {
            allowed_origins: vec!["https://site.example".into()],
            ..FakeGenesysConfig::default()
        })
        .await;
        let path = format!("/webdeployments/v1/deployments/{DEFAULT_DEPLOYMENT_ID}/config.json");
        let (status, body) = plain(&h, "GET", &path).await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["id"], DEFAULT_DEPLOYMENT_ID);
        assert_eq!(v["status"], "Active");
        assert_eq!(v["allowedDomains"], json!(["site.example"]));
        assert_eq!(
            v["auth"],
            json!({"enabled": false, "allowSessionUpgrade": false})
        );
        let unknown = "/webdeployments/v1/deployments/nope/config.json";
        assert_eq!(plain(&h, "GET", unknown).await.0, 404);
        assert_eq!(plain(&h, "GET", "/v1").await.0, 404);
        assert_eq!(plain(&h, "POST", &path).await.0, 405);
        assert_eq!(h.config_requests().len(), 4);
        assert_eq!(h.accepted() + h.refused(), 0, "no upgrade was counted");
    })
    .await;
}

#[tokio::test]
async fn a_deployment_that_is_not_active_refuses_the_upgrade() {
    within(async {
        let h = start(FakeGenesysConfig {
            deployments: BTreeMap::from([(
                DEFAULT_DEPLOYMENT_ID.to_owned(),
                FakeDeployment {
                    status: DeploymentStatus::Deleting,
                    ..FakeDeployment::default()
                },
            )]),
            ..FakeGenesysConfig::default()
        })
        .await;
        match connect_to(&h.url_for(DEFAULT_DEPLOYMENT_ID), None).await {
            Err(WsError::Http(resp)) => assert_eq!(resp.status(), 403),
            other => panic!("expected 403, got {other:?}"),
        }
        let path = format!("/webdeployments/v1/deployments/{DEFAULT_DEPLOYMENT_ID}/config.json");
        let (status, body) = plain(&h, "GET", &path).await;
        assert_eq!(status, 200);
        assert!(body.contains(r#""status":"Deleting""#), "{body}");
    })
    .await;
}

// Part 2: fan-out and the agent, history over REST, attachments, lifecycle.
mod agent;
mod attachments;
// Authenticated web messaging: identity provider, token endpoints, signed-in sessions.
mod auth;
mod history;
mod lifecycle;

/// The next JSON frame, or `None` if nothing arrives within `wait` (for "nothing else came"
/// checks).
async fn recv_within(ws: &mut Client, wait: Duration) -> Option<Value> {
    tokio::time::timeout(wait, recv(ws)).await.ok()
}

/// Reads frames until one matches, and returns it.
async fn recv_until(ws: &mut Client, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        let v = recv(ws).await;
        if pred(&v) {
            return v;
        }
    }
}

/// Reads until the close frame and returns its code (text frames before it are skipped).
async fn close_code(ws: &mut Client) -> u16 {
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
            Some(Ok(Message::Close(None))) => return 1005,
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// A socket with a configured session for `token`; returns it and the SessionResponse.
async fn session(h: &FakeGenesysHandle, token: &str) -> (Client, Value) {
    let mut ws = connect(h).await;
    send(&mut ws, configure(token)).await;
    let r = recv(&mut ws).await;
    assert_eq!(r["class"], "SessionResponse", "{r}");
    (ws, r)
}

/// Waits until the fake has no open socket.
async fn sockets_closed(h: &FakeGenesysHandle) {
    while h.open_sockets() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `f` until it holds.
async fn eventually(mut f: impl FnMut() -> bool) {
    while !f() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A fake whose default deployment has these settings.
fn with_deployment(d: FakeDeployment, config: FakeGenesysConfig) -> FakeGenesysConfig {
    FakeGenesysConfig {
        deployments: BTreeMap::from([(DEFAULT_DEPLOYMENT_ID.to_owned(), d)]),
        ..config
    }
}

/// One raw HTTP exchange with the fake: status, headers (lowercase names) and body.
struct HttpAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body` to the fake.
async fn raw_http(h: &FakeGenesysHandle, head: &str, body: &[u8]) -> HttpAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(h.addr()).await.unwrap();
    let mut req = format!("{head}\r\nhost: {}\r\n\r\n", h.addr()).into_bytes();
    req.extend_from_slice(body);
    tcp.write_all(&req).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete answer head");
    let head = String::from_utf8(answer[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpAnswer {
        status,
        headers,
        body: answer[split + 4..].to_vec(),
    }
}

/// The path and query of a URL the fake handed out.
fn path_and_query(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    }
}
