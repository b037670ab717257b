//! How a token fetch can end: the outcome reported to metrics, the error callers get, and
//! one failed request before it becomes that error.

use std::sync::Arc;
use std::time::Duration;

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

/// Called once per token request sent, with its outcome, and once per
/// [`TokenSource::token`](super::TokenSource::token) call refused by the open breaker. Runs
/// inline: keep it to a counter increment.
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
pub(super) enum Failure {
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
    pub(super) fn kind(&self) -> TokenFetchOutcome {
        match self {
            Self::Rejected { .. } => TokenFetchOutcome::Rejected,
            Self::Transient { .. } => TokenFetchOutcome::Transient,
            Self::Timeout => TokenFetchOutcome::Timeout,
            Self::BadResponse(_) => TokenFetchOutcome::BadResponse,
        }
    }

    /// A short description for logs and for the breaker's "last failure".
    pub(super) fn describe(&self, timeout: Duration) -> String {
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

    pub(super) fn into_error(self, url: &str, attempts: u32, timeout: Duration) -> TokenError {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_labels_are_distinct() {
        let labels: std::collections::HashSet<_> = TokenFetchOutcome::ALL
            .iter()
            .map(|o| o.as_label())
            .collect();
        assert_eq!(labels.len(), TokenFetchOutcome::ALL.len());
    }
}
