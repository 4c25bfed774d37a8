//! The shipped client tools against the sandbox playing Rampnow's limits, end to end over TLS
//! on 127.0.0.1: `RampnowRetry` rides out the sandbox's `429`s and `503`s with fresh
//! signatures, and `RateLimitLayer` keeps a burst from meeting a `429` at all.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, StatusCode};
use rampnow_auth::limit::RateLimitLayer;
use rampnow_auth::retry::RampnowRetry;
use rampnow_auth::{RampnowAuthLayer, SignedBody};
use rampnow_sandbox::{Sandbox, QUOTE_PATH};
use tower::{ServiceBuilder, ServiceExt};

/// Quotes for different amounts, so no two share a signature (the sandbox refuses replays).
fn quote_url(sandbox: &Sandbox, amount: usize) -> String {
    format!(
        "{}{QUOTE_PATH}?srcCurrency=USD&dstCurrency=BTC&srcAmount={amount}",
        sandbox.url()
    )
}

/// `count` quotes started at once through `client`; the statuses, in no order.
async fn burst<S>(client: S, sandbox: &Sandbox, count: usize) -> Vec<StatusCode>
where
    S: tower::Service<
            Request<SignedBody>,
            Response = http::Response<hyper::body::Incoming>,
            Error = tower::BoxError,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        let request = Request::get(quote_url(sandbox, 1000 + n))
            .body(SignedBody::empty())
            .unwrap();
        tasks.spawn(client.clone().oneshot(request));
    }
    let mut statuses = Vec::new();
    while let Some(outcome) = tasks.join_next().await {
        statuses.push(outcome.unwrap().expect("the request was answered").status());
    }
    statuses
}

#[tokio::test]
async fn the_retry_policy_rides_out_429s_and_503s_with_fresh_signatures() {
    let sandbox = Sandbox::builder()
        .quiet(true)
        .rate_limit(5)
        .fail_every(4)
        .start()
        .await
        .unwrap();
    // No rate limiter: the burst runs into the sandbox's limit, and the policy waits out its
    // `Retry-After` (1 s). Enough attempts for the 503s too. Below the signing layer, each
    // attempt's target, timestamp and signature are noted as they leave.
    let sent = Arc::new(Mutex::new(Vec::new()));
    let note = sent.clone();
    let client = ServiceBuilder::new()
        .retry(RampnowRetry::new().max_attempts(6).no_budget())
        .layer(RampnowAuthLayer::new(sandbox.credentials().clone()))
        .map_request(move |request: Request<SignedBody>| {
            let header = |name: &str| request.headers()[name].to_str().unwrap().to_owned();
            note.lock().unwrap().push(Attempt {
                target: request.uri().path_and_query().unwrap().to_string(),
                timestamp: header("rn-access-timestamp").parse().unwrap(),
                signature: header("rn-access-sign"),
            });
            request
        })
        .service(common::sandbox_client(&sandbox));
    let started = tokio::time::Instant::now();
    let statuses = burst(client, &sandbox, 8).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "every quote ends in 200: {statuses:?}"
    );
    let log = sandbox.log();
    let code = |code: &str| {
        log.iter()
            .filter(|entry| entry.limit.as_ref().is_some_and(|l| l.code() == code))
            .count()
    };
    assert!(code("rate_limited") >= 3, "8 at once past 5/s: {log:#?}");
    assert!(
        code("service_unavailable") >= 1,
        "every 4th fails: {log:#?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the 429s' Retry-After (1 s) was honoured"
    );
    let verified: Vec<_> = log.iter().filter(|entry| entry.verified()).collect();
    assert_eq!(verified.len(), 8, "{log:#?}");
    assert!(
        log.iter().all(|entry| entry.rejection.is_none()),
        "no replay, no stale: {log:#?}"
    );
    // Fresh signatures: a quote answered 429 was sent again at least 1 s later, so signed
    // afresh it carries a later timestamp and another signature. (The sandbox refuses on
    // its limits before verifying, so a resent old signature would pass unnoticed.)
    let sent = sent.lock().unwrap();
    let limited: HashSet<&str> = log
        .iter()
        .filter(|entry| entry.status == StatusCode::TOO_MANY_REQUESTS)
        .map(|entry| entry.target.as_str())
        .collect();
    assert!(!limited.is_empty());
    for target in limited {
        let attempts: Vec<&Attempt> = sent.iter().filter(|a| a.target == target).collect();
        let (first, last) = (attempts[0], attempts[attempts.len() - 1]);
        assert!(
            last.timestamp > first.timestamp && last.signature != first.signature,
            "{target} was not signed afresh after its 429: {attempts:#?}"
        );
    }
}

/// One attempt as it left the signing layer.
#[derive(Debug)]
struct Attempt {
    target: String,
    timestamp: u64,
    signature: String,
}

#[tokio::test]
async fn the_rate_limiter_keeps_a_burst_under_the_sandboxs_limit() {
    let sandbox = Sandbox::builder()
        .quiet(true)
        .rate_limit(5)
        .start()
        .await
        .unwrap();
    // The limiter outside the signing layer, at the sandbox's rate: nothing to retry.
    let client = ServiceBuilder::new()
        .retry(RampnowRetry::new().max_attempts(1))
        .layer(RateLimitLayer::per_second(5))
        .layer(RampnowAuthLayer::new(sandbox.credentials().clone()))
        .service(common::sandbox_client(&sandbox));
    let started = tokio::time::Instant::now();
    let statuses = burst(client, &sandbox, 12).await;
    assert_eq!(
        statuses,
        vec![StatusCode::OK; 12],
        "no 429 with the limiter: {:#?}",
        sandbox.log()
    );
    // 12 at 5/s, one every 204 ms: the last leaves 11 periods after the first.
    assert!(started.elapsed() >= Duration::from_millis(2200));
    let targets: HashSet<_> = sandbox.log().iter().map(|e| e.target.clone()).collect();
    assert_eq!(targets.len(), 12);
}
