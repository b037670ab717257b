//! Programmable fake upstreams for integration tests, benchmarks and `guestgate demo`:
//! a generic WebSocket server ([`FakeUpstream`]), a fake Genesys Cloud Web Messaging guest
//! socket ([`FakeGenesys`]) and a fake OAuth2 token plus guest-create endpoint ([`FakeOAuth`]).
//!
//! Every fake runs on an already-bound listener (tests bind `127.0.0.1:0`), is controlled
//! and observed through a cheap-to-clone handle, and stops on `shutdown()` or when its last
//! handle is dropped.

pub mod genesys;
pub mod oauth;
mod support;
pub mod ws_server;

pub use genesys::{FakeGenesys, FakeGenesysConfig, FakeGenesysHandle};
pub use oauth::{FakeOAuth, FakeOAuthConfig, FakeOAuthHandle, OAuthMode};
pub use support::{GENESYS_FORBIDDEN_BODY, MAX_MESSAGE_SIZE, UpgradeRequest, WaitTimeout};
pub use ws_server::{FakeBehavior, FakeUpstream, FakeUpstreamHandle};
