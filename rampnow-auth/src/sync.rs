//! Server-time sync: [`ServerTime`], the offsets it learns per origin, and the corrected clock
//! it makes, [`ServerClock`].

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use http::header::{AGE, DATE};
use http::{HeaderMap, Uri};

use crate::clock::Clock;
use crate::signing::Origin;

/// How many recent samples the median is taken over.
const SAMPLES: usize = 8;

/// How many origins a [`ServerTime`] learns an offset for; requests to others are signed with
/// the local clock. A layer usually talks to one (Rampnow's API), at most a handful.
pub const MAX_ORIGINS: usize = 16;

/// The default bound on the learned offset: one hour either way. A sample further from the local
/// clock than this is ignored. A client clock an hour off is already broken beyond what syncing
/// should paper over, and a bound of an hour keeps a hostile `Date` from moving the clock by
/// more.
pub const DEFAULT_MAX_OFFSET: Duration = Duration::from_secs(60 * 60);

/// The learned offsets between the servers' clocks and the local one, one for each origin.
/// Cheap to clone; clones share the same state.
///
/// Rampnow refuses a timestamp more than 60 s from its own clock, and client clocks drift. With
/// [`RampnowAuthLayer::sync_server_time`](crate::RampnowAuthLayer::sync_server_time) the layer
/// reads the `Date` header of every response and learns how far the server's clock is from the
/// local one:
///
/// - each sample compares the server's `Date` (whole seconds, so taken as its middle, +0.5 s)
///   with the midpoint between sending the request and receiving the response, which cancels
///   the network delay when it is symmetric;
/// - responses carrying `Age` (served from a cache, so their `Date` is old) are ignored, as are
///   responses without a valid `Date`;
/// - the offset in use is the median of the last 8 samples, so one outlier does not
///   swing it;
/// - a sample further than the bound from the local clock ([`DEFAULT_MAX_OFFSET`], one hour,
///   unless set with [`sync_server_time_within`](crate::RampnowAuthLayer::sync_server_time_within))
///   is ignored and counted ([`ServerTime::ignored`]), so the offset never leaves the bound:
///   a server (or a host posing as one) answering with a `Date` in the year 2100 cannot move the
///   clock by decades and make every later request stale.
///
/// Only responses to requests the layer itself signed and sent are read (a request it refused
/// is never sent, so it has no response to learn from), and each origin (scheme, host, port)
/// has an offset of its own, learned from its own responses and applied to requests to it
/// only: a layer without [pinned origins](crate::RampnowAuthLayer::pin_origins) that also
/// signs for another host cannot be made to sign Rampnow's requests with that host's idea of
/// the time (or with a time that host chose). At most [`MAX_ORIGINS`] origins are learned; a
/// request to any other is signed with the local clock.
///
/// The offsets are shared by every clone of the layer and every service it builds; updates take
/// a short lock, and reading one on the signing path takes a shared read lock and an atomic
/// load. [`ServerTime::offset`] and [`ServerTime::offset_for`] read them for metrics.
///
/// # Example
///
/// ```
/// use rampnow_auth::{Credentials, RampnowAuthLayer};
///
/// let layer = RampnowAuthLayer::new(Credentials::new("ak_live_3f9a1c", "pk_live_secret")?)
///     .sync_server_time();
/// let server_time = layer.server_time().expect("sync is on");
/// assert_eq!(server_time.offset(), 0); // nothing learned yet
/// assert_eq!(server_time.samples(), 0);
/// # Ok::<(), rampnow_auth::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ServerTime {
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    /// Samples further than this (in milliseconds, either way) are ignored.
    max_offset_ms: i64,
    ignored: AtomicUsize,
    /// In the order they were first signed for.
    origins: RwLock<Vec<Arc<OriginTime>>>,
}

/// What is learned of one origin's clock.
pub(crate) struct OriginTime {
    origin: Origin,
    /// Milliseconds to add to the local clock.
    offset_ms: AtomicI64,
    count: AtomicUsize,
    recent: Mutex<VecDeque<i64>>,
}

impl fmt::Debug for OriginTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginTime")
            .field("origin", &self.origin)
            .field("offset_ms", &self.offset())
            .field("samples", &self.count.load(Ordering::Relaxed))
            .finish()
    }
}

impl Default for State {
    fn default() -> State {
        State::within(DEFAULT_MAX_OFFSET)
    }
}

impl State {
    fn within(max_offset: Duration) -> State {
        State {
            max_offset_ms: i64::try_from(max_offset.as_millis()).unwrap_or(i64::MAX),
            ignored: AtomicUsize::new(0),
            origins: RwLock::new(Vec::new()),
        }
    }
}

impl ServerTime {
    /// A fresh sync state with no samples (offset 0), bounded by [`DEFAULT_MAX_OFFSET`].
    #[must_use]
    pub fn new() -> ServerTime {
        ServerTime::default()
    }

    /// A fresh sync state that ignores samples further than `max_offset` from the local clock,
    /// so every offset stays within `max_offset` either way.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use rampnow_auth::ServerTime;
    ///
    /// let sync = ServerTime::within(Duration::from_secs(300));
    /// assert_eq!(sync.max_offset(), Duration::from_secs(300));
    /// ```
    #[must_use]
    pub fn within(max_offset: Duration) -> ServerTime {
        ServerTime {
            state: Arc::new(State::within(max_offset)),
        }
    }

    /// The bound: samples further than this from the local clock are ignored.
    #[must_use]
    pub fn max_offset(&self) -> Duration {
        Duration::from_millis(self.state.max_offset_ms.unsigned_abs())
    }

    /// How many samples were ignored for lying outside [`max_offset`](ServerTime::max_offset).
    /// A count that grows means the local clock is far off (fix it, or widen the bound) or a
    /// server sends a wrong `Date`.
    #[must_use]
    pub fn ignored(&self) -> usize {
        self.state.ignored.load(Ordering::Relaxed)
    }

    /// Milliseconds to add to the local clock to get the server's time (positive: the server is
    /// ahead), for the first origin the layer signed a request for — with pinned origins, or a
    /// client that talks to Rampnow only, *the* offset. 0 until a response with a `Date`
    /// header has been seen. See [`offset_for`](ServerTime::offset_for) for another origin.
    #[must_use]
    pub fn offset(&self) -> i64 {
        self.origins().first().map_or(0, |origin| origin.offset())
    }

    /// The offset learned for the origin (scheme, host and port) of `uri`, or 0 when nothing
    /// was learned from it.
    ///
    /// # Example
    ///
    /// ```
    /// use rampnow_auth::ServerTime;
    ///
    /// let sync = ServerTime::new();
    /// assert_eq!(sync.offset_for(&"https://api.rampnow.io/x".parse().unwrap()), 0);
    /// ```
    #[must_use]
    pub fn offset_for(&self, uri: &Uri) -> i64 {
        self.find(uri).map_or(0, |origin| origin.offset())
    }

    /// How many samples have been taken so far, from every origin.
    #[must_use]
    pub fn samples(&self) -> usize {
        self.origins()
            .iter()
            .map(|origin| origin.count.load(Ordering::Relaxed))
            .sum()
    }

    fn origins(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<OriginTime>>> {
        // Every update completes or does nothing, so a poisoned lock is still usable.
        self.state
            .origins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn find(&self, uri: &Uri) -> Option<Arc<OriginTime>> {
        self.origins()
            .iter()
            .find(|origin| origin.origin.matches(uri))
            .cloned()
    }

    /// A clock that reads `inner` and adds the offset learned for the origin (scheme, host and
    /// port) of `uri`: the server's time for requests to it, as the signing layer reads it when
    /// [`sync_server_time`](crate::RampnowAuthLayer::sync_server_time) is on. Past
    /// [`MAX_ORIGINS`] origins, or for a URI without one, it is `inner` unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use rampnow_auth::{Clock, ServerTime};
    ///
    /// let server_time = ServerTime::new();
    /// let uri = "https://api.rampnow.io/".parse().unwrap();
    /// let clock = server_time.clock_for(&uri, || UNIX_EPOCH + Duration::from_secs(1000));
    /// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(1000)); // nothing learned yet
    /// ```
    pub fn clock_for<C: Clock>(&self, uri: &Uri, inner: C) -> ServerClock<C> {
        ServerClock {
            inner,
            origin: self.origin(uri),
        }
    }

    /// What is learned of `uri`'s origin: found, or added while there are fewer than
    /// [`MAX_ORIGINS`]; `None` past that, or for a URI without a scheme and host.
    pub(crate) fn origin(&self, uri: &Uri) -> Option<Arc<OriginTime>> {
        if let Some(found) = self.find(uri) {
            return Some(found);
        }
        let origin = Origin::of(uri.scheme()?, uri.authority()?)?;
        let mut origins = self
            .state
            .origins
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Another request may have added it meanwhile.
        if let Some(found) = origins.iter().find(|o| o.origin == origin) {
            return Some(Arc::clone(found));
        }
        if origins.len() >= MAX_ORIGINS {
            return None;
        }
        let added = Arc::new(OriginTime {
            origin,
            offset_ms: AtomicI64::new(0),
            count: AtomicUsize::new(0),
            recent: Mutex::new(VecDeque::with_capacity(SAMPLES)),
        });
        origins.push(Arc::clone(&added));
        Some(added)
    }

    /// Learns from a response of `origin`: `sent` and `received` are local-clock readings
    /// around it.
    pub(crate) fn observe(
        &self,
        origin: &OriginTime,
        headers: &HeaderMap,
        sent: SystemTime,
        received: SystemTime,
    ) {
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
        if sample.unsigned_abs() > self.state.max_offset_ms.unsigned_abs() {
            self.state.ignored.fetch_add(1, Ordering::Relaxed);
            return;
        }
        origin.record(sample);
    }
}

impl OriginTime {
    fn offset(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// `local` corrected by this origin's offset.
    pub(crate) fn correct(&self, local: SystemTime) -> SystemTime {
        shift(local, self.offset())
    }

    fn record(&self, sample: i64) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
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
        self.offset_ms.store(median, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// A [`Clock`] corrected by what a [`ServerTime`] learned of one origin: its inner clock plus
/// that origin's offset. Made by [`ServerTime::clock_for`]; it reads the offset afresh at every
/// `now()`, so it follows what later responses teach.
#[derive(Debug, Clone)]
pub struct ServerClock<C> {
    inner: C,
    origin: Option<Arc<OriginTime>>,
}

impl<C: Clock> Clock for ServerClock<C> {
    fn now(&self) -> SystemTime {
        let local = self.inner.now();
        self.origin
            .as_ref()
            .map_or(local, |origin| origin.correct(local))
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

    fn rampnow() -> Uri {
        "https://api.rampnow.io/api/x".parse().unwrap()
    }

    /// The tests below learn from, and sign for, one origin.
    impl ServerTime {
        fn see(&self, headers: &HeaderMap, sent: SystemTime, received: SystemTime) {
            let origin = self.origin(&rampnow()).unwrap();
            self.observe(&origin, headers, sent, received);
        }

        fn correct(&self, local: SystemTime) -> SystemTime {
            self.origin(&rampnow()).unwrap().correct(local)
        }

        fn record(&self, sample: i64) {
            self.origin(&rampnow()).unwrap().record(sample);
        }
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
        sync.see(&date(1_301), at(1_000), at(1_002));
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
        sync.see(&date(900), at(1_000), at(1_000));
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
        sync.see(&cached, at(1_000), at(1_000));
        sync.see(&HeaderMap::new(), at(1_000), at(1_000));
        let mut garbage = HeaderMap::new();
        garbage.insert(DATE, HeaderValue::from_static("yesterday"));
        sync.see(&garbage, at(1_000), at(1_000));
        assert_eq!(sync.samples(), 0);
        assert_eq!(sync.offset(), 0);
    }

    #[test]
    fn one_outlier_does_not_swing_the_median() {
        let sync = ServerTime::new();
        for _ in 0..4 {
            sync.see(&date(1_010), at(1_000), at(1_000));
        }
        sync.see(&date(3_000), at(1_000), at(1_000));
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
            sync.see(&date(1_010), at(1_000), at(1_000));
        }
        for _ in 0..SAMPLES {
            sync.see(&date(1_100), at(1_000), at(1_000));
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
                        sync.see(&date(1_060), at(1_000), at(1_000));
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
    fn samples_outside_the_bound_are_ignored() {
        let sync = ServerTime::new();
        assert_eq!(sync.max_offset(), DEFAULT_MAX_OFFSET);
        // Five responses dated in the year 2100, five dated 1980: none moves the offset.
        let year_2100 = 4_102_444_800;
        let now = 1_764_288_000;
        for _ in 0..5 {
            sync.see(&date(year_2100), at(now), at(now));
            sync.see(&date(315_532_800), at(now), at(now));
        }
        assert_eq!(sync.offset(), 0);
        assert_eq!(sync.samples(), 0);
        assert_eq!(sync.ignored(), 10);
        // Just inside the bound (an hour less 0.5 s, plus the +0.5 s of whole seconds) counts.
        sync.see(&date(now + 3_599), at(now), at(now));
        assert_eq!(sync.offset(), 3_599_500);
        // Just outside, either way, does not.
        sync.see(&date(now + 3_600), at(now), at(now));
        sync.see(&date(now - 3_601), at(now), at(now));
        assert_eq!((sync.samples(), sync.ignored()), (1, 12));
        assert_eq!(sync.offset(), 3_599_500);
    }

    #[test]
    fn the_bound_can_be_set() {
        let sync = ServerTime::within(Duration::from_secs(10));
        sync.see(&date(1_011), at(1_000), at(1_000));
        assert_eq!((sync.offset(), sync.ignored()), (0, 1));
        sync.see(&date(1_009), at(1_000), at(1_000));
        assert_eq!(sync.offset(), 9_500);
        let wide = ServerTime::within(Duration::MAX);
        wide.see(&date(4_102_444_800), at(1_000), at(1_000));
        assert_eq!(wide.samples(), 1);
    }

    #[test]
    fn each_origin_has_its_own_offset() {
        let sync = ServerTime::new();
        let other: Uri = "https://other.example/".parse().unwrap();
        let hostile = sync.origin(&other).unwrap();
        // Another host, 50 minutes ahead, answers first and often.
        for _ in 0..8 {
            sync.observe(&hostile, &date(1_000 + 3_000), at(1_000), at(1_000));
        }
        assert_eq!(sync.offset_for(&other), 3_000_500);
        // Rampnow's requests are signed with the local clock until Rampnow answers...
        assert_eq!(sync.correct(at(1_000)), at(1_000));
        assert_eq!(sync.offset_for(&rampnow()), 0);
        sync.see(&date(1_002), at(1_000), at(1_000));
        // ...then with Rampnow's own offset.
        assert_eq!(sync.offset_for(&rampnow()), 2_500);
        assert_eq!(
            sync.correct(at(1_000)),
            at(1_002) + Duration::from_millis(500)
        );
        // The same origin however the URI writes it; another port is another origin.
        let same: Uri = "https://API.RAMPNOW.IO:443/other?q=1".parse().unwrap();
        assert_eq!(sync.offset_for(&same), 2_500);
        let port: Uri = "https://api.rampnow.io:8443/".parse().unwrap();
        assert_eq!(sync.offset_for(&port), 0);
        // `offset` is the first origin's: here the other host's.
        assert_eq!(sync.offset(), 3_000_500);
        assert_eq!(sync.samples(), 9);
    }

    #[test]
    fn at_most_max_origins_are_learned() {
        let sync = ServerTime::new();
        for n in 0..MAX_ORIGINS {
            let uri: Uri = format!("https://h{n}.example/").parse().unwrap();
            assert!(sync.origin(&uri).is_some());
        }
        let one_more: Uri = "https://more.example/".parse().unwrap();
        assert!(sync.origin(&one_more).is_none());
        // A known one is still found.
        assert!(sync
            .origin(&"https://h0.example/x".parse().unwrap())
            .is_some());
        // A URI without an origin has none.
        assert!(sync.origin(&"/relative".parse().unwrap()).is_none());
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
