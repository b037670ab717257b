//! Per-client and per-route counters that bound what one address, or everyone at once, can
//! make guestgate spend upstream: a per-IP connection count, a per-IP handshake token bucket
//! and a cap on concurrent upstream auth flows. All take the time as an argument and never
//! sleep, so they are tested with explicit instants.
//!
//! Memory is bounded by construction. The connection tracker holds one entry per address with
//! an open connection and removes it at zero. The handshake limiter forgets a bucket once it
//! has refilled (an idle bucket behaves exactly like a missing one) and holds at most
//! `max_tracked_ips`; when full of non-idle buckets it **fails closed** for addresses it is not
//! already tracking (429), because failing open would let anyone with enough addresses (cheap
//! with IPv6) switch the rate limit off. Already-tracked clients are unaffected.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::config::RateConfig;
use super::rejection::{PER_IP_CAP_RETRY_AFTER, Rejection, SETUP_CAP_RETRY_AFTER};

const SHARDS: usize = 16;
/// How often the handshake limiter sweeps idle buckets in normal operation.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How often it may sweep when full (a sweep is linear in the shard's size).
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave a count half-updated; carry on.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.capacity() > 4 * map.len() {
        map.shrink_to_fit();
    }
}

/// Open connections per client address, capped. Share it with `Arc`.
pub struct ConnectionTracker {
    max: u32,
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<IpAddr, u32>>]>,
}

impl ConnectionTracker {
    /// A tracker allowing `max_per_ip` connections per address.
    pub fn new(max_per_ip: u32) -> Arc<Self> {
        Arc::new(Self {
            max: max_per_ip,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        })
    }

    fn shard(&self, ip: IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        &self.shards[self.hasher.hash_one(ip) as usize % self.shards.len()]
    }

    /// Counts one more connection from `ip`, or refuses with [`Rejection::PerIpCap`]. The
    /// connection is counted until the returned guard is dropped.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<IpGuard, Rejection> {
        let mut map = lock(self.shard(ip));
        let count = map.get(&ip).copied().unwrap_or(0);
        if count >= self.max {
            // Nothing is inserted on refusal, so refused addresses cost no memory.
            return Err(Rejection::PerIpCap {
                retry_after: PER_IP_CAP_RETRY_AFTER,
            });
        }
        map.insert(ip, count + 1);
        Ok(IpGuard {
            tracker: self.clone(),
            ip,
        })
    }

    /// Connections currently counted for `ip`.
    pub fn count(&self, ip: IpAddr) -> u32 {
        lock(self.shard(ip)).get(&ip).copied().unwrap_or(0)
    }

    /// Addresses with at least one counted connection.
    pub fn tracked_ips(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }
}

impl std::fmt::Debug for ConnectionTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionTracker")
            .field("max_per_ip", &self.max)
            .field("tracked_ips", &self.tracked_ips())
            .finish()
    }
}

/// One counted connection; dropping it releases the count (and the entry at zero).
#[derive(Debug)]
#[must_use = "the connection stops being counted as soon as the guard is dropped"]
pub struct IpGuard {
    tracker: Arc<ConnectionTracker>,
    ip: IpAddr,
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        let mut map = lock(self.tracker.shard(self.ip));
        if let Some(count) = map.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.ip);
                shrink(&mut map);
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Default)]
struct RateShard {
    buckets: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
}

/// Per-address token buckets for upgrade attempts, with a bounded number of addresses.
pub struct HandshakeLimiter {
    per_second: f64,
    burst: f64,
    shard_cap: usize,
    hasher: RandomState,
    shards: Box<[Mutex<RateShard>]>,
}

impl HandshakeLimiter {
    /// A limiter remembering at most about `max_tracked` addresses.
    pub fn new(rate: RateConfig, max_tracked: usize) -> Self {
        Self::with_shards(rate, max_tracked, SHARDS)
    }

    pub(crate) fn with_shards(rate: RateConfig, max_tracked: usize, shards: usize) -> Self {
        let shards = shards.clamp(1, max_tracked.max(1));
        Self {
            per_second: rate.per_second,
            burst: f64::from(rate.burst.max(1)),
            shard_cap: max_tracked.max(1).div_ceil(shards),
            hasher: RandomState::new(),
            shards: (0..shards).map(|_| Mutex::default()).collect(),
        }
    }

    /// Takes one token for `key` at `now`, or refuses with [`Rejection::Rate`] saying when the
    /// next token will be there.
    pub fn check(&self, key: IpAddr, now: Instant) -> Result<(), Rejection> {
        let index = self.hasher.hash_one(key) as usize % self.shards.len();
        let mut shard = lock(&self.shards[index]);
        let due = shard
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY);
        if due {
            self.sweep(&mut shard, now);
        }
        if let Some(bucket) = shard.buckets.get_mut(&key) {
            self.refill(bucket, now);
            // A hair of tolerance so `n / rate` seconds really refills `n` tokens.
            if bucket.tokens >= 1.0 - 1e-9 {
                bucket.tokens = (bucket.tokens - 1.0).max(0.0);
                return Ok(());
            }
            // Rounded up to the microsecond so that retrying after it really succeeds.
            let micros = ((1.0 - bucket.tokens) / self.per_second * 1e6).ceil();
            return Err(Rejection::Rate {
                retry_after: Duration::from_micros(micros as u64),
            });
        }
        if shard.buckets.len() >= self.shard_cap {
            let may_sweep = shard
                .last_sweep
                .is_none_or(|t| now.saturating_duration_since(t) >= FULL_SWEEP_EVERY);
            if may_sweep {
                self.sweep(&mut shard, now);
            }
            if shard.buckets.len() >= self.shard_cap {
                return Err(Rejection::Rate {
                    retry_after: FULL_SWEEP_EVERY,
                });
            }
        }
        shard.buckets.insert(
            key,
            Bucket {
                tokens: self.burst - 1.0,
                at: now,
            },
        );
        Ok(())
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.at = bucket.at.max(now);
    }

    /// Forgets buckets that have refilled: they behave exactly like absent ones.
    fn sweep(&self, shard: &mut RateShard, now: Instant) {
        shard.last_sweep = Some(now);
        shard.buckets.retain(|_, b| {
            let mut b = *b;
            self.refill(&mut b, now);
            b.tokens < self.burst
        });
        shrink(&mut shard.buckets);
    }

    /// Addresses currently remembered.
    pub fn tracked_ips(&self) -> usize {
        self.shards.iter().map(|s| lock(s).buckets.len()).sum()
    }
}

impl std::fmt::Debug for HandshakeLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeLimiter")
            .field("per_second", &self.per_second)
            .field("burst", &self.burst)
            .field("tracked_ips", &self.tracked_ips())
            .finish()
    }
}

/// A cap on concurrent upstream auth flows. Share it with `Arc`.
#[derive(Debug)]
pub struct SetupLimiter {
    max: u32,
    in_flight: AtomicU32,
}

impl SetupLimiter {
    /// A limiter allowing `max` flows at once.
    pub fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            max,
            in_flight: AtomicU32::new(0),
        })
    }

    /// Starts a flow, or refuses with [`Rejection::SetupCap`] when `max` are running.
    pub fn try_begin(self: &Arc<Self>) -> Result<SetupGuard, Rejection> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .map(|_| SetupGuard(Some(self.clone())))
            .map_err(|_| Rejection::SetupCap {
                retry_after: SETUP_CAP_RETRY_AFTER,
            })
    }

    /// Flows currently running.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// One running auth flow; drop it when the flow ends (ready, failed or abandoned).
#[derive(Debug)]
#[must_use = "the setup slot is released as soon as the guard is dropped"]
pub struct SetupGuard(Option<Arc<SetupLimiter>>);

impl SetupGuard {
    /// A guard for a route without a setup cap.
    pub fn unlimited() -> Self {
        Self(None)
    }
}

impl Drop for SetupGuard {
    fn drop(&mut self) {
        if let Some(limiter) = &self.0 {
            limiter.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
