//! Prometheus metrics: one [`Metrics`] struct registered on a caller-supplied [`Registry`]
//! (never the global default, so every test builds its own and asserts on the text), and
//! [`render`] for the `/metrics` page.
//!
//! Every label value comes from a small closed set listed below (the route label is an
//! operator-chosen config name). Peer addresses, paths, tokens and user values never become
//! labels: a label value per user would make the series count unbounded. Debug builds assert
//! that each closed-set label value is one of the documented ones.
//!
//! | Metric | Type | Labels | Meaning |
//! |---|---|---|---|
//! | `guestgate_connections_open` | gauge | `route` | Browser connections currently being set up or relayed. |
//! | `guestgate_connections_total` | counter | `route`, `outcome` | Finished browser connections by how they ended: `relayed` (the relay ran), `upstream_failed` (set-up failed upstream), `rejected` (set-up refused the browser's own request: a `query.<param>` outside the flow route's allowlist or missing; close 1008, not an upstream failure), `shutdown` (guestgate was draining), `internal_error` (a bug: the connection's task panicked; the browser got 1011). |
//! | `guestgate_edge_rejections_total` | counter | `reason` | Browser requests refused before any upstream work: `origin`, `rate`, `per_ip_cap`, `global_cap`, `ticket`, `bad_request`, `draining`. |
//! | `guestgate_session_setup_seconds` | histogram | `route`, `outcome` | Time from the browser's upgrade request until relaying starts or setup fails (outcomes as for `connections_total`). |
//! | `guestgate_setup_step_seconds` | histogram | `route`, `step` | Time spent in one setup step: `http_step` (a flow route's whole declarative flow: OAuth token, HTTP steps, rendering), `upstream_connect`, `hello_ready`. |
//! | `guestgate_upstream_failures_total` | counter | `route`, `kind` | Upstream setup failures: `connect`, `tls`, `refused`, `bad_handshake`, `timeout`, `token`, `step`, `hello`, `ready_timeout`. The browser's own bad query counts as a `rejected` connection, not here. |
//! | `guestgate_frames_total` | counter | `route`, `direction` | WebSocket frames relayed, `browser_to_upstream` or `upstream_to_browser`. |
//! | `guestgate_messages_total` | counter | `route`, `direction` | Complete data messages relayed. |
//! | `guestgate_bytes_total` | counter | `route`, `direction` | Frame bytes relayed (headers and payloads). |
//! | `guestgate_spliced_bytes_total` | counter | `route`, `direction` | Of those, payload bytes moved socket to socket by splice(2), never copied (plain TCP legs, Linux). |
//! | `guestgate_closes_total` | counter | `route`, `initiator`, `code_class` | Relayed connections ended, by who ended them (`browser`, `upstream`, `guestgate`) and the close code class (see [`code_class`]). |
//! | `guestgate_token_fetches_total` | counter | `route`, `outcome` | OAuth token requests: `success`, `rejected`, `transient`, `timeout`, `bad_response`, `breaker_open`. |
//! | `guestgate_token_expiry_seconds` | gauge | `route` | Seconds until the cached token expires, as of the last fetch. |
//! | `guestgate_resume_attempts_total` | counter | `outcome` | Browser session resume attempts: `resumed`, `fresh`, `ended`, `tampered`, `expired`. |
//! | `guestgate_genesys_*` | counter | `route`, ... | The Genesys conversation layer (see [`genesys`]): history and JWT fetches, attachments, pacing, replays, ended sessions. |
//! | `guestgate_build_info` | gauge | `version` | Always 1; the label carries the crate version. |
//! | `process_*` | various | none | CPU, memory, file descriptors and start time of the guestgate process (Linux). |
//!
//! Histogram buckets run from 1 ms to 30 s ([`SETUP_BUCKETS`]).

pub mod genesys;

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Outcomes of a browser connection (`guestgate_connections_total`) and of its setup
/// (`guestgate_session_setup_seconds`).
pub const CONNECTION_OUTCOMES: [&str; 6] = [
    "relayed",
    "upstream_failed",
    "rejected",
    "browser_gone",
    "shutdown",
    "internal_error",
];
/// Reasons a browser request is refused at the edge (`guestgate_edge_rejections_total`).
pub const EDGE_REJECTION_REASONS: [&str; 7] = [
    "origin",
    "rate",
    "per_ip_cap",
    "global_cap",
    "ticket",
    "bad_request",
    "draining",
];
/// Setup steps (`guestgate_setup_step_seconds`).
pub const SETUP_STEPS: [&str; 3] = ["http_step", "upstream_connect", "hello_ready"];
/// Kinds of upstream setup failure (`guestgate_upstream_failures_total`).
pub const UPSTREAM_FAILURE_KINDS: [&str; 10] = [
    "connect",
    "tls",
    "refused",
    "bad_handshake",
    "subprotocol",
    "timeout",
    "token",
    "step",
    "hello",
    "ready_timeout",
];
/// Relay directions (`guestgate_{frames,messages,bytes}_total`).
pub const DIRECTIONS: [&str; 2] = ["browser_to_upstream", "upstream_to_browser"];
/// Who ended a relayed connection (`guestgate_closes_total`).
pub const CLOSE_INITIATORS: [&str; 3] = ["browser", "upstream", "guestgate"];
/// Every value [`code_class`] returns.
pub const CODE_CLASSES: [&str; 13] = [
    "none",
    "normal",
    "going_away",
    "protocol",
    "policy",
    "too_big",
    "internal",
    "retry",
    "gg_refused",
    "gg_upstream_failed",
    "private",
    "registered",
    "other",
];
/// Token request outcomes (`guestgate_token_fetches_total`); the same strings as
/// [`crate::auth::token::TokenFetchOutcome::as_label`].
pub const TOKEN_FETCH_OUTCOMES: [&str; 6] = [
    "success",
    "rejected",
    "transient",
    "timeout",
    "bad_response",
    "breaker_open",
];
/// Session resume outcomes (`guestgate_resume_attempts_total`).
pub const RESUME_OUTCOMES: [&str; 5] = ["resumed", "fresh", "ended", "tampered", "expired"];

/// Histogram bucket bounds in seconds: 1 ms (a local token cache hit) to 30 s (the longest
/// sensible setup deadline), roughly 1-2.5-5 per decade.
pub const SETUP_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The close code class label for a close code (`None`: no close frame was seen or sent).
///
/// Agrees with [`crate::close_code::CloseCode::class`], which it delegates to, so logs,
/// docs and metrics share one table.
pub fn code_class(code: Option<u16>) -> &'static str {
    code.map_or("none", crate::close_code::CloseCode::class)
}

/// Checks in debug builds that a label value is from its documented closed set, so a caller
/// passing a free-form string fails its tests instead of growing the series count.
fn closed(set: &[&str], value: &str) {
    debug_assert!(
        set.contains(&value),
        "metric label value {value:?} is not one of {set:?}"
    );
}

/// All guestgate metrics. Cheap to share (`Arc`); every method is a label lookup and an
/// atomic update.
///
/// Traffic is fed in batches via [`Metrics::record_traffic`]: the relay already counts frames,
/// messages and bytes per connection in plain fields (`PumpStats`), so a shared counter is
/// touched only at connection end and on the periodic flush. Prometheus's `local` counters
/// would add a second, per-thread buffer on top of that with nothing to gain, so plain
/// `inc_by` is used.
#[derive(Debug)]
pub struct Metrics {
    connections_open: IntGaugeVec,
    connections_total: IntCounterVec,
    edge_rejections: IntCounterVec,
    session_setup: HistogramVec,
    setup_step: HistogramVec,
    upstream_failures: IntCounterVec,
    frames: IntCounterVec,
    messages: IntCounterVec,
    bytes: IntCounterVec,
    spliced: IntCounterVec,
    closes: IntCounterVec,
    token_fetches: IntCounterVec,
    token_expiry: GaugeVec,
    resume_attempts: IntCounterVec,
    /// The Genesys conversation layer's counters.
    pub genesys: genesys::GenesysMetrics,
}

impl Metrics {
    /// Creates every metric and registers it, the build info and (on Linux) the process
    /// collector on `registry`. Fails if any of them is already registered there.
    pub fn new(registry: &Registry) -> Result<Arc<Metrics>, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(SETUP_BUCKETS.to_vec());
            let h = HistogramVec::new(opts, labels)?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };

        let connections_open = IntGaugeVec::new(
            Opts::new(
                "guestgate_connections_open",
                "Browser connections currently being set up or relayed.",
            ),
            &["route"],
        )?;
        registry.register(Box::new(connections_open.clone()))?;
        let token_expiry = GaugeVec::new(
            Opts::new(
                "guestgate_token_expiry_seconds",
                "Seconds until the cached upstream token expires, as of the last fetch.",
            ),
            &["route"],
        )?;
        registry.register(Box::new(token_expiry.clone()))?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "guestgate_build_info",
                "Always 1; labelled with the guestgate version.",
            ),
            &["version"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let metrics = Metrics {
            connections_open,
            connections_total: counter(
                "guestgate_connections_total",
                "Finished browser connections by route and outcome.",
                &["route", "outcome"],
            )?,
            edge_rejections: counter(
                "guestgate_edge_rejections_total",
                "Browser requests refused before any upstream work, by reason.",
                &["reason"],
            )?,
            session_setup: histogram(
                "guestgate_session_setup_seconds",
                "Time from the browser's upgrade request until relaying starts or setup fails.",
                &["route", "outcome"],
            )?,
            setup_step: histogram(
                "guestgate_setup_step_seconds",
                "Time spent in one session setup step.",
                &["route", "step"],
            )?,
            upstream_failures: counter(
                "guestgate_upstream_failures_total",
                "Upstream session setup failures by kind.",
                &["route", "kind"],
            )?,
            frames: counter(
                "guestgate_frames_total",
                "WebSocket frames relayed, by direction.",
                &["route", "direction"],
            )?,
            messages: counter(
                "guestgate_messages_total",
                "Complete WebSocket data messages relayed, by direction.",
                &["route", "direction"],
            )?,
            bytes: counter(
                "guestgate_bytes_total",
                "WebSocket frame bytes (headers and payloads) relayed, by direction.",
                &["route", "direction"],
            )?,
            spliced: counter(
                "guestgate_spliced_bytes_total",
                "Of the relayed bytes, payload bytes moved socket to socket by splice(2) without a copy.",
                &["route", "direction"],
            )?,
            closes: counter(
                "guestgate_closes_total",
                "Relayed connections ended, by initiator and close code class.",
                &["route", "initiator", "code_class"],
            )?,
            token_fetches: counter(
                "guestgate_token_fetches_total",
                "Upstream OAuth token requests by outcome.",
                &["route", "outcome"],
            )?,
            token_expiry,
            resume_attempts: counter(
                "guestgate_resume_attempts_total",
                "Browser session resume attempts by outcome.",
                &["outcome"],
            )?,
            genesys: genesys::GenesysMetrics::new(registry)?,
        };

        // Route-less closed sets start at 0 so rate() and alerts see the series from the start.
        for reason in EDGE_REJECTION_REASONS {
            metrics.edge_rejections.with_label_values(&[reason]);
        }
        for outcome in RESUME_OUTCOMES {
            metrics.resume_attempts.with_label_values(&[outcome]);
        }

        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        Ok(Arc::new(metrics))
    }

    /// Creates the zero-valued counter series of one route (every closed-set combination) so
    /// dashboards show 0 rather than "no data" before the first event. Optional; call once per
    /// configured route at start-up.
    pub fn init_route(&self, route: &str) {
        self.connections_open.with_label_values(&[route]);
        for outcome in CONNECTION_OUTCOMES {
            self.connections_total.with_label_values(&[route, outcome]);
        }
        for kind in UPSTREAM_FAILURE_KINDS {
            self.upstream_failures.with_label_values(&[route, kind]);
        }
        for direction in DIRECTIONS {
            self.frames.with_label_values(&[route, direction]);
            self.messages.with_label_values(&[route, direction]);
            self.bytes.with_label_values(&[route, direction]);
        }
        for initiator in CLOSE_INITIATORS {
            for class in CODE_CLASSES {
                self.closes.with_label_values(&[route, initiator, class]);
            }
        }
        for outcome in TOKEN_FETCH_OUTCOMES {
            self.token_fetches.with_label_values(&[route, outcome]);
        }
    }

    /// A browser connection on `route` was accepted (raises `guestgate_connections_open`).
    /// Pair with [`Metrics::connection_closed`], or use [`Metrics::open_connection`].
    pub fn connection_opened(&self, route: &str) {
        self.connections_open.with_label_values(&[route]).inc();
    }

    /// A browser connection on `route` ended (lowers `guestgate_connections_open`).
    pub fn connection_closed(&self, route: &str) {
        self.connections_open.with_label_values(&[route]).dec();
    }

    /// Raises `guestgate_connections_open` and returns a guard that lowers it again when
    /// dropped, so early returns and panics cannot leak an open connection.
    pub fn open_connection(&self, route: &str) -> OpenConnection {
        let gauge = self.connections_open.with_label_values(&[route]);
        gauge.inc();
        OpenConnection { gauge }
    }

    /// Counts a finished browser connection; `outcome` is one of [`CONNECTION_OUTCOMES`].
    pub fn connection_finished(&self, route: &str, outcome: &str) {
        closed(&CONNECTION_OUTCOMES, outcome);
        self.connections_total
            .with_label_values(&[route, outcome])
            .inc();
    }

    /// Counts a request refused at the edge; `reason` is one of [`EDGE_REJECTION_REASONS`].
    pub fn edge_rejected(&self, reason: &str) {
        closed(&EDGE_REJECTION_REASONS, reason);
        self.edge_rejections.with_label_values(&[reason]).inc();
    }

    /// Records how long session setup took; `outcome` is one of [`CONNECTION_OUTCOMES`]
    /// (`relayed`: setup succeeded and relaying started).
    pub fn observe_session_setup(&self, route: &str, outcome: &str, took: Duration) {
        closed(&CONNECTION_OUTCOMES, outcome);
        self.session_setup
            .with_label_values(&[route, outcome])
            .observe(took.as_secs_f64());
    }

    /// Records how long one setup step took; `step` is one of [`SETUP_STEPS`].
    pub fn observe_setup_step(&self, route: &str, step: &str, took: Duration) {
        closed(&SETUP_STEPS, step);
        self.setup_step
            .with_label_values(&[route, step])
            .observe(took.as_secs_f64());
    }

    /// Counts an upstream setup failure; `kind` is one of [`UPSTREAM_FAILURE_KINDS`]
    /// (`UpstreamError::kind` returns a subset of them).
    pub fn upstream_failed(&self, route: &str, kind: &str) {
        closed(&UPSTREAM_FAILURE_KINDS, kind);
        self.upstream_failures
            .with_label_values(&[route, kind])
            .inc();
    }

    /// Adds a batch of relayed traffic; `direction` is one of [`DIRECTIONS`]. Call it with
    /// the per-connection deltas since the last call, at connection end and periodically for
    /// long-lived connections, never per frame.
    pub fn record_traffic(
        &self,
        route: &str,
        direction: &str,
        frames: u64,
        messages: u64,
        bytes: u64,
    ) {
        closed(&DIRECTIONS, direction);
        let labels = [route, direction];
        self.frames.with_label_values(&labels).inc_by(frames);
        self.messages.with_label_values(&labels).inc_by(messages);
        self.bytes.with_label_values(&labels).inc_by(bytes);
    }

    /// Adds payload bytes that one direction moved by splice(2) (already counted in
    /// `guestgate_bytes_total`).
    pub fn record_spliced(&self, route: &str, direction: &str, bytes: u64) {
        closed(&DIRECTIONS, direction);
        self.spliced
            .with_label_values(&[route, direction])
            .inc_by(bytes);
    }

    /// Counts a relayed connection's end; `initiator` is one of [`CLOSE_INITIATORS`] and
    /// `code` the close code concerned (mapped through [`code_class`]).
    pub fn record_close(&self, route: &str, initiator: &str, code: Option<u16>) {
        closed(&CLOSE_INITIATORS, initiator);
        self.closes
            .with_label_values(&[route, initiator, code_class(code)])
            .inc();
    }

    /// Counts a token request; `outcome` is one of [`TOKEN_FETCH_OUTCOMES`].
    pub fn token_fetch(&self, route: &str, outcome: &str) {
        closed(&TOKEN_FETCH_OUTCOMES, outcome);
        self.token_fetches
            .with_label_values(&[route, outcome])
            .inc();
    }

    /// Sets how long the route's freshly cached token remains valid. The gauge is not a
    /// countdown: it holds the value from the last call until the next fetch.
    pub fn set_token_expiry(&self, route: &str, remaining: Duration) {
        self.token_expiry
            .with_label_values(&[route])
            .set(remaining.as_secs_f64());
    }

    /// Counts a session resume attempt; `outcome` is one of [`RESUME_OUTCOMES`].
    pub fn resume_attempt(&self, outcome: &str) {
        closed(&RESUME_OUTCOMES, outcome);
        self.resume_attempts.with_label_values(&[outcome]).inc();
    }
}

/// Holds one `guestgate_connections_open` slot; dropping it releases the slot.
#[derive(Debug)]
#[must_use = "dropping the guard immediately closes the connection in the gauge"]
pub struct OpenConnection {
    gauge: IntGauge,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Encodes everything registered on `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    // Encoding into a Vec fails only on a malformed metric family (a foreign collector's
    // bug); serve what was written rather than fail the whole page.
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
