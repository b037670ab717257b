use http::HeaderValue;
use proptest::prelude::*;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn headers(name: &str, values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn xff(trusted: &[&str]) -> ClientIpResolver {
    ClientIpResolver::new(
        trusted.iter().map(|s| cidr(s)).collect(),
        ForwardedHeader::XForwardedFor,
    )
}

fn fwd(trusted: &[&str]) -> ClientIpResolver {
    ClientIpResolver::new(
        trusted.iter().map(|s| cidr(s)).collect(),
        ForwardedHeader::Forwarded,
    )
}

#[test]
fn cidr_parsing_and_containment() {
    let net = cidr("10.0.0.0/8");
    assert!(net.contains(ip("10.255.1.2")));
    assert!(!net.contains(ip("11.0.0.1")));
    assert!(
        net.contains(ip("::ffff:10.1.2.3")),
        "mapped IPv6 counts as IPv4"
    );
    assert!(
        !net.contains(ip("::a01:203")),
        "only mapped, not compatible, addresses"
    );

    let host = cidr("192.168.1.7");
    assert!(host.contains(ip("192.168.1.7")));
    assert!(!host.contains(ip("192.168.1.8")));

    let v6 = cidr("2001:db8::/32");
    assert!(v6.contains(ip("2001:db8:ffff::1")));
    assert!(!v6.contains(ip("2001:db9::1")));
    assert!(!v6.contains(ip("10.0.0.1")));

    assert!(cidr("0.0.0.0/0").contains(ip("8.8.8.8")));
    assert!(!cidr("0.0.0.0/0").contains(ip("::1")));
    assert!(cidr("::/0").contains(ip("::1")));
}

#[test]
fn cidr_errors_are_specific() {
    assert_eq!(
        "10.0.0.1/8".parse::<Cidr>(),
        Err(CidrError::HostBits("10.0.0.0/8".into()))
    );
    assert!(
        "10.0.0.1/8"
            .parse::<Cidr>()
            .unwrap_err()
            .to_string()
            .contains("10.0.0.0/8")
    );
    assert_eq!(
        "10.0.0.0/33".parse::<Cidr>(),
        Err(CidrError::Prefix { max: 32 })
    );
    assert_eq!(
        "::/129".parse::<Cidr>(),
        Err(CidrError::Prefix { max: 128 })
    );
    for bad in ["10.0.0.0/", "10.0.0.0/+8", "10.0.0.0/08x", "10.0.0.0/0008"] {
        assert!(
            matches!(bad.parse::<Cidr>(), Err(CidrError::Prefix { .. })),
            "{bad}"
        );
    }
    for bad in ["", "example.com", "10.0.0/8", "10.0.0.0.0", "*"] {
        assert!(
            matches!(bad.parse::<Cidr>(), Err(CidrError::Address(_))),
            "{bad}"
        );
    }
    assert_eq!(
        "::ffff:10.0.0.0/104".parse::<Cidr>(),
        Err(CidrError::Mapped)
    );
}

#[test]
fn headers_are_ignored_from_untrusted_peers() {
    let r = xff(&["10.0.0.0/8"]);
    let h = headers("x-forwarded-for", &["1.2.3.4"]);
    assert_eq!(r.resolve(ip("203.0.113.9"), &h), Ok(ip("203.0.113.9")));
    // Nothing trusted at all: the header is never read, even when unparseable.
    let junk = headers("x-forwarded-for", &["garbage"]);
    assert_eq!(xff(&[]).resolve(ip("10.0.0.1"), &junk), Ok(ip("10.0.0.1")));
    assert_eq!(
        r.resolve(ip("::ffff:203.0.113.9"), &junk),
        Ok(ip("203.0.113.9"))
    );
}

#[test]
fn right_most_untrusted_address_wins() {
    let r = xff(&["10.0.0.0/8", "2001:db8::/32"]);
    let peer = ip("10.0.0.2");
    // The client forged the left-most entry; the trusted proxy appended the real one.
    let h = headers("x-forwarded-for", &["6.6.6.6, 198.51.100.7, 10.1.1.1"]);
    assert_eq!(r.resolve(peer, &h), Ok(ip("198.51.100.7")));
    // Several header lines form one list, in order.
    let h = headers("x-forwarded-for", &["6.6.6.6", "198.51.100.7", "10.1.1.1"]);
    assert_eq!(r.resolve(peer, &h), Ok(ip("198.51.100.7")));
    // Ports and brackets as some proxies write them.
    let h = headers("x-forwarded-for", &["198.51.100.7:5555"]);
    assert_eq!(r.resolve(peer, &h), Ok(ip("198.51.100.7")));
    let h = headers("x-forwarded-for", &["[2001:db9::5]:443, 2001:db8::1"]);
    assert_eq!(r.resolve(peer, &h), Ok(ip("2001:db9::5")));
    let h = headers("x-forwarded-for", &["[2001:db9::5]"]);
    assert_eq!(r.resolve(peer, &h), Ok(ip("2001:db9::5")));
    // Garbage left of the real client is never looked at.
    let h = headers("x-forwarded-for", &["not-an-ip, 198.51.100.7"]);
    assert_eq!(r.resolve(peer, &h), Ok(ip("198.51.100.7")));
    // Empty entries are skipped.
    let h = headers("x-forwarded-for", &[", 198.51.100.7 ,"]);
    assert_eq!(r.resolve(peer, &h), Ok(ip("198.51.100.7")));
}

#[test]
fn all_trusted_or_no_header_from_a_trusted_peer() {
    let r = xff(&["10.0.0.0/8"]);
    let peer = ip("10.0.0.2");
    assert_eq!(r.resolve(peer, &HeaderMap::new()), Ok(peer));
    let h = headers("x-forwarded-for", &["10.9.9.9, 10.1.1.1"]);
    assert_eq!(r.resolve(peer, &h), Ok(ip("10.9.9.9")));
    // Mapped forms come back canonical.
    let h = headers("x-forwarded-for", &["::ffff:198.51.100.7"]);
    assert_eq!(r.resolve(ip("::ffff:10.0.0.2"), &h), Ok(ip("198.51.100.7")));
}

#[test]
fn unreadable_hop_from_a_trusted_proxy_is_an_error() {
    let r = xff(&["10.0.0.0/8"]);
    let peer = ip("10.0.0.2");
    for bad in ["unknown", "198.51.100.7, bogus", "1.2.3.4.5"] {
        let h = headers("x-forwarded-for", &[bad]);
        assert_eq!(
            r.resolve(peer, &h),
            Err(ForwardedError("x-forwarded-for")),
            "{bad}"
        );
    }
    let mut h = HeaderMap::new();
    h.insert(
        "x-forwarded-for",
        HeaderValue::from_bytes(b"\xff1.2.3.4").unwrap(),
    );
    assert!(r.resolve(peer, &h).is_err());
}

#[test]
fn forwarded_header_for_values() {
    let r = fwd(&["10.0.0.0/8"]);
    let peer = ip("10.0.0.2");
    let h = headers(
        "forwarded",
        &[r#"for=6.6.6.6, for=198.51.100.7;proto=https;by=10.0.0.1, For="10.3.3.3:80""#],
    );
    assert_eq!(r.resolve(peer, &h), Ok(ip("198.51.100.7")));
    let h = headers(
        "forwarded",
        &[r#"proto=https;for="[2001:db8:cafe::17]:4711""#],
    );
    assert_eq!(r.resolve(peer, &h), Ok(ip("2001:db8:cafe::17")));
    // A comma inside a quoted value does not split elements.
    let h = headers("forwarded", &[r#"for=198.51.100.7;x="a,b""#]);
    assert_eq!(r.resolve(peer, &h), Ok(ip("198.51.100.7")));
    for bad in ["for=unknown", "for=_hidden", "proto=https", "for="] {
        let h = headers("forwarded", &[bad]);
        assert_eq!(
            r.resolve(peer, &h),
            Err(ForwardedError("forwarded")),
            "{bad}"
        );
    }
}

#[test]
fn only_the_configured_header_is_read() {
    let peer = ip("10.0.0.2");
    let mut h = headers("x-forwarded-for", &["198.51.100.7"]);
    h.append("forwarded", HeaderValue::from_static("for=6.6.6.6"));
    assert_eq!(
        xff(&["10.0.0.0/8"]).resolve(peer, &h),
        Ok(ip("198.51.100.7"))
    );
    assert_eq!(fwd(&["10.0.0.0/8"]).resolve(peer, &h), Ok(ip("6.6.6.6")));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn forged_prefixes_never_change_the_answer(
        forged in prop::collection::vec(any::<[u8; 4]>(), 0..6),
        client: [u8; 4],
        proxies in prop::collection::vec(0u8..=255, 0..4),
    ) {
        let r = xff(&["10.0.0.0/8"]);
        let client = Ipv4Addr::from(client);
        prop_assume!(client.octets()[0] != 10);
        let mut chain: Vec<String> = forged.iter().map(|o| Ipv4Addr::from(*o).to_string()).collect();
        chain.push(client.to_string());
        chain.extend(proxies.iter().map(|p| format!("10.0.0.{p}")));
        let h = headers("x-forwarded-for", &[&chain.join(", ")]);
        prop_assert_eq!(r.resolve(ip("10.0.0.1"), &h), Ok(IpAddr::V4(client)));
    }

    #[test]
    fn mask_contains_its_own_network(bits: u128, prefix in 0u8..=128) {
        let addr = IpAddr::V6(Ipv6Addr::from(bits));
        let net = mask(addr, prefix).unwrap();
        prop_assume!(Ipv6Addr::from(bits).to_ipv4_mapped().is_none());
        let c: Cidr = format!("{net}/{prefix}").parse().unwrap();
        prop_assert!(c.contains(addr));
    }

    #[test]
    fn resolve_never_panics(value in "\\PC{0,60}") {
        if let Ok(v) = HeaderValue::from_str(&value) {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", v.clone());
            h.insert("forwarded", v);
            let _ = xff(&["0.0.0.0/0"]).resolve(ip("10.0.0.1"), &h);
            let _ = fwd(&["0.0.0.0/0"]).resolve(ip("10.0.0.1"), &h);
        }
    }
}
