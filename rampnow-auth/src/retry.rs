//! [`RampnowRetry`]: the retry policy a Rampnow client needs, for tower's `Retry` layer.
//!
//! It retries what is safe to send again and nothing else, waits with exponential backoff
//! and full jitter (or as long as the server's `Retry-After` asks), and draws every retry
//! from a budget shared by all clones of the policy, so a failing upstream is not answered
//! with three times the load.
//!
//! Put it **outside** the signing layer: each attempt then passes through the signer again,
//! with a fresh timestamp and signature (the signer replaces the three headers, it never
//! appends a second copy).
//!
//! ```no_run
//! # async fn run() -> Result<(), tower::BoxError> {
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use rampnow_auth::retry::RampnowRetry;
//! use rampnow_auth::{Credentials, RampnowAuthLayer, SignedBody};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! let transport = hyper_rustls::HttpsConnectorBuilder::new()
//!     .with_webpki_roots()
//!     .https_only()
//!     .enable_http1()
//!     .build();
//! let client = ServiceBuilder::new()
//!     .retry(RampnowRetry::new())
//!     .layer(RampnowAuthLayer::new(Credentials::from_env()?))
//!     .service(Client::builder(TokioExecutor::new()).build::<_, SignedBody>(transport));
//!
//! let request = http::Request::get("https://api.rampnow.io/api/partner/v1/ext/ramp_order/config")
//!     .body(SignedBody::empty())?;
//! let response = client.oneshot(request).await?;
//! # let _ = response; Ok(()) }
//! ```
//!
//! # What is retried
//!
//! | outcome | retried for | wait |
//! |---|---|---|
//! | `429 Too Many Requests`, `503 Service Unavailable` | every method | `Retry-After` (plus jitter) if the server sent one, else backoff |
//! | `502 Bad Gateway`, `504 Gateway Timeout` | every method | backoff |
//! | failure to connect: nothing was sent | every method | backoff |
//! | any other transport error, a timeout | idempotent methods only: `GET`, `HEAD`, `PUT`, `DELETE`, `OPTIONS`, `TRACE` | backoff |
//! | any other status (`2xx`, `3xx`, other `4xx`, `500`, ...) | never | — |
//! | the signing layer's own errors ([`crate::Error`]: insecure scheme, body too large, ...) | never: they fail the same way every time | — |
//! | the rate limiter's [`LimitError`](crate::limit::LimitError) with Redis slow or down (`is_unavailable()`): nothing was sent | every method | backoff |
//! | the rate limiter's `LimitError` for a missing Tokio timer | never | — |
//!
//! A `POST` (or `PATCH`) whose connection failed or timed out after it may have reached the
//! server is never sent twice: the server may have acted on it.
//!
//! **Failure to connect** is recognised by walking the error's
//! [`source`](std::error::Error::source) chain for an [`std::io::Error`] of kind
//! `ConnectionRefused` or `AddrNotAvailable` (hyper-util's client wraps it as
//! `Error(Connect)` → `ConnectError` → `io::Error`), and, with the `hyper-util` feature, for
//! a hyper-util client error whose `is_connect()` is true (which also covers DNS failures,
//! connect timeouts and TLS handshakes). `ConnectionReset` is *not* a connect failure: it
//! can come after the request was sent. **Timeouts** are tower's
//! [`Elapsed`](tower::timeout::error::Elapsed) or an `io::Error` of kind `TimedOut`.
//!
//! # How long it waits
//!
//! Before retry `n` (`n = 0` for the first retry) it sleeps a random time in
//! `[0, min(max_delay, base_delay × 2ⁿ)]` ("full jitter", as the AWS SDKs do). When a `429`
//! or `503` carries `Retry-After` (delta-seconds, or an HTTP date), it waits that long plus
//! the same jitter, never more than `max_delay` in all. A `Retry-After` **beyond
//! `max_delay`** is not shortened: the policy gives up and returns that response at once,
//! so the caller sees the `429`/`503` and its `Retry-After`, instead of a request sent
//! again before the server said it would serve it. A `Retry-After` that is neither (garbage,
//! a negative number, a fraction) is ignored and the backoff applies; a date in the past
//! means no wait beyond the jitter.
//!
//! The sleep is `tokio::time::sleep`. Outside a Tokio runtime with its timer enabled, a
//! retry that has to wait is not made: the last result is returned.
//!
//! # The budget
//!
//! Every first attempt deposits into the budget and every retry withdraws from it; when it
//! is empty, failures are returned without a retry. The default is tower's
//! [`TpsBudget::default()`](TpsBudget): retries may add 20% to the requests of the last
//! 10 seconds, plus 10 retries per second in reserve. The budget is shared by every clone of
//! the policy (tower clones it for each request); [`RampnowRetry::budget`] takes an `Arc`,
//! to share one budget across several clients too.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::Policy;
use tower::BoxError;

use crate::body::SignedBody;

/// Default [`max_attempts`](RampnowRetry::max_attempts): the first attempt and two retries.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default [`base_delay`](RampnowRetry::base_delay): the backoff before the first retry is at
/// most this long.
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(100);
/// Default [`max_delay`](RampnowRetry::max_delay): no wait is longer.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(20);

/// How deep the error's `source()` chain is searched. Real chains are 2 to 5 deep; the
/// bound only stops a chain that loops.
const MAX_CHAIN_DEPTH: usize = 32;

/// A [`tower::retry::Policy`] for Rampnow requests: which failures are retried, how long to
/// wait, and a budget so retries cannot multiply the load on a failing upstream.
///
/// See the [module documentation](self) for what is retried and when. It is a policy for
/// `http::Request<SignedBody>` and `http::Response<B>` of any body, with the
/// [`tower::BoxError`] the signing layer returns; put it outside
/// [`RampnowAuthLayer`](crate::RampnowAuthLayer).
///
/// Cloning is cheap; clones share the budget.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use rampnow_auth::retry::RampnowRetry;
/// use rampnow_auth::{Credentials, RampnowAuthLayer, SignedBody};
/// use tower::ServiceBuilder;
///
/// # fn build<C>(transport: C) -> Result<(), rampnow_auth::Error>
/// # where C: tower::Service<http::Request<SignedBody>, Response = http::Response<String>,
/// #     Error = tower::BoxError> + Clone {
/// # let credentials = Credentials::new("ak_live_3f9a1c", "pk_live_secret")?;
/// let policy = RampnowRetry::new()
///     .max_attempts(4)
///     .base_delay(Duration::from_millis(200))
///     .max_delay(Duration::from_secs(5));
/// let client = ServiceBuilder::new()
///     .retry(policy)
///     .layer(RampnowAuthLayer::new(credentials))
///     .service(transport);
/// # let _ = client; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RampnowRetry {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    budget: Option<Arc<dyn Budget + Send + Sync>>,
    /// Attempts finished for the request this clone follows (0 in the policy held by the
    /// service: tower clones the policy into each request's future).
    attempts: u32,
}

impl RampnowRetry {
    /// The default policy: 3 attempts in all, backoff with full jitter from 100 ms capped at
    /// 20 s, and tower's default [`TpsBudget`].
    ///
    /// ```
    /// let policy = rampnow_auth::retry::RampnowRetry::new();
    /// assert_eq!(policy.get_max_attempts(), 3);
    /// ```
    #[must_use]
    pub fn new() -> RampnowRetry {
        RampnowRetry {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base_delay: DEFAULT_BASE_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            budget: Some(Arc::new(TpsBudget::default())),
            attempts: 0,
        }
    }

    /// How many attempts in all, the first included: `max_attempts(1)` never retries.
    /// `0` is taken as `1` (a request is always sent once).
    ///
    /// ```
    /// use rampnow_auth::retry::RampnowRetry;
    /// assert_eq!(RampnowRetry::new().max_attempts(5).get_max_attempts(), 5);
    /// assert_eq!(RampnowRetry::new().max_attempts(0).get_max_attempts(), 1);
    /// ```
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> RampnowRetry {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The backoff before the first retry is at most this long; it doubles with each retry,
    /// up to [`max_delay`](Self::max_delay). Zero retries at once (with no backoff); a base
    /// above `max_delay` is capped by it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rampnow_auth::retry::RampnowRetry;
    /// let policy = RampnowRetry::new().base_delay(Duration::from_millis(50));
    /// assert_eq!(policy.get_base_delay(), Duration::from_millis(50));
    /// ```
    #[must_use]
    pub fn base_delay(mut self, delay: Duration) -> RampnowRetry {
        self.base_delay = delay;
        self
    }

    /// The longest wait before any retry, `Retry-After` included: a `Retry-After` beyond it
    /// ends the retries and returns the response. Zero means never wait (and so never honour
    /// a `Retry-After` of one second or more). Not bounded above: a huge value is taken as
    /// given (tokio sleeps until a far-future instant rather than failing).
    ///
    /// ```
    /// use std::time::Duration;
    /// use rampnow_auth::retry::RampnowRetry;
    /// let policy = RampnowRetry::new().max_delay(Duration::from_secs(2));
    /// assert_eq!(policy.get_max_delay(), Duration::from_secs(2));
    /// ```
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> RampnowRetry {
        self.max_delay = delay;
        self
    }

    /// Draws retries from `budget` instead of a [`TpsBudget::default()`] of the policy's own.
    /// Pass the same `Arc` to several policies to give them one budget.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use rampnow_auth::retry::RampnowRetry;
    /// use tower::retry::budget::TpsBudget;
    ///
    /// // Retries may add 10% to the last 10 s of requests, with 1 retry per second in reserve.
    /// let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 1, 0.1));
    /// let quotes = RampnowRetry::new().budget(budget.clone());
    /// let orders = RampnowRetry::new().budget(budget);
    /// # let _ = (quotes, orders);
    /// ```
    #[must_use]
    pub fn budget<B>(mut self, budget: Arc<B>) -> RampnowRetry
    where
        B: Budget + Send + Sync + 'static,
    {
        self.budget = Some(budget);
        self
    }

    /// No budget: every failure that may be retried is, up to
    /// [`max_attempts`](Self::max_attempts). Only for tests or when something else bounds the
    /// load.
    ///
    /// ```
    /// let policy = rampnow_auth::retry::RampnowRetry::new().no_budget();
    /// # let _ = policy;
    /// ```
    #[must_use]
    pub fn no_budget(mut self) -> RampnowRetry {
        self.budget = None;
        self
    }

    /// The number of attempts in all (see [`max_attempts`](Self::max_attempts)).
    #[must_use]
    pub fn get_max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The backoff's base (see [`base_delay`](Self::base_delay)).
    #[must_use]
    pub fn get_base_delay(&self) -> Duration {
        self.base_delay
    }

    /// The longest wait (see [`max_delay`](Self::max_delay)).
    #[must_use]
    pub fn get_max_delay(&self) -> Duration {
        self.max_delay
    }

    /// What to do after the attempt that gave `result`: `None` to return it, or how long to
    /// wait before the next attempt.
    fn decide<B>(
        &mut self,
        method: &Method,
        result: &Result<Response<B>, BoxError>,
    ) -> Option<Duration> {
        self.attempts = self.attempts.saturating_add(1);
        if self.attempts == 1 {
            if let Some(budget) = &self.budget {
                budget.deposit();
            }
        }
        let wait = match result {
            Ok(response) => classify_status(response.status(), response.headers())?,
            Err(error) => match classify_error(error.as_ref()) {
                ErrorClass::Permanent => return None,
                ErrorClass::NotSent => Wait::Backoff,
                ErrorClass::MaybeSent if is_idempotent(method) => Wait::Backoff,
                ErrorClass::MaybeSent => return None,
            },
        };
        if self.attempts >= self.max_attempts {
            return None;
        }
        let jitter = full_jitter(
            self.base_delay,
            self.max_delay,
            self.attempts - 1,
            random_u64(),
        );
        let delay = match wait {
            Wait::Backoff => jitter,
            Wait::After(after) if after > self.max_delay => return None,
            Wait::After(after) => after.saturating_add(jitter).min(self.max_delay),
        };
        if let Some(budget) = &self.budget {
            if !budget.withdraw() {
                return None;
            }
        }
        Some(delay)
    }
}

impl Default for RampnowRetry {
    fn default() -> RampnowRetry {
        RampnowRetry::new()
    }
}

impl fmt::Debug for RampnowRetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RampnowRetry")
            .field("max_attempts", &self.max_attempts)
            .field("base_delay", &self.base_delay)
            .field("max_delay", &self.max_delay)
            .field("budget", &self.budget.is_some())
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl<B> Policy<Request<SignedBody>, Response<B>, BoxError> for RampnowRetry {
    type Future = RetryDelay;

    fn retry(
        &mut self,
        request: &mut Request<SignedBody>,
        result: &mut Result<Response<B>, BoxError>,
    ) -> Option<RetryDelay> {
        let delay = self.decide(request.method(), result)?;
        RetryDelay::new(delay)
    }

    /// A copy of the request as the caller made it (the signing layer signs the request it is
    /// given, not this copy): method, URI, version, headers, extensions and the body, which
    /// is a reference count.
    fn clone_request(&mut self, request: &Request<SignedBody>) -> Option<Request<SignedBody>> {
        let mut clone = Request::new(request.body().clone());
        *clone.method_mut() = request.method().clone();
        *clone.uri_mut() = request.uri().clone();
        *clone.version_mut() = request.version();
        *clone.headers_mut() = request.headers().clone();
        *clone.extensions_mut() = request.extensions().clone();
        Some(clone)
    }
}

pin_project! {
    /// The wait before a retry of [`RampnowRetry`]: a `tokio::time::Sleep`, or nothing for a
    /// zero delay.
    #[derive(Debug)]
    pub struct RetryDelay {
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl RetryDelay {
    /// `None` when the delay needs a timer and there is none (outside a Tokio runtime, or in
    /// one built without `enable_time`): then the retry is not made.
    fn new(delay: Duration) -> Option<RetryDelay> {
        if delay.is_zero() {
            return Some(RetryDelay { sleep: None });
        }
        let sleep = crate::timer::sleep(delay)?;
        Some(RetryDelay { sleep: Some(sleep) })
    }
}

impl Future for RetryDelay {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project().sleep.as_pin_mut() {
            Some(sleep) => sleep.poll(cx),
            None => Poll::Ready(()),
        }
    }
}

/// Why a response is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Backoff with full jitter.
    Backoff,
    /// The server's `Retry-After`.
    After(Duration),
}

/// `None`: not retried.
fn classify_status(status: StatusCode, headers: &HeaderMap) -> Option<Wait> {
    match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Some(
            headers
                .get(RETRY_AFTER)
                .and_then(|value| parse_retry_after(value.as_bytes(), SystemTime::now()))
                .map_or(Wait::Backoff, Wait::After),
        ),
        StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => Some(Wait::Backoff),
        _ => None,
    }
}

/// What an error says about whether the request may have reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorClass {
    /// The signing layer's own error: the same request fails the same way again.
    Permanent,
    /// The connection was never made: nothing was sent.
    NotSent,
    /// Anything else, timeouts included: the server may have received the request.
    MaybeSent,
}

fn classify_error(error: &(dyn StdError + Send + Sync + 'static)) -> ErrorClass {
    let mut class = ErrorClass::MaybeSent;
    let mut next: Option<&(dyn StdError + 'static)> = Some(error);
    for _ in 0..MAX_CHAIN_DEPTH {
        let Some(error) = next else { break };
        if error.is::<crate::Error>() {
            return ErrorClass::Permanent;
        }
        if let Some(limit) = error.downcast_ref::<crate::limit::LimitError>() {
            // The limiter sends nothing when it fails: Redis slow or down passes (a retry
            // asks again), no timer does not.
            return if limit.is_unavailable() {
                ErrorClass::NotSent
            } else {
                ErrorClass::Permanent
            };
        }
        if is_connect_failure(error) {
            class = ErrorClass::NotSent;
        }
        next = error.source();
    }
    class
}

fn is_connect_failure(error: &(dyn StdError + 'static)) -> bool {
    if let Some(io) = error.downcast_ref::<io::Error>() {
        // Only kinds that `connect` returns and a socket that has sent data does not: a reset,
        // a broken pipe or an unreachable host can come after the request went out.
        return matches!(
            io.kind(),
            io::ErrorKind::ConnectionRefused | io::ErrorKind::AddrNotAvailable
        );
    }
    #[cfg(feature = "hyper-util")]
    if let Some(client) = error.downcast_ref::<hyper_util::client::legacy::Error>() {
        // hyper-util's `Connect` kind: connector and handshake errors, before the request is
        // handed to the connection.
        return client.is_connect();
    }
    #[cfg(feature = "reqwest")]
    if let Some(client) = error.downcast_ref::<reqwest::Error>() {
        return client.is_connect();
    }
    false
}

/// RFC 9110 §9.2.2: the methods whose repetition has the effect of one request.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// A `Retry-After` value as a wait from `now`: delta-seconds or an HTTP date (a date in the
/// past is no wait). `None` for anything else: not text, empty, negative, a fraction, a
/// date that does not parse. Digits too many for a `u64` are `Duration::MAX` (they are
/// beyond any `max_delay`, which ends the retries).
fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let value = value.trim_ascii();
    if value.is_empty() {
        return None;
    }
    if value.iter().all(u8::is_ascii_digit) {
        let mut secs: u64 = 0;
        for digit in value {
            secs = match secs
                .checked_mul(10)
                .and_then(|s| s.checked_add(u64::from(digit - b'0')))
            {
                Some(secs) => secs,
                None => return Some(Duration::MAX),
            };
        }
        return Some(Duration::from_secs(secs));
    }
    let text = std::str::from_utf8(value).ok()?;
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The ceiling of the backoff before retry `retry` (0 for the first): `base × 2^retry`,
/// capped by `max`, without overflow for any input.
fn backoff_ceiling(base: Duration, max: Duration, retry: u32) -> Duration {
    let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(Duration::MAX).min(max)
}

/// Full jitter: a time in `[0, backoff_ceiling(base, max, retry)]` chosen by `random`.
fn full_jitter(base: Duration, max: Duration, retry: u32, random: u64) -> Duration {
    let ceiling = backoff_ceiling(base, max, retry);
    let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    match ceiling_nanos.checked_add(1) {
        Some(span) => Duration::from_nanos(random % span),
        None => Duration::from_nanos(random),
    }
}

/// 64 random bits for the jitter, without a `rand` dependency: each `RandomState` of the
/// standard library has fresh SipHash keys (random per thread, then incremented), so the
/// hash of nothing under them differs from call to call and from clone to clone — which a
/// seeded generator copied into each clone of the policy would not.
fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after(b"1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(b" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(b"0", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_http_date() {
        // Sun, 06 Nov 1994 08:49:37 GMT is 784111777.
        let date = b"Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            parse_retry_after(date, at(784_111_777 - 30)),
            Some(Duration::from_secs(30))
        );
        // A date in the past: no wait.
        assert_eq!(
            parse_retry_after(date, at(784_111_777 + 30)),
            Some(Duration::ZERO)
        );
        // The two obsolete forms HTTP still accepts.
        assert_eq!(
            parse_retry_after(b"Sunday, 06-Nov-94 08:49:37 GMT", at(784_111_770)),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(b"Sun Nov  6 08:49:37 1994", at(784_111_770)),
            Some(Duration::from_secs(7))
        );
    }

    #[test]
    fn retry_after_garbage_and_negative_are_ignored() {
        let now = SystemTime::now();
        for value in [
            &b""[..],
            b"   ",
            b"soon",
            b"-1",
            b"+5",
            b"1.5",
            b"1e9",
            b"0x10",
            b"\xff\xfe",
            b"Sun, 06 Nov 1994 08:49:37",
            b"Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }

    #[test]
    fn retry_after_huge_is_beyond_any_cap() {
        let now = SystemTime::now();
        assert_eq!(
            parse_retry_after(b"18446744073709551615", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse_retry_after(b"99999999999999999999999999999999", now),
            Some(Duration::MAX)
        );
        let long = vec![b'9'; 100_000];
        assert_eq!(parse_retry_after(&long, now), Some(Duration::MAX));
        // Dates far ahead are long waits, not errors.
        let far = parse_retry_after(b"Fri, 31 Dec 9999 23:59:59 GMT", now).unwrap();
        assert!(far > Duration::from_secs(200 * 365 * 86_400));
    }

    #[test]
    fn a_huge_retry_after_gives_up_instead_of_waiting() {
        let mut policy = RampnowRetry::new().no_budget();
        let response = Response::builder()
            .status(429)
            .header(RETRY_AFTER, "99999999999999999999")
            .body(())
            .unwrap();
        assert_eq!(policy.decide(&Method::GET, &Ok(response)), None);

        let mut policy = RampnowRetry::new().no_budget();
        let response = Response::builder()
            .status(503)
            .header(RETRY_AFTER, "21")
            .body(())
            .unwrap();
        assert_eq!(
            policy.decide(&Method::GET, &Ok(response)),
            None,
            "21 s > 20 s cap"
        );

        let mut policy = RampnowRetry::new().no_budget();
        let response = Response::builder()
            .status(503)
            .header(RETRY_AFTER, "20")
            .body(())
            .unwrap();
        assert_eq!(
            policy.decide(&Method::GET, &Ok(response)),
            Some(Duration::from_secs(20)),
            "exactly the cap: waited, jitter capped"
        );
    }

    #[test]
    fn garbage_retry_after_falls_back_to_backoff() {
        let mut policy = RampnowRetry::new().no_budget();
        let response = Response::builder()
            .status(429)
            .header(RETRY_AFTER, "whenever")
            .body(())
            .unwrap();
        let delay = policy
            .decide(&Method::POST, &Ok(response))
            .expect("retried");
        assert!(delay <= DEFAULT_BASE_DELAY, "{delay:?}");
    }

    #[test]
    fn backoff_ceiling_doubles_then_caps() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(20);
        assert_eq!(backoff_ceiling(base, max, 0), Duration::from_millis(100));
        assert_eq!(backoff_ceiling(base, max, 1), Duration::from_millis(200));
        assert_eq!(backoff_ceiling(base, max, 7), Duration::from_millis(12_800));
        assert_eq!(backoff_ceiling(base, max, 8), max);
        for retry in [31, 32, 63, 64, 1000, u32::MAX] {
            assert_eq!(backoff_ceiling(base, max, retry), max, "retry {retry}");
            assert_eq!(
                backoff_ceiling(Duration::MAX, Duration::MAX, retry),
                Duration::MAX
            );
        }
        // Base above the cap: the cap.
        assert_eq!(backoff_ceiling(Duration::from_secs(60), max, 0), max);
        // Zero base or zero cap: no wait.
        assert_eq!(backoff_ceiling(Duration::ZERO, max, 5), Duration::ZERO);
        assert_eq!(backoff_ceiling(base, Duration::ZERO, 5), Duration::ZERO);
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_ceiling() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(20);
        for retry in [0, 1, 2, 5, 8, 31, 64, u32::MAX] {
            let ceiling = backoff_ceiling(base, max, retry);
            for random in [0, 1, u64::MAX, u64::MAX / 2, 123_456_789] {
                assert!(full_jitter(base, max, retry, random) <= ceiling);
            }
            let mut seen_low = false;
            let mut seen_high = false;
            for _ in 0..2_000 {
                let jitter = full_jitter(base, max, retry, random_u64());
                assert!(jitter <= ceiling, "{jitter:?} > {ceiling:?}");
                seen_low |= jitter < ceiling / 4;
                seen_high |= jitter > ceiling * 3 / 4;
            }
            assert!(seen_low && seen_high, "spread over [0, {ceiling:?}]");
        }
        assert_eq!(
            full_jitter(Duration::ZERO, max, 3, u64::MAX),
            Duration::ZERO
        );
        assert!(full_jitter(Duration::MAX, Duration::MAX, 3, u64::MAX) <= Duration::MAX);
    }

    #[test]
    fn bad_configuration_does_not_panic() {
        let policy = RampnowRetry::new()
            .max_attempts(0)
            .base_delay(Duration::MAX)
            .max_delay(Duration::MAX);
        assert_eq!(policy.get_max_attempts(), 1);
        let mut policy = policy.max_attempts(u32::MAX).no_budget();
        for _ in 0..10 {
            let response = Response::builder().status(502).body(()).unwrap();
            assert!(policy.decide(&Method::GET, &Ok(response)).is_some());
        }
        let mut zero = RampnowRetry::new()
            .base_delay(Duration::ZERO)
            .max_delay(Duration::ZERO)
            .no_budget();
        let response = Response::builder().status(504).body(()).unwrap();
        assert_eq!(
            zero.decide(&Method::GET, &Ok(response)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn without_a_timer_a_retry_that_must_wait_is_not_made() {
        // Outside any runtime.
        assert!(RetryDelay::new(Duration::from_millis(1)).is_none());
        assert!(
            RetryDelay::new(Duration::ZERO).is_some(),
            "no wait needs no timer"
        );
        // In a runtime built without `enable_time` (tokio's panic is caught; its message
        // still reaches the panic hook).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            assert!(RetryDelay::new(Duration::from_millis(1)).is_none());
        });
    }

    #[tokio::test]
    async fn the_delay_waits_its_time() {
        let start = tokio::time::Instant::now();
        RetryDelay::new(Duration::from_millis(20)).unwrap().await;
        assert!(start.elapsed() >= Duration::from_millis(20));
        RetryDelay::new(Duration::ZERO).unwrap().await;
    }

    #[test]
    fn attempts_are_counted_per_clone() {
        let template = RampnowRetry::new().max_attempts(3).no_budget();
        let failure = || Ok(Response::builder().status(503).body(()).unwrap());
        let mut request = template.clone();
        assert!(request.decide(&Method::GET, &failure()).is_some());
        assert!(request.decide(&Method::GET, &failure()).is_some());
        assert_eq!(
            request.decide(&Method::GET, &failure()),
            None,
            "3 attempts in all"
        );
        // The template was not advanced by its clone.
        let mut next = template.clone();
        assert!(next.decide(&Method::GET, &failure()).is_some());
        let mut once = RampnowRetry::new().max_attempts(1).no_budget();
        assert_eq!(once.decide(&Method::GET, &failure()), None);
    }

    #[test]
    fn statuses() {
        let retried = [429, 502, 503, 504];
        for code in 100..=599u16 {
            let status = StatusCode::from_u16(code).unwrap();
            let wait = classify_status(status, &HeaderMap::new());
            assert_eq!(wait.is_some(), retried.contains(&code), "{code}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(
            classify_status(StatusCode::SERVICE_UNAVAILABLE, &headers),
            Some(Wait::After(Duration::from_secs(3)))
        );
        assert_eq!(
            classify_status(StatusCode::BAD_GATEWAY, &headers),
            Some(Wait::Backoff),
            "Retry-After is read on 429 and 503 only"
        );
    }

    /// An error wrapping another, as hyper-util's client errors do.
    #[derive(Debug)]
    struct Wrapper(&'static str, BoxError);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(self.1.as_ref())
        }
    }

    fn wrapped(inner: impl Into<BoxError>) -> BoxError {
        Box::new(Wrapper(
            "client error (Connect)",
            Box::new(Wrapper("tcp connect error", inner.into())),
        ))
    }

    #[test]
    fn errors() {
        use crate::ErrorKind;
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            classify_error(wrapped(refused).as_ref()),
            ErrorClass::NotSent
        );
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::TimedOut,
            io::ErrorKind::UnexpectedEof,
            io::ErrorKind::HostUnreachable,
        ] {
            let error = wrapped(io::Error::from(kind));
            assert_eq!(
                classify_error(error.as_ref()),
                ErrorClass::MaybeSent,
                "{kind:?}"
            );
        }
        let elapsed: BoxError = Box::new(tower::timeout::error::Elapsed::new());
        assert_eq!(classify_error(elapsed.as_ref()), ErrorClass::MaybeSent);
        let own: BoxError = Box::new(crate::Error::new(ErrorKind::InsecureScheme, "http"));
        assert_eq!(classify_error(own.as_ref()), ErrorClass::Permanent);
        // Even with a connect-looking cause, the signing layer's errors are final.
        let own_with_io: BoxError = Box::new(
            crate::Error::new(ErrorKind::Body, "body failed")
                .with_source(io::Error::from(io::ErrorKind::ConnectionRefused)),
        );
        assert_eq!(classify_error(own_with_io.as_ref()), ErrorClass::Permanent);
    }

    /// The rate limiter's errors: with Redis slow or down nothing was sent, so a POST is
    /// retried like a failure to connect; without a timer it fails the same way every time.
    #[test]
    fn limiter_errors() {
        let no_timer: BoxError = Box::new(crate::limit::LimitError::no_timer());
        assert_eq!(classify_error(no_timer.as_ref()), ErrorClass::Permanent);
        #[cfg(feature = "redis")]
        for error in [
            crate::limit::LimitError::redis_timeout(Duration::from_millis(500)),
            crate::limit::LimitError::redis_late(
                Duration::from_millis(450),
                Duration::from_millis(20),
            ),
        ] {
            let error: BoxError = Box::new(error);
            assert_eq!(classify_error(error.as_ref()), ErrorClass::NotSent);
            let mut policy = RampnowRetry::new().no_budget();
            let result: Result<Response<()>, BoxError> = Err(error);
            assert!(
                policy.decide(&Method::POST, &result).is_some(),
                "a POST retried"
            );
        }
    }

    #[test]
    fn transport_errors_are_retried_for_idempotent_methods_only() {
        let reset = || -> Result<Response<()>, BoxError> {
            Err(wrapped(io::Error::from(io::ErrorKind::ConnectionReset)))
        };
        for method in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
            Method::TRACE,
        ] {
            let mut policy = RampnowRetry::new().no_budget();
            assert!(policy.decide(&method, &reset()).is_some(), "{method}");
        }
        for method in [Method::POST, Method::PATCH, Method::CONNECT] {
            let mut policy = RampnowRetry::new().no_budget();
            assert_eq!(policy.decide(&method, &reset()), None, "{method}");
            let refused = Err(wrapped(io::Error::from(io::ErrorKind::ConnectionRefused)));
            let mut policy = RampnowRetry::new().no_budget();
            assert!(policy.decide::<()>(&method, &refused).is_some(), "{method}");
        }
    }

    #[test]
    fn the_budget_is_shared_by_clones() {
        // No reserve, and a retry costs ten first attempts.
        let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 0, 0.1));
        let template = RampnowRetry::new().budget(budget);
        let failure = || Ok(Response::builder().status(503).body(()).unwrap());
        let mut granted = 0;
        for _ in 0..100 {
            let mut request = template.clone();
            while request.decide(&Method::GET, &failure()).is_some() {
                granted += 1;
            }
        }
        assert!(
            (5..=15).contains(&granted),
            "{granted} retries for 100 requests"
        );
    }

    #[test]
    fn clone_request_keeps_everything_but_is_a_copy() {
        #[derive(Clone, Debug, PartialEq)]
        struct Tag(u32);
        let mut request = Request::put("https://api.rampnow.io/x?y=1")
            .version(http::Version::HTTP_2)
            .header("x-one", "1")
            .body(SignedBody::from("body"))
            .unwrap();
        request.extensions_mut().insert(Tag(7));
        let mut policy = RampnowRetry::new();
        let clone = Policy::<_, Response<()>, BoxError>::clone_request(&mut policy, &request)
            .expect("always cloned");
        assert_eq!(clone.method(), Method::PUT);
        assert_eq!(clone.uri(), request.uri());
        assert_eq!(clone.version(), http::Version::HTTP_2);
        assert_eq!(clone.headers(), request.headers());
        assert_eq!(clone.extensions().get::<Tag>(), Some(&Tag(7)));
        assert_eq!(clone.body().as_bytes(), b"body");
    }
}
