//! What `guestgate check` prints after the effective config: each route's expanded upstream
//! flow, in words, with every secret and per-connection value shown as a placeholder.

use std::fmt::Write;

use crate::route::{Route, RouteUpstream};

/// A commented, human-readable expansion of one route.
pub fn route(route: &Route) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# route {:?} at {}", route.name, route.path);
    match &route.upstream {
        RouteUpstream::Preset(preset) => {
            for line in preset.explain() {
                let _ = writeln!(out, "#   {line}");
            }
        }
        RouteUpstream::Flow(flow) => {
            let _ = writeln!(
                out,
                "#   flow: oauth token (if configured) -> steps -> upstream rendered per connection"
            );
            let _ = writeln!(out, "#   upstream host: {}", flow.flow.upstream_host());
        }
        RouteUpstream::Relay(target) => {
            let _ = writeln!(
                out,
                "#   plain relay to {}",
                crate::upstream::host_label(&target.url)
            );
        }
    }
    // The limits in force, after any preset default (the config above shows only what the
    // file set).
    let relay = &route.relay;
    let _ = writeln!(
        out,
        "#   relay limits: browser frame {} B, browser message {} B, upstream frame {} B, upstream message {} B, read buffer {} B",
        relay.browser_limits.max_frame,
        relay.browser_limits.max_message,
        relay.upstream_limits.max_frame,
        relay.upstream_limits.max_message,
        relay.buffer_size
    );
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
