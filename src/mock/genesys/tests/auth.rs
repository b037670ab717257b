//! Authenticated web messaging: the stand-in identity provider, the token endpoints and
//! `configureAuthenticatedSession` (upgrade, downgrade, expiry, sign-out).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;

const REDIRECT: &str = "https://site.example/signed-in";
const OTHER_REDIRECT: &str = "https://site.example/other-callback";
/// RFC 7636 appendix B's verifier and its S256 challenge.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// Another well-formed verifier, whose challenge is not [`CHALLENGE`].
const WRONG_VERIFIER: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
/// A second deployment with auth on, and one with auth off.
const OTHER_DEPLOYMENT: &str = "other-deployment";
const GUEST_ONLY: &str = "guest-only-deployment";

/// A fake whose default deployment (and [`OTHER_DEPLOYMENT`]) has auth on, upgrades allowed
/// or not, [`GUEST_ONLY`] has auth off, and both redirect URIs are registered.
fn auth_config(allow_upgrade: bool, base: FakeGenesysConfig) -> FakeGenesysConfig {
    let signed_in = FakeDeployment {
        auth_enabled: true,
        allow_session_upgrade: allow_upgrade,
        ..FakeDeployment::default()
    };
    FakeGenesysConfig {
        deployment_ids: vec![
            DEFAULT_DEPLOYMENT_ID.to_owned(),
            OTHER_DEPLOYMENT.to_owned(),
            GUEST_ONLY.to_owned(),
        ],
        deployments: BTreeMap::from([
            (DEFAULT_DEPLOYMENT_ID.to_owned(), signed_in.clone()),
            (OTHER_DEPLOYMENT.to_owned(), signed_in),
            (GUEST_ONLY.to_owned(), FakeDeployment::default()),
        ]),
        auth_redirect_uris: vec![REDIRECT.to_owned(), OTHER_REDIRECT.to_owned()],
        ..base
    }
}

async fn post_json(h: &FakeGenesysHandle, path: &str, body: &Value) -> HttpAnswer {
    let body = body.to_string();
    let head = format!(
        "POST {path} HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: {}",
        body.len()
    );
    raw_http(h, &head, body.as_bytes()).await
}

fn exchange_body(deployment: &str, code: &str, redirect: &str, verifier: Option<&str>) -> Value {
    let mut oauth = json!({"code": code, "redirectUri": redirect});
    if let Some(v) = verifier {
        oauth["codeVerifier"] = v.into();
    }
    json!({"deploymentId": deployment, "oauth": oauth})
}

async fn exchange(h: &FakeGenesysHandle, code: &str, verifier: Option<&str>) -> HttpAnswer {
    let body = exchange_body(DEFAULT_DEPLOYMENT_ID, code, REDIRECT, verifier);
    post_json(h, AUTH_EXCHANGE_PATH, &body).await
}

async fn refresh(
    h: &FakeGenesysHandle,
    refresh_token: &str,
    deployment: Option<&str>,
) -> HttpAnswer {
    let mut body = json!({"refreshToken": refresh_token});
    if let Some(d) = deployment {
        body["deploymentId"] = d.into();
    }
    post_json(h, AUTH_REFRESH_PATH, &body).await
}

async fn revoke(h: &FakeGenesysHandle, jwt: Option<&str>) -> HttpAnswer {
    let mut head = format!("DELETE {AUTH_REVOKE_PATH} HTTP/1.1");
    if let Some(jwt) = jwt {
        head.push_str(&format!("\r\nauthorization: Bearer {jwt}"));
    }
    raw_http(h, &head, b"").await
}

/// Signs `subject` in (code with PKCE, exchanged) and returns the JWT and refresh token.
async fn sign_in_as(h: &FakeGenesysHandle, deployment: &str, subject: &str) -> (String, String) {
    let code = h.issue_auth_code_for(subject, REDIRECT, Some(CHALLENGE), None);
    let body = exchange_body(deployment, &code, REDIRECT, Some(VERIFIER));
    let r = post_json(h, AUTH_EXCHANGE_PATH, &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let jwt = v["jwt"].as_str().unwrap().to_owned();
    let refresh_token = v["refreshToken"].as_str().unwrap().to_owned();
    (jwt, refresh_token)
}

async fn sign_in(h: &FakeGenesysHandle) -> (String, String) {
    sign_in_as(h, DEFAULT_DEPLOYMENT_ID, IDP_SUBJECT).await
}

fn configure_auth(token: &str, jwt: &str) -> Value {
    json!({"action":"configureAuthenticatedSession","token":token,
        "deploymentId":DEFAULT_DEPLOYMENT_ID,"startNew":false,"data":{"code":jwt}})
}

/// A socket with an authenticated session for `token`; returns it and the SessionResponse.
async fn auth_session(h: &FakeGenesysHandle, token: &str, jwt: &str) -> (Client, Value) {
    let mut ws = connect(h).await;
    send(&mut ws, configure_auth(token, jwt)).await;
    let r = recv(&mut ws).await;
    assert_eq!(r["class"], "SessionResponse", "{r}");
    (ws, r)
}

/// The JSON payload of a JWT.
fn claims(jwt: &str) -> Value {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

/// Asserts an error frame's code and that its body starts with `text`.
fn assert_error(frame: &Value, code: u16, text: &str) {
    assert_eq!(
        (frame["type"].as_str(), frame["class"].as_str()),
        (Some("response"), Some("string")),
        "{frame}"
    );
    assert_eq!(frame["code"], code, "{frame}");
    let body = frame["body"].as_str().unwrap_or("");
    assert!(body.starts_with(text), "{frame}");
}

/// Sends a text on an authenticated session and asserts its echo.
async fn chat(ws: &mut Client, token: &str, said: &str) {
    send(ws, text(token, said)).await;
    let echo = recv(ws).await;
    assert_eq!(
        (echo["class"].as_str(), echo["body"]["text"].as_str()),
        (Some("StructuredMessage"), Some(said)),
        "{echo}"
    );
}

#[tokio::test]
async fn the_idp_page_signs_in_and_redirects_with_a_code_and_the_state() {
    within(async {
        let h = start(auth_config(false, no_agent())).await;
        let state = r#"st"<1>&"#;
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("state", state)
            .append_pair("code_challenge", CHALLENGE)
            .append_pair("code_challenge_method", "S256")
            .append_pair("nonce", "n-1")
            .append_pair("response_type", "code")
            .finish();
        assert_eq!(
            h.idp_authorize_url(),
            format!("http://{}/idp/authorize", h.addr())
        );
        let page = raw_http(
            &h,
            &format!("GET {IDP_AUTHORIZE_PATH}?{query} HTTP/1.1"),
            b"",
        )
        .await;
        assert_eq!(page.status, 200, "{}", page.text());
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        let html = page.text();
        assert!(
            html.contains(r#"<form method="get" action="/idp/approve">"#),
            "{html}"
        );
        assert!(
            html.contains(
                r#"<button type="submit" data-testid="idp-sign-in">Sign in as Alex</button>"#
            ),
            "{html}"
        );
        assert!(
            html.contains(r#"name="state" value="st&quot;&lt;1&gt;&amp;""#),
            "state escaped: {html}"
        );
        assert!(html.contains(&format!(r#"name="code_challenge" value="{CHALLENGE}""#)));

        // What the button submits: the same parameters, to /idp/approve.
        let approve = raw_http(&h, &format!("GET /idp/approve?{query} HTTP/1.1"), b"").await;
        assert_eq!(approve.status, 302, "{}", approve.text());
        let location = url::Url::parse(approve.header("location").unwrap()).unwrap();
        assert_eq!(
            format!(
                "{}://{}{}",
                location.scheme(),
                location.host_str().unwrap(),
                location.path()
            ),
            REDIRECT
        );
        let pairs: Vec<(String, String)> = location.query_pairs().into_owned().collect();
        assert_eq!(pairs.len(), 2, "{pairs:?}");
        assert_eq!(pairs[0].0, "code");
        assert_eq!(pairs[1], ("state".to_owned(), state.to_owned()));
        let code = &pairs[0].1;

        // The code is bound to the PKCE challenge and the nonce of the sign-in.
        let mut body = exchange_body(DEFAULT_DEPLOYMENT_ID, code, REDIRECT, Some(VERIFIER));
        body["oauth"]["nonce"] = "n-1".into();
        let r = post_json(&h, AUTH_EXCHANGE_PATH, &body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.json()["jwt"].is_string());

        // A second click signs in again with a fresh code.
        let again = raw_http(&h, &format!("GET /idp/approve?{query} HTTP/1.1"), b"").await;
        assert_eq!(again.status, 302);
        assert!(!again.header("location").unwrap().contains(code.as_str()));
    })
    .await
}

#[tokio::test]
async fn the_idp_refuses_unregistered_redirects_and_malformed_sign_ins() {
    within(async {
        let h = start(auth_config(false, no_agent())).await;
        let enc = |pairs: &[(&str, &str)]| {
            let mut s = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in pairs {
                s.append_pair(k, v);
            }
            s.finish()
        };
        let refused = [
            enc(&[("redirect_uri", "https://evil.example/cb"), ("state", "s")]),
            enc(&[("redirect_uri", &format!("{REDIRECT}/")), ("state", "s")]),
            enc(&[("state", "s")]),
            enc(&[("redirect_uri", REDIRECT)]),
            enc(&[("redirect_uri", REDIRECT), ("state", "")]),
            enc(&[("redirect_uri", REDIRECT), ("state", "s"), ("state", "t")]),
            enc(&[
                ("redirect_uri", REDIRECT),
                ("state", "s"),
                ("response_type", "token"),
            ]),
            enc(&[
                ("redirect_uri", REDIRECT),
                ("state", "s"),
                ("code_challenge", CHALLENGE),
            ]),
            enc(&[
                ("redirect_uri", REDIRECT),
                ("state", "s"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "plain"),
            ]),
            enc(&[
                ("redirect_uri", REDIRECT),
                ("state", "s"),
                ("code_challenge", "too-short"),
                ("code_challenge_method", "S256"),
            ]),
            enc(&[
                ("redirect_uri", REDIRECT),
                ("state", "s"),
                ("code_challenge_method", "S256"),
            ]),
        ];
        for query in &refused {
            for path in [IDP_AUTHORIZE_PATH, "/idp/approve"] {
                let r = raw_http(&h, &format!("GET {path}?{query} HTTP/1.1"), b"").await;
                assert_eq!(r.status, 400, "{path}?{query}: {}", r.text());
                assert!(r.header("location").is_none());
                assert!(r.text().starts_with("Sign-in refused: "), "{}", r.text());
            }
        }
        let ok = enc(&[("redirect_uri", OTHER_REDIRECT), ("state", "s")]);
        let r = raw_http(&h, &format!("GET /idp/approve?{ok} HTTP/1.1"), b"").await;
        assert_eq!(r.status, 302);

        // A callback learnt after start can be registered then.
        let late = "http://127.0.0.1:1/late-callback";
        let query = enc(&[("redirect_uri", late), ("state", "s")]);
        let before = raw_http(&h, &format!("GET /idp/approve?{query} HTTP/1.1"), b"").await;
        assert_eq!(before.status, 400);
        h.register_redirect_uri(late);
        let after = raw_http(&h, &format!("GET /idp/approve?{query} HTTP/1.1"), b"").await;
        assert_eq!(after.status, 302);
        assert!(
            after
                .header("location")
                .unwrap()
                .starts_with(&format!("{late}?code="))
        );
        let code = h.issue_auth_code(late, None);
        let body = exchange_body(DEFAULT_DEPLOYMENT_ID, &code, late, None);
        assert_eq!(post_json(&h, AUTH_EXCHANGE_PATH, &body).await.status, 200);
        let post = raw_http(&h, &format!("POST {IDP_AUTHORIZE_PATH}?{ok} HTTP/1.1"), b"").await;
        assert_eq!(post.status, 405);
    })
    .await
}

#[tokio::test]
async fn codes_are_single_use_and_expire() {
    within(async {
        let config = FakeGenesysConfig {
            auth_code_lifetime: Duration::from_millis(200),
            ..no_agent()
        };
        let h = start(auth_config(false, config)).await;
        let code = h.issue_auth_code(REDIRECT, None);
        let first = exchange(&h, &code, None).await;
        assert_eq!(first.status, 200, "{}", first.text());
        assert_eq!(first.header("cache-control"), Some("no-store"));
        let second = exchange(&h, &code, None).await;
        assert_eq!(second.status, 400);
        assert_eq!(
            second.json()["message"],
            "The authorization code is not valid"
        );
        assert!(!second.text().contains(&code), "no code in errors");

        let late = h.issue_auth_code(REDIRECT, None);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = exchange(&h, &late, None).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["message"], "The authorization code has expired");
        assert_eq!(r.json()["status"], 400);
        assert_eq!(h.auth_exchanges(), 3);
    })
    .await
}

#[tokio::test]
async fn pkce_binds_a_code_to_its_verifier() {
    within(async {
        let h = start(auth_config(false, no_agent())).await;
        // Without the verifier: refused, and the code is used up.
        let code = h.issue_auth_code(REDIRECT, Some(CHALLENGE));
        assert_eq!(exchange(&h, &code, None).await.status, 400);
        assert_eq!(exchange(&h, &code, Some(VERIFIER)).await.status, 400);

        let code = h.issue_auth_code(REDIRECT, Some(CHALLENGE));
        let wrong = exchange(&h, &code, Some(WRONG_VERIFIER)).await;
        assert_eq!(wrong.status, 400);
        assert_eq!(
            wrong.json()["message"],
            "codeVerifier does not match the code challenge"
        );

        let code = h.issue_auth_code(REDIRECT, Some(CHALLENGE));
        assert_eq!(exchange(&h, &code, Some(VERIFIER)).await.status, 200);

        // A verifier for a code issued without a challenge means the challenge got lost.
        let code = h.issue_auth_code(REDIRECT, None);
        assert_eq!(exchange(&h, &code, Some(VERIFIER)).await.status, 400);
        assert_eq!(h.auth_exchanges(), 5);
    })
    .await
}

#[tokio::test]
async fn the_redirect_uri_and_nonce_must_be_the_codes() {
    within(async {
        let h = start(auth_config(false, no_agent())).await;
        let code = h.issue_auth_code(REDIRECT, None);
        let body = exchange_body(DEFAULT_DEPLOYMENT_ID, &code, OTHER_REDIRECT, None);
        let r = post_json(&h, AUTH_EXCHANGE_PATH, &body).await;
        assert_eq!(r.status, 400);
        assert_eq!(
            r.json()["message"],
            "redirectUri does not match the authorization request"
        );

        let with_nonce = |nonce: Option<&str>| {
            let code = h.issue_auth_code_for(IDP_SUBJECT, REDIRECT, None, Some("n-1"));
            let mut body = exchange_body(DEFAULT_DEPLOYMENT_ID, &code, REDIRECT, None);
            if let Some(n) = nonce {
                body["oauth"]["nonce"] = n.into();
            }
            body
        };
        for (nonce, status) in [(None, 400), (Some("n-2"), 400), (Some("n-1"), 200)] {
            let r = post_json(&h, AUTH_EXCHANGE_PATH, &with_nonce(nonce)).await;
            assert_eq!(r.status, status, "nonce {nonce:?}: {}", r.text());
        }
        // A code issued without a nonce does not check one.
        let code = h.issue_auth_code(REDIRECT, None);
        let mut body = exchange_body(DEFAULT_DEPLOYMENT_ID, &code, REDIRECT, None);
        body["oauth"]["nonce"] = "anything".into();
        assert_eq!(post_json(&h, AUTH_EXCHANGE_PATH, &body).await.status, 200);
    })
    .await
}

#[tokio::test]
async fn exchange_refuses_bad_deployments_and_requests_without_using_the_code() {
    within(async {
        let h = start(auth_config(false, no_agent())).await;
        let code = h.issue_auth_code(REDIRECT, None);
        for deployment in ["nope", GUEST_ONLY] {
            let body = exchange_body(deployment, &code, REDIRECT, None);
            let r = post_json(&h, AUTH_EXCHANGE_PATH, &body).await;
            assert_eq!(r.status, 400, "{deployment}");
        }
        let missing = [
            json!({"oauth": {"code": code, "redirectUri": REDIRECT}}),
            json!({"deploymentId": DEFAULT_DEPLOYMENT_ID}),
            json!({"deploymentId": DEFAULT_DEPLOYMENT_ID, "oauth": {"redirectUri": REDIRECT}}),
            json!({"deploymentId": DEFAULT_DEPLOYMENT_ID, "oauth": {"code": code}}),
            json!({"deploymentId": DEFAULT_DEPLOYMENT_ID, "oauth": {"code": 7, "redirectUri": REDIRECT}}),
        ];
        for body in &missing {
            assert_eq!(post_json(&h, AUTH_EXCHANGE_PATH, body).await.status, 400, "{body}");
        }
        let raw = |head: &str, body: &[u8]| {
            let head = format!("POST {AUTH_EXCHANGE_PATH} HTTP/1.1\r\n{head}");
            let body = body.to_vec();
            let h = h.clone();
            async move { raw_http(&h, &head, &body).await.status }
        };
        assert_eq!(raw("content-type: text/plain\r\ncontent-length: 2", b"{}").await, 415);
        assert_eq!(raw("content-type: application/json\r\ncontent-length: 3", b"[1]").await, 400);
        assert_eq!(raw("content-type: application/json", b"").await, 411);
        let get = raw_http(&h, &format!("GET {AUTH_EXCHANGE_PATH} HTTP/1.1"), b"").await;
        assert_eq!(get.status, 405);
        // Still unused.
        assert_eq!(exchange(&h, &code, None).await.status, 200);
    })
    .await
}

#[tokio::test]
async fn a_signed_in_session_chats_resumes_and_gets_a_history_jwt() {
    within(async {
        let h = start(auth_config(false, FakeGenesysConfig::default())).await;
        let before = frames::epoch_now();
        let (jwt, refresh_token) = sign_in(&h).await;
        let c = claims(&jwt);
        let sub = c["sub"].as_str().unwrap();
        assert!(
            sub.starts_with("customer-") && !sub.contains(IDP_SUBJECT),
            "{c}"
        );
        let exp = c["exp"].as_u64().unwrap();
        assert!(exp >= before + 899 && exp <= before + 902, "exp {exp}");
        assert!(!refresh_token.is_empty() && !jwt.contains(&refresh_token));

        let mut ws = connect(&h).await;
        let mut req = configure_auth("signed-in", &jwt);
        req["tracingId"] = "auth-1".into();
        send(&mut ws, req).await;
        let r = recv(&mut ws).await;
        assert_eq!(
            (r["type"].as_str(), r["class"].as_str(), r["code"].as_i64()),
            (Some("response"), Some("SessionResponse"), Some(200))
        );
        assert_eq!(r["tracingId"], "auth-1");
        assert_eq!(
            (
                &r["body"]["connected"],
                &r["body"]["newSession"],
                &r["body"]["readOnly"]
            ),
            (&json!(true), &json!(true), &json!(false))
        );
        assert!(h.is_authenticated("signed-in"));
        assert!(!h.is_authenticated("never-configured"));

        send(&mut ws, text("signed-in", "hello")).await;
        assert_eq!(recv(&mut ws).await["body"]["direction"], "Inbound");
        let reply = recv_until(&mut ws, |v| v["body"]["type"] == "Text").await;
        assert_eq!(reply["body"]["text"], "Agent: you said \"hello\"");

        send(&mut ws, json!({"action":"getJwt","token":"signed-in"})).await;
        let r = recv(&mut ws).await;
        assert_eq!(
            (r["class"].as_str(), r["code"].as_i64()),
            (Some("JwtResponse"), Some(200))
        );
        assert_ne!(
            r["body"]["jwt"],
            json!(jwt),
            "the history JWT is another one"
        );

        // The same customer signed in again (another JWT) resumes the same session.
        let (again, _) = sign_in(&h).await;
        let (mut other, r) = auth_session(&h, "signed-in", &again).await;
        assert_eq!(r["body"]["newSession"], false);
        chat(&mut other, "signed-in", "from the second tab").await;
        assert_eq!(h.sessions_created(), 1);
        assert_eq!(claims(&again)["sub"], json!(sub), "one customer, one sub");
        let (sam, _) = sign_in_as(&h, DEFAULT_DEPLOYMENT_ID, "sam").await;
        assert_ne!(claims(&sam)["sub"], json!(sub));
    })
    .await
}

#[tokio::test]
async fn an_expired_jwt_asks_to_authenticate_again_until_refreshed_and_reconfigured() {
    within(async {
        let config = FakeGenesysConfig {
            auth_jwt_lifetime: Duration::from_millis(400),
            ..no_agent()
        };
        let h = start(auth_config(false, config)).await;
        let (jwt, refresh_token) = sign_in(&h).await;
        let (mut ws, _) = auth_session(&h, "exp", &jwt).await;
        chat(&mut ws, "exp", "before").await;
        tokio::time::sleep(Duration::from_millis(500)).await;

        let mut req = text("exp", "lost");
        req["tracingId"] = "t-exp".into();
        send(&mut ws, req).await;
        let r = recv(&mut ws).await;
        assert_error(&r, 403, TRY_AGAIN);
        assert_eq!(r["tracingId"], "t-exp");
        send(&mut ws, json!({"action":"getJwt","token":"exp"})).await;
        assert_error(&recv(&mut ws).await, 403, TRY_AGAIN);
        send(
            &mut ws,
            json!({"action":"echo","token":"exp","message":{"type":"Text","text":"ping"}}),
        )
        .await;
        assert_error(&recv(&mut ws).await, 403, TRY_AGAIN);

        // The old JWT no longer configures: 401, refresh.
        send(&mut ws, configure_auth("exp", &jwt)).await;
        let r = recv(&mut ws).await;
        assert_error(&r, 401, "Session authentication failed");
        assert!(!r["body"].as_str().unwrap().contains(&jwt));

        let fresh = refresh(&h, &refresh_token, Some(DEFAULT_DEPLOYMENT_ID)).await;
        assert_eq!(fresh.status, 200, "{}", fresh.text());
        assert_eq!(fresh.header("cache-control"), Some("no-store"));
        let body = fresh.json();
        assert_eq!(body.as_object().unwrap().len(), 1, "only a jwt: {body}");
        let new_jwt = body["jwt"].as_str().unwrap();
        assert_ne!(new_jwt, jwt);
        assert_eq!(claims(new_jwt)["sub"], claims(&jwt)["sub"]);

        send(&mut ws, configure_auth("exp", new_jwt)).await;
        let r = recv(&mut ws).await;
        assert_eq!(r["class"], "SessionResponse", "{r}");
        assert_eq!(r["body"]["newSession"], false);
        chat(&mut ws, "exp", "after").await;
        let texts: Vec<Value> = h
            .history("exp")
            .unwrap()
            .iter()
            .map(|m| m["text"].clone())
            .collect();
        assert_eq!(texts, vec![json!("before"), json!("after")]);
        assert_eq!(h.auth_refreshes(), 1);
    })
    .await
}

#[tokio::test]
async fn refresh_tokens_expire_and_belong_to_their_deployment() {
    within(async {
        let config = FakeGenesysConfig {
            refresh_token_lifetime: Duration::from_millis(400),
            ..no_agent()
        };
        let h = start(auth_config(false, config)).await;
        let (_, token) = sign_in(&h).await;
        assert_eq!(
            refresh(&h, &token, None).await.status,
            200,
            "deploymentId is optional"
        );
        assert_eq!(
            refresh(&h, &token, Some(DEFAULT_DEPLOYMENT_ID))
                .await
                .status,
            200
        );
        assert_eq!(
            refresh(&h, &token, Some(OTHER_DEPLOYMENT)).await.status,
            401
        );
        assert_eq!(refresh(&h, &token, Some("nope")).await.status, 400);
        assert_eq!(refresh(&h, &token, Some(GUEST_ONLY)).await.status, 400);
        let unknown = refresh(&h, "not-a-refresh-token", None).await;
        assert_eq!(unknown.status, 401);
        assert_eq!(unknown.json()["status"], 401);
        let missing = post_json(
            &h,
            AUTH_REFRESH_PATH,
            &json!({"deploymentId": DEFAULT_DEPLOYMENT_ID}),
        )
        .await;
        assert_eq!(missing.status, 400);

        tokio::time::sleep(Duration::from_millis(500)).await;
        let late = refresh(&h, &token, None).await;
        assert_eq!(late.status, 401);
        assert!(!late.text().contains(&token), "no token in errors");
        assert_eq!(h.auth_refreshes(), 8);
    })
    .await
}

#[tokio::test]
async fn revoke_logs_out_every_socket_of_the_customer_and_refuses_its_refresh() {
    within(async {
        let h = start(auth_config(false, no_agent())).await;
        let (alex, alex_refresh) = sign_in(&h).await;
        let (alex_again, alex_refresh_2) = sign_in(&h).await;
        let (sam, sam_refresh) = sign_in_as(&h, DEFAULT_DEPLOYMENT_ID, "sam").await;
        let (mut a1, _) = auth_session(&h, "alex-1", &alex).await;
        let (mut a2, _) = auth_session(&h, "alex-1", &alex_again).await;
        let (mut a3, _) = auth_session(&h, "alex-2", &alex).await;
        let (mut s1, _) = auth_session(&h, "sam-1", &sam).await;

        assert_eq!(revoke(&h, None).await.status, 401);
        assert_eq!(revoke(&h, Some("not-a-jwt")).await.status, 401);
        let r = revoke(&h, Some(&alex)).await;
        assert_eq!(r.status, 204);
        assert!(r.body.is_empty() && r.header("content-length").is_none());
        for ws in [&mut a1, &mut a2, &mut a3] {
            assert_eq!(
                recv(ws).await,
                json!({"type":"message","class":"LogoutEvent","code":200,"body":{}})
            );
        }
        assert_eq!(recv_within(&mut s1, Duration::from_millis(200)).await, None);
        assert_eq!(h.revoked_refresh_tokens(), 2);
        assert_eq!(refresh(&h, &alex_refresh, None).await.status, 401);
        assert_eq!(refresh(&h, &alex_refresh_2, None).await.status, 401);
        assert_eq!(refresh(&h, &sam_refresh, None).await.status, 200);
        assert_eq!(
            revoke(&h, Some(&alex)).await.status,
            401,
            "revoked with the rest"
        );

        // Alex's sockets can do nothing more, and the revoked JWT does not configure.
        send(&mut a1, text("alex-1", "still there?")).await;
        assert_error(&recv(&mut a1).await, 403, TRY_AGAIN);
        send(&mut a3, configure_auth("alex-2", &alex_again)).await;
        assert_error(&recv(&mut a3).await, 403, "Session authentication failed");
        chat(&mut s1, "sam-1", "unaffected").await;
        assert!(
            h.is_authenticated("alex-1"),
            "the session stays the customer's"
        );
        assert_eq!(h.auth_revokes(), 4);
    })
    .await
}

#[tokio::test]
async fn token_endpoints_are_rate_limited_per_minute_each() {
    within(async {
        let config = FakeGenesysConfig {
            auth_rate_per_minute: 2,
            ..no_agent()
        };
        let h = start(auth_config(false, config)).await;
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(exchange(&h, "bogus", None).await);
        }
        for _ in 0..3 {
            statuses.push(refresh(&h, "bogus", None).await);
        }
        for _ in 0..3 {
            statuses.push(revoke(&h, Some("bogus")).await);
        }
        let codes: Vec<u16> = statuses.iter().map(|r| r.status).collect();
        assert_eq!(codes, [400, 400, 429, 401, 401, 429, 401, 401, 429]);
        for limited in [&statuses[2], &statuses[5], &statuses[8]] {
            let secs: u64 = limited.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=60).contains(&secs), "{secs}");
            assert_eq!(limited.json()["status"], 429);
        }
        assert_eq!(
            (h.auth_exchanges(), h.auth_refreshes(), h.auth_revokes()),
            (3, 3, 3)
        );
        // A good code is refused too while the window is full.
        let code = h.issue_auth_code(REDIRECT, None);
        assert_eq!(exchange(&h, &code, None).await.status, 429);

        let unlimited = start(auth_config(
            false,
            FakeGenesysConfig {
                auth_rate_per_minute: 0,
                ..no_agent()
            },
        ))
        .await;
        for _ in 0..5 {
            assert_eq!(refresh(&unlimited, "bogus", None).await.status, 401);
        }
    })
    .await
}

#[tokio::test]
async fn an_allowed_upgrade_closes_the_other_guest_sockets_with_signed_in() {
    within(async {
        let h = start(auth_config(true, no_agent())).await;
        let (mut a, _) = session(&h, "up").await;
        let (mut b, _) = session(&h, "up").await;
        chat(&mut a, "up", "as a guest").await;
        assert!(!h.is_authenticated("up"));

        let (jwt, _) = sign_in(&h).await;
        send(&mut a, configure_auth("up", &jwt)).await;
        let r = recv(&mut a).await;
        assert_eq!(r["class"], "SessionResponse", "{r}");
        assert_eq!(r["body"]["newSession"], false);
        assert_eq!(
            recv(&mut b).await,
            json!({"type":"message","class":"ConnectionClosedEvent","code":200,"body":{"reason":"signedIn"}})
        );
        assert_eq!(close_code(&mut b).await, 1000);
        assert!(h.is_authenticated("up"));
        chat(&mut a, "up", "signed in").await;
        assert_eq!(h.history("up").unwrap().len(), 2, "the conversation carries on");

        // No way back to a guest session on this token.
        let mut c = connect(&h).await;
        send(&mut c, configure("up")).await;
        assert_error(&recv(&mut c).await, 4017, "Cannot downgrade an authenticated session");
    })
    .await
}

#[tokio::test]
async fn an_upgrade_is_refused_unless_the_deployment_allows_it() {
    within(async {
        let h = start(auth_config(false, no_agent())).await;
        let (mut a, _) = session(&h, "guest").await;
        let (mut b, _) = session(&h, "guest").await;
        let (jwt, _) = sign_in(&h).await;
        send(&mut a, configure_auth("guest", &jwt)).await;
        assert_error(&recv(&mut a).await, 403, "Session upgrade is not allowed");
        assert!(!h.is_authenticated("guest"));
        chat(&mut a, "guest", "still a guest").await;
        chat(&mut b, "guest", "me too").await;
    })
    .await
}

#[tokio::test]
async fn downgrades_and_other_customers_are_refused() {
    within(async {
        let h = start(auth_config(true, no_agent())).await;
        let (jwt, _) = sign_in(&h).await;
        let (mut ws, _) = auth_session(&h, "mine", &jwt).await;
        let mut req = configure("mine");
        req["tracingId"] = "t-down".into();
        send(&mut ws, req.clone()).await;
        let r = recv(&mut ws).await;
        assert_eq!(
            r,
            json!({"type":"response","class":"string","code":4017,
                "body":"Cannot downgrade an authenticated session","tracingId":"t-down"})
        );
        let mut other = connect(&h).await;
        send(&mut other, req).await;
        assert_error(&recv(&mut other).await, 4017, "Cannot downgrade");

        let (sam, _) = sign_in_as(&h, DEFAULT_DEPLOYMENT_ID, "sam").await;
        send(&mut other, configure_auth("mine", &sam)).await;
        assert_error(
            &recv(&mut other).await,
            403,
            "Session belongs to another customer",
        );
        // The refusals changed nothing for the owner's socket.
        chat(&mut ws, "mine", "still mine").await;
        assert_eq!(h.sessions_created(), 1);
    })
    .await
}

#[tokio::test]
async fn configure_authenticated_session_refusals() {
    within(async {
        let h = start(auth_config(false, no_agent())).await;
        let (jwt, _) = sign_in(&h).await;
        let (other_jwt, _) = sign_in_as(&h, OTHER_DEPLOYMENT, IDP_SUBJECT).await;

        let mut guest_only = connect_to(&h.url_for(GUEST_ONLY), None).await.unwrap();
        let mut req = configure_auth("t1", &jwt);
        req["deploymentId"] = GUEST_ONLY.into();
        send(&mut guest_only, req).await;
        assert_error(
            &recv(&mut guest_only).await,
            403,
            "Authenticated sessions are not enabled",
        );

        let mut ws = connect(&h).await;
        let mut no_code = configure_auth("t1", &jwt);
        no_code["data"] = json!({});
        send(&mut ws, no_code).await;
        assert_error(
            &recv(&mut ws).await,
            400,
            "Missing required field: data.code",
        );
        let (mut guest, _) = session(&h, "history-jwt").await;
        send(&mut guest, json!({"action":"getJwt","token":"history-jwt"})).await;
        let history_jwt = recv(&mut guest).await["body"]["jwt"]
            .as_str()
            .unwrap()
            .to_owned();
        for bad in ["garbage", other_jwt.as_str(), history_jwt.as_str()] {
            send(&mut ws, configure_auth("t1", bad)).await;
            let r = recv(&mut ws).await;
            assert_error(
                &r,
                403,
                "Session authentication failed: the JWT is not valid",
            );
        }
        assert_eq!(h.sessions_created(), 1, "only the guest session");
        assert!(!h.is_authenticated("t1"));
        // Nothing was bound: the socket still has to configure first.
        send(&mut ws, text("t1", "hi")).await;
        assert_eq!(recv(&mut ws).await["code"], 4007);
        send(&mut ws, configure_auth("t1", &jwt)).await;
        assert_eq!(recv(&mut ws).await["class"], "SessionResponse");
    })
    .await
}

#[tokio::test]
async fn public_config_shows_the_auth_settings() {
    within(async {
        let h = start(auth_config(true, no_agent())).await;
        let (status, body) = plain(
            &h,
            "GET",
            &format!("/webdeployments/v1/deployments/{DEFAULT_DEPLOYMENT_ID}/config.json"),
        )
        .await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["auth"],
            json!({"enabled": true, "allowSessionUpgrade": true})
        );
    })
    .await
}

#[tokio::test]
#[should_panic(expected = "is not a registered redirect URI")]
async fn issue_auth_code_refuses_what_the_page_would() {
    let h = start(auth_config(false, no_agent())).await;
    h.issue_auth_code("https://evil.example/cb", None);
}
