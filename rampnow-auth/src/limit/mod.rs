//! A rate limit that waits: [`RateLimitLayer`] holds each request until Rampnow's limit admits
//! it, one limiter shared by every clone of the service (and, with the `redis` feature, by
//! every process).
//!
//! Rampnow allows a number of requests per second per IP address (20 in production, 15 in
//! staging: [`Environment`]). Past it, requests are refused with `429`. A client that knows the
//! limit can space its requests instead, and never see a `429`: [`RateLimitLayer`] releases one
//! request every `1 s / N` (plus a little [headroom](RateLimitLayer::headroom)), and holds the
//! others in their own futures until their turn. Nothing fails for being early; nothing is
//! queued inside the layer (each waiting request is its caller's future, so dropping it —
//! a timeout, a cancelled task — frees everything it held).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use rampnow_auth::limit::RateLimitLayer;
//! use rampnow_auth::{Credentials, Environment, RampnowAuthLayer, SignedBody};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let transport = service_fn(|_request: http::Request<SignedBody>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(()))
//! });
//! let client = ServiceBuilder::new()
//!     .layer(RateLimitLayer::for_environment(Environment::Production)) // 20 a second
//!     .layer(RampnowAuthLayer::new(Credentials::new("ak_live_3f9a1c", "pk_live_secret")?))
//!     .service(transport);
//!
//! let started = tokio::time::Instant::now();
//! for _ in 0..3 {
//!     let request = http::Request::get("https://api.rampnow.io/api/partner/v1/ext/currencies")
//!         .body(SignedBody::empty())?;
//!     client.clone().oneshot(request).await?;
//! }
//! // The first goes at once, each of the others ~51 ms after the one before.
//! assert!(started.elapsed() >= Duration::from_millis(100));
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! # }).unwrap();
//! ```
//!
//! # Where it goes in a stack
//!
//! | layer | where | why |
//! |---|---|---|
//! | timeout | outside | bounds the wait for a turn too |
//! | retry ([`tower::retry`]) | outside the limiter | each attempt waits its turn again; a retry never jumps the queue or breaks the limit |
//! | **rate limit** | outside the signing layer | a request is signed when it is released, not when it was queued: a request that waited 3 s still carries a fresh timestamp |
//! | signing ([`RampnowAuthLayer`](crate::RampnowAuthLayer)) | inside the limiter | |
//! | the transport | innermost | |
//!
//! ```
//! # fn build<C>(transport: C, credentials: rampnow_auth::Credentials)
//! # where C: tower::Service<http::Request<rampnow_auth::SignedBody>, Response = http::Response<()>> + Clone,
//! #       C::Error: Into<tower::BoxError> {
//! use std::time::Duration;
//! use rampnow_auth::limit::RateLimitLayer;
//! use rampnow_auth::{Environment, RampnowAuthLayer};
//! use tower::ServiceBuilder;
//!
//! let client = ServiceBuilder::new()
//!     .timeout(Duration::from_secs(30))
//!     // .retry(policy) here
//!     .layer(RateLimitLayer::for_environment(Environment::Production))
//!     .layer(RampnowAuthLayer::new(credentials))
//!     .service(transport);
//! # let _ = client; }
//! ```
//!
//! # Exactly N per second, not 2N − 1: no burst
//!
//! The limiter is GCRA (the [`governor`](https://docs.rs/governor) crate) with a burst of
//! one: one request every `1 s / N`. A GCRA with a burst of `N` (what "N per second" often
//! means in rate limiters) lets `N` through at once and then one every `1 s / N`, so a
//! one-second window that starts with the burst holds `2N − 1` requests, and Rampnow, which
//! counts per second, answers the last `N − 1` with `429`. A burst of `b` keeps within the
//! limit only if the steady rate drops to `N − b + 1` a second; that trades throughput for
//! the latency of the first few requests, which a client that is waiting anyway does not
//! need. So there is no burst option: N requests in one second, then the (N + 1)-th a second
//! after the first.
//!
//! # Headroom
//!
//! The limiter spaces *releases*; Rampnow counts *arrivals*, and the network between them
//! does not keep the spacing exactly (a new connection's handshake delays one request more
//! than the next one, sent on a warm connection). With exactly `1 s / N` between releases,
//! a jitter of one millisecond can put `N + 1` arrivals in one second. So each second is
//! stretched by a [headroom](RateLimitLayer::headroom), 20 ms by default: the spacing is
//! `(1 s + 20 ms) / N` (51 ms at 20 a second, 2 % of the throughput). Raise it for a client
//! far from Rampnow with a jittery path; set it to zero to space by exactly `1 s / N`.
//!
//! # Not a limit: zero
//!
//! `per_second(0)` is taken as `per_second(1)`, the slowest rate there is. A limit of zero
//! requests would hold every request forever, and reading it as "no limit" would do the
//! opposite of what was asked; one a second is safe for Rampnow and visibly slow.
//!
//! # Waiting, and the poll_ready/call contract
//!
//! The service is always ready: waiting for a turn happens in the response future, and only
//! then does the future wait for the inner service to be ready (a clone of it,
//! [`ServiceExt::ready`](tower::ServiceExt::ready)) and call it. So a request waiting its turn
//! holds nothing of the inner service (no concurrency permit, no buffer slot) while it waits.
//! A future dropped while it waits leaves nothing behind: the local limiter only records a
//! request when it admits it.
//!
//! Waiting requests stand in one line per limiter, first come, first served: only the request
//! at its head asks the limiter and sleeps until its turn, so a turn wakes one request, not
//! every waiter, and a waiting request is never overtaken by newer ones.
//!
//! The local limiter waits with tokio's timer: call the service inside a Tokio runtime with
//! the time driver (`#[tokio::main]`, or a builder with `enable_time`/`enable_all`). Outside
//! one, a request that has to wait fails with a [`LimitError`] saying so (one that does not
//! have to wait goes through).
#![cfg_attr(
    feature = "redis",
    doc = r#"
# Across processes and machines: Redis

Rampnow's limit is per IP address, shared by every worker behind it. With the `redis` feature,
[`RateLimitLayer::redis`] keeps one limit in Redis for all of them; see its documentation for
how (one atomic script, Redis's own clock, one round trip per request) and what happens when
Redis is down (the request fails, nothing is sent)."#
)]

mod future;
mod local;
#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{BoxError, Layer, Service};

use crate::Environment;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::DEFAULT_REDIS_TIMEOUT;
pub use future::ResponseFuture;

/// The default [headroom](RateLimitLayer::headroom): 20 ms added to each second.
pub const DEFAULT_HEADROOM: Duration = Duration::from_millis(20);

/// The most headroom taken: a second (it would otherwise be a lower rate in disguise).
const MAX_HEADROOM: Duration = Duration::from_secs(1);

/// The shared limiter of a layer and all its services.
#[derive(Clone, Debug)]
pub(crate) enum Limiter {
    Local(Arc<local::Local>),
    #[cfg(feature = "redis")]
    Redis(Arc<redis::RedisLimiter>),
}

impl Limiter {
    /// The line requests wait in, one semaphore permit for the whole limiter: only the request
    /// at its head asks the limiter and sleeps until its turn; the others wait for the permit,
    /// in the order they came (tokio's semaphore is fair). So requests are released first come
    /// first served, a request cannot be overtaken for ever by newer ones, and each turn wakes
    /// one waiter instead of all of them. A request that gives up leaves the line.
    pub(crate) fn queue(&self) -> &Arc<tokio::sync::Semaphore> {
        match self {
            Limiter::Local(local) => &local.queue,
            #[cfg(feature = "redis")]
            Limiter::Redis(redis) => &redis.queue,
        }
    }
}

/// A [tower] layer that holds each request until the rate limit admits it: one request every
/// `(1 s + headroom) / N`, shared by every service the layer builds and every clone of them.
/// See [the module documentation](self) for where it goes and why there is no burst.
///
/// Cloning the layer shares the limit too; build a second layer for a second, independent
/// limit.
///
/// [tower]: https://docs.rs/tower
#[derive(Clone)]
#[must_use]
pub struct RateLimitLayer {
    per_second: u32,
    headroom: Duration,
    limiter: Limiter,
}

impl RateLimitLayer {
    /// At most `n` requests a second, counted in this process; `0` is taken as `1` (see
    /// [the module documentation](self#not-a-limit-zero)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use rampnow_auth::limit::RateLimitLayer;
    ///
    /// let layer = RateLimitLayer::per_second(20);
    /// assert_eq!(layer.period(), Duration::from_millis(51));
    /// assert_eq!(RateLimitLayer::per_second(0).requests_per_second(), 1);
    /// ```
    pub fn per_second(n: u32) -> RateLimitLayer {
        let per_second = n.max(1);
        let headroom = DEFAULT_HEADROOM;
        RateLimitLayer {
            per_second,
            headroom,
            limiter: Limiter::Local(Arc::new(local::Local::new(period_for(
                per_second, headroom,
            )))),
        }
    }

    /// The limit Rampnow documents for `env` ([`Environment::requests_per_second`]), counted
    /// in this process.
    ///
    /// ```
    /// use rampnow_auth::limit::RateLimitLayer;
    /// use rampnow_auth::Environment;
    ///
    /// let layer = RateLimitLayer::for_environment(Environment::Staging);
    /// assert_eq!(layer.requests_per_second(), 15);
    /// ```
    pub fn for_environment(env: Environment) -> RateLimitLayer {
        RateLimitLayer::per_second(env.requests_per_second())
    }

    /// Stretches each second by `headroom` (default [`DEFAULT_HEADROOM`], at most a second),
    /// so that network jitter between release and arrival does not put one request too many
    /// in a second at the server (see [the module documentation](self#headroom)).
    ///
    /// This starts a new limiter: call it before cloning the layer or building services.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rampnow_auth::limit::RateLimitLayer;
    ///
    /// let exact = RateLimitLayer::per_second(20).headroom(Duration::ZERO);
    /// assert_eq!(exact.period(), Duration::from_millis(50));
    /// ```
    pub fn headroom(mut self, headroom: Duration) -> RateLimitLayer {
        self.headroom = headroom.min(MAX_HEADROOM);
        let period = self.period();
        self.limiter = match self.limiter {
            Limiter::Local(_) => Limiter::Local(Arc::new(local::Local::new(period))),
            #[cfg(feature = "redis")]
            Limiter::Redis(redis) => {
                Limiter::Redis(Arc::new(redis.with_timing(period, self.headroom)))
            }
        };
        self
    }

    /// The limit, in requests a second.
    #[must_use]
    pub fn requests_per_second(&self) -> u32 {
        self.per_second
    }

    /// The time between two releases: `(1 s + headroom) / N`.
    #[must_use]
    pub fn period(&self) -> Duration {
        period_for(self.per_second, self.headroom)
    }
}

/// `(1 s + headroom) / n`, at least a nanosecond (governor refuses a zero period, which would
/// also mean no limit at all).
fn period_for(n: u32, headroom: Duration) -> Duration {
    let window = Duration::from_secs(1).saturating_add(headroom);
    (window / n.max(1)).max(Duration::from_nanos(1))
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match &self.limiter {
            Limiter::Local(_) => "local",
            #[cfg(feature = "redis")]
            Limiter::Redis(_) => "redis",
        };
        f.debug_struct("RateLimitLayer")
            .field("per_second", &self.per_second)
            .field("headroom", &self.headroom)
            .field("backend", &backend)
            .finish()
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] builds: every clone shares the layer's limiter. See
/// [the module documentation](self).
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Limiter,
}

impl<S> RateLimit<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, dropping the limiter's handle.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish()
    }
}

impl<S, Req> Service<Req> for RateLimit<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    /// Always ready: the wait for a turn, and then for the inner service, happens in the
    /// response future (see [the module documentation](self#waiting-and-the-poll_readycall-contract)).
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> ResponseFuture<S, Req> {
        // A clone, made ready in the future once the request is admitted: this service's own
        // `inner` was never polled ready, so it is not reserved and stays here.
        ResponseFuture::new(self.limiter.clone(), self.inner.clone(), request)
    }
}

/// Why the rate limiter could not admit a request. Nothing was sent: retrying is safe for
/// every method.
///
/// The services' error is a [`BoxError`]; downcast it to tell this error from the inner
/// service's:
///
/// ```
/// # fn handle(err: tower::BoxError) {
/// if let Some(limit) = err.downcast_ref::<rampnow_auth::limit::LimitError>() {
///     eprintln!("not sent: {limit}");
/// }
/// # }
/// ```
pub struct LimitError {
    kind: LimitErrorKind,
    source: Option<BoxError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LimitErrorKind {
    /// No Tokio timer to wait with.
    NoTimer,
    /// Redis did not answer in time.
    #[cfg(feature = "redis")]
    RedisTimeout(Duration),
    /// Redis answered with an error, or the connection failed.
    #[cfg(feature = "redis")]
    Redis,
    /// Redis's replies came later than the headroom, until the timeout: (lag, headroom).
    #[cfg(feature = "redis")]
    RedisLate(Duration, Duration),
}

impl LimitError {
    pub(crate) fn no_timer() -> LimitError {
        LimitError {
            kind: LimitErrorKind::NoTimer,
            source: None,
        }
    }

    #[cfg(feature = "redis")]
    pub(crate) fn redis_timeout(timeout: Duration) -> LimitError {
        LimitError {
            kind: LimitErrorKind::RedisTimeout(timeout),
            source: None,
        }
    }

    #[cfg(feature = "redis")]
    pub(crate) fn redis_late(lag: Duration, headroom: Duration) -> LimitError {
        LimitError {
            kind: LimitErrorKind::RedisLate(lag, headroom),
            source: None,
        }
    }

    #[cfg(feature = "redis")]
    pub(crate) fn redis(source: ::redis::RedisError) -> LimitError {
        LimitError {
            kind: LimitErrorKind::Redis,
            source: Some(Box::new(source)),
        }
    }

    /// Whether the shared store (Redis) could not be reached or did not answer in time.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        !matches!(self.kind, LimitErrorKind::NoTimer)
    }
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            LimitErrorKind::NoTimer => f.write_str(
                "the rate limiter has to wait for the request's turn but there is no Tokio timer: \
                 call the service inside a Tokio runtime built with the time driver \
                 (enable_time or enable_all); the request was not sent",
            ),
            #[cfg(feature = "redis")]
            LimitErrorKind::RedisTimeout(timeout) => write!(
                f,
                "the shared rate limit could not be read: Redis did not answer within {timeout:?}; \
                 the request was not sent (safe to retry). Check that Redis is up and reachable, \
                 or raise the limiter's redis_timeout if Redis is slow"
            ),
            #[cfg(feature = "redis")]
            LimitErrorKind::RedisLate(lag, headroom) => write!(
                f,
                "the shared rate limit could not be used: Redis's reply took {lag:?}, more than \
                 the limiter's headroom of {headroom:?} (a request released that late could \
                 exceed the limit); the request was not sent (safe to retry). Raise the \
                 limiter's headroom above Redis's round trip, or use a Redis closer to the \
                 client"
            ),
            #[cfg(feature = "redis")]
            LimitErrorKind::Redis => f.write_str(
                "the shared rate limit could not be read: Redis failed (see the source error); \
                 the request was not sent (safe to retry). Check that Redis is up and reachable \
                 and that the limit's key holds nothing else",
            ),
        }
    }
}

impl fmt::Debug for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for LimitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};
    use tower::{service_fn, ServiceExt};

    #[test]
    fn periods() {
        assert_eq!(period_for(20, Duration::ZERO), Duration::from_millis(50));
        assert_eq!(period_for(20, DEFAULT_HEADROOM), Duration::from_millis(51));
        assert_eq!(period_for(0, Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            period_for(u32::MAX, Duration::ZERO),
            Duration::from_nanos(1)
        );
        assert_eq!(
            RateLimitLayer::per_second(1)
                .headroom(Duration::MAX)
                .period(),
            Duration::from_secs(2),
            "headroom is capped at a second"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn waits_instead_of_failing_and_clones_share() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let service = RateLimitLayer::per_second(10)
            .headroom(Duration::ZERO)
            .layer(service_fn(move |()| {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Infallible>(()) }
            }));
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let service = service.clone();
            tasks.push(tokio::spawn(async move {
                service.oneshot(()).await.unwrap();
                tokio::time::Instant::now() - start
            }));
        }
        let mut done = Vec::new();
        for task in tasks {
            done.push(task.await.unwrap());
        }
        done.sort();
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        for (i, at) in done.iter().enumerate() {
            assert!(
                *at >= Duration::from_millis(100) * i as u32,
                "request {i} released at {at:?}"
            );
        }
    }

    /// First come, first served: twenty requests that join the line one after the other are
    /// released in that order (overtaking is the next test's).
    #[tokio::test(start_paused = true)]
    async fn requests_are_released_in_the_order_they_came() {
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = order.clone();
        let service = RateLimitLayer::per_second(10)
            .headroom(Duration::ZERO)
            .layer(service_fn(move |n: usize| {
                seen.lock().unwrap().push(n);
                async { Ok::<_, Infallible>(()) }
            }));
        let mut tasks = Vec::new();
        for n in 0..20 {
            tasks.push(tokio::spawn(service.clone().oneshot(n)));
            // Let request n take its place in the line before n + 1 comes.
            tokio::task::yield_now().await;
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    }

    /// A request that comes just as a turn frees up does not take it from one already
    /// waiting: `waiting` waits from t = 0 for the turn at t = 100 ms; `late` is called at
    /// exactly 100 ms, its task woken by a timer set before `waiting`'s, so it runs first.
    /// Asking the limiter directly, `late` would find the turn free and go first.
    #[tokio::test(start_paused = true)]
    async fn a_request_arriving_as_the_turn_frees_does_not_overtake_a_waiting_one() {
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = order.clone();
        let service = RateLimitLayer::per_second(10)
            .headroom(Duration::ZERO)
            .layer(service_fn(move |name: String| {
                seen.lock().unwrap().push(name);
                async { Ok::<_, Infallible>(()) }
            }));
        service.clone().oneshot("first".to_owned()).await.unwrap();
        let turn = tokio::time::Instant::now() + Duration::from_millis(100);
        let late = tokio::spawn({
            let service = service.clone();
            async move {
                tokio::time::sleep_until(turn).await;
                service.oneshot("late".to_owned()).await.unwrap();
            }
        });
        tokio::task::yield_now().await; // `late`'s timer is set first
        let waiting = tokio::spawn(service.clone().oneshot("waiting".to_owned()));
        waiting.await.unwrap().unwrap();
        late.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["first", "waiting", "late"]);
    }

    /// Each turn wakes the one request whose turn it is, not every waiter: 50 requests at
    /// 10 a second are polled a few times each, where waking all waiters at every turn would
    /// poll them 50 + 49 + ... + 1 = 1,275 times.
    #[tokio::test(start_paused = true)]
    async fn a_turn_wakes_one_waiter_not_all() {
        struct CountPolls<F> {
            inner: Pin<Box<F>>,
            polls: Arc<AtomicUsize>,
        }
        impl<F: Future> Future for CountPolls<F> {
            type Output = F::Output;
            fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
                self.polls.fetch_add(1, Ordering::SeqCst);
                self.inner.as_mut().poll(cx)
            }
        }
        let polls = Arc::new(AtomicUsize::new(0));
        let service = RateLimitLayer::per_second(10)
            .headroom(Duration::ZERO)
            .layer(service_fn(|()| async { Ok::<_, Infallible>(()) }));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            tasks.push(tokio::spawn(CountPolls {
                inner: Box::pin(service.clone().oneshot(())),
                polls: polls.clone(),
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let polls = polls.load(Ordering::SeqCst);
        assert!(polls <= 4 * 50, "{polls} polls for 50 requests");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_waiter_takes_no_turn() {
        let service =
            RateLimitLayer::per_second(1).layer(service_fn(|()| async { Ok::<_, Infallible>(()) }));
        service.clone().oneshot(()).await.unwrap();
        // Many waiters give up before their turn.
        for _ in 0..100 {
            let waiting = service.clone().oneshot(());
            assert!(tokio::time::timeout(Duration::from_millis(10), waiting)
                .await
                .is_err());
        }
        // The next request still goes one period after the first, not 100 periods later.
        let start = tokio::time::Instant::now();
        service.clone().oneshot(()).await.unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn outside_a_runtime_a_wait_is_an_error_not_a_panic() {
        let service =
            RateLimitLayer::per_second(1).layer(service_fn(|()| async { Ok::<_, Infallible>(()) }));
        let block_on = |f| {
            // A runtime without the time driver: tokio's timer would panic.
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(f)
        };
        block_on(service.clone().oneshot(())).unwrap();
        let err = block_on(service.clone().oneshot(())).unwrap_err();
        let err = err.downcast_ref::<LimitError>().expect("a LimitError");
        assert!(err.to_string().contains("enable_time"), "{err}");
        assert!(!err.is_unavailable());
    }
}
