//! Messenger features through the Genesys conversation layer, end to end against the fake:
//! pacing instead of 429s, typing thinned to the official cadence, a session that ends
//! upstream, and (with the fake's history, attachments and lifecycle) everything a Messenger
//! page does, with no credential ever in a frame the page receives.

mod common;

use std::time::Duration;

use common::page::Page;
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

/// The fake's defaults without the agent's automatic replies.
fn no_agent() -> FakeGenesysConfig {
    FakeGenesysConfig {
        agent_reply: false,
        ..FakeGenesysConfig::default()
    }
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
    let fake = fake_genesys(no_agent()).await;
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
    let fake = fake_genesys(no_agent()).await;
    let key = key_file();
    let mut config = preset_config(&fake, &key);
    genesys_mut(&mut config).message_queue = 3;
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
    let fake = fake_genesys(no_agent()).await;
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

/// The session token of the only session the fake has seen.
fn only_token(fake: &FakeGenesysHandle) -> String {
    let tokens = fake.tokens_seen();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    tokens[0].clone()
}

/// Every JWT the fake handed out on the socket.
fn jwts(fake: &FakeGenesysHandle) -> Vec<String> {
    fake.sent()
        .iter()
        .filter(|v| v["class"] == "JwtResponse")
        .map(|v| v["body"]["jwt"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts that no frame the page received holds the session token or any JWT.
fn assert_no_credential(page: &Page, fake: &FakeGenesysHandle) {
    let mut secrets = fake.tokens_seen();
    secrets.extend(jwts(fake));
    assert!(!secrets.is_empty());
    for frame in &page.seen {
        for secret in &secrets {
            assert!(
                !frame.contains(secret.as_str()),
                "credential in a page frame: {frame}"
            );
        }
    }
}

fn id_of(v: &Value) -> String {
    v["body"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn history_comes_from_the_rest_api_and_the_jwt_stays_in_guestgate() {
    let fake = fake_genesys(FakeGenesysConfig::default()).await;
    let key = key_file();
    let gg = gateway(&preset_config(&fake, &key)).await;
    let (mut page, _) = Page::open(gg.addr, "/ws").await;
    for t in ["one", "two"] {
        page.send(text(t)).await;
        let want = format!("Agent: you said \"{t}\"");
        page.until(|v| v["body"]["text"] == want.as_str()).await;
    }
    page.send(json!({"action":"guestgate.getHistory","pageSize":25,"tracingId":"h1"}))
        .await;
    let history = page.until(|v| v["class"] == "History").await;
    assert_eq!(history["type"], "guestgate");
    assert_eq!(history["tracingId"], "h1");
    let texts: Vec<&str> = history["body"]["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    // Newest first, as the API lists them.
    assert_eq!(
        texts,
        [
            "Agent: you said \"two\"",
            "two",
            "Agent: you said \"one\"",
            "one"
        ]
    );
    assert_eq!(history["body"]["total"], 4);

    // At most one per second: an immediate second request is refused, the socket stays open.
    page.send(json!({"action":"guestgate.getHistory","tracingId":"h2"}))
        .await;
    let refused = page.until(|v| v["tracingId"] == "h2").await;
    assert_eq!(
        (refused["class"].as_str(), refused["code"].as_i64()),
        (Some("Error"), Some(429))
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    page.send(
        json!({"action":"guestgate.getHistory","pageNumber":2,"pageSize":3,"tracingId":"h3"}),
    )
    .await;
    let second = page.until(|v| v["tracingId"] == "h3").await;
    assert_eq!(second["class"], "History");
    assert_eq!(second["body"]["entities"][0]["text"], "one");
    // The JWT was fetched once and reused; the page never saw it nor the session token.
    assert_eq!(fake.jwt_requests(), 1);
    assert_eq!(fake.history_requests(), 2);
    assert_no_credential(&page, &fake);
    metrics_when(gg.admin_addr, "history metrics", |m| {
        m.contains("guestgate_genesys_history_fetches_total{kind=\"page\",outcome=\"ok\",route=\"demo\"} 2")
            && m.contains("guestgate_genesys_history_fetches_total{kind=\"page\",outcome=\"refused\",route=\"demo\"} 1")
            && m.contains("guestgate_genesys_jwt_fetches_total{outcome=\"ok\",route=\"demo\"} 1")
    })
    .await;

    // The page can never ask for the JWT itself.
    page.send(json!({"action":"getJwt"})).await;
    assert_eq!(page.closed().await, (1008, "action not allowed".to_owned()));
}

#[tokio::test]
async fn a_reconnect_with_after_replays_every_missed_message_once_and_in_order() {
    let fake = fake_genesys(no_agent()).await;
    let key = key_file();
    let gg = gateway(&preset_config(&fake, &key)).await;
    let (mut page, ready) = Page::open(gg.addr, "/ws").await;
    let ticket = ready["body"]["resumeTicket"].as_str().unwrap().to_owned();
    let token = only_token(&fake);
    fake.agent_say(&token, "live 1").unwrap();
    let last = page.until(|v| v["body"]["text"] == "live 1").await;
    let last_id = id_of(&last);
    drop(page);
    for n in 1..=3 {
        fake.agent_say(&token, &format!("missed {n}")).unwrap();
    }

    let path = format!("/ws?resume={ticket}&after={last_id}");
    let (mut page, again) = Page::open(gg.addr, &path).await;
    assert_eq!(again["body"]["newSession"], false);
    let done = page.until(|v| v["class"] == "ReplayDone").await;
    assert_eq!(done["body"], json!({"count": 3, "complete": true}));
    fake.agent_say(&token, "live 2").unwrap();
    page.until(|v| v["body"]["text"] == "live 2").await;
    let texts: Vec<String> = page
        .seen
        .iter()
        .map(|t| serde_json::from_str::<Value>(t).unwrap())
        .filter(|v| v["class"] == "StructuredMessage")
        .map(|v| v["body"]["text"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(texts, ["missed 1", "missed 2", "missed 3", "live 2"]);
    assert_no_credential(&page, &fake);
    metrics_when(gg.admin_addr, "replayed", |m| {
        m.contains("guestgate_genesys_replayed_messages_total{route=\"demo\"} 3")
            && m.contains("guestgate_genesys_history_fetches_total{kind=\"replay\",outcome=\"ok\",route=\"demo\"} 1")
    })
    .await;
}

#[tokio::test]
async fn read_only_after_the_agent_ends_then_start_new_hands_out_a_new_ticket() {
    use guestgate::mock::genesys::{DisconnectType, FakeDeployment};
    let mut config = no_agent();
    config.deployments.insert(
        guestgate::mock::genesys::DEFAULT_DEPLOYMENT_ID.into(),
        FakeDeployment {
            conversation_disconnect: Some(DisconnectType::ReadOnly),
            ..FakeDeployment::default()
        },
    );
    let fake = fake_genesys(config).await;
    let key = key_file();
    let gg = gateway(&preset_config(&fake, &key)).await;
    let (mut page, ready) = Page::open(gg.addr, "/ws").await;
    let first_ticket = ready["body"]["resumeTicket"].as_str().unwrap().to_owned();
    let token = only_token(&fake);
    fake.agent_disconnect(&token).unwrap();
    let ended = page
        .until(|v| v["body"]["events"][0]["presence"]["type"] == "Disconnect")
        .await;
    assert_eq!(ended["class"], "StructuredMessage");
    // Read-only: a reconnect says so.
    let (_other, reconnect) = Page::open(gg.addr, &format!("/ws?resume={first_ticket}")).await;
    assert_eq!(reconnect["body"]["readOnly"], true);

    page.send(json!({"action":"guestgate.startNew"})).await;
    let response = page.until(|v| v["class"] == "SessionResponse").await;
    assert_eq!(response["body"]["readOnly"], false);
    let fresh = page.until(|v| v["class"] == "SessionReady").await;
    assert_eq!(fresh["type"], "guestgate");
    assert_eq!(fresh["body"]["newSession"], true);
    let new_ticket = fresh["body"]["resumeTicket"].as_str().unwrap();
    assert_ne!(new_ticket, first_ticket);
    assert_eq!(fake.read_only(&token), Some(false));
    page.send(text("hello again")).await;
    page.until(|v| is_inbound(v, "hello again")).await;
    let configures: Vec<Value> = fake
        .requests()
        .into_iter()
        .filter(|r| r["startNew"] == true)
        .collect();
    assert_eq!(configures.len(), 1);
    assert_eq!(configures[0]["action"], "configureSession");
    assert_no_credential(&page, &fake);
}

#[tokio::test]
async fn clearing_the_conversation_ends_with_4410_and_the_next_connect_is_new() {
    use guestgate::mock::genesys::FakeDeployment;
    let mut config = no_agent();
    config.deployments.insert(
        guestgate::mock::genesys::DEFAULT_DEPLOYMENT_ID.into(),
        FakeDeployment {
            conversation_clear: true,
            ..FakeDeployment::default()
        },
    );
    let fake = fake_genesys(config).await;
    let key = key_file();
    let gg = gateway(&preset_config(&fake, &key)).await;
    let (mut page, ready) = Page::open(gg.addr, "/ws").await;
    let ticket = ready["body"]["resumeTicket"].as_str().unwrap().to_owned();
    page.send(json!({"action":"onMessage","message":{"type":"Event",
        "events":[{"eventType":"Presence","presence":{"type":"Clear"}}]}}))
        .await;
    assert_eq!(page.closed().await.0, 4410);
    let classes = page.classes();
    assert!(
        classes.contains(&"SessionClearedEvent".to_owned()),
        "{classes:?}"
    );
    assert!(
        page.seen
            .iter()
            .any(|t| t.contains("\"SessionEnded\"") && t.contains("\"cleared\""))
    );
    let (_page, again) = Page::open(gg.addr, &format!("/ws?resume={ticket}")).await;
    assert_eq!(again["body"]["newSession"], true);
}

#[tokio::test]
async fn an_upload_goes_straight_to_storage_and_the_message_carries_it() {
    use guestgate::mock::genesys::{FakeDeployment, FileUploadMode};
    let mut config = no_agent();
    config.deployments.insert(
        guestgate::mock::genesys::DEFAULT_DEPLOYMENT_ID.into(),
        FakeDeployment {
            file_upload_modes: vec![FileUploadMode {
                file_types: vec!["text/plain".into()],
                max_file_size_kb: 100,
            }],
            ..FakeDeployment::default()
        },
    );
    let fake = fake_genesys(config).await;
    let key = key_file();
    let gg = gateway(&preset_config(&fake, &key)).await;
    let (mut page, ready) = Page::open(gg.addr, "/ws").await;
    assert_eq!(
        ready["body"]["allowedMedia"]["inbound"]["fileTypes"][0]["type"],
        "text/plain"
    );
    let body = b"hello from a file\n".to_vec();
    let id = "6a1b9b5e-0000-4000-8000-000000000001";
    page.send(
        json!({"action":"onAttachment","attachmentId":id,"fileName":"note.txt",
        "fileType":"text/plain","fileSize":body.len(),"errorsAsJson":true,"tracingId":"a1"}),
    )
    .await;
    let slot = page.until(|v| v["class"] == "PresignedUrlResponse").await;
    let client =
        guestgate::auth::http_client::build_http_client(None, Duration::from_secs(5)).unwrap();
    let mut put = client
        .put(slot["body"]["url"].as_str().unwrap())
        .body(body.clone());
    for (k, v) in slot["body"]["headers"].as_object().unwrap() {
        put = put.header(k.as_str(), v.as_str().unwrap());
    }
    assert_eq!(put.send().await.unwrap().status(), 200);
    let uploaded = page.until(|v| v["class"] == "UploadSuccessEvent").await;
    let download = uploaded["body"]["downloadUrl"].as_str().unwrap();
    assert_eq!(
        client
            .get(download)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec(),
        body
    );
    page.send(
        json!({"action":"onMessage","message":{"type":"Text","text":"see attached",
        "content":[{"contentType":"Attachment","attachment":{"id":id}}]}}),
    )
    .await;
    let echo = page.until(|v| is_inbound(v, "see attached")).await;
    assert!(
        echo["body"]["content"][0]["attachment"]["url"].is_string(),
        "{echo}"
    );
    // A type the deployment does not allow is refused by Genesys, not by a closed socket.
    page.send(
        json!({"action":"onAttachment","attachmentId":"6a1b9b5e-0000-4000-8000-000000000002",
        "fileName":"x.png","fileType":"image/png","fileSize":10,"tracingId":"a2"}),
    )
    .await;
    let refused = page.until(|v| v["tracingId"] == "a2").await;
    assert_eq!(refused["code"], 4001);
    assert_no_credential(&page, &fake);
    metrics_when(gg.admin_addr, "attachments", |m| {
        m.contains("guestgate_genesys_attachments_total{outcome=\"uploaded\",route=\"demo\"} 1")
            && m.contains("guestgate_genesys_attachments_total{outcome=\"slot\",route=\"demo\"} 1")
            && m.contains(
                "guestgate_genesys_attachments_total{outcome=\"refused\",route=\"demo\"} 1",
            )
            && m.contains(
                "guestgate_genesys_attachments_total{outcome=\"requested\",route=\"demo\"} 2",
            )
    })
    .await;
}

#[tokio::test]
async fn a_route_with_attachments_off_answers_with_an_error_frame() {
    let fake = fake_genesys(FakeGenesysConfig::default()).await;
    let key = key_file();
    let mut config = preset_config(&fake, &key);
    genesys_mut(&mut config).attachments = false;
    let gg = gateway(&config).await;
    let (mut page, _) = Page::open(gg.addr, "/ws").await;
    page.send(
        json!({"action":"onAttachment","attachmentId":"x","fileName":"a.txt",
        "fileType":"text/plain","fileSize":1,"tracingId":"off"}),
    )
    .await;
    let refused = page.until(|v| v["tracingId"] == "off").await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_i64()),
        (Some("guestgate"), Some(403))
    );
    // The socket stays usable.
    page.send(text("still here")).await;
    page.until(|v| is_inbound(v, "still here")).await;
    assert!(
        !fake
            .requests()
            .iter()
            .any(|r| r["action"] == "onAttachment")
    );
}

#[tokio::test]
async fn a_page_spamming_history_costs_the_upstream_one_rest_call_and_one_jwt() {
    let fake = fake_genesys(no_agent()).await;
    let key = key_file();
    let gg = gateway(&preset_config(&fake, &key)).await;
    let (mut page, _) = Page::open(gg.addr, "/ws").await;
    // Within the route's message burst (20): every request reaches the conversation layer.
    for n in 0..15 {
        page.send(json!({"action":"guestgate.getHistory","tracingId":format!("h{n}")}))
            .await;
    }
    let mut answers = Vec::new();
    while answers.len() < 15 {
        let v = page
            .until(|v| v["tracingId"].as_str().is_some_and(|t| t.starts_with('h')))
            .await;
        answers.push(v["class"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        answers.iter().filter(|c| *c == "History").count(),
        1,
        "{answers:?}"
    );
    assert_eq!(answers.iter().filter(|c| *c == "Error").count(), 14);
    assert_eq!(fake.history_requests(), 1);
    assert_eq!(fake.jwt_requests(), 1);
    // Unknown guestgate actions and bad pages are answered, not forwarded.
    page.send(json!({"action":"guestgate.nope","tracingId":"x1"}))
        .await;
    assert_eq!(page.until(|v| v["tracingId"] == "x1").await["code"], 400);
    page.send(json!({"action":"guestgate.getHistory","pageSize":1000,"tracingId":"x2"}))
        .await;
    assert_eq!(page.until(|v| v["tracingId"] == "x2").await["code"], 400);
    assert_eq!(fake.history_requests(), 1);
}

#[tokio::test]
async fn auto_start_sends_presence_join_once_for_a_new_session_only() {
    let fake = fake_genesys(no_agent()).await;
    let key = key_file();
    let mut config = preset_config(&fake, &key);
    genesys_mut(&mut config).auto_start = true;
    let gg = gateway(&config).await;
    let joins = |fake: &FakeGenesysHandle| {
        fake.requests()
            .iter()
            .filter(|r| r["message"]["events"][0]["presence"]["type"] == "Join")
            .count()
    };
    let (mut page, ready) = Page::open(gg.addr, "/ws").await;
    let echo = page
        .until(|v| v["body"]["events"][0]["presence"]["type"] == "Join")
        .await;
    assert_eq!(echo["body"]["direction"], "Inbound");
    assert_eq!(joins(&fake), 1);
    drop(page);
    let ticket = ready["body"]["resumeTicket"].as_str().unwrap();
    let (mut page, again) = Page::open(gg.addr, &format!("/ws?resume={ticket}")).await;
    assert_eq!(again["body"]["newSession"], false);
    page.send(text("resumed")).await;
    page.until(|v| is_inbound(v, "resumed")).await;
    assert_eq!(joins(&fake), 1, "no Join when resuming");
}
