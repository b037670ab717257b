//! The binary as an operator uses it: exit codes, config errors naming the key before any port
//! is bound, `check` output, the one-liner relaying, SIGTERM draining, and the demo.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use guestgate::mock::FakeBehavior;

const BIN: &str = env!("CARGO_BIN_EXE_guestgate");

fn write_config(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guestgate.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn bad_config_exits_2_naming_the_key_before_binding() {
    // The listen port is taken by us: if guestgate tried to bind first it would report that.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (_dir, path) = write_config(&format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[[routes]]\nupstream = \"ws://127.0.0.1:1/\"\n[routes.relay]\nidle_timeout = \"0s\"\n"
    ));
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_config_error_before_binding(&out, "routes[0].relay.idle_timeout");
}

/// `out` is an exit 2 whose message names `key` and comes before any port was bound.
fn assert_config_error_before_binding(out: &std::process::Output, key: &str) {
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(key), "{stderr}");
    assert!(!stderr.contains("binding"), "{stderr}");
}

#[test]
fn zero_worker_threads_exits_2_naming_the_key_before_binding() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--upstream",
            "ws://127.0.0.1:1/",
            "--listen",
            &listen,
        ])
        .args(["--worker-threads", "0"])
        .output()
        .unwrap();
    assert_config_error_before_binding(&out, "server.worker_threads");
}

#[test]
fn bad_config_is_reported_once() {
    let (_dir, path) = write_config(
        "[[routes]]\nupstream = \"ws://127.0.0.1:1/\"\n[routes.relay]\nidle_timeout = \"0s\"\n",
    );
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let key = "routes[0].relay.idle_timeout";
    assert_eq!(stderr.matches(key).count(), 1, "stderr: {stderr}");
    assert_eq!(stdout.matches(key).count(), 0, "stdout: {stdout}");
}

#[test]
fn unknown_key_exits_2_naming_it() {
    let (_dir, path) =
        write_config("[[routes]]\nupstream = \"ws://127.0.0.1:1/\"\nupstrem_origin = \"x\"\n");
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("upstrem_origin"));
}

#[test]
fn check_prints_the_effective_config() {
    let (_dir, path) = write_config(
        "[[routes]]\nname = \"chat\"\nupstream = \"ws://127.0.0.1:1/\"\nedge.allow_any_origin = true\n",
    );
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("name = \"chat\""), "{stdout}");
    assert!(stdout.contains("idle_timeout = \"2m\""), "{stdout}");
}

/// Reads the child's log lines until one contains `needle`; returns that line.
fn wait_for_line(lines: &mut impl Iterator<Item = String>, needle: &str) -> String {
    for line in lines.by_ref() {
        if line.contains(needle) {
            return line;
        }
    }
    panic!("the process ended without printing {needle:?}");
}

fn addr_after(line: &str, key: &str) -> std::net::SocketAddr {
    let start = line.find(key).unwrap() + key.len();
    line[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_liner_relays_and_sigterm_drains_with_exit_0() {
    let up = fake(FakeBehavior::Echo).await;
    // Not the default (one per CPU), so the serving line shows the flag was applied.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) + 1;
    let workers = workers.to_string();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--upstream",
            &up.url(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
            "--worker-threads",
            &workers,
        ])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok);
    let line = tokio::task::block_in_place(|| wait_for_line(&mut lines, "guestgate is serving"));
    assert!(
        line.contains(&format!("worker_threads={workers}")),
        "{line}"
    );
    let addr = addr_after(&line, "listen=");
    let mut c = RawClient::connect(addr, "").await;
    c.send(true, 1, b"through the binary", MASK).await;
    assert_eq!(
        c.frame().await.unwrap(),
        (1, b"through the binary".to_vec())
    );

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (code, _) = c.close_frame().await;
    assert_eq!(code, 1001);
    c.send(true, 8, &close_payload(1001, ""), MASK).await;
    let status = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_prints_a_working_websocket_url() {
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok);
    let line = tokio::task::block_in_place(|| wait_for_line(&mut lines, "websocket:"));
    let url = line.split_whitespace().last().unwrap().to_owned();
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .parse()
        .unwrap();
    let mut c = RawClient::connect(addr, "").await;
    let (op, ready) = c.frame().await.unwrap();
    assert_eq!(op, 1);
    assert!(String::from_utf8_lossy(&ready).contains("SessionReady"));
    c.send(
        true,
        1,
        br#"{"action":"onMessage","message":{"type":"Text","text":"demo"}}"#,
        MASK,
    )
    .await;
    loop {
        let (_, reply) = c.frame().await.expect("agent reply");
        if String::from_utf8_lossy(&reply).contains(r#"Agent: you said \"demo\""#) {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn shipped_example_configs_are_valid() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples")).unwrap()
    {
        let path = entry.unwrap().path();
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&path)
            .env("VENDOR_CLIENT_SECRET", "example-secret-value")
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&out.stdout).contains("example-secret-value"));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn doctor_exits_2_on_a_bad_config_and_0_without_genesys_routes() {
    let (_dir, path) = write_config(
        "[[routes]]\nname = \"chat\"\n[routes.genesys]\ndomain = \"mypurecloud.evil\"\ndeployment_id = \"x\"\norigin = \"https://www.example.com\"\n",
    );
    let out = Command::new(BIN)
        .args(["doctor", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("routes[0].genesys.domain"));

    let (_dir, path) = write_config(
        "[[routes]]\nupstream = \"ws://127.0.0.1:1/\"\nedge.allow_any_origin = true\n",
    );
    let out = Command::new(BIN)
        .args(["doctor", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no Genesys routes"));
}
