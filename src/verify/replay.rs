//! A bounded memory of recently accepted signatures.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use crate::signer::SIGNATURE_LEN;

type Key = [u8; SIGNATURE_LEN];

/// Remembers accepted signatures until their timestamp leaves the tolerance window, holding at
/// most `capacity` of them: when full, the oldest is forgotten first.
#[derive(Debug)]
pub(crate) struct ReplayCache {
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Signature → the Unix second after which it is stale anyway.
    expires: HashMap<Key, u64>,
    /// Arrival order, for eviction.
    order: VecDeque<(Key, u64)>,
}

impl Seen {
    fn forget_oldest(&mut self) {
        if let Some((key, expires)) = self.order.pop_front() {
            if self.expires.get(&key) == Some(&expires) {
                self.expires.remove(&key);
            }
        }
    }
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> ReplayCache {
        let capacity = capacity.max(1);
        ReplayCache {
            capacity,
            seen: Mutex::new(Seen {
                expires: HashMap::with_capacity(capacity.min(1 << 16)),
                order: VecDeque::with_capacity(capacity.min(1 << 16)),
            }),
        }
    }

    /// Records `signature`, valid until `expires`, at time `now`. Returns `false` when it was
    /// already seen and has not expired: a replay.
    pub(crate) fn first_time(&self, signature: &[u8], expires: u64, now: u64) -> bool {
        let Ok(key) = Key::try_from(signature) else {
            return false;
        };
        // A panic elsewhere while holding the lock leaves the maps consistent (every
        // operation below completes or does nothing), so a poisoned lock is still usable.
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        while seen.order.front().is_some_and(|&(_, e)| e < now) {
            seen.forget_oldest();
        }
        if seen.expires.get(&key).is_some_and(|&e| e >= now) {
            return false;
        }
        while seen.order.len() >= self.capacity {
            seen.forget_oldest();
        }
        seen.expires.insert(key, expires);
        seen.order.push_back((key, expires));
        true
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn len(&self) -> usize {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn a_repeat_within_the_window_is_a_replay() {
        let cache = ReplayCache::new(10);
        assert!(cache.first_time(&sig(1), 160, 100));
        assert!(!cache.first_time(&sig(1), 160, 150));
        assert!(cache.first_time(&sig(2), 160, 150));
    }

    #[test]
    fn expired_signatures_are_forgotten() {
        let cache = ReplayCache::new(10);
        assert!(cache.first_time(&sig(1), 160, 100));
        assert!(cache.first_time(&sig(2), 300, 161));
        assert_eq!(cache.len(), 1, "sig 1 expired at 160");
    }

    #[test]
    fn never_holds_more_than_its_capacity() {
        let cache = ReplayCache::new(3);
        for n in 0..100 {
            assert!(cache.first_time(&sig(n), 1_000, 10));
            assert!(cache.len() <= 3);
        }
        // The newest are remembered, the oldest forgotten.
        assert!(!cache.first_time(&sig(99), 1_000, 10));
        assert!(cache.first_time(&sig(0), 1_000, 10));
    }

    #[test]
    fn capacity_zero_still_remembers_the_last_one() {
        let cache = ReplayCache::new(0);
        assert!(cache.first_time(&sig(1), 1_000, 10));
        assert!(!cache.first_time(&sig(1), 1_000, 10));
    }
}
