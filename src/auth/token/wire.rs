//! The token endpoint on the wire: the client-credentials request, and reading its reply
//! (status, `Retry-After`, the OAuth `error` code, the token and its `expires_in`).

use std::time::Duration;

use super::config::{ClientAuth, OAuthConfig};
use super::error::Failure;
use crate::secret::Secret;

/// The lifetime assumed when the endpoint's reply has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Longer lifetimes are treated as this, so a bogus value cannot pin a token for years.
const MAX_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Token responses are small; a bigger body is a misconfigured URL, not a token.
const MAX_BODY: usize = 64 * 1024;

/// One token request, bounded by `request_timeout` end to end: the token and its lifetime,
/// or what went wrong.
pub(super) async fn request(
    client: &reqwest::Client,
    cfg: &OAuthConfig,
    secret: &Secret,
) -> Result<(Secret, Duration), Failure> {
    let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
    if let Some(scope) = &cfg.scope {
        form.push(("scope", scope));
    }
    if let Some(audience) = &cfg.audience {
        form.push(("audience", audience));
    }
    let mut req = client
        .post(cfg.token_url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(cfg.request_timeout);
    match cfg.client_auth {
        ClientAuth::Basic => {
            req = req.basic_auth(&cfg.client_id, Some(secret.expose()));
        }
        ClientAuth::Form => {
            form.push(("client_id", &cfg.client_id));
            form.push(("client_secret", secret.expose()));
        }
    }
    let req = req.form(&form);

    let exchange = async {
        let mut resp = req.send().await.map_err(transport_failure)?;
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport_failure)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(Failure::BadResponse(format!(
                    "http {status} with a body over {} KiB",
                    MAX_BODY / 1024
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, retry_after, body))
    };
    let (status, retry_after, body) =
        match tokio::time::timeout(cfg.request_timeout, exchange).await {
            Ok(result) => result?,
            Err(_elapsed) => return Err(Failure::Timeout),
        };

    if status.is_success() {
        let (value, lifetime) = parse_token(&body).map_err(Failure::BadResponse)?;
        return Ok((Secret::new(value), lifetime));
    }
    let code = status.as_u16();
    if status.is_server_error() || code == 429 || code == 408 {
        return Err(Failure::Transient {
            reason: format!("http {status}"),
            retry_after: if matches!(code, 429 | 503) {
                retry_after
            } else {
                None
            },
        });
    }
    Err(Failure::Rejected {
        status: code,
        error: oauth_error_code(&body, secret),
    })
}

/// A reqwest error as a failure, its cause chain spelled out ("error sending request: client
/// error (Connect): tcp connect error: Connection refused"). reqwest errors hold the URL and
/// causes, never request headers or bodies.
fn transport_failure(e: reqwest::Error) -> Failure {
    if e.is_timeout() {
        return Failure::Timeout;
    }
    let e = e.without_url();
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !reason.ends_with(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        source = cause.source();
    }
    Failure::Transient {
        reason,
        retry_after: None,
    }
}

/// `Retry-After` in delta-seconds. The HTTP-date form is ignored (the backoff applies).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The OAuth `error` code from an error body, if it looks like one (`invalid_client`: lower
/// case and underscores, as every registered code is) and does not contain the secret.
/// Nothing else from the body is kept: descriptions may echo what was sent.
fn oauth_error_code(body: &[u8], secret: &Secret) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = value.get("error")?.as_str()?;
    let plausible = !code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        && !code.contains(secret.expose());
    plausible.then(|| code.to_owned())
}

/// The token and its lifetime from a 2xx body. Error texts describe the problem without
/// quoting the body, which holds the token.
fn parse_token(body: &[u8]) -> Result<(String, Duration), String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the response is not valid json ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        )
        .to_lowercase()
    })?;
    let Some(obj) = value.as_object() else {
        return Err("the response is not a json object".to_owned());
    };
    let token = match obj.get("access_token") {
        Some(serde_json::Value::String(t)) if !t.is_empty() => t,
        _ => return Err("access_token is missing, empty or not a string".to_owned()),
    };
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("access_token has characters that cannot go in an http header".to_owned());
    }
    match obj.get("token_type") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        // Name a short, plain type ("mac", "dpop"); never anything that might be a secret.
        Some(serde_json::Value::String(t))
            if t.len() <= 16
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !t.contains(token.as_str()) =>
        {
            return Err(format!("token_type is {t:?}, not bearer"));
        }
        Some(_) => return Err("token_type is not bearer".to_owned()),
    }
    let seconds = match obj.get("expires_in") {
        None | Some(serde_json::Value::Null) => return Ok((token.clone(), DEFAULT_LIFETIME)),
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match seconds {
        Some(s) if s.is_finite() && s > 0.0 => {
            let lifetime = Duration::try_from_secs_f64(s).unwrap_or(MAX_LIFETIME);
            Ok((token.clone(), lifetime.min(MAX_LIFETIME)))
        }
        _ => Err("expires_in is not a positive number of seconds".to_owned()),
    }
}
