//! Per-connection HTTP steps: requests built from templates, run in order before the
//! upstream connect, each extracting named values from its JSON reply (by JSON pointer) that
//! later templates use as `{{steps.<step>.<value>}}`.
//!
//! Errors are secret-free: they name the step, the method, the host and the path *as written
//! in the config* (placeholders, not values; never the query string), the HTTP status or the
//! JSON pointer, and never quote a response body or a rendered value.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::template::{JsonTemplate, Known, RenderError, Template, Values, valid_name};
use crate::secret::Secret;

/// A step's default timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest timeout a step may set.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(120);
/// Replies are read up to this size; a bigger one fails the step.
pub const MAX_BODY: usize = 64 * 1024;
/// Headers a step may not set: reqwest computes them, or they would let a step redirect or
/// smuggle the request.
const FORBIDDEN_HEADERS: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

/// The HTTP method of a step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum StepMethod {
    /// `GET` (no body allowed).
    #[serde(rename = "GET", alias = "get")]
    Get,
    /// `POST`.
    #[default]
    #[serde(rename = "POST", alias = "post")]
    Post,
    /// `PUT`.
    #[serde(rename = "PUT", alias = "put")]
    Put,
}

impl StepMethod {
    fn to_reqwest(self) -> reqwest::Method {
        match self {
            StepMethod::Get => reqwest::Method::GET,
            StepMethod::Post => reqwest::Method::POST,
            StepMethod::Put => reqwest::Method::PUT,
        }
    }
}

/// One entry of a route's `steps` list.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Names the step in `{{steps.<name>.<value>}}`, errors and logs.
    pub name: String,
    /// The HTTP method.
    #[serde(default)]
    pub method: StepMethod,
    /// URL template; scheme and host must be literal (see [`Template::fixed_origin`]).
    pub url: String,
    /// Header templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A JSON body whose string leaves are templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// A form body (`application/x-www-form-urlencoded`) whose values are templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<BTreeMap<String, String>>,
    /// Deadline for the whole exchange, from sending to the end of the reply body.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Value name -> JSON pointer into the reply (e.g. `guest_token = "/token"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extract: BTreeMap<String, String>,
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

impl StepConfig {
    /// A `POST` step with every optional key at its default.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            method: StepMethod::default(),
            url: url.into(),
            headers: BTreeMap::new(),
            json: None,
            form: None,
            timeout: DEFAULT_TIMEOUT,
            extract: BTreeMap::new(),
        }
    }

    /// Checks the step against the names available to it (`known`: those of earlier steps,
    /// the query allowlist, oauth, session token). Problems are `; `-separated, each prefixed
    /// with its key (`routes[0].steps[1].url: ...`).
    pub fn validate(&self, key_prefix: &str, known: &Known) -> Result<(), String> {
        self.prepare(key_prefix, known).map(drop)
    }

    /// Validates and pre-parses the step for [`run_steps`].
    pub fn prepare(&self, key_prefix: &str, known: &Known) -> Result<PreparedStep, String> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, msg: &dyn fmt::Display| {
            problems.push(format!("{key_prefix}.{key}: {msg}"));
        };
        if !valid_name(&self.name) {
            bad("name", &"must be 1 to 64 characters from A-Z a-z 0-9 _ -");
        }
        let url = Template::parse_checked(&self.url, known)
            .map_err(|e| bad("url", &e))
            .ok();
        let target = url
            .as_ref()
            .and_then(|url| match url.fixed_origin(&["http", "https"]) {
                Ok(origin) => Some(target(self.method, &origin, url.source())),
                Err(e) => {
                    bad("url", &e);
                    None
                }
            });
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            let key = format!("headers.{name}");
            let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
                bad(&key, &"is not a valid header name");
                continue;
            };
            if FORBIDDEN_HEADERS.contains(&header.as_str()) {
                bad(&key, &"cannot be set by a step");
            } else if value.chars().any(char::is_control) {
                bad(&key, &"must not contain control characters");
            } else {
                match Template::parse_checked(value, known) {
                    Ok(t) => headers.push((header, t)),
                    Err(e) => bad(&key, &e),
                }
            }
        }
        let body = match (&self.json, &self.form) {
            (Some(_), Some(_)) => {
                bad("form", &"give at most one of `json` or `form`");
                Body::Empty
            }
            (Some(_), None) | (None, Some(_)) if self.method == StepMethod::Get => {
                bad("method", &"a GET step cannot have a body");
                Body::Empty
            }
            (Some(json), None) => {
                match JsonTemplate::parse(json).and_then(|t| t.check(known).map(|()| t)) {
                    Ok(t) => Body::Json(t),
                    Err(e) => {
                        bad("json", &e);
                        Body::Empty
                    }
                }
            }
            (None, Some(form)) => {
                let mut fields = Vec::new();
                for (name, value) in form {
                    match Template::parse_checked(value, known) {
                        Ok(t) => fields.push((name.clone(), t)),
                        Err(e) => bad(&format!("form.{name}"), &e),
                    }
                }
                Body::Form(fields)
            }
            (None, None) => Body::Empty,
        };
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            bad("timeout", &"must be greater than zero and at most 2m");
        }
        for (value, pointer) in &self.extract {
            let key = format!("extract.{value}");
            if !valid_name(value) {
                bad(
                    &key,
                    &"the value name must be 1 to 64 characters from A-Z a-z 0-9 _ -",
                );
            }
            if !pointer.starts_with('/') {
                bad(&key, &"must be a JSON pointer starting with `/`");
            }
        }
        match (url, target) {
            (Some(url), Some(target)) if problems.is_empty() => Ok(PreparedStep {
                name: self.name.clone(),
                method: self.method.to_reqwest(),
                url,
                target,
                headers,
                body,
                timeout: self.timeout,
                extract: self.extract.clone().into_iter().collect(),
            }),
            _ => Err(problems.join("; ")),
        }
    }
}

/// `POST host[:port]/path` with the path as written (placeholders, no values, no query).
fn target(method: StepMethod, origin: &url::Url, source: &str) -> String {
    let after_scheme = source.split_once("://").map_or(source, |(_, rest)| rest);
    let path = after_scheme
        .find('/')
        .map_or("/", |i| &after_scheme[i..])
        .split(['?', '#'])
        .next()
        .unwrap_or("/");
    let host = origin.host_str().unwrap_or_default();
    let port = origin.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{} {host}{port}{path}", method.to_reqwest())
}

/// Validates and prepares a route's steps in order (`key_prefix` like `routes[0].steps`):
/// each step sees the values of the steps before it, and no name may repeat. On success
/// `known` has every step's values added, ready for the connect and hello templates.
pub fn prepare_steps(
    steps: &[StepConfig],
    key_prefix: &str,
    known: &mut Known,
) -> Result<Vec<PreparedStep>, String> {
    let mut problems = Vec::new();
    let mut prepared = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let key = format!("{key_prefix}[{i}]");
        if steps[..i].iter().any(|s| s.name == step.name) {
            problems.push(format!(
                "{key}.name: {:?} is used by an earlier step",
                step.name
            ));
        }
        match step.prepare(&key, known) {
            Ok(p) => prepared.push(p),
            Err(e) => problems.push(e),
        }
        known.add_step(&step.name, step.extract.keys().cloned());
    }
    if problems.is_empty() {
        Ok(prepared)
    } else {
        Err(problems.join("; "))
    }
}

#[derive(Debug, Clone)]
enum Body {
    Empty,
    Json(JsonTemplate),
    Form(Vec<(String, Template)>),
}

/// A validated step with its templates parsed, shared by every connection of a route.
#[derive(Debug, Clone)]
pub struct PreparedStep {
    name: String,
    method: reqwest::Method,
    url: Template,
    target: String,
    headers: Vec<(HeaderName, Template)>,
    body: Body,
    timeout: Duration,
    extract: Vec<(String, String)>,
}

impl PreparedStep {
    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The literal `scheme://host[:port]/` the step's requests go to.
    pub fn origin(&self) -> Option<url::Url> {
        self.url.fixed_origin(&["http", "https"]).ok()
    }

    /// `METHOD host[:port]/path` as written in the config, safe to log.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs this one step, adding its extracted values to `values`.
    pub async fn run(
        &self,
        client: &reqwest::Client,
        values: &mut Values,
    ) -> Result<(), StepError> {
        let step = || self.name.clone();
        let render = |source| StepError::Render {
            step: step(),
            source,
        };
        let url = self.url.render_url(values).map_err(render)?;
        let url = url::Url::parse(&url).map_err(|_| StepError::BadUrl { step: step() })?;
        let mut req = client
            .request(self.method.clone(), url)
            .timeout(self.timeout);
        req = req.header(reqwest::header::ACCEPT, "application/json");
        for (name, template) in &self.headers {
            let value = template.render_header(values).map_err(render)?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| StepError::Render {
                step: step(),
                source: RenderError::Unsafe {
                    placeholder: format!("header {name}"),
                },
            })?;
            value.set_sensitive(true);
            req = req.header(name, value);
        }
        req = match &self.body {
            Body::Empty => req,
            Body::Json(t) => req.json(&t.render(values).map_err(render)?),
            Body::Form(fields) => {
                let mut form = Vec::with_capacity(fields.len());
                for (name, t) in fields {
                    form.push((name.as_str(), t.render(values).map_err(render)?));
                }
                req.form(&form)
            }
        };
        let exchange = async {
            let mut resp = req.send().await?;
            let status = resp.status();
            if !status.is_success() {
                return Ok(Err(status.as_u16()));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                if body.len() + chunk.len() > MAX_BODY {
                    return Ok(Ok(None));
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>(Ok(Some(body)))
        };
        let transport = |kind, detail| StepError::Transport {
            step: step(),
            target: self.target.clone(),
            kind,
            detail,
        };
        let outcome = match tokio::time::timeout(self.timeout, exchange).await {
            Err(_elapsed) => {
                return Err(transport(
                    TransportKind::Timeout,
                    timeout_text(self.timeout),
                ));
            }
            Ok(Err(e)) => {
                let (kind, detail) = describe(e, self.timeout);
                return Err(transport(kind, detail));
            }
            Ok(Ok(outcome)) => outcome,
        };
        let body = match outcome {
            Err(status) => {
                return Err(StepError::Status {
                    step: step(),
                    target: self.target.clone(),
                    status,
                });
            }
            Ok(None) => return Err(self.bad_response("the reply body is over 64 KiB")),
            Ok(Some(body)) => body,
        };
        if self.extract.is_empty() {
            return Ok(());
        }
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|_| self.bad_response("the reply is not valid json"))?;
        let mut found = Vec::with_capacity(self.extract.len());
        for (value, pointer) in &self.extract {
            let text = match doc.pointer(pointer) {
                None | Some(Value::Null) => {
                    let pointer = pointer.clone();
                    return Err(StepError::Missing {
                        step: step(),
                        pointer,
                    });
                }
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(_) => {
                    let pointer = pointer.clone();
                    return Err(StepError::NotScalar {
                        step: step(),
                        pointer,
                    });
                }
            };
            found.push((value, text));
        }
        for (value, text) in found {
            values.set_step_value(&self.name, value, Secret::new(text));
        }
        tracing::debug!(step = %self.name, target = %self.target, "auth step done");
        Ok(())
    }

    fn bad_response(&self, detail: &'static str) -> StepError {
        StepError::BadResponse {
            step: self.name.clone(),
            target: self.target.clone(),
            detail,
        }
    }
}

fn timeout_text(timeout: Duration) -> String {
    format!("no complete reply within {timeout:?}")
}

/// A reqwest error's kind and its cause chain, without the URL (whose query may hold values).
fn describe(e: reqwest::Error, timeout: Duration) -> (TransportKind, String) {
    if e.is_timeout() {
        return (TransportKind::Timeout, timeout_text(timeout));
    }
    let kind = if e.is_connect() {
        TransportKind::Connect
    } else {
        TransportKind::Other
    };
    let e = e.without_url();
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !detail.ends_with(&text) {
            detail.push_str(": ");
            detail.push_str(&text);
        }
        source = cause.source();
    }
    (kind, detail)
}

/// Runs `steps` in order; each step's extracted values are visible to the templates of the
/// steps after it (and of the connect and hello phases) as `{{steps.<step>.<value>}}`.
pub async fn run_steps(
    client: &reqwest::Client,
    steps: &[PreparedStep],
    values: &mut Values,
) -> Result<(), StepError> {
    for step in steps {
        step.run(client, values).await?;
    }
    Ok(())
}

/// What failed in the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// No complete reply within the step's timeout.
    Timeout,
    /// The connection (TCP or TLS) could not be made.
    Connect,
    /// Anything else: the connection broke, the reply was not HTTP...
    Other,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Timeout => "timed out",
            TransportKind::Connect => "connect failed",
            TransportKind::Other => "request failed",
        })
    }
}

/// What the browser should be told when a step fails, for picking its close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseHint {
    /// The upstream refused guestgate's credentials (401 or 403): a configuration problem.
    Auth,
    /// Anything else: the upstream is unavailable or misbehaving; retrying later may work.
    Unavailable,
}

/// Why a step failed. Never holds a rendered value, a secret, a URL query or a reply body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// A template could not be rendered (a value is missing or unusable here).
    #[error("step {step}: building the request: {source}")]
    Render {
        /// The step.
        step: String,
        /// Which placeholder.
        source: RenderError,
    },
    /// The rendered URL does not parse.
    #[error("step {step}: building the request: the rendered url is not valid")]
    BadUrl {
        /// The step.
        step: String,
    },
    /// No reply: timeout, connect error, broken connection.
    #[error("step {step}: {target}: {kind}: {detail}")]
    Transport {
        /// The step.
        step: String,
        /// `METHOD host/path` as configured.
        target: String,
        /// What failed.
        kind: TransportKind,
        /// The transport's own description (no URL).
        detail: String,
    },
    /// A non-2xx reply.
    #[error("step {step}: {target}: http {status}")]
    Status {
        /// The step.
        step: String,
        /// `METHOD host/path` as configured.
        target: String,
        /// The HTTP status.
        status: u16,
    },
    /// A 2xx reply that is too big or not JSON.
    #[error("step {step}: {target}: {detail}")]
    BadResponse {
        /// The step.
        step: String,
        /// `METHOD host/path` as configured.
        target: String,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// The reply has no value (or `null`) at a configured pointer.
    #[error("step {step}: the reply has no value at {pointer}")]
    Missing {
        /// The step.
        step: String,
        /// The JSON pointer.
        pointer: String,
    },
    /// The value at a configured pointer is not a string or a number.
    #[error("step {step}: the value at {pointer} is not a string or a number")]
    NotScalar {
        /// The step.
        step: String,
        /// The JSON pointer.
        pointer: String,
    },
}

impl StepError {
    /// Every [`StepError::kind_label`] value, for registering metric labels up front.
    pub const KIND_LABELS: [&'static str; 7] = [
        "render",
        "timeout",
        "transport",
        "status",
        "bad_response",
        "missing",
        "bad_value",
    ];

    /// A metric label value from a small closed set ([`StepError::KIND_LABELS`]).
    pub fn kind_label(&self) -> &'static str {
        match self {
            StepError::Render { .. } | StepError::BadUrl { .. } => "render",
            StepError::Transport {
                kind: TransportKind::Timeout,
                ..
            } => "timeout",
            StepError::Transport { .. } => "transport",
            StepError::Status { .. } => "status",
            StepError::BadResponse { .. } => "bad_response",
            StepError::Missing { .. } => "missing",
            StepError::NotScalar { .. } => "bad_value",
        }
    }

    /// [`CloseHint::Auth`] for a 401 or 403 reply, [`CloseHint::Unavailable`] otherwise.
    pub fn close_hint(&self) -> CloseHint {
        match self {
            StepError::Status {
                status: 401 | 403, ..
            } => CloseHint::Auth,
            _ => CloseHint::Unavailable,
        }
    }

    /// The failed step's name.
    pub fn step(&self) -> &str {
        match self {
            StepError::Render { step, .. }
            | StepError::BadUrl { step }
            | StepError::Transport { step, .. }
            | StepError::Status { step, .. }
            | StepError::BadResponse { step, .. }
            | StepError::Missing { step, .. }
            | StepError::NotScalar { step, .. } => step,
        }
    }
}

#[cfg(test)]
#[path = "steps_tests.rs"]
mod tests;
