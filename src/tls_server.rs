//! TLS on the browser leg: rustls with HTTP/1.1 ALPN, the certificate and key read from files
//! and reloaded when they change, keeping the last good pair when a reload fails (a
//! half-written renewal must not take the listener down).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// `[server.tls]` as written in the config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files are checked for changes.
    #[serde(default = "default_reload", with = "humantime_serde")]
    pub reload_interval: Duration,
}

fn default_reload() -> Duration {
    Duration::from_secs(10)
}

/// Why a certificate pair could not be loaded. Never contains key material.
#[derive(Debug, thiserror::Error)]
#[error("loading tls {what} from {path}: {problem}")]
pub struct CertError {
    what: &'static str,
    path: String,
    problem: String,
}

/// Reads and checks a certificate chain and its key.
pub fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, CertError> {
    let fail = |what, path: &Path, problem: String| CertError {
        what,
        path: path.display().to_string(),
        problem,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| fail("certificate", cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail("certificate", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(fail(
            "certificate",
            cert,
            "no certificate in the file".into(),
        ));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| fail("key", key, e.to_string()))?;
    let provider = crate::tls::provider();
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| fail("key", key, e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| fail("key", key, format!("does not match the certificate: {e}")))?;
    Ok(Arc::new(certified))
}

/// The current pair, swapped in place on reload.
#[derive(Debug)]
pub struct ReloadingCert {
    current: RwLock<Arc<CertifiedKey>>,
    config: TlsServerConfig,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("cert lock").clone())
    }
}

impl ReloadingCert {
    /// Loads the pair now (start-up fails if it is bad).
    pub fn load(config: &TlsServerConfig) -> Result<Arc<Self>, CertError> {
        Ok(Arc::new(Self {
            current: RwLock::new(load_pair(&config.cert, &config.key)?),
            config: config.clone(),
        }))
    }

    /// A rustls server configuration using this resolver, ALPN `http/1.1`.
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Polls the files and reloads the pair when either changes, until `stop` fires.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut seen: (Option<SystemTime>, Option<SystemTime>) =
            (stamp(&self.config.cert), stamp(&self.config.key));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.config.reload_interval) => {}
            }
            let now = (stamp(&self.config.cert), stamp(&self.config.key));
            if now == seen {
                continue;
            }
            match load_pair(&self.config.cert, &self.config.key) {
                Ok(pair) => {
                    *self.current.write().expect("cert lock") = pair;
                    seen = now;
                    info!(cert = %self.config.cert.display(), "reloaded the tls certificate");
                }
                // Keep serving the last good pair; try again on the next change.
                Err(e) => {
                    seen = now;
                    warn!(error = %e, "tls certificate reload failed; keeping the previous one");
                }
            }
        }
    }
}
