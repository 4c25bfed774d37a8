//! The layer among other tower middleware: retry and timeout outside it, a tower-http layer in
//! the same stack, and the poll_ready/call contract.

mod common;

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{hyper_client, now_secs, text, TestServer, RN};
use http::header::USER_AGENT;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::channel::Channel;
use rampnow_auth::retry::RampnowRetry;
use rampnow_auth::{Credentials, RampnowAuthLayer, SignedBody};
use tower::{service_fn, BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_http::set_header::SetRequestHeaderLayer;

#[path = "support/in_memory.rs"]
mod in_memory;

use in_memory::Chunked;

fn credentials() -> Credentials {
    Credentials::new(common::API_KEY, common::SECRET).unwrap()
}

/// A clock that moves forward 15 s each time it is read, starting 20 s in the past.
fn advancing_clock() -> impl Fn() -> SystemTime + Send + Sync + 'static {
    let next = Arc::new(AtomicU64::new(now_secs() - 20));
    move || UNIX_EPOCH + Duration::from_secs(next.fetch_add(15, Ordering::SeqCst))
}

#[tokio::test]
async fn retry_outside_the_layer_signs_each_attempt_afresh() {
    let server = TestServer::start(RN, now_secs, 2).await;
    let client = ServiceBuilder::new()
        .timeout(Duration::from_secs(10))
        // The shipped policy retries a 503 (three attempts in all); fast, for the test.
        .retry(RampnowRetry::new().base_delay(Duration::from_millis(1)))
        .layer(
            RampnowAuthLayer::new(credentials())
                .allow_http(true)
                .with_clock(advancing_clock()),
        )
        .service(hyper_client());
    // A stale signature already on the request, twice: it must be replaced, not duplicated.
    let request = Request::post(server.url("/api/partner/v1/ext/ramp_order/quote"))
        .header("rn-access-sign", "stale")
        .header("rn-access-sign", "stale-too")
        .header("rn-access-timestamp", "1")
        .body(SignedBody::from(r#"{"srcCurrency":"EUR"}"#))
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let seen = server.seen();
    assert_eq!(seen.len(), 3, "two 503s, then success");
    let mut timestamps: Vec<&str> = Vec::new();
    for attempt in &seen {
        assert_eq!(
            attempt.verdict,
            Ok(()),
            "every attempt carries a valid signature"
        );
        assert_eq!(attempt.headers.get_all("rn-access-sign").iter().count(), 1);
        assert_eq!(
            attempt
                .headers
                .get_all("rn-access-timestamp")
                .iter()
                .count(),
            1
        );
        timestamps.push(attempt.headers["rn-access-timestamp"].to_str().unwrap());
    }
    timestamps.dedup();
    assert_eq!(
        timestamps.len(),
        3,
        "each attempt has a fresh timestamp: {timestamps:?}"
    );
}

#[tokio::test]
async fn tower_http_layers_around_the_signer() {
    let server = TestServer::start(RN, now_secs, 0).await;
    let client = ServiceBuilder::new()
        // Outside: a layer that appends a bogus signature; the signer replaces it.
        .layer(SetRequestHeaderLayer::appending(
            HeaderName::from_static("rn-access-sign"),
            HeaderValue::from_static("bogus"),
        ))
        .layer(RampnowAuthLayer::new(credentials()).allow_http(true))
        // Inside: a layer that only adds an unsigned header; it does not touch body or URI.
        .layer(SetRequestHeaderLayer::overriding(
            USER_AGENT,
            HeaderValue::from_static("rampnow-auth-tests"),
        ))
        .service(hyper_client());
    let request = Request::get(server.url("/api/x?b=2&a=1"))
        .body(SignedBody::empty())
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    let status = response.status();
    assert_eq!(status, StatusCode::OK, "{}", text(response).await);
    let seen = &server.seen()[0];
    assert_eq!(seen.headers[USER_AGENT], "rampnow-auth-tests");
    assert_eq!(seen.headers.get_all("rn-access-sign").iter().count(), 1);
}

#[tokio::test]
async fn timeout_outside_the_layer_bounds_a_slow_inner_service() {
    let slow = service_fn(|_req: Request<SignedBody>| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, Infallible>(http::Response::new(()))
    });
    let client = ServiceBuilder::new()
        .timeout(Duration::from_millis(50))
        .layer(RampnowAuthLayer::new(credentials()))
        .service(slow);
    let request = Request::get("https://api.rampnow.io/api/x")
        .body(SignedBody::empty())
        .unwrap();
    let err = client.oneshot(request).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
}

#[tokio::test]
async fn timeout_outside_the_layer_bounds_a_stalled_body() {
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    let inner = service_fn(move |_req: Request<SignedBody>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(http::Response::new(())) }
    });
    let client = ServiceBuilder::new()
        .timeout(Duration::from_millis(50))
        .layer(RampnowAuthLayer::new(credentials()))
        .service(inner);
    let (sender, body) = Channel::<Bytes>::new(1);
    let request = Request::post("https://api.rampnow.io/api/x")
        .body(body)
        .unwrap();
    let err = client.oneshot(request).await.unwrap_err();
    drop(sender);
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "nothing is sent for a body that never ended"
    );
}

/// An inner service that panics when called without a successful `poll_ready` first; a clone
/// is not ready. It counts its calls and its clones, and keeps the signature of the last call.
#[derive(Default)]
struct Strict {
    ready: bool,
    calls: Arc<AtomicU64>,
    clones: Arc<AtomicU64>,
    last_signature: Arc<std::sync::Mutex<Option<HeaderValue>>>,
}

impl Clone for Strict {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::SeqCst);
        Strict {
            ready: false,
            calls: self.calls.clone(),
            clones: self.clones.clone(),
            last_signature: self.last_signature.clone(),
        }
    }
}

impl Service<Request<SignedBody>> for Strict {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<SignedBody>) -> Self::Future {
        assert!(self.ready, "called without poll_ready");
        self.ready = false;
        self.calls.fetch_add(1, Ordering::SeqCst);
        *self.last_signature.lock().unwrap() = request.headers().get("rn-access-sign").cloned();
        ready(Ok(Response::new(())))
    }
}

#[tokio::test]
async fn the_service_made_ready_is_the_one_called() {
    let strict = Strict::default();
    let calls = strict.calls.clone();
    let mut service = RampnowAuthLayer::new(credentials()).layer(strict);

    // Two calls in flight, each with a body that is not there yet, so the inner call happens
    // after an async step, long after `call` returned.
    let (mut tx1, body1) = Channel::<Bytes>::new(1);
    let (mut tx2, body2) = Channel::<Bytes>::new(1);
    ServiceExt::<Request<Channel<Bytes>>>::ready(&mut service)
        .await
        .unwrap();
    let first = service.call(
        Request::post("https://api.rampnow.io/a")
            .body(body1)
            .unwrap(),
    );
    ServiceExt::<Request<Channel<Bytes>>>::ready(&mut service)
        .await
        .unwrap();
    let second = service.call(
        Request::post("https://api.rampnow.io/b")
            .body(body2)
            .unwrap(),
    );
    tokio::spawn(async move {
        tx2.send_data(Bytes::from("2")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx1.send_data(Bytes::from("1")).await.unwrap();
    });
    second.await.unwrap();
    first.await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// Sends `body` through a layer on a fixed clock into `strict`, checking that the inner service
/// is called inside `call` (before the future is polled) exactly when `at_once` says so;
/// returns the signature it got.
async fn signature_through<B>(
    service: &mut rampnow_auth::RampnowAuth<Strict>,
    strict: &Strict,
    body: B,
    at_once: bool,
) -> HeaderValue
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let before = strict.calls.load(Ordering::SeqCst);
    ServiceExt::<Request<B>>::ready(&mut *service)
        .await
        .unwrap();
    let request = Request::post("https://api.rampnow.io/api/x?a=1")
        .body(body)
        .unwrap();
    let future = service.call(request);
    let called_in_call = strict.calls.load(Ordering::SeqCst) == before + 1;
    assert_eq!(called_in_call, at_once, "{}", std::any::type_name::<B>());
    future.await.unwrap();
    assert_eq!(strict.calls.load(Ordering::SeqCst), before + 1);
    strict.last_signature.lock().unwrap().take().unwrap()
}

#[tokio::test]
async fn bodies_in_memory_are_signed_in_call_without_cloning_the_inner_service() {
    use http_body_util::{Empty, Full};

    let strict = Strict::default();
    let mut service = RampnowAuthLayer::new(credentials())
        .with_clock(|| UNIX_EPOCH + Duration::from_secs(1_764_288_000))
        .layer(Strict {
            ready: false,
            calls: strict.calls.clone(),
            clones: strict.clones.clone(),
            last_signature: strict.last_signature.clone(),
        });
    let json = r#"{"srcCurrency":"USD"}"#;
    let expected = signature_through(&mut service, &strict, SignedBody::from(json), true).await;
    let full = Full::new(Bytes::from(json));
    assert_eq!(
        signature_through(&mut service, &strict, full, true).await,
        expected
    );
    let string = json.to_owned();
    assert_eq!(
        signature_through(&mut service, &strict, string, true).await,
        expected
    );
    assert_eq!(
        strict.clones.load(Ordering::SeqCst),
        0,
        "no clone for bodies in memory"
    );

    // Any body type that is ready when polled once in `call`, frames included: no list of
    // known types.
    let chunked = Chunked::new(&Bytes::from(json), 3);
    assert_eq!(
        signature_through(&mut service, &strict, chunked, true).await,
        expected
    );
    assert_eq!(strict.clones.load(Ordering::SeqCst), 0);

    // The same bytes from a body that has to be waited for: signed alike, by a clone made ready.
    let late = Late(false, Chunked::new(&Bytes::from(json), 3));
    assert_eq!(
        signature_through(&mut service, &strict, late, false).await,
        expected
    );
    assert_eq!(strict.clones.load(Ordering::SeqCst), 1);

    // Empty bodies are signed at once too, and one that says it ended is not polled.
    let empty = signature_through(&mut service, &strict, Empty::<Bytes>::new(), true).await;
    assert_eq!(
        signature_through(&mut service, &strict, SignedBody::empty(), true).await,
        empty
    );
    assert_eq!(
        signature_through(&mut service, &strict, Ended, true).await,
        empty
    );
    // A body of no frames that does not say so is read like any other: at once when it can be.
    let no_frames = Chunked::from_pieces([]);
    assert_eq!(
        signature_through(&mut service, &strict, no_frames, true).await,
        empty
    );
    let no_frames_yet = Late(false, Chunked::from_pieces([]));
    assert_eq!(
        signature_through(&mut service, &strict, no_frames_yet, false).await,
        empty
    );
    assert_ne!(empty, expected);
    assert_eq!(strict.clones.load(Ordering::SeqCst), 2);
}

/// A body whose frames are not there at the first poll (it wakes the task at once).
struct Late(bool, Chunked);

impl http_body::Body for Late {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if !this.0 {
            this.0 = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        std::pin::Pin::new(&mut this.1).poll_frame(cx)
    }
}

/// A body that has ended before it is polled, and says so.
struct Ended;

impl http_body::Body for Ended {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        panic!("an ended body is not polled")
    }

    fn is_end_stream(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn response_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let mut service = RampnowAuthLayer::new(credentials()).layer(hyper_client());
    ServiceExt::<Request<SignedBody>>::ready(&mut service)
        .await
        .unwrap();
    let future = service.call(
        Request::get("https://api.rampnow.io/")
            .body(SignedBody::empty())
            .unwrap(),
    );
    assert_send(&future);
    drop(future);
}
