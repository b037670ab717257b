use std::time::Duration;

use prometheus::Registry;

use super::*;

fn fresh() -> (Registry, Arc<Metrics>) {
    let registry = Registry::new();
    let metrics = Metrics::new(&registry).expect("register metrics");
    (registry, metrics)
}

/// Asserts that the rendered text has `line` as a whole sample line.
#[track_caller]
fn assert_sample(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing sample line {line:?} in:\n{text}"
    );
}

#[track_caller]
fn assert_no_series(text: &str, name: &str) {
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with(name) && !l.starts_with('#')),
        "unexpected {name} series in:\n{text}"
    );
}

#[test]
fn connections_open_gauge_goes_up_and_down_per_route() {
    let (registry, m) = fresh();
    m.connection_opened("chat");
    m.connection_opened("chat");
    m.connection_opened("video");
    m.connection_closed("chat");
    let text = render(&registry);
    assert_sample(&text, r#"guestgate_connections_open{route="chat"} 1"#);
    assert_sample(&text, r#"guestgate_connections_open{route="video"} 1"#);
}

#[test]
fn open_connection_guard_releases_on_drop() {
    let (registry, m) = fresh();
    let guard = m.open_connection("chat");
    assert_sample(
        &render(&registry),
        r#"guestgate_connections_open{route="chat"} 1"#,
    );
    drop(guard);
    assert_sample(
        &render(&registry),
        r#"guestgate_connections_open{route="chat"} 0"#,
    );
}

#[test]
fn connection_outcomes_edge_rejections_and_upstream_failures_count() {
    let (registry, m) = fresh();
    m.connection_finished("chat", "relayed");
    m.connection_finished("chat", "relayed");
    m.connection_finished("chat", "upstream_failed");
    m.edge_rejected("origin");
    m.edge_rejected("per_ip_cap");
    m.edge_rejected("per_ip_cap");
    m.upstream_failed("chat", "tls");
    m.upstream_failed("chat", "ready_timeout");
    let text = render(&registry);
    assert_sample(
        &text,
        r#"guestgate_connections_total{outcome="relayed",route="chat"} 2"#,
    );
    assert_sample(
        &text,
        r#"guestgate_connections_total{outcome="upstream_failed",route="chat"} 1"#,
    );
    assert_sample(
        &text,
        r#"guestgate_edge_rejections_total{reason="origin"} 1"#,
    );
    assert_sample(
        &text,
        r#"guestgate_edge_rejections_total{reason="per_ip_cap"} 2"#,
    );
    // Route-less closed sets are pre-created at zero.
    assert_sample(
        &text,
        r#"guestgate_edge_rejections_total{reason="draining"} 0"#,
    );
    assert_sample(
        &text,
        r#"guestgate_upstream_failures_total{kind="tls",route="chat"} 1"#,
    );
    assert_sample(
        &text,
        r#"guestgate_upstream_failures_total{kind="ready_timeout",route="chat"} 1"#,
    );
}

#[test]
fn record_traffic_adds_up_batches_per_direction() {
    let (registry, m) = fresh();
    m.record_traffic("chat", "browser_to_upstream", 3, 2, 100);
    m.record_traffic("chat", "browser_to_upstream", 5, 1, 1000);
    m.record_traffic("chat", "upstream_to_browser", 7, 7, 4096);
    m.record_traffic("chat", "upstream_to_browser", 0, 0, 0);
    let text = render(&registry);
    let dir = r#"direction="browser_to_upstream",route="chat""#;
    assert_sample(&text, &format!("guestgate_frames_total{{{dir}}} 8"));
    assert_sample(&text, &format!("guestgate_messages_total{{{dir}}} 3"));
    assert_sample(&text, &format!("guestgate_bytes_total{{{dir}}} 1100"));
    let dir = r#"direction="upstream_to_browser",route="chat""#;
    assert_sample(&text, &format!("guestgate_frames_total{{{dir}}} 7"));
    assert_sample(&text, &format!("guestgate_messages_total{{{dir}}} 7"));
    assert_sample(&text, &format!("guestgate_bytes_total{{{dir}}} 4096"));
}

#[test]
fn spliced_bytes_add_up_per_direction() {
    let (registry, m) = fresh();
    m.record_spliced("chat", "upstream_to_browser", 1 << 20);
    m.record_spliced("chat", "upstream_to_browser", 5);
    let text = render(&registry);
    assert_sample(
        &text,
        r#"guestgate_spliced_bytes_total{direction="upstream_to_browser",route="chat"} 1048581"#,
    );
}

#[test]
fn record_traffic_keeps_full_u64_precision() {
    // Integer counters: byte totals past 2^53 must not lose increments as f64 would.
    let (registry, m) = fresh();
    let big = (1u64 << 53) + 1;
    m.record_traffic("chat", "browser_to_upstream", 0, 0, big);
    m.record_traffic("chat", "browser_to_upstream", 0, 0, 1);
    assert_sample(
        &render(&registry),
        &format!(
            r#"guestgate_bytes_total{{direction="browser_to_upstream",route="chat"}} {}"#,
            big + 1
        ),
    );
}

#[test]
fn session_setup_histogram_counts_and_buckets() {
    let (registry, m) = fresh();
    m.observe_session_setup("chat", "relayed", Duration::from_micros(500));
    m.observe_session_setup("chat", "relayed", Duration::from_millis(40));
    m.observe_session_setup("chat", "relayed", Duration::from_secs(60));
    m.observe_session_setup("chat", "upstream_failed", Duration::from_secs(2));
    let text = render(&registry);
    let labels = r#"outcome="relayed",route="chat""#;
    assert_sample(
        &text,
        &format!("guestgate_session_setup_seconds_count{{{labels}}} 3"),
    );
    assert_sample(
        &text,
        &format!(r#"guestgate_session_setup_seconds_bucket{{{labels},le="0.001"}} 1"#),
    );
    assert_sample(
        &text,
        &format!(r#"guestgate_session_setup_seconds_bucket{{{labels},le="0.05"}} 2"#),
    );
    assert_sample(
        &text,
        &format!(r#"guestgate_session_setup_seconds_bucket{{{labels},le="30"}} 2"#),
    );
    assert_sample(
        &text,
        &format!(r#"guestgate_session_setup_seconds_bucket{{{labels},le="+Inf"}} 3"#),
    );
    assert_sample(
        &text,
        r#"guestgate_session_setup_seconds_count{outcome="upstream_failed",route="chat"} 1"#,
    );
    assert_sample(
        &text,
        r#"guestgate_session_setup_seconds_sum{outcome="upstream_failed",route="chat"} 2"#,
    );
}

#[test]
fn setup_step_histogram_counts_per_step() {
    let (registry, m) = fresh();
    m.observe_setup_step("chat", "http_step", Duration::from_millis(5));
    m.observe_setup_step("chat", "http_step", Duration::from_millis(7));
    m.observe_setup_step("chat", "upstream_connect", Duration::from_millis(300));
    let text = render(&registry);
    assert_sample(
        &text,
        r#"guestgate_setup_step_seconds_count{route="chat",step="http_step"} 2"#,
    );
    assert_sample(
        &text,
        r#"guestgate_setup_step_seconds_bucket{route="chat",step="http_step",le="0.005"} 1"#,
    );
    assert_sample(
        &text,
        r#"guestgate_setup_step_seconds_bucket{route="chat",step="http_step",le="0.01"} 2"#,
    );
    assert_sample(
        &text,
        r#"guestgate_setup_step_seconds_count{route="chat",step="upstream_connect"} 1"#,
    );
    assert_no_series(
        &text,
        r#"guestgate_setup_step_seconds_count{route="chat",step="hello_ready"}"#,
    );
}

#[test]
fn code_class_maps_every_class() {
    let cases: &[(Option<u16>, &str)] = &[
        (None, "none"),
        (Some(1000), "normal"),
        (Some(1001), "going_away"),
        (Some(1002), "protocol"),
        (Some(1003), "protocol"),
        (Some(1007), "protocol"),
        (Some(1008), "policy"),
        (Some(1009), "too_big"),
        (Some(1011), "internal"),
        (Some(1012), "retry"),
        (Some(1013), "retry"),
        (Some(4400), "gg_refused"),
        (Some(4499), "gg_refused"),
        (Some(4500), "gg_upstream_failed"),
        (Some(4599), "gg_upstream_failed"),
        (Some(4000), "private"),
        (Some(4399), "private"),
        (Some(4600), "private"),
        (Some(4999), "private"),
        (Some(3000), "registered"),
        (Some(3999), "registered"),
        (Some(1004), "other"),
        (Some(1005), "other"),
        (Some(1006), "other"),
        (Some(1010), "other"),
        (Some(1014), "other"),
        (Some(1015), "other"),
        (Some(0), "other"),
        (Some(2999), "other"),
        (Some(5000), "other"),
        (Some(u16::MAX), "other"),
    ];
    for &(code, class) in cases {
        assert_eq!(code_class(code), class, "code {code:?}");
    }
    // Every class is reachable and CODE_CLASSES lists exactly the classes returned.
    for class in CODE_CLASSES {
        assert!(
            cases.iter().any(|&(_, c)| c == class),
            "class {class} not covered"
        );
    }
    for code in 0..=u16::MAX {
        assert!(
            CODE_CLASSES.contains(&code_class(Some(code))),
            "code {code}"
        );
    }
}

#[test]
fn record_close_labels_by_initiator_and_code_class() {
    let (registry, m) = fresh();
    m.record_close("chat", "browser", Some(1000));
    m.record_close("chat", "browser", Some(1000));
    m.record_close("chat", "upstream", Some(4503));
    m.record_close("chat", "guestgate", None);
    let text = render(&registry);
    assert_sample(
        &text,
        r#"guestgate_closes_total{code_class="normal",initiator="browser",route="chat"} 2"#,
    );
    assert_sample(
        &text,
        r#"guestgate_closes_total{code_class="gg_upstream_failed",initiator="upstream",route="chat"} 1"#,
    );
    assert_sample(
        &text,
        r#"guestgate_closes_total{code_class="none",initiator="guestgate",route="chat"} 1"#,
    );
}

#[test]
fn token_fetches_expiry_and_resume_attempts() {
    let (registry, m) = fresh();
    m.token_fetch("chat", "success");
    m.token_fetch("chat", "breaker_open");
    m.token_fetch("chat", "breaker_open");
    m.set_token_expiry("chat", Duration::from_secs(3600));
    m.set_token_expiry("chat", Duration::from_millis(1500));
    m.resume_attempt("resumed");
    m.resume_attempt("tampered");
    m.resume_attempt("tampered");
    let text = render(&registry);
    assert_sample(
        &text,
        r#"guestgate_token_fetches_total{outcome="success",route="chat"} 1"#,
    );
    assert_sample(
        &text,
        r#"guestgate_token_fetches_total{outcome="breaker_open",route="chat"} 2"#,
    );
    assert_sample(&text, r#"guestgate_token_expiry_seconds{route="chat"} 1.5"#);
    assert_sample(
        &text,
        r#"guestgate_resume_attempts_total{outcome="resumed"} 1"#,
    );
    assert_sample(
        &text,
        r#"guestgate_resume_attempts_total{outcome="tampered"} 2"#,
    );
    assert_sample(
        &text,
        r#"guestgate_resume_attempts_total{outcome="expired"} 0"#,
    );
}

#[test]
fn token_outcome_labels_match_the_token_source() {
    use crate::auth::token::TokenFetchOutcome;
    let labels: Vec<_> = TokenFetchOutcome::ALL
        .iter()
        .map(|o| o.as_label())
        .collect();
    assert_eq!(labels, TOKEN_FETCH_OUTCOMES);
}

#[test]
fn init_route_creates_zero_series() {
    let (registry, m) = fresh();
    m.init_route("chat");
    let text = render(&registry);
    assert_sample(&text, r#"guestgate_connections_open{route="chat"} 0"#);
    assert_sample(
        &text,
        r#"guestgate_connections_total{outcome="shutdown",route="chat"} 0"#,
    );
    assert_sample(
        &text,
        r#"guestgate_bytes_total{direction="upstream_to_browser",route="chat"} 0"#,
    );
    assert_sample(
        &text,
        r#"guestgate_closes_total{code_class="other",initiator="upstream",route="chat"} 0"#,
    );
    assert_sample(
        &text,
        r#"guestgate_token_fetches_total{outcome="timeout",route="chat"} 0"#,
    );
}

#[test]
fn build_info_carries_the_crate_version() {
    let (registry, _m) = fresh();
    assert_sample(
        &render(&registry),
        &format!(
            r#"guestgate_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        ),
    );
}

#[cfg(target_os = "linux")]
#[test]
fn process_metrics_are_registered() {
    let (registry, _m) = fresh();
    let text = render(&registry);
    assert!(
        text.lines()
            .any(|l| l.starts_with("process_resident_memory_bytes ")),
        "no process_resident_memory_bytes sample in:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("process_start_time_seconds "))
    );
}

#[test]
fn every_guestgate_metric_is_prefixed_and_documented() {
    let (registry, m) = fresh();
    m.init_route("chat");
    m.observe_session_setup("chat", "relayed", Duration::from_millis(1));
    m.observe_setup_step("chat", "http_step", Duration::from_millis(1));
    m.set_token_expiry("chat", Duration::from_secs(1));
    let module_doc = include_str!("mod.rs");
    for family in registry.gather() {
        let name = family.name();
        if name.starts_with("process_") {
            continue;
        }
        assert!(name.starts_with("guestgate_"), "{name} lacks the prefix");
        assert!(
            module_doc.contains(&format!("//! | `{name}` |")),
            "{name} missing from the module doc table"
        );
    }
}

#[test]
fn two_registries_do_not_conflict() {
    let (reg_a, a) = fresh();
    let (reg_b, b) = fresh();
    a.connection_opened("chat");
    b.edge_rejected("rate");
    let (text_a, text_b) = (render(&reg_a), render(&reg_b));
    assert_sample(&text_a, r#"guestgate_connections_open{route="chat"} 1"#);
    assert_no_series(&text_b, "guestgate_connections_open{");
    assert_sample(
        &text_b,
        r#"guestgate_edge_rejections_total{reason="rate"} 1"#,
    );
    assert_sample(
        &text_a,
        r#"guestgate_edge_rejections_total{reason="rate"} 0"#,
    );
}

#[test]
fn registering_twice_on_one_registry_fails() {
    let registry = Registry::new();
    let _m = Metrics::new(&registry).expect("first registration");
    assert!(Metrics::new(&registry).is_err());
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "not one of")]
fn free_form_label_values_are_caught_in_debug_builds() {
    let (_registry, m) = fresh();
    m.edge_rejected("203.0.113.7");
}
