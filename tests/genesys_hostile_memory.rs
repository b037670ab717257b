//! Hostile browsers on a Genesys route cost bounded memory. guestgate runs as its own process
//! (the real binary, default limits) so its peak RSS (`VmHWM`) is measured alone; the fake
//! Genesys and the hostile clients run in this test process.
//!
//! N connections each send the largest message the route allows (64 KiB by default) as a
//! hostile `[0,0,0,...]` array inside an allowed request; peak RSS may rise by about twice
//! (message limit + read buffer) per connection plus a fixed allowance. One byte more closes
//! 1009, and so does the bare header of a 16 MiB frame, before anything is buffered.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;
use guestgate::mock::genesys::{DEFAULT_DEPLOYMENT_ID, FakeGenesys, FakeGenesysConfig};
use guestgate::preset::genesys::BROWSER_MESSAGE_LIMIT;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_guestgate");
/// Hostile connections.
const N: usize = 8;
/// The relay's default read buffer (`buffer_bytes`).
const READ_BUFFER: usize = 64 << 10;
/// Start-up noise: thread stacks and malloc arenas first touched under load, TLS-free
/// upstream legs, log lines.
const ALLOWANCE: usize = 2 << 20;

/// Kills the child on drop, so a failing test leaves no process behind.
struct Guestgate(Child);

impl Drop for Guestgate {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guestgate {
    /// Peak resident set size so far, in bytes.
    fn vm_hwm(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .expect("VmHWM in /proc/PID/status");
        let kb: usize = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("VmHWM in kB");
        kb * 1024
    }
}

/// A request of exactly `size` bytes: an allowed `onMessage` padded with a `[0,0,...]` array.
fn hostile_request(size: usize) -> Vec<u8> {
    let head = r#"{"action":"onMessage","message":{"type":"Text","text":"x"},"pad":[0"#;
    let tail = "]}";
    let mut body = head.to_owned();
    while body.len() + tail.len() + 2 <= size {
        body.push_str(",0");
    }
    while body.len() + tail.len() < size {
        body.push(' ');
    }
    body.push_str(tail);
    assert_eq!(body.len(), size);
    body.into_bytes()
}

async fn read_until(c: &mut RawClient, want: impl Fn(&Value) -> bool) -> Value {
    loop {
        let (op, payload) = c.frame().await.expect("connection ended");
        assert_eq!(op, 1, "unexpected frame {op}");
        let v: Value = serde_json::from_slice(&payload).unwrap();
        if want(&v) {
            return v;
        }
    }
}

fn start_guestgate(dir: &tempfile::TempDir, fake_url: &str) -> (Guestgate, std::net::SocketAddr) {
    let path = dir.path().join("guestgate.toml");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [[routes]]\nname = \"chat\"\npath = \"/ws\"\n\
         [routes.edge]\nallow_any_origin = true\n\
         [routes.genesys]\nbase_url = \"{fake_url}\"\ndeployment_id = \"{DEFAULT_DEPLOYMENT_ID}\"\n\
         origin = \"https://chat.guestgate.example\"\n"
    );
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .args(["--log-format", "text"])
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = Guestgate(child);
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("guestgate is serving"))
        .expect("guestgate reports that it is serving");
    let start = line.find("listen=").unwrap() + "listen=".len();
    let addr = line[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (guard, addr)
}

#[tokio::test(flavor = "multi_thread")]
async fn max_size_hostile_messages_cost_bounded_memory() {
    let limit = BROWSER_MESSAGE_LIMIT as usize;
    let fake = FakeGenesys::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        FakeGenesysConfig::default(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (gg, addr) = tokio::task::block_in_place(|| start_guestgate(&dir, &fake.url()));

    let mut clients = Vec::new();
    for _ in 0..N {
        let mut c = RawClient::connect(addr, "").await;
        read_until(&mut c, |v| v["class"] == "SessionReady").await;
        clients.push(c);
    }
    let before = gg.vm_hwm();

    // Every connection sends the largest message allowed at once; each is relayed whole.
    let request = hostile_request(limit);
    for c in &mut clients {
        c.send(true, 1, &request, MASK).await;
    }
    for c in &mut clients {
        read_until(c, |v| v["body"]["direction"] == "Inbound").await;
    }
    let requests = fake.wait_for_requests(2 * N, STEP).await.unwrap();
    let relayed = requests
        .iter()
        .filter(|r| r["action"] == "onMessage" && r["pad"].is_array())
        .count();
    assert_eq!(relayed, N);

    // One byte more is refused with 1009.
    let mut c = RawClient::connect(addr, "").await;
    read_until(&mut c, |v| v["class"] == "SessionReady").await;
    c.send(true, 1, &hostile_request(limit + 1), MASK).await;
    assert_eq!(c.close_frame().await.0, 1009);

    // So is a 16 MiB frame, from its header, while its payload is still arriving.
    let mut c = RawClient::connect(addr, "").await;
    read_until(&mut c, |v| v["class"] == "SessionReady").await;
    let mut head = vec![0x81, 0x80 | 127];
    head.extend((16u64 << 20).to_be_bytes());
    head.extend([1, 2, 3, 4]);
    c.tcp.write_all(&head).await.unwrap();
    let _ = c.tcp.write_all(&vec![b' '; 256 << 10]).await;
    assert_eq!(c.close_frame().await.0, 1009);

    let after = gg.vm_hwm();
    let rise = after.saturating_sub(before);
    let bound = N * 2 * (limit + READ_BUFFER) + ALLOWANCE;
    eprintln!(
        "peak RSS {before} -> {after} bytes: +{rise} for {N} connections ({} per connection); bound {bound}",
        rise / N
    );
    assert!(
        rise <= bound,
        "peak RSS rose by {rise} bytes; bound {bound}"
    );
}
