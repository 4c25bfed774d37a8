//! Server-time sync: sign with the server's idea of the time, not only the local clock's.
//!
//! Rampnow refuses a timestamp more than 60 s from its own clock, and client clocks drift. With
//! [`RampnowAuthLayer::sync_server_time`](crate::RampnowAuthLayer::sync_server_time) the layer
//! reads the `Date` header of every response and learns how far the server's clock is from the
//! local one:
//!
//! - each sample compares the server's `Date` (whole seconds, so taken as its middle, +0.5 s)
//!   with the midpoint between sending the request and receiving the response, which cancels
//!   the network delay when it is symmetric;
//! - responses carrying `Age` (served from a cache, so their `Date` is old) are ignored, as are
//!   responses without a valid `Date`;
//! - the offset in use is the median of the last [`SAMPLES`] samples, so one outlier does not
//!   swing it.
//!
//! The offset is shared by every clone of the layer and every service it builds; updates take a
//! short lock, reading it on the signing path is one atomic load. [`ServerTime::offset`] reads
//! it for metrics.
//!
//! # Example
//!
//! ```
//! use rampnow_auth::{Credentials, RampnowAuthLayer};
//!
//! let layer = RampnowAuthLayer::new(Credentials::new("ak_live_3f9a1c", "pk_live_secret")?)
//!     .sync_server_time();
//! let server_time = layer.server_time().expect("sync is on");
//! assert_eq!(server_time.offset(), 0); // nothing learned yet
//! assert_eq!(server_time.samples(), 0);
//! # Ok::<(), rampnow_auth::Error>(())
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use http::header::{AGE, DATE};
use http::HeaderMap;

/// How many recent samples the median is taken over.
pub const SAMPLES: usize = 8;

/// The learned offset between the server's clock and the local one. Cheap to clone; clones
/// share the same state.
#[derive(Debug, Clone, Default)]
pub struct ServerTime {
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Milliseconds to add to the local clock.
    offset_ms: AtomicI64,
    count: AtomicUsize,
    recent: Mutex<VecDeque<i64>>,
}

impl ServerTime {
    /// A fresh sync state with no samples (offset 0).
    #[must_use]
    pub fn new() -> ServerTime {
        ServerTime::default()
    }

    /// Milliseconds to add to the local clock to get the server's time (positive: the server is
    /// ahead). 0 until a response with a `Date` header has been seen.
    #[must_use]
    pub fn offset(&self) -> i64 {
        self.state.offset_ms.load(Ordering::Relaxed)
    }

    /// How many samples have been taken so far.
    #[must_use]
    pub fn samples(&self) -> usize {
        self.state.count.load(Ordering::Relaxed)
    }

    /// `local` corrected by the learned offset.
    pub(crate) fn correct(&self, local: SystemTime) -> SystemTime {
        shift(local, self.offset())
    }

    /// Learns from a response: `sent` and `received` are local-clock readings around it.
    pub(crate) fn observe(&self, headers: &HeaderMap, sent: SystemTime, received: SystemTime) {
        if headers.contains_key(AGE) {
            return;
        }
        let Some(date) = headers
            .get(DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
        else {
            return;
        };
        let server = date + Duration::from_millis(500);
        let round_trip = received.duration_since(sent).unwrap_or_default();
        let midpoint = sent + round_trip / 2;
        let sample = signed_millis(server, midpoint);
        self.record(sample);
    }

    fn record(&self, sample: i64) {
        let mut recent = self
            .state
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if recent.len() == SAMPLES {
            recent.pop_front();
        }
        recent.push_back(sample);
        // Sorted on the stack: no allocation per response.
        let mut buffer = [0i64; SAMPLES];
        let n = recent.len();
        let sorted = &mut buffer[..n];
        for (slot, sample) in sorted.iter_mut().zip(recent.iter()) {
            *slot = *sample;
        }
        sorted.sort_unstable();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            sorted[n / 2 - 1].midpoint(sorted[n / 2])
        };
        self.state.offset_ms.store(median, Ordering::Relaxed);
        self.state.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// `a - b` in milliseconds, saturating.
fn signed_millis(a: SystemTime, b: SystemTime) -> i64 {
    match a.duration_since(b) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// `time` moved `millis` milliseconds forward (or back, when negative); unchanged if that would
/// leave `SystemTime`'s range.
pub(crate) fn shift(time: SystemTime, millis: i64) -> SystemTime {
    let by = Duration::from_millis(millis.unsigned_abs());
    let shifted = if millis >= 0 {
        time.checked_add(by)
    } else {
        time.checked_sub(by)
    };
    shifted.unwrap_or(time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn date(secs: u64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let text = httpdate::fmt_http_date(at(secs));
        headers.insert(DATE, HeaderValue::from_str(&text).unwrap());
        headers
    }

    #[test]
    fn learns_a_server_ahead_from_the_midpoint() {
        let sync = ServerTime::new();
        // Sent at 1000.0, received at 1002.0 (midpoint 1001.0); server said 1301 (+0.5).
        sync.observe(&date(1_301), at(1_000), at(1_002));
        assert_eq!(sync.offset(), 300_500);
        assert_eq!(sync.samples(), 1);
        assert_eq!(
            sync.correct(at(2_000)),
            at(2_300) + Duration::from_millis(500)
        );
    }

    #[test]
    fn learns_a_server_behind() {
        let sync = ServerTime::new();
        sync.observe(&date(900), at(1_000), at(1_000));
        assert_eq!(sync.offset(), -99_500);
        assert_eq!(
            sync.correct(at(1_000)),
            at(900) + Duration::from_millis(500)
        );
    }

    #[test]
    fn cached_and_dateless_responses_are_ignored() {
        let sync = ServerTime::new();
        let mut cached = date(5_000);
        cached.insert(AGE, HeaderValue::from_static("30"));
        sync.observe(&cached, at(1_000), at(1_000));
        sync.observe(&HeaderMap::new(), at(1_000), at(1_000));
        let mut garbage = HeaderMap::new();
        garbage.insert(DATE, HeaderValue::from_static("yesterday"));
        sync.observe(&garbage, at(1_000), at(1_000));
        assert_eq!(sync.samples(), 0);
        assert_eq!(sync.offset(), 0);
    }

    #[test]
    fn one_outlier_does_not_swing_the_median() {
        let sync = ServerTime::new();
        for _ in 0..4 {
            sync.observe(&date(1_010), at(1_000), at(1_000));
        }
        sync.observe(&date(9_000), at(1_000), at(1_000));
        assert_eq!(sync.offset(), 10_500);
        assert_eq!(sync.samples(), 5);
    }

    #[test]
    fn an_even_count_takes_the_middle_two_rounded_toward_zero() {
        let sync = ServerTime::new();
        for sample in [-7, -2, 5, 9] {
            sync.record(sample);
        }
        // The middle two, -2 and 5, average 1.5, taken as 1; -7 and -2 would give -4.
        assert_eq!(sync.offset(), 1);
        let sync = ServerTime::new();
        sync.record(-7);
        sync.record(-2);
        assert_eq!(sync.offset(), -4);
    }

    #[test]
    fn old_samples_leave_the_window() {
        let sync = ServerTime::new();
        for _ in 0..SAMPLES {
            sync.observe(&date(1_010), at(1_000), at(1_000));
        }
        for _ in 0..SAMPLES {
            sync.observe(&date(1_100), at(1_000), at(1_000));
        }
        assert_eq!(sync.offset(), 100_500);
    }

    #[test]
    fn clones_share_state_across_threads() {
        let sync = ServerTime::new();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let sync = sync.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        sync.observe(&date(1_060), at(1_000), at(1_000));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(sync.samples(), 400);
        assert_eq!(sync.offset(), 60_500);
    }

    #[test]
    fn extreme_offsets_saturate_instead_of_panicking() {
        assert_eq!(
            shift(UNIX_EPOCH, -1_000),
            UNIX_EPOCH - Duration::from_secs(1)
        );
        let _ = shift(at(10), i64::MAX);
        let _ = shift(at(10), i64::MIN);
        assert!(signed_millis(at(0), at(5)) == -5_000);
    }
}
