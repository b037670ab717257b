//! The outbound HTTP client used for token fetches and auth steps, and the TLS roots it
//! trusts.
//!
//! TLS is rustls with the ring provider chosen explicitly (not a process-wide default that
//! another crate might install first). Roots are the bundled webpki roots plus the system's,
//! plus an optional extra CA file for private upstreams; [`root_store`] hands the same set to
//! the WebSocket leg so both legs trust exactly the same issuers. Redirects are not followed,
//! so credentials sent to the configured URL never follow a `Location` elsewhere, and proxy
//! settings are not read from the environment, so where secrets go is decided by config alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Why the HTTP client or its root store could not be built. Names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    /// The extra CA file could not be opened or is not valid PEM.
    #[error("reading extra ca file {path}: {source}")]
    CaFile {
        /// The file named in the config.
        path: PathBuf,
        /// What went wrong reading or decoding it.
        source: rustls_pki_types::pem::Error,
    },
    /// The extra CA file holds no `CERTIFICATE` sections.
    #[error("reading extra ca file {path}: it contains no certificates")]
    NoCertificates {
        /// The file named in the config.
        path: PathBuf,
    },
    /// A certificate in the extra CA file is not a usable trust anchor.
    #[error("reading extra ca file {path}: certificate {index}: {source}")]
    BadCertificate {
        /// The file named in the config.
        path: PathBuf,
        /// Which certificate in the file (1-based).
        index: usize,
        /// Why rustls refused it.
        source: rustls::Error,
    },
    /// The TLS configuration could not be assembled.
    #[error("setting up tls for outbound http: {0}")]
    Tls(#[from] rustls::Error),
    /// reqwest refused the configuration.
    #[error("building the outbound http client: {0}")]
    Build(#[from] reqwest::Error),
}

/// The roots guestgate trusts for upstream TLS: webpki's bundled roots, the system's roots
/// (unreadable system certificates are skipped, since the bundled set still applies), and
/// every certificate in `extra_ca` (a PEM file), which must all be valid.
pub fn root_store(extra_ca: Option<&Path>) -> Result<rustls::RootCertStore, HttpClientError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };

    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::debug!(
            errors = native.errors.len(),
            "some system root certificates could not be loaded; using the rest"
        );
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "loaded system root certificates");

    if let Some(path) = extra_ca {
        let ca_err = |source| HttpClientError::CaFile {
            path: path.to_owned(),
            source,
        };
        let mut count = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(ca_err)? {
            let cert = cert.map_err(ca_err)?;
            count += 1;
            roots
                .add(cert)
                .map_err(|source| HttpClientError::BadCertificate {
                    path: path.to_owned(),
                    index: count,
                    source,
                })?;
        }
        if count == 0 {
            return Err(HttpClientError::NoCertificates {
                path: path.to_owned(),
            });
        }
        tracing::debug!(path = %path.display(), count, "added extra ca certificates");
    }
    Ok(roots)
}

/// A rustls client configuration over [`root_store`], using the ring provider and the safe
/// default protocol versions (TLS 1.2 and 1.3), advertising HTTP/1.1 only.
pub fn tls_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, HttpClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(extra_ca)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
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
    let tls = tls_config(extra_ca)?;
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

    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
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

    #[test]
    fn extra_ca_adds_to_the_bundled_roots() {
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, pki().ca_pem).unwrap();
        let base = root_store(None).unwrap().len();
        assert!(base >= webpki_roots::TLS_SERVER_ROOTS.len());
        assert_eq!(root_store(Some(&ca_path)).unwrap().len(), base + 1);
    }

    #[test]
    fn bad_extra_ca_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = root_store(Some(&missing)).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        let err = root_store(Some(&empty)).unwrap_err();
        assert!(
            matches!(err, HttpClientError::NoCertificates { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("empty.pem"));

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = root_store(Some(&garbage)).unwrap_err().to_string();
        assert!(err.contains("garbage.pem"), "{err}");
    }
}
