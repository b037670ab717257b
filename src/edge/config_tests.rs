//! `[routes.edge]` limits: the `"off"` syntax, the upstream-work defaults and the warnings.

use super::*;

fn parse(text: &str) -> EdgeConfig {
    let mut cfg: EdgeConfig = toml::from_str(text).unwrap();
    cfg.allow_any_origin = true;
    cfg
}

#[test]
fn limits_left_out_are_unset_and_filled_with_the_upstream_defaults() {
    let cfg = parse("");
    assert!(cfg.max_connections_per_ip.is_unset());
    assert!(cfg.handshake_rate_per_ip.is_unset());
    assert!(cfg.max_concurrent_setups.is_unset());
    let filled = cfg.with_upstream_defaults();
    assert_eq!(filled.max_connections_per_ip, Limit::Max(50));
    assert_eq!(
        filled.handshake_rate_per_ip,
        Limit::Max(RateConfig {
            per_second: 5.0,
            burst: 20
        })
    );
    assert_eq!(filled.max_concurrent_setups, Limit::Max(256));
    assert!(
        filled.warnings("routes[0].edge").len() == 1,
        "only allow_any_origin"
    );
    // Filling twice changes nothing.
    assert_eq!(filled.with_upstream_defaults(), filled);
}

#[test]
fn explicit_values_and_off_are_kept_by_the_defaults() {
    let cfg = parse(
        r#"
        max_connections_per_ip = 7
        handshake_rate_per_ip = "off"
        max_concurrent_setups = "off"
        "#,
    );
    cfg.validate("routes[0].edge").unwrap();
    let filled = cfg.with_upstream_defaults();
    assert_eq!(filled.max_connections_per_ip, Limit::Max(7));
    assert_eq!(filled.handshake_rate_per_ip, Limit::Off);
    assert_eq!(filled.max_concurrent_setups, Limit::Off);
    assert_eq!(filled.handshake_rate_per_ip.get(), None);
}

#[test]
fn switching_a_limit_off_is_warned_about_with_its_key() {
    let cfg = parse(
        r#"
        max_connections_per_ip = "off"
        handshake_rate_per_ip = "off"
        max_concurrent_setups = 10
        "#,
    );
    let warnings = cfg.warnings("routes[2].edge");
    let off: Vec<_> = warnings.iter().filter(|w| w.contains("\"off\"")).collect();
    assert_eq!(off.len(), 2, "{warnings:#?}");
    assert!(off[0].starts_with("routes[2].edge.max_connections_per_ip = \"off\""));
    assert!(off[1].starts_with("routes[2].edge.handshake_rate_per_ip = \"off\""));
}

#[test]
fn zero_and_unknown_words_are_refused_naming_the_key() {
    let zero = parse("max_connections_per_ip = 0");
    let (key, problem) = zero.validate("routes[0].edge").unwrap_err();
    assert_eq!(key, "routes[0].edge.max_connections_per_ip");
    assert!(problem.contains("\"off\""), "{problem}");

    let word = toml::from_str::<EdgeConfig>("max_concurrent_setups = \"none\"").unwrap_err();
    let text = word.to_string();
    assert!(text.contains("max_concurrent_setups"), "{text}");
    assert!(text.contains("\"off\""), "{text}");

    let typo =
        toml::from_str::<EdgeConfig>("handshake_rate_per_ip = { per_second = 1.0, brust = 3 }")
            .unwrap_err()
            .to_string();
    assert!(typo.contains("brust"), "{typo}");
}

#[test]
fn limits_serialise_as_written_and_unset_ones_are_left_out() {
    let cfg = parse(
        r#"
        max_connections_per_ip = 9
        handshake_rate_per_ip = "off"
        "#,
    );
    let text = toml::to_string(&cfg).unwrap();
    assert!(text.contains("max_connections_per_ip = 9"), "{text}");
    assert!(text.contains("handshake_rate_per_ip = \"off\""), "{text}");
    assert!(!text.contains("max_concurrent_setups"), "{text}");
    let back: EdgeConfig = toml::from_str(&text).unwrap();
    assert_eq!(back, cfg);
}
