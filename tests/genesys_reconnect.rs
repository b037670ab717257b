//! Lossless reconnect across replicas: two `guestgate serve` processes share the resume key in
//! front of one fake Genesys whose agent keeps writing. The page chats on the first, which is
//! drained with SIGTERM mid-conversation; the page reconnects to the second with its ticket and
//! the id of the last message it saw, and ends with every agent message exactly once, in order.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::page::Page;
use common::*;
use guestgate::mock::genesys::{FakeGenesys, FakeGenesysConfig};
use serde_json::Value;
use tokio::net::TcpListener;

/// Agent messages the fake writes to the conversation.
const AGENT_MESSAGES: u64 = 30;

/// One `guestgate serve` process and its bound addresses.
struct Replica {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Replica {
    fn start(config: &Path) -> Replica {
        let mut child = Command::new(env!("CARGO_BIN_EXE_guestgate"))
            .args(["serve", "--config"])
            .arg(config)
            .args(["--log", "info"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut all = String::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                all.push_str(&String::from_utf8_lossy(&buf[..n]));
                let _ = tx.send(all.clone());
            }
        });
        let mut seen = String::new();
        while !seen.contains("guestgate is serving") {
            seen = rx.recv_timeout(STEP).expect("guestgate started");
        }
        let plain = strip_ansi(&seen);
        let addr = after(&plain, "listen=").parse().unwrap();
        Replica { child, addr }
    }

    fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent message number of a frame, if it is one.
fn agent_number(v: &Value) -> Option<u64> {
    let text = v["body"]["text"].as_str()?;
    if v["class"] != "StructuredMessage" || v["body"]["direction"] != "Outbound" {
        return None;
    }
    text.strip_prefix("agent message ")?.parse().ok()
}

#[tokio::test]
async fn a_drained_replica_loses_no_agent_message_when_the_page_moves_to_another() {
    let fake = FakeGenesys::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        FakeGenesysConfig {
            agent_reply: false,
            agent_every: Some(Duration::from_millis(100)),
            agent_max: AGENT_MESSAGES,
            ..FakeGenesysConfig::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("resume.key");
    {
        use base64::Engine;
        let bytes: [u8; 32] = rand::random();
        std::fs::write(
            &key,
            base64::engine::general_purpose::STANDARD.encode(bytes),
        )
        .unwrap();
    }
    let config = dir.path().join("guestgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
shutdown_grace = "5s"

[[routes]]
name = "chat"
path = "/ws"

[routes.edge]
allowed_origins = ["https://www.site.example"]

[routes.genesys]
base_url = "{}"
deployment_id = "fake-deployment"
origin = "https://chat.guestgate.example"

[routes.resume]
keys = [{{ file = "{}" }}]
"#,
            fake.url(),
            key.display()
        ),
    )
    .unwrap();
    let first = Replica::start(&config);
    let second = Replica::start(&config);

    let (mut page, ready) = Page::open(first.addr, "/ws").await;
    let mut ticket = ready["body"]["resumeTicket"].as_str().unwrap().to_owned();
    let mut numbers = Vec::new();
    let mut last_id = String::new();
    // Chat on the first replica for a few messages, then drain it.
    while numbers.len() < 5 {
        let v = page.until(|v| agent_number(v).is_some()).await;
        numbers.push(agent_number(&v).unwrap());
        last_id = v["body"]["id"].as_str().unwrap().to_owned();
    }
    first.sigterm();
    // Anything still delivered before the close counts too.
    let (code, _) = loop {
        let (op, payload) = page.client.frame().await.expect("a close frame");
        if op == 8 {
            break common::page::frame_close(&payload);
        }
        let v: Value = serde_json::from_slice(&payload).unwrap();
        if let Some(n) = agent_number(&v) {
            numbers.push(n);
            last_id = v["body"]["id"].as_str().unwrap().to_owned();
        }
        if v["class"] == "SessionReady" {
            ticket = v["body"]["resumeTicket"].as_str().unwrap().to_owned();
        }
    };
    assert_eq!(code, 1001, "a drain says going away");
    // The agent keeps writing while the page is away.
    tokio::time::sleep(Duration::from_millis(400)).await;

    let path = format!("/ws?resume={ticket}&after={last_id}");
    let (mut page, again) = Page::open(second.addr, &path).await;
    assert_eq!(again["body"]["newSession"], false, "same conversation");
    while numbers.last() != Some(&AGENT_MESSAGES) {
        let v = page.until(|v| agent_number(v).is_some()).await;
        numbers.push(agent_number(&v).unwrap());
    }
    let want: Vec<u64> = (1..=AGENT_MESSAGES).collect();
    assert_eq!(numbers, want, "every agent message exactly once, in order");
    let done = page
        .seen
        .iter()
        .find(|t| t.contains("\"ReplayDone\""))
        .expect("a replay happened");
    let done: Value = serde_json::from_str(done).unwrap();
    assert_eq!(done["body"]["complete"], true);
    assert!(done["body"]["count"].as_u64().unwrap() >= 1, "{done}");
    let token = &fake.tokens_seen()[0];
    assert!(page.seen.iter().all(|t| !t.contains(token.as_str())));
}
