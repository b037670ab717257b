//! guestgate: a WebSocket relay that authenticates contact-center guest sessions on the
//! browser's behalf.
//!
//! Layout, in the order a connection meets it: [`server`] accepts and upgrades (with
//! [`http1`], [`handshake`] and the [`edge`] policy), [`session`] owns the upgraded connection,
//! [`setup`] opens the upstream session by the route's kind (plain [`upstream`], an
//! [`auth::flow`], or a [`preset`]), and [`relay`] forwards frames verbatim using the [`ws`]
//! codec. [`config`] and [`route`] describe what to do; [`metrics`] and [`admin`] show it.
//! `docs/architecture.md` in the repository draws the whole path.

pub(crate) mod admin;
pub mod app;
pub mod auth;
pub mod close_code;
pub mod config;
pub mod demo;
pub(crate) mod demo_page;
pub mod edge;
pub mod explain;
pub(crate) mod handshake;
pub(crate) mod http1;
pub(crate) mod log_throttle;
pub mod metrics;
pub mod mock;
pub mod preset;
pub mod relay;
pub(crate) mod route;
pub mod secret;
pub mod server;
pub(crate) mod session;
pub(crate) mod setup;
pub mod tls;
pub mod tls_server;
pub(crate) mod upstream;
pub mod ws;
