//! The WebSocket codec shared by every part of guestgate that reads or writes frames itself:
//! the relay core (which parses headers and forwards payloads by range) and the hello exchange
//! of the auth flow.
//!
//! - [`frame`]: header parsing, RFC 6455 validation from the header alone, limits, and the
//!   encoders for frames guestgate writes itself.

pub mod frame;
