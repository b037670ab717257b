//! Resume tickets end to end on the Genesys preset: a ticket whose conversation began more
//! than `max_lifetime` ago starts a fresh session (counted as expired), however recently it
//! was issued; one within it resumes the same session.

mod common;

use std::time::Duration;

use common::*;
use guestgate::auth::resume::{ResumeKeys, ResumeTicket, unix_now};
use guestgate::mock::genesys::{FakeGenesys, FakeGenesysConfig};
use guestgate::secret::Secret;
use serde_json::Value;
use tokio::net::TcpListener;

/// The key file's content and the 32 bytes it decodes to.
const KEY_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const KEY: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
const DAY: u64 = 24 * 3600;

async fn ready(c: &mut RawClient) -> Value {
    loop {
        let (op, payload) = c.frame().await.expect("connection ended");
        assert_eq!(op, 1);
        let v: Value = serde_json::from_slice(&payload).unwrap();
        if v["class"] == "SessionReady" {
            return v;
        }
    }
}

#[tokio::test]
async fn a_ticket_past_max_lifetime_starts_fresh_one_within_it_resumes() {
    let fake = FakeGenesys::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        FakeGenesysConfig::default(),
    );
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("resume.key");
    std::fs::write(&key_file, KEY_B64).unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let mut config = guestgate::demo::demo_config(any, any, &fake.url(), Some(&key_file));
    config.server.shutdown_grace = Duration::from_secs(3);
    let route = config.routes[0].name.clone();
    let gg = gateway(&config).await;

    let mut c = RawClient::connect(gg.addr, "").await;
    ready(&mut c).await;
    let token = fake.tokens_seen()[0].clone();
    drop(c);

    // Sealed with the route's key, issued a second ago, valid for an hour: only its first
    // issue, eight days ago, is past the default seven-day max_lifetime.
    let keys = ResumeKeys::from_bytes(&[*KEY]).unwrap();
    let now = unix_now();
    let mut old = ResumeTicket::new(
        &route,
        Secret::new(token.clone()),
        now - 1,
        Duration::from_secs(3600),
    );
    old.first_issued_at_unix = now - 8 * DAY;
    let mut c =
        RawClient::connect_path(gg.addr, &format!("/ws?resume={}", keys.seal(&old)), "").await;
    let greeting = ready(&mut c).await;
    assert_eq!(greeting["body"]["newSession"], true);
    assert_eq!(fake.tokens_seen().len(), 2, "a fresh token was used");
    drop(c);

    // The same, six days into the conversation: resumed, and the renewal keeps its start.
    old.first_issued_at_unix = now - 6 * DAY;
    let mut c =
        RawClient::connect_path(gg.addr, &format!("/ws?resume={}", keys.seal(&old)), "").await;
    let greeting = ready(&mut c).await;
    assert_eq!(greeting["body"]["newSession"], false);
    let renewed = greeting["body"]["resumeTicket"].as_str().unwrap();
    let opened = keys.open(renewed, &route, unix_now()).unwrap();
    assert_eq!(opened.first_issued_at_unix, now - 6 * DAY);
    assert_eq!(opened.session_token.expose(), token);

    let metrics = metrics_when(gg.admin_addr, "resume outcomes", |m| {
        m.contains(r#"guestgate_resume_attempts_total{outcome="resumed"} 1"#)
    })
    .await;
    assert!(
        metrics.contains(r#"guestgate_resume_attempts_total{outcome="expired"} 1"#),
        "{metrics}"
    );
}
