//! The browser message rate limit: a token bucket per connection, kept as one "theoretical
//! arrival time" (GCRA), so admitting a message is a compare and an add on a clock reading
//! the pump already has.

use std::time::Duration;

use tokio::time::Instant;

/// A route's limit on messages from one browser: `per_second` on average, bursts of up to
/// `burst` at once. Data messages count once (however fragmented), pings and pongs each count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained messages per second (at least 1).
    pub per_second: u32,
    /// Messages allowed at once after a quiet spell (at least 1).
    pub burst: u32,
}

/// One connection's bucket.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    /// Time one message costs.
    interval: Duration,
    /// How far ahead of now the arrival time may run: `burst` messages.
    span: Duration,
    /// When the bucket will be full again.
    tat: Instant,
}

impl Bucket {
    /// A full bucket for `limit`.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        let interval = Duration::from_secs(1) / limit.per_second.max(1);
        Self {
            interval,
            span: interval * limit.burst.max(1),
            tat: now,
        }
    }

    /// Takes one message's token at `now`; false (and nothing taken) when the bucket is empty.
    #[inline]
    pub fn admit(&mut self, now: Instant) -> bool {
        let next = self.tat.max(now) + self.interval;
        if next > now + self.span {
            return false;
        }
        self.tat = next;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_the_sustained_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(
            RateLimit {
                per_second: 5,
                burst: 20,
            },
            t0,
        );
        assert!((0..20).all(|_| b.admit(t0)), "the burst is allowed at once");
        assert!(!b.admit(t0), "the 21st message at once is over the limit");
        // One token back every 200 ms.
        assert!(!b.admit(t0 + Duration::from_millis(199)));
        assert!(b.admit(t0 + Duration::from_millis(200)));
        assert!(!b.admit(t0 + Duration::from_millis(200)));
        // After a quiet spell the bucket is full again, never fuller.
        let later = t0 + Duration::from_secs(60);
        assert!((0..20).all(|_| b.admit(later)));
        assert!(!b.admit(later));
    }
}
