//! The rate limit, measured at a loopback server: no one-second window over the limit, the
//! run as long as the limit makes it, every request signed when it was released, and clones
//! sharing one limit.

mod common;
#[path = "support/spacing.rs"]
mod spacing;

use std::time::Duration;

use common::{hyper_client, now_secs, TestServer, RN};
use http::{Request, StatusCode};
use rampnow_auth::limit::RateLimitLayer;
use rampnow_auth::{Credentials, Environment, RampnowAuthLayer, SignedBody};
use spacing::{assert_signed_when_released, busiest_second, span};
use tower::{Service, ServiceBuilder, ServiceExt};

fn credentials() -> Credentials {
    Credentials::new(common::API_KEY, common::SECRET).unwrap()
}

/// Sends `count` requests through `client`, all started at once; every one must succeed.
async fn send_all<S>(client: S, server: &TestServer, count: usize)
where
    S: Service<Request<SignedBody>, Response = http::Response<hyper::body::Incoming>>
        + Clone
        + Send
        + 'static,
    S::Error: std::fmt::Debug + Send,
    S::Future: Send,
{
    let mut tasks = Vec::new();
    for i in 0..count {
        let request = Request::post(server.url("/api/partner/v1/ext/ramp_order/quote"))
            .body(SignedBody::from(format!(r#"{{"n":{i}}}"#)))
            .unwrap();
        let client = client.clone();
        tasks.push(tokio::spawn(async move { client.oneshot(request).await }));
    }
    for task in tasks {
        let response = task.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_at_once_through_twenty_a_second() {
    let server = TestServer::start(RN, now_secs, 0).await;
    let client = ServiceBuilder::new()
        .layer(RateLimitLayer::per_second(20))
        .layer(RampnowAuthLayer::new(credentials()).allow_http(true))
        .service(hyper_client());
    send_all(client, &server, 60).await;

    let seen = server.seen();
    assert_eq!(seen.len(), 60);
    let busiest = busiest_second(&seen);
    assert!(busiest <= 20, "{busiest} requests in one second");
    let took = span(&seen);
    eprintln!(
        "{} requests: at most {busiest} in any one second, {took:?} from the first to the last",
        seen.len()
    );
    assert!(took >= Duration::from_millis(2_900), "took {took:?}");
    assert_signed_when_released(&seen);
}

/// Two clones of one service (and a service built from a clone of the layer), used at once,
/// share one limit: 15 a second between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_share_the_limit() {
    let server = TestServer::start(RN, now_secs, 0).await;
    let limit = RateLimitLayer::for_environment(Environment::Staging);
    let signing = RampnowAuthLayer::new(credentials()).allow_http(true);
    let a = ServiceBuilder::new()
        .layer(limit.clone())
        .layer(signing.clone())
        .service(hyper_client());
    let b = ServiceBuilder::new()
        .layer(limit)
        .layer(signing)
        .service(hyper_client());
    tokio::join!(
        send_all(a.clone(), &server, 10),
        send_all(a, &server, 10),
        send_all(b, &server, 10),
    );

    let seen = server.seen();
    assert_eq!(seen.len(), 30);
    let busiest = busiest_second(&seen);
    assert!(busiest <= 15, "{busiest} requests in one second");
    // 30 requests at 15 a second: the last is 29 periods of (1 s + 20 ms) / 15 = 68 ms after
    // the first.
    let took = span(&seen);
    eprintln!(
        "{} requests: at most {busiest} in any one second, {took:?} from the first to the last",
        seen.len()
    );
    assert!(took >= Duration::from_millis(1_900), "took {took:?}");
}
