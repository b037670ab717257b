//! Tests for the token-inserting rewrite of browser requests.

use serde_json::Value;

use super::super::tests::config;
use super::*;

const TOKEN: &str = "secret-session-token";

fn rewrite(message: &[u8]) -> Result<Vec<u8>, &'static str> {
    config().transform(TOKEN).transform(1, message)
}

#[test]
fn token_is_injected_and_actions_are_limited() {
    let mut t = config().transform(TOKEN);
    let out = t
        .transform(
            1,
            br#"{"action":"onMessage","message":{"type":"Text","text":"hi"}}"#,
        )
        .unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["token"], TOKEN);
    assert_eq!(v["message"]["text"], "hi");
    // A page cannot choose its own token either: it is overwritten.
    let out = t
        .transform(1, br#"{"action":"echo","token":"page-chosen"}"#)
        .unwrap();
    assert!(String::from_utf8(out).unwrap().contains(TOKEN));
    assert_eq!(
        t.transform(1, br#"{"action":"getJwt"}"#),
        Err("action not allowed")
    );
    assert_eq!(
        t.transform(1, br#"{"action":"configureSession"}"#),
        Err("action not allowed")
    );
    assert_eq!(
        t.transform(2, b"{}"),
        Err("only JSON text messages are allowed")
    );
    assert_eq!(t.transform(1, b"[1]"), Err("message must be a JSON object"));
}

#[test]
fn other_fields_are_copied_byte_for_byte() {
    let raw = br#"{"action":"onMessage","message":{ "text" : "caf\u00e9 \"x\"", "n": 1.50e3 },"tracingId":"t-1"}"#;
    let out = String::from_utf8(rewrite(raw).unwrap()).unwrap();
    assert_eq!(
        out,
        format!(
            r#"{{"action":"onMessage","message":{{ "text" : "caf\u00e9 \"x\"", "n": 1.50e3 }},"tracingId":"t-1","token":"{TOKEN}"}}"#
        )
    );
}

#[test]
fn the_page_never_chooses_the_token() {
    for raw in [
        &br#"{"token":"a","action":"echo","token":"b"}"#[..],
        br#"{"action":"echo","tok\u0065n":"escaped"}"#,
        br#"{"token":{"nested":"x"},"action":"echo"}"#,
    ] {
        let out = rewrite(raw).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(text.matches("\"token\"").count(), 1, "{text}");
        assert!(!text.contains("tok\\u0065n"), "{text}");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["token"], TOKEN, "{text}");
        assert_eq!(v["action"], "echo");
    }
}

#[test]
fn ambiguous_or_non_object_requests_are_refused() {
    assert_eq!(
        rewrite(br#"{"action":"echo","action":"getJwt"}"#),
        Err("message repeats a field")
    );
    assert_eq!(
        rewrite(br#"{"action":"echo","m":1,"m":2}"#),
        Err("message repeats a field")
    );
    for non_object in [
        &b"\"echo\""[..],
        b"null",
        b"12",
        b"  [0,0]",
        b"",
        b"not json",
    ] {
        assert_eq!(
            rewrite(non_object),
            Err("message must be a JSON object"),
            "{}",
            String::from_utf8_lossy(non_object)
        );
    }
    for broken in [
        &br#"{"action":"echo""#[..],
        br#"{"action":"echo"} trailing"#,
        br#"{"action":"echo","m":[1,}"#,
        b"{\"action\":\"echo\",\"m\":\"\xff\"}",
    ] {
        assert_eq!(
            rewrite(broken),
            Err("message is not valid JSON"),
            "{}",
            String::from_utf8_lossy(broken)
        );
    }
    assert_eq!(rewrite(br#"{"m":1}"#), Err("message has no action"));
    assert_eq!(rewrite(br#"{"action":5}"#), Err("message has no action"));
    let many: Vec<String> = (0..=MAX_FIELDS).map(|i| format!("\"f{i}\":0")).collect();
    let many = format!("{{\"action\":\"echo\",{}}}", many.join(","));
    assert_eq!(rewrite(many.as_bytes()), Err("message has too many fields"));
}

#[test]
fn huge_and_deep_values_pass_through_untouched() {
    // A 60 KiB hostile array: copied verbatim, never built into a tree.
    let array = format!("[{}0]", "0,".repeat(30 * 1024));
    let raw = format!(
        r#"{{"action":"onMessage","message":{{"type":"Text","text":"hi"}},"pad":{array}}}"#
    );
    let out = rewrite(raw.as_bytes()).unwrap();
    let expected = format!(
        r#"{{"action":"onMessage","message":{{"type":"Text","text":"hi"}},"pad":{array},"token":"{TOKEN}"}}"#
    );
    assert_eq!(out, expected.as_bytes());
    // Nesting far deeper than serde_json's recursion limit for trees (128) is fine raw.
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let raw = format!(r#"{{"action":"echo","message":{deep}}}"#);
    let out = String::from_utf8(rewrite(raw.as_bytes()).unwrap()).unwrap();
    assert!(out.contains(&deep));
    assert!(out.ends_with(&format!(r#","token":"{TOKEN}"}}"#)));
}
