//! Every bad input the layer can meet: the right `ErrorKind`, a message that says what to do,
//! and the inner service never called. Errors of the inner service pass through unchanged.

mod common;

use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::channel::Channel;
use http_body_util::{Empty, Full};
use rampnow_auth::{Credentials, Error, ErrorKind, RampnowAuthLayer, SignedBody};
use tower::{service_fn, BoxError, Layer, ServiceExt};

fn layer() -> RampnowAuthLayer {
    RampnowAuthLayer::new(Credentials::new(common::API_KEY, common::SECRET).unwrap())
}

/// Sends `request` through `layer` to an inner service that counts its calls; returns the
/// outcome and the number of calls.
async fn run<B>(
    layer: RampnowAuthLayer,
    request: Request<B>,
) -> (Result<Request<SignedBody>, BoxError>, usize)
where
    B: http_body::Body + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let inner = service_fn(move |req: Request<SignedBody>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, Infallible>(http::Response::new(req)) }
    });
    let result = layer
        .layer(inner)
        .oneshot(request)
        .await
        .map(http::Response::into_body);
    (result, calls.load(Ordering::SeqCst))
}

/// Asserts the layer refused with `kind`, a message containing `says`, and no inner call.
async fn refused<B>(
    layer: RampnowAuthLayer,
    request: Request<B>,
    kind: ErrorKind,
    says: &str,
) -> Error
where
    B: http_body::Body + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let (result, calls) = run(layer, request).await;
    let err = result.expect_err("the layer must refuse");
    assert_eq!(calls, 0, "the inner service must not be called");
    let err = *err
        .downcast::<Error>()
        .expect("the layer's own errors are rampnow_auth::Error");
    assert_eq!(err.kind(), kind, "{err}");
    assert!(
        err.to_string().contains(says),
        "{err:?} should say {says:?}"
    );
    assert!(!err.to_string().contains(common::SECRET));
    err
}

fn get(uri: &str) -> Request<SignedBody> {
    Request::get(uri).body(SignedBody::empty()).unwrap()
}

#[tokio::test]
async fn plain_http_is_refused_before_anything_is_sent() {
    refused(
        layer(),
        get("http://api.rampnow.io/api/x"),
        ErrorKind::InsecureScheme,
        "https://",
    )
    .await;
    refused(
        layer().allow_http(true),
        get("ws://127.0.0.1/x"),
        ErrorKind::InsecureScheme,
        "https://",
    )
    .await;
    let (result, calls) = run(layer().allow_http(true), get("http://127.0.0.1:1/x")).await;
    assert!(result.is_ok());
    assert_eq!(calls, 1);
}

#[tokio::test]
async fn origin_form_requests_are_refused_before_anything_is_sent() {
    // No scheme and host: the transport would pick the destination, perhaps over plain TCP.
    for layer in [
        layer(),
        layer().allow_http(true),
        layer().pin_origins(["https://api.rampnow.io"]).unwrap(),
    ] {
        refused(
            layer,
            get("/api/x?a=1"),
            ErrorKind::RelativeUri,
            "https://api.rampnow.io/api/partner/v1/",
        )
        .await;
    }
    let (result, calls) = run(layer(), get("https://api.rampnow.io/api/x?a=1")).await;
    assert!(result.unwrap().headers().contains_key("rn-access-sign"));
    assert_eq!(calls, 1);
}

#[tokio::test]
async fn allow_http_signs_for_loopback_only() {
    for uri in [
        "http://api.rampnow.io/api/x",
        "http://10.1.2.3/api/x",
        "http://127.1/api/x",
        "http://localhost.rampnow.io/api/x",
    ] {
        refused(
            layer().allow_http(true),
            get(uri),
            ErrorKind::InsecureScheme,
            "only to this machine",
        )
        .await;
    }
    for uri in [
        "http://127.0.0.1:1/x",
        "http://127.10.0.1/x",
        "http://localhost:8080/x",
        "http://[::1]:8080/x",
    ] {
        let (result, calls) = run(layer().allow_http(true), get(uri)).await;
        assert!(result.is_ok(), "{uri}");
        assert_eq!(calls, 1, "{uri}");
    }
}

#[tokio::test]
async fn unsignable_targets_and_methods_are_refused() {
    let options = Request::options("*").body(SignedBody::empty()).unwrap();
    refused(layer(), options, ErrorKind::InvalidRequest, "asterisk").await;
    let connect = Request::connect("api.rampnow.io:443")
        .body(SignedBody::empty())
        .unwrap();
    refused(
        layer(),
        connect,
        ErrorKind::InvalidRequest,
        "authority form",
    )
    .await;
    let lower = Request::builder()
        .method("post")
        .uri("https://api.rampnow.io/x")
        .body(SignedBody::empty())
        .unwrap();
    refused(layer(), lower, ErrorKind::InvalidRequest, "upper case").await;
}

#[tokio::test]
async fn body_over_the_limit_is_refused_whether_its_size_is_known_or_not() {
    // Known size: refused before reading.
    let known = Request::post("https://api.rampnow.io/x")
        .body(Full::new(Bytes::from(vec![1u8; 11])))
        .unwrap();
    refused(
        layer().max_body_size(10),
        known,
        ErrorKind::BodyTooLarge,
        "limit of 10 bytes",
    )
    .await;
    // Exactly at the limit: fine.
    let at_limit = Request::post("https://api.rampnow.io/x")
        .body(Full::new(Bytes::from(vec![1u8; 10])))
        .unwrap();
    let (result, calls) = run(layer().max_body_size(10), at_limit).await;
    assert_eq!(result.unwrap().body().as_bytes().len(), 10);
    assert_eq!(calls, 1);
    // Unknown size, streamed: one byte over is refused.
    let (mut tx, body) = Channel::<Bytes>::new(4);
    tx.send_data(Bytes::from(vec![1u8; 6])).await.unwrap();
    tx.send_data(Bytes::from(vec![1u8; 5])).await.unwrap();
    drop(tx);
    let streamed = Request::post("https://api.rampnow.io/x")
        .body(body)
        .unwrap();
    refused(
        layer().max_body_size(10),
        streamed,
        ErrorKind::BodyTooLarge,
        "max_body_size",
    )
    .await;
    // A body that limits itself below the layer's limit: too large all the same.
    let (mut tx, body) = Channel::<Bytes>::new(4);
    tx.send_data(Bytes::from(vec![1u8; 11])).await.unwrap();
    drop(tx);
    let limited = Request::post("https://api.rampnow.io/x")
        .body(http_body_util::Limited::new(body, 5))
        .unwrap();
    refused(layer(), limited, ErrorKind::BodyTooLarge, "max_body_size").await;
}

#[derive(Debug)]
struct DiskOnFire;

impl fmt::Display for DiskOnFire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("disk on fire")
    }
}

impl std::error::Error for DiskOnFire {}

#[tokio::test]
async fn failing_body_is_a_body_error_with_its_source() {
    let (mut tx, body) = Channel::<Bytes, DiskOnFire>::new(4);
    tx.send_data(Bytes::from("partial")).await.unwrap();
    tx.abort(DiskOnFire);
    let request = Request::post("https://api.rampnow.io/x")
        .body(body)
        .unwrap();
    let err = refused(layer(), request, ErrorKind::Body, "disk on fire").await;
    let source = std::error::Error::source(&err).expect("the body's error is the source");
    assert!(source.downcast_ref::<DiskOnFire>().is_some());
}

#[tokio::test]
async fn body_with_trailers_is_refused() {
    let (mut tx, body) = Channel::<Bytes>::new(4);
    tx.send_data(Bytes::from("data")).await.unwrap();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    tx.send_trailers(trailers).await.unwrap();
    drop(tx);
    let request = Request::post("https://api.rampnow.io/x")
        .body(body)
        .unwrap();
    refused(layer(), request, ErrorKind::Body, "trailers").await;
}

#[tokio::test]
async fn clock_before_1970_is_an_error_not_a_panic() {
    let layer = layer().with_clock(|| UNIX_EPOCH - Duration::from_secs(1));
    refused(
        layer,
        get("https://api.rampnow.io/x"),
        ErrorKind::Clock,
        "before 1970",
    )
    .await;
}

#[tokio::test]
async fn inner_errors_pass_through_unchanged() {
    let inner =
        service_fn(|_req: Request<SignedBody>| async { Err::<http::Response<()>, _>(DiskOnFire) });
    let err = layer()
        .layer(inner)
        .oneshot(get("https://api.rampnow.io/x"))
        .await
        .unwrap_err();
    assert!(err.is::<DiskOnFire>());
    assert!(!err.is::<Error>());
}

#[tokio::test]
async fn existing_auth_headers_and_a_stale_content_length_are_replaced() {
    let request = Request::post("https://api.rampnow.io/x")
        .header("rn-api-key", "someone-else")
        .header("rn-api-key", "and-another")
        .header("rn-access-sign", "0000")
        .header("content-length", "999")
        .body(Full::new(Bytes::from("four")))
        .unwrap();
    let (result, _) = run(layer(), request).await;
    let sent = result.unwrap();
    let headers = sent.headers();
    assert_eq!(
        headers.get_all("rn-api-key").iter().collect::<Vec<_>>(),
        [common::API_KEY]
    );
    assert_eq!(headers.get_all("rn-access-sign").iter().count(), 1);
    assert_eq!(headers.get_all("rn-access-timestamp").iter().count(), 1);
    assert_eq!(headers["content-length"], "4");
    assert!(headers["rn-api-key"].is_sensitive());
    assert!(headers["rn-access-sign"].is_sensitive());
}

#[tokio::test]
async fn a_body_in_one_piece_is_not_copied() {
    let bytes = Bytes::from(vec![7u8; 4096]);
    let pointer = bytes.as_ptr();
    let request = Request::post("https://api.rampnow.io/x")
        .body(Full::new(bytes))
        .unwrap();
    let sent = run(layer(), request).await.0.unwrap();
    assert_eq!(sent.body().as_bytes().as_ptr(), pointer);
    let empty = Request::post("https://api.rampnow.io/x")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert!(run(layer(), empty)
        .await
        .0
        .unwrap()
        .body()
        .as_bytes()
        .is_empty());
}

#[test]
fn timestamp_is_taken_after_the_body_is_read() {
    // A clock that counts its reads: none before the body has ended.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let reads = Arc::new(AtomicUsize::new(0));
        let counted = reads.clone();
        let layer = layer().with_clock(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            std::time::SystemTime::now()
        });
        let (mut tx, body) = Channel::<Bytes>::new(1);
        let request = Request::post("https://api.rampnow.io/x")
            .body(body)
            .unwrap();
        let task = tokio::spawn(run(layer, request));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            reads.load(Ordering::SeqCst),
            0,
            "clock read before the body ended"
        );
        tx.send_data(Bytes::from("late")).await.unwrap();
        drop(tx);
        let (result, _) = task.await.unwrap();
        result.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    });
}
