//! Tokio's timer where there may be none: the verifier's body deadline, the retry policy's
//! wait, the rate limiter's wait and its Redis calls all start a timer from inside a future
//! the caller polls, which may run outside a Tokio runtime or in one built without the time
//! driver. Tokio panics in both cases (`tokio::time::sleep`: "there is no reactor running",
//! "timers are disabled"); these answer `None` instead. The first case is checked
//! beforehand, the second caught: its message still goes to the panic hook, and with
//! `panic = "abort"` it aborts (build the runtime with `enable_time` or `enable_all`).

use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A Tokio sleep of `duration`, or `None` where there is no Tokio timer.
pub(crate) fn sleep(duration: Duration) -> Option<Sleep> {
    tokio::runtime::Handle::try_current().ok()?;
    std::panic::catch_unwind(|| tokio::time::sleep(duration)).ok()
}

/// A Tokio sleep until `deadline`, or `None` where there is no Tokio timer.
pub(crate) fn sleep_until(deadline: Instant) -> Option<Sleep> {
    tokio::runtime::Handle::try_current().ok()?;
    std::panic::catch_unwind(|| tokio::time::sleep_until(deadline)).ok()
}

/// Why [`bounded`] has no answer.
#[cfg(feature = "redis")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bounded {
    TimedOut,
    /// No Tokio timer (outside a runtime, or without the time driver).
    NoTimer,
}

/// Runs `future` for at most `timeout`, on Tokio's timer, without panicking where there is no
/// timer (as `tokio::time::timeout` would): the Redis calls of the rate limiter and of the
/// replay store.
#[cfg(feature = "redis")]
pub(crate) async fn bounded<F: std::future::Future>(
    timeout: Duration,
    future: F,
) -> Result<F::Output, Bounded> {
    use std::future::{poll_fn, Future as _};
    use std::pin::pin;
    use std::task::Poll;

    let mut sleep = pin!(sleep(timeout).ok_or(Bounded::NoTimer)?);
    let mut future = pin!(future);
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(Bounded::TimedOut));
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_runtime_or_no_time_driver_is_none_not_a_panic() {
        assert!(sleep(Duration::from_secs(1)).is_none());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(sleep(Duration::from_secs(1)).is_none());
            assert!(sleep_until(Instant::now()).is_none());
        });
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn bounded_times_out_and_passes_answers_through() {
        assert_eq!(
            bounded(Duration::from_millis(10), std::future::pending::<()>()).await,
            Err(Bounded::TimedOut)
        );
        assert_eq!(bounded(Duration::from_secs(5), async { 7 }).await, Ok(7));
    }

    #[cfg(feature = "redis")]
    #[test]
    fn bounded_without_a_timer_is_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(
            rt.block_on(bounded(Duration::from_secs(1), async { 7 })),
            Err(Bounded::NoTimer)
        );
    }
}
