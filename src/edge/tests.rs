//! Whole-policy tests: config validation and [`EdgePolicy::check`] end to end.

use std::time::Duration;

use http::{HeaderValue, StatusCode, header};

use super::*;
use crate::secret::SecretSource;

const KEY: &str = "an-edge-test-key-that-is-long-enough-0123456789";

fn base() -> EdgeConfig {
    EdgeConfig {
        allowed_origins: vec!["https://chat.example.com".into()],
        ..EdgeConfig::default()
    }
}

fn ticket_config() -> TicketConfig {
    TicketConfig {
        key: SecretSource {
            file: None,
            env: Some("GUESTGATE_TICKET_KEY".into()),
        },
        max_age: Duration::from_secs(60),
        clock_leeway: Duration::from_secs(5),
        param: "ticket".into(),
    }
}

fn problem(cfg: &EdgeConfig) -> (String, String) {
    cfg.validate("routes[0].edge").unwrap_err()
}

fn request(origin: Option<&str>, xff: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(o) = origin {
        h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
    }
    if let Some(x) = xff {
        h.insert("x-forwarded-for", HeaderValue::from_str(x).unwrap());
    }
    h
}

fn peer(s: &str) -> SocketAddr {
    SocketAddr::new(s.parse().unwrap(), 50_000)
}

fn now() -> Now {
    Now {
        instant: Instant::now(),
        unix_secs: 1_767_225_600,
    }
}

const GOOD: Option<&str> = Some("https://chat.example.com");

#[test]
fn config_parses_from_toml_with_defaults() {
    let cfg: EdgeConfig = toml::from_str(
        r#"
        allowed_origins = ["https://chat.example.com", "http://localhost:3000"]
        max_connections_per_ip = 20
        handshake_rate_per_ip = { per_second = 0.5, burst = 10 }
        max_concurrent_setups = 200
        trusted_proxies = ["10.0.0.0/8", "2001:db8::/32"]
        forwarded_header = "forwarded"
        [ticket]
        key = { env = "GUESTGATE_TICKET_KEY" }
        max_age = "2m"
        "#,
    )
    .unwrap();
    cfg.validate("routes[0].edge").unwrap();
    assert_eq!(cfg.forwarded_header, ForwardedHeader::Forwarded);
    let t = cfg.ticket.as_ref().unwrap();
    assert_eq!(
        (t.max_age, t.clock_leeway, t.param.as_str()),
        (Duration::from_secs(120), Duration::from_secs(5), "ticket")
    );
    assert_eq!((cfg.ipv6_prefix_len, cfg.max_tracked_ips), (64, 100_000));
    assert!(!cfg.allow_missing_origin);

    let xff: EdgeConfig = toml::from_str("forwarded_header = \"x-forwarded-for\"").unwrap();
    assert_eq!(xff.forwarded_header, ForwardedHeader::XForwardedFor);
    assert!(toml::from_str::<EdgeConfig>("forwarded_header = \"x-real-ip\"").is_err());

    let unknown = toml::from_str::<EdgeConfig>("allowed_origin = []").unwrap_err();
    assert!(unknown.to_string().contains("allowed_origin"), "{unknown}");
    let unknown = toml::from_str::<EdgeConfig>("[ticket]\nkey = { env = \"K\" }\nttl = \"1m\"");
    assert!(unknown.is_err());
}

#[test]
fn origins_must_be_listed_or_explicitly_opted_out() {
    let (key, msg) = problem(&EdgeConfig::default());
    assert_eq!(key, "routes[0].edge.allowed_origins");
    assert!(msg.contains("allow_any_origin"), "{msg}");

    let any = EdgeConfig {
        allow_any_origin: true,
        ..EdgeConfig::default()
    };
    any.validate("routes[0].edge").unwrap();
    assert_eq!(any.warnings("routes[0].edge").len(), 1);
    assert!(any.warnings("routes[0].edge")[0].starts_with("routes[0].edge.allow_any_origin"));

    let both = EdgeConfig {
        allow_any_origin: true,
        ..base()
    };
    assert_eq!(problem(&both).0, "routes[0].edge.allow_any_origin");
    assert!(base().warnings("routes[0].edge").is_empty());
}

#[test]
fn one_liner_allows_any_origin_only_without_allow_origin_flags() {
    let open = EdgeConfig::one_liner(vec![]);
    assert!(open.allow_any_origin);
    open.validate("routes[0].edge").unwrap();
    assert!(!open.warnings("routes[0].edge").is_empty());

    let listed = EdgeConfig::one_liner(vec!["https://chat.example.com".into()]);
    assert!(!listed.allow_any_origin);
    listed.validate("routes[0].edge").unwrap();
    assert!(listed.warnings("routes[0].edge").is_empty());
}

#[test]
fn validation_names_the_exact_key() {
    let cases: Vec<(EdgeConfig, &str)> = vec![
        (
            EdgeConfig {
                allowed_origins: vec!["https://a.example".into(), "https://b.example/app".into()],
                ..base()
            },
            "allowed_origins[1]",
        ),
        (
            EdgeConfig {
                max_connections_per_ip: Limit::Max(0),
                ..base()
            },
            "max_connections_per_ip",
        ),
        (
            EdgeConfig {
                max_concurrent_setups: Limit::Max(0),
                ..base()
            },
            "max_concurrent_setups",
        ),
        (
            EdgeConfig {
                handshake_rate_per_ip: Limit::Max(RateConfig {
                    per_second: f64::NAN,
                    burst: 1,
                }),
                ..base()
            },
            "handshake_rate_per_ip.per_second",
        ),
        (
            EdgeConfig {
                handshake_rate_per_ip: Limit::Max(RateConfig {
                    per_second: 1.0,
                    burst: 0,
                }),
                ..base()
            },
            "handshake_rate_per_ip.burst",
        ),
        (
            EdgeConfig {
                trusted_proxies: vec!["10.0.0.0/8".into(), "10.0.0.1/8".into()],
                ..base()
            },
            "trusted_proxies[1]",
        ),
        (
            EdgeConfig {
                ipv6_prefix_len: 16,
                ..base()
            },
            "ipv6_prefix_len",
        ),
        (
            EdgeConfig {
                max_tracked_ips: 0,
                ..base()
            },
            "max_tracked_ips",
        ),
        (
            EdgeConfig {
                ticket: Some(TicketConfig {
                    max_age: Duration::ZERO,
                    ..ticket_config()
                }),
                ..base()
            },
            "ticket.max_age",
        ),
        (
            EdgeConfig {
                ticket: Some(TicketConfig {
                    param: "tick et".into(),
                    ..ticket_config()
                }),
                ..base()
            },
            "ticket.param",
        ),
        (
            EdgeConfig {
                ticket: Some(TicketConfig {
                    key: SecretSource {
                        file: None,
                        env: None,
                    },
                    ..ticket_config()
                }),
                ..base()
            },
            "ticket.key",
        ),
    ];
    for (cfg, key) in cases {
        let (got, msg) = problem(&cfg);
        assert_eq!(got, format!("routes[0].edge.{key}"), "{msg}");
        assert!(!msg.is_empty());
    }
    let wide = EdgeConfig {
        trusted_proxies: vec!["0.0.0.0/0".into()],
        ..base()
    };
    assert!(wide.warnings("e")[0].contains("trusted_proxies"));
}

#[test]
fn new_checks_the_ticket_key() {
    let with_ticket = EdgeConfig {
        ticket: Some(ticket_config()),
        ..base()
    };
    assert_eq!(
        EdgePolicy::new("chat", &with_ticket, None).unwrap_err().0,
        "ticket.key"
    );
    let (key, msg) =
        EdgePolicy::new("chat", &with_ticket, Some(Secret::new("too-short"))).unwrap_err();
    assert_eq!(key, "ticket.key");
    assert!(!msg.contains("too-short"));
    assert_eq!(
        EdgePolicy::new("chat", &base(), Some(Secret::new(KEY)))
            .unwrap_err()
            .0,
        "ticket"
    );
    assert_eq!(
        EdgePolicy::new("chat", &EdgeConfig::default(), None)
            .unwrap_err()
            .0,
        "allowed_origins"
    );
    let policy = EdgePolicy::new("chat", &with_ticket, Some(Secret::new(KEY))).unwrap();
    assert!(!format!("{policy:?}").contains(KEY));
}

#[test]
fn origin_rejection_is_403_and_costs_no_allowance() {
    let cfg = EdgeConfig {
        max_connections_per_ip: Limit::Max(1),
        handshake_rate_per_ip: Limit::Max(RateConfig {
            per_second: 1.0,
            burst: 1,
        }),
        ..base()
    };
    let policy = EdgePolicy::new("chat", &cfg, None).unwrap();
    let p = peer("198.51.100.7");
    let t = now();
    for _ in 0..5 {
        let r = policy
            .check(
                p,
                &request(Some("https://chat.example.com.evil.com"), None),
                None,
                t,
            )
            .unwrap_err();
        assert_eq!(
            (r.status(), r.reason_label()),
            (StatusCode::FORBIDDEN, "origin")
        );
        assert_eq!(r.retry_after(), None);
        assert_eq!(r.to_string(), "origin not allowed");
    }
    let missing = policy.check(p, &request(None, None), None, t).unwrap_err();
    assert_eq!(missing.reason_label(), "origin");
    // Refused attempts did not use the single token or the single slot.
    let admitted = policy.check(p, &request(GOOD, None), None, t).unwrap();
    assert_eq!(admitted.client_ip, p.ip());
    assert!(admitted.ticket.is_none());
}

#[test]
fn per_ip_slot_is_held_by_the_admission() {
    let cfg = EdgeConfig {
        max_connections_per_ip: Limit::Max(2),
        ..base()
    };
    let policy = EdgePolicy::new("chat", &cfg, None).unwrap();
    let (p, t, h) = (peer("198.51.100.7"), now(), request(GOOD, None));
    let a = policy.check(p, &h, None, t).unwrap();
    let b = policy.check(p, &h, None, t).unwrap();
    let refused = policy.check(p, &h, None, t).unwrap_err();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.retry_after_secs(), Some(10));
    // A different client is unaffected.
    let _other = policy.check(peer("198.51.100.8"), &h, None, t).unwrap();
    drop(a);
    let _c = policy.check(p, &h, None, t).unwrap();
    drop(b);
}

#[test]
fn rate_refusal_releases_the_per_ip_slot() {
    let cfg = EdgeConfig {
        max_connections_per_ip: Limit::Max(5),
        handshake_rate_per_ip: Limit::Max(RateConfig {
            per_second: 1.0,
            burst: 1,
        }),
        ..base()
    };
    let policy = EdgePolicy::new("chat", &cfg, None).unwrap();
    let (p, t, h) = (peer("198.51.100.7"), now(), request(GOOD, None));
    let _held = policy.check(p, &h, None, t).unwrap();
    let r = policy.check(p, &h, None, t).unwrap_err();
    assert_eq!((r.reason_label(), r.retry_after_secs()), ("rate", Some(1)));
    assert_eq!(policy.per_ip.as_ref().unwrap().count(p.ip()), 1);
    let later = Now {
        instant: t.instant + Duration::from_secs(1),
        ..t
    };
    let _second = policy.check(p, &h, None, later).unwrap();
}

#[test]
fn ipv6_clients_share_limits_per_prefix_but_keep_their_address() {
    let cfg = EdgeConfig {
        max_connections_per_ip: Limit::Max(1),
        ..base()
    };
    let policy = EdgePolicy::new("chat", &cfg, None).unwrap();
    let (t, h) = (now(), request(GOOD, None));
    let a = policy.check(peer("2001:db8:1:2::1"), &h, None, t).unwrap();
    assert_eq!(a.client_ip, "2001:db8:1:2::1".parse::<IpAddr>().unwrap());
    // Same /64: same allowance.
    assert!(
        policy
            .check(peer("2001:db8:1:2:ffff::9"), &h, None, t)
            .is_err()
    );
    // Next /64: its own.
    let _b = policy.check(peer("2001:db8:1:3::1"), &h, None, t).unwrap();
    // IPv4-mapped peers count as their IPv4 address.
    let _v4 = policy.check(peer("198.51.100.7"), &h, None, t).unwrap();
    assert!(
        policy
            .check(peer("::ffff:198.51.100.7"), &h, None, t)
            .is_err()
    );
}

#[test]
fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    let cfg = EdgeConfig {
        max_connections_per_ip: Limit::Max(1),
        trusted_proxies: vec!["10.0.0.0/8".into()],
        ..base()
    };
    let policy = EdgePolicy::new("chat", &cfg, None).unwrap();
    let t = now();
    let via_proxy = request(GOOD, Some("6.6.6.6, 198.51.100.7"));
    let a = policy.check(peer("10.0.0.5"), &via_proxy, None, t).unwrap();
    assert_eq!(a.client_ip, "198.51.100.7".parse::<IpAddr>().unwrap());
    // Another client behind the same proxy has its own allowance...
    let other = request(GOOD, Some("198.51.100.8"));
    let _b = policy.check(peer("10.0.0.5"), &other, None, t).unwrap();
    // ...and the first one is at its cap whichever proxy it comes through.
    assert!(policy.check(peer("10.0.0.6"), &via_proxy, None, t).is_err());
    // From an untrusted peer the header is ignored.
    let direct = policy
        .check(peer("203.0.113.1"), &via_proxy, None, t)
        .unwrap();
    assert_eq!(direct.client_ip, "203.0.113.1".parse::<IpAddr>().unwrap());
    // A trusted proxy writing nonsense is a 400.
    let r = policy
        .check(peer("10.0.0.5"), &request(GOOD, Some("unknown")), None, t)
        .unwrap_err();
    assert_eq!(
        (r.status(), r.reason_label()),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
}

#[test]
fn tickets_are_checked_before_any_allowance_is_used() {
    let cfg = EdgeConfig {
        ticket: Some(ticket_config()),
        handshake_rate_per_ip: Limit::Max(RateConfig {
            per_second: 1.0,
            burst: 1,
        }),
        ..base()
    };
    let policy = EdgePolicy::new("chat", &cfg, Some(Secret::new(KEY))).unwrap();
    let (p, t, h) = (peer("198.51.100.7"), now(), request(GOOD, None));
    let key = Secret::new(KEY);
    let wrong_key = Secret::new("a-different-key-that-is-long-enough-987654321");
    let cases = [
        (None, TicketError::Missing),
        (Some(String::from("ticket=garbage")), TicketError::Malformed),
        (
            Some(format!(
                "ticket={}",
                mint_ticket(&key, t.unix_secs - 10, None)
            )),
            TicketError::Expired,
        ),
        (
            Some(format!(
                "ticket={}",
                mint_ticket(&key, t.unix_secs + 3600, None)
            )),
            TicketError::TooFarInFuture,
        ),
        (
            Some(format!(
                "ticket={}",
                mint_ticket(&key, t.unix_secs + 30, Some("sales"))
            )),
            TicketError::WrongRoute,
        ),
        (
            Some(format!(
                "ticket={}",
                mint_ticket(&key, t.unix_secs + 30, None)
            )),
            TicketError::Unbound,
        ),
        (
            Some(format!(
                "ticket={}",
                mint_ticket(&wrong_key, t.unix_secs + 30, None)
            )),
            TicketError::BadSignature,
        ),
    ];
    for (query, expected) in cases {
        let r = policy.check(p, &h, query.as_deref(), t).unwrap_err();
        assert_eq!(r, Rejection::Ticket(expected));
        assert_eq!(
            (r.status(), r.reason_label()),
            (StatusCode::FORBIDDEN, "ticket")
        );
        assert!(!r.to_string().contains(KEY) && !format!("{r:?}").contains(KEY));
    }
    let ticket = TicketClaims {
        exp: t.unix_secs + 30,
        route: Some("chat".into()),
        sub: Some("visitor-42".into()),
    }
    .mint(&key);
    let a = policy
        .check(p, &h, Some(&format!("lang=en&ticket={ticket}")), t)
        .unwrap();
    assert_eq!(a.ticket.unwrap().sub.as_deref(), Some("visitor-42"));
}

#[test]
fn setup_cap_is_separate_from_admission() {
    let cfg = EdgeConfig {
        max_concurrent_setups: Limit::Max(1),
        ..base()
    };
    let policy = EdgePolicy::new("chat", &cfg, None).unwrap();
    let s = policy.try_begin_setup().unwrap();
    let r = policy.try_begin_setup().unwrap_err();
    assert_eq!(
        (r.status(), r.reason_label(), r.retry_after_secs()),
        (StatusCode::SERVICE_UNAVAILABLE, "global_cap", Some(2))
    );
    drop(s);
    let _s = policy.try_begin_setup().unwrap();

    let unlimited = EdgePolicy::new("chat", &base(), None).unwrap();
    let guards: Vec<_> = (0..100)
        .map(|_| unlimited.try_begin_setup().unwrap())
        .collect();
    assert_eq!(guards.len(), 100, "no cap: every set-up begins");
    drop(guards);
}

#[test]
fn every_rejection_maps_to_a_documented_label_and_status() {
    let d = Duration::from_millis(1500);
    let all = [
        Rejection::Origin(OriginProblem::Missing),
        Rejection::Rate { retry_after: d },
        Rejection::PerIpCap { retry_after: d },
        Rejection::GlobalCap { retry_after: d },
        Rejection::SetupCap { retry_after: d },
        Rejection::Ticket(TicketError::Expired),
        Rejection::BadRequest("x"),
        Rejection::Draining,
    ];
    for r in &all {
        assert!(
            crate::metrics::EDGE_REJECTION_REASONS.contains(&r.reason_label()),
            "{r:?}"
        );
        assert!(matches!(r.status().as_u16(), 400 | 403 | 429 | 503));
        // Every 429 and capacity 503 says when to come back.
        if r.status() == StatusCode::TOO_MANY_REQUESTS || r.reason_label() == "global_cap" {
            assert_eq!(r.retry_after_secs(), Some(2), "{r:?}");
        }
        let text = r.to_string();
        assert!(
            !text.is_empty() && text.len() < 60 && text == text.to_lowercase(),
            "{text}"
        );
    }
    assert_eq!(
        Rejection::Draining.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[test]
fn guards_and_policy_can_cross_tasks() {
    fn send_static<T: Send + 'static>() {}
    fn shared<T: Send + Sync + 'static>() {}
    send_static::<Admission>();
    send_static::<SetupGuard>();
    shared::<EdgePolicy>();
    shared::<Rejection>();
}

#[test]
fn refused_per_ip_attempts_leave_no_entries() {
    let cfg = EdgeConfig {
        max_connections_per_ip: Limit::Max(1),
        ..base()
    };
    let policy = EdgePolicy::new("chat", &cfg, None).unwrap();
    let (t, h) = (now(), request(GOOD, None));
    let held: Vec<_> = (0..50u8)
        .map(|i| {
            policy
                .check(peer(&format!("198.51.100.{i}")), &h, None, t)
                .unwrap()
        })
        .collect();
    for i in 0..50u8 {
        assert!(
            policy
                .check(peer(&format!("198.51.100.{i}")), &h, None, t)
                .is_err()
        );
    }
    let tracker = policy.per_ip.as_ref().unwrap();
    assert_eq!(tracker.tracked_ips(), 50);
    drop(held);
    assert_eq!(tracker.tracked_ips(), 0);
}
