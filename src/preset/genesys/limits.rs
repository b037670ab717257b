//! Browser limits on Genesys routes. Every browser message on such a route is reassembled and
//! parsed (to check `action` and insert the token), so what a browser may send is bounded
//! small by default, and checked from frame headers before a byte of it is buffered.
//!
//! Why 64 KiB: Messenger requests are small. Genesys limits a text message's length
//! server-side to a few thousand characters and custom attributes to about 2 KB, and
//! attachments are uploaded over HTTPS, not through the socket. Even a text of 4,000
//! characters written entirely as `\uXXXX` surrogate pairs (12 bytes each) stays under 48 KiB;
//! 64 KiB leaves room for the envelope.

use tracing::warn;

use crate::config::RelaySettings;
use crate::relay::Limits;

/// The default largest browser message (and frame) on a Genesys route.
pub const BROWSER_MESSAGE_LIMIT: u64 = 64 << 10;

/// Lowers the browser limits the config left unset to [`BROWSER_MESSAGE_LIMIT`]; keeps the ones
/// it set, warning when they are larger.
pub(super) fn tune_browser_limits(limits: &mut Limits, written: &RelaySettings) {
    if written.browser_max_frame_bytes.is_none() {
        limits.max_frame = BROWSER_MESSAGE_LIMIT.min(limits.max_message);
    }
    if written.browser_max_message_bytes.is_none() {
        limits.max_message = BROWSER_MESSAGE_LIMIT.max(limits.max_frame);
    }
    if limits.max_message > BROWSER_MESSAGE_LIMIT {
        warn!(
            max_message_bytes = limits.max_message,
            max_frame_bytes = limits.max_frame,
            default_bytes = BROWSER_MESSAGE_LIMIT,
            "genesys preset: browser limits set above the default; every browser message is \
             buffered and parsed whole, so each connection may hold about twice this much"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuned(frame: Option<u64>, message: Option<u64>) -> Limits {
        let written = RelaySettings {
            browser_max_frame_bytes: frame,
            browser_max_message_bytes: message,
            ..RelaySettings::default()
        };
        let mut limits = written.browser_limits();
        tune_browser_limits(&mut limits, &written);
        limits
    }

    fn limits(max_frame: u64, max_message: u64) -> Limits {
        Limits {
            max_frame,
            max_message,
        }
    }

    #[test]
    fn unset_limits_drop_to_64_kib() {
        assert_eq!(tuned(None, None), limits(65536, 65536));
    }

    #[test]
    fn explicit_limits_are_kept() {
        assert_eq!(tuned(Some(1000), Some(4000)), limits(1000, 4000));
        assert_eq!(
            tuned(Some(1 << 20), Some(16 << 20)),
            limits(1 << 20, 16 << 20)
        );
        // One set: the other follows so that the frame limit never exceeds the message's.
        assert_eq!(tuned(None, Some(1 << 20)), limits(65536, 1 << 20));
        assert_eq!(tuned(None, Some(4000)), limits(4000, 4000));
        assert_eq!(tuned(Some(1 << 20), None), limits(1 << 20, 1 << 20));
        assert_eq!(tuned(Some(4000), None), limits(4000, 65536));
    }
}
