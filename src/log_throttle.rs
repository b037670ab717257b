//! At most one log line per interval for an event a flood can repeat thousands of times a
//! second, each line carrying how many occurrences it stands for. The occurrences themselves
//! are counted in full by a metric; the line tells an operator reading the log that it happens.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Lets through one log line per `every`.
#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    /// When the last line went out.
    last: Mutex<Option<Instant>>,
    /// Occurrences not yet reported in a line.
    pending: AtomicU64,
}

impl LogThrottle {
    /// A throttle letting one line through per `every`.
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            last: Mutex::new(None),
            pending: AtomicU64::new(0),
        }
    }

    /// Counts one occurrence. `Some(n)` when a line is due now: `n` occurrences (this one
    /// included) since the last line. Never waits: a caller finding another one deciding
    /// leaves its occurrence to the next line.
    pub fn occurred(&self) -> Option<u64> {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last.try_lock().ok()?;
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.every) {
            return None;
        }
        *last = Some(now);
        Some(self.pending.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_carrying_the_occurrences_it_stands_for() {
        let throttle = LogThrottle::new(Duration::from_millis(300));
        assert_eq!(
            throttle.occurred(),
            Some(1),
            "the first occurrence is logged"
        );
        for _ in 0..4 {
            assert_eq!(
                throttle.occurred(),
                None,
                "within the interval: counted, not logged"
            );
        }
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(
            throttle.occurred(),
            Some(5),
            "the next line stands for the four held back and itself"
        );
        assert_eq!(throttle.occurred(), None);
    }
}
