//! The rate limit kept in Redis: one GCRA for every process that names the same key.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::timer::{bounded, Bounded};

use super::{LimitError, Limiter, RateLimitLayer, DEFAULT_HEADROOM};

/// How long a Redis call may take before the limiter (or
/// [`RedisReplayStore`](crate::verify::RedisReplayStore)) gives up on it: 500 ms.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// How far ahead slots are handed out: a second. A caller further back in the line is told
/// how long to wait before asking again, instead of a slot.
const HORIZON: Duration = Duration::from_secs(1);

/// The prefix of every limit's key.
const KEY_PREFIX: &str = "rampnow-auth:limit:";

/// GCRA with reservation, atomically, on Redis's clock. `KEYS[1]` holds the theoretical
/// arrival time (TAT) of the next free slot, in microseconds of Redis's `TIME`. A caller gets
/// the slot at `max(TAT, now)` if that is within the horizon, and TAT moves one period on:
/// the answer is the wait until the slot (`>= 0`). Further back, nothing is reserved and the
/// answer is `-(how long until the slot comes within the horizon)`, at least one microsecond.
/// The key expires a second after its TAT, when it no longer says anything.
///
/// `redis.replicate_commands()` lets Redis before 5 write after reading `TIME` (from 5 on it
/// is the default, and from 7 the function is a no-op).
const SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[1])
local horizon = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local wait = tat - now
if wait > horizon then
  return -math.max(wait - horizon, 1)
end
local next_tat = tat + period
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
return wait
";

/// The limiter's shared state: a connection, the key, and the script.
pub(crate) struct RedisLimiter {
    conn: ConnectionManager,
    key: Arc<str>,
    period: Duration,
    /// The latest a reply may arrive and its slot still be used: the headroom (zero: any).
    max_lag: Duration,
    timeout: Duration,
    script: Arc<Script>,
    /// The line of this process's waiting requests (see
    /// [`Limiter::queue`](super::Limiter::queue)).
    pub(crate) queue: Arc<Semaphore>,
}

/// What Redis answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// A slot is reserved this long from now: wait, then go.
    Reserved(Duration),
    /// Too far back in the line: ask again after this long.
    NotYet(Duration),
}

pub(crate) type ReserveFuture = Pin<Box<dyn Future<Output = Result<Reply, LimitError>> + Send>>;

impl RedisLimiter {
    pub(crate) fn with_timing(&self, period: Duration, headroom: Duration) -> RedisLimiter {
        RedisLimiter {
            period,
            max_lag: headroom,
            ..self.clone_config()
        }
    }

    fn with_timeout(&self, timeout: Duration) -> RedisLimiter {
        RedisLimiter {
            timeout,
            ..self.clone_config()
        }
    }

    fn clone_config(&self) -> RedisLimiter {
        RedisLimiter {
            conn: self.conn.clone(),
            key: Arc::clone(&self.key),
            period: self.period,
            max_lag: self.max_lag,
            timeout: self.timeout,
            script: Arc::clone(&self.script),
            queue: Arc::clone(&self.queue),
        }
    }

    /// Asks Redis for a slot: one script call (EVALSHA; the script is loaded on the first
    /// `NOSCRIPT`), bounded by the timeout.
    ///
    /// The wait Redis answers counts from when the script ran, and the caller can only start
    /// counting when the reply arrives: a reply `lag` late makes the request go up to `lag`
    /// after its slot, next to slots handed out since. The headroom absorbs a lag up to its
    /// own length (`N` slots then span more than a second, lag included); a reply later than
    /// that is not used (its slot is spent, under-using the limit) and Redis is asked again,
    /// until the timeout, when the request fails with a [`LimitError`] naming the lag.
    pub(crate) fn reserve(&self) -> ReserveFuture {
        let mut conn = self.conn.clone();
        let key = Arc::clone(&self.key);
        let script = Arc::clone(&self.script);
        let period = micros(self.period).max(1);
        let horizon = micros(HORIZON);
        let timeout = self.timeout;
        let max_lag = self.max_lag;
        Box::pin(async move {
            // The last late reply's lag in nanoseconds (0: none), kept across the timeout.
            let late = AtomicU64::new(0);
            let ask = async {
                loop {
                    let asked = Instant::now();
                    let mut invocation = script.key(&*key);
                    invocation.arg(period).arg(horizon);
                    let wait = invocation
                        .invoke_async::<i64>(&mut conn)
                        .await
                        .map_err(LimitError::redis)?;
                    if wait < 0 {
                        return Ok(Reply::NotYet(Duration::from_micros(wait.unsigned_abs())));
                    }
                    let lag = asked.elapsed();
                    if max_lag.is_zero() || lag <= max_lag {
                        return Ok(Reply::Reserved(Duration::from_micros(wait.unsigned_abs())));
                    }
                    late.store(
                        u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX),
                        Ordering::Relaxed,
                    );
                }
            };
            match bounded(timeout, ask).await {
                Err(Bounded::NoTimer) => Err(LimitError::no_timer()),
                Err(Bounded::TimedOut) => match late.load(Ordering::Relaxed) {
                    0 => Err(LimitError::redis_timeout(timeout)),
                    lag => Err(LimitError::redis_late(Duration::from_nanos(lag), max_lag)),
                },
                Ok(reply) => reply,
            }
        })
    }
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("key", &self.key)
            .field("period", &self.period)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl RateLimitLayer {
    /// At most `per_second` requests a second (`0` is taken as `1`) across every process and
    /// machine whose limiter names the same `name` on the same Redis: Rampnow's limit is per
    /// IP address, and every worker behind one address shares it.
    ///
    /// The key is `rampnow-auth:limit:<name>`. Give every worker behind one public IP address
    /// the same name and rate (one name per Rampnow environment, for instance `production`),
    /// and the same [headroom](Self::headroom).
    ///
    /// # How
    ///
    /// Each request runs one Lua script on Redis, atomically: GCRA on Redis's clock
    /// (`TIME`, so the clients' clocks do not matter), which *reserves* the request's slot
    /// and answers how long to wait for it. The request sleeps that long and goes, with no
    /// second round trip. Under contention every caller gets its own slot in the order Redis
    /// ran the scripts, and no herd of waiters wakes to race for the same slot (as "check,
    /// sleep, check again" would do): within a process, requests wait in line and only the
    /// one at its head asks Redis, so each process has at most one request reserving or
    /// asking again at a time.
    ///
    /// A reserved slot is spent even if its request is then dropped (a timeout, a cancelled
    /// task): the limit is then under-used, never exceeded. So that a burst of callers that
    /// give up cannot push the line far into the future, slots are handed out at most a
    /// second ahead: a caller further back is told when to ask again, and reserves nothing.
    /// Waiting callers hold nothing in Redis; the key expires a second after the last slot.
    ///
    /// # When Redis is down or slow: the request fails
    ///
    /// Every call to Redis is bounded by [`redis_timeout`](Self::redis_timeout)
    /// ([`DEFAULT_REDIS_TIMEOUT`], 500 ms). If Redis does not answer in time, or answers with
    /// an error, the request fails with a [`LimitError`] (`is_unavailable()`) that says so,
    /// and **nothing is sent**: fail closed. Falling back to a per-process limit would let
    /// `workers × N` requests a second through, exactly when the fleet may be restarting;
    /// Rampnow would answer them with `429`s. The error is safe to retry for every method (a
    /// retry layer outside the limiter can treat it like a failure to connect), and
    /// [`ConnectionManager`] reconnects on its own when Redis is back.
    ///
    /// A slot is only as exact as Redis's reply is quick: the wait Redis answers counts from
    /// when its script ran, but the request can only start counting when the reply arrives,
    /// so a late reply makes the request go late, next to slots given to others since. The
    /// [headroom](Self::headroom) absorbs a lag up to its own length (20 ms by default); a
    /// reply that took longer is not used (its slot is spent) and Redis is asked again, until
    /// the timeout, when the request fails with a [`LimitError`] that names the lag. Keep the
    /// headroom above Redis's round trip; with a headroom of zero, replies are used however
    /// late.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use rampnow_auth::limit::RateLimitLayer;
    /// use rampnow_auth::Environment;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
    /// let conn = redis::aio::ConnectionManager::new(client).await?;
    /// let env = Environment::Production;
    /// let layer = RateLimitLayer::redis(conn, env.name(), env.requests_per_second());
    /// # let _ = layer; Ok(()) }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(conn: ConnectionManager, name: &str, per_second: u32) -> RateLimitLayer {
        let per_second = per_second.max(1);
        let headroom = DEFAULT_HEADROOM;
        let limiter = RedisLimiter {
            conn,
            key: Arc::from(format!("{KEY_PREFIX}{name}")),
            period: super::period_for(per_second, headroom),
            max_lag: headroom,
            timeout: DEFAULT_REDIS_TIMEOUT,
            script: Arc::new(Script::new(SCRIPT)),
            queue: Arc::new(Semaphore::new(1)),
        };
        RateLimitLayer {
            per_second,
            headroom,
            limiter: Limiter::Redis(Arc::new(limiter)),
        }
    }

    /// How long each Redis call may take (default [`DEFAULT_REDIS_TIMEOUT`]) before the
    /// request fails with a [`LimitError`]; see [`redis`](Self::redis). A limiter local to
    /// the process makes no calls, and ignores it.
    ///
    /// This starts a new limiter handle (the limit itself is in Redis, so it is still
    /// shared): call it before building services.
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_timeout(mut self, timeout: Duration) -> RateLimitLayer {
        if let Limiter::Redis(redis) = &self.limiter {
            self.limiter = Limiter::Redis(Arc::new(redis.with_timeout(timeout)));
        }
        self
    }
}
