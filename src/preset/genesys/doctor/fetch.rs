//! Fetching a deployment's public `config.json` (no credentials) and the parts of it the
//! diagnosis reads; network failures are classified (DNS, refused, TLS, timeout) so the
//! report can say which, naming only the host.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

/// Longest `config.json` read.
const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Why a host could not be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreachable {
    /// The name did not resolve.
    Dns,
    /// TCP connect refused.
    Refused,
    /// TCP connect failed otherwise, or the connection closed early.
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// No answer in time.
    Timeout(Duration),
}

/// What fetching `config.json` found.
#[derive(Debug, Clone)]
pub enum ConfigFetch {
    /// HTTP 200 with a config.
    Found(PublicConfig),
    /// Another HTTP status (404 and 403 mean "no such deployment here").
    Status(u16),
    /// 200 but not a config.json.
    BadBody,
    /// No HTTP answer.
    Unreachable(Unreachable),
}

/// The parts of the public `config.json` the diagnosis reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicConfig {
    /// Pending, Active, Inactive, Error or Deleting.
    pub status: String,
    /// `auth`.
    #[serde(default)]
    pub auth: AuthSettings,
    /// `messenger`.
    #[serde(default)]
    pub messenger: MessengerSettings,
    /// `allowedDomains`, when the config lists them (not confirmed to be part of it).
    #[serde(default)]
    pub allowed_domains: Option<Vec<String>>,
}

/// `auth`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthSettings {
    /// Authenticated messaging.
    #[serde(default)]
    pub enabled: bool,
    /// A guest session may be upgraded to an authenticated one.
    #[serde(default)]
    pub allow_session_upgrade: bool,
}

/// `messenger`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessengerSettings {
    /// `messenger.apps`.
    #[serde(default)]
    pub apps: Apps,
    /// `messenger.fileUpload`.
    #[serde(default)]
    pub file_upload: FileUpload,
}

/// `messenger.apps`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Apps {
    /// `messenger.apps.conversations`.
    #[serde(default)]
    pub conversations: Conversations,
}

/// `messenger.apps.conversations`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversations {
    /// `conversationDisconnect`.
    #[serde(default)]
    pub conversation_disconnect: Toggle,
    /// `conversationClear`.
    #[serde(default)]
    pub conversation_clear: Toggle,
}

/// An `{enabled, type?}` setting.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Toggle {
    /// Whether it is on.
    #[serde(default)]
    pub enabled: bool,
    /// `ReadOnly` or `Send` for `conversationDisconnect`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// `messenger.fileUpload`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileUpload {
    /// Upload modes; none means attachments are off.
    #[serde(default)]
    pub modes: Vec<UploadMode>,
}

/// One upload mode.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadMode {
    /// MIME types.
    #[serde(default)]
    pub file_types: Vec<String>,
    /// Largest file, KB.
    #[serde(default, rename = "maxFileSizeKB")]
    pub max_file_size_kb: u64,
}

impl PublicConfig {
    pub(super) fn is_active(&self) -> bool {
        self.status == "Active"
    }
}

/// Fetches `config.json` (no credentials sent).
pub async fn fetch_config(client: &reqwest::Client, url: &Url, timeout: Duration) -> ConfigFetch {
    if let Err(why) = resolve(url, timeout).await {
        return ConfigFetch::Unreachable(why);
    }
    let response = match client.get(url.clone()).timeout(timeout).send().await {
        Ok(r) => r,
        Err(e) => return ConfigFetch::Unreachable(classify_http(&e, timeout)),
    };
    let status = response.status().as_u16();
    if status != 200 {
        return ConfigFetch::Status(status);
    }
    let body = match read_capped(response).await {
        Ok(b) => b,
        Err(why) => return why.map_or(ConfigFetch::BadBody, ConfigFetch::Unreachable),
    };
    match serde_json::from_slice::<PublicConfig>(&body) {
        Ok(c) => ConfigFetch::Found(c),
        Err(_) => ConfigFetch::BadBody,
    }
}

/// The body, at most [`MAX_CONFIG_BYTES`]; `Err(None)` when too big.
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, Option<Unreachable>> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_CONFIG_BYTES {
                    return Err(None);
                }
            }
            Ok(None) => return Ok(body),
            Err(e) if e.is_timeout() => return Err(Some(Unreachable::Timeout(Duration::ZERO))),
            Err(_) => return Err(Some(Unreachable::Connect)),
        }
    }
}

/// Resolves the URL's host, so a DNS failure is told apart from the rest.
pub(super) async fn resolve(url: &Url, timeout: Duration) -> Result<(), Unreachable> {
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
    let port = url.port_or_known_default().unwrap_or(443);
    match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(mut addrs)) => match addrs.next() {
            Some(_) => Ok(()),
            None => Err(Unreachable::Dns),
        },
        Ok(Err(_)) => Err(Unreachable::Dns),
        Err(_) => Err(Unreachable::Timeout(timeout)),
    }
}

fn classify_http(e: &reqwest::Error, timeout: Duration) -> Unreachable {
    if e.is_timeout() {
        return Unreachable::Timeout(timeout);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut refused = false;
    while let Some(err) = source {
        if err.is::<rustls::Error>() {
            return Unreachable::Tls;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return Unreachable::Tls;
            }
            refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        source = err.source();
    }
    if refused {
        Unreachable::Refused
    } else {
        Unreachable::Connect
    }
}
