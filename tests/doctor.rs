//! `guestgate doctor` against the in-process fake Genesys on loopback: each verdict (fine,
//! unknown deploymentId, deployment not Active, Origin refused, unreachable host), the features
//! line, the probe's clean close, and the binary's exit codes.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use guestgate::config::Config;
use guestgate::mock::genesys::{
    DEFAULT_DEPLOYMENT_ID, DeploymentStatus, DisconnectType, FakeDeployment, FileUploadMode,
};
use guestgate::mock::{FakeGenesys, FakeGenesysConfig, FakeGenesysHandle};
use guestgate::preset::genesys::doctor::{self, Report, Unreachable, Verdict};

const BIN: &str = env!("CARGO_BIN_EXE_guestgate");
const ORIGIN: &str = "https://www.example.com";
const LIMIT: Duration = Duration::from_secs(20);

async fn fake(config: FakeGenesysConfig) -> FakeGenesysHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    FakeGenesys::start(listener, config)
}

/// A config with one Genesys route on `base_url` for `deployment`.
fn config_text(base_url: &str, deployment: &str) -> String {
    format!(
        "[[routes]]\nname = \"chat\"\npath = \"/ws\"\nconnect_timeout = \"3s\"\n\
         [routes.genesys]\nbase_url = \"{base_url}\"\ndeployment_id = \"{deployment}\"\n\
         origin = \"{ORIGIN}\"\n[routes.edge]\nallowed_origins = [\"{ORIGIN}\"]\n"
    )
}

async fn diagnose(base_url: &str, deployment: &str) -> Report {
    let config = Config::parse(&config_text(base_url, deployment)).unwrap();
    let subjects = doctor::subjects(&config).unwrap();
    assert_eq!(subjects.len(), 1);
    tokio::time::timeout(LIMIT, doctor::diagnose(&subjects[0]))
        .await
        .expect("diagnosis within the limit")
}

fn with_deployment(d: FakeDeployment) -> FakeGenesysConfig {
    FakeGenesysConfig {
        deployments: BTreeMap::from([(DEFAULT_DEPLOYMENT_ID.to_owned(), d)]),
        ..FakeGenesysConfig::default()
    }
}

/// Polls until the fake has no open socket, or the deadline passes.
async fn sockets_closed(fake: &FakeGenesysHandle) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if fake.open_sockets() == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn fine_deployment_is_fine_and_the_probe_sends_nothing() {
    let fake = fake(FakeGenesysConfig {
        allowed_origins: vec![ORIGIN.into()],
        ..FakeGenesysConfig::default()
    })
    .await;
    let report = diagnose(&fake.url(), DEFAULT_DEPLOYMENT_ID).await;
    assert_eq!(report.verdict, Verdict::Fine, "{}", report.render());
    assert!(report.is_fine());
    let text = report.render();
    assert!(text.contains("verdict: fine"), "{text}");
    assert!(
        text.contains(
            "features: auth off; attachments off; read-only disconnect off; conversation clear off"
        ),
        "{text}"
    );
    assert_eq!(
        fake.config_requests(),
        vec![format!(
            "/webdeployments/v1/deployments/{DEFAULT_DEPLOYMENT_ID}/config.json"
        )]
    );
    // The upgrade went through with the configured Origin, and no request frame followed.
    let upgrades = fake.upgrade_requests();
    assert_eq!(upgrades.len(), 1);
    assert_eq!(upgrades[0].origin.as_deref(), Some(ORIGIN));
    assert_eq!(fake.accepted(), 1);
    assert!(sockets_closed(&fake).await, "the probe socket was closed");
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
    assert_eq!(fake.sessions_created(), 0);
}

#[tokio::test]
async fn unknown_deployment_is_wrong_region_or_id() {
    let fake = fake(FakeGenesysConfig::default()).await;
    let report = diagnose(&fake.url(), "no-such-deployment").await;
    assert_eq!(
        report.verdict,
        Verdict::NotFound {
            config_status: 404,
            upgrade_status: Some(403)
        }
    );
    let text = report.render();
    assert!(text.contains("wrong region or deploymentId"), "{text}");
    assert!(!text.contains("features:"), "{text}");
}

#[tokio::test]
async fn inactive_deployment_is_named() {
    let fake = fake(with_deployment(FakeDeployment {
        status: DeploymentStatus::Inactive,
        ..FakeDeployment::default()
    }))
    .await;
    let report = diagnose(&fake.url(), DEFAULT_DEPLOYMENT_ID).await;
    assert_eq!(
        report.verdict,
        Verdict::NotActive {
            status: "Inactive".into()
        }
    );
    assert!(
        report
            .render()
            .contains("deployment not Active: its status is Inactive"),
        "{}",
        report.render()
    );
    // The fake is strict: an Inactive deployment's socket refuses the upgrade.
    assert_eq!(fake.refused(), 1);
}

#[tokio::test]
async fn refused_origin_names_the_origin_and_the_allowed_domains() {
    let fake = fake(FakeGenesysConfig {
        allowed_origins: vec!["https://shop.example.org".into()],
        ..FakeGenesysConfig::default()
    })
    .await;
    let report = diagnose(&fake.url(), DEFAULT_DEPLOYMENT_ID).await;
    assert_eq!(
        report.verdict,
        Verdict::OriginRefused {
            upgrade_status: 403,
            listed: Some((false, vec!["shop.example.org".into()])),
        }
    );
    let text = report.render();
    assert!(text.contains("Origin refused"), "{text}");
    assert!(text.contains(ORIGIN), "{text}");
    assert!(
        text.contains(
            "www.example.com is not among the deployment's allowedDomains (shop.example.org)"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn closed_port_is_could_not_reach_the_host() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let report = diagnose(&format!("ws://127.0.0.1:{port}/v1"), DEFAULT_DEPLOYMENT_ID).await;
    assert_eq!(
        report.verdict,
        Verdict::Unreachable {
            host: format!("127.0.0.1:{port}"),
            why: Unreachable::Refused,
        }
    );
    assert!(
        report.render().contains(&format!(
            "could not reach 127.0.0.1:{port}: connection refused"
        )),
        "{}",
        report.render()
    );
}

#[tokio::test]
async fn features_line_says_what_the_deployment_enables() {
    let fake = fake(with_deployment(FakeDeployment {
        auth_enabled: true,
        allow_session_upgrade: true,
        file_upload_modes: vec![FileUploadMode {
            file_types: vec!["image/png".into(), "image/jpeg".into()],
            max_file_size_kb: 10240,
        }],
        conversation_disconnect: Some(DisconnectType::ReadOnly),
        conversation_clear: true,
        ..FakeDeployment::default()
    }))
    .await;
    let report = diagnose(&fake.url(), DEFAULT_DEPLOYMENT_ID).await;
    assert_eq!(report.verdict, Verdict::Fine);
    let text = report.render();
    assert!(
        text.contains(
            "features: auth on (session upgrade allowed); attachments on (image/png, \
             image/jpeg up to 10240 KB); read-only disconnect on; conversation clear on"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn fake_config_json_has_the_real_shape() {
    let fake = fake(with_deployment(FakeDeployment {
        conversation_disconnect: Some(DisconnectType::Send),
        ..FakeDeployment::default()
    }))
    .await;
    let client =
        guestgate::auth::http_client::build_http_client(None, Duration::from_secs(5)).unwrap();
    let body: serde_json::Value = client
        .get(fake.config_url_for(DEFAULT_DEPLOYMENT_ID))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["id"], DEFAULT_DEPLOYMENT_ID);
    assert_eq!(body["status"], "Active");
    assert_eq!(body["auth"]["enabled"], false);
    let conv = &body["messenger"]["apps"]["conversations"];
    assert_eq!(conv["messagingEndpoint"], format!("ws://{}", fake.addr()));
    assert_eq!(conv["conversationDisconnect"]["type"], "Send");
    assert_eq!(conv["conversationClear"]["enabled"], false);
    assert!(body["messenger"]["fileUpload"]["modes"].is_array());
    let missing = client
        .get(fake.config_url_for("unknown"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

fn run_doctor(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guestgate.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .args(["doctor", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn binary_exits_0_when_fine_and_1_naming_the_problem() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(fake(FakeGenesysConfig::default()));
    let (code, out) = run_doctor(&config_text(&fake.url(), DEFAULT_DEPLOYMENT_ID));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("verdict: fine"), "{out}");

    let (code, out) = run_doctor(&config_text(&fake.url(), "wrong-id"));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("wrong region or deploymentId"), "{out}");
    assert!(out.contains("routes with a problem: chat"), "{out}");
    rt.block_on(fake.shutdown());
}

/// Lines of a child's stdout, read on a thread so the test can wait with a deadline.
fn stdout_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn serve_warns_at_start_up_about_a_deployment_that_is_not_active() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(fake(with_deployment(FakeDeployment {
        status: DeploymentStatus::Pending,
        ..FakeDeployment::default()
    })));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guestgate.toml");
    // Start-up checks a base_url route only when its config_url is given.
    let text = config_text(&fake.url(), DEFAULT_DEPLOYMENT_ID).replace(
        "[routes.genesys]\n",
        &format!(
            "[routes.genesys]\nconfig_url = \"{}\"\n",
            fake.config_url_for(DEFAULT_DEPLOYMENT_ID)
        ),
    );
    std::fs::write(&path, text).unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--log-format", "text", "--config"])
        .arg(&path)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = stdout_lines(&mut child);
    let deadline = std::time::Instant::now() + LIMIT;
    let (mut serving, mut warning) = (false, None);
    while !(serving && warning.is_some()) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains("guestgate is serving") => serving = true,
            Ok(line) if line.contains("not Active") => warning = Some(line),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    rt.block_on(fake.shutdown());
    assert!(serving, "start-up went on");
    let warning = warning.expect("a warning within the deadline");
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("status=Pending"), "{warning}");
    assert!(warning.contains("route=chat"), "{warning}");
}
