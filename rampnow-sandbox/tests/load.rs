//! Load: 10,000 signed requests, 64 at a time, through one shared layer, to the sandbox over
//! TLS on loopback. Every one verified, none lost, none duplicated, no replays; memory flat.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rampnow_auth::{RampnowAuthLayer, SignedBody};
use rampnow_sandbox::{Sandbox, QUOTE_PATH};
use tower::{Layer, ServiceExt};

const REQUESTS: usize = 10_000;
const CONCURRENCY: usize = 64;
/// Room for every request's signature: they are all sent within one tolerance window, and the
/// replay memory never forgets a live signature (it answers 503 instead); one key gets half.
const REPLAY_CAPACITY: usize = 2 * REQUESTS;

/// Resident memory of this process, in KiB (Linux).
fn rss_kib() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_signed_requests_over_tls_all_verified_once() {
    // (The replay memory used to be bounded below the request count and forget the oldest
    // signatures, which let their replays through; it now holds every live one.)
    let sandbox = Sandbox::builder()
        .reject_replays(REPLAY_CAPACITY)
        .quiet(true)
        .start()
        .await
        .unwrap();
    let https = common::sandbox_connector(&sandbox);
    let transport = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONCURRENCY)
        .build::<_, SignedBody>(https);
    let client = RampnowAuthLayer::new(sandbox.credentials().clone()).layer(transport);

    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let rss_after_first_thousand = Arc::new(AtomicUsize::new(0));
    let base = sandbox.url();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, next, done, rss_mark, base) = (
            client.clone(),
            next.clone(),
            done.clone(),
            rss_after_first_thousand.clone(),
            base.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= REQUESTS {
                    return;
                }
                // A distinct amount per request: the quote echoes it, so a mixed-up answer shows.
                let amount = format!("{}.5", i + 1);
                let uri = format!(
                    "{base}{QUOTE_PATH}?srcCurrency=USD&dstCurrency=BTC&srcAmount={amount}"
                );
                let request = Request::get(uri).body(SignedBody::empty()).unwrap();
                let response = client
                    .clone()
                    .oneshot(request)
                    .await
                    .expect("request failed");
                assert_eq!(response.status(), StatusCode::OK, "request {i}");
                let body = response.into_body().collect().await.unwrap().to_bytes();
                let quote: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(
                    quote["srcAmount"],
                    amount.as_str(),
                    "request {i} got another's answer"
                );
                if done.fetch_add(1, Ordering::SeqCst) + 1 == 1_000 {
                    rss_mark.store(rss_kib().unwrap_or(0) as usize, Ordering::SeqCst);
                }
            }
        }));
    }
    for worker in workers {
        tokio::time::timeout(Duration::from_secs(600), worker)
            .await
            .expect("load test stalled")
            .unwrap();
    }
    let elapsed = started.elapsed();
    assert_eq!(done.load(Ordering::SeqCst), REQUESTS);

    let log = sandbox.log();
    assert_eq!(log.len(), REQUESTS, "the sandbox saw every request once");
    assert!(
        log.iter().all(|entry| entry.verified()),
        "a request was refused (a replay or a bad signature)"
    );
    let targets: HashSet<&str> = log.iter().map(|entry| entry.target.as_str()).collect();
    assert_eq!(targets.len(), REQUESTS, "none duplicated");
    assert_eq!(sandbox.remembered_signatures(), Some(REQUESTS));

    let first = rss_after_first_thousand.load(Ordering::SeqCst) as u64;
    let last = rss_kib().unwrap_or(0);
    eprintln!(
        "{REQUESTS} requests in {elapsed:?} ({:.0}/s); RSS after 1,000: {first} KiB, after {REQUESTS}: {last} KiB",
        REQUESTS as f64 / elapsed.as_secs_f64()
    );
    if first > 0 {
        // What grows by design: the sandbox's request log, 9,000 more entries of about 250
        // bytes each with its VecDeque doubling (~3-4 MiB, measured 4.6 MiB with the rest),
        // and the replay memory, 9,000 more signatures of up to ~200 bytes with its tables'
        // doubling (~2 MiB). A leak of a request's worth (a body, a TLS buffer) per request
        // would be far more.
        assert!(
            last <= first + 8 * 1024,
            "memory grew from {first} KiB to {last} KiB"
        );
    }
}
