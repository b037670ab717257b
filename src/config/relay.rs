//! The `[routes.relay]` section: frame limits, buffer size and timers as written in the
//! config, checked and turned into the relay core's [`RelayConfig`].
//!
//! The browser limits are optional: left unset they take the relay core's defaults, and a
//! preset that rewrites browser messages may lower them (see `GenesysPreset::tune_relay`);
//! set explicitly they are kept as written.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};
use crate::relay::{Limits, RateLimit, RelayConfig};

/// Relay limits and timers as written in the config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySettings {
    /// Largest frame payload a browser may send; `None` (unset) means the route's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser_max_frame_bytes: Option<u64>,
    /// Largest message a browser may send; `None` (unset) means the route's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser_max_message_bytes: Option<u64>,
    /// Largest frame payload the upstream may send.
    pub upstream_max_frame_bytes: u64,
    /// Largest message the upstream may send.
    pub upstream_max_message_bytes: u64,
    /// Read buffer size per active direction (idle connections hold none).
    pub buffer_bytes: usize,
    /// Move large payloads between plain TCP legs with splice(2) instead of copying them
    /// (Linux; ignored elsewhere and on TLS legs).
    pub splice: bool,
    /// A leg silent this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Ping interval toward the browser; `0s` turns pings off.
    #[serde(with = "humantime_serde")]
    pub browser_ping_interval: Duration,
    /// Ping interval toward the upstream; `0s` turns pings off.
    #[serde(with = "humantime_serde")]
    pub upstream_ping_interval: Duration,
    /// A write that makes no progress this long ends the relay.
    #[serde(with = "humantime_serde")]
    pub write_stall_timeout: Duration,
    /// How long a close handshake may take.
    #[serde(with = "humantime_serde")]
    pub close_timeout: Duration,
    /// How often a live connection's traffic is added to the metrics.
    #[serde(with = "humantime_serde")]
    pub metrics_flush_interval: Duration,
    /// Sustained browser messages per second, pings and pongs included; `0` turns the limit
    /// off; unset means the route's default (off, or the preset's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser_messages_per_second: Option<u32>,
    /// Browser messages allowed at once after a quiet spell; unset: 4 seconds' worth (or the
    /// preset's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser_message_burst: Option<u32>,
    /// A fragmented browser message must be complete this long after its first fragment;
    /// `0s` leaves only the idle timeout.
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        let d = RelayConfig::default();
        Self {
            browser_max_frame_bytes: None,
            browser_max_message_bytes: None,
            upstream_max_frame_bytes: d.upstream_limits.max_frame,
            upstream_max_message_bytes: d.upstream_limits.max_message,
            buffer_bytes: d.buffer_size,
            splice: d.splice,
            idle_timeout: d.idle_timeout,
            browser_ping_interval: d.browser_ping.unwrap_or_default(),
            upstream_ping_interval: d.upstream_ping.unwrap_or_default(),
            write_stall_timeout: d.write_stall,
            close_timeout: d.close_timeout,
            metrics_flush_interval: d.metrics_flush,
            browser_messages_per_second: None,
            browser_message_burst: None,
            message_timeout: d.message_timeout.unwrap_or_default(),
        }
    }
}

impl RelaySettings {
    /// The browser limits as written, unset ones at the relay core's defaults.
    pub fn browser_limits(&self) -> Limits {
        let d = RelayConfig::default().browser_limits;
        Limits {
            max_frame: self.browser_max_frame_bytes.unwrap_or(d.max_frame),
            max_message: self.browser_max_message_bytes.unwrap_or(d.max_message),
        }
    }

    /// The browser rate limit as written: `None` when unset or turned off (`0`).
    pub fn browser_rate(&self) -> Option<RateLimit> {
        let per_second = self.browser_messages_per_second.filter(|r| *r > 0)?;
        Some(RateLimit {
            per_second,
            burst: self
                .browser_message_burst
                .unwrap_or(per_second.saturating_mul(4)),
        })
    }

    /// The relay core's view of these settings.
    pub fn to_relay_config(&self) -> RelayConfig {
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        RelayConfig {
            browser_limits: self.browser_limits(),
            upstream_limits: Limits {
                max_frame: self.upstream_max_frame_bytes,
                max_message: self.upstream_max_message_bytes,
            },
            buffer_size: self.buffer_bytes,
            splice: self.splice,
            idle_timeout: self.idle_timeout,
            browser_ping: nonzero(self.browser_ping_interval),
            upstream_ping: nonzero(self.upstream_ping_interval),
            write_stall: self.write_stall_timeout,
            close_timeout: self.close_timeout,
            metrics_flush: self.metrics_flush_interval,
            browser_rate: self.browser_rate(),
            message_timeout: nonzero(self.message_timeout),
        }
    }
}

impl RelaySettings {
    pub(super) fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        let browser = self.browser_limits();
        for (name, frame, message) in [
            ("browser", browser.max_frame, browser.max_message),
            (
                "upstream",
                self.upstream_max_frame_bytes,
                self.upstream_max_message_bytes,
            ),
        ] {
            if frame < 125 {
                return Err(invalid(
                    key(&format!("{name}_max_frame_bytes")),
                    "must be at least 125",
                ));
            }
            if message < frame {
                return Err(invalid(
                    key(&format!("{name}_max_message_bytes")),
                    "must be at least the frame limit",
                ));
            }
        }
        if self.browser_message_burst == Some(0) {
            return Err(invalid(key("browser_message_burst"), "must be at least 1"));
        }
        if self.browser_message_burst.is_some() && self.browser_messages_per_second.is_none() {
            return Err(invalid(
                key("browser_message_burst"),
                "needs browser_messages_per_second",
            ));
        }
        if !(1024..=16 << 20).contains(&self.buffer_bytes) {
            return Err(invalid(
                key("buffer_bytes"),
                "must be between 1024 and 16777216",
            ));
        }
        for (name, d) in [
            ("idle_timeout", self.idle_timeout),
            ("write_stall_timeout", self.write_stall_timeout),
            ("close_timeout", self.close_timeout),
            ("metrics_flush_interval", self.metrics_flush_interval),
        ] {
            if d.is_zero() {
                return Err(invalid(key(name), "must be more than 0s"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> RelaySettings {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn the_rate_limit_is_off_unless_written_and_burst_defaults_to_four_seconds() {
        assert_eq!(parse("").to_relay_config().browser_rate, None);
        assert_eq!(
            parse("browser_messages_per_second = 0").browser_rate(),
            None
        );
        assert_eq!(
            parse("browser_messages_per_second = 3").browser_rate(),
            Some(RateLimit {
                per_second: 3,
                burst: 12
            })
        );
        let both = parse("browser_messages_per_second = 3\nbrowser_message_burst = 5");
        assert_eq!(both.browser_rate().map(|r| r.burst), Some(5));
    }

    #[test]
    fn message_timeout_defaults_to_ten_seconds_and_zero_turns_it_off() {
        assert_eq!(
            parse("").to_relay_config().message_timeout,
            Some(Duration::from_secs(10))
        );
        let off = parse("message_timeout = \"0s\"").to_relay_config();
        assert_eq!(off.message_timeout, None);
    }

    #[test]
    fn a_burst_needs_a_rate_and_is_at_least_one() {
        let err = |t: &str| {
            parse(t)
                .validate("routes[0].relay")
                .unwrap_err()
                .to_string()
        };
        assert!(err("browser_message_burst = 4").contains("browser_message_burst"));
        assert!(
            err("browser_messages_per_second = 2\nbrowser_message_burst = 0")
                .contains("browser_message_burst")
        );
    }
}
