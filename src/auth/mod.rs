//! Upstream authentication: everything guestgate does to obtain credentials on the browser's
//! behalf before the relay starts.
//!
//! - [`http_client`]: the one outbound HTTP client (TLS from [`crate::tls`], the same roots as
//!   the WebSocket upstream leg; no redirects, no proxy from the environment).
//! - [`token`]: an OAuth2 client-credentials token source shared by every connection of a
//!   route: cached, refreshed ahead of expiry, one fetch in flight at a time.
//! - [`backoff`]: jittered exponential backoff and a small circuit breaker, pure logic with
//!   time passed in.

pub mod backoff;
pub mod flow;
pub mod hello;
pub mod http_client;
pub mod resume;
pub mod resume_frame;
pub mod sign_in_code;
pub mod steps;
pub mod template;
pub mod token;
