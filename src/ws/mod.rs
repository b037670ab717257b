//! The WebSocket codec shared by every part of guestgate that reads or writes frames itself:
//! the relay core (which parses headers and forwards payloads by range) and the hello exchange
//! of the auth flow (which reads whole replies).
//!
//! - [`frame`]: header parsing, RFC 6455 validation from the header alone, limits, and the
//!   encoders for frames guestgate writes itself.
//! - [`message`]: a buffered reader that turns frames into whole messages and control events,
//!   for the few places that need message contents rather than byte ranges.

pub mod frame;
pub mod message;
