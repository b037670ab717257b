use http::HeaderValue;
use proptest::prelude::*;

use super::*;

fn entry(s: &str) -> String {
    Origin::parse_allowlist_entry(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .as_str()
        .to_owned()
}

fn entry_err(s: &str) -> String {
    Origin::parse_allowlist_entry(s).expect_err(s)
}

fn header(s: &str) -> Option<String> {
    Origin::parse_header(s.as_bytes()).map(|o| o.as_str().to_owned())
}

fn policy(entries: &[&str]) -> OriginPolicy {
    let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
    OriginPolicy::new(&entries, false, false).unwrap()
}

fn with_origin(values: &[&[u8]]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(header::ORIGIN, HeaderValue::from_bytes(v).unwrap());
    }
    h
}

#[test]
fn allowlist_entries_normalise_case_default_ports_and_trailing_slash() {
    assert_eq!(entry("https://example.com"), "https://example.com");
    assert_eq!(entry("HTTPS://Example.COM"), "https://example.com");
    assert_eq!(entry("https://example.com:443"), "https://example.com");
    assert_eq!(entry("http://example.com:80/"), "http://example.com");
    assert_eq!(entry("https://example.com/"), "https://example.com");
    assert_eq!(entry("https://example.com:80"), "https://example.com:80");
    assert_eq!(entry("http://localhost:3000"), "http://localhost:3000");
    assert_eq!(entry("http://[::1]:8080"), "http://[::1]:8080");
    assert_eq!(entry("http://127.0.0.1"), "http://127.0.0.1");
    // App shells and extensions have their own schemes.
    assert_eq!(entry("capacitor://localhost"), "capacitor://localhost");
}

#[test]
fn unicode_hosts_become_punycode_as_browsers_send_them() {
    assert_eq!(
        entry("https://bücher.example"),
        "https://xn--bcher-kva.example"
    );
    assert_eq!(
        header("https://xn--bcher-kva.example").as_deref(),
        Some("https://xn--bcher-kva.example")
    );
    // A browser never sends a raw Unicode host, so one in a header is malformed.
    assert_eq!(header("https://bücher.example"), None);
}

#[test]
fn allowlist_entries_that_are_not_origins_are_refused_with_a_hint() {
    assert!(entry_err("example.com").contains("missing scheme"));
    assert!(entry_err("//example.com").contains("https://example.com"));
    assert!(entry_err("localhost:3000").contains("missing scheme"));
    assert!(entry_err("https://example.com/app").contains("path"));
    assert!(entry_err("https://example.com/app/").contains("path"));
    assert!(entry_err("https://*.example.com").contains("wildcard"));
    assert!(entry_err("*").contains("wildcard"));
    assert!(entry_err("null").contains("null"));
    assert!(entry_err("NULL").contains("null"));
    assert!(entry_err("https://example.com?x=1").contains("query"));
    assert!(entry_err("https://example.com#top").contains("fragment"));
    assert!(entry_err("https://user@example.com").contains("user info"));
    assert!(entry_err("file:///tmp/x").contains("file"));
    assert!(entry_err("wss://example.com").contains("ws"));
    assert!(entry_err(" https://example.com").contains("whitespace"));
    assert!(entry_err("").contains("empty"));
    assert!(entry_err("https://").contains("valid"));
}

#[test]
fn headers_must_be_serialised_origins() {
    assert_eq!(
        header("https://example.com").as_deref(),
        Some("https://example.com")
    );
    assert_eq!(
        header("HTTPS://EXAMPLE.COM:443").as_deref(),
        Some("https://example.com")
    );
    assert_eq!(
        header("https://example.com:8443").as_deref(),
        Some("https://example.com:8443")
    );
    assert_eq!(
        header("http://[::1]:3000").as_deref(),
        Some("http://[::1]:3000")
    );
    for bad in [
        "null",
        "",
        "example.com",
        "https://example.com/",
        "https://example.com/path",
        "https://example.com?q",
        "https://example.com#f",
        "https://user@example.com",
        "https://example.com:",
        "https://example.com:99999",
        "https://example.com:8o",
        "https://exa mple.com",
        "https://example.com%2eevil.com",
        "https://example.com\\@evil.com",
        "https://[::1",
        "https://[]",
        "1https://example.com",
    ] {
        assert_eq!(header(bad), None, "{bad:?} should not parse");
    }
}

#[test]
fn exact_match_defeats_substring_prefix_and_suffix_attacks() {
    let p = policy(&["https://example.com", "http://localhost:3000"]);
    let ok = |o: &str| p.check(&with_origin(&[o.as_bytes()]));
    assert_eq!(ok("https://example.com"), Ok(()));
    assert_eq!(ok("https://EXAMPLE.com:443"), Ok(()));
    assert_eq!(ok("http://localhost:3000"), Ok(()));
    for attack in [
        "https://example.com.evil.com",
        "https://evil-example.com",
        "https://evilexample.com",
        "https://example.co",
        "https://sub.example.com",
        "http://example.com",
        "https://example.com:8443",
        "http://localhost",
        "http://localhost:30000",
        "https://localhost:3000",
        "wss://example.com",
    ] {
        assert!(
            matches!(ok(attack), Err(OriginProblem::NotAllowed(_))),
            "{attack} must be refused"
        );
    }
    for malformed in [
        "https://example.com/",
        "https://example.com@evil.com",
        "https://evil.com/https://example.com",
    ] {
        assert_eq!(ok(malformed), Err(OriginProblem::Malformed), "{malformed}");
    }
}

#[test]
fn null_missing_duplicate_and_non_ascii_origins() {
    let p = policy(&["https://example.com"]);
    assert_eq!(
        p.check(&with_origin(&[b"null"])),
        Err(OriginProblem::NotAllowed("null".into()))
    );
    assert_eq!(p.check(&HeaderMap::new()), Err(OriginProblem::Missing));
    assert_eq!(
        p.check(&with_origin(&[
            b"https://example.com",
            b"https://example.com"
        ])),
        Err(OriginProblem::Malformed)
    );
    assert_eq!(
        p.check(&with_origin(&[b"https://ex\xe4mple.com"])),
        Err(OriginProblem::Malformed)
    );

    let lenient = OriginPolicy::new(&["https://example.com".into()], false, true).unwrap();
    assert_eq!(lenient.check(&HeaderMap::new()), Ok(()));
    assert!(lenient.check(&with_origin(&[b"https://evil.com"])).is_err());

    let any = OriginPolicy::new(&[], true, false).unwrap();
    for h in [
        HeaderMap::new(),
        with_origin(&[b"null"]),
        with_origin(&[b"https://evil.com"]),
    ] {
        assert_eq!(any.check(&h), Ok(()));
    }
    // An empty list without allow_any (validate refuses it) lets nothing through.
    let none = OriginPolicy::new(&[], false, false).unwrap();
    assert!(none.check(&with_origin(&[b"https://example.com"])).is_err());
}

#[test]
fn refused_origin_is_kept_short_for_logs() {
    let p = policy(&["https://example.com"]);
    let long = format!("https://{}.com", "a".repeat(500));
    match p.check(&with_origin(&[long.as_bytes()])) {
        Err(OriginProblem::NotAllowed(shown)) => assert_eq!(shown.len(), 120),
        other => panic!("{other:?}"),
    }
}

fn host_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
}

fn origin_parts() -> impl Strategy<Value = (String, String, Option<u16>)> {
    (
        prop_oneof![Just("http".to_owned()), Just("https".to_owned())],
        // A numeric last label would make WHATWG parse the host as IPv4; keep it a name.
        (
            prop::collection::vec(host_label(), 0..3),
            "[a-z][a-z0-9]{0,5}",
        )
            .prop_map(|(mut l, tld)| {
                l.push(tld);
                l.join(".")
            }),
        prop::option::of(1u16..),
    )
}

fn render(scheme: &str, host: &str, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    }
}

fn flip_case(s: &str, mask: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn normalisation_is_idempotent_and_headers_agree((scheme, host, port) in origin_parts()) {
        let text = render(&scheme, &host, port);
        let norm = entry(&text);
        prop_assert_eq!(&entry(&norm), &norm);
        prop_assert_eq!(header(&text), Some(norm.clone()));
        prop_assert_eq!(header(&norm), Some(norm));
    }

    #[test]
    fn any_case_matches_the_allowed_origin((scheme, host, port) in origin_parts(), mask: u64) {
        let text = render(&scheme, &host, port);
        let p = policy(&[&text]);
        let sent = flip_case(&text, mask);
        prop_assert_eq!(p.check(&with_origin(&[sent.as_bytes()])), Ok(()));
    }

    #[test]
    fn extending_an_allowed_origin_never_matches(
        (scheme, host, port) in origin_parts(),
        extra in "[a-z0-9.\\-]{1,12}",
    ) {
        let text = render(&scheme, &host, port);
        let p = policy(&[&text]);
        for attack in [
            format!("{text}.{extra}"),
            format!("{text}{extra}"),
            format!("{scheme}://{extra}{host}"),
            format!("{scheme}://{extra}.{host}"),
        ] {
            // Equal after normalisation only if the "extension" was a no-op such as ":443".
            if entry_or_none(&attack).as_deref() == Some(entry(&text).as_str()) {
                continue;
            }
            prop_assert!(p.check(&with_origin(&[attack.as_bytes()])).is_err(), "{}", attack);
        }
    }

    #[test]
    fn parsers_never_panic(s in "\\PC{0,40}", bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        let _ = Origin::parse_allowlist_entry(&s);
        let _ = Origin::parse_header(s.as_bytes());
        let _ = Origin::parse_header(&bytes);
    }
}

fn entry_or_none(s: &str) -> Option<String> {
    Origin::parse_allowlist_entry(s)
        .ok()
        .map(|o| o.as_str().to_owned())
}
