//! [`RedisReplayStore`]: the replay memory shared by every verifier replica, in Redis.

use std::fmt;
use std::time::Duration;

use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

use super::replay::{ReplayCheck, ReplayFuture, ReplayStore};
use crate::limit::DEFAULT_REDIS_TIMEOUT;
use crate::signer::Signature;

/// The default key prefix.
const DEFAULT_PREFIX: &str = "rampnow-auth:replay:";

/// The longest prefix taken (longer ones are cut), so that every key stays small.
const MAX_PREFIX: usize = 64;

/// Seconds a signature is kept past `until`, for the skew between the verifier's clock and
/// Redis's, which expires the keys.
const SKEW_SECS: u64 = 5;

/// How long a refused request is told to wait (`Retry-After`) when Redis fails.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A [`ReplayStore`] in Redis, shared by every verifier replica that uses the same Redis and
/// prefix: a signature accepted by one replica is refused as a replay by all of them.
///
/// Each check is one `SET <prefix><hash> 1 NX PX <ttl>`: atomic (of two copies arriving at two
/// replicas at once, exactly one is [`First`](ReplayCheck::First)), and remembered until the
/// signature leaves the tolerance window, plus five seconds for the skew between the
/// verifier's clock and Redis's. Redis forgets it then, on its own.
///
/// # What is stored
///
/// The key is the prefix (default `rampnow-auth:replay:`, at most 64 bytes) and the SHA-256
/// of the API key and the signature, in hex: 84 bytes at most whatever a client sends, and
/// neither the API key nor the request. The value is `1`. So Redis holds some 100 bytes per
/// request accepted within the window: size it as the
/// [memory store's sizing notes](super::MemoryReplayStore#sizing) say (the rate of accepted
/// requests × 2 × tolerance + 1 s), and give Redis a `maxmemory` with the `noeviction`
/// policy: a Redis that evicts keys to make room forgets signatures, and lets their replays
/// through; with `noeviction` a full Redis refuses the write, and the verifier refuses the
/// request (below).
///
/// Only requests whose signature matched are checked, so a client without the secret cannot
/// write to Redis.
///
/// # When Redis is down or slow: 503, fail closed
///
/// Each check waits at most [`timeout`](Self::timeout) ([`DEFAULT_REDIS_TIMEOUT`], 500 ms).
/// If Redis does not answer in time, or answers with an error (a full Redis with
/// `noeviction` refusing the write among them), the store answers
/// [`Unavailable`](ReplayCheck::Unavailable): the verifier refuses the request with `503` and
/// `Retry-After: 1` (code `replay_store_unavailable`) instead of accepting a request it cannot
/// check for replays. Clients retry (a `503` is retried for every method); the
/// [`ConnectionManager`] reconnects on its own. With the `tracing` feature, each failure is
/// also a `warn` event.
///
/// # Example
///
/// ```no_run
/// use rampnow_auth::verify::{RampnowVerifyLayer, RedisReplayStore};
/// use rampnow_auth::Credentials;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
/// let conn = redis::aio::ConnectionManager::new(client).await?;
/// let layer = RampnowVerifyLayer::new(Credentials::from_env()?)
///     .replay_store(RedisReplayStore::new(conn));
/// # let _ = layer; Ok(()) }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub struct RedisReplayStore {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl RedisReplayStore {
    /// A store on `conn`, with the default prefix and timeout.
    #[must_use]
    pub fn new(conn: ConnectionManager) -> RedisReplayStore {
        RedisReplayStore {
            conn,
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_REDIS_TIMEOUT,
        }
    }

    /// The prefix of every key (default `rampnow-auth:replay:`; cut to 64 bytes): replicas
    /// that should share their memory use the same one, separate deployments on one Redis
    /// use different ones.
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> RedisReplayStore {
        let mut end = prefix.len().min(MAX_PREFIX);
        while !prefix.is_char_boundary(end) {
            end -= 1;
        }
        self.prefix = prefix[..end].to_owned();
        self
    }

    /// How long one check may wait for Redis (default [`DEFAULT_REDIS_TIMEOUT`]) before the
    /// request is refused with `503`.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> RedisReplayStore {
        self.timeout = timeout;
        self
    }

    fn key(&self, api_key: &str, signature: &Signature) -> String {
        let mut hash = Sha256::new();
        // The key's length first, so that no two (key, signature) pairs hash the same input.
        hash.update((api_key.len() as u64).to_be_bytes());
        hash.update(api_key.as_bytes());
        hash.update(signature.as_bytes());
        let mut key = String::with_capacity(self.prefix.len() + 64);
        key.push_str(&self.prefix);
        key.push_str(&hex::encode(hash.finalize()));
        key
    }
}

impl ReplayStore for RedisReplayStore {
    fn check(&self, api_key: &str, signature: &Signature, now: u64, until: u64) -> ReplayFuture {
        if until < now {
            // Possibly forgotten already: cannot be told from a replay (see the trait).
            return ReplayFuture::ready(ReplayCheck::Replayed);
        }
        let ttl_ms = (until - now)
            .saturating_add(1 + SKEW_SECS)
            .saturating_mul(1_000);
        let key = self.key(api_key, signature);
        let mut conn = self.conn.clone();
        let timeout = self.timeout;
        ReplayFuture::new(async move {
            let mut set = redis::cmd("SET");
            set.arg(&key).arg(1).arg("NX").arg("PX").arg(ttl_ms);
            let answer =
                crate::timer::bounded(timeout, set.query_async::<Option<String>>(&mut conn)).await;
            match answer {
                Ok(Ok(Some(_))) => ReplayCheck::First,
                Ok(Ok(None)) => ReplayCheck::Replayed,
                Ok(Err(_err)) => {
                    #[cfg(feature = "tracing")]
                    tracing::warn!(error = %_err, "replay store: Redis failed; request refused with 503");
                    ReplayCheck::Unavailable {
                        retry_after: RETRY_AFTER,
                    }
                }
                Err(_why) => {
                    #[cfg(feature = "tracing")]
                    tracing::warn!(?timeout, why = ?_why, "replay store: no answer from Redis in time; request refused with 503");
                    ReplayCheck::Unavailable {
                        retry_after: RETRY_AFTER,
                    }
                }
            }
        })
    }
}

impl fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
