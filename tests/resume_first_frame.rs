//! A resume ticket presented in the first frame instead of the URL (`?resume=first-frame`), so
//! it never reaches an access log: the same upstream session continues, the frame is never
//! relayed upstream, and a page that announces the frame but sends something else is closed
//! with 1008 before any upstream work.

mod common;

use std::time::Duration;

use common::{MASK, RawClient, gateway};
use guestgate::app::Running;
use guestgate::mock::genesys::{FakeGenesys, FakeGenesysConfig, FakeGenesysHandle};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Reads text frames until one matches; returns it.
async fn read_until(c: &mut RawClient, want: impl Fn(&Value) -> bool) -> Value {
    loop {
        let (op, payload) = c.frame().await.expect("connection open");
        if op != 1 {
            continue;
        }
        let v: Value = serde_json::from_slice(&payload).unwrap();
        if want(&v) {
            return v;
        }
    }
}

/// The fake Genesys and a guestgate in front of it with resume tickets (the key lives in the
/// returned directory).
async fn start() -> (FakeGenesysHandle, Running, tempfile::TempDir) {
    let fake = FakeGenesys::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        FakeGenesysConfig::default(),
    );
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("resume.key");
    std::fs::write(&key_file, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let mut config = guestgate::demo::demo_config(any, any, &fake.url(), Some(&key_file));
    config.server.shutdown_grace = Duration::from_secs(3);
    let gg = gateway(&config).await;
    (fake, gg, dir)
}

#[tokio::test]
async fn a_ticket_in_the_first_frame_resumes_and_is_not_relayed() {
    let (fake, gg, _dir) = start().await;

    let mut c = RawClient::connect(gg.addr, "").await;
    let ready = read_until(&mut c, |v| v["class"] == "SessionReady").await;
    let ticket = ready["body"]["resumeTicket"].as_str().unwrap().to_owned();
    drop(c);

    // The URL carries only the marker; the ticket comes as the first message, followed at
    // once by a chat message (it must reach the upstream after the resume).
    let mut c = RawClient::connect_path(gg.addr, "/ws?resume=first-frame", "").await;
    let resume = json!({"type": "guestgate", "action": "resume", "ticket": ticket});
    c.send(true, 1, resume.to_string().as_bytes(), MASK).await;
    let msg = json!({"action":"onMessage","message":{"type":"Text","text":"after resume"}});
    c.send(true, 1, msg.to_string().as_bytes(), MASK).await;
    let ready = read_until(&mut c, |v| v["class"] == "SessionReady").await;
    assert_eq!(ready["body"]["newSession"], false, "{ready}");
    read_until(&mut c, |v| v["body"]["text"] == "after resume").await;

    let tokens = fake.tokens_seen();
    assert_eq!(tokens.len(), 1, "one upstream session, resumed");
    let history = fake.history(&tokens[0]).unwrap();
    assert!(history.iter().any(|m| m["text"] == "after resume"));
    let upstream_saw = serde_json::to_string(&fake.requests()).unwrap();
    assert!(
        !upstream_saw.contains(&ticket) && !upstream_saw.contains("\"resume\""),
        "the resume frame was relayed upstream"
    );
}

#[tokio::test]
async fn announcing_the_frame_and_sending_something_else_closes_1008() {
    let (fake, gg, _dir) = start().await;

    let mut c = RawClient::connect_path(gg.addr, "/ws?resume=first-frame", "").await;
    let msg = json!({"action":"onMessage","message":{"type":"Text","text":"hi"}});
    c.send(true, 1, msg.to_string().as_bytes(), MASK).await;
    let (code, reason) = c.close_frame().await;
    assert_eq!(
        (code, reason.as_str()),
        (1008, "expected the resume frame first")
    );
    assert!(
        fake.tokens_seen().is_empty(),
        "no upstream session was opened"
    );
}
