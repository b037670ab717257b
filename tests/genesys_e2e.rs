//! The `genesys-web-messaging` preset end to end: a browser with no credential talks to a
//! faithful fake of Genesys Web Messaging through guestgate, which configures the session,
//! injects the session token and keeps it from the browser.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use guestgate::mock::genesys::{FakeGenesys, FakeGenesysConfig, FakeGenesysHandle};
use guestgate::preset::PresetConfig;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

async fn fake_genesys(config: FakeGenesysConfig) -> FakeGenesysHandle {
    FakeGenesys::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), config)
}

fn preset_config(fake_url: &str) -> guestgate::config::Config {
    let any = "127.0.0.1:0".parse().unwrap();
    let mut c = guestgate::demo::demo_config(any, any, fake_url, None);
    c.server.shutdown_grace = Duration::from_secs(3);
    c
}

/// Reads text frames until one satisfies `want`; returns every frame's text read on the way.
async fn read_until(c: &mut RawClient, want: impl Fn(&Value) -> bool) -> (Value, Vec<String>) {
    let mut seen = Vec::new();
    loop {
        let (op, payload) = c.frame().await.expect("connection ended");
        let text = String::from_utf8(payload).unwrap();
        assert_eq!(op, 1, "unexpected frame {op}: {text}");
        seen.push(text.clone());
        let v: Value = serde_json::from_str(&text).unwrap();
        if want(&v) {
            return (v, seen);
        }
    }
}

#[tokio::test]
async fn guest_chats_without_ever_holding_the_session_token() {
    let fake = fake_genesys(FakeGenesysConfig::default()).await;
    let gg = gateway(&preset_config(&fake.url())).await;
    let mut c = RawClient::connect(gg.addr, "Origin: https://www.site.example\r\n").await;
    let (ready, mut seen) = read_until(&mut c, |v| v["class"] == "SessionReady").await;
    assert_eq!(ready["type"], "guestgate");
    assert_eq!(ready["body"]["newSession"], true);

    let msg = json!({"action":"onMessage","message":{"type":"Text","text":"hello agent"}});
    c.send(true, 1, msg.to_string().as_bytes(), MASK).await;
    let (reply, more) = read_until(&mut c, |v| {
        v["body"]["direction"] == "Outbound" && v["body"]["type"] == "Text"
    })
    .await;
    seen.extend(more);
    assert_eq!(reply["body"]["text"], "Agent: you said \"hello agent\"");
    assert!(
        seen.iter()
            .any(|t| t.contains("\"Inbound\"") && t.contains("hello agent"))
    );
    assert!(seen.iter().any(|t| t.contains("Typing")));

    // Upstream saw configureSession first, then the message, both with one server-side token.
    let requests = fake.wait_for_requests(2, STEP).await.unwrap();
    assert_eq!(requests[0]["action"], "configureSession");
    assert_eq!(requests[0]["deploymentId"], "fake-deployment");
    let token = requests[0]["token"].as_str().unwrap().to_owned();
    assert_eq!(requests[1]["action"], "onMessage");
    assert_eq!(requests[1]["token"], token.as_str());
    // The deployment's Origin was sent upstream, not the page's.
    let upgrade = &fake.upgrade_requests()[0];
    assert_eq!(
        upgrade.header("origin"),
        Some("https://chat.guestgate.example")
    );
    // Nothing the browser received carries the token.
    assert!(
        seen.iter().all(|t| !t.contains(&token)),
        "token leaked to the browser"
    );
}

/// What a [`recording_upstream`] connection received, and when it ended.
struct Recording {
    /// Every message, in order, including close frames.
    messages: Arc<Mutex<Vec<tungstenite::Message>>>,
    /// Fires when the upstream leg's stream ends (guestgate closed it or dropped it).
    ended: oneshot::Receiver<()>,
}

/// A Genesys stand-in for one connection that answers `configureSession` as Genesys does,
/// records every message guestgate sends and reports when the connection ends: once it has
/// ended, everything guestgate ever wrote on that leg is in the recording.
async fn recording_upstream() -> (String, Recording) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1", listener.local_addr().unwrap());
    let messages = Arc::new(Mutex::new(Vec::new()));
    let (ended_tx, ended) = oneshot::channel();
    let log = messages.clone();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        while let Some(Ok(m)) = ws.next().await {
            log.lock().unwrap().push(m.clone());
            let is_hello = m.to_text().is_ok_and(|t| t.contains("configureSession"));
            if is_hello {
                let ready = json!({"type":"response","class":"SessionResponse","code":200,
                    "body":{"connected":true,"newSession":true}});
                let _ = ws.send(tungstenite::Message::text(ready.to_string())).await;
            }
        }
        let _ = ended_tx.send(());
    });
    (url, Recording { messages, ended })
}

#[tokio::test]
async fn browser_cannot_use_actions_outside_the_allowlist() {
    let (url, recording) = recording_upstream().await;
    let gg = gateway(&preset_config(&url)).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    read_until(&mut c, |v| v["class"] == "SessionReady").await;
    c.send(true, 1, br#"{"action":"getJwt"}"#, MASK).await;
    assert_eq!(c.close_frame().await, (1008, "action not allowed".into()));
    // Data after the close must not be forwarded either; then answer the close.
    c.send(true, 1, br#"not json"#, MASK).await;
    c.send(true, 8, &close_payload(1008, ""), MASK).await;
    // Wait for the upstream leg to end, so nothing guestgate sent can still be in flight.
    tokio::time::timeout(STEP, recording.ended)
        .await
        .expect("guestgate did not end the upstream leg")
        .expect("the recording upstream ended without reporting");
    let messages = recording.messages.lock().unwrap().clone();
    let texts: Vec<&str> = messages
        .iter()
        .filter_map(|m| match m {
            tungstenite::Message::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    // Only configureSession reached the upstream.
    assert_eq!(texts.len(), 1, "{messages:?}");
    assert!(texts[0].contains("configureSession"), "{messages:?}");
}

#[tokio::test]
async fn unknown_deployment_gives_4403_with_a_readable_reason() {
    let fake = fake_genesys(FakeGenesysConfig {
        deployment_ids: vec!["some-other-deployment".into()],
        ..FakeGenesysConfig::default()
    })
    .await;
    let gg = gateway(&preset_config(&fake.url())).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    let (code, reason) = c.close_frame().await;
    assert_eq!(code, 4403);
    assert!(reason.contains("deploymentId"), "{reason}");
}

#[tokio::test]
async fn origin_outside_the_deployment_gives_4403() {
    let fake = fake_genesys(FakeGenesysConfig {
        allowed_origins: vec!["https://only.this.example".into()],
        ..FakeGenesysConfig::default()
    })
    .await;
    let gg = gateway(&preset_config(&fake.url())).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    assert_eq!(c.close_frame().await.0, 4403);
}

/// A Genesys stand-in that answers `configureSession` with `reply`.
async fn scripted_upstream(reply: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() && !reply.is_empty() {
                        let _ = ws.send(tungstenite::Message::text(reply)).await;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn hello_answered_by_an_error_frame_gives_4400() {
    let url = scripted_upstream(
        r#"{"type":"response","class":"string","code":4007,"body":"session not found"}"#,
    )
    .await;
    let gg = gateway(&preset_config(&url)).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    assert_eq!(
        c.close_frame().await,
        (4400, "upstream refused the session".into())
    );
}

#[tokio::test]
async fn hello_never_answered_gives_4504_after_the_ready_deadline() {
    let url = scripted_upstream("").await;
    let mut config = preset_config(&url);
    let Some(PresetConfig::Genesys(genesys)) = config.routes[0].upstream.preset_mut() else {
        panic!("the demo route uses the genesys preset");
    };
    genesys.ready_timeout = Duration::from_millis(300);
    let gg = gateway(&config).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    assert_eq!(c.close_frame().await.0, 4504);
}

fn with_resume(fake_url: &str, key_file: &std::path::Path) -> guestgate::config::Config {
    let any = "127.0.0.1:0".parse().unwrap();
    let mut c = guestgate::demo::demo_config(any, any, fake_url, Some(key_file));
    c.server.shutdown_grace = Duration::from_secs(3);
    c
}

async fn chat_once(c: &mut RawClient, text: &str) {
    let msg = json!({"action":"onMessage","message":{"type":"Text","text":text}});
    c.send(true, 1, msg.to_string().as_bytes(), MASK).await;
    read_until(c, |v| {
        v["body"]["direction"] == "Outbound" && v["body"]["type"] == "Text"
    })
    .await;
}

#[tokio::test]
async fn resume_ticket_continues_the_session_on_another_instance() {
    let fake = fake_genesys(FakeGenesysConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("resume.key");
    std::fs::write(&key_file, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
    let first = gateway(&with_resume(&fake.url(), &key_file)).await;
    let second = gateway(&with_resume(&fake.url(), &key_file)).await;

    let mut c = RawClient::connect(first.addr, "").await;
    let (ready, seen) = read_until(&mut c, |v| v["class"] == "SessionReady").await;
    let ticket = ready["body"]["resumeTicket"].as_str().unwrap().to_owned();
    chat_once(&mut c, "before the drop").await;
    let token = fake.tokens_seen()[0].clone();
    assert!(!ticket.contains(&token) && seen.iter().all(|t| !t.contains(&token)));
    drop(c);

    // Reconnect to the other replica with the ticket: same upstream session.
    let path = format!("resume={ticket}");
    let mut c = RawClient::connect_path(second.addr, &format!("/ws?{path}"), "").await;
    let (ready, _) = read_until(&mut c, |v| v["class"] == "SessionReady").await;
    assert_eq!(ready["body"]["newSession"], false);
    chat_once(&mut c, "after the drop").await;
    assert_eq!(fake.tokens_seen(), vec![token.clone()]);
    let history = fake.history(&token).unwrap();
    assert!(history.iter().any(|m| m["text"] == "before the drop"));
    assert!(history.iter().any(|m| m["text"] == "after the drop"));
    let (_, metrics) = http_get(second.admin_addr, "/metrics").await;
    assert!(
        metrics.contains(r#"guestgate_resume_attempts_total{outcome="resumed"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn tampered_ticket_starts_a_fresh_session_instead_of_failing() {
    let fake = fake_genesys(FakeGenesysConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("resume.key");
    std::fs::write(&key_file, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
    let gg = gateway(&with_resume(&fake.url(), &key_file)).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    let (ready, _) = read_until(&mut c, |v| v["class"] == "SessionReady").await;
    let mut ticket = ready["body"]["resumeTicket"].as_str().unwrap().to_owned();
    let last = ticket.pop().unwrap();
    ticket.push(if last == 'A' { 'B' } else { 'A' });
    drop(c);
    let mut c = RawClient::connect_path(gg.addr, &format!("/ws?resume={ticket}"), "").await;
    let (ready, _) = read_until(&mut c, |v| v["class"] == "SessionReady").await;
    assert_eq!(ready["body"]["newSession"], true);
    assert_eq!(fake.tokens_seen().len(), 2);
    let (_, metrics) = http_get(gg.admin_addr, "/metrics").await;
    assert!(
        metrics.contains(r#"guestgate_resume_attempts_total{outcome="tampered"} 1"#),
        "{metrics}"
    );
}
