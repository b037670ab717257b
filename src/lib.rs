//! guestgate: a WebSocket relay that authenticates contact-center guest sessions on the
//! browser's behalf.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod close_code;
pub mod config;
pub mod demo;
pub mod demo_page;
pub mod edge;
pub mod explain;
pub mod handshake;
pub mod metrics;
pub mod mock;
pub mod preset;
pub mod relay;
pub mod route;
pub mod secret;
pub mod server;
pub mod session;
pub mod setup;
pub mod tls;
pub mod tls_server;
pub mod upstream;
pub mod ws;
