//! A `wss://` upstream through rustls, trusted through a CA generated in the test and given to
//! the route as `extra_ca`; without it the TLS handshake fails and the browser gets 4503.

mod common;

use std::sync::Arc;

use common::*;
use futures::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

/// Starts a TLS WebSocket echo server for `localhost`; returns its port and the CA's PEM.
async fn tls_echo_server() -> (u16, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(guestgate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() || m.is_binary() {
                        let _ = ws.send(m).await;
                    }
                }
            });
        }
    });
    (port, ca.pem())
}

#[tokio::test]
async fn wss_upstream_with_extra_ca_relays() {
    let (port, ca_pem) = tls_echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let mut config = config_for(&format!("wss://localhost:{port}/"));
    config.routes[0].extra_ca = Some(ca_file);
    let gg = gateway(&config).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    c.send(true, 1, b"over tls", MASK).await;
    assert_eq!(c.frame().await.unwrap(), (1, b"over tls".to_vec()));
}

#[tokio::test]
async fn wss_upstream_with_unknown_ca_gives_4503() {
    let (port, _) = tls_echo_server().await;
    let gg = gateway(&config_for(&format!("wss://localhost:{port}/"))).await;
    let mut c = RawClient::connect(gg.addr, "").await;
    assert_eq!(c.close_frame().await.0, 4503);
}

#[test]
fn unreadable_extra_ca_fails_before_binding() {
    let mut config = config_for("wss://localhost:1/");
    config.routes[0].extra_ca = Some("/nonexistent/ca.pem".into());
    let err = guestgate::app::prepare_routes(&config)
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
