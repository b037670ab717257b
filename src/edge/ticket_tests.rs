use proptest::prelude::*;

use super::*;
use crate::secret::SecretSource;

const KEY: &str = "0123456789abcdef0123456789abcdef-docs-example";
const NOW: u64 = 1_767_225_600;

fn key() -> Secret {
    Secret::new(KEY)
}

fn config() -> TicketConfig {
    TicketConfig {
        key: SecretSource {
            file: None,
            env: Some("UNUSED".into()),
        },
        max_age: Duration::from_secs(60),
        clock_leeway: Duration::from_secs(5),
        param: "ticket".into(),
    }
}

fn verifier(route: &str) -> TicketVerifier {
    TicketVerifier::new(&key(), &config(), route).unwrap()
}

/// Standard base64 padding, as Python's urlsafe_b64encode writes it.
fn pad(b64: &str) -> String {
    format!("{b64}{}", "=".repeat((4 - b64.len() % 4) % 4))
}

fn claims(exp: u64, route: Option<&str>, sub: Option<&str>) -> TicketClaims {
    TicketClaims {
        exp,
        route: route.map(Into::into),
        sub: sub.map(Into::into),
    }
}

#[test]
fn python_and_node_examples_produce_tickets_that_verify() {
    // Printed by the Python and Node snippets in the module docs (identical output) with the
    // clock pinned to NOW + 0.5s, key KEY, route "chat", sub "visitor-42", ttl 60.
    let from_docs = "eyJleHAiOjE3NjcyMjU2NjAsInJvdXRlIjoiY2hhdCIsInN1YiI6InZpc2l0b3ItNDIifQ.\
                     k2Zw9SKbvQ0yiTUs2NTWPWSvNdgU37jSw_e7s0QHhcQ";
    let got = verifier("chat").verify(from_docs, NOW).unwrap();
    assert_eq!(
        got,
        VerifiedTicket {
            exp: NOW + 60,
            sub: Some("visitor-42".into())
        }
    );
    // And the Rust minter writes the very same bytes.
    assert_eq!(
        claims(NOW + 60, Some("chat"), Some("visitor-42")).mint(&key()),
        from_docs
    );
    let unbound = "eyJleHAiOjE3NjcyMjU2NjB9.XMY3AWfBoKZ5QiNL-J66RO3-mb2pkI6pmj71jCWklp4";
    assert_eq!(mint_ticket(&key(), NOW + 60, None), unbound);
    // Validly signed and unexpired, but bound to no route: refused on every route.
    assert_eq!(
        verifier("any-route").verify(unbound, NOW),
        Err(TicketError::Unbound)
    );
}

#[test]
fn expiry_and_max_age_with_leeway() {
    let v = verifier("chat");
    let t = |exp| mint_ticket(&key(), exp, Some("chat"));
    assert!(v.verify(&t(NOW + 1), NOW).is_ok());
    // Expired from exp on, after the 5s leeway.
    assert!(v.verify(&t(NOW - 4), NOW).is_ok());
    assert_eq!(v.verify(&t(NOW - 5), NOW), Err(TicketError::Expired));
    assert_eq!(v.verify(&t(0), NOW), Err(TicketError::Expired));
    // No further ahead than max_age (60s) + leeway.
    assert!(v.verify(&t(NOW + 65), NOW).is_ok());
    assert_eq!(
        v.verify(&t(NOW + 66), NOW),
        Err(TicketError::TooFarInFuture)
    );
    assert_eq!(
        v.verify(&t(u64::MAX), NOW),
        Err(TicketError::TooFarInFuture)
    );
}

#[test]
fn route_binding() {
    let t = mint_ticket(&key(), NOW + 30, Some("chat"));
    assert!(verifier("chat").verify(&t, NOW).is_ok());
    assert_eq!(
        verifier("sales").verify(&t, NOW),
        Err(TicketError::WrongRoute)
    );
    assert_eq!(
        verifier("Chat").verify(&t, NOW),
        Err(TicketError::WrongRoute)
    );
}

#[test]
fn tampering_and_wrong_keys_are_refused() {
    let v = verifier("chat");
    let good = mint_ticket(&key(), NOW + 30, Some("chat"));
    let (payload, sig) = good.split_once('.').unwrap();

    // A payload re-encoded with a later expiry keeps the old signature: refused.
    let forged = B64.encode(format!(r#"{{"exp":{},"route":"chat"}}"#, NOW + 50));
    assert_eq!(
        v.verify(&format!("{forged}.{sig}"), NOW),
        Err(TicketError::BadSignature)
    );
    // Another route swapped in.
    let other = B64.encode(format!(r#"{{"exp":{},"route":"sales"}}"#, NOW + 30));
    assert_eq!(
        verifier("sales").verify(&format!("{other}.{sig}"), NOW),
        Err(TicketError::BadSignature)
    );
    // A flipped signature byte, a truncated or empty signature.
    let mut raw = B64.decode(sig).unwrap();
    raw[0] ^= 1;
    assert_eq!(
        v.verify(&format!("{payload}.{}", B64.encode(&raw)), NOW),
        Err(TicketError::BadSignature)
    );
    assert_eq!(
        v.verify(&format!("{payload}.{}", B64.encode(&raw[..16])), NOW),
        Err(TicketError::BadSignature)
    );
    assert_eq!(
        v.verify(&format!("{payload}."), NOW),
        Err(TicketError::Malformed)
    );
    // Signed with another key.
    let stranger = Secret::new("another-key-another-key-another-key!!");
    let t = mint_ticket(&stranger, NOW + 30, Some("chat"));
    assert_eq!(v.verify(&t, NOW), Err(TicketError::BadSignature));
    // Padding is tolerated.
    assert!(
        v.verify(&format!("{}.{}", pad(payload), pad(sig)), NOW)
            .is_ok()
    );
}

#[test]
fn malformed_tickets() {
    let v = verifier("chat");
    let sign = |payload: &[u8]| {
        let mut mac = new_mac(KEY.as_bytes());
        mac.update(payload);
        format!(
            "{}.{}",
            B64.encode(payload),
            B64.encode(mac.finalize().into_bytes())
        )
    };
    for bad in ["", ".", "abc", "a.b.c", "!!!.???", "eyJ.e+/="] {
        assert_eq!(v.verify(bad, NOW), Err(TicketError::Malformed), "{bad:?}");
    }
    // Correctly signed, but not the payload we expect.
    for payload in [
        &b"not json"[..],
        b"[]",
        b"{}",
        br#"{"exp":"soon"}"#,
        br#"{"exp":-1}"#,
        br#"{"exp":1.5}"#,
    ] {
        assert_eq!(
            v.verify(&sign(payload), NOW),
            Err(TicketError::Malformed),
            "{payload:?}"
        );
    }
    // Unknown fields are ignored.
    assert!(
        v.verify(
            &sign(format!(r#"{{"exp":{},"route":"chat","iat":1}}"#, NOW + 1).as_bytes()),
            NOW
        )
        .is_ok()
    );
    let long = "a".repeat(MAX_TICKET_BYTES + 1);
    assert_eq!(v.verify(&long, NOW), Err(TicketError::Malformed));
}

#[test]
fn query_parameter_lookup() {
    let v = verifier("chat");
    let t = mint_ticket(&key(), NOW + 30, Some("chat"));
    assert!(v.verify_query(Some(&format!("ticket={t}")), NOW).is_ok());
    assert!(
        v.verify_query(Some(&format!("a=1&ticket={t}&b=2")), NOW)
            .is_ok()
    );
    // Percent-encoded (e.g. by encodeURIComponent on a padded ticket) works too.
    let (payload, sig) = t.split_once('.').unwrap();
    let padded = format!("{}.{}", pad(payload), pad(sig)).replace('=', "%3D");
    assert!(padded.contains("%3D"), "{padded}");
    assert!(
        v.verify_query(Some(&format!("ticket={padded}")), NOW)
            .is_ok()
    );
    assert_eq!(v.verify_query(None, NOW), Err(TicketError::Missing));
    assert_eq!(
        v.verify_query(Some("tickets=x&ticke=y"), NOW),
        Err(TicketError::Missing)
    );
    assert_eq!(
        v.verify_query(Some(&format!("ticket={t}&ticket={t}")), NOW),
        Err(TicketError::Duplicate)
    );
    assert_eq!(v.param(), "ticket");
}

#[test]
fn short_keys_are_refused_and_the_key_never_shows() {
    let err =
        TicketVerifier::new(&Secret::new("short-secret-value"), &config(), "chat").unwrap_err();
    assert!(err.contains("32 bytes"), "{err}");
    assert!(!err.contains("short-secret-value"));
    let v = verifier("chat");
    let shown = format!("{v:?}");
    assert!(
        !shown.contains(KEY) && shown.contains("[redacted]"),
        "{shown}"
    );
    let errors = [
        TicketError::Missing,
        TicketError::Duplicate,
        TicketError::Malformed,
        TicketError::BadSignature,
        TicketError::Expired,
        TicketError::TooFarInFuture,
        TicketError::WrongRoute,
    ];
    for e in errors {
        let text = format!("{e} {e:?}");
        assert!(
            !text.contains(KEY) && !text.contains("0123456789abcdef"),
            "{text}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn minted_tickets_round_trip(
        ttl in 1u64..=60,
        route in prop::option::of("[a-z]{1,8}"),
        sub in prop::option::of("\\PC{0,30}"),
    ) {
        let c = TicketClaims { exp: NOW + ttl, route: route.clone(), sub: sub.clone() };
        let t = c.mint(&key());
        let got = verifier(route.as_deref().unwrap_or("r")).verify(&t, NOW);
        let expected = match route {
            Some(_) => Ok(VerifiedTicket { exp: NOW + ttl, sub }),
            None => Err(TicketError::Unbound),
        };
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn any_single_character_change_is_refused(index: prop::sample::Index, replacement in "[A-Za-z0-9_.-]") {
        let t = mint_ticket(&key(), NOW + 30, Some("chat"));
        let i = index.index(t.len());
        let mut changed = t.clone();
        changed.replace_range(i..=i, &replacement);
        // Changing the unused low bits of the last base64 character is refused as
        // non-canonical, so nothing but the original verifies.
        prop_assume!(changed != t);
        prop_assert!(verifier("chat").verify(&changed, NOW).is_err());
    }

    #[test]
    fn verify_never_panics(s in "\\PC{0,200}") {
        let _ = verifier("chat").verify(&s, NOW);
        let _ = verifier("chat").verify_query(Some(&s), NOW);
    }
}
