//! The shared token source: the cached token, refresh ahead of expiry, one fetch in flight,
//! retries with backoff behind the circuit breaker, and the outcome hook.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::time::Instant;

use super::clock::Clock;
use super::config::OAuthConfig;
use super::error::{Failure, OutcomeHook, TokenError, TokenFetchOutcome};
use super::wire;
use crate::auth::backoff::{Backoff, Breaker, BreakerState};
use crate::secret::{Secret, SecretError};

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

/// Test-only handles on the source's clock and in-flight fetch.
#[cfg(test)]
impl TokenSource {
    /// Moves this source's clock forward (and every clone's), so expiry and cool-downs can be
    /// tested while requests still use real sockets and real timeouts.
    pub(super) fn advance_clock(&self, by: std::time::Duration) {
        self.inner.clock.advance(by);
    }

    /// Waits for a background refresh, if one is under way.
    pub(super) async fn settle(&self) {
        let fetch = lock(&self.inner.inflight).clone();
        if let Some(fetch) = fetch {
            let _ = fetch.await;
        }
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

    /// One token request, counted, and when its token falls due for refresh: `refresh_before`
    /// ahead of expiry, or at half the lifetime if that is sooner.
    async fn request(&self, sent_at: Instant) -> Result<Cached, Failure> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let (value, lifetime) = wire::request(&self.client, &self.config, &self.secret).await?;
        let lead = self.config.refresh_before.min(lifetime / 2);
        let expires_at = sent_at + lifetime;
        Ok(Cached {
            token: AccessToken { value, expires_at },
            refresh_at: expires_at - lead,
        })
    }
}
