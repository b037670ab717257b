//! Signed-in customers end to end against the fake's token endpoints and stand-in identity
//! provider: the page hands over only the authorization code; guestgate exchanges it, keeps
//! the JWT and the refresh token, refreshes across several JWT lifetimes, resumes the signed-in
//! session on another replica from the sealed ticket, and signs out. Lifetimes are a few real
//! seconds (the fake runs on real sockets, where paused time would fire I/O deadlines early).

mod common;

use std::time::Duration;

use common::page::Page;
use common::*;
use guestgate::config::Config;
use guestgate::mock::genesys::{
    DEFAULT_DEPLOYMENT_ID, FakeDeployment, FakeGenesys, FakeGenesysConfig, FakeGenesysHandle,
};
use guestgate::preset::genesys::signin::GenesysAuthConfig;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const REDIRECT: &str = "https://www.site.example/signed-in";

async fn fake(
    jwt_lifetime: Duration,
    refresh_lifetime: Duration,
    upgrade: bool,
) -> FakeGenesysHandle {
    let mut config = FakeGenesysConfig {
        agent_reply: false,
        auth_redirect_uris: vec![REDIRECT.into()],
        auth_jwt_lifetime: jwt_lifetime,
        refresh_token_lifetime: refresh_lifetime,
        ..FakeGenesysConfig::default()
    };
    config.deployments.insert(
        DEFAULT_DEPLOYMENT_ID.into(),
        FakeDeployment {
            auth_enabled: true,
            allow_session_upgrade: upgrade,
            ..FakeDeployment::default()
        },
    );
    FakeGenesys::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), config)
}

fn key_file() -> tempfile::TempPath {
    use base64::Engine;
    let path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let key: [u8; 32] = rand::random();
    std::fs::write(&path, base64::engine::general_purpose::STANDARD.encode(key)).unwrap();
    path
}

fn config(fake: &FakeGenesysHandle, key: &std::path::Path, auth: GenesysAuthConfig) -> Config {
    let any = "127.0.0.1:0".parse().unwrap();
    let mut c = guestgate::demo::demo_config(any, any, &fake.url(), Some(key));
    c.server.shutdown_grace = Duration::from_secs(3);
    genesys_mut(&mut c).auth = Some(auth);
    c
}

fn auth(allow_anonymous: bool, allow_upgrade: bool) -> GenesysAuthConfig {
    GenesysAuthConfig {
        redirect_uri: REDIRECT.into(),
        allow_anonymous,
        allow_upgrade,
    }
}

/// Opens `/ws?signin=first-frame` and sends the sign-in frame (optionally with a ticket).
async fn sign_in(addr: std::net::SocketAddr, code: &str, ticket: Option<&str>) -> RawClient {
    let mut client = RawClient::connect_path(
        addr,
        "/ws?signin=first-frame",
        "Origin: https://www.site.example\r\n",
    )
    .await;
    let mut frame = json!({"type":"guestgate","action":"signIn","code":code});
    if let Some(t) = ticket {
        frame["ticket"] = json!(t);
    }
    client
        .send(true, 1, frame.to_string().as_bytes(), MASK)
        .await;
    client
}

async fn ready(client: RawClient) -> (Page, Value) {
    let mut page = Page {
        client,
        seen: Vec::new(),
    };
    let ready = page.until(|v| v["class"] == "SessionReady").await;
    (page, ready)
}

fn text(t: &str) -> Value {
    json!({"action":"onMessage","message":{"type":"Text","text":t}})
}

fn is_echo(v: &Value, t: &str) -> bool {
    v["body"]["direction"] == "Inbound" && v["body"]["text"] == t
}

/// Every credential the fake handed out: session tokens, JWTs (socket and exchange/refresh
/// replies), refresh tokens.
fn credentials(fake: &FakeGenesysHandle) -> Vec<String> {
    let mut out = fake.tokens_seen();
    for v in fake.sent() {
        if let Some(jwt) = v["body"]["jwt"].as_str() {
            out.push(jwt.to_owned());
        }
    }
    out.extend(fake.issued_auth_secrets());
    out
}

fn assert_no_credential(page: &Page, fake: &FakeGenesysHandle) {
    let secrets = credentials(fake);
    assert!(secrets.len() >= 3, "{} credentials", secrets.len());
    for frame in &page.seen {
        for s in &secrets {
            assert!(
                !frame.contains(s.as_str()),
                "credential in a page frame: {frame}"
            );
        }
    }
}

#[tokio::test]
async fn a_signed_in_chat_outlives_several_jwt_lifetimes_with_no_credential_in_the_page() {
    let fake = fake(Duration::from_secs(2), Duration::from_secs(3600), false).await;
    let key = key_file();
    let gg = gateway(&config(&fake, &key, auth(true, false))).await;
    let code = fake.issue_auth_code(REDIRECT, None);
    let (mut page, ready) = ready(sign_in(gg.addr, &code, None).await).await;
    assert_eq!(ready["body"]["signedIn"], true);
    let token = fake.tokens_seen()[0].clone();
    assert!(fake.is_authenticated(&token));
    // Three and a half JWT lifetimes, a message every half second: none refused.
    for n in 0..14 {
        let t = format!("signed-in {n}");
        page.send(text(&t)).await;
        page.until(|v| is_echo(v, &t) || v["code"] == 403 || v["code"] == 401)
            .await;
        let last: Value = serde_json::from_str(page.seen.last().unwrap()).unwrap();
        assert!(is_echo(&last, &t), "refused: {last}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        fake.auth_refreshes() >= 3,
        "{} refreshes",
        fake.auth_refreshes()
    );
    assert_eq!(fake.auth_exchanges(), 1);
    assert_no_credential(&page, &fake);
    metrics_when(gg.admin_addr, "auth metrics", |m| {
        m.contains("guestgate_genesys_auth_requests_total{op=\"exchange\",outcome=\"ok\",route=\"demo\"} 1")
    })
    .await;
}

#[tokio::test]
async fn an_expired_refresh_token_ends_the_session_with_4412() {
    let fake = fake(Duration::from_secs(1), Duration::from_secs(2), false).await;
    let key = key_file();
    let gg = gateway(&config(&fake, &key, auth(true, false))).await;
    let code = fake.issue_auth_code(REDIRECT, None);
    let (mut page, _) = ready(sign_in(gg.addr, &code, None).await).await;
    let (code, reason) = page.closed().await;
    assert_eq!(code, 4412, "{reason}");
    assert_eq!(reason, "sign-in expired: sign in again");
    assert!(
        page.seen
            .iter()
            .any(|t| t.contains("\"SessionEnded\"") && t.contains("sign_in_expired"))
    );
}

#[tokio::test]
async fn a_signed_in_ticket_resumes_on_another_replica_and_sign_out_ends_it() {
    let fake = fake(Duration::from_secs(900), Duration::from_secs(3600), false).await;
    let key = key_file();
    let cfg = config(&fake, &key, auth(true, false));
    let a = gateway(&cfg).await;
    let b = gateway(&cfg).await;
    let code = fake.issue_auth_code(REDIRECT, None);
    let (page, first) = ready(sign_in(a.addr, &code, None).await).await;
    let ticket = first["body"]["resumeTicket"].as_str().unwrap().to_owned();
    drop(page);

    let (mut page, again) = Page::open(b.addr, &format!("/ws?resume={ticket}")).await;
    assert_eq!(again["body"]["signedIn"], true);
    assert_eq!(again["body"]["newSession"], false);
    assert_eq!(
        fake.auth_refreshes(),
        1,
        "the ticket's refresh token got a JWT"
    );
    page.send(text("on replica b")).await;
    page.until(|v| is_echo(v, "on replica b")).await;
    assert_no_credential(&page, &fake);

    page.send(json!({"action":"guestgate.signOut"})).await;
    let (code, _) = page.closed().await;
    assert_eq!(code, 4411);
    assert_eq!(fake.auth_revokes(), 1);
    // The ticket no longer resumes the signed-in session anywhere.
    let mut client = RawClient::connect_path(
        a.addr,
        &format!("/ws?resume={ticket}"),
        "Origin: https://www.site.example\r\n",
    )
    .await;
    assert_eq!(client.close_frame().await.0, 4412);
}

#[tokio::test]
async fn codes_the_route_or_genesys_refuses_close_with_documented_codes() {
    let fake = fake(Duration::from_secs(900), Duration::from_secs(3600), false).await;
    let key = key_file();
    // Sign-in required: a guest is refused before any upstream work.
    let gg = gateway(&config(&fake, &key, auth(false, false))).await;
    let mut guest =
        RawClient::connect_path(gg.addr, "/ws", "Origin: https://www.site.example\r\n").await;
    assert_eq!(
        guest.close_frame().await,
        (4412, "sign-in required: sign in again".into())
    );
    assert_eq!(fake.accepted(), 0);
    // A code used twice is rejected the second time.
    let code = fake.issue_auth_code(REDIRECT, None);
    let (_page, _) = ready(sign_in(gg.addr, &code, None).await).await;
    let mut again = sign_in(gg.addr, &code, None).await;
    assert_eq!(
        again.close_frame().await,
        (4412, "sign-in code rejected: sign in again".into())
    );
    // A route without sign-in refuses the sign-in frame.
    let any = "127.0.0.1:0".parse().unwrap();
    let plain = gateway(&guestgate::demo::demo_config(
        any,
        any,
        &fake.url(),
        Some(&key),
    ))
    .await;
    let mut refused = sign_in(plain.addr, "whatever", None).await;
    assert_eq!(refused.close_frame().await.0, 1008);
}

#[tokio::test]
async fn a_guest_conversation_upgrades_where_allowed_and_keeps_its_history() {
    let fake = fake(Duration::from_secs(900), Duration::from_secs(3600), true).await;
    let key = key_file();
    let gg = gateway(&config(&fake, &key, auth(true, true))).await;
    let (mut page, guest) = Page::open(gg.addr, "/ws").await;
    assert_eq!(guest["body"]["signedIn"], false);
    page.send(text("as a guest")).await;
    page.until(|v| is_echo(v, "as a guest")).await;
    let code = fake.issue_auth_code(REDIRECT, None);
    page.send(json!({"action":"guestgate.signIn","code":code}))
        .await;
    let upgraded = page.until(|v| v["class"] == "SessionReady").await;
    assert_eq!(upgraded["body"]["signedIn"], true);
    assert_ne!(
        upgraded["body"]["resumeTicket"],
        guest["body"]["resumeTicket"]
    );
    let token = fake.tokens_seen()[0].clone();
    assert!(fake.is_authenticated(&token));
    page.send(text("signed in now")).await;
    page.until(|v| is_echo(v, "signed in now")).await;
    assert_no_credential(&page, &fake);

    // Where upgrades are off, the page is told and stays a guest.
    let off = gateway(&config(&fake, &key, auth(true, false))).await;
    let (mut page, _) = Page::open(off.addr, "/ws").await;
    let code = fake.issue_auth_code(REDIRECT, None);
    page.send(json!({"action":"guestgate.signIn","code":code,"tracingId":"up"}))
        .await;
    let refused = page.until(|v| v["tracingId"] == "up").await;
    assert_eq!(
        (refused["class"].as_str(), refused["code"].as_i64()),
        (Some("Error"), Some(403))
    );
}

#[tokio::test]
async fn a_page_retrying_bad_codes_costs_genesys_three_exchanges_at_most() {
    let fake = fake(Duration::from_secs(900), Duration::from_secs(3600), true).await;
    let key = key_file();
    let gg = gateway(&config(&fake, &key, auth(true, true))).await;
    let (mut page, _) = Page::open(gg.addr, "/ws").await;
    for n in 0..6 {
        page.send(json!({"action":"guestgate.signIn","code":format!("bad-{n}"),"tracingId":format!("s{n}")}))
            .await;
        let answer = page.until(|v| v["class"] == "Error").await;
        let want = if n < 3 { 401 } else { 429 };
        assert_eq!(answer["code"], want, "attempt {n}: {answer}");
    }
    assert_eq!(fake.auth_exchanges(), 3);
}
