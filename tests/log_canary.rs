//! Secret canary for the Genesys preset, in its own test binary so the global log subscriber
//! sees every line: the session token, the history JWT and a signed-in customer's JWTs and
//! refresh token appear in no log line, metric, readiness body or byte the browser receives.

mod common;

use std::time::Duration;

use common::*;
use guestgate::mock::genesys::{FakeGenesys, FakeGenesysConfig};
use serde_json::{Value, json};
use tokio::net::TcpListener;

async fn read_until(c: &mut RawClient, want: impl Fn(&Value) -> bool) -> (Value, Vec<String>) {
    let mut seen = Vec::new();
    loop {
        let (_, payload) = c.frame().await.expect("connection ended");
        let text = String::from_utf8(payload).unwrap();
        seen.push(text.clone());
        let v: Value = serde_json::from_str(&text).unwrap();
        if want(&v) {
            return (v, seen);
        }
    }
}

#[test]
fn session_token_appears_in_no_log_line_metric_or_browser_byte() {
    let logs = CapturedLog::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber)
        .expect("the only subscriber in this binary");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (secrets, browser_saw, admin) = rt.block_on(async {
        let redirect = "https://www.site.example/signed-in";
        let mut fake_config = FakeGenesysConfig {
            auth_redirect_uris: vec![redirect.into()],
            ..FakeGenesysConfig::default()
        };
        fake_config.deployments.insert(
            guestgate::mock::genesys::DEFAULT_DEPLOYMENT_ID.into(),
            guestgate::mock::genesys::FakeDeployment {
                auth_enabled: true,
                ..Default::default()
            },
        );
        let fake = FakeGenesys::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), fake_config);
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("resume.key");
        std::fs::write(&key_file, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
        let any = "127.0.0.1:0".parse().unwrap();
        let mut config = guestgate::demo::demo_config(any, any, &fake.url(), Some(&key_file));
        config.server.shutdown_grace = Duration::from_secs(3);
        if let guestgate::config::UpstreamConfig::Preset(
            guestgate::preset::PresetConfig::Genesys(g),
        ) = &mut config.routes[0].upstream
        {
            g.auth = Some(guestgate::preset::genesys::signin::GenesysAuthConfig {
                redirect_uri: redirect.into(),
                allow_anonymous: true,
                allow_upgrade: false,
            });
        }
        let gg = gateway(&config).await;
        let mut c = RawClient::connect(gg.addr, "").await;
        let (_, mut seen) = read_until(&mut c, |v| v["class"] == "SessionReady").await;
        let msg = json!({"action":"onMessage","message":{"type":"Text","text":"canary"}});
        c.send(true, 1, msg.to_string().as_bytes(), MASK).await;
        let (_, more) = read_until(&mut c, |v| {
            v["body"]["direction"] == "Outbound" && v["body"]["type"] == "Text"
        })
        .await;
        seen.extend(more);
        // A history read makes guestgate fetch and use a JWT.
        c.send(true, 1, br#"{"action":"guestgate.getHistory"}"#, MASK)
            .await;
        let (_, more) = read_until(&mut c, |v| v["class"] == "History").await;
        seen.extend(more);
        c.send(true, 1, br#"{"action":"getJwt"}"#, MASK).await;
        let (_, reason) = c.close_frame().await;
        seen.push(reason);
        c.send(true, 8, &close_payload(1008, ""), MASK).await;
        // A signed-in customer: sign in, chat, reload (refresh), sign out, resume refused.
        let code = fake.issue_auth_code(redirect, None);
        let mut s = RawClient::connect_path(gg.addr, "/ws?signin=first-frame", "").await;
        let frame = json!({"type":"guestgate","action":"signIn","code":code});
        s.send(true, 1, frame.to_string().as_bytes(), MASK).await;
        let (ready, more) = read_until(&mut s, |v| v["class"] == "SessionReady").await;
        seen.extend(more);
        let ticket = ready["body"]["resumeTicket"].as_str().unwrap().to_owned();
        drop(s);
        let mut s = RawClient::connect_path(gg.addr, &format!("/ws?resume={ticket}"), "").await;
        let (_, more) = read_until(&mut s, |v| v["class"] == "SessionReady").await;
        seen.extend(more);
        let signed_in = fake.issued_auth_secrets();
        s.send(true, 1, br#"{"action":"guestgate.signOut"}"#, MASK)
            .await;
        let (code, reason) = s.close_frame().await;
        assert_eq!(code, 4411);
        seen.push(reason);
        let mut s = RawClient::connect_path(gg.addr, &format!("/ws?resume={ticket}"), "").await;
        let (code, reason) = s.close_frame().await;
        assert_eq!(code, 4412);
        seen.push(reason);
        let admin = [
            http_get(gg.admin_addr, "/metrics").await.1,
            http_get(gg.admin_addr, "/readyz").await.1,
        ]
        .join("\n");
        gg.shutdown();
        gg.wait().await;
        let jwts: Vec<String> = fake
            .sent()
            .iter()
            .filter(|v| v["class"] == "JwtResponse")
            .map(|v| v["body"]["jwt"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(jwts.len(), 1, "a JWT was fetched");
        let mut secrets = fake.tokens_seen();
        secrets.extend(jwts);
        assert!(
            signed_in.len() >= 3,
            "two JWTs and a refresh token were issued"
        );
        secrets.extend(signed_in);
        (secrets, seen.join("\n"), admin)
    });
    let logs = logs.text();
    assert!(
        logs.contains("connection ended"),
        "logs were captured:\n{logs}"
    );
    for line in logs.lines().filter(|l| l.contains("connection ended")) {
        assert!(
            common::strip_ansi(line).contains(" conn="),
            "the ended line names its connection: {line}"
        );
    }
    for (what, text) in [
        ("logs", &logs),
        ("browser", &browser_saw),
        ("admin", &admin),
    ] {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a credential appeared in {what}:\n{text}"
            );
        }
    }
}
