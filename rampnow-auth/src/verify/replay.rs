//! Replay memory: [`ReplayStore`], the question the verifier asks of it, and
//! [`MemoryReplayStore`], the bounded in-process answer.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::signer::{Signature, SIGNATURE_LEN};

type Sig = [u8; SIGNATURE_LEN];

/// A memory of accepted signatures, asked once per signature-verified request whether this is
/// the first time it sees the signature.
///
/// The verifier asks only after the signature matched, so a client without the secret cannot
/// put anything in the memory. The store must answer atomically (check and remember in one
/// step: two copies of one request arriving together must not both be [`First`]), and must
/// never forget a signature before `until`: a store that is full answers [`Full`] instead, and
/// the request is refused with `503` and `Retry-After`. Failing closed is the point: a store
/// that forgets (or cannot be reached) and then answers [`First`] lets a replay through.
///
/// [`MemoryReplayStore`] is the in-process store that
/// [`reject_replays`](super::RampnowVerifyLayer::reject_replays) builds; plug in another with
/// [`replay_store`](super::RampnowVerifyLayer::replay_store), for instance one shared by
/// several servers behind a load balancer.
///
/// # Why the answer is a future
///
/// A shared store (Redis: `SET rn:<key>:<signature> 1 NX EXAT <until>`) needs a network round
/// trip, and waiting for it inside a synchronous call would block the executor's thread
/// (every other request on it) for that long. So the answer is a [`ReplayFuture`]: an
/// in-process store answers at once with [`ReplayFuture::ready`] (no allocation, no wait), a
/// networked one with [`ReplayFuture::new`] (one boxed future per accepted request). The
/// method itself stays synchronous and object safe, so stores are plain `Arc<dyn
/// ReplayStore>`s, with no `async-trait` dependency.
///
/// The verifier waits for the answer as long as it takes: a networked store must bound its own
/// wait (connection and response timeouts) and answer [`Full`] when it cannot reach its server
/// in time, so that an unreachable store refuses requests rather than holds them.
///
/// # Example
///
/// A store that counts the questions and forwards them to the memory store:
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use rampnow_auth::verify::{MemoryReplayStore, ReplayFuture, ReplayStore};
/// use rampnow_auth::Signature;
///
/// struct Counted {
///     asked: AtomicUsize,
///     memory: MemoryReplayStore,
/// }
///
/// impl ReplayStore for Counted {
///     fn check(&self, api_key: &str, signature: &Signature, now: u64, until: u64) -> ReplayFuture {
///         self.asked.fetch_add(1, Ordering::Relaxed);
///         self.memory.check(api_key, signature, now, until)
///     }
/// }
///
/// let store = Counted { asked: AtomicUsize::new(0), memory: MemoryReplayStore::new(1_000) };
/// let layer = rampnow_auth::verify::RampnowVerifyLayer::new(
///     rampnow_auth::Credentials::new("ak_live_3f9a1c", "pk_live_secret")?,
/// )
/// .replay_store(store);
/// # Ok::<(), rampnow_auth::Error>(())
/// ```
///
/// [`First`]: ReplayCheck::First
/// [`Full`]: ReplayCheck::Full
pub trait ReplayStore: Send + Sync + 'static {
    /// Is this the first time `signature` is seen for `api_key`? If so, keep it until the Unix
    /// second `until` (inclusive) and answer [`ReplayCheck::First`]; if it is kept already,
    /// answer [`ReplayCheck::Replayed`]; if there is no room to keep it, answer
    /// [`ReplayCheck::Full`] and keep nothing.
    ///
    /// `now` is the verifier's clock in Unix seconds (its [`Clock`](crate::Clock), which tests
    /// may fix), read after the body has arrived; a signature kept until a second before `now`
    /// may be forgotten. `until` is never before `now` when the verifier asks; a store asked
    /// with `until < now` must answer [`ReplayCheck::Replayed`], since a signature that old
    /// may have been forgotten already. A networked store that expires its keys by its own
    /// clock should keep them a few seconds past `until`, for the skew between the clocks.
    fn check(&self, api_key: &str, signature: &Signature, now: u64, until: u64) -> ReplayFuture;
}

impl<T: ReplayStore + ?Sized> ReplayStore for Arc<T> {
    fn check(&self, api_key: &str, signature: &Signature, now: u64, until: u64) -> ReplayFuture {
        (**self).check(api_key, signature, now, until)
    }
}

/// A [`ReplayStore`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReplayCheck {
    /// Not seen before; now remembered. The request goes on.
    First,
    /// Seen before and still remembered: a replay, refused with `401` (`replayed`).
    Replayed,
    /// No room to remember it, so it cannot be accepted safely: refused with `503`
    /// (`replay_memory_full`) and a `Retry-After` of `retry_after` (rounded up to whole
    /// seconds, at least one).
    Full {
        /// How long until room frees up (the oldest remembered signature expires).
        retry_after: Duration,
    },
    /// The store could not be asked (a shared store that is down, or did not answer in
    /// time), so the request cannot be checked for replays: refused with `503`
    /// (`replay_store_unavailable`) and a `Retry-After` of `retry_after` (whole seconds, at
    /// least one).
    Unavailable {
        /// When to try again.
        retry_after: Duration,
    },
}

/// The answer of [`ReplayStore::check`]: either ready at once, or a boxed future for a store
/// that has to wait (a network round trip).
///
/// # Example
///
/// ```
/// use rampnow_auth::verify::{ReplayCheck, ReplayFuture};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert_eq!(ReplayFuture::ready(ReplayCheck::First).await, ReplayCheck::First);
/// assert_eq!(ReplayFuture::new(async { ReplayCheck::Replayed }).await, ReplayCheck::Replayed);
/// # });
/// ```
#[must_use = "a ReplayFuture does nothing unless awaited or polled"]
pub struct ReplayFuture {
    state: ReplayState,
}

enum ReplayState {
    Ready(Option<ReplayCheck>),
    Waiting(Pin<Box<dyn Future<Output = ReplayCheck> + Send>>),
}

impl ReplayFuture {
    /// An answer known at once (an in-process store): no allocation.
    pub fn ready(check: ReplayCheck) -> ReplayFuture {
        ReplayFuture {
            state: ReplayState::Ready(Some(check)),
        }
    }

    /// An answer still to come (a networked store), boxed.
    pub fn new(future: impl Future<Output = ReplayCheck> + Send + 'static) -> ReplayFuture {
        ReplayFuture {
            state: ReplayState::Waiting(Box::pin(future)),
        }
    }
}

impl From<ReplayCheck> for ReplayFuture {
    fn from(check: ReplayCheck) -> ReplayFuture {
        ReplayFuture::ready(check)
    }
}

impl Future for ReplayFuture {
    type Output = ReplayCheck;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ReplayCheck> {
        match &mut self.get_mut().state {
            ReplayState::Ready(check) => Poll::Ready(
                check
                    .take()
                    .expect("rampnow_auth::verify::ReplayFuture polled after completion"),
            ),
            ReplayState::Waiting(future) => future.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for ReplayFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            ReplayState::Ready(check) => f.debug_tuple("ReplayFuture::Ready").field(check).finish(),
            ReplayState::Waiting(_) => f.write_str("ReplayFuture::Waiting"),
        }
    }
}

/// The in-process [`ReplayStore`]: remembers each accepted signature until its timestamp
/// leaves the tolerance window, holding at most `capacity` in all and at most a per-key share
/// for any one API key. When either is reached it answers [`ReplayCheck::Full`] (the request
/// gets `503` with `Retry-After`) and never forgets a live signature to make room.
///
/// # Sizing
///
/// A signature stays remembered until its timestamp plus the tolerance has passed. Clients
/// sign when they send, so usually that is the tolerance plus a second; a client whose clock
/// runs ahead by the whole tolerance makes it at most **2 × tolerance + 1 s** (121 s with the
/// default 60 s tolerance). Size each key's share for the worst case, at the busiest key's
/// accepted request rate: `share ≥ rate × (2 × tolerance + 1 s)`.
///
/// Worked example: with a 60 s tolerance a partner key sending up to 50 requests a second needs
/// a share of 50 × 121 = 6,050 signatures. With the default share of half the capacity, that
/// is `MemoryReplayStore::new(12_100)`, about 1.8 MB at worst (some 150 bytes a signature).
///
/// # The per-key share
///
/// By default one key may hold at most half the capacity (rounded down, at least one), so no
/// single key — a buggy client in a loop, a leaked key — can fill the memory and get every
/// other key's requests refused: the other half stays free for them. With more keys that may
/// all be busy at once, give each a smaller share with [`per_key`](Self::per_key) (for `n`
/// such keys, `capacity / n`); with a single key, give it the whole capacity.
///
/// The per-key bookkeeping is bounded too: a key appears in it only while it has signatures
/// remembered, so there are never more keys than `capacity`.
///
/// # Example
///
/// ```
/// use rampnow_auth::verify::{MemoryReplayStore, ReplayCheck, ReplayStore};
/// use rampnow_auth::Signature;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryReplayStore::new(4); // 2 per key
/// let signature = |n: u8| Signature::from_hex(&format!("{n:02x}").repeat(32)).unwrap();
/// let (now, until) = (1_000, 1_060);
///
/// assert_eq!(store.check("ak_a", &signature(1), now, until).await, ReplayCheck::First);
/// assert_eq!(store.check("ak_a", &signature(1), now, until).await, ReplayCheck::Replayed);
/// assert_eq!(store.check("ak_a", &signature(2), now, until).await, ReplayCheck::First);
/// // Key A's share is full: it must wait until its oldest signature expires (after 1_060)...
/// assert!(matches!(
///     store.check("ak_a", &signature(3), now, until).await,
///     ReplayCheck::Full { retry_after } if retry_after.as_secs() == 61
/// ));
/// // ...while key B still has room.
/// assert_eq!(store.check("ak_b", &signature(3), now, until).await, ReplayCheck::First);
/// assert_eq!(store.len(), 3);
/// # });
/// ```
pub struct MemoryReplayStore {
    capacity: usize,
    per_key: usize,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Per API key: the signatures it has remembered, and their expiries for its oldest.
    keys: HashMap<Arc<str>, KeySeen>,
    /// Every remembered signature by expiry, soonest first, to forget them in time.
    expiries: BinaryHeap<Reverse<(u64, Arc<str>, Sig)>>,
}

#[derive(Default)]
struct KeySeen {
    signatures: HashSet<Sig>,
    /// This key's expiries, soonest first. Entries leave in global expiry order, so the soonest
    /// here always belongs to the next of this key's signatures to be forgotten.
    expiries: BinaryHeap<Reverse<u64>>,
}

impl Seen {
    /// Forgets every signature that expired before `now`.
    fn forget_expired(&mut self, now: u64) {
        while let Some(Reverse((expires, _, _))) = self.expiries.peek() {
            if *expires >= now {
                break;
            }
            let Some(Reverse((_, key, sig))) = self.expiries.pop() else {
                break;
            };
            let emptied = match self.keys.get_mut(&key) {
                Some(seen) => {
                    seen.signatures.remove(&sig);
                    seen.expiries.pop();
                    seen.signatures.is_empty()
                }
                None => false,
            };
            if emptied {
                self.keys.remove(&key);
            }
        }
    }

    fn len(&self) -> usize {
        self.expiries.len()
    }
}

/// Seconds until a signature kept until `expires` is forgotten (after the second `expires`),
/// at least one.
fn wait_for(expires: u64, now: u64) -> Duration {
    Duration::from_secs(expires.saturating_add(1).saturating_sub(now).max(1))
}

impl MemoryReplayStore {
    /// A store for at most `capacity` signatures (at least one), any one key holding at most
    /// half of them (at least one); see [the sizing notes](Self#sizing).
    ///
    /// Memory: some 150 bytes a remembered signature, taken as they come (nothing is reserved
    /// up front).
    #[must_use]
    pub fn new(capacity: usize) -> MemoryReplayStore {
        let capacity = capacity.max(1);
        MemoryReplayStore {
            capacity,
            per_key: (capacity / 2).max(1),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// How many signatures one API key may hold at most (default: half the capacity), between
    /// one and the capacity.
    #[must_use]
    pub fn per_key(mut self, share: usize) -> MemoryReplayStore {
        self.per_key = share.clamp(1, self.capacity);
        self
    }

    /// The most signatures held in all.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The most signatures held for one API key.
    #[must_use]
    pub fn per_key_capacity(&self) -> usize {
        self.per_key
    }

    /// How many signatures are held now (expired ones included until the next check).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no signature is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        // A panic elsewhere while holding the lock leaves the maps consistent (every operation
        // below completes or does nothing before it could panic), so a poisoned lock is still
        // usable.
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check_now(&self, api_key: &str, signature: &Signature, now: u64, until: u64) -> ReplayCheck {
        let Ok(sig) = Sig::try_from(signature.as_bytes()) else {
            // Not reached: a signature is always SIGNATURE_LEN bytes. Refuse rather than accept.
            return ReplayCheck::Replayed;
        };
        let mut seen = self.lock();
        seen.forget_expired(now);
        let held = match seen.keys.get(api_key) {
            Some(key) if key.signatures.contains(&sig) => return ReplayCheck::Replayed,
            Some(key) => key.signatures.len(),
            None => 0,
        };
        if until < now {
            // Already out of the window, so a copy of it may have been forgotten: it cannot be
            // told apart from a replay. Refuse (the verifier checks the time again after the
            // body and never asks this; a store must fail closed if it is asked anyway).
            return ReplayCheck::Replayed;
        }
        let mut wait = None;
        if held >= self.per_key {
            let oldest = seen
                .keys
                .get(api_key)
                .and_then(|key| key.expiries.peek())
                .map_or(now, |Reverse(e)| *e);
            wait = Some(wait_for(oldest, now));
        }
        if seen.len() >= self.capacity {
            let oldest = seen.expiries.peek().map_or(now, |Reverse((e, _, _))| *e);
            wait = wait.max(Some(wait_for(oldest, now)));
        }
        if let Some(retry_after) = wait {
            return ReplayCheck::Full { retry_after };
        }
        let Seen { keys, expiries } = &mut *seen;
        let key = match keys.get_key_value(api_key) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(api_key),
        };
        let entry = keys.entry(Arc::clone(&key)).or_default();
        entry.signatures.insert(sig);
        entry.expiries.push(Reverse(until));
        expiries.push(Reverse((until, key, sig)));
        ReplayCheck::First
    }
}

impl ReplayStore for MemoryReplayStore {
    fn check(&self, api_key: &str, signature: &Signature, now: u64, until: u64) -> ReplayFuture {
        ReplayFuture::ready(self.check_now(api_key, signature, now, until))
    }
}

impl fmt::Debug for MemoryReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Counts only: the API keys and signatures stay out of logs.
        let seen = self.lock();
        f.debug_struct("MemoryReplayStore")
            .field("capacity", &self.capacity)
            .field("per_key", &self.per_key)
            .field("len", &seen.len())
            .field("keys", &seen.keys.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(n: u8) -> Signature {
        Signature::from_hex(&format!("{n:02x}").repeat(SIGNATURE_LEN)).unwrap()
    }

    fn check(store: &MemoryReplayStore, key: &str, n: u8, until: u64, now: u64) -> ReplayCheck {
        store.check_now(key, &sig(n), now, until)
    }

    #[test]
    fn a_repeat_within_the_window_is_a_replay() {
        let store = MemoryReplayStore::new(10);
        assert_eq!(check(&store, "a", 1, 160, 100), ReplayCheck::First);
        assert_eq!(check(&store, "a", 1, 160, 150), ReplayCheck::Replayed);
        assert_eq!(check(&store, "a", 1, 160, 160), ReplayCheck::Replayed);
        assert_eq!(check(&store, "a", 2, 160, 150), ReplayCheck::First);
    }

    #[test]
    fn the_same_signature_under_another_key_is_not_a_replay() {
        let store = MemoryReplayStore::new(10);
        assert_eq!(check(&store, "a", 1, 160, 100), ReplayCheck::First);
        assert_eq!(check(&store, "b", 1, 160, 100), ReplayCheck::First);
    }

    #[test]
    fn expired_signatures_are_forgotten_and_free_their_room() {
        let store = MemoryReplayStore::new(10);
        assert_eq!(check(&store, "a", 1, 160, 100), ReplayCheck::First);
        assert_eq!(check(&store, "b", 2, 300, 161), ReplayCheck::First);
        assert_eq!(store.len(), 1, "sig 1 expired at 160");
        assert_eq!(
            store.lock().keys.len(),
            1,
            "key a left with its last signature"
        );
    }

    #[test]
    fn expiry_follows_the_timestamps_not_the_arrival_order() {
        let store = MemoryReplayStore::new(10).per_key(10);
        // A late expiry first, then an early one: the early one is forgotten first.
        assert_eq!(check(&store, "a", 1, 500, 100), ReplayCheck::First);
        assert_eq!(check(&store, "a", 2, 150, 100), ReplayCheck::First);
        assert_eq!(check(&store, "a", 3, 500, 151), ReplayCheck::First);
        assert_eq!(store.len(), 2);
        assert_eq!(check(&store, "a", 1, 500, 151), ReplayCheck::Replayed);
    }

    #[test]
    fn a_full_store_refuses_instead_of_forgetting() {
        // The old memory forgot the oldest signature when full, and then accepted its replay.
        let store = MemoryReplayStore::new(3).per_key(3);
        for n in 0..3 {
            assert_eq!(check(&store, "a", n, 1_000, 10), ReplayCheck::First);
        }
        for n in 3..100 {
            assert_eq!(
                check(&store, "a", n, 1_000, 10),
                ReplayCheck::Full {
                    retry_after: Duration::from_secs(991)
                }
            );
            assert_eq!(store.len(), 3);
        }
        for n in 0..3 {
            assert_eq!(check(&store, "a", n, 1_000, 10), ReplayCheck::Replayed);
        }
        // Room frees up when the oldest expires, as Retry-After said.
        assert_eq!(check(&store, "a", 50, 2_000, 1_001), ReplayCheck::First);
    }

    #[test]
    fn retry_after_is_at_least_a_second() {
        let store = MemoryReplayStore::new(1);
        assert_eq!(check(&store, "a", 1, 100, 100), ReplayCheck::First);
        assert_eq!(
            check(&store, "a", 2, 100, 100),
            ReplayCheck::Full {
                retry_after: Duration::from_secs(1)
            }
        );
    }

    #[test]
    fn one_key_filling_its_share_leaves_room_for_the_others() {
        let store = MemoryReplayStore::new(8);
        assert_eq!(store.per_key_capacity(), 4);
        for n in 0..4 {
            assert_eq!(check(&store, "a", n, 1_000, 10), ReplayCheck::First);
        }
        assert!(matches!(
            check(&store, "a", 4, 1_000, 10),
            ReplayCheck::Full { .. }
        ));
        for n in 10..14 {
            assert_eq!(check(&store, "b", n, 1_000, 10), ReplayCheck::First);
        }
        // Now the store is full as a whole: a third key must wait too, and nothing was
        // forgotten.
        assert!(matches!(
            check(&store, "c", 20, 1_000, 10),
            ReplayCheck::Full { .. }
        ));
        assert_eq!(check(&store, "a", 0, 1_000, 10), ReplayCheck::Replayed);
        assert_eq!(check(&store, "b", 10, 1_000, 10), ReplayCheck::Replayed);
    }

    #[test]
    fn the_per_key_share_is_clamped() {
        assert_eq!(MemoryReplayStore::new(0).capacity(), 1);
        assert_eq!(MemoryReplayStore::new(0).per_key_capacity(), 1);
        assert_eq!(MemoryReplayStore::new(1).per_key_capacity(), 1);
        assert_eq!(MemoryReplayStore::new(10).per_key(0).per_key_capacity(), 1);
        assert_eq!(
            MemoryReplayStore::new(10).per_key(50).per_key_capacity(),
            10
        );
    }

    #[test]
    fn capacity_zero_still_remembers_one() {
        let store = MemoryReplayStore::new(0);
        assert_eq!(check(&store, "a", 1, 1_000, 10), ReplayCheck::First);
        assert_eq!(check(&store, "a", 1, 1_000, 10), ReplayCheck::Replayed);
    }

    #[test]
    fn debug_shows_counts_not_keys() {
        let store = MemoryReplayStore::new(10);
        check(&store, "ak_live_secretish", 1, 1_000, 10);
        let debug = format!("{store:?}");
        assert!(!debug.contains("ak_live"), "{debug}");
        assert!(debug.contains("len: 1"), "{debug}");
    }
}
