//! `guestgate demo`: guestgate and a fake Genesys Web Messaging service in one process on
//! loopback, with a chat page, so a new user sees the whole path work with one command and no
//! accounts. The route uses the real `genesys-web-messaging` preset; only its base URL points
//! at the fake.
//!
//! The fake's deployment ([`demo_deployment`]) turns on what the page shows: uploads of
//! images, PDFs and text files (`.exe` blocked), a conversation that turns read-only when the
//! agent leaves, and conversation clear. The admin listener gets the demo's buttons (POST):
//!
//! - `/demo/drop-upstream`: the kill switch, every upstream socket dropped without a close;
//! - `/demo/agent-writes`: the agent writes [`AGENT_NOTES`] numbered messages ("agent note N")
//!   to every live conversation, one every [`AGENT_NOTE_EVERY`], sockets open or not;
//! - `/demo/agent-disconnect`: the agent ends every live conversation (read-only);
//! - `/demo/stats`: what the fake saw, as JSON (sessions, the guest's typing events, uploads);
//! - `/demo/secrets`: the session tokens the fake was given, the JWTs it handed out and the
//!   refresh tokens it issued, as JSON, so the browser test can check that none of them ever
//!   reached the page. Demo only: the secrets are the in-process fake's, and the admin
//!   listener is on loopback unless told otherwise.
//!
//! Signed-in customers: the deployment has authenticated messaging on (session upgrades
//! allowed), the route signs customers in with the fake's stand-in identity provider
//! ([`with_sign_in`]), whose redirect URI is the chat page itself, and the page learns where
//! that provider is from `/signin.json` (see `demo_page`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;

use crate::app;
use crate::auth::resume::ResumeConfig;
use crate::config::{Config, RouteConfig, UpstreamConfig};
use crate::mock::genesys::{
    DEFAULT_DEPLOYMENT_ID, DisconnectType, FakeDeployment, FakeGenesys, FakeGenesysConfig,
    FakeGenesysHandle, FileUploadMode,
};
use crate::preset::PresetConfig;
use crate::preset::genesys::GenesysConfig;
use crate::preset::genesys::signin::GenesysAuthConfig;
use crate::secret::SecretSource;
use crate::server::{AdminAction, Extras};

/// The Origin the demo deployment allows, as a real deployment's allowed domains would.
const DEMO_ORIGIN: &str = "https://chat.guestgate.example";

/// How many numbered messages one `/demo/agent-writes` makes the agent write.
pub const AGENT_NOTES: u64 = 12;

/// The pause between two of them.
pub const AGENT_NOTE_EVERY: Duration = Duration::from_millis(300);

/// The largest upload the demo deployment allows, in KB (5 MB).
pub const DEMO_MAX_UPLOAD_KB: u64 = 5 * 1024;

/// The name the page shows for the one customer the stand-in identity provider signs in.
pub const DEMO_USER: &str = "Alex";

/// The demo deployment's public settings: uploads of PNG, JPEG, PDF and plain text up to
/// [`DEMO_MAX_UPLOAD_KB`] with `.exe` blocked, read-only after the agent disconnects,
/// conversation clear allowed, and authenticated messaging on with session upgrades allowed.
pub fn demo_deployment() -> FakeDeployment {
    FakeDeployment {
        file_upload_modes: vec![FileUploadMode {
            file_types: ["image/png", "image/jpeg", "application/pdf", "text/plain"]
                .map(String::from)
                .to_vec(),
            max_file_size_kb: DEMO_MAX_UPLOAD_KB,
        }],
        conversation_disconnect: Some(DisconnectType::ReadOnly),
        conversation_clear: true,
        blocked_extensions: vec![".exe".into()],
        auth_enabled: true,
        allow_session_upgrade: true,
        ..FakeDeployment::default()
    }
}

/// The demo's fake Genesys: [`demo_deployment`] behind the demo Origin, the agent answering
/// each guest text.
pub fn demo_fake_config() -> FakeGenesysConfig {
    FakeGenesysConfig {
        allowed_origins: vec![DEMO_ORIGIN.into()],
        deployments: [(DEFAULT_DEPLOYMENT_ID.to_owned(), demo_deployment())].into(),
        ..FakeGenesysConfig::default()
    }
}

/// The agent ends every live conversation; returns how many it ended. (The handle lists
/// every token it saw; `agent_disconnect` skips the gone and the already read-only ones.)
pub fn agent_disconnect_all(fake: &FakeGenesysHandle) -> usize {
    fake.tokens_seen()
        .iter()
        .filter(|t| fake.agent_disconnect(t).is_some())
        .count()
}

/// The agent writes "agent note N" for N in `first..first + count` to every live
/// conversation, one N every `every`; returns how many messages it wrote.
pub async fn agent_notes(
    fake: FakeGenesysHandle,
    first: u64,
    count: u64,
    every: Duration,
) -> usize {
    let mut written = 0;
    for n in first..first + count {
        if n > first {
            tokio::time::sleep(every).await;
        }
        let text = format!("agent note {n}");
        written += fake
            .tokens_seen()
            .iter()
            .filter(|t| fake.agent_say(t, &text).is_some())
            .count();
    }
    written
}

/// What the fake saw, for the browser test: sessions created, the guest's typing events
/// (summed over sessions), uploads (id and bytes). No token or JWT.
pub fn stats(fake: &FakeGenesysHandle) -> String {
    let typing: usize = fake
        .tokens_seen()
        .iter()
        .map(|t| fake.typing_events(t))
        .sum();
    let uploads: Vec<_> = fake
        .uploads()
        .into_iter()
        .map(|(id, bytes)| json!({"attachmentId": id, "bytes": bytes}))
        .collect();
    json!({
        "sessionsCreated": fake.sessions_created(),
        "typingEvents": typing,
        "uploads": uploads,
    })
    .to_string()
}

/// The demo's admin buttons (see the module comment), acting on `fake`.
fn admin_actions(fake: &FakeGenesysHandle) -> Vec<(&'static str, AdminAction)> {
    let act = |f: fn(&FakeGenesysHandle) -> String| -> AdminAction {
        let fake = fake.clone();
        Arc::new(move || f(&fake))
    };
    let writer = fake.clone();
    let next_note = AtomicU64::new(1);
    let agent_writes: AdminAction = Arc::new(move || {
        let first = next_note.fetch_add(AGENT_NOTES, Ordering::SeqCst);
        let every = AGENT_NOTE_EVERY;
        tokio::spawn(agent_notes(writer.clone(), first, AGENT_NOTES, every));
        let last = first + AGENT_NOTES - 1;
        format!(
            "the agent writes agent note {first} to {last}, one every {} ms",
            every.as_millis()
        )
    });
    vec![
        (
            "/demo/drop-upstream",
            act(|f| format!("dropped {} upstream sockets", f.drop_connections())),
        ),
        ("/demo/agent-writes", agent_writes),
        (
            "/demo/agent-disconnect",
            act(|f| format!("the agent ended {} conversations", agent_disconnect_all(f))),
        ),
        ("/demo/stats", act(stats)),
        ("/demo/secrets", act(secrets)),
    ]
}

/// Every credential the fake handed out or was given, for the browser test's leak check:
/// `sessionTokens` (guestgate's, one per conversation), `jwts` (the history API's, from
/// `getJwt`) and `authSecrets` (the signed-in customers' JWTs and refresh tokens).
pub fn secrets(fake: &FakeGenesysHandle) -> String {
    let jwts: Vec<String> = fake
        .sent()
        .iter()
        .filter_map(|v| v["body"]["jwt"].as_str().map(str::to_owned))
        .collect();
    json!({
        "sessionTokens": fake.tokens_seen(),
        "jwts": jwts,
        "authSecrets": fake.issued_auth_secrets(),
    })
    .to_string()
}

/// The chat page's URL for a browser listener on `listen` (loopback when it listens on every
/// address): the redirect URI of the demo's sign-in.
pub fn page_url(listen: SocketAddr) -> String {
    let ip = if listen.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        listen.ip()
    };
    format!("http://{}/", SocketAddr::new(ip, listen.port()))
}

/// Turns on sign-in for the demo route of `config` (from [`demo_config`]): codes from the
/// stand-in identity provider come back to `redirect_uri`; guests may chat too and may sign in
/// without leaving their conversation.
pub fn with_sign_in(config: &mut Config, redirect_uri: &str) {
    if let UpstreamConfig::Preset(PresetConfig::Genesys(g)) = &mut config.routes[0].upstream {
        g.auth = Some(GenesysAuthConfig {
            redirect_uri: redirect_uri.to_owned(),
            allow_anonymous: true,
            allow_upgrade: true,
        });
    }
}

/// `listen` with its port chosen now when it is 0, so the page's URL (the sign-in redirect
/// URI) is known before the configuration is built. The port is free again for a moment before
/// guestgate binds it; another process taking it then makes the start fail with a bind error.
fn concrete(listen: SocketAddr) -> std::io::Result<SocketAddr> {
    if listen.port() != 0 {
        return Ok(listen);
    }
    std::net::TcpListener::bind(listen)?.local_addr()
}

/// The demo's configuration: one `/ws` route with the Genesys preset aimed at `fake_url`,
/// and resume tickets sealed with the key in `resume_key_file` when given.
pub fn demo_config(
    listen: SocketAddr,
    admin_listen: SocketAddr,
    fake_url: &str,
    resume_key_file: Option<&Path>,
) -> Config {
    let mut config = Config::one_liner(listen, fake_url.parse().expect("fake URL is valid"));
    config.server.admin_listen = admin_listen;
    let route: &mut RouteConfig = &mut config.routes[0];
    route.name = "demo".into();
    route.path = "/ws".into();
    route.upstream = UpstreamConfig::Preset(PresetConfig::Genesys(GenesysConfig {
        domain: None,
        base_url: Some(fake_url.parse().expect("fake URL is valid")),
        config_url: None,
        deployment_id: DEFAULT_DEPLOYMENT_ID.into(),
        origin: DEMO_ORIGIN.into(),
        application: None,
        allowed_actions: crate::preset::genesys::DEFAULT_ACTIONS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ready_timeout: std::time::Duration::from_secs(10),
        api_url: None,
        attachments: true,
        message_queue: 16,
        auto_start: false,
        auth: None,
    }));
    route.resume = resume_key_file.map(|path| {
        ResumeConfig::new(vec![SecretSource {
            file: Some(path.to_owned()),
            env: None,
        }])
    });
    config
}

/// Writes a fresh random resume key (base64, owner-only) for this demo process.
pub fn write_demo_resume_key() -> std::io::Result<PathBuf> {
    use base64::Engine;
    let path = std::env::temp_dir().join(format!("guestgate-demo-{}.key", std::process::id()));
    let key: [u8; 32] = rand::random();
    let text = base64::engine::general_purpose::STANDARD.encode(key);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&path)?, text.as_bytes())?;
    Ok(path)
}

/// Runs the demo until `stop` resolves.
pub async fn run(
    listen: SocketAddr,
    admin_listen: SocketAddr,
    stop: impl Future<Output = ()>,
) -> ExitCode {
    let fake_listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("guestgate demo: binding the fake upstream on 127.0.0.1: {e}");
            return ExitCode::from(1);
        }
    };
    let fake = FakeGenesys::start(fake_listener, demo_fake_config());
    let key_file = match write_demo_resume_key() {
        Ok(path) => path,
        Err(e) => {
            eprintln!("guestgate demo: writing a resume key to the temp directory: {e}");
            return ExitCode::from(1);
        }
    };
    let listen = match concrete(listen) {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("guestgate demo: binding the chat page's listener on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    let mut config = demo_config(listen, admin_listen, &fake.url(), Some(&key_file));
    let redirect_uri = page_url(listen);
    with_sign_in(&mut config, &redirect_uri);
    fake.register_redirect_uri(&redirect_uri);
    crate::demo_page::offer_sign_in(
        json!({
            "authorizeUrl": fake.idp_authorize_url(),
            "redirectUri": redirect_uri,
            "user": DEMO_USER,
        })
        .to_string(),
    );
    let extras = Extras {
        assets: Some(crate::demo_page::asset),
        admin_actions: admin_actions(&fake),
    };
    let running = match app::start_with(&config, None, extras).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("guestgate demo: {e}");
            return ExitCode::from(1);
        }
    };
    println!("guestgate demo is running (Ctrl-C to stop)");
    println!("  chat page:   http://{}/", running.addr);
    println!("  websocket:   ws://{}/ws", running.addr);
    println!("  metrics:     http://{}/metrics", running.admin_addr);
    println!("  health:      http://{}/readyz", running.admin_addr);
    println!(
        "  kill switch: http://{}/demo/drop-upstream",
        running.admin_addr
    );
    println!(
        "  agent:       http://{0}/demo/agent-writes, http://{0}/demo/agent-disconnect (POST)",
        running.admin_addr
    );
    println!(
        "  sign-in:     {} (stand-in identity provider, signs in as {DEMO_USER})",
        fake.idp_authorize_url()
    );
    println!(
        "  upstream:    {} (in-process fake Genesys Web Messaging)",
        fake.url()
    );
    stop.await;
    running.shutdown();
    running.wait().await;
    let _ = std::fs::remove_file(&key_file);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use serde_json::Value;
    use tungstenite::client::IntoClientRequest;

    const WAIT: Duration = Duration::from_secs(5);

    /// Opens a guest socket on the demo fake with `token` and returns its SessionResponse
    /// body; the socket is closed again.
    async fn configure(fake: &FakeGenesysHandle, token: &str) -> Value {
        let mut req = fake
            .url_for(DEFAULT_DEPLOYMENT_ID)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("origin", DEMO_ORIGIN.parse().unwrap());
        let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .unwrap()
            .unwrap();
        let configure = json!({"action": "configureSession", "deploymentId": DEFAULT_DEPLOYMENT_ID, "token": token});
        ws.send(tungstenite::Message::text(configure.to_string()))
            .await
            .unwrap();
        let reply = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let _ = tokio::time::timeout(WAIT, ws.close(None)).await;
        let v: Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
        assert_eq!(v["class"], "SessionResponse", "{v}");
        v["body"].clone()
    }

    fn texts(fake: &FakeGenesysHandle, token: &str) -> Vec<String> {
        fake.history(token)
            .unwrap()
            .iter()
            .filter_map(|m| m["text"].as_str().map(str::to_owned))
            .collect()
    }

    #[tokio::test]
    async fn the_demo_deployment_allows_uploads_and_turns_read_only_when_the_agent_leaves() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeGenesys::start(listener, demo_fake_config());
        let body = configure(&fake, "demo-token-1").await;
        let media = &body["allowedMedia"];
        let types: Vec<&str> = media["inbound"]["fileTypes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["image/png", "image/jpeg", "application/pdf", "text/plain"]
        );
        assert_eq!(media["inbound"]["maxFileSizeKB"], DEMO_MAX_UPLOAD_KB);
        assert_eq!(media["blockedExtensions"], json!([".exe"]));
        assert_eq!(body["readOnly"], false);

        // The agent writes with no socket open; the notes are in the history, in order.
        let written = agent_notes(fake.clone(), 5, 3, Duration::from_millis(10)).await;
        assert_eq!(written, 3);
        assert_eq!(
            texts(&fake, "demo-token-1"),
            ["agent note 5", "agent note 6", "agent note 7"]
        );

        // Every live conversation ends once; a read-only one gets no more notes.
        configure(&fake, "demo-token-2").await;
        assert_eq!(agent_disconnect_all(&fake), 2);
        assert_eq!(fake.read_only("demo-token-1"), Some(true));
        assert_eq!(fake.read_only("demo-token-2"), Some(true));
        assert_eq!(agent_disconnect_all(&fake), 0);
        assert_eq!(agent_notes(fake.clone(), 8, 1, Duration::ZERO).await, 0);
        assert_eq!(configure(&fake, "demo-token-1").await["readOnly"], true);

        let s: Value = serde_json::from_str(&stats(&fake)).unwrap();
        assert_eq!(s["sessionsCreated"], 2);
        assert_eq!(s["typingEvents"], 0);
        assert_eq!(s["uploads"], json!([]));
        assert!(!stats(&fake).contains("demo-token"), "stats carry no token");
        fake.shutdown().await;
    }

    #[test]
    fn the_page_url_is_the_listener_on_loopback_when_it_listens_everywhere() {
        assert_eq!(
            page_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(
            page_url("127.0.0.1:9000".parse().unwrap()),
            "http://127.0.0.1:9000/"
        );
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_ne!(concrete(any).unwrap().port(), 0);
        assert_eq!(
            concrete("127.0.0.1:8080".parse().unwrap()).unwrap().port(),
            8080
        );
    }

    /// The demo's route and fake with sign-in on: a code from the stand-in identity provider,
    /// handed over in the first frame with the guest's ticket, upgrades the guest conversation;
    /// `/demo/secrets` then lists the JWT and the refresh token, and the page saw neither.
    #[tokio::test]
    async fn the_demo_route_signs_a_guest_in_and_lists_the_new_secrets() {
        let fake = FakeGenesys::start(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            demo_fake_config(),
        );
        let key = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        std::fs::write(&key, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut config = demo_config(any, any, &fake.url(), Some(&key));
        let redirect = page_url("127.0.0.1:8080".parse().unwrap());
        with_sign_in(&mut config, &redirect);
        fake.register_redirect_uri(&redirect);
        let gg = app::start_with(&config, None, Extras::default())
            .await
            .unwrap();
        let addr = gg.addr;
        let open = |path: String| async move {
            let url = format!("ws://{addr}{path}");
            tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
                .await
                .unwrap()
                .unwrap()
                .0
        };
        let mut seen = Vec::new();
        let mut guest = open("/ws".into()).await;
        let ready = until_ready(&mut guest, &mut seen).await;
        assert_eq!(ready["signedIn"], false);
        let ticket = ready["resumeTicket"].as_str().unwrap().to_owned();
        drop(guest);

        let code = fake.issue_auth_code(&redirect, None);
        let mut page = open("/ws?signin=first-frame".into()).await;
        let frame = json!({"type":"guestgate","action":"signIn","code":code,"ticket":ticket});
        page.send(tungstenite::Message::text(frame.to_string()))
            .await
            .unwrap();
        let ready = until_ready(&mut page, &mut seen).await;
        assert_eq!(ready["signedIn"], true, "{ready}");
        assert_eq!(ready["newSession"], false, "the guest conversation goes on");
        assert_eq!(fake.tokens_seen().len(), 1);
        assert!(fake.is_authenticated(&fake.tokens_seen()[0]));

        let listed: Value = serde_json::from_str(&secrets(&fake)).unwrap();
        let auth = listed["authSecrets"].as_array().unwrap();
        assert_eq!(auth.len(), 2, "the JWT and the refresh token: {listed}");
        for s in auth
            .iter()
            .chain(listed["sessionTokens"].as_array().unwrap())
        {
            let s = s.as_str().unwrap();
            assert!(
                seen.iter().all(|f| !f.contains(s)),
                "a secret reached the page"
            );
        }
        gg.shutdown();
        let _ = tokio::time::timeout(WAIT, gg.wait()).await;
        fake.shutdown().await;
    }

    /// Reads frames (kept in `seen`) until guestgate's `SessionReady`; returns its body.
    async fn until_ready(
        ws: &mut tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        seen: &mut Vec<String>,
    ) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, ws.next())
                .await
                .expect("SessionReady in time")
                .expect("the socket stays open")
                .unwrap();
            let text = frame.to_text().unwrap().to_owned();
            seen.push(text.clone());
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["class"] == "SessionReady" {
                return v["body"].clone();
            }
        }
    }

    #[tokio::test]
    async fn the_admin_buttons_answer_and_the_agent_writes_in_the_background() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeGenesys::start(listener, demo_fake_config());
        configure(&fake, "demo-token-3").await;
        let actions = admin_actions(&fake);
        let run = |path: &str| {
            let (_, action) = actions.iter().find(|(p, _)| *p == path).unwrap();
            action()
        };
        assert_eq!(
            run("/demo/agent-writes"),
            "the agent writes agent note 1 to 12, one every 300 ms"
        );
        assert_eq!(
            run("/demo/agent-writes"),
            "the agent writes agent note 13 to 24, one every 300 ms"
        );
        let deadline = tokio::time::Instant::now() + WAIT;
        while texts(&fake, "demo-token-3").len() < 24 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                texts(&fake, "demo-token-3")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut notes: Vec<u64> = texts(&fake, "demo-token-3")
            .iter()
            .map(|t| t.strip_prefix("agent note ").unwrap().parse().unwrap())
            .collect();
        notes.sort_unstable();
        assert_eq!(notes, (1..=24).collect::<Vec<_>>(), "each note once");
        assert_eq!(
            run("/demo/agent-disconnect"),
            "the agent ended 1 conversations"
        );
        assert_eq!(run("/demo/drop-upstream"), "dropped 0 upstream sockets");
        let secrets: Value = serde_json::from_str(&run("/demo/secrets")).unwrap();
        assert_eq!(secrets["sessionTokens"], json!(["demo-token-3"]));
        assert_eq!(secrets["authSecrets"], json!([]), "nobody signed in");
        assert_eq!(secrets["jwts"], json!([]), "nobody read history");
        fake.shutdown().await;
    }
}
