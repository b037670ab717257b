//! The chat page `guestgate demo` serves on its browser listener: plain HTML, CSS and JS
//! embedded in the binary with `include_str!`, so there is no build step and nothing to fetch
//! (no CDNs, no web fonts; the CSP-friendly split into three same-origin files keeps every
//! script out of the HTML).
//!
//! What the page does (see `app.js`):
//! - opens `ws(s)://<same host>/ws`, adding `?resume=<ticket>` when sessionStorage holds a
//!   resume ticket; it sends no credentials of any kind;
//! - sends Genesys Web Messaging requests without `token` and without `configureSession`
//!   (guestgate configures the upstream session and adds the token): `onMessage` with
//!   `Text`, typing `Event`s (at most one per 5 s), and an `echo` keepalive at most every 30 s;
//! - paces `onMessage` to Genesys's 2 per second per session (typing events only when they
//!   cannot delay a text) and tags each with a `tracingId`, so a text answered with a 429
//!   `TooManyRequestsErrorMessage` is sent again after `retryAfter`;
//! - stores the ticket from guestgate's own first frame,
//!   `{"type":"guestgate","class":"SessionReady","body":{"resumeTicket":..,"newSession":..}}`,
//!   and notes "Session resumed" when `newSession` is false;
//! - renders upstream `StructuredMessage`s verbatim: `Inbound` as the guest's bubble (the
//!   upstream's echo is the only copy, so nothing is shown twice), `Outbound` as the agent's,
//!   typing events as "Agent is typing…"; 429 and error frames as a notice;
//! - explains every close code guestgate sends in a notice banner and reconnects with
//!   exponential backoff and jitter (0.5 s doubling up to 15 s, longer after 4429) on the
//!   retryable ones; 1000, 1008, 4401, 4403, 4408 and a 4400 on a fresh connection wait for
//!   the guest (a Reconnect button, or sending a message); 4400 after a resume attempt drops
//!   the ticket and starts a new conversation.
//!
//! Key elements carry `data-testid` attributes for the browser test in `e2e/`.

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// The page's files by request path (query string already removed): `/` and `/index.html`
/// give the page, `/app.js` and `/style.css` its script and style. Returns the
/// `Content-Type` and the body, or `None` for any other path.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" | "/index.html" => Some(("text/html; charset=utf-8", INDEX_HTML)),
        "/app.js" => Some(("text/javascript; charset=utf-8", APP_JS)),
        "/style.css" => Some(("text/css; charset=utf-8", STYLE_CSS)),
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
    }

    #[test]
    fn stays_small() {
        let lines: usize = ["/", "/app.js", "/style.css"]
            .iter()
            .map(|p| asset(p).unwrap().1.lines().count())
            .sum();
        assert!(lines < 400, "the demo page grew to {lines} lines");
    }
}
