//! Why a browser request was refused before the upgrade: one type for every edge refusal, so
//! the HTTP status, the `Retry-After` hint, the metric label and the message come from one place.

use std::time::Duration;

use http::StatusCode;

use super::origin::OriginProblem;
use super::ticket::TicketError;

/// Retry hint when a client is at its per-IP connection cap (its connections may last minutes).
pub const PER_IP_CAP_RETRY_AFTER: Duration = Duration::from_secs(10);
/// Retry hint when the route's concurrent auth flows are at their cap (a flow takes ~1s).
pub const SETUP_CAP_RETRY_AFTER: Duration = Duration::from_secs(2);

/// A request refused at the edge. `Display` is the short, secret-free text for the response
/// body; `Debug` may carry more (the refused origin) for a debug log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The `Origin` header is missing, malformed or not allowed.
    #[error("{}", origin_message(.0))]
    Origin(OriginProblem),
    /// The client's handshake rate is exhausted.
    #[error("too many connection attempts; retry later")]
    Rate {
        /// When a token will be available.
        retry_after: Duration,
    },
    /// The client already holds its share of connections.
    #[error("too many connections from this address")]
    PerIpCap {
        /// A hint, not a promise: a connection may close sooner.
        retry_after: Duration,
    },
    /// The process-wide connection cap (the server's, not the route's) is reached.
    #[error("server is at capacity; retry later")]
    GlobalCap {
        /// A hint for the client.
        retry_after: Duration,
    },
    /// The route's concurrent upstream auth flows are at their cap.
    #[error("server is busy; retry later")]
    SetupCap {
        /// A hint for the client.
        retry_after: Duration,
    },
    /// The site ticket is missing or does not verify.
    #[error("{0}")]
    Ticket(TicketError),
    /// The request cannot be evaluated (e.g. an unreadable forwarding header).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The server is shutting down.
    #[error("guestgate is shutting down")]
    Draining,
}

fn origin_message(problem: &OriginProblem) -> &'static str {
    match problem {
        OriginProblem::Missing => "an origin header is required",
        OriginProblem::Malformed => "malformed origin header",
        OriginProblem::NotAllowed(_) => "origin not allowed",
    }
}

impl Rejection {
    /// The HTTP status: 403 for origin and ticket, 429 for rate and per-IP cap, 503 for the
    /// capacity caps and draining, 400 for bad requests.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::Origin(_) | Rejection::Ticket(_) => StatusCode::FORBIDDEN,
            Rejection::Rate { .. } | Rejection::PerIpCap { .. } => StatusCode::TOO_MANY_REQUESTS,
            Rejection::GlobalCap { .. } | Rejection::SetupCap { .. } | Rejection::Draining => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Rejection::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// How long the client should wait, for the `Retry-After` header.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Rejection::Rate { retry_after }
            | Rejection::PerIpCap { retry_after }
            | Rejection::GlobalCap { retry_after }
            | Rejection::SetupCap { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// [`Self::retry_after`] as `Retry-After` header seconds: rounded up, at least 1.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after().map(|d| {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            secs.max(1)
        })
    }

    /// The `reason` label of `guestgate_edge_rejections_total`, from
    /// `metrics::EDGE_REJECTION_REASONS`. The setup cap counts as `global_cap`: both are
    /// capacity limits rather than something the client did.
    pub fn reason_label(&self) -> &'static str {
        match self {
            Rejection::Origin(_) => "origin",
            Rejection::Rate { .. } => "rate",
            Rejection::PerIpCap { .. } => "per_ip_cap",
            Rejection::GlobalCap { .. } | Rejection::SetupCap { .. } => "global_cap",
            Rejection::Ticket(_) => "ticket",
            Rejection::BadRequest(_) => "bad_request",
            Rejection::Draining => "draining",
        }
    }
}
