//! The `genesys-web-messaging` preset: Genesys Cloud Web Messaging's guest socket.
//!
//! It expands to the socket URL (`wss://webmessaging.{domain}/v1?deploymentId=…`), the `Origin`
//! the deployment allows, a session token per conversation kept server-side, the
//! `configureSession` hello with `SessionResponse` code 200 and `connected: true` as ready, the
//! token injected into every browser request, and an allowlist of browser actions. Genesys
//! refuses an unknown deploymentId (and, unconfirmed, a disallowed Origin) with HTTP 403 at the
//! upgrade, which reaches the browser as 4403.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

use crate::auth::hello::{Condition, HelloSpec};

mod conversation;
pub mod doctor;
pub(crate) mod inject;
mod limits;
pub(crate) mod session;
pub mod signin;

pub use conversation::Conversation;
pub use inject::MAX_FIELDS;
pub use limits::BROWSER_MESSAGE_LIMIT;
pub use session::GenesysPreset;

/// The preset's name in logs and `guestgate check`.
pub const KIND: &str = "genesys-web-messaging";

/// Regions' domains, from Genesys's documentation.
pub const DOMAINS: &[&str] = &[
    "mypurecloud.com",
    "mypurecloud.ie",
    "mypurecloud.de",
    "mypurecloud.com.au",
    "mypurecloud.jp",
    "usw2.pure.cloud",
    "cac1.pure.cloud",
    "apne2.pure.cloud",
    "euw2.pure.cloud",
    "aps1.pure.cloud",
    "use2.us-gov-pure.cloud",
    "sae1.pure.cloud",
    "mec1.pure.cloud",
    "apne3.pure.cloud",
    "euc2.pure.cloud",
    "mxc1.pure.cloud",
    "apse1.pure.cloud",
];

/// Browser actions allowed by default: sending messages and events, and the app-level echo.
/// `configureSession` is guestgate's alone; `getJwt` would hand the page a credential for the
/// conversation history API, so it is not allowed unless listed.
pub const DEFAULT_ACTIONS: &[&str] = &["onMessage", "echo"];

/// The preset's settings, as written under `[routes.genesys]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GenesysConfig {
    /// The region's domain, e.g. `mypurecloud.com` or `usw2.pure.cloud`.
    #[serde(default)]
    pub domain: Option<String>,
    /// Overrides the socket base URL (tests and the demo point it at a fake), e.g.
    /// `ws://127.0.0.1:9000/v1`.
    #[serde(default)]
    pub base_url: Option<Url>,
    /// The deployment's public `config.json` URL, for `guestgate doctor` and the start-up
    /// check. Unset: `https://api-cdn.{domain}/webdeployments/v1/deployments/{id}/config.json`,
    /// or with `base_url` the same path on the base URL's host and port (`http` for `ws`,
    /// `https` for `wss`). `serve`'s start-up check skips a `base_url` route unless this is set.
    #[serde(default)]
    pub config_url: Option<Url>,
    /// The Messenger deployment id.
    pub deployment_id: String,
    /// The Origin sent upstream; must be in the deployment's allowed domains.
    pub origin: String,
    /// Optional `application` query parameter.
    #[serde(default)]
    pub application: Option<String>,
    /// Browser actions to allow.
    #[serde(default = "default_actions")]
    pub allowed_actions: Vec<String>,
    /// How long `configureSession` may take to be answered.
    #[serde(default = "default_ready", with = "humantime_serde")]
    pub ready_timeout: Duration,
    /// Overrides the REST base URL for history reads. Unset: `https://api.{domain}`, or with
    /// `base_url` its host and port (`http` for `ws`, `https` for `wss`).
    #[serde(default)]
    pub api_url: Option<Url>,
    /// Whether pages may use attachments (`onAttachment`, `getAttachment`,
    /// `deleteAttachment`); what may be uploaded is the deployment's to say.
    #[serde(default = "default_true")]
    pub attachments: bool,
    /// How many `onMessage` requests may wait for Genesys's 2-per-second limit per connection;
    /// past it the page gets a `MessageNotSent` frame.
    #[serde(default = "default_queue")]
    pub message_queue: usize,
    /// Whether the deployment auto-starts conversations (Messenger's `autoStart`): guestgate
    /// then sends presence `Join` once for each new session, as the official client does.
    #[serde(default)]
    pub auto_start: bool,
    /// `[routes.genesys.auth]`: signed-in customers (authenticated web messaging).
    #[serde(default)]
    pub auth: Option<signin::GenesysAuthConfig>,
}

fn default_true() -> bool {
    true
}

fn default_queue() -> usize {
    16
}

/// Most paced requests a route may let wait per connection.
pub const MAX_MESSAGE_QUEUE: usize = 256;

/// Attachment actions, allowed unless the route sets `attachments = false`.
pub const ATTACHMENT_ACTIONS: &[&str] = &["onAttachment", "getAttachment", "deleteAttachment"];

fn default_actions() -> Vec<String> {
    DEFAULT_ACTIONS.iter().map(|s| s.to_string()).collect()
}

fn default_ready() -> Duration {
    Duration::from_secs(10)
}

impl GenesysConfig {
    /// Checks the settings; errors name the key below `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<(), (String, String)> {
        let key = |k: &str| format!("{prefix}.{k}");
        match (&self.domain, &self.base_url) {
            (None, None) => return Err((key("domain"), "give domain (or base_url)".into())),
            (Some(d), None) if !DOMAINS.contains(&d.as_str()) => {
                return Err((
                    key("domain"),
                    format!("{d} is not a Genesys Cloud region domain"),
                ));
            }
            (_, Some(u)) if !matches!(u.scheme(), "ws" | "wss") => {
                return Err((key("base_url"), "must be a ws:// or wss:// URL".into()));
            }
            _ => {}
        }
        for (name, url) in [("config_url", &self.config_url), ("api_url", &self.api_url)] {
            if let Some(u) = url
                && !matches!(u.scheme(), "http" | "https")
            {
                return Err((key(name), "must be an http:// or https:// URL".into()));
            }
        }
        if let Some(auth) = &self.auth {
            auth.validate(&key("auth"))?;
        }
        if !(1..=MAX_MESSAGE_QUEUE).contains(&self.message_queue) {
            return Err((
                key("message_queue"),
                format!("must be 1 to {MAX_MESSAGE_QUEUE}"),
            ));
        }
        let id_ok = !self.deployment_id.is_empty()
            && self.deployment_id.len() <= 64
            && self
                .deployment_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !id_ok {
            return Err((
                key("deployment_id"),
                "must be letters, digits and dashes".into(),
            ));
        }
        match Url::parse(&self.origin) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.path() == "/" => {}
            _ => {
                return Err((
                    key("origin"),
                    "must be an origin like https://www.example.com".into(),
                ));
            }
        }
        if let Some(bad) = self
            .allowed_actions
            .iter()
            .find(|a| a.starts_with("configure"))
        {
            return Err((
                key("allowed_actions"),
                format!("{bad} is guestgate's to send"),
            ));
        }
        Ok(())
    }

    /// The guest socket URL with the deployment id (and application) in the query.
    pub fn socket_url(&self) -> Url {
        let mut url = match (&self.base_url, &self.domain) {
            (Some(base), _) => base.clone(),
            (None, Some(domain)) => Url::parse(&format!("wss://webmessaging.{domain}/v1"))
                .expect("a known domain makes a valid URL"),
            (None, None) => unreachable!("validated"),
        };
        url.query_pairs_mut()
            .append_pair("deploymentId", &self.deployment_id);
        if let Some(app) = &self.application {
            url.query_pairs_mut().append_pair("application", app);
        }
        url
    }

    /// Where the deployment's public `config.json` is (see [`GenesysConfig::config_url`]).
    pub fn config_json_url(&self) -> Url {
        if let Some(url) = &self.config_url {
            return url.clone();
        }
        let path = format!(
            "/webdeployments/v1/deployments/{}/config.json",
            self.deployment_id
        );
        self.http_url("api-cdn", &path)
    }

    /// The REST API's base (see [`GenesysConfig::api_url`]).
    pub fn api_base_url(&self) -> Url {
        match &self.api_url {
            Some(url) => url.clone(),
            None => self.http_url("api", "/"),
        }
    }

    /// Every page action passed to Genesys: the allowlist, plus attachments when on.
    pub fn page_actions(&self) -> Vec<String> {
        let mut actions = self.allowed_actions.clone();
        if self.attachments {
            for a in ATTACHMENT_ACTIONS {
                if !actions.iter().any(|x| x == a) {
                    actions.push((*a).to_owned());
                }
            }
        } else {
            actions.retain(|a| !ATTACHMENT_ACTIONS.contains(&a.as_str()));
        }
        actions
    }

    /// `https://{service}.{domain}{path}`, or with `base_url` its host and port.
    fn http_url(&self, service: &str, path: &str) -> Url {
        let text = match (&self.base_url, &self.domain) {
            (Some(base), _) => {
                let scheme = if base.scheme() == "wss" {
                    "https"
                } else {
                    "http"
                };
                let host = base.host_str().unwrap_or("localhost");
                let host = if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]")
                } else {
                    host.to_owned()
                };
                match base.port() {
                    Some(port) => format!("{scheme}://{host}:{port}{path}"),
                    None => format!("{scheme}://{host}{path}"),
                }
            }
            (None, Some(domain)) => format!("https://{service}.{domain}{path}"),
            (None, None) => unreachable!("validated"),
        };
        Url::parse(&text).expect("a validated host and id make a valid URL")
    }

    /// The `Origin` header value (no trailing slash).
    pub fn origin_header(&self) -> String {
        self.origin.trim_end_matches('/').to_owned()
    }

    /// [`GenesysConfig::hello`] for a signed-in customer: `configureAuthenticatedSession` with
    /// the Genesys JWT instead of `configureSession`.
    pub fn hello_authenticated(&self, token: &str, jwt: &str) -> HelloSpec {
        let mut spec = self.hello(token);
        spec.frames = vec![signin::configure_authenticated(
            &self.deployment_id,
            token,
            jwt,
        )];
        spec
    }

    /// `configureSession` for `token`, ready on `SessionResponse` 200 with `connected: true`,
    /// refused on any other response.
    pub fn hello(&self, token: &str) -> HelloSpec {
        let configure = json!({
            "action": "configureSession",
            "deploymentId": self.deployment_id,
            "token": token,
        });
        HelloSpec {
            frames: vec![configure.to_string()],
            ready: vec![
                Condition::eq("/class", json!("SessionResponse")),
                Condition::eq("/code", json!(200)),
                Condition::eq("/body/connected", json!(true)),
            ],
            refused: vec![
                Condition::eq("/type", json!("response")),
                Condition::ne("/class", json!("SessionResponse")),
            ],
            deadline: self.ready_timeout,
            max_reply: 256 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn config() -> GenesysConfig {
        GenesysConfig {
            domain: Some("usw2.pure.cloud".into()),
            base_url: None,
            config_url: None,
            deployment_id: "0d3d1a6e-1111-2222-3333-444455556666".into(),
            origin: "https://www.example.com".into(),
            application: None,
            allowed_actions: default_actions(),
            ready_timeout: default_ready(),
            api_url: None,
            attachments: true,
            message_queue: default_queue(),
            auto_start: false,
            auth: None,
        }
    }

    #[test]
    fn expands_to_the_regional_socket_url() {
        let url = config().socket_url();
        assert_eq!(
            url.as_str(),
            "wss://webmessaging.usw2.pure.cloud/v1?deploymentId=0d3d1a6e-1111-2222-3333-444455556666"
        );
    }

    #[test]
    fn config_json_url_follows_the_region_or_the_base_url() {
        let mut c = config();
        assert_eq!(
            c.config_json_url().as_str(),
            "https://api-cdn.usw2.pure.cloud/webdeployments/v1/deployments/0d3d1a6e-1111-2222-3333-444455556666/config.json"
        );
        c.base_url = Some("ws://127.0.0.1:9000/v1".parse().unwrap());
        assert_eq!(
            c.config_json_url().as_str(),
            "http://127.0.0.1:9000/webdeployments/v1/deployments/0d3d1a6e-1111-2222-3333-444455556666/config.json"
        );
        c.config_url = Some("https://cdn.example/x/config.json".parse().unwrap());
        assert_eq!(
            c.config_json_url().as_str(),
            "https://cdn.example/x/config.json"
        );
        c.config_url = Some("ftp://cdn.example/config.json".parse().unwrap());
        assert_eq!(c.validate("g").unwrap_err().0, "g.config_url");
    }

    #[test]
    fn validation_names_keys() {
        let mut c = config();
        c.domain = Some("mypurecloud.evil".into());
        assert_eq!(
            c.validate("routes[0].genesys").unwrap_err().0,
            "routes[0].genesys.domain"
        );
        let mut c = config();
        c.deployment_id = "x?y".into();
        assert_eq!(c.validate("g").unwrap_err().0, "g.deployment_id");
        let mut c = config();
        c.origin = "https://www.example.com/page".into();
        assert_eq!(c.validate("g").unwrap_err().0, "g.origin");
        let mut c = config();
        c.allowed_actions.push("configureSession".into());
        assert_eq!(c.validate("g").unwrap_err().0, "g.allowed_actions");
    }
}
