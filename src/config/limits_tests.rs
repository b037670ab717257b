//! Whole-file tests for the default limits: which routes get edge defaults, how `"off"` is
//! written and warned about, and what the effective config shows.

use super::*;
use crate::edge::{Limit, RateConfig};

const PRESET: &str = r#"
[[routes]]
name = "chat"
path = "/chat"
edge.allowed_origins = ["https://www.example.com"]
[routes.genesys]
domain = "mypurecloud.de"
deployment_id = "abc-123"
origin = "https://www.example.com"
"#;

const FLOW: &str = r#"
[[routes]]
name = "vendor"
path = "/vendor"
edge.allowed_origins = ["https://www.example.com"]
[routes.flow]
upstream = "wss://chat.vendor.example/s"
"#;

const RELAY: &str = r#"
[[routes]]
name = "plain"
path = "/plain"
upstream = "wss://chat.example.com/socket"
edge.allowed_origins = ["https://www.example.com"]
"#;

#[test]
fn preset_and_flow_routes_get_default_edge_limits_and_relay_routes_do_not() {
    let c = Config::parse(&format!("{PRESET}{FLOW}{RELAY}")).unwrap();
    for route in &c.routes[..2] {
        assert_eq!(
            route.edge.max_connections_per_ip,
            Limit::Max(50),
            "{}",
            route.name
        );
        assert_eq!(
            route.edge.handshake_rate_per_ip,
            Limit::Max(RateConfig {
                per_second: 5.0,
                burst: 20
            })
        );
        assert_eq!(route.edge.max_concurrent_setups, Limit::Max(256));
    }
    let relay = &c.routes[2].edge;
    assert!(relay.max_connections_per_ip.is_unset());
    assert!(relay.handshake_rate_per_ip.is_unset());
    assert!(relay.max_concurrent_setups.is_unset());
    assert!(c.warnings().is_empty(), "{:#?}", c.warnings());
}

#[test]
fn the_effective_config_shows_the_default_limits() {
    let c = Config::parse(PRESET).unwrap();
    let text = toml::to_string_pretty(&c).unwrap();
    assert!(text.contains("max_connections_per_ip = 50"), "{text}");
    assert!(text.contains("max_concurrent_setups = 256"), "{text}");
    assert!(text.contains("burst = 20"), "{text}");
    // What `check` prints parses back to the same limits.
    let again = Config::parse(&text).unwrap();
    assert_eq!(again.routes[0].edge, c.routes[0].edge);
}

#[test]
fn switching_a_default_off_is_kept_and_warned_about_at_start_up() {
    let text = PRESET.replace(
        "edge.allowed_origins = [\"https://www.example.com\"]",
        "edge.allowed_origins = [\"https://www.example.com\"]\n\
         edge.max_connections_per_ip = \"off\"\nedge.max_concurrent_setups = 12",
    );
    let c = Config::parse(&text).unwrap();
    assert_eq!(c.routes[0].edge.max_connections_per_ip, Limit::Off);
    assert_eq!(c.routes[0].edge.max_concurrent_setups, Limit::Max(12));
    assert!(matches!(
        c.routes[0].edge.handshake_rate_per_ip,
        Limit::Max(_)
    ));
    let warnings = c.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].starts_with("routes[0].edge.max_connections_per_ip = \"off\""),
        "{warnings:#?}"
    );
}

#[test]
fn a_zero_limit_is_refused_and_points_at_off() {
    let text = FLOW.replace(
        "[routes.flow]",
        "edge.handshake_rate_per_ip = { per_second = 1.0, burst = 0 }\n[routes.flow]",
    );
    let err = Config::parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("routes[0].edge.handshake_rate_per_ip.burst"),
        "{err}"
    );
    let text = FLOW.replace(
        "[routes.flow]",
        "edge.max_concurrent_setups = 0\n[routes.flow]",
    );
    let err = Config::parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("routes[0].edge.max_concurrent_setups"),
        "{err}"
    );
    assert!(err.contains("\"off\""), "{err}");
}

#[test]
fn the_accept_time_cap_defaults_to_256_per_address_and_shows_in_the_effective_config() {
    let c = Config::parse(RELAY).unwrap();
    assert_eq!(c.server.accept_cap_per_ip(), Some(256));
    let text = toml::to_string_pretty(&c).unwrap();
    assert!(text.contains("max_connections_per_ip = 256"), "{text}");
    assert!(c.warnings().is_empty(), "{:#?}", c.warnings());
}

#[test]
fn the_accept_time_cap_can_be_set_or_switched_off_with_a_warning() {
    let set = Config::parse(&format!("[server]\nmax_connections_per_ip = 40\n{RELAY}")).unwrap();
    assert_eq!(set.server.accept_cap_per_ip(), Some(40));

    let off = Config::parse(&format!(
        "[server]\nmax_connections_per_ip = \"off\"\n{RELAY}"
    ))
    .unwrap();
    assert_eq!(off.server.accept_cap_per_ip(), None);
    let warnings = off.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].starts_with("server.max_connections_per_ip = \"off\""));

    let zero = Config::parse(&format!("[server]\nmax_connections_per_ip = 0\n{RELAY}"))
        .unwrap_err()
        .to_string();
    assert!(zero.contains("server.max_connections_per_ip"), "{zero}");
}

#[test]
fn a_cap_not_below_the_global_one_is_warned_about() {
    let text = format!("[server]\nmax_connections = 100\n{RELAY}");
    let warnings = Config::parse(&text).unwrap().warnings();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("server.max_connections_per_ip (256)"),
        "{warnings:#?}"
    );
}

#[test]
fn the_one_liner_has_no_accept_time_cap_and_says_so() {
    let c = Config::one_liner(
        "127.0.0.1:0".parse().unwrap(),
        "ws://127.0.0.1:9/".parse().unwrap(),
    );
    assert_eq!(c.server.accept_cap_per_ip(), None);
    assert!(
        c.warnings()
            .iter()
            .any(|w| w.starts_with("server.max_connections_per_ip = \"off\"")),
        "{:#?}",
        c.warnings()
    );
}
