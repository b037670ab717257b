//! The stand-in identity provider on the fake's listener, for the demo and browser tests: the
//! site's OIDC sign-in (authorization code flow, PKCE optional) reduced to one button.
//!
//! - `GET /idp/authorize?redirect_uri=..&state=..[&code_challenge=..&code_challenge_method=S256]
//!   [&nonce=..][&response_type=code][&client_id=..][&scope=..]` answers a small HTML page whose
//!   "Sign in as Alex" button (`data-testid="idp-sign-in"`) submits a GET form to
//!   `/idp/approve` with the same parameters.
//! - `GET /idp/approve?...` checks them again, issues a fresh code and answers 302 to
//!   `redirect_uri` with `code` and `state` added to its query.
//!
//! Both refuse with a plain 400 page (never a redirect) when `redirect_uri` is missing or not
//! registered (exact string match: the config's `auth_redirect_uris`, or later through
//! `FakeGenesysHandle::register_redirect_uri`), `state` is missing or empty,
//! `code_challenge` is not an S256 challenge (43 base64url characters) or comes without
//! `code_challenge_method=S256` (the method alone is refused too), `response_type` is there and
//! not `code`, or any of these parameters appears twice.
//!
//! A code works once, for `FakeGenesysConfig::auth_code_lifetime`, and only with the redirect URI, PKCE challenge and nonce it was issued with; the signed-in
//! identity is always [`IDP_SUBJECT`] here (Rust tests can pick another through
//! `FakeGenesysHandle::issue_auth_code_for`).

use tokio::time::Instant;

use super::auth::{AuthCode, challenge_ok, random_credential};
use super::http::{PlainRequest, Reply};
use super::protocol::State;
use crate::mock::support::lock;

/// The sign-in page.
pub(super) const AUTHORIZE_PATH: &str = "/idp/authorize";
/// Where the sign-in button goes.
pub(super) const APPROVE_PATH: &str = "/idp/approve";

/// The identity-provider subject of the one user its page signs in.
pub const IDP_SUBJECT: &str = "alex";

/// The parameters of a sign-in, checked.
#[derive(Debug)]
struct SignIn {
    redirect_uri: String,
    state: String,
    challenge: Option<String>,
    nonce: Option<String>,
}

/// The parameters the page passes on to the approval.
const PARAMS: [&str; 8] = [
    "redirect_uri",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "response_type",
    "client_id",
    "scope",
];

/// Escapes text for HTML content and quoted attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn refuse(why: &str) -> Reply {
    Reply::new(
        400,
        "text/plain; charset=utf-8",
        format!("Sign-in refused: {why}\n").into_bytes(),
    )
}

impl State {
    /// Whether `redirect_uri` is registered with the identity provider (in the config, or
    /// through the handle since).
    pub(super) fn redirect_registered(&self, redirect_uri: &str) -> bool {
        self.config
            .auth_redirect_uris
            .iter()
            .chain(lock(&self.auth.redirect_uris).iter())
            .any(|r| r == redirect_uri)
    }

    /// Issues a code for `subject`, bound to the redirect URI, challenge and nonce.
    pub(super) fn issue_code(
        &self,
        subject: &str,
        redirect_uri: &str,
        challenge: Option<&str>,
        nonce: Option<&str>,
    ) -> String {
        let code = random_credential();
        let now = Instant::now();
        let mut codes = lock(&self.auth.codes);
        codes.retain(|_, c| c.until > now);
        codes.insert(
            code.clone(),
            AuthCode {
                subject: subject.to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                challenge: challenge.map(str::to_owned),
                nonce: nonce.map(str::to_owned),
                until: now + self.config.auth_code_lifetime,
            },
        );
        code
    }

    /// Checks a sign-in's query parameters.
    fn sign_in(&self, req: &PlainRequest) -> Result<SignIn, &'static str> {
        let mut values: [Option<String>; PARAMS.len()] = Default::default();
        for (k, v) in url::form_urlencoded::parse(req.query.as_bytes()) {
            if let Some(i) = PARAMS.iter().position(|p| *p == k) {
                if values[i].replace(v.into_owned()).is_some() {
                    return Err("a parameter appears more than once");
                }
            }
        }
        let [
            redirect_uri,
            state,
            challenge,
            method,
            nonce,
            response_type,
            _,
            _,
        ] = values;
        let redirect_uri = redirect_uri
            .filter(|r| self.redirect_registered(r))
            .ok_or("redirect_uri is missing or not registered")?;
        let state = state.filter(|s| !s.is_empty()).ok_or("state is missing")?;
        if response_type.is_some_and(|t| t != "code") {
            return Err("response_type must be code");
        }
        match (&challenge, method.as_deref()) {
            (None, None) => {}
            (Some(c), Some("S256")) if challenge_ok(c) => {}
            (Some(_), Some("S256")) => return Err("code_challenge is not an S256 challenge"),
            (Some(_), _) => return Err("code_challenge_method must be S256"),
            (None, Some(_)) => return Err("code_challenge_method without code_challenge"),
        }
        Ok(SignIn {
            redirect_uri,
            state,
            challenge,
            nonce: nonce.filter(|n| !n.is_empty()),
        })
    }

    /// `GET /idp/authorize`: the sign-in page.
    pub(super) fn idp_authorize(&self, req: &PlainRequest) -> Reply {
        if let Err(why) = self.sign_in(req) {
            return refuse(why);
        }
        let mut hidden = String::new();
        for (k, v) in url::form_urlencoded::parse(req.query.as_bytes()) {
            if PARAMS.contains(&k.as_ref()) {
                hidden.push_str(&format!(
                    "      <input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
                    escape(&k),
                    escape(&v)
                ));
            }
        }
        let page = format!(
            "<!doctype html>
<html lang=\"en\">
<head>
  <meta charset=\"utf-8\">
  <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">
  <title>Sign in (fake identity provider)</title>
</head>
<body>
  <main>
    <h1>Fake identity provider</h1>
    <p>A stand-in for the site's sign-in, for demos and tests.</p>
    <form method=\"get\" action=\"{APPROVE_PATH}\">
{hidden}      <button type=\"submit\" data-testid=\"idp-sign-in\">Sign in as Alex</button>
    </form>
  </main>
</body>
</html>
"
        );
        Reply::new(200, "text/html; charset=utf-8", page.into_bytes())
            .header("cache-control", "no-store".into())
    }

    /// `GET /idp/approve`: a fresh code, and back to the site.
    pub(super) fn idp_approve(&self, req: &PlainRequest) -> Reply {
        let sign_in = match self.sign_in(req) {
            Ok(s) => s,
            Err(why) => return refuse(why),
        };
        let Ok(mut target) = url::Url::parse(&sign_in.redirect_uri) else {
            return refuse("redirect_uri is not an absolute URL");
        };
        let code = self.issue_code(
            IDP_SUBJECT,
            &sign_in.redirect_uri,
            sign_in.challenge.as_deref(),
            sign_in.nonce.as_deref(),
        );
        target
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &sign_in.state);
        Reply::new(302, "text/plain; charset=utf-8", Vec::new())
            .header("location", target.into())
            .header("cache-control", "no-store".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
