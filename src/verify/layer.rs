use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::replay::ReplayCache;
use super::{RampnowVerify, VerifyConfig};
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
    /// a 10 MiB body limit and no replay protection.
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

    /// Refuses a signature seen before, while its timestamp is within the tolerance.
    ///
    /// Remembers at most `capacity` signatures (at least one), forgetting the oldest first when
    /// full; size it above the number of requests the server accepts in twice the tolerance,
    /// or a replay of a forgotten signature gets through. Memory: about 100 bytes a
    /// signature. Shared by every clone of this layer and every service it builds.
    pub fn reject_replays(mut self, capacity: usize) -> RampnowVerifyLayer {
        Arc::make_mut(&mut self.config).replay = Some(Arc::new(ReplayCache::new(capacity)));
        self
    }

    /// How many signatures the replay memory holds now, or `None` without replay protection.
    #[must_use]
    pub fn remembered_signatures(&self) -> Option<usize> {
        self.config.replay.as_ref().map(|r| r.len())
    }
}

impl<S> Layer<S> for RampnowVerifyLayer {
    type Service = RampnowVerify<S>;

    fn layer(&self, inner: S) -> RampnowVerify<S> {
        RampnowVerify::from_config(inner, self.config.clone())
    }
}
