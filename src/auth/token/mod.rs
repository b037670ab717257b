//! An OAuth2 client-credentials token source, shared by every connection of a route.
//!
//! A busy route may open hundreds of upstream connections a second, and each needs a bearer
//! token; the token endpoint must see a handful of requests an hour, not one per connection.
//! So the source caches the token and refreshes it ahead of expiry, runs at most one fetch at
//! a time however many callers wait (they all share its result), hands out the still-valid
//! token while a refresh is under way instead of making callers wait, retries transient
//! failures with jittered backoff, and stops calling an endpoint that keeps failing (a circuit
//! breaker). Rejected credentials are a configuration error: not retried, and tried again only
//! after the breaker's cool-down.
//!
//! The client secret and the tokens are held as [`Secret`]s and never appear in errors or
//! logs; error texts built from the endpoint's reply never quote its body.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::backoff::{Backoff, Breaker, BreakerState};
use crate::secret::{Secret, SecretError, SecretSource};

/// The lifetime assumed when the endpoint's reply has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Longer lifetimes are treated as this, so a bogus value cannot pin a token for years.
const MAX_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Token responses are small; a bigger body is a misconfigured URL, not a token.
const MAX_BODY: usize = 64 * 1024;

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

/// An access token and when it stops being valid. `Debug` redacts the value.
#[derive(Clone, Debug)]
pub struct AccessToken {
    value: Secret,
    expires_at: Instant,
}

impl AccessToken {
    /// The token, still wrapped.
    pub fn secret(&self) -> &Secret {
        &self.value
    }

    /// The token itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        self.value.expose()
    }

    /// `Bearer <token>`, ready for an `Authorization` header.
    pub fn bearer(&self) -> Secret {
        Secret::new(format!("Bearer {}", self.value.expose()))
    }

    /// When the endpoint said the token expires (measured from when the request was sent).
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }
}

/// How one token request ended (or that a call was refused without one), for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenFetchOutcome {
    /// A usable token came back.
    Success,
    /// The endpoint refused the credentials or the request (a configuration error).
    Rejected,
    /// Connect error, 5xx, 429 or 408.
    Transient,
    /// No complete response within `request_timeout`.
    Timeout,
    /// A 2xx whose body is not a usable token response.
    BadResponse,
    /// No request was sent: the circuit breaker is open.
    BreakerOpen,
}

impl TokenFetchOutcome {
    /// Every outcome, for registering metric label values up front.
    pub const ALL: [Self; 6] = [
        Self::Success,
        Self::Rejected,
        Self::Transient,
        Self::Timeout,
        Self::BadResponse,
        Self::BreakerOpen,
    ];

    /// A metric label value.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Rejected => "rejected",
            Self::Transient => "transient",
            Self::Timeout => "timeout",
            Self::BadResponse => "bad_response",
            Self::BreakerOpen => "breaker_open",
        }
    }
}

/// Called once per token request sent, with its outcome, and once per [`TokenSource::token`]
/// call refused by the open breaker. Runs inline: keep it to a counter increment.
pub type OutcomeHook = Arc<dyn Fn(TokenFetchOutcome) + Send + Sync>;

/// Why no token could be had. Never contains the client secret, a token, or the endpoint's
/// response body (only its status and OAuth `error` code).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The endpoint refused the request (401/403, an OAuth client error, any other 4xx, or a
    /// redirect). Retrying cannot help; the configuration must change.
    #[error(
        "fetching oauth token from {url}: rejected with http {status}{}; check client_id, client_secret and client_auth",
        error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
    )]
    Rejected {
        /// The token endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The OAuth `error` code from the body, if it sent a well-formed one.
        error: Option<String>,
    },
    /// Every attempt failed with a transient error (connect, 5xx, 429).
    #[error("fetching oauth token from {url}: gave up after {attempts} attempt(s): {last}")]
    Transient {
        /// The token endpoint.
        url: String,
        /// Requests made.
        attempts: u32,
        /// What the last attempt ran into.
        last: String,
    },
    /// The last attempt got no complete response in time.
    #[error(
        "fetching oauth token from {url}: gave up after {attempts} attempt(s): no complete response within {timeout:?}"
    )]
    Timeout {
        /// The token endpoint.
        url: String,
        /// Requests made.
        attempts: u32,
        /// The per-request deadline.
        timeout: Duration,
    },
    /// The last attempt got a 2xx that is not a usable token response.
    #[error("fetching oauth token from {url}: gave up after {attempts} attempt(s): {detail}")]
    BadResponse {
        /// The token endpoint.
        url: String,
        /// Requests made.
        attempts: u32,
        /// What is wrong with the response (never its content).
        detail: String,
    },
    /// The circuit breaker is open: no request was sent.
    #[error(
        "fetching oauth token from {url}: not contacting the endpoint for another {:.1}s after {failures} consecutive failures; last: {last}",
        retry_in.as_secs_f64()
    )]
    BreakerOpen {
        /// The token endpoint.
        url: String,
        /// Until the breaker lets a trial request through.
        retry_in: Duration,
        /// Consecutive failed requests so far.
        failures: u32,
        /// What the last failed request ran into.
        last: String,
    },
}

impl TokenError {
    /// The metric outcome this error corresponds to.
    pub fn kind(&self) -> TokenFetchOutcome {
        match self {
            Self::Rejected { .. } => TokenFetchOutcome::Rejected,
            Self::Transient { .. } => TokenFetchOutcome::Transient,
            Self::Timeout { .. } => TokenFetchOutcome::Timeout,
            Self::BadResponse { .. } => TokenFetchOutcome::BadResponse,
            Self::BreakerOpen { .. } => TokenFetchOutcome::BreakerOpen,
        }
    }
}

/// One failed request, before it becomes a [`TokenError`].
#[derive(Debug)]
enum Failure {
    Rejected {
        status: u16,
        error: Option<String>,
    },
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    Timeout,
    BadResponse(String),
}

impl Failure {
    fn kind(&self) -> TokenFetchOutcome {
        match self {
            Self::Rejected { .. } => TokenFetchOutcome::Rejected,
            Self::Transient { .. } => TokenFetchOutcome::Transient,
            Self::Timeout => TokenFetchOutcome::Timeout,
            Self::BadResponse(_) => TokenFetchOutcome::BadResponse,
        }
    }

    /// A short description for logs and for the breaker's "last failure".
    fn describe(&self, timeout: Duration) -> String {
        match self {
            Self::Rejected { status, error } => match error {
                Some(e) => format!("rejected with http {status} ({e})"),
                None => format!("rejected with http {status}"),
            },
            Self::Transient { reason, .. } => reason.clone(),
            Self::Timeout => format!("no complete response within {timeout:?}"),
            Self::BadResponse(detail) => detail.clone(),
        }
    }

    fn into_error(self, url: &str, attempts: u32, timeout: Duration) -> TokenError {
        let url = url.to_owned();
        match self {
            Self::Rejected { status, error } => TokenError::Rejected { url, status, error },
            Self::Transient { reason, .. } => TokenError::Transient {
                url,
                attempts,
                last: reason,
            },
            Self::Timeout => TokenError::Timeout {
                url,
                attempts,
                timeout,
            },
            Self::BadResponse(detail) => TokenError::BadResponse {
                url,
                attempts,
                detail,
            },
        }
    }
}

/// Hands out OAuth access tokens for one route. Cloning is cheap and shares the cache.
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<Inner>,
}

type SharedFetch = Shared<BoxFuture<'static, Result<AccessToken, TokenError>>>;

struct Inner {
    config: OAuthConfig,
    /// `token_url` as text, for error messages.
    url: String,
    secret: Secret,
    client: reqwest::Client,
    backoff: Backoff,
    /// Read on every call; written once per fetch.
    cache: RwLock<Option<Arc<Cached>>>,
    /// The fetch under way, if any; callers that need a token join it.
    inflight: Mutex<Option<SharedFetch>>,
    breaker: Mutex<BreakerBook>,
    hook: RwLock<Option<OutcomeHook>>,
    requests: AtomicU64,
    clock: Clock,
}

struct Cached {
    token: AccessToken,
    refresh_at: Instant,
}

struct BreakerBook {
    breaker: Breaker,
    last_failure: String,
}

/// `tokio::time::Instant::now`, plus (in unit tests) a skew the test moves forward, so
/// expiry can be tested while requests still use real sockets and real timeouts.
#[derive(Default)]
struct Clock {
    #[cfg(test)]
    skew: Mutex<Duration>,
}

impl Clock {
    fn now(&self) -> Instant {
        #[cfg(test)]
        {
            Instant::now() + *lock(&self.skew)
        }
        #[cfg(not(test))]
        {
            Instant::now()
        }
    }

    #[cfg(test)]
    fn advance(&self, by: Duration) {
        *lock(&self.skew) += by;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

enum Begin {
    Cached(AccessToken),
    Fetch(SharedFetch),
}

impl TokenSource {
    /// A source with an empty cache; nothing is fetched until the first [`token`] call.
    ///
    /// [`token`]: TokenSource::token
    pub fn new(config: OAuthConfig, secret: Secret, client: reqwest::Client) -> Self {
        let backoff = Backoff::new(config.backoff_base, config.backoff_max);
        let breaker = Breaker::new(config.breaker_failures, config.breaker_cooldown);
        Self {
            inner: Arc::new(Inner {
                url: config.token_url.to_string(),
                config,
                secret,
                client,
                backoff,
                cache: RwLock::new(None),
                inflight: Mutex::new(None),
                breaker: Mutex::new(BreakerBook {
                    breaker,
                    last_failure: String::new(),
                }),
                hook: RwLock::new(None),
                requests: AtomicU64::new(0),
                clock: Clock::default(),
            }),
        }
    }

    /// Like [`TokenSource::new`], reading the client secret from where the config says.
    pub fn from_config(config: OAuthConfig, client: reqwest::Client) -> Result<Self, SecretError> {
        let secret = config.client_secret.load()?;
        Ok(Self::new(config, secret, client))
    }

    /// Reports every request's outcome to `hook` (for this source and all its clones).
    pub fn with_outcome_hook(self, hook: OutcomeHook) -> Self {
        *self
            .inner
            .hook
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(hook);
        self
    }

    /// The configuration this source was built from.
    pub fn config(&self) -> &OAuthConfig {
        &self.inner.config
    }

    /// A token valid for at least a moment longer.
    ///
    /// Served from the cache while it is not yet due for refresh. Once due but still valid,
    /// the cached token is returned at once and one background refresh is started. With no
    /// valid token, the caller joins the single fetch in flight (starting it if needed);
    /// everyone waiting gets that fetch's result, success or error.
    pub async fn token(&self) -> Result<AccessToken, TokenError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        if let Some(cached) = inner.cached() {
            if now < cached.refresh_at {
                return Ok(cached.token.clone());
            }
            if now < cached.token.expires_at {
                // The breaker may refuse; then the old token serves until it expires.
                let _ = inner.begin(now);
                return Ok(cached.token.clone());
            }
        }
        match inner.begin(now) {
            Ok(Begin::Cached(token)) => Ok(token),
            Ok(Begin::Fetch(fetch)) => fetch.await,
            Err(e) => {
                inner.emit(e.kind());
                Err(e)
            }
        }
    }

    /// Seconds until the cached token expires (0 once expired); `None` before the first
    /// successful fetch. For a gauge.
    pub fn seconds_until_expiry(&self) -> Option<f64> {
        let now = self.inner.clock.now();
        self.inner.cached().map(|c| {
            c.token
                .expires_at
                .saturating_duration_since(now)
                .as_secs_f64()
        })
    }

    /// For readiness: true while a valid token is cached, or while failures have not
    /// reached the breaker threshold (a fresh source that has not fetched yet is healthy).
    pub fn is_healthy(&self) -> bool {
        let now = self.inner.clock.now();
        if self
            .inner
            .cached()
            .is_some_and(|c| now < c.token.expires_at)
        {
            return true;
        }
        let book = lock(&self.inner.breaker);
        book.breaker.consecutive_failures() < book.breaker.threshold()
    }

    /// Token requests sent so far (every attempt counts).
    pub fn fetch_count(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// The circuit breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        lock(&self.inner.breaker)
            .breaker
            .state(self.inner.clock.now())
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("token_url", &self.inner.url)
            .field("client_id", &self.inner.config.client_id)
            .field("fetches", &self.fetch_count())
            .finish_non_exhaustive()
    }
}

/// Clears the in-flight slot when the fetch task ends, even by panic or cancellation, so a
/// lost fetch never leaves callers joining a future that has already failed.
struct ClearInflight(Arc<Inner>);

impl Drop for ClearInflight {
    fn drop(&mut self) {
        lock(&self.0.inflight).take();
    }
}

impl Inner {
    fn cached(&self) -> Option<Arc<Cached>> {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn emit(&self, outcome: TokenFetchOutcome) {
        let hook = self
            .hook
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(hook) = hook {
            hook(outcome);
        }
    }

    /// Joins the fetch in flight, or starts one if the breaker allows. The fetch runs in its
    /// own task, so it completes (and fills the cache) even if every waiter gives up.
    fn begin(self: &Arc<Self>, now: Instant) -> Result<Begin, TokenError> {
        let mut slot = lock(&self.inflight);
        if let Some(fetch) = slot.as_ref() {
            return Ok(Begin::Fetch(fetch.clone()));
        }
        // A fetch may have finished between the caller's cache check and taking the slot.
        if let Some(cached) = self.cached().filter(|c| now < c.refresh_at) {
            return Ok(Begin::Cached(cached.token.clone()));
        }
        {
            let mut book = lock(&self.breaker);
            if let Err(retry_in) = book.breaker.admit(now) {
                return Err(TokenError::BreakerOpen {
                    url: self.url.clone(),
                    retry_in,
                    failures: book.breaker.consecutive_failures(),
                    last: book.last_failure.clone(),
                });
            }
        }
        let this = Arc::clone(self);
        let task = tokio::spawn(async move {
            let _clear = ClearInflight(Arc::clone(&this));
            this.fetch().await
        });
        let url = self.url.clone();
        let fetch = async move {
            task.await.unwrap_or_else(|e| {
                Err(TokenError::Transient {
                    url,
                    attempts: 0,
                    last: if e.is_panic() {
                        "the fetch task panicked".to_owned()
                    } else {
                        "the fetch task was cancelled".to_owned()
                    },
                })
            })
        }
        .boxed()
        .shared();
        *slot = Some(fetch.clone());
        Ok(Begin::Fetch(fetch))
    }

    /// Up to `max_attempts` requests with backoff between them. The breaker admitted this
    /// fetch in [`Inner::begin`]; a failure that opens it (the threshold reached, a failed
    /// half-open trial, a rejection) ends the fetch, so a half-open breaker lets exactly one
    /// request through.
    async fn fetch(&self) -> Result<AccessToken, TokenError> {
        let cfg = &self.config;
        let max_attempts = cfg.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent_at = self.clock.now();
            let failure = match self.request(sent_at).await {
                Ok(cached) => {
                    self.emit(TokenFetchOutcome::Success);
                    lock(&self.breaker).breaker.record_success();
                    let token = cached.token.clone();
                    tracing::info!(
                        token_url = %self.url,
                        lifetime_s = (token.expires_at - sent_at).as_secs(),
                        attempt,
                        "fetched oauth token"
                    );
                    *self.cache.write().unwrap_or_else(PoisonError::into_inner) =
                        Some(Arc::new(cached));
                    return Ok(token);
                }
                Err(failure) => failure,
            };
            self.emit(failure.kind());
            let reason = failure.describe(cfg.request_timeout);
            let now = self.clock.now();
            let give_up = {
                let mut book = lock(&self.breaker);
                book.last_failure.clone_from(&reason);
                if matches!(failure, Failure::Rejected { .. }) {
                    book.breaker.trip(now);
                    true
                } else {
                    book.breaker.record_failure(now);
                    attempt >= max_attempts || book.breaker.state(now) != BreakerState::Closed
                }
            };
            if give_up {
                if matches!(failure, Failure::Rejected { .. }) {
                    tracing::error!(token_url = %self.url, %reason, "oauth token request rejected; not retrying");
                } else {
                    tracing::warn!(token_url = %self.url, %reason, attempt, "oauth token fetch failed");
                }
                return Err(failure.into_error(&self.url, attempt, cfg.request_timeout));
            }
            let delay = match &failure {
                Failure::Transient {
                    retry_after: Some(after),
                    ..
                } => (*after).min(cfg.backoff_max),
                _ => self.backoff.delay(attempt - 1),
            };
            tracing::debug!(token_url = %self.url, %reason, attempt, ?delay, "oauth token request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// One token request, bounded by `request_timeout` end to end.
    async fn request(&self, sent_at: Instant) -> Result<Cached, Failure> {
        let cfg = &self.config;
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &cfg.scope {
            form.push(("scope", scope));
        }
        if let Some(audience) = &cfg.audience {
            form.push(("audience", audience));
        }
        let mut req = self
            .client
            .post(cfg.token_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(cfg.request_timeout);
        match cfg.client_auth {
            ClientAuth::Basic => {
                req = req.basic_auth(&cfg.client_id, Some(self.secret.expose()));
            }
            ClientAuth::Form => {
                form.push(("client_id", &cfg.client_id));
                form.push(("client_secret", self.secret.expose()));
            }
        }
        let req = req.form(&form);
        self.requests.fetch_add(1, Ordering::Relaxed);

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
            let lead = cfg.refresh_before.min(lifetime / 2);
            let expires_at = sent_at + lifetime;
            return Ok(Cached {
                token: AccessToken {
                    value: Secret::new(value),
                    expires_at,
                },
                refresh_at: expires_at - lead,
            });
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
            error: oauth_error_code(&body, &self.secret),
        })
    }
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

#[cfg(test)]
mod tests;
