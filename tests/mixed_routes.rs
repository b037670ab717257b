//! A Genesys preset route and a plain relay route served side by side by one guestgate on
//! different paths: each browser reaches its own upstream and gets that route's behaviour
//! (a guest session for one, verbatim frames for the other), with nothing crossing over.

mod common;

use common::*;
use guestgate::mock::FakeBehavior;
use guestgate::mock::genesys::{FakeGenesys, FakeGenesysConfig};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Reads text frames until one satisfies `want`.
async fn read_until(c: &mut RawClient, want: impl Fn(&Value) -> bool) -> Value {
    loop {
        let (op, payload) = c.frame().await.expect("connection ended");
        let text = String::from_utf8(payload).unwrap();
        assert_eq!(op, 1, "unexpected frame {op}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        if want(&v) {
            return v;
        }
    }
}

#[tokio::test]
async fn a_genesys_route_and_a_plain_route_each_reach_their_own_upstream() {
    let genesys = FakeGenesys::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        FakeGenesysConfig::default(),
    );
    let echo = fake(FakeBehavior::Echo).await;
    let any = "127.0.0.1:0".parse().unwrap();
    let mut config = guestgate::demo::demo_config(any, any, &genesys.url(), None);
    config.server.shutdown_grace = std::time::Duration::from_secs(3);
    config.routes[0].name = "chat".into();
    config.routes[0].path = "/chat".into();
    let mut plain = config_for(&echo.url()).routes.remove(0);
    plain.name = "plain".into();
    plain.path = "/plain".into();
    config.routes.push(plain);
    let gg = gateway(&config).await;

    // Both browsers connected at once.
    let mut chat = RawClient::connect_path(gg.addr, "/chat", "").await;
    let mut relay = RawClient::connect_path(gg.addr, "/plain", "").await;

    // The plain route relays frames verbatim: no greeting, the echo comes straight back.
    relay.send(true, 1, b"plain hello", MASK).await;
    assert_eq!(relay.frame().await.unwrap(), (1, b"plain hello".to_vec()));
    relay.send(true, 2, &[0, 1, 2, 255], MASK).await;
    assert_eq!(relay.frame().await.unwrap(), (2, vec![0, 1, 2, 255]));

    // The chat route runs a guest session on the fake Genesys.
    let ready = read_until(&mut chat, |v| v["class"] == "SessionReady").await;
    assert_eq!(ready["type"], "guestgate");
    let msg = json!({"action":"onMessage","message":{"type":"Text","text":"hello agent"}});
    chat.send(true, 1, msg.to_string().as_bytes(), MASK).await;
    let reply = read_until(&mut chat, |v| {
        v["body"]["direction"] == "Outbound" && v["body"]["type"] == "Text"
    })
    .await;
    assert_eq!(reply["body"]["text"], "Agent: you said \"hello agent\"");

    // Each upstream saw exactly its own browser.
    let requests = genesys.wait_for_requests(2, STEP).await.unwrap();
    assert_eq!(requests[0]["action"], "configureSession");
    assert_eq!(requests[1]["action"], "onMessage");
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(genesys.accepted(), 1);
    let relayed = echo.wait_for_received(2, STEP).await.unwrap();
    assert_eq!(
        relayed,
        vec![
            tungstenite::Message::text("plain hello"),
            tungstenite::Message::binary(vec![0, 1, 2, 255]),
        ]
    );
    assert_eq!(echo.accepted(), 1);
    assert_eq!(echo.requests().len(), 1);

    // Both close normally, each with its own upstream's answer.
    relay.send(true, 8, &close_payload(1000, ""), MASK).await;
    assert_eq!(relay.close_frame().await.0, 1000);
    chat.send(true, 8, &close_payload(1000, ""), MASK).await;
    assert_eq!(chat.close_frame().await.0, 1000);
    // And each connection is counted under its own route.
    let counted = |route: &str| {
        format!(r#"guestgate_connections_total{{outcome="relayed",route="{route}"}} 1"#)
    };
    let text = metrics_when(gg.admin_addr, "both connections counted", |text| {
        text.contains(&counted("chat")) && text.contains(&counted("plain"))
    })
    .await;
    for line in [
        r#"guestgate_messages_total{direction="browser_to_upstream",route="plain"} 2"#,
        r#"guestgate_messages_total{direction="browser_to_upstream",route="chat"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}
