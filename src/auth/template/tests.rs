//! Tests for templates, values and JSON templates.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::*;
use crate::secret::Secret;

fn known() -> Known {
    let mut k = Known::new().with_oauth().with_session_token();
    k.add_step("guest", ["token", "id"]);
    k.add_query("lang");
    k
}

fn values() -> Values {
    let mut v = Values::new();
    v.set_access_token(Secret::new("acc ess/tok?en"));
    v.set_session_token(Secret::new("sess\"ion"));
    v.set_step_value("guest", "token", Secret::new("g&t=1#x"));
    v.set_query(HashMap::from([("lang".to_owned(), "en-GB".to_owned())]));
    v
}

#[test]
fn renders_every_kind_of_placeholder() {
    let t = Template::parse(
        "a={{ oauth.access_token }}|{{session.token}}|{{steps.guest.token}}|{{query.lang}}",
    )
    .unwrap();
    t.check(&known()).unwrap();
    assert_eq!(
        t.render(&values()).unwrap(),
        "a=acc ess/tok?en|sess\"ion|g&t=1#x|en-GB"
    );
}

#[test]
fn unknown_names_are_all_listed() {
    let err =
        Template::parse("{{foo}} {{oauth.secret}} {{steps.x}} {{query.a.b}} {{uuid}}").unwrap_err();
    let TemplateError::Unknown { names } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(names, &["foo", "oauth.secret", "steps.x", "query.a.b"]);
    assert!(err.to_string().contains("\"oauth.secret\""), "{err}");
}

#[test]
fn unclosed_placeholder_reports_offset() {
    assert_eq!(
        Template::parse("ab{{uuid").unwrap_err(),
        TemplateError::Unclosed { at: 2 }
    );
    // `}}` alone and single braces are literal.
    let t = Template::parse("{\"a\":{\"b\":1}}").unwrap();
    assert!(t.is_literal());
}

#[test]
fn undeclared_names_are_listed_once() {
    let t = Template::parse("{{steps.guest.nope}}{{steps.other.x}}{{query.q}}{{query.q}}{{uuid}}")
        .unwrap();
    let err = t.check(&known()).unwrap_err();
    assert_eq!(
        err,
        TemplateError::Undeclared {
            names: vec![
                "{{steps.guest.nope}}".into(),
                "{{steps.other.x}}".into(),
                "{{query.q}}".into()
            ]
        }
    );
    let no_oauth = Template::parse("{{oauth.access_token}}{{session.token}}").unwrap();
    let err = no_oauth.check(&Known::new()).unwrap_err().to_string();
    assert!(
        err.contains("{{oauth.access_token}}, {{session.token}}"),
        "{err}"
    );
}

#[test]
fn url_rendering_percent_encodes_values_only() {
    let t = Template::parse(
        "https://h.example/x/{{steps.guest.token}}?a={{oauth.access_token}}&l={{query.lang}}",
    )
    .unwrap();
    assert_eq!(
        t.render_url(&values()).unwrap(),
        "https://h.example/x/g%26t%3D1%23x?a=acc%20ess%2Ftok%3Fen&l=en-GB"
    );
    let mut v = Values::new();
    v.set_query(HashMap::from([("lang".to_owned(), "..".to_owned())]));
    let t = Template::parse("https://h.example/{{query.lang}}/admin").unwrap();
    assert_eq!(
        t.render_url(&v).unwrap_err(),
        RenderError::Unsafe {
            placeholder: "{{query.lang}}".into()
        }
    );
}

#[test]
fn json_string_rendering_escapes() {
    let t = Template::parse(r#"{"token":"{{session.token}}"}"#).unwrap();
    let text = t.render_json_string(&values()).unwrap();
    assert_eq!(text, r#"{"token":"sess\"ion"}"#);
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed["token"], "sess\"ion");
}

#[test]
fn header_rendering_refuses_control_characters() {
    let mut v = Values::new();
    v.set_session_token(Secret::new("a\r\nX-Evil: 1"));
    let t = Template::parse("Bearer {{session.token}}").unwrap();
    let err = t.render_header(&v).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the value of {{session.token}} cannot be used here"
    );
}

#[test]
fn missing_value_names_placeholder_not_values() {
    let t = Template::parse("{{oauth.access_token}} {{steps.guest.id}}").unwrap();
    let err = t.render(&values()).unwrap_err();
    assert_eq!(err.to_string(), "no value for {{steps.guest.id}}");
}

#[test]
fn uuid_is_fresh_per_render_and_shared_within_one() {
    let t = Template::parse("{{uuid}}/{{uuid}}").unwrap();
    let a = t.render(&Values::new()).unwrap();
    let (x, y) = a.split_once('/').unwrap();
    assert_eq!(x, y);
    assert!(Charset::Uuid.allows(x), "{x}");
    let b = t.render(&Values::new()).unwrap();
    assert_ne!(a, b);
}

#[test]
fn values_debug_redacts() {
    let text = format!("{:?}", values());
    for secret in ["acc ess", "sess\"ion", "sess\\\"ion", "g&t", "en-GB"] {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(
        text.contains("guest.token") && text.contains("lang"),
        "{text}"
    );
}

#[test]
fn fixed_origin_requires_a_literal_host() {
    let ok = Template::parse("https://api.example.com:8443/v1/{{steps.guest.id}}").unwrap();
    let origin = ok.fixed_origin(&["https"]).unwrap();
    assert_eq!(origin.as_str(), "https://api.example.com:8443/");
    let literal = Template::parse("http://h.example").unwrap();
    assert!(literal.fixed_origin(&["http", "https"]).is_ok());
    for bad in [
        "https://{{query.lang}}.example.com/",
        "https://api.example.com{{query.lang}}",
        "{{query.lang}}",
        "ftp://h.example/",
        "https://user:pw@h.example/{{uuid}}",
    ] {
        let t = Template::parse(bad).unwrap();
        assert!(t.fixed_origin(&["http", "https"]).is_err(), "{bad}");
    }
}

#[test]
fn json_template_renders_string_leaves() {
    let src = json!({
        "id": "{{uuid}}",
        "again": ["{{uuid}}", 3, true, null],
        "token": "{{session.token}}",
        "plain": "no placeholders",
        "{{key}}": "keys are literal"
    });
    let t = JsonTemplate::parse(&src).unwrap();
    t.check(&known()).unwrap();
    let out = t.render(&values()).unwrap();
    assert_eq!(out["id"], out["again"][0]);
    assert_eq!(out["again"][1], 3);
    assert_eq!(out["token"], "sess\"ion");
    assert_eq!(out["plain"], "no placeholders");
    assert_eq!(out["{{key}}"], "keys are literal");
}

#[test]
fn json_template_lists_problems_across_leaves() {
    let err = JsonTemplate::parse(&json!({"a": "{{x}}", "b": ["{{y}}"]})).unwrap_err();
    assert_eq!(
        err,
        TemplateError::Unknown {
            names: vec!["x".into(), "y".into()]
        }
    );
    let t = JsonTemplate::parse(&json!({"a": ["{{query.zz}}"]})).unwrap();
    assert!(matches!(
        t.check(&known()),
        Err(TemplateError::Undeclared { .. })
    ));
}
