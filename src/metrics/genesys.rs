//! Metrics of the Genesys conversation layer: history and JWT fetches, attachments, the
//! `onMessage` pacer, reconnect replays and sessions that ended upstream. Genesys messages are
//! few per second per session, so each event updates its counter directly.

use prometheus::{IntCounterVec, Opts, Registry};

use super::closed;

/// `outcome` of `guestgate_genesys_history_fetches_total`.
pub const HISTORY_OUTCOMES: [&str; 6] = [
    "ok",
    "unauthorized",
    "failed",
    "unavailable",
    "no_jwt",
    "refused",
];
/// `kind` of `guestgate_genesys_history_fetches_total`: a page's request or a reconnect replay.
pub const HISTORY_KINDS: [&str; 2] = ["page", "replay"];
/// `outcome` of `guestgate_genesys_jwt_fetches_total`.
pub const JWT_OUTCOMES: [&str; 2] = ["ok", "timeout"];
/// `outcome` of `guestgate_genesys_attachments_total`.
pub const ATTACHMENT_OUTCOMES: [&str; 8] = [
    "requested",
    "slot",
    "refused",
    "no_slot",
    "uploaded",
    "upload_failed",
    "deleted",
    "disabled",
];
/// `outcome` of `guestgate_genesys_paced_messages_total`.
pub const PACING_OUTCOMES: [&str; 4] = ["sent", "queued", "refused", "typing_thinned"];
/// `reason` of `guestgate_genesys_sessions_ended_total`.
pub const END_REASONS: [&str; 6] = [
    "expired",
    "cleared",
    "closed",
    "not_found",
    "signed_out",
    "sign_in_expired",
];

/// `op` of `guestgate_genesys_auth_requests_total`.
pub const AUTH_OPS: [&str; 3] = ["exchange", "refresh", "revoke"];
/// `outcome` of `guestgate_genesys_auth_requests_total`.
pub const AUTH_OUTCOMES: [&str; 4] = ["ok", "rejected", "rate_limited", "unavailable"];

/// The Genesys conversation counters.
#[derive(Debug)]
pub struct GenesysMetrics {
    history: IntCounterVec,
    jwt: IntCounterVec,
    attachments: IntCounterVec,
    pacing: IntCounterVec,
    replayed: IntCounterVec,
    ended: IntCounterVec,
    auth: IntCounterVec,
}

impl GenesysMetrics {
    /// Creates and registers the counters.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        Ok(GenesysMetrics {
            history: counter(
                "guestgate_genesys_history_fetches_total",
                "Conversation history reads over the Genesys REST API, by kind (a page's request or a reconnect replay) and outcome.",
                &["route", "kind", "outcome"],
            )?,
            jwt: counter(
                "guestgate_genesys_jwt_fetches_total",
                "JWTs requested on the Genesys socket for history reads, by outcome.",
                &["route", "outcome"],
            )?,
            attachments: counter(
                "guestgate_genesys_attachments_total",
                "Attachment requests and events on Genesys routes, by outcome.",
                &["route", "outcome"],
            )?,
            pacing: counter(
                "guestgate_genesys_paced_messages_total",
                "Page onMessage requests by what the pacer did: sent at once, queued, refused (queue full), typing thinned.",
                &["route", "outcome"],
            )?,
            replayed: counter(
                "guestgate_genesys_replayed_messages_total",
                "Messages delivered from history to reconnecting pages.",
                &["route"],
            )?,
            ended: counter(
                "guestgate_genesys_sessions_ended_total",
                "Genesys sessions that ended upstream while a page was connected, by reason.",
                &["route", "reason"],
            )?,
            auth: counter(
                "guestgate_genesys_auth_requests_total",
                "Signed-in customers: code exchanges, JWT refreshes and revocations (sign-outs) against Genesys's token endpoints, by outcome.",
                &["route", "op", "outcome"],
            )?,
        })
    }

    /// Zero series for one Genesys route.
    pub fn init_route(&self, route: &str) {
        for kind in HISTORY_KINDS {
            for outcome in HISTORY_OUTCOMES {
                self.history.with_label_values(&[route, kind, outcome]);
            }
        }
        for outcome in JWT_OUTCOMES {
            self.jwt.with_label_values(&[route, outcome]);
        }
        for outcome in ATTACHMENT_OUTCOMES {
            self.attachments.with_label_values(&[route, outcome]);
        }
        for outcome in PACING_OUTCOMES {
            self.pacing.with_label_values(&[route, outcome]);
        }
        self.replayed.with_label_values(&[route]);
        for reason in END_REASONS {
            self.ended.with_label_values(&[route, reason]);
        }
        for op in AUTH_OPS {
            for outcome in AUTH_OUTCOMES {
                self.auth.with_label_values(&[route, op, outcome]);
            }
        }
    }

    /// Counts a token endpoint call.
    pub fn auth(&self, route: &str, op: &str, outcome: &str) {
        closed(&AUTH_OPS, op);
        closed(&AUTH_OUTCOMES, outcome);
        self.auth.with_label_values(&[route, op, outcome]).inc();
    }

    /// Counts a history read.
    pub fn history(&self, route: &str, kind: &str, outcome: &str) {
        closed(&HISTORY_KINDS, kind);
        closed(&HISTORY_OUTCOMES, outcome);
        self.history
            .with_label_values(&[route, kind, outcome])
            .inc();
    }

    /// Counts a JWT request's outcome.
    pub fn jwt(&self, route: &str, outcome: &str) {
        closed(&JWT_OUTCOMES, outcome);
        self.jwt.with_label_values(&[route, outcome]).inc();
    }

    /// Counts an attachment request or event.
    pub fn attachment(&self, route: &str, outcome: &str) {
        closed(&ATTACHMENT_OUTCOMES, outcome);
        self.attachments.with_label_values(&[route, outcome]).inc();
    }

    /// Counts what the pacer did with one request.
    pub fn paced(&self, route: &str, outcome: &str) {
        closed(&PACING_OUTCOMES, outcome);
        self.pacing.with_label_values(&[route, outcome]).inc();
    }

    /// Counts messages replayed to a reconnecting page.
    pub fn replayed(&self, route: &str, count: usize) {
        self.replayed
            .with_label_values(&[route])
            .inc_by(count as u64);
    }

    /// Counts a session that ended upstream.
    pub fn ended(&self, route: &str, reason: &str) {
        closed(&END_REASONS, reason);
        self.ended.with_label_values(&[route, reason]).inc();
    }
}
