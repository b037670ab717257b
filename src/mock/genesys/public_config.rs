//! The fake's public deployment config: what `GET
//! /webdeployments/v1/deployments/{id}/config.json` answers for each deployment, in the shape
//! of Genesys's `config.json` (the fields its own Messenger transport SDK reads: `id`,
//! `version`, `languages`, `apiEndpoint`, `messenger.apps.conversations`,
//! `messenger.fileUpload.modes[]`, `journeyEvents`, `status`, `auth`).
//!
//! `allowedDomains` is served only when there is something to list: whether the real
//! `config.json` carries the deployment's allowed domains is not confirmed, so a diagnosis must
//! not depend on it.

use serde_json::{Value, json};

/// A deployment's lifecycle state, as `config.json`'s `status` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeploymentStatus {
    /// Being created.
    Pending,
    /// Serving guests.
    #[default]
    Active,
    /// Switched off by an admin.
    Inactive,
    /// Broken configuration.
    Error,
    /// Being deleted.
    Deleting,
}

impl DeploymentStatus {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Pending => "Pending",
            DeploymentStatus::Active => "Active",
            DeploymentStatus::Inactive => "Inactive",
            DeploymentStatus::Error => "Error",
            DeploymentStatus::Deleting => "Deleting",
        }
    }
}

/// What happens to a conversation the agent disconnects (`conversationDisconnect.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectType {
    /// The conversation becomes read-only for the guest.
    ReadOnly,
    /// The guest can keep sending (a new conversation starts).
    Send,
}

/// One file upload mode: which MIME types, up to which size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUploadMode {
    /// MIME types, e.g. `image/png`.
    pub file_types: Vec<String>,
    /// Largest file in KB.
    pub max_file_size_kb: u64,
}

/// One deployment's public settings, as the fake serves them in `config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FakeDeployment {
    /// Lifecycle state; the fake refuses the socket upgrade (403) unless `Active`.
    pub status: DeploymentStatus,
    /// Allowed domains to list; `None` lists the hosts of the fake's `allowed_origins` (and
    /// omits the field when those are empty: every origin allowed).
    pub allowed_domains: Option<Vec<String>>,
    /// `auth.enabled`: authenticated (signed-in) messaging.
    pub auth_enabled: bool,
    /// `auth.allowSessionUpgrade`: a guest session may become authenticated.
    pub allow_session_upgrade: bool,
    /// `messenger.fileUpload.modes`; empty means attachments are off.
    pub file_upload_modes: Vec<FileUploadMode>,
    /// `conversationDisconnect`: `None` when disabled.
    pub conversation_disconnect: Option<DisconnectType>,
    /// `conversationClear.enabled`.
    pub conversation_clear: bool,
    /// File extensions refused for upload whatever their type (`.exe` or `exe`, any case);
    /// listed in SessionResponse `allowedMedia.blockedExtensions`, not in `config.json`.
    pub blocked_extensions: Vec<String>,
}

impl FakeDeployment {
    /// The `config.json` body for deployment `id`; `host` is the fake's `HOST:PORT`, and
    /// `allowed_origins` the fake's origin allowlist (the default for `allowedDomains`).
    pub fn to_json(&self, id: &str, host: &str, allowed_origins: &[String]) -> Value {
        let modes: Vec<Value> = self
            .file_upload_modes
            .iter()
            .map(|m| json!({"fileTypes": m.file_types, "maxFileSizeKB": m.max_file_size_kb}))
            .collect();
        let disconnect = match self.conversation_disconnect {
            None => json!({"enabled": false, "type": "Send"}),
            Some(DisconnectType::Send) => json!({"enabled": true, "type": "Send"}),
            Some(DisconnectType::ReadOnly) => json!({"enabled": true, "type": "ReadOnly"}),
        };
        let mut body = json!({
            "id": id,
            "version": "1",
            "languages": ["en-us"],
            "defaultLanguage": "en-us",
            "apiEndpoint": format!("http://{host}"),
            "messenger": {
                "enabled": true,
                "apps": {
                    "conversations": {
                        "messagingEndpoint": format!("ws://{host}"),
                        "showAgentTypingIndicator": true,
                        "showUserTypingIndicator": true,
                        "autoStart": {"enabled": false},
                        "conversationDisconnect": disconnect,
                        "conversationClear": {"enabled": self.conversation_clear},
                        "markdown": {"enabled": false},
                    }
                },
                "styles": {"primaryColor": "#ff4f1f"},
                "launcherButton": {"visibility": "On"},
                "fileUpload": {"modes": modes},
            },
            "journeyEvents": {"enabled": false},
            "status": self.status.as_str(),
            "auth": {
                "enabled": self.auth_enabled,
                "allowSessionUpgrade": self.allow_session_upgrade,
            },
        });
        let domains: Vec<String> = match &self.allowed_domains {
            Some(listed) => listed.clone(),
            None => allowed_origins
                .iter()
                .filter_map(|o| url::Url::parse(o).ok()?.host_str().map(str::to_owned))
                .collect(),
        };
        if !domains.is_empty() {
            body["allowedDomains"] = json!(domains);
        }
        body
    }
}
