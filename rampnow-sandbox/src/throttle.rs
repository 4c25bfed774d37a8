//! The limits the sandbox plays on purpose, as Rampnow does: a rate limit per client address
//! (`429`) and a failure every k-th request (`503`). Both are off unless asked for; see
//! [`SandboxBuilder::rate_limit`](crate::SandboxBuilder::rate_limit) and
//! [`SandboxBuilder::fail_every`](crate::SandboxBuilder::fail_every).
//!
//! The rate limit is a sliding log, not a token bucket: the sandbox is a checker of clients,
//! and "at most N requests in any one second" is what Rampnow documents and what a client's
//! limiter must achieve. A GCRA (token bucket) with a burst of N refills continuously, so it
//! lets through up to about 2N requests within one second (a burst, then one more every 1/N s)
//! and would pass a client that overruns the documented limit. An exact window costs one
//! timestamp per accepted request within the last second: at most N per address, N at most
//! [`MAX_RATE_LIMIT`], on at most [`RATE_LIMIT_MAX_ADDRESSES`] addresses.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The highest [`rate_limit`](crate::SandboxBuilder::rate_limit) accepted: 1,000 requests per
/// second per address (Rampnow's own are 20 in production and 15 in staging). It bounds the
/// timestamps remembered per address.
pub const MAX_RATE_LIMIT: u32 = 1_000;

/// The most client addresses the rate limit tracks at once (1,024).
///
/// An address is tracked while a request from it was accepted within the last second. With
/// every slot taken by such an address, a request from a new address is answered `503`
/// (`too_many_clients`, with `Retry-After`) rather than let through uncounted: the limiter
/// never forgets an address it would still limit. The memory is at most this many addresses
/// times [`rate_limit`](crate::SandboxBuilder::rate_limit) timestamps of 8 bytes (8 MiB at
/// [`MAX_RATE_LIMIT`], 160 KiB at Rampnow's 20 per second), whatever a client sends.
pub const RATE_LIMIT_MAX_ADDRESSES: usize = 1_024;

/// The rate limit's window.
const WINDOW: Duration = Duration::from_secs(1);

/// Why the sandbox refused a request on purpose, before verifying it: the rate limit or
/// [`fail_every`](crate::SandboxBuilder::fail_every). Found in [`LogEntry::limit`](crate::LogEntry::limit).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use http::StatusCode;
/// use rampnow_sandbox::LimitRefusal;
///
/// fn describe(refusal: &LimitRefusal) -> String {
///     match refusal {
///         LimitRefusal::RateLimited { retry_after, .. } => format!("wait {retry_after:?}"),
///         other => format!("{} {}", other.status(), other.code()),
///     }
/// }
/// # let _ = describe;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitRefusal {
    /// `429 Too Many Requests` (`rate_limited`): `limit` requests from the same address were
    /// already accepted within the last second. Sent with `Retry-After`: `retry_after` in
    /// whole seconds, rounded up, the time until a request from that address would be
    /// accepted.
    #[non_exhaustive]
    RateLimited {
        /// The limit, in requests per second per address.
        limit: u32,
        /// When a request from the address will be accepted again (whole seconds, at least 1).
        retry_after: Duration,
    },
    /// `503 Service Unavailable` (`too_many_clients`): the rate limit already tracks
    /// [`RATE_LIMIT_MAX_ADDRESSES`] addresses, each sent a request within the last second, so
    /// a request from one more cannot be counted. Sent with `Retry-After`.
    #[non_exhaustive]
    TooManyClients {
        /// When a slot frees up (whole seconds, at least 1).
        retry_after: Duration,
    },
    /// `503 Service Unavailable` (`service_unavailable`): the `request`-th request, failed on
    /// purpose because it is a multiple of `every`
    /// ([`fail_every`](crate::SandboxBuilder::fail_every)). Sent without `Retry-After`: the
    /// next request is served at once, so a client's own backoff is what is exercised.
    #[non_exhaustive]
    FailEvery {
        /// The `k` of `fail_every(k)`.
        every: u64,
        /// The request's number, counting from 1 the requests that passed the rate limit.
        request: u64,
    },
}

impl LimitRefusal {
    /// The status answered: `429` for [`RateLimited`](Self::RateLimited), else `503`.
    #[must_use]
    pub fn status(&self) -> http::StatusCode {
        match self {
            LimitRefusal::RateLimited { .. } => http::StatusCode::TOO_MANY_REQUESTS,
            LimitRefusal::TooManyClients { .. } | LimitRefusal::FailEvery { .. } => {
                http::StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The machine-readable code: the `code` (and `error`) field of the JSON body.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            LimitRefusal::RateLimited { .. } => "rate_limited",
            LimitRefusal::TooManyClients { .. } => "too_many_clients",
            LimitRefusal::FailEvery { .. } => "service_unavailable",
        }
    }

    /// The `Retry-After` sent, if any (whole seconds).
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LimitRefusal::RateLimited { retry_after, .. }
            | LimitRefusal::TooManyClients { retry_after } => Some(*retry_after),
            LimitRefusal::FailEvery { .. } => None,
        }
    }

    /// What happened and what to do, the `reason` of the JSON body.
    pub(crate) fn reason(&self) -> String {
        match self {
            LimitRefusal::RateLimited { limit, retry_after } => format!(
                "more than {limit} requests within one second from this address: the sandbox, \
                 like Rampnow, accepts at most {limit} per second per address; wait the \
                 Retry-After ({} s) and send again, signed afresh, and keep your client under \
                 the limit",
                retry_after.as_secs()
            ),
            LimitRefusal::TooManyClients { retry_after } => format!(
                "the sandbox's rate limit is tracking {RATE_LIMIT_MAX_ADDRESSES} client \
                 addresses, all active within the last second, and cannot count one more; wait \
                 the Retry-After ({} s) and send again",
                retry_after.as_secs()
            ),
            LimitRefusal::FailEvery { every, request } => format!(
                "the sandbox fails every {every}{} request on purpose (fail_every / \
                 --fail-every) and this was request {request}; nothing was processed, so \
                 retrying it, signed afresh, is safe",
                ordinal_suffix(*every)
            ),
        }
    }
}

impl fmt::Display for LimitRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.reason())
    }
}

/// `st`, `nd`, `rd` or `th`, for "every 3rd request".
fn ordinal_suffix(n: u64) -> &'static str {
    match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

/// The rate limit and the failure counter, shared by every connection.
#[derive(Debug)]
pub(crate) struct Throttle {
    rate: Option<RateLimiter>,
    fail_every: Option<u64>,
    /// Requests that passed the rate limit so far (only counted with `fail_every`).
    passed: AtomicU64,
}

impl Throttle {
    /// The throttle for these settings, `None` when both are off; an error for a limit out of
    /// range.
    pub(crate) fn new(
        rate_limit: Option<u32>,
        fail_every: Option<u64>,
    ) -> io::Result<Option<Self>> {
        let invalid = |message: String| Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        if let Some(limit) = rate_limit {
            if limit == 0 || limit > MAX_RATE_LIMIT {
                return invalid(format!(
                    "the sandbox's rate_limit of {limit} is out of range; give from 1 to \
                     {MAX_RATE_LIMIT} requests per second per address, such as 20 (Rampnow's \
                     production limit)"
                ));
            }
        }
        if fail_every == Some(0) {
            return invalid(
                "the sandbox's fail_every of 0 is out of range; give 1 (fail every request) or \
                 more, such as 3 (fail the 3rd, 6th, ... request), or leave it off"
                    .to_owned(),
            );
        }
        if rate_limit.is_none() && fail_every.is_none() {
            return Ok(None);
        }
        Ok(Some(Throttle {
            rate: rate_limit.map(|limit| RateLimiter::new(limit, RATE_LIMIT_MAX_ADDRESSES)),
            fail_every,
            passed: AtomicU64::new(0),
        }))
    }

    /// Whether a request from `client` may go on to the verifier: the rate limit first (a
    /// refused request does not count, towards it nor towards `fail_every`), then the failure
    /// counter.
    pub(crate) fn check(&self, client: IpAddr, now: Instant) -> Result<(), LimitRefusal> {
        if let Some(rate) = &self.rate {
            rate.check(client, now)?;
        }
        if let Some(every) = self.fail_every {
            let request = self.passed.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if request.is_multiple_of(every) {
                return Err(LimitRefusal::FailEvery { every, request });
            }
        }
        Ok(())
    }
}

/// An exact sliding-window rate limit per address: a request is accepted when fewer than
/// `limit` requests from its address were accepted within the last second (those accepted at
/// most, not exactly, one second ago no longer count), so no half-open one-second interval
/// ever holds more than `limit` accepted requests from one address. Refused requests are not
/// counted.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: u32,
    max_addresses: usize,
    /// The origin of the timestamps.
    base: Instant,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Per address, when its requests accepted within the last second were (nanoseconds since
    /// `base`), oldest first; at most `limit` of them, in a buffer of at most `limit`.
    windows: HashMap<IpAddr, VecDeque<u64>>,
    /// No tracked address's window empties before this (nanoseconds since `base`), so a full
    /// map is not swept again before then: a sweep costs one pass over the map, and each sweep
    /// after the first frees at least one slot or moves this forward.
    sweep_at: u64,
    /// The latest time seen (nanoseconds since `base`). Callers take their instant before
    /// the lock, so two requests can reach it out of order; counting from this, every log
    /// stays oldest first and its last entry is its newest, as the sweep assumes.
    latest: u64,
}

impl RateLimiter {
    pub(crate) fn new(limit: u32, max_addresses: usize) -> RateLimiter {
        RateLimiter {
            limit: limit.max(1),
            max_addresses: max_addresses.max(1),
            base: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    fn nanos(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.base).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX) // 584 years
    }

    /// Accepts (and counts) a request from `client` at `now`, or says when to come back.
    pub(crate) fn check(&self, client: IpAddr, now: Instant) -> Result<(), LimitRefusal> {
        // One address, however it arrives: `::ffff:127.0.0.1` is `127.0.0.1`.
        let client = client.to_canonical();
        let window = u64::try_from(WINDOW.as_nanos()).unwrap_or(u64::MAX);
        let limit = self.limit as usize;
        // Every update below completes or does nothing, so a poisoned lock is still usable.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *state;
        let now = self.nanos(now).max(state.latest);
        state.latest = now;
        let live = |at: u64| now.saturating_sub(at) < window;
        if !state.windows.contains_key(&client) && state.windows.len() >= self.max_addresses {
            if now >= state.sweep_at {
                state
                    .windows
                    .retain(|_, log| log.back().is_some_and(|&at| live(at)));
                // The first window to empty is the one whose newest request is oldest.
                state.sweep_at = state
                    .windows
                    .values()
                    .filter_map(|log| log.back())
                    .min()
                    .map_or(0, |&newest| newest.saturating_add(window));
            }
            if state.windows.len() >= self.max_addresses {
                return Err(LimitRefusal::TooManyClients {
                    retry_after: whole_seconds(state.sweep_at.saturating_sub(now)),
                });
            }
        }
        let log = match state.windows.entry(client) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(VecDeque::new()),
        };
        while log.front().is_some_and(|&at| !live(at)) {
            log.pop_front();
        }
        if log.len() >= limit {
            let oldest = log.front().copied().unwrap_or(now);
            let free_at = oldest.saturating_add(window);
            return Err(LimitRefusal::RateLimited {
                limit: self.limit,
                retry_after: whole_seconds(free_at.saturating_sub(now)),
            });
        }
        if log.len() == log.capacity() {
            // Double, as `push_back` would, but never past `limit`.
            log.reserve_exact(log.len().clamp(1, limit - log.len()));
        }
        log.push_back(now);
        Ok(())
    }

    /// How many addresses are tracked, and how many timestamps their buffers can hold.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let slots = state.windows.values().map(VecDeque::capacity).sum();
        (state.windows.len(), slots)
    }
}

/// `nanos` as whole seconds, rounded up, at least one: a `Retry-After`.
fn whole_seconds(nanos: u64) -> Duration {
    Duration::from_secs(nanos.div_ceil(1_000_000_000).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_window_slides_and_refusals_do_not_count() {
        let limiter = RateLimiter::new(3, 16);
        let t0 = limiter.base;
        for at in [0, 100, 200] {
            assert_eq!(limiter.check(A, t0 + ms(at)), Ok(()), "{at} ms");
        }
        // Full until the first accepted request is one second old; then exactly one slot.
        for at in [300, 500, 999] {
            let refused = limiter.check(A, t0 + ms(at)).unwrap_err();
            assert_eq!(refused.status(), http::StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(refused.retry_after(), Some(Duration::from_secs(1)));
        }
        // Another address has its own window.
        assert_eq!(limiter.check(B, t0 + ms(999)), Ok(()));
        assert_eq!(limiter.check(A, t0 + ms(1_000)), Ok(()));
        assert!(limiter.check(A, t0 + ms(1_050)).is_err());
        // The refusals at 300..999 ms did not count: at 1.1 s the 100 ms request has expired.
        assert_eq!(limiter.check(A, t0 + ms(1_100)), Ok(()));
        assert_eq!(limiter.check(A, t0 + ms(1_200)), Ok(()));
        assert!(limiter.check(A, t0 + ms(1_999)).is_err());
        // Never more than 3 in any one-second window, checked over a dense sweep.
        let limiter = RateLimiter::new(3, 16);
        let mut accepted = Vec::new();
        for at in (0..5_000).step_by(7) {
            if limiter.check(A, t0 + ms(at)).is_ok() {
                accepted.push(at);
            }
        }
        for (i, &at) in accepted.iter().enumerate() {
            let in_window = accepted[i..]
                .iter()
                .take_while(|&&b| b < at + 1_000)
                .count();
            assert!(in_window <= 3, "{in_window} from {at} ms");
        }
        assert!(accepted.len() >= 15, "{accepted:?}"); // 3 a second over 5 s
    }

    #[test]
    fn mapped_ipv6_addresses_count_as_their_ipv4_address() {
        let limiter = RateLimiter::new(1, 16);
        let t0 = limiter.base;
        assert_eq!(limiter.check(A, t0), Ok(()));
        let mapped = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped());
        assert!(limiter.check(mapped, t0).is_err());
        assert_eq!(limiter.check(IpAddr::V6(Ipv6Addr::LOCALHOST), t0), Ok(()));
    }

    #[test]
    fn the_address_cap_bounds_memory_and_never_forgets_a_live_address() {
        const CAP: usize = 64;
        const LIMIT: u32 = 5;
        let limiter = RateLimiter::new(LIMIT, CAP);
        let t0 = limiter.base;
        let synthetic = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        // A hostile client with 200,000 addresses, each sending a burst, 10 µs apart.
        let mut refused_new = 0;
        for i in 0..200_000u32 {
            let now = t0 + Duration::from_micros(u64::from(i) * 10);
            for _ in 0..LIMIT + 2 {
                if let Err(LimitRefusal::TooManyClients { retry_after }) =
                    limiter.check(synthetic(i), now)
                {
                    assert!(retry_after >= Duration::from_secs(1));
                    refused_new += 1;
                    break;
                }
            }
            let (addresses, slots) = limiter.held();
            assert!(addresses <= CAP, "{addresses} addresses at {i}");
            assert!(slots <= CAP * LIMIT as usize, "{slots} timestamps at {i}");
        }
        // Slots free up as addresses go quiet for a second: the cap limits, it does not jam.
        assert!(refused_new > 0 && refused_new < 200_000, "{refused_new}");
        // A live address is still limited while the map is full.
        let limiter = RateLimiter::new(1, 2);
        let t0 = limiter.base;
        assert_eq!(limiter.check(A, t0), Ok(()));
        assert_eq!(limiter.check(B, t0), Ok(()));
        let c = synthetic(3);
        assert!(matches!(
            limiter.check(c, t0 + ms(10)),
            Err(LimitRefusal::TooManyClients { .. })
        ));
        assert!(matches!(
            limiter.check(A, t0 + ms(20)),
            Err(LimitRefusal::RateLimited { .. })
        ));
        // One second after the newest request, the slots are free again.
        assert_eq!(limiter.check(c, t0 + ms(1_000)), Ok(()));
    }

    /// Instants are taken before the lock, so two requests can reach it out of order; the
    /// later one must not make the address look idle to the sweep while a request it sent
    /// is still within the window.
    #[test]
    fn requests_reaching_the_lock_out_of_order_keep_their_address_live() {
        let limiter = RateLimiter::new(2, 1);
        let t0 = limiter.base;
        assert_eq!(limiter.check(A, t0 + ms(101)), Ok(()));
        assert_eq!(limiter.check(A, t0 + ms(100)), Ok(()));
        // At 1.1005 s the request of 101 ms is still live: A holds the only slot.
        let at = t0 + ms(1_100) + Duration::from_micros(500);
        assert!(
            matches!(
                limiter.check(B, at),
                Err(LimitRefusal::TooManyClients { .. })
            ),
            "A was forgotten while a request of its was within the last second"
        );
        assert_eq!(limiter.check(B, t0 + ms(1_101)), Ok(()));
    }

    #[test]
    fn every_kth_request_fails_after_the_rate_limit() {
        let now = Instant::now();
        let throttle = Throttle::new(None, Some(3)).unwrap().unwrap();
        let outcomes: Vec<_> = (0..9).map(|_| throttle.check(A, now)).collect();
        for (i, outcome) in outcomes.iter().enumerate() {
            let n = i as u64 + 1;
            match outcome {
                Err(LimitRefusal::FailEvery { every: 3, request }) => {
                    assert_eq!(*request, n);
                    assert_eq!(n % 3, 0);
                }
                Ok(()) => assert_ne!(n % 3, 0),
                other => panic!("{other:?}"),
            }
        }
        // With a rate limit, refused requests are not counted towards fail_every.
        let throttle = Throttle::new(Some(2), Some(2)).unwrap().unwrap();
        assert_eq!(throttle.check(A, now), Ok(()));
        assert!(matches!(
            throttle.check(A, now),
            Err(LimitRefusal::FailEvery { request: 2, .. })
        ));
        assert!(matches!(
            throttle.check(A, now),
            Err(LimitRefusal::RateLimited { .. })
        ));
        assert_eq!(throttle.check(B, now), Ok(())); // request 3

        // 1: every request fails.
        let throttle = Throttle::new(None, Some(1)).unwrap().unwrap();
        assert!((0..5).all(|_| throttle.check(A, now).is_err()));
    }

    #[test]
    fn out_of_range_settings_are_errors_and_off_is_none() {
        assert!(Throttle::new(None, None).unwrap().is_none());
        for (rate, every) in [
            (Some(0), None),
            (Some(MAX_RATE_LIMIT + 1), None),
            (None, Some(0)),
        ] {
            let error = Throttle::new(rate, every).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
            assert!(error.to_string().contains("such as"), "{error}");
        }
        assert!(Throttle::new(Some(MAX_RATE_LIMIT), Some(1))
            .unwrap()
            .is_some());
    }

    #[test]
    fn reasons_say_what_to_do() {
        let refusal = LimitRefusal::FailEvery {
            every: 3,
            request: 6,
        };
        assert!(refusal.reason().contains("every 3rd request"), "{refusal}");
        assert_eq!(ordinal_suffix(1), "st");
        assert_eq!(ordinal_suffix(12), "th");
        assert_eq!(ordinal_suffix(22), "nd");
        let refusal = LimitRefusal::RateLimited {
            limit: 20,
            retry_after: Duration::from_secs(1),
        };
        assert!(
            refusal.reason().contains("at most 20 per second"),
            "{refusal}"
        );
        assert_eq!(whole_seconds(1), Duration::from_secs(1));
        assert_eq!(whole_seconds(1_000_000_001), Duration::from_secs(2));
        assert_eq!(whole_seconds(0), Duration::from_secs(1));
    }
}
