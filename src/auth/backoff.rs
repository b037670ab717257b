//! Retry pacing for upstream calls: exponential backoff with full jitter, and a small circuit
//! breaker that stops guestgate hammering an endpoint that keeps failing.
//!
//! Both are pure logic: nothing here sleeps or reads a clock. Callers pass the current
//! [`Instant`] in, so tests drive them with made-up (or paused) time.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// Exponential backoff with "full jitter" (AWS architecture blog, 2015).
///
/// The delay before retry number `attempt` (0 for the first retry) is drawn uniformly from
/// `[0, min(max, base * 2^attempt)]`. So every delay is at most `max`, the ceiling doubles per
/// attempt until it reaches `max`, and the average is half the ceiling. Randomising the whole
/// interval (rather than adding a little jitter to a fixed delay) is what spreads many
/// clients that failed at the same moment, so they do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling for the first retry.
    pub base: Duration,
    /// No delay is ever longer than this.
    pub max: Duration,
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The upper bound for retry number `attempt`: `min(max, base * 2^attempt)`, without
    /// overflowing however large `attempt` grows.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.max)
    }

    /// A random delay in `[0, ceiling(attempt)]`, using the thread-local generator.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, &mut rand::rng())
    }

    /// A random delay in `[0, ceiling(attempt)]` drawn from `rng` (seedable in tests).
    pub fn delay_with<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=ceiling))
    }
}

/// What a [`Breaker`] is doing at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; failures are being counted.
    Closed,
    /// Too many consecutive failures: calls fail fast until the cool-down ends.
    Open,
    /// The cool-down has ended: one trial call may go through to test the endpoint.
    HalfOpen,
}

/// A consecutive-failure circuit breaker.
///
/// After `threshold` failures in a row it opens for `cooldown`; while open, [`Breaker::admit`]
/// refuses calls. When the cool-down has passed it admits exactly one trial call (half-open):
/// a success closes it, a failure opens it for another cool-down. A trial whose outcome is
/// never recorded (its caller was cancelled) stops blocking others after one more cool-down,
/// so a lost trial cannot wedge the breaker shut.
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: u32,
    opened_at: Option<Instant>,
    trial_started: Option<Instant>,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` (at least 1) consecutive failures.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            failures: 0,
            opened_at: None,
            trial_started: None,
        }
    }

    /// Asks to make a call now. `Err` carries how long until a call may be tried again.
    ///
    /// In the half-open state the first caller is admitted as the trial, and the state
    /// records that; everyone else is refused until the trial's outcome is recorded.
    pub fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        let Some(opened_at) = self.opened_at else {
            return Ok(());
        };
        let reopens = opened_at + self.cooldown;
        if now < reopens {
            return Err(reopens - now);
        }
        if let Some(started) = self.trial_started {
            let lapses = started + self.cooldown;
            if now < lapses {
                return Err(lapses - now);
            }
        }
        self.trial_started = Some(now);
        Ok(())
    }

    /// Records a successful call: the breaker closes and the failure count resets.
    pub fn record_success(&mut self) {
        self.failures = 0;
        self.opened_at = None;
        self.trial_started = None;
    }

    /// Records a failed call. Opens the breaker when the threshold is reached, and re-opens
    /// it (for a fresh cool-down) when a half-open trial fails.
    pub fn record_failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.threshold {
            self.opened_at = Some(now);
            self.trial_started = None;
        }
    }

    /// Opens the breaker now whatever the count: for failures that retrying cannot fix
    /// (the endpoint rejected our credentials), so the next try waits a full cool-down.
    pub fn trip(&mut self, now: Instant) {
        self.failures = self.failures.max(self.threshold);
        self.opened_at = Some(now);
        self.trial_started = None;
    }

    /// The state at `now`, without admitting anything.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.opened_at {
            None => BreakerState::Closed,
            Some(opened_at) if now < opened_at + self.cooldown => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Failures since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    /// The number of consecutive failures that opens the breaker.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceiling_doubles_then_caps_at_max() {
        let b = Backoff::new(100 * MS, 1000 * MS);
        let ceilings: Vec<_> = (0..6).map(|a| b.ceiling(a)).collect();
        assert_eq!(
            ceilings,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        // No overflow for absurd attempt numbers or bounds.
        assert_eq!(b.ceiling(31), 1000 * MS);
        assert_eq!(b.ceiling(u32::MAX), 1000 * MS);
        let huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.ceiling(40), Duration::MAX);
        assert!(huge.delay(40) <= Duration::MAX);
    }

    #[test]
    fn delays_stay_within_zero_and_the_ceiling_and_spread_over_it() {
        let b = Backoff::new(200 * MS, 10_000 * MS);
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 0..40 {
            let ceiling = b.ceiling(attempt);
            let samples: Vec<_> = (0..500).map(|_| b.delay_with(attempt, &mut rng)).collect();
            assert!(samples.iter().all(|d| *d <= ceiling && *d <= b.max));
            // Full jitter: the samples cover the interval rather than bunching at one end.
            let below_quarter = samples.iter().filter(|d| **d < ceiling / 4).count();
            let above_three_quarters = samples.iter().filter(|d| **d > ceiling * 3 / 4).count();
            assert!(
                below_quarter > 50 && above_three_quarters > 50,
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn zero_base_means_no_delay() {
        let b = Backoff::new(Duration::ZERO, 10 * MS);
        assert_eq!(b.delay(3), Duration::ZERO);
    }

    #[test]
    fn breaker_opens_after_threshold_and_fails_fast() {
        let t0 = Instant::now();
        let mut br = Breaker::new(3, 30 * 1000 * MS);
        for _ in 0..2 {
            assert_eq!(br.admit(t0), Ok(()));
            br.record_failure(t0);
        }
        assert_eq!(br.state(t0), BreakerState::Closed);
        br.record_failure(t0);
        assert_eq!(br.state(t0), BreakerState::Open);
        let later = t0 + 10 * 1000 * MS;
        assert_eq!(br.admit(later), Err(20 * 1000 * MS));
    }

    #[test]
    fn success_resets_the_count() {
        let t0 = Instant::now();
        let mut br = Breaker::new(2, 1000 * MS);
        br.record_failure(t0);
        br.record_success();
        br.record_failure(t0);
        assert_eq!(br.state(t0), BreakerState::Closed);
        assert_eq!(br.consecutive_failures(), 1);
    }

    #[test]
    fn half_open_admits_one_trial_then_closes_or_reopens() {
        let t0 = Instant::now();
        let cool = 1000 * MS;
        let mut br = Breaker::new(1, cool);
        br.record_failure(t0);
        let t1 = t0 + cool;
        assert_eq!(br.state(t1), BreakerState::HalfOpen);
        assert_eq!(br.admit(t1), Ok(()));
        assert!(
            br.admit(t1).is_err(),
            "second caller must wait for the trial"
        );
        // The trial fails: a fresh cool-down from the failure.
        br.record_failure(t1);
        assert_eq!(br.admit(t1 + cool / 2), Err(cool / 2));
        let t2 = t1 + cool;
        assert_eq!(br.admit(t2), Ok(()));
        br.record_success();
        assert_eq!(br.state(t2), BreakerState::Closed);
        assert_eq!(br.admit(t2), Ok(()));
        assert_eq!(br.admit(t2), Ok(()));
    }

    #[test]
    fn a_lost_trial_stops_blocking_after_a_cooldown() {
        let t0 = Instant::now();
        let cool = 1000 * MS;
        let mut br = Breaker::new(1, cool);
        br.record_failure(t0);
        assert_eq!(br.admit(t0 + cool), Ok(()));
        // The trial's caller vanished without recording anything.
        assert!(br.admit(t0 + cool + cool / 2).is_err());
        assert_eq!(br.admit(t0 + 2 * cool), Ok(()));
    }

    #[test]
    fn trip_opens_at_once() {
        let t0 = Instant::now();
        let mut br = Breaker::new(5, 1000 * MS);
        br.trip(t0);
        assert_eq!(br.state(t0), BreakerState::Open);
        assert!(br.admit(t0).is_err());
        assert_eq!(br.consecutive_failures(), 5);
    }
}
