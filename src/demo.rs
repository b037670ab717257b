//! `guestgate demo`: guestgate and a fake Genesys Web Messaging service in one process on
//! loopback, with a chat page, so a new user sees the whole path work with one command and no
//! accounts. The route uses the real `genesys-web-messaging` preset; only its base URL points
//! at the fake.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::app;
use crate::auth::resume::ResumeConfig;
use crate::config::{Config, RouteConfig, UpstreamConfig};
use crate::mock::genesys::{DEFAULT_DEPLOYMENT_ID, FakeGenesys, FakeGenesysConfig};
use crate::preset::PresetConfig;
use crate::preset::genesys::GenesysConfig;
use crate::secret::SecretSource;
use crate::server::Extras;

/// The Origin the demo deployment allows, as a real deployment's allowed domains would.
const DEMO_ORIGIN: &str = "https://chat.guestgate.example";

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
    let fake = FakeGenesys::start(
        fake_listener,
        FakeGenesysConfig {
            allowed_origins: vec![DEMO_ORIGIN.into()],
            ..FakeGenesysConfig::default()
        },
    );
    let key_file = match write_demo_resume_key() {
        Ok(path) => path,
        Err(e) => {
            eprintln!("guestgate demo: writing a resume key to the temp directory: {e}");
            return ExitCode::from(1);
        }
    };
    let config = demo_config(listen, admin_listen, &fake.url(), Some(&key_file));
    let dropper = fake.clone();
    let extras = Extras {
        assets: Some(crate::demo_page::asset),
        admin_actions: vec![(
            "/demo/drop-upstream",
            Arc::new(move || format!("dropped {} upstream sockets", dropper.drop_connections())),
        )],
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
        "  upstream:    {} (in-process fake Genesys Web Messaging)",
        fake.url()
    );
    stop.await;
    running.shutdown();
    running.wait().await;
    let _ = std::fs::remove_file(&key_file);
    ExitCode::SUCCESS
}
