//! Server-time sync, credential rotation, origin pinning and signing receipts.

mod common;

use common::RetryIf;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{AGE, DATE, LOCATION};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use rampnow_auth::verify::{RampnowVerifyLayer, Rejection, RejectionKind, VerifiedApiKey};
use rampnow_auth::{Credentials, Error, ErrorKind, RampnowAuthLayer, SignedBody, SigningReceipt};
use tower::{service_fn, BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_http::set_header::SetResponseHeaderLayer;

#[path = "support/in_memory.rs"]
mod in_memory;

fn credentials() -> Credentials {
    Credentials::new(common::API_KEY, common::SECRET).unwrap()
}

/// Sends a `GET https://api.rampnow.io/x` through `client` once it is ready.
async fn send_x<S>(client: &mut S) -> S::Response
where
    S: Service<Request<SignedBody>>,
    S::Error: std::fmt::Debug,
{
    ServiceExt::<Request<SignedBody>>::ready(client)
        .await
        .unwrap()
        .call(get("https://api.rampnow.io/x"))
        .await
        .unwrap()
}

type App = tower::util::BoxCloneSyncService<Request<SignedBody>, Response<Full<Bytes>>, Infallible>;

/// The application behind the verifier: answers 200 with the verified key.
fn app() -> App {
    tower::util::BoxCloneSyncService::new(service_fn(|req: Request<SignedBody>| {
        let key = req
            .extensions()
            .get::<VerifiedApiKey>()
            .map(|k| k.as_str().to_owned());
        async move {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                key.unwrap_or_default(),
            ))))
        }
    }))
}

/// A verifying "server" whose clock is `skew` ahead of the real one, and whose `Date` header
/// says so, as a real server's would.
fn skewed_server(
    skew: Duration,
) -> impl Service<
    Request<SignedBody>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send {
    let clock = move || SystemTime::now() + skew;
    ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            DATE,
            move |_: &Response<Full<Bytes>>| {
                HeaderValue::from_str(&httpdate::fmt_http_date(clock())).ok()
            },
        ))
        .layer(RampnowVerifyLayer::new(credentials()).with_clock(clock))
        .service(app())
}

fn get(uri: &str) -> Request<SignedBody> {
    Request::get(uri).body(SignedBody::empty()).unwrap()
}

#[tokio::test]
async fn sync_learns_the_server_clock_from_a_rejection_and_the_next_request_verifies() {
    let layer = RampnowAuthLayer::new(credentials()).sync_server_time();
    let server_time = layer.server_time().unwrap();
    let mut client = layer.layer(skewed_server(Duration::from_secs(300)));

    let first = send_x(&mut client).await;
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        first.extensions().get::<Rejection>().unwrap().kind(),
        RejectionKind::StaleTimestamp
    );
    let offset = server_time.offset();
    assert!(
        (299_000..=301_500).contains(&offset),
        "learned offset {offset} ms"
    );

    let second = send_x(&mut client).await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(server_time.samples(), 2);
}

#[tokio::test]
async fn without_sync_the_skewed_server_keeps_refusing() {
    let mut client =
        RampnowAuthLayer::new(credentials()).layer(skewed_server(Duration::from_secs(300)));
    for _ in 0..2 {
        let response = send_x(&mut client).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_server_behind_is_learned_too() {
    // Clock 5 minutes *behind*: Duration cannot be negative, so skew the client instead.
    let local = || SystemTime::now() + Duration::from_secs(300);
    let layer = RampnowAuthLayer::new(credentials())
        .with_clock(local)
        .sync_server_time();
    let server_time = layer.server_time().unwrap();
    let mut client = layer.layer(skewed_server(Duration::ZERO));
    let first = send_x(&mut client).await;
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    assert!(server_time.offset() < -298_000, "{}", server_time.offset());
    let second = send_x(&mut client).await;
    assert_eq!(second.status(), StatusCode::OK);
}

#[tokio::test]
async fn with_a_retry_on_stale_outside_a_single_call_succeeds() {
    let client = ServiceBuilder::new()
        .retry(RetryIf::new(1, |result: &Result<Response<Full<Bytes>>, BoxError>| {
            matches!(result, Ok(r) if r.extensions().get::<Rejection>().is_some_and(|r| r.kind() == RejectionKind::StaleTimestamp))
        }))
        .layer(RampnowAuthLayer::new(credentials()).sync_server_time())
        .service(skewed_server(Duration::from_secs(300)));
    let response = client
        .oneshot(get("https://api.rampnow.io/x"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn cached_responses_do_not_teach_the_clock() {
    let cached = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            AGE,
            HeaderValue::from_static("120"),
        ))
        .service(skewed_server(Duration::from_secs(300)));
    let layer = RampnowAuthLayer::new(credentials()).sync_server_time();
    let server_time = layer.server_time().unwrap();
    let response = layer
        .layer(cached)
        .oneshot(get("https://api.rampnow.io/x"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!((server_time.samples(), server_time.offset()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_under_concurrent_requests_never_mixes_key_and_secret() {
    let old = Credentials::new("ak_old", "pk_old_secret").unwrap();
    let new = Credentials::new("ak_new", "pk_new_secret").unwrap();
    let keys: HashMap<String, Credentials> = [old.clone(), new.clone()]
        .into_iter()
        .map(|c| (c.api_key().to_owned(), c))
        .collect();
    let server = RampnowVerifyLayer::new(keys).layer(app());
    let layer = RampnowAuthLayer::new(old.clone());
    let handle = layer.credentials_handle();
    let client = layer.layer(server);

    // Rotates back and forth until every request is done, so that requests run between
    // rotations all along; returns how many rotations there were.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rotations = tokio::spawn({
        let (handle, old, new, stop) = (handle.clone(), old.clone(), new.clone(), stop.clone());
        async move {
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                handle.rotate(if i.is_multiple_of(2) {
                    new.clone()
                } else {
                    old.clone()
                });
                i += 1;
                tokio::task::yield_now().await;
            }
            i
        }
    });
    let seen = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, seen) = (client.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let response = client
                    .clone()
                    .oneshot(get("https://api.rampnow.io/x"))
                    .await
                    .unwrap();
                assert_eq!(
                    response.status(),
                    StatusCode::OK,
                    "a request mixed key and secret"
                );
                let body = http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                let slot = usize::from(body == "ak_new");
                seen[slot].fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let rotated = rotations.await.unwrap();
    // Both keys signed requests while the rotations went on: the test saw the mixing it checks.
    let seen = [0, 1].map(|slot| seen[slot].load(Ordering::SeqCst));
    assert_eq!(seen[0] + seen[1], 400);
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "{seen:?} after {rotated} rotations"
    );
    assert!(rotated > 2, "{rotated} rotations");

    handle.rotate(new.clone());
    let response = client
        .oneshot(get("https://api.rampnow.io/x"))
        .await
        .unwrap();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "ak_new", "takes effect from the next request");
    assert_eq!(handle.current().api_key(), "ak_new");
    assert!(!format!("{handle:?}").contains("pk_new_secret"));
}

async fn pinned(uri: &str) -> Result<Response<()>, BoxError> {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let inner = service_fn(move |_req: Request<SignedBody>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(())) }
    });
    let result = RampnowAuthLayer::new(credentials())
        .allow_http(true)
        .pin_origins(["https://api.rampnow.io", "http://127.0.0.1:8080"])
        .unwrap()
        .layer(inner)
        .oneshot(Request::get(uri).body(SignedBody::empty()).unwrap())
        .await;
    if result.is_err() {
        assert_eq!(calls.load(Ordering::SeqCst), 0, "refused, yet sent");
    }
    result
}

#[tokio::test]
async fn pinned_origins_only() {
    for allowed in [
        "https://api.rampnow.io/api/x",
        "https://API.RAMPNOW.IO/api/x",
        "https://api.rampnow.io:443/api/x",
        "https://api.rampnow.io",
        "http://127.0.0.1:8080/x",
    ] {
        assert!(pinned(allowed).await.is_ok(), "{allowed}");
    }
    for (refused, kind) in [
        ("https://evil.example/api/x", ErrorKind::OriginNotAllowed),
        (
            "https://api.rampnow.io.evil.example/x",
            ErrorKind::OriginNotAllowed,
        ),
        ("https://api.rampnow.io:8443/x", ErrorKind::OriginNotAllowed),
        ("http://127.0.0.1:8081/x", ErrorKind::OriginNotAllowed),
        // Plain HTTP to another host is refused even before the pins are looked at.
        ("http://api.rampnow.io/x", ErrorKind::InsecureScheme),
        ("/api/x", ErrorKind::RelativeUri),
    ] {
        let err = pinned(refused).await.expect_err(refused);
        let err = err.downcast::<Error>().unwrap();
        assert_eq!(err.kind(), kind, "{refused}: {err}");
    }
    for bad in [
        "api.rampnow.io",
        "https://api.rampnow.io/path",
        "",
        "ftp://x",
    ] {
        let err = RampnowAuthLayer::new(credentials())
            .pin_origins([bad])
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidOrigin, "{bad:?}");
    }
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_never_signed() {
    use tower_http::follow_redirect::FollowRedirectLayer;
    let elsewhere_calls = Arc::new(AtomicUsize::new(0));
    let counted = elsewhere_calls.clone();
    // The "network": the pinned origin redirects to another host.
    let network = service_fn(move |req: Request<SignedBody>| {
        let counted = counted.clone();
        async move {
            let mut response = Response::new(Full::new(Bytes::new()));
            if req.uri().host() == Some("api.rampnow.io") {
                *response.status_mut() = StatusCode::FOUND;
                response.headers_mut().insert(
                    LOCATION,
                    HeaderValue::from_static("https://collector.example/steal"),
                );
            } else {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, Infallible>(response)
        }
    });
    let client = ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .layer(
            RampnowAuthLayer::new(credentials())
                .pin_origins(["https://api.rampnow.io"])
                .unwrap(),
        )
        .service(network);
    let err = client
        .oneshot(get("https://api.rampnow.io/api/x"))
        .await
        .unwrap_err();
    let err = err.downcast::<Error>().unwrap();
    assert_eq!(err.kind(), ErrorKind::OriginNotAllowed);
    assert!(err.to_string().contains("collector.example"), "{err}");
    assert_eq!(
        elsewhere_calls.load(Ordering::SeqCst),
        0,
        "the API key went to another host"
    );
}

#[tokio::test]
async fn a_401_carries_a_receipt_of_what_was_signed_and_a_200_does_not() {
    let wrong = Credentials::new(common::API_KEY, "pk_live_wrong_secret").unwrap();
    let server = RampnowVerifyLayer::new(credentials()).layer(app());
    let body = r#"{"srcCurrency":"EUR"}"#;
    let request =
        Request::post("https://api.rampnow.io/api/partner/v1/ext/ramp_order/quote?b=2&a=1")
            .body(SignedBody::from(body))
            .unwrap();
    let response = RampnowAuthLayer::new(wrong)
        .layer(server.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let receipt = response
        .extensions()
        .get::<SigningReceipt>()
        .expect("a receipt on a 401")
        .clone();
    assert_eq!(receipt.method(), "POST");
    assert_eq!(
        receipt.path_and_query(),
        "/api/partner/v1/ext/ramp_order/quote?b=2&a=1"
    );
    assert_eq!(receipt.body_len(), body.len());
    use sha2::Digest;
    assert_eq!(
        receipt.body_sha256(),
        hex::encode(sha2::Sha256::digest(body))
    );
    assert_eq!(receipt.signature_prefix().len(), 12);
    assert_eq!(receipt.header_names().signature(), "rn-access-sign");
    assert!(receipt.timestamp().abs_diff(common::now_secs()) <= 2);
    let shown = format!("{receipt} {receipt:?}");
    assert!(
        !shown.contains("pk_live_wrong_secret") && !shown.contains("srcCurrency"),
        "{shown}"
    );

    let ok = RampnowAuthLayer::new(credentials())
        .layer(server)
        .oneshot(get("https://api.rampnow.io/x"))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.extensions().get::<SigningReceipt>().is_none());
}

#[tokio::test]
async fn receipts_name_the_header_set_used_and_the_signature_sent() {
    use rampnow_auth::HeaderNames;
    let refuse = tower::service_fn(|request: Request<SignedBody>| async move {
        // Answers 401 and hands back every header it got, to compare with the receipt.
        let mut response = http::Response::new(request.headers().clone());
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        Ok::<_, std::convert::Infallible>(response)
    });
    let custom = HeaderNames::new("My-Key", "My-Time", "My-Sign").unwrap();
    let layers = [
        (RampnowAuthLayer::new(credentials()), HeaderNames::RN),
        (
            RampnowAuthLayer::new(credentials()).header_names(HeaderNames::X_RAMPNOW),
            HeaderNames::X_RAMPNOW,
        ),
        (
            RampnowAuthLayer::new(credentials()).header_names(custom.clone()),
            custom,
        ),
        // Server-time sync keeps the configuration for every response.
        (
            RampnowAuthLayer::new(credentials()).sync_server_time(),
            HeaderNames::RN,
        ),
    ];
    for (layer, names) in layers {
        let post = Request::post("https://api.rampnow.io/x?y=1")
            .body(SignedBody::from("{}"))
            .unwrap();
        // A body read by the response future (two frames) goes the other way to the receipt.
        let chunked = Request::post("https://api.rampnow.io/x?y=1")
            .body(in_memory::Chunked::new(&Bytes::from("{}"), 2))
            .unwrap();
        let response = layer.layer(refuse).oneshot(chunked).await.unwrap();
        let receipt = response.extensions().get::<SigningReceipt>().unwrap();
        assert_eq!(receipt.header_names(), &names);
        assert_eq!(receipt.body_len(), 2);
        for request in [get("https://api.rampnow.io/x?y=1"), post] {
            let response = layer.layer(refuse).oneshot(request).await.unwrap();
            let receipt = response.extensions().get::<SigningReceipt>().unwrap();
            assert_eq!(receipt.header_names(), &names);
            let sent = response.body()[names.signature()].to_str().unwrap();
            assert_eq!(receipt.signature_prefix(), &sent[..12]);
            assert_eq!(receipt.path_and_query(), "/x?y=1");
        }
    }
}
