//! The flow's plain-`http://` opt-in: token and step URLs off loopback need
//! `allow_insecure_http = true`, and the error names the key.

use super::*;

/// A flow with an OAuth token URL and one step URL, its secret in a temporary file.
fn flow(token_url: &str, step_url: &str, opt_in: bool) -> (FlowConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret").unwrap();
    let text = format!(
        r#"
        upstream = "wss://chat.vendor.example/s?t={{{{steps.guest.token}}}}"
        allow_insecure_http = {opt_in}
        [oauth]
        token_url = "{token_url}"
        client_id = "guestgate"
        client_secret = {{ file = "{}" }}
        [[steps]]
        name = "guest"
        url = "{step_url}"
        extract = {{ token = "/token" }}
        "#,
        secret.display()
    );
    (toml::from_str(&text).unwrap(), dir)
}

fn prepare(token_url: &str, step_url: &str, opt_in: bool) -> Result<(), String> {
    let (cfg, _dir) = flow(token_url, step_url, opt_in);
    cfg.prepare("routes[0].flow", None, None).map(drop)
}

const TOKEN: &str = "https://login.vendor.example/oauth/token";
const STEP: &str = "https://api.vendor.example/guests";

#[test]
fn https_and_literal_loopback_need_no_opt_in() {
    prepare(TOKEN, STEP, false).unwrap();
    prepare(
        "http://127.0.0.1:9000/token",
        "http://[::1]:9001/guests",
        false,
    )
    .unwrap();
}

#[test]
fn plain_http_token_url_is_refused_naming_the_key_and_the_opt_in() {
    let err = prepare("http://login.vendor.example/oauth/token", STEP, false).unwrap_err();
    assert!(err.starts_with("routes[0].flow.oauth.token_url: "), "{err}");
    assert!(
        err.contains("routes[0].flow.allow_insecure_http = true"),
        "{err}"
    );
}

#[test]
fn plain_http_step_url_is_refused_and_localhost_by_name_is_not_exempt() {
    let err = prepare(TOKEN, "http://api.vendor.example/guests", false).unwrap_err();
    assert!(err.starts_with("routes[0].flow.steps[0].url: "), "{err}");
    let err = prepare(TOKEN, "http://localhost:9000/guests", false).unwrap_err();
    assert!(err.starts_with("routes[0].flow.steps[0].url: "), "{err}");
}

#[test]
fn the_opt_in_allows_plain_http_and_is_printed_back() {
    prepare(
        "http://login.vendor.example/oauth/token",
        "http://api.vendor.example/guests",
        true,
    )
    .unwrap();
    let (cfg, _dir) = flow(TOKEN, STEP, true);
    assert!(
        toml::to_string(&cfg)
            .unwrap()
            .contains("allow_insecure_http = true")
    );
    let (cfg, _dir) = flow(TOKEN, STEP, false);
    assert!(
        !toml::to_string(&cfg)
            .unwrap()
            .contains("allow_insecure_http")
    );
}
