//! What `guestgate check` prints after the effective config: each route's expanded upstream
//! flow, in words, with every secret and per-connection value shown as a placeholder.

use std::fmt::Write;

use crate::route::Route;

/// A commented, human-readable expansion of one route.
pub fn route(route: &Route) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# route {:?} at {}", route.name, route.path);
    match (&route.genesys, &route.flow) {
        (Some(g), _) => {
            let _ = writeln!(out, "#   preset: genesys-web-messaging");
            let _ = writeln!(out, "#   upstream: {}", g.socket_url());
            let _ = writeln!(out, "#   upstream Origin: {}", g.origin_header());
            let hello = g.hello("[session token, generated per conversation]");
            for frame in &hello.frames {
                let _ = writeln!(out, "#   hello: {frame}");
            }
            for c in &hello.ready {
                let _ = writeln!(out, "#   ready when {} == {}", c.pointer, c.equals);
            }
            let _ = writeln!(out, "#   ready deadline: {:?}", hello.deadline);
            let _ = writeln!(
                out,
                "#   browser requests: token injected; actions allowed: {}",
                g.allowed_actions.join(", ")
            );
        }
        (None, Some(_)) => {
            let _ = writeln!(
                out,
                "#   flow: oauth token (if configured) -> steps -> upstream rendered per connection"
            );
            let _ = writeln!(
                out,
                "#   upstream host: {}",
                crate::upstream::host_label(&route.target.url)
            );
        }
        (None, None) => {
            let _ = writeln!(
                out,
                "#   plain relay to {}",
                crate::upstream::host_label(&route.target.url)
            );
        }
    }
    if let Some((keys, cfg)) = &route.resume {
        let _ = writeln!(
            out,
            "#   resume: ?{}=<sealed ticket>, ttl {:?}, {} key(s) [redacted]",
            cfg.param,
            cfg.ttl,
            keys.key_count()
        );
    }
    out
}
