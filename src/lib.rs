//! guestgate: a WebSocket relay that authenticates contact-center guest sessions on the
//! browser's behalf.
#![forbid(unsafe_code)]

pub mod secret;
pub mod close_code;
pub mod relay;
