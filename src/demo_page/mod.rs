//! The chat page `guestgate demo` serves on its browser listener: plain HTML, CSS and JS
//! embedded in the binary with `include_str!`, so there is no build step and nothing to fetch
//! (no CDNs, no web fonts; the CSP-friendly split into three same-origin files keeps every
//! script out of the HTML).
//!
//! What the page does (see `app.js`; the protocol is `docs/genesys-page-protocol.md`):
//! - opens `ws(s)://<same host>/ws`, adding `?resume=<ticket>&after=<last message id>` when
//!   sessionStorage holds a resume ticket; it sends no credentials of any kind, only Genesys
//!   requests without `token` and guestgate's own `guestgate.getHistory` and
//!   `guestgate.startNew`;
//! - keeps the latest ticket from guestgate's `SessionReady` and the id of the last
//!   non-`Event` message it showed; after a reload it shows what a replay brings
//!   (`ReplayDone`) and then history page 1 (newest first, rendered oldest first), each message
//!   once (by id), with a "Load earlier messages" button while older pages remain;
//! - sends its own typing (at most one per 2 s; guestgate forwards one per 5 s) and shows the
//!   agent's typing indicator for the event's `duration`;
//! - uploads a file: checks it against `allowedMedia`, `onAttachment`, then an
//!   `XMLHttpRequest` PUT to the pre-signed URL with exactly its headers and a progress bar,
//!   then on `UploadSuccessEvent` the message carrying the attachment; the transcript shows a
//!   link (a thumbnail for images);
//! - on the agent's presence Disconnect (or `readOnly`) shows "The agent ended the
//!   conversation" with "Start a new conversation" (`guestgate.startNew`; the new
//!   `SessionReady` brings a new ticket and an empty transcript); on `SessionEnded` / close
//!   4410 drops the ticket and offers a fresh start;
//! - shows `MessageNotSent`, `Error` and Genesys error frames as notices (the refused text
//!   goes back into the input), and sends a text answered with a 429 again after
//!   `retryAfter`;
//! - explains every close code guestgate sends in a notice banner and reconnects with
//!   exponential backoff and jitter (0.5 s doubling up to 15 s, longer after 4429 and 4420)
//!   on the retryable ones (1001, 4503, a lost connection...), with `after=` so nothing the
//!   agent wrote meanwhile is missed; 1000, 1008, 4401, 4403, 4408 and a 4400 on a fresh
//!   connection wait for the guest (a Reconnect button, or sending a message); 4400 after a
//!   resume attempt drops the ticket and starts a new conversation.
//!
//! - signs in (when the demo offers it: `/signin.json` names the identity provider's
//!   authorize URL, the redirect URI and the customer's name): the OIDC code flow with PKCE
//!   (S256) against the stand-in identity provider, the verifier and `state` in sessionStorage
//!   only until the redirect comes back; then `code` and `state` leave the address bar and the
//!   code goes to guestgate once, in the first frame of `/ws?signin=first-frame` (with the
//!   guest ticket, which upgrades the conversation). "Signed in as ..." while `SessionReady`
//!   says `signedIn`; "Sign out" sends `guestgate.signOut`, and close 4411 drops the ticket and
//!   the transcript; close 4412 asks to sign in again.
//!
//! Key elements carry `data-testid` attributes for the browser test in `e2e/`.

use std::sync::OnceLock;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// `/signin.json`, once the demo offers sign-in (one demo per process).
static SIGN_IN: OnceLock<&'static str> = OnceLock::new();

/// Offers sign-in to the page: `json` is served as `/signin.json` (`authorizeUrl`,
/// `redirectUri`, `user`). Only the first call counts. Without it the page hides its
/// "Sign in" button.
pub fn offer_sign_in(json: String) {
    let _ = SIGN_IN.set(Box::leak(json.into_boxed_str()));
}

/// The page's files by request path (query string already removed): `/` and `/index.html`
/// give the page, `/app.js` and `/style.css` its script and style, `/signin.json` the sign-in
/// settings once [`offer_sign_in`] ran. Returns the `Content-Type` and the body, or `None`
/// for any other path.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" | "/index.html" => Some(("text/html; charset=utf-8", INDEX_HTML)),
        "/app.js" => Some(("text/javascript; charset=utf-8", APP_JS)),
        "/style.css" => Some(("text/css; charset=utf-8", STYLE_CSS)),
        "/signin.json" => SIGN_IN
            .get()
            .map(|json| ("application/json; charset=utf-8", *json)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::asset;

    #[test]
    fn serves_the_page_and_its_files() {
        let (ty, body) = asset("/").expect("/ is served");
        assert_eq!(ty, "text/html; charset=utf-8");
        assert!(body.contains(r#"src="app.js""#) && body.contains(r#"href="style.css""#));
        assert_eq!(asset("/index.html"), asset("/"));
        assert!(asset("/app.js").unwrap().0.starts_with("text/javascript"));
        assert!(asset("/style.css").unwrap().0.starts_with("text/css"));
        assert_eq!(asset("/ws"), None);
        assert_eq!(asset("/app.js/"), None);
        assert_eq!(asset("/../Cargo.toml"), None);
    }

    #[test]
    fn loads_nothing_from_elsewhere_and_sends_no_credentials() {
        for path in ["/", "/app.js", "/style.css"] {
            let body = asset(path).unwrap().1;
            for banned in [
                "http://",
                "https://",
                "//cdn",
                "@import",
                "url(",
                "Authorization",
            ] {
                assert!(!body.contains(banned), "{path} contains {banned:?}");
            }
        }
        let js = asset("/app.js").unwrap().1;
        assert!(!js.contains("token:") && !js.contains("configureSession"));
        assert!(js.contains(r#"url_of("/ws")"#) && js.contains("?resume="));
        assert!(js.contains("&after=") && js.contains("guestgate.getHistory"));
        assert!(js.contains("guestgate.startNew") && js.contains("xhr.upload.onprogress"));
    }

    #[test]
    fn stays_small() {
        let lines: usize = ["/", "/app.js", "/style.css"]
            .iter()
            .map(|p| asset(p).unwrap().1.lines().count())
            .sum();
        // Every Messenger feature (typing, uploads, history, replay, read-only, startNew, sign-in)
        // in plain files a reader can take in at one sitting.
        assert!(lines < 720, "the demo page grew to {lines} lines");
    }
}
