//! Fan-out to every socket of a session, and the agent writing by reply, on demand and on a
//! timer, with or without a socket open.

use super::*;

/// RFC 3339 UTC with milliseconds: `2026-11-29T11:00:00.123Z`.
fn is_rfc3339_ms(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && s.chars()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19, 23].contains(&i) || c.is_ascii_digit())
}

fn assert_stamped(body: &Value) {
    let id = body["id"].as_str().unwrap_or_default();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "id in {body}");
    let time = body["channel"]["time"].as_str().unwrap_or_default();
    assert!(is_rfc3339_ms(time), "channel.time in {body}");
}

#[tokio::test]
async fn agent_messages_fan_out_to_every_socket_of_the_session() {
    within(async {
        let h = start(FakeGenesysConfig::default()).await;
        let (mut a, _) = session(&h, "fan").await;
        let (mut b, second) = session(&h, "fan").await;
        assert_eq!(second["body"]["newSession"], false);

        send(&mut a, text("fan", "hello")).await;
        let echo = recv(&mut a).await;
        assert_eq!(echo["body"]["direction"], "Inbound");
        assert_stamped(&echo["body"]);
        for ws in [&mut a, &mut b] {
            let typing = recv(ws).await;
            assert_eq!(typing["body"]["events"][0]["eventType"], "Typing");
            assert_stamped(&typing["body"]);
            let reply = recv(ws).await;
            assert_eq!(reply["body"]["text"], "Agent: you said \"hello\"");
            assert_stamped(&reply["body"]);
        }

        let said = h.agent_say("fan", "are you there?").unwrap();
        assert_stamped(&said);
        assert_eq!(said["direction"], "Outbound");
        for ws in [&mut a, &mut b] {
            let got = recv(ws).await;
            assert_eq!(
                (got["type"].as_str(), got["class"].as_str()),
                (Some("message"), Some("StructuredMessage"))
            );
            assert_eq!(got["body"], said, "the same body on every socket");
        }
        // The guest's echo went to the sender only.
        assert_eq!(recv_within(&mut b, Duration::from_millis(200)).await, None);
        // History: the echo, the reply and the agent's message, exactly as sent.
        let history = h.history("fan").unwrap();
        assert_eq!(history.len(), 3);
        assert_eq!(history[0], echo["body"]);
        assert_eq!(history[2], said);
        assert_eq!(h.agent_say("no-such-session", "x"), None);
    })
    .await
}

#[tokio::test]
async fn agent_writes_with_no_socket_open_are_only_in_history() {
    within(async {
        let h = start(no_agent()).await;
        let (mut ws, _) = session(&h, "away").await;
        send(&mut ws, text("away", "bye for now")).await;
        recv(&mut ws).await;
        drop(ws);
        sockets_closed(&h).await;

        let first = h.agent_say("away", "one").unwrap();
        let second = h.agent_say("away", "two").unwrap();
        let texts: Vec<Value> = h
            .history("away")
            .unwrap()
            .iter()
            .map(|m| m["text"].clone())
            .collect();
        assert_eq!(
            texts,
            vec![json!("bye for now"), json!("one"), json!("two")]
        );

        // Reconnecting resumes the session but replays nothing.
        let (mut again, r) = session(&h, "away").await;
        assert_eq!(r["body"]["newSession"], false);
        assert_eq!(
            recv_within(&mut again, Duration::from_millis(300)).await,
            None
        );
        assert_ne!(first["id"], second["id"]);
    })
    .await
}

#[tokio::test]
async fn periodic_agent_numbers_per_session_and_stops_at_the_maximum() {
    within(async {
        let h = start(FakeGenesysConfig {
            agent_every: Some(Duration::from_millis(40)),
            agent_max: 3,
            ..no_agent()
        })
        .await;
        let (mut a, _) = session(&h, "p1").await;
        let (b, _) = session(&h, "p2").await;
        drop(b); // p2 has no socket open: its messages only go to history.
        for n in 1..=3 {
            let m = recv(&mut a).await;
            assert_eq!(m["body"]["text"], format!("agent message {n}"));
            assert_eq!(m["body"]["direction"], "Outbound");
        }
        eventually(|| h.history("p2").unwrap().len() == 3).await;
        // Five more intervals: no fourth message anywhere.
        assert_eq!(recv_within(&mut a, Duration::from_millis(200)).await, None);
        for token in ["p1", "p2"] {
            let texts: Vec<Value> = h
                .history(token)
                .unwrap()
                .iter()
                .map(|m| m["text"].clone())
                .collect();
            assert_eq!(
                texts,
                vec![
                    json!("agent message 1"),
                    json!("agent message 2"),
                    json!("agent message 3")
                ],
                "{token}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn periodic_agent_skips_expired_sessions() {
    within(async {
        let h = start(FakeGenesysConfig {
            agent_every: Some(Duration::from_millis(30)),
            session_lifetime: Some(Duration::from_millis(150)),
            ..no_agent()
        })
        .await;
        let (ws, _) = session(&h, "short").await;
        drop(ws);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let written = h.history("short").unwrap().len();
        assert!((1..=6).contains(&written), "{written} messages");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(h.history("short").unwrap().len(), written);
        assert_eq!(h.agent_say("short", "late"), None);
    })
    .await
}
