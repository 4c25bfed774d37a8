//! Faults: a server that drops the connection mid-request, futures dropped halfway.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use common::{check, hyper_client, now_secs, RetryIf, RN};
use http::{Request, Response, StatusCode};
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rampnow_auth::{Credentials, RampnowAuthLayer, SignedBody};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::{service_fn, BoxError, Layer, Service, ServiceBuilder, ServiceExt};

fn credentials() -> Credentials {
    Credentials::new(common::API_KEY, common::SECRET).unwrap()
}

/// Accepts connections; the first one is closed after reading part of the request, the
/// others are served and verified. Records the timestamp header of each verified request.
async fn flaky_server() -> (String, Arc<Mutex<Vec<(String, Result<(), String>)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut stream, _)) = listener.accept().await {
            if std::mem::take(&mut first) {
                let mut buf = [0u8; 64];
                let _ = stream.read(&mut buf).await;
                drop(stream); // mid-request
                continue;
            }
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let record = record.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let target = parts.uri.path_and_query().unwrap().as_str().to_owned();
                        let verdict = check(
                            RN,
                            now_secs(),
                            parts.method.as_str(),
                            &target,
                            &parts.headers,
                            &body,
                        );
                        let ts = parts.headers["rn-access-timestamp"]
                            .to_str()
                            .unwrap()
                            .to_owned();
                        let status = if verdict.is_ok() {
                            StatusCode::OK
                        } else {
                            StatusCode::UNAUTHORIZED
                        };
                        record.lock().unwrap().push((ts, verdict));
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = status;
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn connection_closed_mid_request_then_a_retry_re_signs_and_succeeds() {
    let (base, seen) = flaky_server().await;
    // Each read of the clock is 7 s later than the previous one (still within the window).
    let start = now_secs() - 10;
    let next = Arc::new(AtomicU64::new(start));
    let clock = move || UNIX_EPOCH + Duration::from_secs(next.fetch_add(7, Ordering::SeqCst));
    let client = ServiceBuilder::new()
        .retry(RetryIf::new(
            2,
            |result: &Result<Response<Incoming>, BoxError>| result.is_err(),
        ))
        .layer(
            RampnowAuthLayer::new(credentials())
                .allow_http(true)
                .with_clock(clock),
        )
        .service(hyper_client());
    let request = Request::post(format!("{base}/api/partner/v1/ext/ramp_order/quote"))
        .body(SignedBody::from(r#"{"srcAmount":"100"}"#))
        .unwrap();
    let response = client.oneshot(request).await.expect("the retry succeeds");
    assert_eq!(response.status(), StatusCode::OK);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "one request reached the handler: {seen:?}");
    assert_eq!(seen[0].1, Ok(()));
    assert_eq!(
        seen[0].0,
        (start + 7).to_string(),
        "the retry was signed afresh, at the second clock read"
    );
}

#[tokio::test]
async fn without_a_retry_the_client_gets_the_transport_error() {
    let (base, _) = flaky_server().await;
    let client = RampnowAuthLayer::new(credentials())
        .allow_http(true)
        .layer(hyper_client());
    let request = Request::get(format!("{base}/x"))
        .body(SignedBody::empty())
        .unwrap();
    let err = client.oneshot(request).await.unwrap_err();
    assert!(
        err.downcast_ref::<rampnow_auth::Error>().is_none(),
        "a transport error, not ours: {err}"
    );
    assert!(err.is::<hyper_util::client::legacy::Error>(), "{err}");
}

#[tokio::test]
async fn a_future_dropped_while_reading_the_body_leaves_the_service_usable() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let inner = service_fn(move |_req: Request<SignedBody>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(())) }
    });
    let mut service = RampnowAuthLayer::new(credentials()).layer(inner);

    let (_sender, stalled) = Channel::<Bytes>::new(1);
    ServiceExt::<Request<Channel<Bytes>>>::ready(&mut service)
        .await
        .unwrap();
    let future = service.call(
        Request::post("https://api.rampnow.io/x")
            .body(stalled)
            .unwrap(),
    );
    let timed_out = tokio::time::timeout(Duration::from_millis(20), future).await;
    assert!(
        timed_out.is_err(),
        "the body never ends, so the call is still waiting"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let request = Request::get("https://api.rampnow.io/x")
        .body(SignedBody::empty())
        .unwrap();
    ServiceExt::<Request<SignedBody>>::ready(&mut service)
        .await
        .unwrap()
        .call(request)
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_future_dropped_while_the_inner_service_runs_leaves_the_service_usable() {
    let release = Arc::new(Notify::new());
    let waiting = release.clone();
    let inner = service_fn(move |req: Request<SignedBody>| {
        let waiting = waiting.clone();
        async move {
            if req.uri().path() == "/slow" {
                waiting.notified().await;
            }
            Ok::<_, Infallible>(Response::new(req.uri().path().to_owned()))
        }
    });
    let mut service = RampnowAuthLayer::new(credentials()).layer(inner);
    let slow = ServiceExt::<Request<SignedBody>>::ready(&mut service)
        .await
        .unwrap()
        .call(
            Request::get("https://h/slow")
                .body(SignedBody::empty())
                .unwrap(),
        );
    assert!(tokio::time::timeout(Duration::from_millis(20), slow)
        .await
        .is_err());
    let fast = ServiceExt::<Request<SignedBody>>::ready(&mut service)
        .await
        .unwrap()
        .call(
            Request::get("https://h/fast")
                .body(SignedBody::empty())
                .unwrap(),
        );
    assert_eq!(fast.await.unwrap().into_body(), "/fast");
}
