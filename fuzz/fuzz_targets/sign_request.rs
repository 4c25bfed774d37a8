//! Signing arbitrary requests: any method, URI, body and header-name triple. The layer must
//! never panic, must refuse with a `rampnow_auth::Error` or sign — and whatever it signs, the
//! verifier must accept, with the same target and body.
#![no_main]

#[path = "common.rs"]
mod common;

use std::convert::Infallible;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use libfuzzer_sys::fuzz_target;
use rampnow_auth::verify::RampnowVerifyLayer;
use rampnow_auth::{Credentials, HeaderNames, RampnowAuthLayer, SignedBody};
use tower::{service_fn, Layer, ServiceExt};

const NOW: u64 = 1_764_288_000;

fuzz_target!(|data: &[u8]| {
    let f = common::fields(data, 7);
    let clock = || UNIX_EPOCH + Duration::from_secs(NOW);
    let names = match HeaderNames::new(
        std::str::from_utf8(f[3]).unwrap_or(""),
        std::str::from_utf8(f[4]).unwrap_or(""),
        std::str::from_utf8(f[5]).unwrap_or(""),
    ) {
        Ok(names) => names,
        Err(_) => HeaderNames::RN,
    };
    let Ok(credentials) =
        Credentials::new(String::from_utf8_lossy(f[6]).into_owned(), "pk_fuzz_secret")
    else {
        return;
    };
    let Ok(request) = Request::builder()
        .method(f[0])
        .uri(f[1])
        .body(SignedBody::from(Bytes::copy_from_slice(f[2])))
    else {
        return;
    };
    let echo =
        service_fn(
            |req: Request<SignedBody>| async move { Ok::<_, Infallible>(Response::new(req)) },
        );
    let signer = RampnowAuthLayer::new(credentials.clone())
        .with_clock(clock)
        .header_names(names.clone())
        .allow_http(true)
        .max_body_size(4096)
        .layer(echo);
    let signed = match common::block_on(signer.oneshot(request)) {
        Ok(response) => response.into_body(),
        Err(err) => {
            let err = err
                .downcast::<rampnow_auth::Error>()
                .expect("the layer's own error");
            assert!(!err.to_string().is_empty());
            return;
        }
    };
    // Only absolute https:// URIs (or http:// to loopback, allowed here) are ever signed.
    assert!(signed.uri().authority().is_some());
    assert!(matches!(signed.uri().scheme_str(), Some("https" | "http")));
    assert!(signed
        .uri()
        .path_and_query()
        .map_or(true, |pq| pq.as_str().starts_with('/')));
    assert_eq!(signed.body().as_bytes(), f[2]);

    // Whatever was signed verifies — over the request as the server would receive it.
    let target = signed
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let (parts, body) = signed.into_parts();
    let mut received = Request::builder()
        .method(parts.method)
        .uri(target)
        .body(body)
        .unwrap();
    *received.headers_mut() = parts.headers;
    let ok = service_fn(|_req: Request<SignedBody>| async {
        Ok::<_, Infallible>(Response::new(SignedBody::empty()))
    });
    let verifier = RampnowVerifyLayer::new(credentials)
        .with_clock(clock)
        .header_names(names)
        .layer(ok);
    let response = common::block_on(verifier.oneshot(received)).unwrap();
    assert_eq!(
        response.status(),
        http::StatusCode::OK,
        "{:?}",
        response
            .extensions()
            .get::<rampnow_auth::verify::Rejection>()
    );
});
