//! The conversation's lifecycle: agent disconnect, read-only and `startNew`, conversation
//! clear, and the guest's typing and presence events.

use super::*;

fn read_only_deployment() -> FakeDeployment {
    FakeDeployment {
        conversation_disconnect: Some(DisconnectType::ReadOnly),
        ..FakeDeployment::default()
    }
}

fn clear_deployment() -> FakeDeployment {
    FakeDeployment {
        conversation_clear: true,
        ..FakeDeployment::default()
    }
}

fn event_message(token: &str, event: Value) -> Value {
    json!({"action":"onMessage","token":token,"message":{"type":"Event","events":[event]}})
}

fn presence(token: &str, kind: &str) -> Value {
    event_message(
        token,
        json!({"eventType":"Presence","presence":{"type":kind}}),
    )
}

fn typing(token: &str) -> Value {
    event_message(token, json!({"eventType":"Typing","typing":{"type":"On"}}))
}

fn configure_new(token: &str) -> Value {
    let mut v = configure(token);
    v["startNew"] = true.into();
    v
}

fn is_disconnect(v: &Value) -> bool {
    v["class"] == "StructuredMessage" && v["body"]["events"][0]["presence"]["type"] == "Disconnect"
}

#[tokio::test]
async fn agent_disconnect_makes_a_read_only_deployment_read_only_until_start_new() {
    within(async {
        let config = FakeGenesysConfig {
            agent_every: Some(Duration::from_millis(50)),
            ..no_agent()
        };
        let h = start(with_deployment(read_only_deployment(), config)).await;
        let (mut a, _) = session(&h, "ro").await;
        let (mut b, _) = session(&h, "ro").await;
        let first = recv(&mut a).await;
        assert_eq!(first["body"]["text"], "agent message 1");

        let event = h.agent_disconnect("ro").unwrap();
        assert_eq!(event["direction"], "Outbound");
        assert_eq!(event["type"], "Event");
        assert_eq!(
            event["events"],
            json!([{"eventType":"Presence","presence":{"type":"Disconnect"}}])
        );
        assert!(event["id"].is_string() && event["channel"]["time"].is_string());
        for ws in [&mut a, &mut b] {
            let got = recv_until(ws, is_disconnect).await;
            assert_eq!(got["body"], event);
        }
        assert_eq!(h.read_only("ro"), Some(true));
        assert_eq!(h.agent_disconnect("ro"), None, "already read-only");
        let written = h.history("ro").unwrap();
        assert_eq!(written.last().unwrap(), &event);

        let mut req = text("ro", "anyone?");
        req["tracingId"] = "ro-1".into();
        send(&mut a, req).await;
        let r = recv(&mut a).await;
        assert_eq!(
            (
                r["class"].as_str(),
                r["code"].as_i64(),
                r["tracingId"].as_str()
            ),
            (
                Some("string"),
                Some(i64::from(READ_ONLY_CODE)),
                Some("ro-1")
            )
        );
        assert_eq!(r["body"], "Conversation is read-only");
        // The periodic agent leaves a read-only conversation alone.
        assert_eq!(recv_within(&mut b, Duration::from_millis(200)).await, None);
        assert_eq!(h.history("ro").unwrap(), written);
        assert_eq!(h.agent_say("ro", "x"), None);

        let (_, again) = session(&h, "ro").await;
        assert_eq!(again["body"]["readOnly"], true);
        assert_eq!(again["body"]["newSession"], false);

        send(&mut a, configure_new("ro")).await;
        let fresh = recv(&mut a).await;
        assert_eq!(fresh["class"], "SessionResponse");
        assert_eq!(fresh["body"]["newSession"], true);
        assert_eq!(fresh["body"]["readOnly"], false);
        assert_eq!(h.sessions_created(), 1, "same session, new conversation");
        // New conversation: history emptied, agent numbering restarts.
        let restarted = recv(&mut a).await;
        assert_eq!(restarted["body"]["text"], "agent message 1");
        assert_eq!(h.history("ro").unwrap()[0]["text"], "agent message 1");
        send(&mut a, text("ro", "hello again")).await;
        assert_eq!(
            recv_until(&mut a, |v| v["body"]["direction"] == "Inbound").await["body"]["text"],
            "hello again"
        );
    })
    .await
}

#[tokio::test]
async fn start_new_is_only_for_a_read_only_conversation() {
    within(async {
        let h = start(with_deployment(read_only_deployment(), no_agent())).await;
        let mut ws = connect(&h).await;
        for token in ["never-seen", "live"] {
            if token == "live" {
                send(&mut ws, configure(token)).await;
                recv(&mut ws).await;
            }
            let mut req = configure_new(token);
            req["tracingId"] = "sn".into();
            send(&mut ws, req).await;
            let r = recv(&mut ws).await;
            assert_eq!(
                (r["class"].as_str(), r["code"].as_i64()),
                (Some("string"), Some(400))
            );
            assert_eq!(
                r["body"],
                "startNew is only allowed for a read-only conversation"
            );
            assert_eq!(r["tracingId"], "sn");
        }
        assert_eq!(h.sessions_created(), 1);
    })
    .await
}

#[tokio::test]
async fn disconnect_without_read_only_keeps_the_conversation_writable() {
    within(async {
        for setting in [None, Some(DisconnectType::Send)] {
            let d = FakeDeployment {
                conversation_disconnect: setting,
                ..FakeDeployment::default()
            };
            let h = start(with_deployment(d, no_agent())).await;
            let (mut ws, _) = session(&h, "send").await;
            assert!(h.agent_disconnect("send").is_some());
            assert!(is_disconnect(&recv(&mut ws).await));
            assert_eq!(h.read_only("send"), Some(false));
            send(&mut ws, text("send", "still here")).await;
            assert_eq!(
                recv(&mut ws).await["body"]["text"],
                "still here",
                "{setting:?}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn clear_ends_the_session_when_the_deployment_allows_it() {
    within(async {
        let h = start(with_deployment(clear_deployment(), no_agent())).await;
        let (mut a, _) = session(&h, "clr").await;
        let (mut b, _) = session(&h, "clr").await;
        send(&mut a, text("clr", "forget me")).await;
        recv(&mut a).await;
        send(&mut a, json!({"action":"getJwt","token":"clr"})).await;
        let jwt = recv(&mut a).await["body"]["jwt"]
            .as_str()
            .unwrap()
            .to_owned();

        send(&mut a, presence("clr", "Clear")).await;
        assert_eq!(
            recv(&mut a).await,
            json!({"type":"message","class":"SessionClearedEvent","code":200,"body":{}})
        );
        assert_eq!(close_code(&mut a).await, 1000);
        let closed = recv(&mut b).await;
        assert_eq!(
            (closed["type"].as_str(), closed["class"].as_str()),
            (Some("message"), Some("ConnectionClosedEvent"))
        );
        assert_eq!(close_code(&mut b).await, 1000);
        assert_eq!(h.history("clr"), None);
        sockets_closed(&h).await;
        let auth = format!("GET {HISTORY_PATH} HTTP/1.1\r\nauthorization: Bearer {jwt}");
        assert_eq!(raw_http(&h, &auth, b"").await.status, 401);

        // The same token now configures a new session.
        let (_, again) = session(&h, "clr").await;
        assert_eq!(again["body"]["newSession"], true);
        assert_eq!(h.sessions_created(), 2);
        assert_eq!(h.history("clr").unwrap().len(), 0);
    })
    .await
}

#[tokio::test]
async fn clear_is_403_when_the_deployment_does_not_allow_it() {
    within(async {
        let h = start(no_agent()).await;
        let (mut ws, _) = session(&h, "keep").await;
        let mut req = presence("keep", "Clear");
        req["tracingId"] = "c".into();
        send(&mut ws, req).await;
        let r = recv(&mut ws).await;
        assert_eq!(
            (r["type"].as_str(), r["class"].as_str(), r["code"].as_i64()),
            (Some("response"), Some("string"), Some(403))
        );
        assert_eq!(
            r["body"],
            "Presence events Conversation Clear are not supported"
        );
        assert_eq!(r["tracingId"], "c");
        send(&mut ws, text("keep", "still on")).await;
        assert_eq!(recv(&mut ws).await["body"]["text"], "still on");
        assert_eq!(h.history("keep").unwrap().len(), 1);
    })
    .await
}

#[tokio::test]
async fn typing_and_join_are_echoed_counted_and_rate_limited() {
    within(async {
        let h = start(FakeGenesysConfig::default()).await;
        let (mut ws, _) = session(&h, "ev").await;
        send(&mut ws, typing("ev")).await;
        let echo = recv(&mut ws).await;
        assert_eq!(echo["body"]["direction"], "Inbound");
        assert_eq!(echo["body"]["type"], "Event");
        assert_eq!(echo["body"]["events"][0]["typing"]["type"], "On");
        send(&mut ws, presence("ev", "Join")).await;
        assert_eq!(
            recv(&mut ws).await["body"]["events"][0]["presence"]["type"],
            "Join"
        );
        // Third request in the same second: over the limit, not counted.
        send(&mut ws, typing("ev")).await;
        assert_eq!(recv(&mut ws).await["code"], 429);
        assert_eq!(h.typing_events("ev"), 1);
        // History keeps the Join, not the typing indicator; the agent answers neither.
        let history = h.history("ev").unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0]["events"][0]["eventType"], "Presence");
        assert_eq!(recv_within(&mut ws, Duration::from_millis(300)).await, None);

        tokio::time::sleep(Duration::from_millis(1000)).await;
        for bad in [
            json!({"eventType":"Typing","typing":{"type":"Off"}}),
            json!({"eventType":"Presence","presence":{"type":"Disconnect"}}),
            json!({"eventType":"Reaction"}),
        ] {
            send(&mut ws, event_message("ev", bad.clone())).await;
            assert_eq!(recv(&mut ws).await["code"], 400, "{bad}");
        }
        send(
            &mut ws,
            json!({"action":"onMessage","token":"ev","message":{"type":"Event","events":[]}}),
        )
        .await;
        assert_eq!(recv(&mut ws).await["code"], 400);
        send(&mut ws, typing("ev")).await;
        recv(&mut ws).await;
        assert_eq!(h.typing_events("ev"), 2);
        assert_eq!(h.typing_events("unknown"), 0);
    })
    .await
}
