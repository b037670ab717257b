//! rustls set-up for every outbound TLS connection: the roots guestgate trusts (webpki's
//! bundled roots, the platform's certificates and an optional extra CA file) and the client
//! configuration over them. The `wss://` upstream leg and the auth flow's HTTP client
//! (`auth::http_client`) both build on it, so both legs trust exactly the same issuers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Why the trust roots or the client configuration could not be set up. Names the file at
/// fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
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
    /// rustls refused the configuration.
    #[error("setting up tls for outbound connections: {0}")]
    Tls(#[from] rustls::Error),
}

/// The system's root certificates, read once per process: every route and HTTP client that
/// builds a root store shares them (reading and decoding the system bundle is most of the
/// cost of building one).
fn native_roots() -> &'static [CertificateDer<'static>] {
    static NATIVE: std::sync::OnceLock<Vec<CertificateDer<'static>>> = std::sync::OnceLock::new();
    NATIVE.get_or_init(|| {
        let native = rustls_native_certs::load_native_certs();
        if !native.errors.is_empty() {
            tracing::debug!(
                errors = native.errors.len(),
                "some system root certificates could not be loaded; using the rest"
            );
        }
        native.certs
    })
}

/// The roots guestgate trusts for upstream TLS: webpki's bundled roots, the system's roots
/// (unreadable system certificates are skipped, since the bundled set still applies), and
/// every certificate in `extra_ca` (a PEM file), which must all be valid.
pub fn root_store(extra_ca: Option<&Path>) -> Result<rustls::RootCertStore, TlsSetupError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };

    let (added, ignored) = roots.add_parsable_certificates(native_roots().iter().cloned());
    tracing::debug!(added, ignored, "loaded system root certificates");

    if let Some(path) = extra_ca {
        let ca_err = |source| TlsSetupError::CaFile {
            path: path.to_owned(),
            source,
        };
        let mut count = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(ca_err)? {
            let cert = cert.map_err(ca_err)?;
            count += 1;
            roots
                .add(cert)
                .map_err(|source| TlsSetupError::BadCertificate {
                    path: path.to_owned(),
                    index: count,
                    source,
                })?;
        }
        if count == 0 {
            return Err(TlsSetupError::NoCertificates {
                path: path.to_owned(),
            });
        }
        tracing::debug!(path = %path.display(), count, "added extra ca certificates");
    }
    Ok(roots)
}

/// A rustls client configuration over [`root_store`], using the ring provider and the safe
/// default protocol versions (TLS 1.2 and 1.3), advertising HTTP/1.1 only. The HTTP client
/// takes it by value; [`client_config`] shares it.
pub fn build_client_config(extra_ca: Option<&Path>) -> Result<ClientConfig, TlsSetupError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(extra_ca)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The ring provider, used everywhere so one crypto implementation is linked.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration for `wss://` upstreams: HTTP/1.1 ALPN and the shared roots.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    build_client_config(extra_ca).map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    /// A freshly generated private CA certificate, as PEM.
    fn ca_pem() -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn extra_ca_adds_to_the_bundled_roots() {
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca_pem()).unwrap();
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
        assert!(matches!(err, TlsSetupError::NoCertificates { .. }), "{err}");
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
