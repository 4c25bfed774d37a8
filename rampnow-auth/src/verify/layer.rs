use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::{MemoryReplayStore, RampnowVerify, ReplayStore, VerifyConfig};
use crate::clock::Clock;
use crate::headers::HeaderNames;
use crate::keys::KeyStore;

/// A [`Layer`] that verifies Rampnow signatures on incoming requests; builds
/// [`RampnowVerify`].
///
/// See [the module docs](crate::verify) for what is checked and how refusals look.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use rampnow_auth::verify::RampnowVerifyLayer;
/// use rampnow_auth::Credentials;
///
/// let layer = RampnowVerifyLayer::new(Credentials::new("ak_live_3f9a1c", "pk_live_secret")?)
///     .tolerance(Duration::from_secs(30))
///     .reject_replays(100_000);
/// assert_eq!(layer.remembered_signatures(), Some(0));
/// # Ok::<(), rampnow_auth::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct RampnowVerifyLayer {
    config: Arc<VerifyConfig>,
}

impl RampnowVerifyLayer {
    /// Verifies against the keys in `keys` (one [`Credentials`](crate::Credentials), a map or
    /// list of them, or a closure), with the system clock, both header sets, a 60 s tolerance,
    /// a 10 MiB body limit, a 30 s body read timeout and no replay protection.
    pub fn new(keys: impl KeyStore) -> RampnowVerifyLayer {
        RampnowVerifyLayer {
            config: Arc::new(VerifyConfig::new(Arc::new(keys))),
        }
    }

    /// Takes the server's time from `clock`.
    pub fn with_clock(mut self, clock: impl Clock) -> RampnowVerifyLayer {
        Arc::make_mut(&mut self.config).clock = Arc::new(clock);
        self
    }

    /// Accepts only this header set (by default both [`HeaderNames::RN`] and
    /// [`HeaderNames::X_RAMPNOW`] are accepted; a request must use one set throughout).
    pub fn header_names(mut self, names: HeaderNames) -> RampnowVerifyLayer {
        Arc::make_mut(&mut self.config).names = vec![names];
        self
    }

    /// How far a timestamp may be from the server's clock, either way (default 60 s). Whole
    /// seconds count; a fraction is ignored.
    pub fn tolerance(mut self, tolerance: Duration) -> RampnowVerifyLayer {
        Arc::make_mut(&mut self.config).tolerance = tolerance;
        self
    }

    /// The largest body read, in bytes (default 10 MiB); a larger one is refused with 413.
    pub fn max_body_size(mut self, limit: usize) -> RampnowVerifyLayer {
        Arc::make_mut(&mut self.config).max_body_size = limit;
        self
    }

    /// How long the whole body may take to arrive (default
    /// [`DEFAULT_BODY_READ_TIMEOUT`](super::DEFAULT_BODY_READ_TIMEOUT), 30 s); `None` waits for
    /// it without limit. A body still incomplete at the deadline is refused with `408`
    /// (`body_timeout`, with `Connection: close`), and the inner service is not called.
    ///
    /// The deadline covers the whole body, not each frame: a body trickled a byte at a time is
    /// cut too. It starts the first time the body is not ready, so a body already in memory
    /// (`Full`, [`SignedBody`](crate::SignedBody)) is read without any timer.
    ///
    /// The timer is Tokio's: the verifier must run inside a Tokio runtime with the time driver
    /// (`#[tokio::main]`, or a runtime builder with `enable_time` or `enable_all`). Without one
    /// a body that is not ready at once is refused with `500` (`server_timer`) rather than
    /// read without a limit, and nothing panics (but see below). With `None` no timer is
    /// used, and the verifier runs on any executor. Tokio itself panics when a timer is made
    /// in a runtime without the time driver: the verifier catches that panic, but the panic
    /// hook still prints it, and a build with `panic = "abort"` aborts, so turn the timeout off
    /// (or the time driver on) there.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use rampnow_auth::verify::RampnowVerifyLayer;
    /// use rampnow_auth::Credentials;
    ///
    /// let credentials = Credentials::new("ak_live_3f9a1c", "pk_live_secret")?;
    /// let strict =
    ///     RampnowVerifyLayer::new(credentials.clone()).body_read_timeout(Duration::from_secs(5));
    /// let any_executor = RampnowVerifyLayer::new(credentials).body_read_timeout(None);
    /// # let _ = (strict, any_executor);
    /// # Ok::<(), rampnow_auth::Error>(())
    /// ```
    pub fn body_read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> RampnowVerifyLayer {
        Arc::make_mut(&mut self.config).body_read_timeout = timeout.into();
        self
    }

    /// Refuses a signature seen before, while its timestamp is within the tolerance, with a
    /// [`MemoryReplayStore`] of `capacity` signatures (at least one), any one API key holding
    /// at most half of them.
    ///
    /// The memory never forgets a signature that could still be replayed: when it (or the
    /// key's half) is full, a new request is refused with `503` and `Retry-After` until the
    /// oldest signature expires. Size it for the busiest key, counting each signature live for
    /// up to 2 × tolerance + 1 s: `capacity ≥ 2 × rate × (2 × tolerance + 1 s)`; for 50
    /// requests a second and the default 60 s tolerance, `reject_replays(12_100)` (see
    /// [`MemoryReplayStore`]'s sizing notes, and its [`per_key`](MemoryReplayStore::per_key)
    /// with [`replay_store`](Self::replay_store) for another share). Memory: some 150 bytes a
    /// remembered signature. Shared by every clone of this layer and every service it builds.
    pub fn reject_replays(self, capacity: usize) -> RampnowVerifyLayer {
        self.replay_store(MemoryReplayStore::new(capacity))
    }

    /// Refuses a signature seen before, asking `store` (see [`ReplayStore`]): a
    /// [`MemoryReplayStore`] with its own share per key, a store shared by several servers, or
    /// an `Arc` of either to keep a handle on it. Only requests whose signature verified are
    /// recorded. Shared by every clone of this layer and every service it builds.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rampnow_auth::verify::{MemoryReplayStore, RampnowVerifyLayer};
    /// use rampnow_auth::Credentials;
    ///
    /// // One partner key: give it the whole memory.
    /// let store = Arc::new(MemoryReplayStore::new(10_000).per_key(10_000));
    /// let layer = RampnowVerifyLayer::new(Credentials::new("ak_live_3f9a1c", "pk_live_secret")?)
    ///     .replay_store(Arc::clone(&store));
    /// assert_eq!(layer.remembered_signatures(), Some(0));
    /// assert!(store.is_empty());
    /// # Ok::<(), rampnow_auth::Error>(())
    /// ```
    pub fn replay_store(mut self, store: impl ReplayStore) -> RampnowVerifyLayer {
        let config = Arc::make_mut(&mut self.config);
        // A memory store (or an `Arc` of one) is kept as such too, for its counts.
        let mut slot = Some(store);
        let any: &mut dyn Any = &mut slot;
        let memory = if let Some(memory) = take::<MemoryReplayStore>(any) {
            Some(Arc::new(memory))
        } else {
            take::<Arc<MemoryReplayStore>>(any)
        };
        match (memory, slot) {
            (Some(memory), _) => {
                config.replay = Some(Arc::clone(&memory) as Arc<dyn ReplayStore>);
                config.replay_memory = Some(memory);
            }
            (None, Some(store)) => {
                config.replay = Some(Arc::new(store));
                config.replay_memory = None;
            }
            // Not reached: the slot is emptied only when a memory store was taken.
            (None, None) => {}
        }
        self
    }

    /// How many signatures the replay memory holds now, or `None` without replay protection or
    /// with a store other than [`MemoryReplayStore`] (ask that store).
    #[must_use]
    pub fn remembered_signatures(&self) -> Option<usize> {
        self.config.replay_memory.as_ref().map(|r| r.len())
    }
}

impl<S> Layer<S> for RampnowVerifyLayer {
    type Service = RampnowVerify<S>;

    fn layer(&self, inner: S) -> RampnowVerify<S> {
        RampnowVerify::from_config(inner, self.config.clone())
    }
}

fn take<T: 'static>(slot: &mut dyn Any) -> Option<T> {
    slot.downcast_mut::<Option<T>>().and_then(Option::take)
}
