//! The `[routes.flow.oauth]` section: where and how to fetch a client-credentials token,
//! its defaults, and the checks serde cannot make.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::SecretSource;

/// How guestgate presents its client credentials to the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `Authorization: Basic base64(client_id:client_secret)`, as Genesys Cloud expects.
    #[default]
    Basic,
    /// `client_id` and `client_secret` as form fields in the request body.
    Form,
}

/// The `oauth` section of a route: where and how to fetch a client-credentials token.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The token endpoint, e.g. `https://login.mypurecloud.com/oauth/token`.
    pub token_url: url::Url,
    /// The OAuth client id.
    pub client_id: String,
    /// Where the client secret is read from (a file or an environment variable).
    pub client_secret: SecretSource,
    /// Sent as `scope` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Sent as `audience` when set (some providers, e.g. Auth0, require it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// How the client credentials are sent.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Refresh this long before expiry (at most half the token's lifetime).
    #[serde(default = "defaults::refresh_before", with = "humantime_serde")]
    pub refresh_before: Duration,
    /// Deadline for one request, from sending it to the end of the response body.
    #[serde(default = "defaults::request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Requests per fetch, counting the first.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// Backoff ceiling before the first retry; it doubles per retry.
    #[serde(default = "defaults::backoff_base", with = "humantime_serde")]
    pub backoff_base: Duration,
    /// No retry waits longer than this, including a server's `Retry-After`.
    #[serde(default = "defaults::backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Consecutive failed requests that open the circuit breaker.
    #[serde(default = "defaults::breaker_failures")]
    pub breaker_failures: u32,
    /// How long the open breaker refuses to contact the endpoint.
    #[serde(default = "defaults::breaker_cooldown", with = "humantime_serde")]
    pub breaker_cooldown: Duration,
}

/// Whether `url` is plain `http://` to somewhere other than a literal loopback address
/// (`127.0.0.0/8`, `[::1]`). Such a request carries client secrets, access tokens or guest
/// tokens across the network unencrypted, so flows must opt in to it
/// (`allow_insecure_http`). Loopback stays exempt: the bytes never leave the host (a local
/// TLS-terminating sidecar, the tests' fakes, the demo). `localhost` is not exempt, since
/// it is resolved by name.
pub fn is_insecure_http(url: &url::Url) -> bool {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    };
    url.scheme().eq_ignore_ascii_case("http") && !loopback
}

mod defaults {
    use std::time::Duration;

    pub fn refresh_before() -> Duration {
        Duration::from_secs(60)
    }
    pub fn request_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_attempts() -> u32 {
        4
    }
    pub fn backoff_base() -> Duration {
        Duration::from_millis(200)
    }
    pub fn backoff_max() -> Duration {
        Duration::from_secs(10)
    }
    pub fn breaker_failures() -> u32 {
        5
    }
    pub fn breaker_cooldown() -> Duration {
        Duration::from_secs(30)
    }
}

impl OAuthConfig {
    /// A config with every optional key at its default.
    pub fn new(token_url: url::Url, client_id: impl Into<String>, secret: SecretSource) -> Self {
        Self {
            token_url,
            client_id: client_id.into(),
            client_secret: secret,
            scope: None,
            audience: None,
            client_auth: ClientAuth::default(),
            refresh_before: defaults::refresh_before(),
            request_timeout: defaults::request_timeout(),
            max_attempts: defaults::max_attempts(),
            backoff_base: defaults::backoff_base(),
            backoff_max: defaults::backoff_max(),
            breaker_failures: defaults::breaker_failures(),
            breaker_cooldown: defaults::breaker_cooldown(),
        }
    }

    /// Checks what serde cannot. Every problem is reported, `; `-separated, each prefixed
    /// with its full key (`{key_prefix}.token_url: must be http or https`).
    pub fn validate(&self, key_prefix: &str) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, msg: &str| {
            problems.push(if key_prefix.is_empty() {
                format!("{key}: {msg}")
            } else {
                format!("{key_prefix}.{key}: {msg}")
            });
        };
        let url = &self.token_url;
        if !matches!(url.scheme(), "http" | "https") {
            bad("token_url", "must be http or https");
        } else if url.host_str().is_none_or(str::is_empty) {
            bad("token_url", "must name a host");
        }
        if !url.username().is_empty() || url.password().is_some() {
            bad(
                "token_url",
                "must not contain credentials; use client_id and client_secret",
            );
        }
        if self.client_id.trim().is_empty() {
            bad("client_id", "must not be empty");
        } else if self.client_id.chars().any(char::is_control) {
            bad("client_id", "must not contain control characters");
        } else if self.client_id.contains(':') && self.client_auth == ClientAuth::Basic {
            bad(
                "client_id",
                "must not contain ':' with client_auth = \"basic\"; use \"form\"",
            );
        }
        match (&self.client_secret.file, &self.client_secret.env) {
            (Some(path), None) if path.as_os_str().is_empty() => {
                bad("client_secret.file", "must not be empty");
            }
            (None, Some(var)) if var.is_empty() => bad("client_secret.env", "must not be empty"),
            (Some(_), None) | (None, Some(_)) => {}
            _ => bad("client_secret", "give exactly one of `file` or `env`"),
        }
        for (key, value) in [("scope", &self.scope), ("audience", &self.audience)] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                bad(key, "must not be empty when set");
            }
        }
        for (key, value) in [
            ("request_timeout", self.request_timeout),
            ("backoff_base", self.backoff_base),
            ("breaker_cooldown", self.breaker_cooldown),
        ] {
            if value.is_zero() {
                bad(key, "must be greater than zero");
            }
        }
        if self.backoff_base > self.backoff_max {
            bad("backoff_base", "must not exceed backoff_max");
        }
        if self.max_attempts == 0 {
            bad("max_attempts", "must be at least 1");
        }
        if self.breaker_failures == 0 {
            bad("breaker_failures", "must be at least 1");
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_keys() {
        let config: OAuthConfig = toml::from_str(
            r#"
            token_url = "https://login.mypurecloud.com/oauth/token"
            client_id = "abc"
            client_secret = { env = "GENESYS_CLIENT_SECRET" }
            refresh_before = "2m"
            client_auth = "form"
            "#,
        )
        .unwrap();
        assert_eq!(config.refresh_before, Duration::from_secs(120));
        assert_eq!(config.client_auth, ClientAuth::Form);
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        assert_eq!(config.max_attempts, 4);
        assert_eq!(config.backoff_base, Duration::from_millis(200));
        assert_eq!(config.backoff_max, Duration::from_secs(10));
        assert_eq!(config.breaker_failures, 5);
        assert_eq!(config.breaker_cooldown, Duration::from_secs(30));
        assert_eq!(config.validate("routes.chat.oauth"), Ok(()));

        let round_trip: OAuthConfig = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
        assert_eq!(round_trip, config);

        let err = toml::from_str::<OAuthConfig>(
            r#"
            token_url = "https://login.example/oauth/token"
            client_id = "abc"
            client_secret = { env = "X" }
            client_secret_value = "inline"
            "#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("client_secret_value"), "{err}");
    }

    #[test]
    fn validate_names_the_key() {
        let good = OAuthConfig::new(
            "https://login.example/oauth/token".parse().unwrap(),
            "abc",
            SecretSource {
                file: None,
                env: Some("X".into()),
            },
        );
        assert_eq!(good.validate("routes.chat.oauth"), Ok(()));

        let check = |edit: &dyn Fn(&mut OAuthConfig), want: &str| {
            let mut config = good.clone();
            edit(&mut config);
            let err = config.validate("routes.chat.oauth").unwrap_err();
            assert!(err.contains(want), "want {want:?} in {err:?}");
        };
        check(
            &|c| c.token_url = "ftp://login.example/token".parse().unwrap(),
            "routes.chat.oauth.token_url: must be http or https",
        );
        check(
            &|c| c.token_url = "https://id:pw@login.example/token".parse().unwrap(),
            "routes.chat.oauth.token_url: must not contain credentials",
        );
        check(
            &|c| c.client_id = " ".into(),
            "routes.chat.oauth.client_id: must not be empty",
        );
        check(
            &|c| c.client_id = "a:b".into(),
            "routes.chat.oauth.client_id: must not contain ':'",
        );
        check(
            &|c| c.client_secret.file = Some("/run/secret".into()),
            "routes.chat.oauth.client_secret: give exactly one of `file` or `env`",
        );
        check(
            &|c| c.scope = Some(String::new()),
            "routes.chat.oauth.scope: must not be empty when set",
        );
        check(
            &|c| c.request_timeout = Duration::ZERO,
            "routes.chat.oauth.request_timeout: must be greater than zero",
        );
        check(
            &|c| c.max_attempts = 0,
            "routes.chat.oauth.max_attempts: must be at least 1",
        );
        check(
            &|c| c.backoff_base = Duration::from_secs(60),
            "routes.chat.oauth.backoff_base: must not exceed backoff_max",
        );
        check(
            &|c| c.breaker_failures = 0,
            "routes.chat.oauth.breaker_failures: must be at least 1",
        );

        // Several problems are all reported.
        let mut config = good.clone();
        config.max_attempts = 0;
        config.breaker_failures = 0;
        let err = config.validate("oauth").unwrap_err();
        assert!(
            err.contains("oauth.max_attempts") && err.contains("oauth.breaker_failures"),
            "{err}"
        );
    }
}
