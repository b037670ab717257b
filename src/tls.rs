//! rustls set-up for the `wss://` upstream leg. Trust roots and the client configuration are
//! shared with the HTTP client of the auth flow (`auth::http_client`), so both legs trust the
//! same CAs: webpki roots, the platform's certificates and an optional extra CA file.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;

pub use crate::auth::http_client::HttpClientError as TlsSetupError;

/// The ring provider, used everywhere so one crypto implementation is linked.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration for `wss://` upstreams: HTTP/1.1 ALPN and the shared roots.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    crate::auth::http_client::tls_config(extra_ca).map(Arc::new)
}
