//! TLS on the browser leg: browsers connect with `wss://` straight to guestgate; the
//! certificate is reloaded when its files change, and a bad new pair keeps the old one.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use guestgate::mock::FakeBehavior;
use guestgate::tls_server::TlsServerConfig;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio_tungstenite::Connector;
use tungstenite::Message;

/// What the certificate watcher logs when a changed pair does not load.
const RELOAD_FAILED: &str = "tls certificate reload failed; keeping the previous one";
/// What it logs when a changed pair is taken into service.
const RELOADED: &str = "reloaded the tls certificate";

/// The log of this test binary, captured by a global subscriber installed on first use (global,
/// so the certificate watcher's task logs here whichever thread runs it).
fn logs() -> &'static CapturedLog {
    static LOGS: OnceLock<CapturedLog> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = CapturedLog::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("the only subscriber in this binary");
        logs
    })
}

/// Polls the captured log until `line` appears, failing after [`STEP`].
async fn wait_for_log(line: &str) {
    let deadline = tokio::time::Instant::now() + STEP;
    while logs().count(line) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no log line {line:?} within {STEP:?}; log:\n{}",
            logs().text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A CA, and a `localhost` certificate and key it signed (PEM).
fn issue() -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn client_trusting(ca_pem: &str) -> Connector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(guestgate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Connector::Rustls(Arc::new(config))
}

async fn echo_over_wss(port: u16, ca_pem: &str) -> Result<(), String> {
    let url = format!("wss://localhost:{port}/ws");
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        false,
        Some(client_trusting(ca_pem)),
    )
    .await
    .map_err(|e| e.to_string())?;
    ws.send(Message::text("over tls"))
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(STEP, ws.next()).await {
        Ok(Some(Ok(m))) if m == Message::text("over tls") => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test]
async fn browsers_connect_with_wss_and_certificates_reload() {
    let up = fake(FakeBehavior::Echo).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (ca1, cert1, key1) = issue();
    std::fs::write(&cert_path, cert1).unwrap();
    std::fs::write(&key_path, key1).unwrap();
    let mut config = config_for(&up.url());
    config.server.tls = Some(TlsServerConfig {
        cert: cert_path.clone(),
        key: key_path.clone(),
        reload_interval: Duration::from_millis(100),
    });
    logs();
    let gg = gateway(&config).await;
    let port = gg.addr.port();
    echo_over_wss(port, &ca1).await.unwrap();

    // A broken renewal (a key that does not match) keeps the old pair in service: once the
    // watcher has tried the new files and rejected them, the old certificate still answers.
    let (_, _, stray_key) = issue();
    std::fs::write(&key_path, stray_key).unwrap();
    wait_for_log(RELOAD_FAILED).await;
    assert_eq!(logs().count(RELOADED), 0, "{}", logs().text());
    echo_over_wss(port, &ca1).await.unwrap();

    // A good renewal from another CA is picked up without a restart.
    let (ca2, cert2, key2) = issue();
    std::fs::write(&key_path, key2).unwrap();
    std::fs::write(&cert_path, cert2).unwrap();
    wait_for_log(RELOADED).await;
    echo_over_wss(port, &ca2)
        .await
        .expect("the new certificate serves once reloaded");
    assert!(
        echo_over_wss(port, &ca1).await.is_err(),
        "the old CA must no longer verify"
    );
}

#[test]
fn a_bad_certificate_fails_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("missing.pem");
    let mut config = config_for("ws://127.0.0.1:1/");
    config.server.tls = Some(TlsServerConfig {
        cert: cert.clone(),
        key: cert.clone(),
        reload_interval: Duration::from_secs(1),
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(guestgate::app::start(&config, None))
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("missing.pem"), "{err}");
}
