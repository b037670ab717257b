//! rustls set-up shared by every TLS client leg: trust roots (webpki roots, the platform's
//! certificates, an optional extra CA file) and the ring crypto provider.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Why the TLS client set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The extra CA file could not be read or parsed.
    #[error("reading extra CA file {path}: {problem}")]
    ExtraCa {
        /// The configured file.
        path: String,
        /// What went wrong.
        problem: String,
    },
    /// rustls refused the configuration.
    #[error("building the TLS client configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The ring provider, used everywhere so one crypto implementation is linked.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// webpki roots, the platform's roots (ignored when unreadable) and the extra CA file.
pub fn root_store(extra_ca: Option<&Path>) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        let fail = |problem: String| TlsSetupError::ExtraCa {
            path: path.display().to_string(),
            problem,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| fail(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(e.to_string()))?;
        if certs.is_empty() {
            return Err(fail("no certificates in the file".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| fail(e.to_string()))?;
        }
    }
    Ok(roots)
}

/// A client configuration for `wss://` upstreams: HTTP/1.1 ALPN, the roots above.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(extra_ca)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
