//! Tests for resume tickets and their keys.

use super::*;

const K1: [u8; KEY_LEN] = [7; KEY_LEN];
const K2: [u8; KEY_LEN] = [9; KEY_LEN];
const NOW: u64 = 1_700_000_000;
const TOKEN: &str = "canary-session-token-5f2c";

fn ticket(route: &str) -> ResumeTicket {
    ResumeTicket::new(route, Secret::new(TOKEN), NOW, Duration::from_secs(3600))
}

fn keys(k: &[[u8; KEY_LEN]]) -> ResumeKeys {
    ResumeKeys::from_bytes(k).unwrap()
}

#[test]
fn round_trip() {
    let keys = keys(&[K1]);
    let sealed = keys.seal(&ticket("genesys"));
    assert!(!sealed.contains(TOKEN));
    assert!(
        sealed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let opened = keys.open(&sealed, "genesys", NOW + 10).unwrap();
    assert_eq!(opened, ticket("genesys"));
    assert_eq!(opened.expires_at_unix, NOW + 3600);
    // Fresh nonce per seal.
    assert_ne!(sealed, keys.seal(&ticket("genesys")));
}

#[test]
fn a_signed_in_ticket_carries_the_refresh_token_sealed_and_through_renewals() {
    let keys = keys(&[K1]);
    let refresh = "canary-refresh-token-9d1e";
    let t = ticket("genesys").with_refresh_token(Some(Secret::new(refresh)));
    let sealed = keys.seal(&t);
    assert!(!sealed.contains(refresh));
    let opened = keys.open(&sealed, "genesys", NOW + 1).unwrap();
    assert_eq!(
        opened.refresh_token.as_ref().map(Secret::expose),
        Some(refresh)
    );
    let renewed = opened
        .renewed(
            NOW + 2,
            Duration::from_secs(3600),
            Duration::from_secs(7200),
        )
        .unwrap();
    assert_eq!(
        renewed.refresh_token.as_ref().map(Secret::expose),
        Some(refresh)
    );
    // A guest ticket has none.
    let guest = keys
        .open(&keys.seal(&ticket("genesys")), "genesys", NOW)
        .unwrap();
    assert_eq!(guest.refresh_token, None);
}

#[test]
fn tokens_needing_json_escapes_survive() {
    let keys = keys(&[K1]);
    let mut t = ticket("r");
    t.session_token = Secret::new("q\"u\\o\u{e9}\n".repeat(200));
    let opened = keys.open(&keys.seal(&t), "r", NOW).unwrap();
    assert_eq!(opened, t);
}

#[test]
fn a_maximal_genesys_token_fits() {
    let keys = keys(&[K1]);
    let mut t = ticket("genesys-web-messaging");
    t.session_token = Secret::new("x".repeat(2048));
    let sealed = keys.seal(&t);
    assert!(sealed.len() <= MAX_TICKET_LEN, "{}", sealed.len());
    assert!(keys.open(&sealed, "genesys-web-messaging", NOW).is_ok());
}

#[test]
fn rotation_first_seals_all_open() {
    let old = keys(&[K1]);
    let sealed_old = old.seal(&ticket("r"));
    let rotated = keys(&[K2, K1]);
    assert_eq!(rotated.open(&sealed_old, "r", NOW).unwrap(), ticket("r"));
    let sealed_new = rotated.seal(&ticket("r"));
    assert_eq!(
        keys(&[K2]).open(&sealed_new, "r", NOW).unwrap(),
        ticket("r")
    );
    assert_eq!(old.open(&sealed_new, "r", NOW), Err(ResumeError::Tampered));
    // Once the old key is removed, its tickets no longer open.
    assert_eq!(
        keys(&[K2]).open(&sealed_old, "r", NOW),
        Err(ResumeError::Tampered)
    );
}

#[test]
fn any_flipped_byte_is_refused() {
    let keys = keys(&[K1]);
    let sealed = keys.seal(&ticket("r"));
    let raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
    for i in 0..raw.len() {
        let mut bad = raw.clone();
        bad[i] ^= 0x01;
        let err = keys
            .open(&URL_SAFE_NO_PAD.encode(&bad), "r", NOW)
            .unwrap_err();
        let expected = if i == 0 {
            ResumeError::Malformed
        } else {
            ResumeError::Tampered
        };
        assert_eq!(err, expected, "byte {i}");
        assert_eq!(err.outcome_label(), "tampered");
    }
}

#[test]
fn another_route_is_tampered() {
    let keys = keys(&[K1]);
    let sealed = keys.seal(&ticket("route-a"));
    assert_eq!(
        keys.open(&sealed, "route-b", NOW),
        Err(ResumeError::Tampered)
    );
}

#[test]
fn expiry_is_exclusive() {
    let keys = keys(&[K1]);
    let sealed = keys.seal(&ticket("r"));
    assert!(keys.open(&sealed, "r", NOW + 3599).is_ok());
    let err = keys.open(&sealed, "r", NOW + 3600).unwrap_err();
    assert_eq!(err, ResumeError::Expired);
    assert_eq!(err.outcome_label(), "expired");
}

#[test]
fn garbage_is_malformed() {
    let keys = keys(&[K1]);
    let long = "A".repeat(MAX_TICKET_LEN + 1);
    for garbage in ["", "not base64!", "AAAA", "Zm9v", long.as_str()] {
        assert_eq!(
            keys.open(garbage, "r", NOW),
            Err(ResumeError::Malformed),
            "{garbage:.20}"
        );
    }
    let unknown_version = URL_SAFE_NO_PAD.encode([2u8; 64]);
    assert_eq!(
        keys.open(&unknown_version, "r", NOW),
        Err(ResumeError::Malformed)
    );
    assert_eq!(ResumeError::Malformed.outcome_label(), "tampered");
    assert_eq!(ResumeError::WrongRoute.outcome_label(), "tampered");
}

#[test]
fn keys_and_tokens_stay_out_of_debug_and_errors() {
    let keys = keys(&[K1, K2]);
    assert_eq!(format!("{keys:?}"), "ResumeKeys { keys: 2, .. }");
    assert_eq!(keys.key_count(), 2);
    let t = ticket("r");
    assert!(!format!("{t:?}").contains(TOKEN));
    let sealed = keys.seal(&t);
    let err = keys.open(&sealed, "x", NOW).unwrap_err();
    assert!(!format!("{err} {err:?}").contains(&sealed[..16]));
    assert!(matches!(
        ResumeKeys::from_bytes(&[]),
        Err(ResumeKeyError::NoKeys)
    ));
}

fn key_file(dir: &tempfile::TempDir, name: &str, content: &str) -> SecretSource {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    SecretSource {
        file: Some(path),
        env: None,
    }
}

#[test]
fn load_decodes_base64_keys() {
    let dir = tempfile::tempdir().unwrap();
    let k2 = base64::engine::general_purpose::STANDARD.encode(K2);
    let k1_unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(K1);
    let config = ResumeConfig::new(vec![
        key_file(&dir, "k2", &format!("{k2}\n")),
        key_file(&dir, "k1", &k1_unpadded),
    ]);
    config.validate("routes[0].resume").unwrap();
    let loaded = config.load().unwrap();
    assert_eq!(loaded.key_count(), 2);
    let sealed = keys(&[K1]).seal(&ticket("r"));
    assert!(loaded.open(&sealed, "r", NOW).is_ok());
    assert!(
        keys(&[K2])
            .open(&loaded.seal(&ticket("r")), "r", NOW)
            .is_ok()
    );
}

#[test]
fn load_errors_name_the_index_never_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = base64::engine::general_purpose::STANDARD.encode(K1);
    let short = base64::engine::general_purpose::STANDARD.encode(b"canary-short-key");
    let config = ResumeConfig::new(vec![
        key_file(&dir, "good", &good),
        key_file(&dir, "short", &short),
    ]);
    let err = config.load().unwrap_err().to_string();
    assert_eq!(
        err,
        "keys[1]: decodes to 16 bytes; a resume key must be exactly 32"
    );

    let config = ResumeConfig::new(vec![key_file(&dir, "hex", &"ab".repeat(32))]);
    let err = config.load().unwrap_err();
    assert!(
        matches!(err, ResumeKeyError::Length { index: 0, len: 48 }),
        "{err:?}"
    );
    let config = ResumeConfig::new(vec![key_file(&dir, "bad", "canary*not*base64")]);
    let err = config.load().unwrap_err().to_string();
    assert!(err.starts_with("keys[0]: not valid base64"), "{err}");
    assert!(!err.contains("canary"), "{err}");
}

#[test]
fn config_defaults_and_validation() {
    let config: ResumeConfig = toml::from_str("keys = [{ env = \"RESUME_KEY\" }]").unwrap();
    assert_eq!(config.ttl, Duration::from_secs(24 * 3600));
    assert_eq!(config.param, "resume");
    config.validate("r").unwrap();
    let config: ResumeConfig = toml::from_str("keys = []\nttl = \"0s\"\nparam = \"a b\"").unwrap();
    let err = config.validate("routes[0].resume").unwrap_err();
    for expected in [
        "routes[0].resume.keys: give at least one key",
        "routes[0].resume.ttl:",
        "routes[0].resume.param:",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in {err}");
    }
    let both = ResumeConfig::new(vec![SecretSource {
        file: Some("/k".into()),
        env: Some("K".into()),
    }]);
    assert!(
        both.validate("x")
            .unwrap_err()
            .contains("x.keys[0]: give exactly one")
    );
    assert!(unix_now() > NOW);
}

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

#[test]
fn renewals_stop_resuming_after_max_lifetime() {
    let keys = keys(&[K1]);
    let ttl = Duration::from_secs(DAY);
    let max_lifetime = Duration::from_secs(7 * DAY);
    let mut sealed = keys.seal(&ResumeTicket::new("r", Secret::new(TOKEN), NOW, ttl));
    // A page that reconnects every 12 hours keeps renewing its ticket...
    let mut now = NOW;
    let mut renewals = 0;
    loop {
        now += 12 * HOUR;
        let Ok(opened) = keys.open(&sealed, "r", now) else {
            break;
        };
        assert_eq!(opened.first_issued_at_unix, NOW);
        assert!(opened.expires_at_unix <= NOW + 7 * DAY);
        let Some(renewed) = opened.renewed(now, ttl, max_lifetime) else {
            break;
        };
        sealed = keys.seal(&renewed);
        renewals += 1;
        assert!(renewals < 100, "renewals never stopped");
    }
    // ...until seven days after the first ticket, not one day after the last renewal.
    assert_eq!(now, NOW + 7 * DAY);
    assert_eq!(renewals, 13);
    assert_eq!(keys.open(&sealed, "r", now), Err(ResumeError::Expired));
    // The last renewal was cut short to the end of the conversation's lifetime.
    assert!(keys.open(&sealed, "r", now - 1).is_ok());
}

#[test]
fn renewal_carries_the_first_issue_time_and_refuses_past_the_end() {
    let t = ticket("r");
    let ttl = Duration::from_secs(HOUR);
    let max = Duration::from_secs(2 * HOUR);
    let r = t.renewed(NOW + 10, ttl, max).unwrap();
    assert_eq!(
        (r.issued_at_unix, r.expires_at_unix, r.first_issued_at_unix),
        (NOW + 10, NOW + 10 + HOUR, NOW)
    );
    assert_eq!(r.session_token, t.session_token);
    let r = t.renewed(NOW + 90 * 60, ttl, max).unwrap();
    assert_eq!(r.expires_at_unix, NOW + 2 * HOUR);
    assert_eq!(t.renewed(NOW + 2 * HOUR, ttl, max), None);
    // A max_lifetime lowered since the ticket was issued applies at once.
    assert_eq!(t.renewed(NOW + 10, ttl, Duration::from_secs(10)), None);
}

/// Seals `payload` as a version-1 ticket the way guestgate did before `f` existed.
fn seal_raw(keys: &ResumeKeys, route: &str, payload: &str) -> String {
    let (id, cipher) = &keys.keys[0];
    let nonce = [3u8; 12];
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: payload.as_bytes(),
                aad: &aad(*id, route),
            },
        )
        .unwrap();
    let mut out = vec![VERSION, *id];
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    URL_SAFE_NO_PAD.encode(out)
}

#[test]
fn tickets_from_before_max_lifetime_open_as_first_issued_at_their_issue_time() {
    let keys = keys(&[K1]);
    let old = format!(r#"{{"r":"r","t":"{TOKEN}","i":{NOW},"e":{}}}"#, NOW + HOUR);
    let opened = keys
        .open(&seal_raw(&keys, "r", &old), "r", NOW + 1)
        .unwrap();
    assert_eq!(opened, ticket("r"));
    assert_eq!(opened.first_issued_at_unix, NOW);
    // New tickets carry the field.
    let sealed = keys.seal(&ticket("r"));
    let raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
    let plain = keys.keys[0]
        .1
        .decrypt(
            Nonce::from_slice(&raw[2..HEADER_LEN]),
            Payload {
                msg: &raw[HEADER_LEN..],
                aad: &aad(keys.keys[0].0, "r"),
            },
        )
        .unwrap();
    assert!(
        String::from_utf8(plain)
            .unwrap()
            .contains(&format!("\"f\":{NOW}"))
    );
}

#[test]
fn max_lifetime_defaults_to_a_week_and_is_at_least_ttl() {
    let config: ResumeConfig = toml::from_str("keys = [{ env = \"K\" }]").unwrap();
    assert_eq!(config.max_lifetime, Duration::from_secs(7 * DAY));
    let config: ResumeConfig =
        toml::from_str("keys = [{ env = \"K\" }]\nttl = \"2d\"\nmax_lifetime = \"1d\"").unwrap();
    let err = config.validate("routes[0].resume").unwrap_err();
    assert!(
        err.contains("routes[0].resume.max_lifetime: must be at least ttl"),
        "{err}"
    );
    let config: ResumeConfig =
        toml::from_str("keys = [{ env = \"K\" }]\nttl = \"1h\"\nmax_lifetime = \"1h\"").unwrap();
    config.validate("r").unwrap();
}
