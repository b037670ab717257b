use proptest::prelude::*;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn rate(per_second: f64, burst: u32) -> RateConfig {
    RateConfig { per_second, burst }
}

#[test]
fn per_ip_cap_acquires_releases_and_forgets() {
    let tracker = ConnectionTracker::new(2);
    let a = ip("198.51.100.1");
    let b = ip("198.51.100.2");
    let g1 = tracker.try_acquire(a).unwrap();
    let g2 = tracker.try_acquire(a).unwrap();
    let refused = tracker.try_acquire(a).unwrap_err();
    assert_eq!(
        refused,
        Rejection::PerIpCap {
            retry_after: PER_IP_CAP_RETRY_AFTER
        }
    );
    assert_eq!(refused.status(), http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.reason_label(), "per_ip_cap");
    // Another address is unaffected.
    let gb = tracker.try_acquire(b).unwrap();
    assert_eq!((tracker.count(a), tracker.count(b)), (2, 1));

    drop(g1);
    assert_eq!(tracker.count(a), 1);
    let g3 = tracker.try_acquire(a).unwrap();
    drop((g2, g3, gb));
    assert_eq!(tracker.count(a), 0);
    assert_eq!(tracker.tracked_ips(), 0, "entries are removed at zero");
}

#[test]
fn per_ip_tracker_memory_returns_to_zero_after_many_addresses() {
    let tracker = ConnectionTracker::new(1);
    let guards: Vec<_> = (0..5000u32)
        .map(|i| tracker.try_acquire(IpAddr::from(i.to_be_bytes())).unwrap())
        .collect();
    assert_eq!(tracker.tracked_ips(), 5000);
    drop(guards);
    assert_eq!(tracker.tracked_ips(), 0);
}

#[test]
fn per_ip_tracker_is_safe_across_threads() {
    let tracker = ConnectionTracker::new(3);
    let a = ip("198.51.100.1");
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..1000 {
                    if let Ok(g) = tracker.try_acquire(a) {
                        assert!(tracker.count(a) <= 3);
                        drop(g);
                    }
                }
            });
        }
    });
    assert_eq!(tracker.count(a), 0);
    assert_eq!(tracker.tracked_ips(), 0);
}

#[test]
fn token_bucket_allows_burst_then_refills_at_rate() {
    let limiter = HandshakeLimiter::new(rate(2.0, 3), 1000);
    let a = ip("198.51.100.1");
    let t0 = Instant::now();
    for _ in 0..3 {
        limiter.check(a, t0).unwrap();
    }
    let refused = limiter.check(a, t0).unwrap_err();
    assert_eq!(
        refused,
        Rejection::Rate {
            retry_after: secs(0.5)
        }
    );
    assert_eq!(
        refused.retry_after_secs(),
        Some(1),
        "rounded up for the header"
    );
    assert_eq!(refused.status(), http::StatusCode::TOO_MANY_REQUESTS);

    // Half a token after 0.25s: still refused, and told to wait the other 0.25s.
    assert_eq!(
        limiter.check(a, t0 + secs(0.25)),
        Err(Rejection::Rate {
            retry_after: secs(0.25)
        })
    );
    limiter.check(a, t0 + secs(0.5)).unwrap();
    assert!(limiter.check(a, t0 + secs(0.5)).is_err());

    // A long pause refills to the burst, not beyond.
    let later = t0 + secs(100.0);
    for _ in 0..3 {
        limiter.check(a, later).unwrap();
    }
    assert!(limiter.check(a, later).is_err());

    // Other addresses have their own buckets.
    limiter.check(ip("198.51.100.2"), t0).unwrap();
}

#[test]
fn token_bucket_fractional_rate_and_time_going_backwards() {
    let limiter = HandshakeLimiter::new(rate(0.1, 1), 1000);
    let a = ip("2001:db8::1");
    let t0 = Instant::now() + secs(10.0);
    limiter.check(a, t0).unwrap();
    assert_eq!(
        limiter.check(a, t0 + secs(5.0)),
        Err(Rejection::Rate {
            retry_after: secs(5.0)
        })
    );
    // An earlier instant (another thread's clock read) neither refills nor panics.
    assert!(limiter.check(a, t0 - secs(5.0)).is_err());
    limiter.check(a, t0 + secs(10.0)).unwrap();
}

#[test]
fn idle_buckets_are_forgotten() {
    let limiter = HandshakeLimiter::new(rate(1.0, 5), 100_000);
    let t0 = Instant::now();
    for i in 0..1000u32 {
        limiter.check(IpAddr::from(i.to_be_bytes()), t0).unwrap();
    }
    assert_eq!(limiter.tracked_ips(), 1000);
    // After a sweep interval every bucket has refilled; touching each shard sweeps it.
    let later = t0 + SWEEP_EVERY + secs(1.0);
    for i in 0..1000u32 {
        limiter
            .check(IpAddr::from((i + 5000).to_be_bytes()), later)
            .unwrap();
    }
    assert_eq!(limiter.tracked_ips(), 1000, "only the new addresses remain");
}

#[test]
fn full_table_fails_closed_for_new_addresses_only() {
    let limiter = HandshakeLimiter::with_shards(rate(1.0, 2), 3, 1);
    let t0 = Instant::now();
    let known = [ip("198.51.100.1"), ip("198.51.100.2"), ip("198.51.100.3")];
    for a in known {
        limiter.check(a, t0).unwrap();
    }
    let stranger = ip("203.0.113.1");
    assert_eq!(
        limiter.check(stranger, t0),
        Err(Rejection::Rate {
            retry_after: FULL_SWEEP_EVERY
        })
    );
    assert_eq!(
        limiter.tracked_ips(),
        3,
        "the refused address was not added"
    );
    // Known clients keep their own buckets.
    limiter.check(known[0], t0).unwrap();

    // Once the others have refilled (idle), a sweep makes room.
    let later = t0 + secs(2.0);
    limiter.check(known[0], t0 + secs(1.5)).unwrap();
    limiter.check(stranger, later).unwrap();
    assert!(limiter.tracked_ips() <= 3);
}

#[test]
fn full_table_sweeps_at_most_once_a_second() {
    // One slot; a used bucket is idle again 2s after its last token was taken.
    let limiter = HandshakeLimiter::with_shards(rate(0.5, 1), 1, 1);
    let (a, b) = (ip("198.51.100.1"), ip("198.51.100.2"));
    let t0 = Instant::now();
    limiter.check(a, t0).unwrap();
    // Overflow sweeps (a is not idle yet) and refuses.
    assert!(limiter.check(b, t0 + secs(1.9)).is_err());
    // a is idle at t0+2s, but the last sweep was 0.6s ago: no sweep, still refused.
    assert!(limiter.check(b, t0 + secs(2.5)).is_err());
    // A second after the last sweep, the idle bucket is swept and b gets the slot.
    limiter.check(b, t0 + secs(2.9)).unwrap();
    assert_eq!(limiter.tracked_ips(), 1);
}

#[test]
fn setup_cap_is_a_counting_guard() {
    let limiter = SetupLimiter::new(2);
    let a = limiter.try_begin().unwrap();
    let b = limiter.try_begin().unwrap();
    let refused = limiter.try_begin().unwrap_err();
    assert_eq!(refused.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.retry_after(), Some(SETUP_CAP_RETRY_AFTER));
    assert_eq!(limiter.in_flight(), 2);
    drop(a);
    assert_eq!(limiter.in_flight(), 1);
    let c = limiter.try_begin().unwrap();
    drop((b, c));
    assert_eq!(limiter.in_flight(), 0);
    drop(SetupGuard::unlimited());
    assert_eq!(limiter.in_flight(), 0);
}

#[test]
fn retry_after_rounds_up_so_the_retry_succeeds() {
    // Found by the property below: truncating 1/rate to whole nanoseconds came up short.
    let limiter = HandshakeLimiter::new(rate(16.37766811355505, 1), 10);
    let a = ip("198.51.100.1");
    let t0 = Instant::now();
    limiter.check(a, t0).unwrap();
    let wait = limiter.check(a, t0).unwrap_err().retry_after().unwrap();
    limiter.check(a, t0 + wait).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Over any schedule, admitted attempts never exceed burst + rate * elapsed.
    #[test]
    fn bucket_never_admits_more_than_its_budget(
        per_second in 0.1f64..50.0,
        burst in 1u32..20,
        gaps in prop::collection::vec(0u64..2000, 1..200),
    ) {
        let limiter = HandshakeLimiter::new(rate(per_second, burst), 10);
        let a = ip("198.51.100.1");
        let t0 = Instant::now();
        let (mut at, mut admitted) = (Duration::ZERO, 0u64);
        for gap in gaps {
            at += Duration::from_millis(gap);
            if limiter.check(a, t0 + at).is_ok() {
                admitted += 1;
            }
            let budget = f64::from(burst) + per_second * at.as_secs_f64();
            prop_assert!(admitted as f64 <= budget + 1e-6, "{} > {}", admitted, budget);
        }
    }

    /// A refusal's retry_after is enough: retrying then succeeds.
    #[test]
    fn retry_after_is_honest(per_second in 0.1f64..50.0, burst in 1u32..5) {
        let limiter = HandshakeLimiter::new(rate(per_second, burst), 10);
        let a = ip("198.51.100.1");
        let t0 = Instant::now();
        for _ in 0..burst {
            limiter.check(a, t0).unwrap();
        }
        let wait = limiter.check(a, t0).unwrap_err().retry_after().unwrap();
        prop_assert!(limiter.check(a, t0 + wait).is_ok());
    }
}
