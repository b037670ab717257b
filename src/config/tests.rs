use super::*;

const MINIMAL: &str = r#"
[[routes]]
upstream = "ws://127.0.0.1:9000/"
edge.allow_any_origin = true
"#;

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::parse(MINIMAL).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.routes[0].path, "/ws");
    assert_eq!(c.routes[0].relay.idle_timeout, Duration::from_secs(120));
    assert_eq!(c.server.worker_threads, None, "one per CPU unless set");
    let set = Config::parse(&format!("[server]\nworker_threads = 3\n{MINIMAL}")).unwrap();
    assert_eq!(set.server.worker_threads, Some(3));
}

#[test]
fn unknown_key_is_named() {
    let err = Config::parse("[server]\nlisten_adress = \"127.0.0.1:1\"\n").unwrap_err();
    assert!(err.to_string().contains("listen_adress"), "{err}");
}

#[test]
fn bad_duration_is_named() {
    let text = format!("{MINIMAL}[routes.relay]\nidle_timeout = \"soon\"\n");
    let err = Config::parse(&text).unwrap_err().to_string();
    assert!(err.contains("idle_timeout"), "{err}");
}

#[test]
fn routes_must_list_origins_or_opt_out() {
    let err = Config::parse("[[routes]]\nupstream = \"ws://x/\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("routes[0].edge"), "{err}");
    let ok = "[[routes]]\nupstream = \"ws://x/\"\nedge.allowed_origins = [\"https://www.example.com\"]\n";
    Config::parse(ok).unwrap();
}

#[test]
fn genesys_preset_replaces_the_upstream_url() {
    let text = r#"
[[routes]]
name = "chat"
edge.allowed_origins = ["https://www.example.com"]
[routes.genesys]
domain = "mypurecloud.de"
deployment_id = "abc-123"
origin = "https://www.example.com"
"#;
    let c = Config::parse(text).unwrap();
    assert!(matches!(
        c.routes[0].upstream.preset(),
        Some(crate::preset::PresetConfig::Genesys(g)) if g.domain.as_deref() == Some("mypurecloud.de")
    ));
    let both = format!("{text}\n");
    let both = both.replace("name = \"chat\"", "name = \"chat\"\nupstream = \"ws://x/\"");
    let err = Config::parse(&both).unwrap_err().to_string();
    assert!(err.contains("routes[0].upstream"), "{err}");
    let bad = text.replace("mypurecloud.de", "example.org");
    let err = Config::parse(&bad).unwrap_err().to_string();
    assert!(err.contains("routes[0].genesys.domain"), "{err}");
}

#[test]
fn semantic_errors_name_the_key() {
    let cases = [
        (
            "[[routes]]\nupstream = \"http://x/\"\n",
            "routes[0].upstream",
        ),
        (
            "[[routes]]\nupstream = \"ws://x/\"\npath = \"ws\"\n",
            "routes[0].path",
        ),
        (
            "[[routes]]\nupstream = \"ws://x/\"\nedge.allow_any_origin = true\n[[routes]]\nupstream = \"ws://y/\"\nedge.allow_any_origin = true\n",
            "routes[1].path",
        ),
        (
            "[[routes]]\nupstream = \"ws://x/\"\n[routes.relay]\nbuffer_bytes = 10\n",
            "routes[0].relay.buffer_bytes",
        ),
        (
            "[[routes]]\nupstream = \"ws://x/\"\n[routes.relay]\nbrowser_max_message_bytes = 200\nbrowser_max_frame_bytes = 300\n",
            "routes[0].relay.browser_max_message_bytes",
        ),
        (
            "[server]\nmax_connections = 0\n[[routes]]\nupstream = \"ws://x/\"\n",
            "server.max_connections",
        ),
        (
            "[server]\nworker_threads = 0\n[[routes]]\nupstream = \"ws://x/\"\n",
            "server.worker_threads",
        ),
        (
            "[server]\nworker_threads = 20000\n[[routes]]\nupstream = \"ws://x/\"\n",
            "server.worker_threads",
        ),
        ("", "routes"),
    ];
    for (text, key) in cases {
        let err = Config::parse(text).unwrap_err().to_string();
        assert!(err.contains(key), "{text:?} gave {err}");
    }
}

#[test]
fn zero_ping_interval_turns_pings_off() {
    let text = format!("{MINIMAL}[routes.relay]\nbrowser_ping_interval = \"0s\"\n");
    let c = Config::parse(&text).unwrap();
    assert_eq!(c.routes[0].relay.to_relay_config().browser_ping, None);
}

#[test]
fn a_route_has_exactly_one_kind_of_upstream() {
    let genesys = "[routes.genesys]\ndomain = \"mypurecloud.de\"\ndeployment_id = \"abc\"\norigin = \"https://www.example.com\"\n";
    let flow = "[routes.flow]\nupstream = \"wss://chat.example.com/s\"\n";
    let head = "[[routes]]\nedge.allow_any_origin = true\n";
    let cases = [
        (head.to_string(), "routes[0].upstream: give an upstream URL"),
        (
            format!("{head}upstream = \"ws://x/\"\n{flow}"),
            "routes[0].upstream: give exactly one of",
        ),
        (
            format!("{head}{genesys}{flow}"),
            "routes[0].upstream: give exactly one of",
        ),
        (
            format!("{head}upstream_origin = \"https://a.example\"\n{genesys}"),
            "routes[0].upstream_origin: leave it out: the genesys-web-messaging preset sets the Origin",
        ),
        (
            format!("{head}upstream = \"ws://x/\"\n[routes.resume]\nkeys = [{{ env = \"K\" }}]\n"),
            "routes[0].resume: needs a preset that has sessions",
        ),
    ];
    for (text, expected) in cases {
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains(expected), "{text:?} gave {err}");
    }
    let c = Config::parse(&format!("{head}{flow}")).unwrap();
    assert!(matches!(c.routes[0].upstream, UpstreamConfig::Flow { .. }));
    let c = Config::parse(MINIMAL).unwrap();
    assert!(
        matches!(&c.routes[0].upstream, UpstreamConfig::Relay { url, .. } if url.as_str() == "ws://127.0.0.1:9000/")
    );
}

#[test]
fn route_names_are_unique() {
    let text = "[[routes]]\nname = \"chat\"\npath = \"/a\"\nupstream = \"ws://x/\"\nedge.allow_any_origin = true\n[[routes]]\nname = \"chat\"\npath = \"/b\"\nupstream = \"ws://y/\"\nedge.allow_any_origin = true\n";
    let err = Config::parse(text).unwrap_err().to_string();
    assert!(err.contains("routes[1].name"), "{err}");
    assert!(err.contains("unique"), "{err}");
    Config::parse(&text.replacen(
        "name = \"chat\"\npath = \"/b\"",
        "name = \"other\"\npath = \"/b\"",
        1,
    ))
    .unwrap();
}

#[test]
fn the_effective_config_prints_in_the_file_shape_and_parses_back() {
    let text = r#"
[[routes]]
name = "chat"
edge.allowed_origins = ["https://www.example.com"]
[routes.genesys]
domain = "mypurecloud.de"
deployment_id = "abc-123"
origin = "https://www.example.com"
[[routes]]
name = "plain"
path = "/plain"
upstream = "wss://chat.example.com/socket"
upstream_origin = "https://www.example.com"
edge.allow_any_origin = true
"#;
    let c = Config::parse(text).unwrap();
    let printed = toml::to_string_pretty(&c).unwrap();
    assert!(printed.contains("[routes.genesys]"), "{printed}");
    assert!(
        printed.contains("upstream_origin = \"https://www.example.com\""),
        "{printed}"
    );
    let again = Config::parse(&printed).unwrap();
    assert_eq!(toml::to_string_pretty(&again).unwrap(), printed);
}

#[test]
fn subprotocols_are_tokens_and_not_for_presets() {
    let ok = format!("{MINIMAL}subprotocols = [\"graphql-transport-ws\", \"v12.stomp\"]\n");
    let ok = ok.replace("edge.allow_any_origin = true\nsubprotocols", "subprotocols");
    let ok = format!("{ok}edge.allow_any_origin = true\n");
    let c = Config::parse(&ok).unwrap();
    assert_eq!(
        c.routes[0].subprotocols,
        ["graphql-transport-ws", "v12.stomp"]
    );
    let bad = ok.replace("v12.stomp", "v12 stomp");
    let err = Config::parse(&bad).unwrap_err().to_string();
    assert!(err.contains("routes[0].subprotocols"), "{err}");
    let preset = "[[routes]]\nedge.allow_any_origin = true\nsubprotocols = [\"mqtt\"]\n[routes.genesys]\ndomain = \"mypurecloud.de\"\ndeployment_id = \"abc\"\norigin = \"https://www.example.com\"\n";
    let err = Config::parse(preset).unwrap_err().to_string();
    assert!(
        err.contains(
            "routes[0].subprotocols: the genesys-web-messaging preset speaks no subprotocol"
        ),
        "{err}"
    );
}
