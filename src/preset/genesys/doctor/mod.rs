//! `guestgate doctor`: for a Genesys route, the answer to "why does the guest socket say 403?".
//!
//! Two looks at the deployment, neither with a credential: its public `config.json` (found?
//! which `status`? which features?) and the socket upgrade with the route's `Origin` (closed
//! again with 1000 at once, no `configureSession`). [`Verdict`] is what they add up to; it is
//! rendered to words in one place, [`Report::render`]. The start-up check that `serve` runs in
//! the background ([`spawn_startup_check`]) uses the same fetch.

use std::time::Duration;

use tracing::{info, warn};
use url::Url;

use super::GenesysPreset;
use crate::auth::http_client::build_http_client;
use crate::config::Config;
use crate::preset::{PresetConfig, PresetContext};
use crate::upstream::host_label;

mod fetch;
mod probe;

pub use fetch::{
    Apps, AuthSettings, ConfigFetch, Conversations, FileUpload, MessengerSettings, PublicConfig,
    Toggle, Unreachable, UploadMode, fetch_config,
};
pub use probe::{UpgradeProbe, probe_upgrade};

/// How long the start-up check may take to fetch a deployment's config.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(5);

/// What one Genesys route's two looks add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Config found and Active, and the upgrade was accepted.
    Fine,
    /// `config.json` not found (404/403) and the upgrade refused: the region (`domain`) or
    /// the `deployment_id` is wrong.
    NotFound {
        /// What `config.json` answered.
        config_status: u16,
        /// What the upgrade answered.
        upgrade_status: Option<u16>,
    },
    /// The deployment exists but is not Active.
    NotActive {
        /// Its status as the config gives it.
        status: String,
    },
    /// Config found and Active, but the upgrade was refused.
    OriginRefused {
        /// The status of the refusal.
        upgrade_status: u16,
        /// Whether the Origin's host is in the config's `allowedDomains`, if it lists them.
        listed: Option<(bool, Vec<String>)>,
    },
    /// A host could not be reached.
    Unreachable {
        /// `host:port`.
        host: String,
        /// How it failed.
        why: Unreachable,
    },
    /// Anything else, said in words.
    Unexpected(String),
}

/// The diagnosis of one route.
#[derive(Debug, Clone)]
pub struct Report {
    /// The route's name.
    pub route: String,
    /// The deployment id.
    pub deployment_id: String,
    /// The Origin sent with the upgrade.
    pub origin: String,
    /// Where `config.json` was fetched (no credentials in it).
    pub config_url: String,
    /// The socket's `host:port`.
    pub socket_host: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The deployment's features, when its config was found.
    pub config: Option<PublicConfig>,
}

impl Report {
    /// Whether the route needs no attention.
    pub fn is_fine(&self) -> bool {
        self.verdict == Verdict::Fine
    }

    /// The report in plain words, one line per fact.
    pub fn render(&self) -> String {
        let mut out = format!(
            "route {} (deployment {}):\n  config: {}\n  socket: {} with Origin {}\n",
            self.route, self.deployment_id, self.config_url, self.socket_host, self.origin
        );
        let verdict = match &self.verdict {
            Verdict::Fine => {
                "fine: the deployment is Active and the socket accepts this Origin".to_owned()
            }
            Verdict::NotFound {
                config_status,
                upgrade_status,
            } => {
                let upgrade = match upgrade_status {
                    Some(s) => format!("the socket refused the upgrade with HTTP {s}"),
                    None => "the socket could not be asked".to_owned(),
                };
                format!(
                    "wrong region or deploymentId: there is no config for this deployment \
                     (HTTP {config_status}) and {upgrade}; check `domain` (the region) and \
                     `deployment_id`"
                )
            }
            Verdict::NotActive { status } => format!(
                "deployment not Active: its status is {}; guests cannot connect until it is \
                 Active",
                printable(status)
            ),
            Verdict::OriginRefused {
                upgrade_status,
                listed,
            } => {
                let mut line = format!(
                    "Origin refused: the deployment exists and is Active, but the socket \
                     refused the upgrade with HTTP {upgrade_status} for Origin {}",
                    self.origin
                );
                let host = origin_host(&self.origin);
                match listed {
                    Some((true, _)) => line.push_str(&format!(
                        "; {host} is among the deployment's allowedDomains"
                    )),
                    Some((false, domains)) => line.push_str(&format!(
                        "; {host} is not among the deployment's allowedDomains ({})",
                        domains
                            .iter()
                            .map(|d| printable(d))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    None => line.push_str(&format!(
                        "; add {host} to the deployment's allowed domains, or set `origin` to \
                         one of them"
                    )),
                }
                line
            }
            Verdict::Unreachable { host, why } => {
                format!("could not reach {host}: {}", unreachable_words(why))
            }
            Verdict::Unexpected(what) => format!("unexpected: {what}"),
        };
        out.push_str(&format!("  verdict: {verdict}\n"));
        if let Some(config) = &self.config {
            out.push_str(&format!("  features: {}\n", features(config)));
        }
        out
    }
}

fn unreachable_words(why: &Unreachable) -> String {
    match why {
        Unreachable::Dns => "DNS lookup failed".into(),
        Unreachable::Refused => "connection refused".into(),
        Unreachable::Connect => "connection failed".into(),
        Unreachable::Tls => "TLS handshake failed".into(),
        Unreachable::Timeout(after) => format!("no answer within {after:?}"),
    }
}

/// The features line: auth, attachments, read-only disconnect, clear.
fn features(c: &PublicConfig) -> String {
    let auth = match (c.auth.enabled, c.auth.allow_session_upgrade) {
        (false, _) => "auth off".to_owned(),
        (true, false) => "auth on (no session upgrade)".to_owned(),
        (true, true) => "auth on (session upgrade allowed)".to_owned(),
    };
    let modes = &c.messenger.file_upload.modes;
    let attachments = if modes.is_empty() {
        "attachments off".to_owned()
    } else {
        let list: Vec<String> = modes
            .iter()
            .map(|m| {
                let types: Vec<String> = m.file_types.iter().map(|t| printable(t)).collect();
                format!("{} up to {} KB", types.join(", "), m.max_file_size_kb)
            })
            .collect();
        format!("attachments on ({})", list.join("; "))
    };
    let conv = &c.messenger.apps.conversations;
    let disconnect = match (
        conv.conversation_disconnect.enabled,
        conv.conversation_disconnect.kind.as_deref(),
    ) {
        (true, Some("ReadOnly")) => "read-only disconnect on",
        (true, _) => "read-only disconnect off (disconnect type Send)",
        (false, _) => "read-only disconnect off",
    };
    let clear = if conv.conversation_clear.enabled {
        "conversation clear on"
    } else {
        "conversation clear off"
    };
    format!("{auth}; {attachments}; {disconnect}; {clear}")
}

/// Text from the network, cut short and stripped of control characters before it is printed.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// The host of an origin like `https://www.example.com`.
fn origin_host(origin: &str) -> String {
    Url::parse(origin)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| origin.to_owned())
}

/// Combines the two looks into a verdict.
pub fn verdict(
    config: &ConfigFetch,
    upgrade: &UpgradeProbe,
    config_host: &str,
    socket_host: &str,
    origin: &str,
) -> Verdict {
    let socket_unreachable = |why: &Unreachable| Verdict::Unreachable {
        host: socket_host.to_owned(),
        why: why.clone(),
    };
    match config {
        ConfigFetch::Unreachable(why) => Verdict::Unreachable {
            host: config_host.to_owned(),
            why: why.clone(),
        },
        ConfigFetch::Status(s @ (403 | 404)) => match upgrade {
            UpgradeProbe::Refused(u) => Verdict::NotFound {
                config_status: *s,
                upgrade_status: Some(*u),
            },
            UpgradeProbe::Unreachable(why) => socket_unreachable(why),
            UpgradeProbe::Accepted => Verdict::Unexpected(format!(
                "the socket accepted the deployment but {config_host} has no config.json for \
                 it (HTTP {s}); check `config_url`"
            )),
            UpgradeProbe::Bad(what) => Verdict::Unexpected(format!("the socket {what}")),
        },
        ConfigFetch::Status(s) => {
            Verdict::Unexpected(format!("{config_host} answered HTTP {s} for config.json"))
        }
        ConfigFetch::BadBody => Verdict::Unexpected(format!(
            "{config_host} answered config.json with something that is not a deployment config"
        )),
        ConfigFetch::Found(c) if !c.is_active() => Verdict::NotActive {
            status: c.status.clone(),
        },
        ConfigFetch::Found(c) => match upgrade {
            UpgradeProbe::Accepted => Verdict::Fine,
            UpgradeProbe::Refused(u @ (401 | 403)) => {
                let host = origin_host(origin);
                Verdict::OriginRefused {
                    upgrade_status: *u,
                    listed: c.allowed_domains.as_ref().map(|domains| {
                        let listed = domains.iter().any(|d| d.eq_ignore_ascii_case(&host));
                        (listed, domains.clone())
                    }),
                }
            }
            UpgradeProbe::Refused(u) => {
                Verdict::Unexpected(format!("the socket refused the upgrade with HTTP {u}"))
            }
            UpgradeProbe::Unreachable(why) => socket_unreachable(why),
            UpgradeProbe::Bad(what) => Verdict::Unexpected(format!("the socket {what}")),
        },
    }
}

/// One Genesys route, ready to be diagnosed.
pub struct Subject {
    /// The route's name.
    pub route: String,
    /// The prepared preset (its target carries the Origin and the route's TLS).
    pub preset: GenesysPreset,
    /// The HTTP client for `config.json` (the route's extra CA).
    pub client: reqwest::Client,
}

/// The Genesys routes of `config`, prepared for diagnosis; errors name the route.
pub fn subjects(config: &Config) -> Result<Vec<Subject>, String> {
    let mut out = Vec::new();
    for route in &config.routes {
        let Some(PresetConfig::Genesys(g)) = route.upstream.preset() else {
            continue;
        };
        let fail = |e: String| format!("preparing route {}: {e}", route.name);
        let tls = crate::tls::client_config(route.extra_ca.as_deref())
            .map_err(|e| fail(e.to_string()))?;
        let ctx = PresetContext {
            tls,
            connect_timeout: route.connect_timeout,
        };
        let preset = GenesysPreset::new(g.clone(), ctx).map_err(fail)?;
        let client = build_http_client(route.extra_ca.as_deref(), route.connect_timeout)
            .map_err(|e| fail(e.to_string()))?;
        out.push(Subject {
            route: route.name.clone(),
            preset,
            client,
        });
    }
    Ok(out)
}

/// Diagnoses one route: both looks, then the verdict.
pub async fn diagnose(subject: &Subject) -> Report {
    let g = subject.preset.config();
    let config_url = g.config_json_url();
    let timeout = subject.preset.target().timeout;
    let (config, upgrade) = tokio::join!(
        fetch_config(&subject.client, &config_url, timeout),
        probe_upgrade(&subject.preset)
    );
    let socket_host = host_label(&subject.preset.target().url);
    let origin = g.origin_header();
    let verdict = verdict(
        &config,
        &upgrade,
        &host_label(&config_url),
        &socket_host,
        &origin,
    );
    let mut shown_url = config_url.clone();
    shown_url.set_query(None);
    Report {
        route: subject.route.clone(),
        deployment_id: g.deployment_id.clone(),
        origin,
        config_url: shown_url.to_string(),
        socket_host,
        verdict,
        config: match config {
            ConfigFetch::Found(c) => Some(c),
            _ => None,
        },
    }
}

/// In the background, warns about each Genesys deployment that is not Active or has no
/// config (a wrong region or id). Never blocks nor fails start-up; an unreachable config is
/// noted at info level. Routes with `base_url` and no `config_url` are skipped.
pub fn spawn_startup_check(config: &Config) {
    let subjects = match subjects(config) {
        Ok(s) => s,
        Err(e) => {
            info!(error = %e, "skipping the Genesys deployment check");
            return;
        }
    };
    // With only `base_url` (a fake, a private endpoint) the config URL is a guess: start-up
    // does not knock on it uninvited; `guestgate doctor` does, when asked.
    let checked = subjects.into_iter().filter(|s| {
        let g = s.preset.config();
        g.base_url.is_none() || g.config_url.is_some()
    });
    for subject in checked {
        tokio::spawn(async move {
            let g = subject.preset.config();
            let url = g.config_json_url();
            let timeout = STARTUP_TIMEOUT.min(subject.preset.target().timeout);
            let (route, deployment) = (&subject.route, &g.deployment_id);
            match fetch_config(&subject.client, &url, timeout).await {
                ConfigFetch::Found(c) if !c.is_active() => warn!(
                    route = %route,
                    deployment = %deployment,
                    status = %printable(&c.status),
                    "Genesys deployment is not Active; guests cannot connect until it is (see `guestgate doctor`)"
                ),
                ConfigFetch::Found(_) => {}
                ConfigFetch::Status(s @ (403 | 404)) => warn!(
                    route = %route,
                    deployment = %deployment,
                    status = s,
                    "Genesys has no config for this deployment: wrong region or deploymentId? (see `guestgate doctor`)"
                ),
                other => info!(
                    route = %route,
                    host = %host_label(&url),
                    result = ?other_words(&other),
                    "could not check the Genesys deployment's status"
                ),
            }
        });
    }
}

fn other_words(fetch: &ConfigFetch) -> String {
    match fetch {
        ConfigFetch::Unreachable(why) => unreachable_words(why),
        ConfigFetch::Status(s) => format!("HTTP {s}"),
        ConfigFetch::BadBody => "not a deployment config".into(),
        ConfigFetch::Found(_) => "found".into(),
    }
}
