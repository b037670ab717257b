//! Pacing of `onMessage` requests to Genesys's limit (2 per session per second): requests over
//! the limit wait in a bounded per-connection queue and go out, in order, as soon as the
//! upstream's sliding one-second window has room. A page that types six messages fast sees no
//! 429; a page that keeps flooding gets a refusal frame for each request the full queue cannot
//! take (never a silent drop).
//!
//! The guest's typing events are thinned to the official Messenger's cadence (one per
//! [`TYPING_EVERY`]) before they reach the queue, so typing never eats the message budget.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Genesys's window for its `onMessage` limit, plus a margin for clock and network jitter
/// between guestgate's send and the upstream's receipt.
pub const WINDOW: Duration = Duration::from_millis(1_050);

/// The official Messenger sends its typing indicator at most this often.
pub const TYPING_EVERY: Duration = Duration::from_secs(5);

/// What happened to a request offered to the pacer.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Send it now.
    SendNow(Vec<u8>),
    /// It waits in the queue (position counted from 1).
    Queued(usize),
    /// The queue is full: the page is told, nothing is sent.
    Full,
    /// A typing event within [`TYPING_EVERY`] of the last one sent: dropped, as the official
    /// client would not have sent it.
    TypingThinned,
}

/// One connection's `onMessage` pacer.
#[derive(Debug)]
pub struct Pacer {
    per_window: usize,
    capacity: usize,
    sent: VecDeque<Instant>,
    queue: VecDeque<Vec<u8>>,
    last_typing: Option<Instant>,
}

impl Pacer {
    /// At most `per_window` sends per [`WINDOW`]; at most `capacity` requests waiting.
    pub fn new(per_window: usize, capacity: usize) -> Self {
        Self {
            per_window: per_window.max(1),
            capacity,
            sent: VecDeque::new(),
            queue: VecDeque::new(),
            last_typing: None,
        }
    }

    /// Offers a ready-to-send request; `typing` marks a guest typing event.
    pub fn offer(&mut self, request: Vec<u8>, typing: bool, now: Instant) -> Offer {
        if typing {
            if self
                .last_typing
                .is_some_and(|t| now.duration_since(t) < TYPING_EVERY)
            {
                return Offer::TypingThinned;
            }
            self.last_typing = Some(now);
        }
        self.expire(now);
        if self.queue.is_empty() && self.sent.len() < self.per_window {
            self.sent.push_back(now);
            return Offer::SendNow(request);
        }
        if self.queue.len() >= self.capacity {
            if typing {
                // Not sent after all: the next typing event may go.
                self.last_typing = None;
            }
            return Offer::Full;
        }
        self.queue.push_back(request);
        Offer::Queued(self.queue.len())
    }

    /// When the head of the queue may go, if anything waits.
    pub fn next_release(&self) -> Option<Instant> {
        if self.queue.is_empty() {
            return None;
        }
        if self.sent.len() < self.per_window {
            return Some(Instant::now());
        }
        self.sent.front().map(|t| *t + WINDOW)
    }

    /// The requests that may go now, in order.
    pub fn release(&mut self, now: Instant) -> Vec<Vec<u8>> {
        self.expire(now);
        let mut out = Vec::new();
        while self.sent.len() < self.per_window {
            let Some(next) = self.queue.pop_front() else {
                break;
            };
            self.sent.push_back(now);
            out.push(next);
        }
        out
    }

    /// Requests waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn expire(&mut self, now: Instant) {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.sent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u8) -> Vec<u8> {
        vec![n]
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_six_goes_out_two_per_window_in_order() {
        let mut p = Pacer::new(2, 16);
        let t0 = Instant::now();
        assert_eq!(p.offer(msg(1), false, t0), Offer::SendNow(msg(1)));
        assert_eq!(p.offer(msg(2), false, t0), Offer::SendNow(msg(2)));
        for n in 3..=6 {
            assert_eq!(p.offer(msg(n), false, t0), Offer::Queued(n as usize - 2));
        }
        assert_eq!(p.next_release(), Some(t0 + WINDOW));
        assert!(p.release(t0 + WINDOW - Duration::from_millis(1)).is_empty());
        assert_eq!(p.release(t0 + WINDOW), vec![msg(3), msg(4)]);
        assert_eq!(p.release(t0 + WINDOW * 2), vec![msg(5), msg(6)]);
        assert_eq!(p.queued(), 0);
        assert_eq!(p.next_release(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_refuses_and_keeps_what_it_holds() {
        let mut p = Pacer::new(2, 2);
        let t0 = Instant::now();
        for n in 1..=4 {
            assert!(matches!(
                p.offer(msg(n), false, t0),
                Offer::SendNow(_) | Offer::Queued(_)
            ));
        }
        assert_eq!(p.offer(msg(5), false, t0), Offer::Full);
        assert_eq!(p.release(t0 + WINDOW), vec![msg(3), msg(4)]);
    }

    #[tokio::test(start_paused = true)]
    async fn typing_is_thinned_to_one_per_five_seconds() {
        let mut p = Pacer::new(2, 16);
        let t0 = Instant::now();
        assert!(matches!(p.offer(msg(1), true, t0), Offer::SendNow(_)));
        let later = t0 + Duration::from_secs(4);
        assert_eq!(p.offer(msg(2), true, later), Offer::TypingThinned);
        assert!(matches!(
            p.offer(msg(3), true, t0 + TYPING_EVERY),
            Offer::SendNow(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_never_overtakes_a_queued_one() {
        let mut p = Pacer::new(2, 16);
        let t0 = Instant::now();
        p.offer(msg(1), false, t0);
        p.offer(msg(2), false, t0);
        assert_eq!(p.offer(msg(3), false, t0), Offer::Queued(1));
        // The window has room again, but 3 waits: 4 must queue behind it.
        let later = t0 + WINDOW;
        assert_eq!(p.offer(msg(4), false, later), Offer::Queued(2));
        assert_eq!(p.release(later), vec![msg(3), msg(4)]);
    }
}
