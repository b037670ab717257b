//! `getJwt` and the history REST API.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;

async fn get_jwt(ws: &mut Client, token: &str) -> Value {
    send(
        ws,
        json!({"action":"getJwt","token":token,"tracingId":"jwt-1"}),
    )
    .await;
    recv(ws).await
}

async fn history(h: &FakeGenesysHandle, auth: Option<&str>, query: &str) -> HttpAnswer {
    let mut head = format!("GET {HISTORY_PATH}{query} HTTP/1.1");
    if let Some(a) = auth {
        head.push_str(&format!("\r\nauthorization: {a}"));
    }
    raw_http(h, &head, b"").await
}

#[tokio::test]
async fn get_jwt_answers_jwt_response_without_the_session_token_inside() {
    within(async {
        let h = start(no_agent()).await;
        let token = "secret-session-token-123";
        let (mut ws, _) = session(&h, token).await;
        let before = frames::epoch_now();
        let r = get_jwt(&mut ws, token).await;
        assert_eq!(
            (r["type"].as_str(), r["class"].as_str(), r["code"].as_i64()),
            (Some("response"), Some("JwtResponse"), Some(200))
        );
        assert_eq!(r["tracingId"], "jwt-1");
        let jwt = r["body"]["jwt"].as_str().unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        for p in &parts {
            assert!(URL_SAFE_NO_PAD.decode(p).is_ok(), "base64url part {p}");
        }
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert!(!payload.contains(token), "{payload}");
        let exp = r["body"]["exp"].as_u64().unwrap();
        assert!(exp >= before + 599 && exp <= before + 602, "exp {exp}");
        assert_eq!(h.jwt_requests(), 1);

        // Before configureSession on this socket: refused, still counted.
        let mut other = connect(&h).await;
        let refused = get_jwt(&mut other, token).await;
        assert_eq!(refused["code"], 400);
        assert_eq!(h.jwt_requests(), 2);
    })
    .await
}

#[tokio::test]
async fn history_pages_are_newest_first_with_the_page_shape() {
    within(async {
        let h = start(no_agent()).await;
        let (mut ws, _) = session(&h, "hist").await;
        send(&mut ws, text("hist", "guest 1")).await;
        let echo = recv(&mut ws).await["body"].clone();
        drop(ws);
        sockets_closed(&h).await;
        // Written while no socket is open.
        for text in ["agent 1", "agent 2", "agent 3", "agent 4"] {
            h.agent_say("hist", text).unwrap();
        }
        let (mut ws, _) = session(&h, "hist").await;
        let jwt = get_jwt(&mut ws, "hist").await["body"]["jwt"]
            .as_str()
            .unwrap()
            .to_owned();
        let bearer = format!("Bearer {jwt}");

        let all = history(&h, Some(&bearer), "").await;
        assert_eq!(all.status, 200, "{}", all.text());
        assert_eq!(all.header("content-type"), Some("application/json"));
        let v = all.json();
        assert_eq!(
            (
                &v["pageSize"],
                &v["pageNumber"],
                &v["total"],
                &v["pageCount"]
            ),
            (&json!(25), &json!(1), &json!(5), &json!(1))
        );
        let texts = |v: &Value| -> Vec<String> {
            v["entities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["text"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            texts(&v),
            ["agent 4", "agent 3", "agent 2", "agent 1", "guest 1"]
        );
        assert_eq!(v["entities"][4], echo, "entities are the bodies as sent");
        assert_eq!(v["entities"][0]["direction"], "Outbound");
        assert_eq!(v["entities"][4]["direction"], "Inbound");

        let page = |n: u32| format!("?pageSize=2&pageNumber={n}");
        let p1 = history(&h, Some(&bearer), &page(1)).await.json();
        assert_eq!(texts(&p1), ["agent 4", "agent 3"]);
        assert_eq!((&p1["total"], &p1["pageCount"]), (&json!(5), &json!(3)));
        let p3 = history(&h, Some(&bearer), &page(3)).await.json();
        assert_eq!(texts(&p3), ["guest 1"]);
        assert_eq!(p3["pageNumber"], 3);
        let p4 = history(&h, Some(&bearer), &page(4)).await;
        assert_eq!(p4.status, 200);
        assert_eq!(texts(&p4.json()), Vec::<String>::new());

        for bad in [
            "?pageSize=0",
            "?pageSize=101",
            "?pageSize=ten",
            "?pageNumber=0",
        ] {
            let r = history(&h, Some(&bearer), bad).await;
            assert_eq!(r.status, 400, "{bad}");
            assert_eq!(r.json()["status"], 400);
        }
        assert_eq!(h.history_requests(), 8);
    })
    .await
}

#[tokio::test]
async fn history_needs_a_live_jwt() {
    within(async {
        let h = start(FakeGenesysConfig {
            jwt_lifetime: Duration::from_millis(300),
            ..no_agent()
        })
        .await;
        let (mut ws, _) = session(&h, "jwt-life").await;
        let jwt = get_jwt(&mut ws, "jwt-life").await["body"]["jwt"]
            .as_str()
            .unwrap()
            .to_owned();
        let ok = history(&h, Some(&format!("Bearer {jwt}")), "").await;
        assert_eq!(ok.status, 200);

        let missing = history(&h, None, "").await;
        assert_eq!(missing.status, 401);
        assert_eq!(missing.json()["status"], 401);
        let tampered = format!("Bearer {jwt}x");
        let wrong = history(&h, Some(&tampered), "").await;
        assert_eq!(wrong.status, 401);
        assert!(!wrong.text().contains(&jwt), "the JWT is not echoed");
        let basic = history(&h, Some(&format!("Basic {jwt}")), "").await;
        assert_eq!(basic.status, 401);

        tokio::time::sleep(Duration::from_millis(400)).await;
        let expired = history(&h, Some(&format!("Bearer {jwt}")), "").await;
        assert_eq!(expired.status, 401);
        assert_eq!(h.history_requests(), 5);
    })
    .await
}
