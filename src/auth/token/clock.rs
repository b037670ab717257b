//! The token source's clock: tokio's `Instant::now`, plus (in unit tests) a skew the tests
//! move forward, so expiry can be tested while requests still use real sockets and real
//! timeouts.

use tokio::time::Instant;

/// Where the token source reads the time from.
#[derive(Default)]
pub(super) struct Clock {
    #[cfg(test)]
    skew: std::sync::Mutex<std::time::Duration>,
}

impl Clock {
    /// Now, as the token source sees it.
    pub(super) fn now(&self) -> Instant {
        #[cfg(test)]
        {
            Instant::now() + *self.skew()
        }
        #[cfg(not(test))]
        {
            Instant::now()
        }
    }

    /// Moves this clock forward.
    #[cfg(test)]
    pub(super) fn advance(&self, by: std::time::Duration) {
        *self.skew() += by;
    }

    #[cfg(test)]
    fn skew(&self) -> std::sync::MutexGuard<'_, std::time::Duration> {
        self.skew
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
