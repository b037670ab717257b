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
//! The client secret and the tokens are held as [`Secret`](crate::secret::Secret)s and never
//! appear in errors or logs; error texts built from the endpoint's reply never quote its body.
//!
//! Layout: `config` holds the `oauth` section ([`OAuthConfig`]), its defaults and validation;
//! `error` how a fetch ends ([`TokenFetchOutcome`], [`TokenError`]); `source` the shared
//! [`TokenSource`] (cache, refresh, single flight, breaker), reading the time from `clock`;
//! `wire` the token endpoint's request and reply.

mod clock;
mod config;
mod error;
mod source;
mod wire;

pub use config::{ClientAuth, OAuthConfig, is_insecure_http};
pub use error::{OutcomeHook, TokenError, TokenFetchOutcome};
pub use source::{AccessToken, TokenSource};

#[cfg(test)]
mod tests;
