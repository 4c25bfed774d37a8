//! The in-process limiter: governor's GCRA on tokio's clock.

use std::fmt;
use std::ops::Add;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::Semaphore;

/// An instant of tokio's clock, which governor can measure. Tokio's clock (not
/// `std::time::Instant`) so that what the limiter decides and what `tokio::time::sleep_until`
/// waits for are the same clock, paused time in tests included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TokioInstant(pub(crate) tokio::time::Instant);

impl Add<Nanos> for TokioInstant {
    type Output = TokioInstant;

    fn add(self, nanos: Nanos) -> TokioInstant {
        // Overflow would take centuries of nanoseconds; saturate at `self` rather than panic.
        let later = self.0.checked_add(Duration::from_nanos(nanos.as_u64()));
        TokioInstant(later.unwrap_or(self.0))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: TokioInstant) -> Nanos {
        // Saturating, as governor requires. A gap of 584 years would not fit in a `u64` of
        // nanoseconds: saturate rather than panic.
        let nanos = self.0.saturating_duration_since(earlier.0).as_nanos();
        Nanos::from(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn saturating_sub(&self, duration: Nanos) -> TokioInstant {
        TokioInstant(
            self.0
                .checked_sub(Duration::from_nanos(duration.as_u64()))
                .unwrap_or(self.0),
        )
    }
}

/// Tokio's clock for governor.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        // Outside a runtime this is `std::time::Instant::now()`: no panic.
        TokioInstant(tokio::time::Instant::now())
    }
}

/// One request every `period`, never two closer: GCRA with a burst of one.
pub(crate) struct Local {
    limiter: RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<TokioInstant>>,
    /// The line of waiting requests (see [`Limiter::queue`](super::Limiter::queue)).
    pub(crate) queue: Arc<Semaphore>,
}

impl Local {
    pub(crate) fn new(period: Duration) -> Local {
        // `period` is at least a nanosecond (see `period_for`), so `with_period` answers
        // `Some`; a zero period would mean "no limit", so fall back to the slowest rate the
        // layer offers rather than to none.
        let quota = Quota::with_period(period).unwrap_or_else(|| {
            Quota::with_period(Duration::from_secs(1)).expect("1 s is not zero")
        });
        Local {
            limiter: RateLimiter::direct_with_clock(quota, TokioClock),
            queue: Arc::new(Semaphore::new(1)),
        }
    }

    /// Admits one request now, or says from when one may be admitted.
    pub(crate) fn check(&self) -> Result<(), tokio::time::Instant> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.earliest_possible().0)
    }
}

impl fmt::Debug for Local {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Local").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_every_period_on_tokio_time() {
        let local = Local::new(Duration::from_millis(50));
        let start = tokio::time::Instant::now();
        assert_eq!(local.check(), Ok(()));
        let next = local.check().unwrap_err();
        assert_eq!(next - start, Duration::from_millis(50));
        tokio::time::sleep_until(next).await;
        assert_eq!(local.check(), Ok(()));
        assert!(local.check().is_err());
    }

    #[test]
    fn instants_saturate() {
        let now = TokioClock.now();
        let later = now + Nanos::from(5);
        assert_eq!(now.duration_since(later), Nanos::from(0));
        assert_eq!(later.duration_since(now), Nanos::from(5));
        assert_eq!(now.saturating_sub(Nanos::from(5)) + Nanos::from(5), now);
    }
}
