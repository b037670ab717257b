//! The outbound HTTP client used for token fetches and auth steps.
//!
//! TLS is the client configuration of [`crate::tls`]: rustls with the ring provider chosen
//! explicitly, over the same roots the WebSocket leg trusts (bundled webpki roots, the
//! system's, an optional extra CA file for private upstreams). Redirects are not followed,
//! so credentials sent to the configured URL never follow a `Location` elsewhere, and proxy
//! settings are not read from the environment, so where secrets go is decided by config alone.

use std::path::Path;
use std::time::Duration;

use crate::tls::{self, TlsSetupError};

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    /// The TLS roots or configuration could not be set up (names the CA file at fault).
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// reqwest refused the configuration.
    #[error("building the outbound http client: {0}")]
    Build(#[from] reqwest::Error),
}

/// Builds the outbound HTTP client.
///
/// `timeout` bounds connecting and, by default, each whole request; a request may set its own
/// shorter or longer timeout. No redirects are followed (a 3xx comes back as the response) and
/// no proxy is taken from `HTTP_PROXY`-style variables.
pub fn build_http_client(
    extra_ca: Option<&Path>,
    timeout: Duration,
) -> Result<reqwest::Client, HttpClientError> {
    let tls = tls::build_client_config(extra_ca)?;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(concat!("guestgate/", env!("CARGO_PKG_VERSION")))
        .build()?;
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::convert::Infallible;
    use std::sync::Arc;

    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::net::TcpListener;

    const LIMIT: Duration = Duration::from_secs(20);

    /// A private CA (PEM) and a leaf for 127.0.0.1 that it signed.
    struct Pki {
        ca_pem: String,
        leaf: CertificateDer<'static>,
        leaf_key: PrivateKeyDer<'static>,
    }

    fn pki() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        Pki {
            ca_pem: ca_cert.pem(),
            leaf: leaf.der().clone(),
            leaf_key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
        }
    }

    /// An HTTPS server on 127.0.0.1 answering every request with 302 to another host.
    async fn https_server(pki: &Pki) -> std::net::SocketAddr {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![pki.leaf.clone()], pki.leaf_key.clone_key())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(|_req| async {
                        let resp = hyper::Response::builder()
                            .status(302)
                            .header("location", "http://127.0.0.2:9/elsewhere")
                            .body(Full::new(Bytes::from_static(b"moved")))
                            .unwrap();
                        Ok::<_, Infallible>(resp)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn trusts_the_extra_ca_and_does_not_follow_redirects() {
        tokio::time::timeout(LIMIT, async {
            let pki = pki();
            let dir = tempfile::tempdir().unwrap();
            let ca_path = dir.path().join("ca.pem");
            std::fs::write(&ca_path, &pki.ca_pem).unwrap();
            let addr = https_server(&pki).await;
            let url = format!("https://{addr}/token");

            let client = build_http_client(Some(&ca_path), Duration::from_secs(5)).unwrap();
            let resp = client.get(&url).send().await.unwrap();
            assert_eq!(resp.status(), 302, "the redirect must come back unfollowed");

            let plain = build_http_client(None, Duration::from_secs(5)).unwrap();
            let err = plain.get(&url).send().await.unwrap_err();
            let chain = format!("{:?}", err);
            assert!(
                chain.contains("UnknownIssuer") || chain.contains("certificate"),
                "{chain}"
            );
        })
        .await
        .expect("test timed out");
    }
}
