//! Property tests: whatever the request, the signer and the verifier agree; any single change
//! after signing is refused; `Signer` equals a plain HMAC over the concatenated bytes.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::fixed_clock;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use proptest::prelude::*;
use rampnow_auth::verify::{RampnowVerifyLayer, Rejection};
use rampnow_auth::{Credentials, HeaderNames, RampnowAuthLayer, SignedBody, Signer};
use tower::{service_fn, Layer, ServiceExt};

const NOW: u64 = 1_764_288_000;

#[path = "support/in_memory.rs"]
mod in_memory;

use in_memory::Chunked;

fn chunked(body: &[u8], cuts: &[usize]) -> Chunked {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    points.push(0);
    points.push(body.len());
    points.sort_unstable();
    points.dedup();
    Chunked::from_pieces(
        points
            .windows(2)
            .map(|w| Bytes::copy_from_slice(&body[w[0]..w[1]])),
    )
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::PATCH),
        Just(Method::DELETE),
        Just(Method::from_bytes(b"PURGE").unwrap()),
    ]
}

/// Characters a client may put in a path or query as is (RFC 3986 unreserved, sub-delims,
/// ':' and '@'), plus percent-encoded bytes.
fn piece() -> impl Strategy<Value = String> {
    let plain = proptest::sample::select("abcXYZ019-._~!$&'()*+,;=:@".chars().collect::<Vec<_>>())
        .prop_map(String::from);
    let encoded = any::<u8>().prop_map(|b| format!("%{b:02X}"));
    proptest::collection::vec(prop_oneof![3 => plain, 1 => encoded], 0..12)
        .prop_map(|parts| parts.concat())
}

fn target() -> impl Strategy<Value = String> {
    let path = proptest::collection::vec(piece(), 1..5).prop_map(|s| format!("/{}", s.join("/")));
    let param = (piece(), piece()).prop_map(|(k, v)| format!("{k}={v}"));
    let query = proptest::option::of(proptest::collection::vec(param, 0..6));
    (path, query).prop_map(|(path, query)| match query {
        // Repeated and unordered parameters come from the generator as they are.
        Some(params) => format!("{path}?{}", params.join("&")),
        None => path,
    })
}

fn names() -> impl Strategy<Value = HeaderNames> {
    prop_oneof![Just(HeaderNames::RN), Just(HeaderNames::X_RAMPNOW)]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn credentials() -> Credentials {
    Credentials::new(common::API_KEY, common::SECRET).unwrap()
}

/// What the signing layer sends for this request.
async fn sign(
    names: HeaderNames,
    method: Method,
    target: &str,
    body: Chunked,
) -> Request<SignedBody> {
    let echo =
        service_fn(
            |req: Request<SignedBody>| async move { Ok::<_, Infallible>(Response::new(req)) },
        );
    RampnowAuthLayer::new(credentials())
        .with_clock(fixed_clock(NOW))
        .header_names(names)
        .layer(echo)
        .oneshot(
            Request::builder()
                .method(method)
                .uri(format!("https://api.rampnow.io{target}"))
                .body(body)
                .unwrap(),
        )
        .await
        .unwrap()
        .into_body()
}

/// The verifier's answer to a request, and whether the inner service was reached.
async fn verify(request: Request<SignedBody>) -> (StatusCode, Option<Rejection>) {
    let ok = service_fn(|_req: Request<SignedBody>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let response = RampnowVerifyLayer::new(credentials())
        .with_clock(fixed_clock(NOW))
        .layer(ok)
        .oneshot(request)
        .await
        .unwrap();
    (
        response.status(),
        response.extensions().get::<Rejection>().cloned(),
    )
}

fn rebuild(method: Method, target: &str, headers: HeaderMap, body: Vec<u8>) -> Request<SignedBody> {
    let mut request = Request::builder()
        .method(method)
        .uri(target)
        .body(SignedBody::from(body))
        .unwrap();
    *request.headers_mut() = headers;
    request
}

/// One change to a signed request.
#[derive(Debug, Clone)]
enum Change {
    Method(Method),
    TargetByte(usize, u8),
    BodyByte(usize, u8),
    TimestampDigit(usize, u8),
    SignatureDigit(usize, u8),
    Key(u8),
}

fn change() -> impl Strategy<Value = Change> {
    let target_char = proptest::sample::select(b"abz09-._~%/?=&".to_vec());
    prop_oneof![
        method().prop_map(Change::Method),
        (any::<usize>(), target_char).prop_map(|(i, b)| Change::TargetByte(i, b)),
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Change::BodyByte(i, x)),
        (any::<usize>(), 1..=9u8).prop_map(|(i, d)| Change::TimestampDigit(i, d)),
        (any::<usize>(), 1..=15u8).prop_map(|(i, d)| Change::SignatureDigit(i, d)),
        (b'a'..=b'z').prop_map(Change::Key),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn whatever_the_layer_signs_the_verifier_accepts(
        method in method(),
        target in target(),
        body in proptest::collection::vec(any::<u8>(), 0..65_536),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        names in names(),
    ) {
        let rt = runtime();
        let signed = rt.block_on(sign(names, method, &target, chunked(&body, &cuts)));
        prop_assert_eq!(signed.uri().path_and_query().unwrap().as_str(), target.as_str());
        prop_assert_eq!(signed.body().as_bytes(), body.as_slice());
        let (status, rejection) = rt.block_on(verify(signed));
        prop_assert_eq!(status, StatusCode::OK, "{:?}", rejection);
    }

    #[test]
    fn any_single_change_after_signing_is_refused(
        method in method(),
        target in target(),
        body in proptest::collection::vec(any::<u8>(), 1..2_048),
        names in names(),
        change in change(),
    ) {
        let rt = runtime();
        let signed = rt.block_on(sign(names.clone(), method.clone(), &target, chunked(&body, &[])));
        let (parts, signed_body) = signed.into_parts();
        let mut method = parts.method;
        let mut target = target.into_bytes();
        let mut body = signed_body.as_bytes().to_vec();
        let mut headers = parts.headers;
        match change {
            Change::Method(other) => {
                prop_assume!(other != method);
                method = other;
            }
            Change::TargetByte(i, b) => {
                // Byte 0 is the leading '/', which every target has.
                let i = 1 + i % (target.len().max(2) - 1).max(1);
                prop_assume!(i < target.len() && target[i] != b);
                target[i] = b;
                prop_assume!(std::str::from_utf8(&target).unwrap().parse::<http::Uri>().is_ok());
            }
            Change::BodyByte(i, x) => {
                let i = i % body.len();
                body[i] ^= x;
            }
            Change::TimestampDigit(i, d) => {
                let mut ts = headers[names.timestamp()].to_str().unwrap().as_bytes().to_vec();
                let i = i % ts.len();
                ts[i] = b'0' + (ts[i] - b'0' + d) % 10;
                headers.insert(names.timestamp().clone(), http::HeaderValue::from_bytes(&ts).unwrap());
            }
            Change::SignatureDigit(i, d) => {
                let mut sig = headers[names.signature()].to_str().unwrap().as_bytes().to_vec();
                let i = i % sig.len();
                let value = (char::from(sig[i]).to_digit(16).unwrap() as u8 + d) % 16;
                sig[i] = char::from_digit(u32::from(value), 16).unwrap() as u8;
                headers.insert(names.signature().clone(), http::HeaderValue::from_bytes(&sig).unwrap());
            }
            Change::Key(c) => {
                let mut key = common::API_KEY.as_bytes().to_vec();
                key.push(c);
                headers.insert(names.api_key().clone(), http::HeaderValue::from_bytes(&key).unwrap());
            }
        }
        let target = String::from_utf8(target).unwrap();
        let (status, rejection) = rt.block_on(verify(rebuild(method, &target, headers, body)));
        prop_assert_eq!(status, StatusCode::UNAUTHORIZED);
        prop_assert!(rejection.is_some());
    }

    #[test]
    fn signer_equals_a_plain_hmac_over_the_concatenation(
        secret in "[ -~]{0,80}".prop_filter("trimmed, non-empty", |s| !s.is_empty() && s.trim() == s),
        timestamp in any::<u64>(),
        method in method(),
        target in target(),
        body in proptest::collection::vec(any::<u8>(), 0..4_096),
    ) {
        let credentials = Credentials::new("k", &secret).unwrap();
        let signature = Signer::new(&credentials).sign(timestamp, &method, &target, &body);
        let expected = common::reference_signature(
            secret.as_bytes(),
            timestamp.to_string().as_bytes(),
            method.as_str(),
            &target,
            &body,
        );
        prop_assert_eq!(signature.to_string(), expected);
    }
}
