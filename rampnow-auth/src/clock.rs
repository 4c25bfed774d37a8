//! Where the signing timestamp comes from.
//!
//! The middleware asks its [`Clock`] for the time once per request, after the body has been
//! read. [`SystemClock`] (the default) reads the system time; any
//! `Fn() -> SystemTime + Send + Sync + 'static` closure is a clock too, which is how tests fix
//! the time or how a corrected clock is plugged in.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime, UNIX_EPOCH};
//! use rampnow_auth::{Clock, SystemClock};
//!
//! let fixed = || UNIX_EPOCH + Duration::from_secs(1727759033);
//! assert_eq!(fixed.now(), UNIX_EPOCH + Duration::from_secs(1727759033));
//! assert!(SystemClock.now() > UNIX_EPOCH);
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, ErrorKind};

/// A source of the current time for signatures.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock, [`SystemTime::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl<F> Clock for F
where
    F: Fn() -> SystemTime + Send + Sync + 'static,
{
    fn now(&self) -> SystemTime {
        self()
    }
}

/// A shared clock is a clock.
impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

/// Whole seconds since the Unix epoch, or a [`ErrorKind::Clock`] error for a time before it.
/// The most decimal digits a timestamp can have: `u64::MAX` has 20.
pub(crate) const MAX_TIMESTAMP_DIGITS: usize = 20;

pub(crate) fn unix_seconds(time: SystemTime) -> Result<u64, Error> {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .map_err(|_| {
            Error::new(
                ErrorKind::Clock,
                "the clock reads a time before 1970-01-01, which cannot be a Rampnow timestamp; \
                 fix the system clock, or the clock given to `with_clock`",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn seconds_are_truncated_not_rounded() {
        let t = UNIX_EPOCH + Duration::from_millis(1_727_759_033_999);
        assert_eq!(unix_seconds(t).unwrap(), 1_727_759_033);
        assert_eq!(unix_seconds(UNIX_EPOCH).unwrap(), 0);
    }

    #[test]
    fn before_the_epoch_is_an_error_not_a_panic() {
        let err = unix_seconds(UNIX_EPOCH - Duration::from_secs(1)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Clock);
        assert!(err.to_string().contains("before 1970"));
    }
}
