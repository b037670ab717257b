//! Messenger features through the Genesys conversation layer, end to end against the fake:
//! pacing instead of 429s, typing thinned to the official cadence, a session that ends
//! upstream, and (with the fake's history, attachments and lifecycle) everything a Messenger
//! page does, with no credential ever in a frame the page receives.

mod common;

use std::time::Duration;

use common::*;
use guestgate::mock::genesys::{FakeGenesys, FakeGenesysConfig, FakeGenesysHandle};
use serde_json::{Value, json};
use tokio::net::TcpListener;

async fn fake_genesys(config: FakeGenesysConfig) -> FakeGenesysHandle {
    FakeGenesys::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), config)
}

/// The demo's route (Genesys preset, resume tickets) aimed at `fake`.
fn preset_config(
    fake: &FakeGenesysHandle,
    key_file: &std::path::Path,
) -> guestgate::config::Config {
    let any = "127.0.0.1:0".parse().unwrap();
    let mut c = guestgate::demo::demo_config(any, any, &fake.url(), Some(key_file));
    c.server.shutdown_grace = Duration::from_secs(3);
    c
}

fn key_file() -> tempfile::TempPath {
    let path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    use base64::Engine;
    let key: [u8; 32] = rand::random();
    std::fs::write(&path, base64::engine::general_purpose::STANDARD.encode(key)).unwrap();
    path
}

/// A page: a raw WebSocket client that keeps every text frame it received.
struct Page {
    client: RawClient,
    seen: Vec<String>,
}

impl Page {
    async fn open(addr: std::net::SocketAddr, path: &str) -> (Page, Value) {
        let client =
            RawClient::connect_path(addr, path, "Origin: https://www.site.example\r\n").await;
        let mut page = Page {
            client,
            seen: Vec::new(),
        };
        let ready = page.until(|v| v["class"] == "SessionReady").await;
        (page, ready)
    }

    async fn send(&mut self, v: Value) {
        self.client
            .send(true, 1, v.to_string().as_bytes(), MASK)
            .await;
    }

    /// Reads text frames until one satisfies `want`; a close frame fails the test.
    async fn until(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        loop {
            let (op, payload) = self.client.frame().await.expect("connection ended");
            assert_ne!(op, 8, "closed: {:?}", frame_close(&payload));
            let text = String::from_utf8(payload).unwrap();
            self.seen.push(text.clone());
            let v: Value = serde_json::from_str(&text).unwrap();
            if want(&v) {
                return v;
            }
        }
    }

    /// Reads text frames until the close frame; returns its code and reason.
    async fn closed(&mut self) -> (u16, String) {
        loop {
            let (op, payload) = self.client.frame().await.expect("connection ended");
            if op == 8 {
                return frame_close(&payload);
            }
            self.seen.push(String::from_utf8(payload).unwrap());
        }
    }

    fn classes(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|t| {
                serde_json::from_str::<Value>(t).unwrap()["class"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    }
}

fn frame_close(payload: &[u8]) -> (u16, String) {
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    (code, String::from_utf8_lossy(&payload[2..]).into_owned())
}

fn text(t: &str) -> Value {
    json!({"action":"onMessage","message":{"type":"Text","text":t}})
}

fn typing() -> Value {
    json!({"action":"onMessage","message":{"type":"Event","events":[{"eventType":"Typing","typing":{"type":"On"}}]}})
}

fn is_inbound(v: &Value, t: &str) -> bool {
    v["class"] == "StructuredMessage"
        && v["body"]["direction"] == "Inbound"
        && v["body"]["text"] == t
}

#[tokio::test]
async fn six_messages_typed_fast_all_arrive_in_order_without_a_429() {
    let fake = fake_genesys(FakeGenesysConfig {
        agent_reply: false,
        ..FakeGenesysConfig::default()
    })
    .await;
    let key = key_file();
    let gg = gateway(&preset_config(&fake, &key)).await;
    let (mut page, _) = Page::open(gg.addr, "/ws").await;
    let started = tokio::time::Instant::now();
    for n in 1..=6 {
        page.send(text(&format!("m{n}"))).await;
    }
    for n in 1..=6 {
        let want = format!("m{n}");
        page.until(|v| is_inbound(v, &want) || v["code"] == 429)
            .await;
        assert!(
            is_inbound(
                &serde_json::from_str(page.seen.last().unwrap()).unwrap(),
                &want
            ),
            "expected the echo of {want}, got {:?}",
            page.seen.last()
        );
    }
    // Two per second: the sixth waited two full windows.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        page.seen.iter().all(|t| !t.contains("429")),
        "{:?}",
        page.seen
    );
    let gg_metrics = metrics_when(
        gg.admin_addr,
        "guestgate_genesys_paced_messages_total",
        |m| {
            m.contains(
                "guestgate_genesys_paced_messages_total{outcome=\"queued\",route=\"demo\"} 4",
            )
        },
    )
    .await;
    assert!(
        gg_metrics
            .contains("guestgate_genesys_paced_messages_total{outcome=\"sent\",route=\"demo\"} 2")
    );
}

#[tokio::test]
async fn a_flood_past_the_queue_gets_a_refusal_frame_for_each_message_not_sent() {
    let fake = fake_genesys(FakeGenesysConfig {
        agent_reply: false,
        ..FakeGenesysConfig::default()
    })
    .await;
    let key = key_file();
    let mut config = preset_config(&fake, &key);
    if let guestgate::config::UpstreamConfig::Preset(guestgate::preset::PresetConfig::Genesys(g)) =
        &mut config.routes[0].upstream
    {
        g.message_queue = 3;
    }
    let gg = gateway(&config).await;
    let (mut page, _) = Page::open(gg.addr, "/ws").await;
    // 2 go at once, 3 wait, 2 are refused.
    for n in 1..=7 {
        let mut m = text(&format!("f{n}"));
        m["tracingId"] = json!(format!("t{n}"));
        page.send(m).await;
    }
    let refused: Vec<Value> = {
        let mut out = Vec::new();
        while out.len() < 2 {
            out.push(page.until(|v| v["class"] == "MessageNotSent").await);
        }
        out
    };
    assert_eq!(refused[0]["type"], "guestgate");
    assert_eq!(refused[0]["code"], 429);
    assert_eq!(refused[0]["tracingId"], "t6");
    assert_eq!(refused[1]["tracingId"], "t7");
    for n in 1..=5 {
        let want = format!("f{n}");
        if !page
            .seen
            .iter()
            .any(|t| is_inbound(&serde_json::from_str(t).unwrap(), &want))
        {
            page.until(|v| is_inbound(v, &want)).await;
        }
    }
    let requests = fake.requests();
    let sent: Vec<_> = requests
        .iter()
        .filter(|r| r["action"] == "onMessage")
        .map(|r| r["message"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent, ["f1", "f2", "f3", "f4", "f5"]);
}

#[tokio::test]
async fn typing_reaches_genesys_at_most_once_per_five_seconds() {
    let fake = fake_genesys(FakeGenesysConfig {
        agent_reply: false,
        ..FakeGenesysConfig::default()
    })
    .await;
    let key = key_file();
    let gg = gateway(&preset_config(&fake, &key)).await;
    let (mut page, _) = Page::open(gg.addr, "/ws").await;
    for _ in 0..4 {
        page.send(typing()).await;
    }
    page.send(text("after typing")).await;
    page.until(|v| is_inbound(v, "after typing")).await;
    let typing_sent = fake
        .requests()
        .iter()
        .filter(|r| r["message"]["type"] == "Event")
        .count();
    assert_eq!(typing_sent, 1);
    metrics_when(gg.admin_addr, "typing_thinned", |m| {
        m.contains(
            "guestgate_genesys_paced_messages_total{outcome=\"typing_thinned\",route=\"demo\"} 3",
        )
    })
    .await;
}

#[tokio::test]
async fn an_expired_session_ends_with_4410_and_its_ticket_starts_a_new_conversation() {
    let fake = fake_genesys(FakeGenesysConfig {
        agent_reply: false,
        session_lifetime: Some(Duration::from_millis(500)),
        ..FakeGenesysConfig::default()
    })
    .await;
    let key = key_file();
    let gg = gateway(&preset_config(&fake, &key)).await;
    let (mut page, ready) = Page::open(gg.addr, "/ws").await;
    let ticket = ready["body"]["resumeTicket"].as_str().unwrap().to_owned();
    let (code, reason) = page.closed().await;
    assert_eq!(code, 4410, "{reason}");
    let classes = page.classes();
    assert!(
        classes.contains(&"SessionExpiredEvent".to_owned()),
        "{classes:?}"
    );
    let ended: Value = serde_json::from_str(
        page.seen
            .iter()
            .find(|t| t.contains("SessionEnded"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ended["type"], "guestgate");
    assert_eq!(ended["body"]["reason"], "expired");

    // The old ticket does not loop on errors: the next connect is a new conversation.
    let (_page, again) = Page::open(gg.addr, &format!("/ws?resume={ticket}")).await;
    assert_eq!(again["body"]["newSession"], true);
    assert_eq!(again["body"]["previousSession"], "ended");
    assert_ne!(again["body"]["resumeTicket"], ticket.as_str());
    let tokens = fake.tokens_seen();
    assert_eq!(
        tokens.len(),
        2,
        "a new session token for the new conversation"
    );
    metrics_when(gg.admin_addr, "sessions_ended", |m| {
        m.contains("guestgate_genesys_sessions_ended_total{reason=\"expired\",route=\"demo\"} 1")
            && m.contains("guestgate_resume_attempts_total{outcome=\"ended\"} 1")
    })
    .await;
}
