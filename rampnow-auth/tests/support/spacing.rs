//! What a rate-limited run looks like at the server: arrivals per one-second window, the
//! time it took, and whether each request was signed when it was released.
#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, UNIX_EPOCH};

use super::common::Seen;

/// The most arrivals in any half-open one-second window `[t, t + 1 s)` (the busiest window
/// starts at an arrival).
pub fn busiest_second(seen: &[Seen]) -> usize {
    let mut at: Vec<_> = seen.iter().map(|s| s.arrived).collect();
    at.sort();
    (0..at.len())
        .map(|i| {
            at[i..]
                .iter()
                .take_while(|t| **t - at[i] < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// From the first arrival to the last.
pub fn span(seen: &[Seen]) -> Duration {
    let first = seen.iter().map(|s| s.arrived).min().unwrap();
    let last = seen.iter().map(|s| s.arrived).max().unwrap();
    last - first
}

/// Every request verified, and signed no earlier than a second before it arrived: its
/// timestamp (whole seconds, rounded down when signed) is at least the arrival's second minus
/// one. A request signed when it was queued and released seconds later fails this.
pub fn assert_signed_when_released(seen: &[Seen]) {
    let mut seconds = std::collections::BTreeSet::new();
    for s in seen {
        assert_eq!(s.verdict, Ok(()), "every request verifies");
        let ts: u64 = s.headers["rn-access-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let arrived = s.arrived_wall.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(
            ts + 1 >= arrived,
            "signed at {ts}, arrived in second {arrived}: signed before it was released"
        );
        seconds.insert(ts);
    }
    assert!(
        seconds.len() >= 3,
        "timestamps spread over the run: {seconds:?}"
    );
}
