//! The slow path: whole browser messages reassembled, unmasked, rewritten by a
//! [`MessageTransform`], and re-framed with a fresh mask. Used only on routes whose preset must
//! change what the browser sends (e.g. inserting the session token the browser never sees);
//! everything else, and the whole upstream-to-browser direction, stays on the verbatim path.
//!
//! Memory: the pump admits a frame (checking the route's frame and message limits from its
//! header) before any of its payload is absorbed here, so the reassembled message never
//! exceeds the message limit. At its peak a message costs about twice its size: the
//! reassembled bytes and the rewrite's result, or the result and its frame (the message is
//! freed before the frame is built). How long a fragmented message may take to finish is
//! the pump's to bound (its idle timer runs between reads, not per message).

use crate::ws::frame::{self, Header};

/// A rewrite of complete browser messages.
pub trait MessageTransform: Send {
    /// Returns the payload to send upstream instead of `message` (same opcode), or a short,
    /// secret-free reason to refuse it; a refusal closes the browser with 1008.
    fn transform(&mut self, opcode: u8, message: &[u8]) -> Result<Vec<u8>, &'static str>;
}

/// Reassembly state for one direction on the slow path.
pub struct Reassembly {
    transform: Box<dyn MessageTransform>,
    message: Vec<u8>,
    opcode: u8,
    mask: Option<[u8; 4]>,
    offset: usize,
    out: Vec<u8>,
    written: usize,
}

impl Reassembly {
    /// Slow-path state around `transform`.
    pub fn new(transform: Box<dyn MessageTransform>) -> Self {
        Self {
            transform,
            message: Vec::new(),
            opcode: 0,
            mask: None,
            offset: 0,
            out: Vec::new(),
            written: 0,
        }
    }

    /// A data frame starts (its header was admitted, so its payload is within the limits):
    /// room for the payload is reserved at once, without the doubling growth would cost.
    pub fn begin_frame(&mut self, header: &Header) {
        if header.opcode != 0 {
            self.opcode = header.opcode;
        }
        let payload = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
        self.message.reserve_exact(payload);
        self.mask = header.mask;
        self.offset = 0;
    }

    /// Payload bytes of the current frame, still masked.
    pub fn absorb(&mut self, bytes: &[u8]) {
        let start = self.message.len();
        self.message.extend_from_slice(bytes);
        if let Some(mask) = self.mask {
            for (i, b) in self.message[start..].iter_mut().enumerate() {
                *b ^= mask[(self.offset + i) & 3];
            }
        }
        self.offset += bytes.len();
    }

    /// The message is complete: rewrite it and frame the result for the upstream.
    pub fn finish_message(&mut self) -> Result<(), &'static str> {
        let message = std::mem::take(&mut self.message);
        let rewritten = self.transform.transform(self.opcode, &message)?;
        drop(message);
        self.out.clear();
        self.written = 0;
        frame::encode(
            &mut self.out,
            true,
            self.opcode,
            &rewritten,
            Some(rand::random()),
        );
        Ok(())
    }

    /// Rewritten bytes not yet written.
    pub fn pending(&self) -> &[u8] {
        &self.out[self.written..]
    }

    /// Records that `n` pending bytes were written; frees the frame when done.
    pub fn consume(&mut self, n: usize) {
        self.written += n;
        if self.written == self.out.len() {
            self.out = Vec::new();
            self.written = 0;
        }
    }
}

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
