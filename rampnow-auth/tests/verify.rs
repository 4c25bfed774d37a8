//! The verifier: every refusal with its status, code and reason, the inner service never
//! called; request targets; tolerance edges; replay protection and replay stores; the body read
//! timeout; signer → verifier round trips.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::fixed_clock;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::channel::Channel;
use http_body_util::Full;
use rampnow_auth::verify::{
    MemoryReplayStore, RampnowVerifyLayer, Rejection, RejectionKind, ReplayCheck, ReplayFuture,
    ReplayStore, VerifiedApiKey,
};
use rampnow_auth::{Credentials, HeaderNames, RampnowAuthLayer, Signature, SignedBody, Signer};
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};

const NOW: u64 = 1_764_288_000;

fn credentials() -> Credentials {
    Credentials::new(common::API_KEY, common::SECRET).unwrap()
}

fn verifier() -> RampnowVerifyLayer {
    RampnowVerifyLayer::new(credentials()).with_clock(fixed_clock(NOW))
}

/// The inner service: counts calls, answers 200 with the verified key.
fn app(
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<SignedBody>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(move |req: Request<SignedBody>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let key = req
            .extensions()
            .get::<VerifiedApiKey>()
            .map(|k| k.as_str().to_owned());
        let body_len = req.body().as_bytes().len();
        async move {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                "{}:{body_len}",
                key.unwrap_or_default()
            )))))
        }
    })
}

/// Sends `request` through `layer` to the app; returns status, body and inner calls.
async fn verify<B>(layer: RampnowVerifyLayer, request: Request<B>) -> (Response<Full<Bytes>>, usize)
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let calls = Arc::new(AtomicUsize::new(0));
    let response = layer
        .layer(app(calls.clone()))
        .oneshot(request)
        .await
        .unwrap();
    (response, calls.load(Ordering::SeqCst))
}

/// Headers for a request signed by hand at `ts` (RN names).
fn signed_headers(ts: &str, method: &Method, target: &str, body: &[u8]) -> HeaderMap {
    let ts_num: u64 = ts.trim_start_matches('0').parse().unwrap_or(0);
    let signature = if ts.bytes().all(|b| b.is_ascii_digit()) && ts.len() <= 20 {
        // Sign the exact string sent, even with leading zeros.
        common::reference_signature(
            common::SECRET.as_bytes(),
            ts.as_bytes(),
            method.as_str(),
            target,
            body,
        )
    } else {
        Signer::new(&credentials())
            .sign(ts_num, method, target, body)
            .to_string()
    };
    let mut headers = HeaderMap::new();
    headers.insert("rn-api-key", common::API_KEY.parse().unwrap());
    headers.insert("rn-access-timestamp", ts.parse().unwrap());
    headers.insert("rn-access-sign", signature.parse().unwrap());
    headers
}

fn request(
    headers: HeaderMap,
    method: Method,
    target: &str,
    body: &'static [u8],
) -> Request<SignedBody> {
    let mut request = Request::builder()
        .method(method)
        .uri(target)
        .body(SignedBody::from(body))
        .unwrap();
    *request.headers_mut() = headers;
    request
}

/// A refusal: status, code, a reason, the inner service not called, the expected signature
/// nowhere in the answer.
async fn assert_refused(
    request: Request<SignedBody>,
    layer: RampnowVerifyLayer,
    kind: RejectionKind,
) {
    let expected_signature = Signer::new(&credentials())
        .sign(
            NOW,
            request.method(),
            request.uri().path_and_query().unwrap().as_str(),
            request.body().as_bytes(),
        )
        .to_string();
    let (response, calls) = verify(layer, request).await;
    assert_eq!(calls, 0, "inner service called for {kind:?}");
    assert_eq!(response.status(), kind.status(), "{kind:?}");
    let rejection = response
        .extensions()
        .get::<Rejection>()
        .cloned()
        .expect("rejection attached");
    assert_eq!(rejection.kind(), kind);
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = common::text(response).await;
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["error"], kind.code());
    assert_eq!(json["reason"], rejection.reason());
    assert!(!rejection.reason().is_empty());
    assert!(
        !text.contains(&expected_signature),
        "the expected signature leaked: {text}"
    );
    assert!(!text.contains(common::SECRET));
}

#[tokio::test]
async fn a_signed_request_is_accepted_with_its_key_in_extensions() {
    let target = "/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD&dstCurrency=BTC";
    let headers = signed_headers(&NOW.to_string(), &Method::POST, target, b"{\"a\":1}");
    let (response, calls) = verify(
        verifier(),
        request(headers, Method::POST, target, b"{\"a\":1}"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls, 1);
    assert_eq!(
        common::text(response).await,
        format!("{}:7", common::API_KEY)
    );
}

#[tokio::test]
async fn missing_and_duplicated_headers_are_refused() {
    let target = "/api/x";
    for name in ["rn-api-key", "rn-access-timestamp", "rn-access-sign"] {
        let mut headers = signed_headers(&NOW.to_string(), &Method::GET, target, b"");
        headers.remove(name);
        assert_refused(
            request(headers, Method::GET, target, b""),
            verifier(),
            RejectionKind::MissingHeader,
        )
        .await;

        let mut headers = signed_headers(&NOW.to_string(), &Method::GET, target, b"");
        let value = headers[name].clone();
        headers.append(name, value);
        assert_refused(
            request(headers, Method::GET, target, b""),
            verifier(),
            RejectionKind::DuplicateHeader,
        )
        .await;
    }
    assert_refused(
        request(HeaderMap::new(), Method::GET, target, b""),
        verifier(),
        RejectionKind::MissingHeader,
    )
    .await;
}

#[tokio::test]
async fn unknown_key_bad_timestamps_and_bad_signatures_are_refused() {
    let target = "/api/x";
    let mut headers = signed_headers(&NOW.to_string(), &Method::GET, target, b"");
    headers.insert("rn-api-key", "ak_live_someone_else".parse().unwrap());
    assert_refused(
        request(headers, Method::GET, target, b""),
        verifier(),
        RejectionKind::UnknownApiKey,
    )
    .await;

    let now = NOW.to_string();
    for ts in [
        "",
        "+1764288000",
        "-1764288000",
        " 1764288000",
        "1764288000 ",
        "1.5e9",
        "17642880001764288000123",
        "abc",
        "١٧٦٤٢٨٨٠٠٠",
    ] {
        let mut headers = signed_headers(&now, &Method::GET, target, b"");
        headers.insert(
            "rn-access-timestamp",
            ts.parse()
                .unwrap_or_else(|_| http::HeaderValue::from_bytes(ts.as_bytes()).unwrap()),
        );
        assert_refused(
            request(headers, Method::GET, target, b""),
            verifier(),
            RejectionKind::InvalidTimestamp,
        )
        .await;
    }

    let good = signed_headers(&now, &Method::GET, target, b"")["rn-access-sign"]
        .to_str()
        .unwrap()
        .to_owned();
    for sig in [
        &good[1..],
        &good[2..],
        &format!("{good}0"),
        &good.replace(|c: char| c.is_ascii_digit(), "z"),
        "",
        "not hex at all",
    ] {
        let mut headers = signed_headers(&now, &Method::GET, target, b"");
        headers.insert("rn-access-sign", sig.parse().unwrap());
        assert_refused(
            request(headers, Method::GET, target, b""),
            verifier(),
            RejectionKind::InvalidSignature,
        )
        .await;
    }
}

#[tokio::test]
async fn any_change_after_signing_is_a_mismatch() {
    let target = "/api/x?a=1&b=2";
    let body: &'static [u8] = b"{\"amount\":\"100\"}";
    let headers = signed_headers(&NOW.to_string(), &Method::POST, target, body);
    // Another target, method, body, timestamp, or a wrong secret.
    assert_refused(
        request(headers.clone(), Method::POST, "/api/x?b=2&a=1", body),
        verifier(),
        RejectionKind::SignatureMismatch,
    )
    .await;
    assert_refused(
        request(headers.clone(), Method::PUT, target, body),
        verifier(),
        RejectionKind::SignatureMismatch,
    )
    .await;
    assert_refused(
        request(
            headers.clone(),
            Method::POST,
            target,
            b"{\"amount\":\"101\"}",
        ),
        verifier(),
        RejectionKind::SignatureMismatch,
    )
    .await;
    let mut later = headers.clone();
    later.insert(
        "rn-access-timestamp",
        (NOW + 1).to_string().parse().unwrap(),
    );
    assert_refused(
        request(later, Method::POST, target, body),
        verifier(),
        RejectionKind::SignatureMismatch,
    )
    .await;
    let other =
        RampnowVerifyLayer::new(Credentials::new(common::API_KEY, "pk_live_other").unwrap())
            .with_clock(fixed_clock(NOW));
    assert_refused(
        request(headers, Method::POST, target, body),
        other,
        RejectionKind::SignatureMismatch,
    )
    .await;
}

#[tokio::test]
async fn upper_case_hex_and_leading_zeros_verify_when_signed_so() {
    let target = "/api/x";
    let mut headers = signed_headers(&NOW.to_string(), &Method::GET, target, b"");
    let upper = headers["rn-access-sign"]
        .to_str()
        .unwrap()
        .to_ascii_uppercase();
    headers.insert("rn-access-sign", upper.parse().unwrap());
    let (response, calls) = verify(verifier(), request(headers, Method::GET, target, b"")).await;
    assert_eq!((response.status(), calls), (StatusCode::OK, 1));

    let padded = format!("000{NOW}");
    let headers = signed_headers(&padded, &Method::GET, target, b"");
    let (response, calls) = verify(verifier(), request(headers, Method::GET, target, b"")).await;
    assert_eq!((response.status(), calls), (StatusCode::OK, 1));
}

#[tokio::test]
async fn tolerance_edges_are_inclusive_at_60_seconds_either_way() {
    let target = "/api/x";
    for (offset, accepted) in [
        (-61i64, false),
        (-60, true),
        (0, true),
        (60, true),
        (61, false),
    ] {
        let ts = NOW.checked_add_signed(offset).unwrap().to_string();
        let headers = signed_headers(&ts, &Method::GET, target, b"");
        if accepted {
            let (response, calls) =
                verify(verifier(), request(headers, Method::GET, target, b"")).await;
            assert_eq!(
                (response.status(), calls),
                (StatusCode::OK, 1),
                "offset {offset}"
            );
        } else {
            assert_refused(
                request(headers, Method::GET, target, b""),
                verifier(),
                RejectionKind::StaleTimestamp,
            )
            .await;
        }
    }
    // A custom tolerance.
    let ts = (NOW - 10).to_string();
    let headers = signed_headers(&ts, &Method::GET, target, b"");
    let layer = verifier().tolerance(Duration::from_secs(5));
    assert_refused(
        request(headers, Method::GET, target, b""),
        layer,
        RejectionKind::StaleTimestamp,
    )
    .await;
}

#[tokio::test]
async fn stale_timestamp_reason_says_how_far_and_which_way() {
    let headers = signed_headers(&(NOW - 300).to_string(), &Method::GET, "/x", b"");
    let (response, _) = verify(verifier(), request(headers, Method::GET, "/x", b"")).await;
    let rejection = response.extensions().get::<Rejection>().unwrap();
    assert!(
        rejection.reason().contains("300 s behind"),
        "{}",
        rejection.reason()
    );
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_failing_bodies_400() {
    let target = "/api/x";
    let body: &'static [u8] = &[b'x'; 11];
    let headers = signed_headers(&NOW.to_string(), &Method::POST, target, body);
    assert_refused(
        request(headers.clone(), Method::POST, target, body),
        verifier().max_body_size(10),
        RejectionKind::BodyTooLarge,
    )
    .await;

    // Streamed, size unknown until read.
    let (mut tx, streamed) = Channel::<Bytes>::new(4);
    tx.send_data(Bytes::from_static(&[b'x'; 6])).await.unwrap();
    tx.send_data(Bytes::from_static(&[b'x'; 5])).await.unwrap();
    drop(tx);
    let mut req = Request::post(target).body(streamed).unwrap();
    *req.headers_mut() = headers.clone();
    let (response, calls) = verify(verifier().max_body_size(10), req).await;
    assert_eq!(
        (response.status(), calls),
        (StatusCode::PAYLOAD_TOO_LARGE, 0)
    );

    // A body that limits itself, as a server framework's body limit does: too large, too.
    let limited = http_body_util::Limited::new(SignedBody::from(body), 10);
    let mut req = Request::post(target).body(limited).unwrap();
    *req.headers_mut() = headers.clone();
    let (response, calls) = verify(verifier(), req).await;
    assert_eq!(
        (response.status(), calls),
        (StatusCode::PAYLOAD_TOO_LARGE, 0)
    );

    let (mut tx, failing) = Channel::<Bytes, std::io::Error>::new(4);
    tx.send_data(Bytes::from_static(b"xx")).await.unwrap();
    tx.abort(std::io::Error::other("connection reset"));
    let mut req = Request::post(target).body(failing).unwrap();
    *req.headers_mut() = headers;
    let (response, calls) = verify(verifier(), req).await;
    assert_eq!((response.status(), calls), (StatusCode::BAD_REQUEST, 0));
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().kind(),
        RejectionKind::Body
    );
}

#[tokio::test]
async fn replay_protection_refuses_a_verbatim_resend_but_not_a_re_signed_one() {
    let layer = verifier().reject_replays(1000);
    let target = "/api/x";
    let headers = signed_headers(&NOW.to_string(), &Method::GET, target, b"");
    let (first, _) = verify(
        layer.clone(),
        request(headers.clone(), Method::GET, target, b""),
    )
    .await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_refused(
        request(headers, Method::GET, target, b""),
        layer.clone(),
        RejectionKind::Replayed,
    )
    .await;
    let resigned = signed_headers(&(NOW - 1).to_string(), &Method::GET, target, b"");
    let (again, _) = verify(layer.clone(), request(resigned, Method::GET, target, b"")).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(layer.remembered_signatures(), Some(2));
}

/// A signed GET of `target` at `NOW` with the test key.
fn signed_get(target: &str) -> Request<SignedBody> {
    let headers = signed_headers(&NOW.to_string(), &Method::GET, target, b"");
    let mut req = Request::get(target).body(SignedBody::empty()).unwrap();
    *req.headers_mut() = headers;
    req
}

/// The replay memory never holds more than its capacity, and never makes room by forgetting:
/// once the key's share (half of 8) is full, further requests are refused with 503 instead of
/// accepted. (This test used to send 50 requests into a memory of 8 and expect all 50 to be
/// accepted, the oldest signatures forgotten: exactly what let their replays through.)
#[tokio::test]
async fn replay_memory_never_exceeds_its_capacity() {
    let layer = verifier().reject_replays(8);
    let mut statuses = Vec::new();
    for i in 0..50u64 {
        let (response, _) = verify(layer.clone(), signed_get(&format!("/api/x?i={i}"))).await;
        statuses.push(response.status());
        assert!(layer.remembered_signatures().unwrap() <= 8);
    }
    assert!(statuses[..4].iter().all(|s| *s == StatusCode::OK));
    assert!(statuses[4..]
        .iter()
        .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(layer.remembered_signatures(), Some(4));
}

/// With the old memory, a signature forgotten to make room could be replayed: capacity 8, nine
/// requests, and the first one's replay was accepted. Now the requests past the key's share
/// (half of 8) wait with 503, and the replays of the first ones are refused.
#[tokio::test]
async fn a_replay_of_a_signature_that_would_have_been_evicted_is_refused() {
    let layer = verifier().reject_replays(8);
    for i in 0..9u64 {
        let (response, calls) = verify(layer.clone(), signed_get(&format!("/api/x?i={i}"))).await;
        if i < 4 {
            assert_eq!(
                (response.status(), calls),
                (StatusCode::OK, 1),
                "request {i}"
            );
        } else {
            assert_eq!(
                (response.status(), calls),
                (StatusCode::SERVICE_UNAVAILABLE, 0),
                "request {i}"
            );
        }
    }
    for i in 0..4u64 {
        assert_refused(
            signed_get(&format!("/api/x?i={i}")),
            layer.clone(),
            RejectionKind::Replayed,
        )
        .await;
    }
    assert_eq!(layer.remembered_signatures(), Some(4));
}

#[tokio::test]
async fn a_full_replay_memory_answers_503_with_retry_after() {
    let layer = verifier().reject_replays(2); // one per key
    let (first, _) = verify(layer.clone(), signed_get("/api/a")).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_refused(
        signed_get("/api/b"),
        layer.clone(),
        RejectionKind::ReplayMemoryFull,
    )
    .await;
    let (response, calls) = verify(layer.clone(), signed_get("/api/b")).await;
    assert_eq!(calls, 0);
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The first signature (timestamp NOW, tolerance 60 s) is kept through NOW + 60: room frees
    // up 61 s from now.
    assert_eq!(response.headers()["retry-after"], "61");
    let rejection = response.extensions().get::<Rejection>().cloned().unwrap();
    assert_eq!(rejection.code(), "replay_memory_full");
    assert_eq!(rejection.retry_after(), Some(Duration::from_secs(61)));
    assert!(
        rejection.reason().contains("after 61 s"),
        "{}",
        rejection.reason()
    );
    // Once the clock has moved past the first signature's window, there is room again.
    let clock = Arc::new(std::sync::atomic::AtomicU64::new(NOW));
    let read = Arc::clone(&clock);
    let layer = verifier()
        .with_clock(move || {
            std::time::UNIX_EPOCH + Duration::from_secs(read.load(Ordering::SeqCst))
        })
        .replay_store(Arc::new(MemoryReplayStore::new(1)));
    let (response, _) = verify(layer.clone(), signed_get("/api/a")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(layer.remembered_signatures(), Some(1));
    clock.store(NOW + 60, Ordering::SeqCst);
    let (response, _) = verify(layer.clone(), signed_get("/api/b")).await;
    assert_eq!(response.headers()["retry-after"], "1");
    clock.store(NOW + 61, Ordering::SeqCst);
    let headers = signed_headers(&(NOW + 61).to_string(), &Method::GET, "/api/b", b"");
    let (response, _) = verify(layer.clone(), request(headers, Method::GET, "/api/b", b"")).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn one_key_filling_its_share_does_not_fail_another_keys_fresh_requests() {
    let a = credentials();
    let b = Credentials::new("ak_live_b", "pk_live_b_secret").unwrap();
    let layer = RampnowVerifyLayer::new(vec![a.clone(), b.clone()])
        .with_clock(fixed_clock(NOW))
        .reject_replays(8);
    let send = |credentials: &Credentials, target: String| {
        let signature = Signer::new(credentials).sign(NOW, &Method::GET, &target, b"");
        let mut headers = HeaderMap::new();
        headers.insert("rn-api-key", credentials.api_key().parse().unwrap());
        headers.insert("rn-access-timestamp", NOW.to_string().parse().unwrap());
        headers.insert("rn-access-sign", signature.to_string().parse().unwrap());
        let mut req = Request::get(target).body(SignedBody::empty()).unwrap();
        *req.headers_mut() = headers;
        verify(layer.clone(), req)
    };
    // Key A sends as fast as it can: it gets its half, then waits.
    let mut a_statuses = Vec::new();
    for i in 0..20 {
        a_statuses.push(send(&a, format!("/a?{i}")).await.0.status());
    }
    assert_eq!(
        a_statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        4
    );
    // Key B's fresh requests still go through.
    for i in 0..4 {
        let (response, calls) = send(&b, format!("/b?{i}")).await;
        assert_eq!(
            (response.status(), calls),
            (StatusCode::OK, 1),
            "B's request {i}"
        );
    }
}

/// A store plugged in with `replay_store` is asked once per verified request, with the key,
/// the signature, the clock's time and the end of the window; its answers decide, also when
/// they take a while (a boxed future, as a networked store would answer).
#[tokio::test]
async fn a_custom_replay_store_is_consulted() {
    #[derive(Default)]
    struct Scripted {
        asked: std::sync::Mutex<Vec<(String, String, u64, u64)>>,
    }
    impl ReplayStore for Scripted {
        fn check(
            &self,
            api_key: &str,
            signature: &Signature,
            now: u64,
            until: u64,
        ) -> ReplayFuture {
            let mut asked = self.asked.lock().unwrap();
            asked.push((api_key.to_owned(), signature.to_string(), now, until));
            match asked.len() {
                1 => ReplayFuture::ready(ReplayCheck::First),
                2 => ReplayFuture::new(async {
                    tokio::task::yield_now().await;
                    ReplayCheck::Replayed
                }),
                _ => ReplayFuture::new(async {
                    tokio::task::yield_now().await;
                    ReplayCheck::Full {
                        retry_after: Duration::from_millis(2_500),
                    }
                }),
            }
        }
    }
    let store = Arc::new(Scripted::default());
    let layer = verifier().replay_store(Arc::clone(&store));
    assert_eq!(layer.remembered_signatures(), None);

    let (first, calls) = verify(layer.clone(), signed_get("/api/1")).await;
    assert_eq!((first.status(), calls), (StatusCode::OK, 1));
    assert_refused(signed_get("/api/2"), layer.clone(), RejectionKind::Replayed).await;
    let (full, calls) = verify(layer.clone(), signed_get("/api/3")).await;
    assert_eq!((full.status(), calls), (StatusCode::SERVICE_UNAVAILABLE, 0));
    assert_eq!(full.headers()["retry-after"], "3", "rounded up");

    // A forged request is never asked about.
    let mut forged = signed_get("/api/4");
    forged
        .headers_mut()
        .insert("rn-access-sign", "0".repeat(64).parse().unwrap());
    let (response, _) = verify(layer.clone(), forged).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let asked = store.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 3);
    let expected = signed_headers(&NOW.to_string(), &Method::GET, "/api/1", b"")["rn-access-sign"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        asked[0],
        (common::API_KEY.to_owned(), expected, NOW, NOW + 60)
    );
}

#[tokio::test]
async fn forged_requests_do_not_enter_the_replay_memory() {
    let layer = verifier().reject_replays(8);
    let mut headers = signed_headers(&NOW.to_string(), &Method::GET, "/x", b"");
    headers.insert("rn-access-sign", "0".repeat(64).parse().unwrap());
    assert_refused(
        request(headers, Method::GET, "/x", b""),
        layer.clone(),
        RejectionKind::SignatureMismatch,
    )
    .await;
    assert_eq!(layer.remembered_signatures(), Some(0));
}

#[tokio::test]
async fn both_header_sets_are_accepted_unless_narrowed() {
    let server = verifier();
    for names in [HeaderNames::RN, HeaderNames::X_RAMPNOW] {
        let client = RampnowAuthLayer::new(credentials())
            .with_clock(fixed_clock(NOW))
            .header_names(names.clone());
        let calls = Arc::new(AtomicUsize::new(0));
        let stack = client.layer(server.layer(app(calls.clone())));
        let response = stack
            .oneshot(
                Request::post("https://api.rampnow.io/api/x")
                    .body(SignedBody::from("{}"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{names:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
    let narrowed = verifier().header_names(HeaderNames::RN);
    let client = RampnowAuthLayer::new(credentials())
        .with_clock(fixed_clock(NOW))
        .header_names(HeaderNames::X_RAMPNOW);
    let calls = Arc::new(AtomicUsize::new(0));
    let response = client
        .layer(narrowed.layer(app(calls.clone())))
        .oneshot(
            Request::get("https://api.rampnow.io/api/x")
                .body(SignedBody::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn several_keys_for_a_rotation_with_overlap() {
    let old = Credentials::new("ak_old", "pk_old_secret").unwrap();
    let new = Credentials::new("ak_new", "pk_new_secret").unwrap();
    // A list of credentials is a key store too (the rotation test in beyond.rs uses a map).
    let server =
        RampnowVerifyLayer::new(vec![old.clone(), new.clone()]).with_clock(fixed_clock(NOW));
    for credentials in [old, new] {
        let calls = Arc::new(AtomicUsize::new(0));
        let stack = RampnowAuthLayer::new(credentials.clone())
            .with_clock(fixed_clock(NOW))
            .layer(server.layer(app(calls)));
        let response = stack
            .oneshot(
                Request::get("https://api.rampnow.io/x")
                    .body(SignedBody::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = common::text(response).await;
        assert_eq!(body, format!("{}:0", credentials.api_key()));
    }
}

#[tokio::test]
async fn round_trip_for_every_body_size_and_chunking() {
    let server = verifier();
    let client = RampnowAuthLayer::new(credentials()).with_clock(fixed_clock(NOW));
    for size in [0usize, 200, 1024 * 1024] {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let calls = Arc::new(AtomicUsize::new(0));
        let stack = client.clone().layer(server.layer(app(calls.clone())));
        let response = stack
            .oneshot(
                Request::post("https://api.rampnow.io/api/x?q=1")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "size {size}");
        assert_eq!(
            common::text(response).await,
            format!("{}:{size}", common::API_KEY)
        );
    }
    // Streamed in chunks.
    let (mut tx, streamed) = Channel::<Bytes>::new(2);
    tokio::spawn(async move {
        for i in 0..10 {
            tx.send_data(Bytes::from(vec![i as u8; 1000]))
                .await
                .unwrap();
        }
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let stack = client.layer(server.layer(app(calls)));
    let response = stack
        .oneshot(
            Request::post("https://api.rampnow.io/api/x")
                .body(streamed)
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        common::text(response).await,
        format!("{}:10000", common::API_KEY)
    );
}

/// An inner service that counts how many times it is cloned.
struct CountClones<S> {
    inner: S,
    clones: Arc<AtomicUsize>,
}

impl<S: Clone> Clone for CountClones<S> {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::SeqCst);
        CountClones {
            inner: self.inner.clone(),
            clones: self.clones.clone(),
        }
    }
}

impl<S, R> tower::Service<R> for CountClones<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> S::Future {
        self.inner.call(request)
    }
}

#[tokio::test]
async fn a_request_refused_on_its_headers_does_not_clone_the_inner_service() {
    let clones = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut service = verifier().layer(CountClones {
        inner: app(calls.clone()),
        clones: clones.clone(),
    });
    let unsigned = Request::get("/api/x").body(SignedBody::empty()).unwrap();
    let response = ServiceExt::<Request<SignedBody>>::ready(&mut service)
        .await
        .unwrap()
        .call(unsigned)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(clones.load(Ordering::SeqCst), 0);

    let headers = signed_headers(&NOW.to_string(), &Method::GET, "/api/x", b"");
    let signed = request(headers, Method::GET, "/api/x", b"");
    let response = ServiceExt::<Request<SignedBody>>::ready(&mut service)
        .await
        .unwrap()
        .call(signed)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        (clones.load(Ordering::SeqCst), calls.load(Ordering::SeqCst)),
        (1, 1)
    );
}

/// Targets a signature cannot cover as received — a tunnel (`CONNECT`), a bare host (authority
/// form), `*` (asterisk form), an absolute URI with a query but no path — are refused with 400
/// before the body is read and without a clone of the inner service, even when signed over
/// what the client claims (`/`, or the target itself).
#[tokio::test]
async fn targets_without_a_path_and_connect_are_refused_before_the_body() {
    let cases: [(Method, &str, &str); 6] = [
        (Method::CONNECT, "api.rampnow.io:443", "/"),
        (Method::CONNECT, "api.rampnow.io:443", ""),
        (Method::CONNECT, "/api/x", "/api/x"),
        (Method::OPTIONS, "*", "*"),
        (Method::OPTIONS, "*", "/"),
        (Method::GET, "https://api.rampnow.io?a=1", "?a=1"),
    ];
    for (method, uri, signed_over) in cases {
        let clones = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut service = verifier().layer(CountClones {
            inner: app(calls.clone()),
            clones: clones.clone(),
        });
        // A body that never ends: reading it would hang the test.
        let (_tx, body) = Channel::<Bytes>::new(1);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(uri)
            .body(body)
            .unwrap();
        *request.headers_mut() = signed_headers(&NOW.to_string(), &method, signed_over, b"");
        let response = tokio::time::timeout(Duration::from_secs(5), async {
            ServiceExt::<Request<Channel<Bytes>>>::ready(&mut service)
                .await
                .unwrap()
                .call(request)
                .await
                .unwrap()
        })
        .await
        .unwrap_or_else(|_| panic!("{method} {uri}: the body was waited for"));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{method} {uri}");
        let rejection = response.extensions().get::<Rejection>().cloned().unwrap();
        assert_eq!(
            rejection.kind(),
            RejectionKind::InvalidTarget,
            "{method} {uri}"
        );
        assert_eq!(rejection.code(), "invalid_target");
        assert!(
            rejection.reason().contains("send"),
            "{method} {uri}: the reason says what to do: {}",
            rejection.reason()
        );
        let json: serde_json::Value = serde_json::from_str(&common::text(response).await).unwrap();
        assert_eq!(json["error"], "invalid_target");
        assert_eq!(
            (clones.load(Ordering::SeqCst), calls.load(Ordering::SeqCst)),
            (0, 0),
            "{method} {uri}"
        );
    }
}

/// A body that trickles a byte at a time, forever: the deadline is for the whole body, not
/// each frame, so it is cut with 408 and the inner service never sees it. (Before the timeout
/// existed, such a body held the request for as long as the client liked.)
#[tokio::test]
async fn a_trickling_body_is_cut_with_408_and_never_reaches_the_inner_service() {
    let headers = signed_headers(&NOW.to_string(), &Method::POST, "/api/x", b"");
    let (mut tx, trickle) = Channel::<Bytes>::new(1);
    let sender = tokio::spawn(async move {
        for _ in 0..1_000 {
            if tx.send_data(Bytes::from_static(b"x")).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut req = Request::post("/api/x").body(trickle).unwrap();
    *req.headers_mut() = headers.clone();
    let layer = verifier().body_read_timeout(Duration::from_millis(300));
    let (response, calls) = tokio::time::timeout(Duration::from_secs(10), verify(layer, req))
        .await
        .expect("the trickling body was waited for past the timeout");
    sender.abort();
    assert_eq!((response.status(), calls), (StatusCode::REQUEST_TIMEOUT, 0));
    assert_eq!(response.headers()["connection"], "close");
    let rejection = response.extensions().get::<Rejection>().cloned().unwrap();
    assert_eq!(rejection.kind(), RejectionKind::BodyTimeout);
    assert!(
        rejection.reason().contains("300 ms"),
        "{}",
        rejection.reason()
    );
    let json: serde_json::Value = serde_json::from_str(&common::text(response).await).unwrap();
    assert_eq!(json["error"], "body_timeout");

    // A body that never sends anything at all.
    let (_tx, silent) = Channel::<Bytes>::new(1);
    let mut req = Request::post("/api/x").body(silent).unwrap();
    *req.headers_mut() = headers;
    let layer = verifier().body_read_timeout(Duration::from_millis(100));
    let (response, calls) = tokio::time::timeout(Duration::from_secs(10), verify(layer, req))
        .await
        .expect("the silent body was waited for past the timeout");
    assert_eq!((response.status(), calls), (StatusCode::REQUEST_TIMEOUT, 0));
}

/// A slow body that arrives whole before the deadline is verified as usual.
#[tokio::test]
async fn a_slow_body_within_the_timeout_is_accepted() {
    let body = b"{\"a\":1}";
    let headers = signed_headers(&NOW.to_string(), &Method::POST, "/api/x", body);
    let (mut tx, slow) = Channel::<Bytes>::new(1);
    tokio::spawn(async move {
        for byte in body {
            tokio::time::sleep(Duration::from_millis(5)).await;
            tx.send_data(Bytes::copy_from_slice(&[*byte]))
                .await
                .unwrap();
        }
    });
    let mut req = Request::post("/api/x").body(slow).unwrap();
    *req.headers_mut() = headers;
    let layer = verifier().body_read_timeout(Duration::from_secs(5));
    let (response, calls) = verify(layer, req).await;
    assert_eq!((response.status(), calls), (StatusCode::OK, 1));
}

/// Polls `future` once, outside any runtime.
fn poll_once<F: std::future::Future>(future: F) -> std::task::Poll<F::Output> {
    let mut future = std::pin::pin!(future);
    future
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
}

/// Without a Tokio timer: a body already in memory needs none; a body still to come is refused
/// with 500 (`server_timer`) instead of a panic, both outside any runtime and in a runtime
/// without the time driver; with the timeout off, no timer is asked for at all. (Tokio's
/// "timers are disabled" panic is caught by the verifier; its message still shows in the test
/// output.)
#[test]
fn without_a_tokio_timer_nothing_panics() {
    let signed = |body: &'static [u8]| {
        request(
            signed_headers(&NOW.to_string(), &Method::POST, "/api/x", body),
            Method::POST,
            "/api/x",
            body,
        )
    };
    let pending = || {
        let (tx, body) = Channel::<Bytes>::new(1);
        let mut req = Request::post("/api/x").body(body).unwrap();
        *req.headers_mut() = signed_headers(&NOW.to_string(), &Method::POST, "/api/x", b"");
        (tx, req)
    };
    let calls = Arc::new(AtomicUsize::new(0));

    // Outside any runtime.
    let std::task::Poll::Ready(Ok(response)) =
        poll_once(verifier().layer(app(calls.clone())).oneshot(signed(b"{}")))
    else {
        panic!("an in-memory body is verified at once");
    };
    assert_eq!(response.status(), StatusCode::OK);
    let (_tx, req) = pending();
    let std::task::Poll::Ready(Ok(response)) =
        poll_once(verifier().layer(app(calls.clone())).oneshot(req))
    else {
        panic!("refused at once");
    };
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().kind(),
        RejectionKind::ServerTimer
    );
    let (_tx, req) = pending();
    assert!(poll_once(
        verifier()
            .body_read_timeout(None)
            .layer(app(calls.clone()))
            .oneshot(req)
    )
    .is_pending());

    // In a runtime without the time driver.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (_tx, req) = pending();
    let response = runtime
        .block_on(verifier().layer(app(calls.clone())).oneshot(req))
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let rejection = response.extensions().get::<Rejection>().cloned().unwrap();
    assert_eq!(rejection.code(), "server_timer");
    assert!(rejection.reason().contains("time driver"));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "only the in-memory body got through"
    );
}

/// A replay whose headers arrive inside the tolerance window but whose body is held back until
/// the original signature has left the window, and the replay memory.
mod held_back_body {
    use super::common;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use bytes::Bytes;
    use http::{HeaderMap, Method, Request, Response, StatusCode};
    use http_body_util::channel::Channel;
    use http_body_util::Full;
    use rampnow_auth::verify::{RampnowVerifyLayer, Rejection, RejectionKind};
    use rampnow_auth::{Credentials, SignedBody, Signer};
    use tower::{service_fn, Layer, ServiceExt};

    use super::NOW;

    fn headers(ts: u64, target: &str, body: &[u8]) -> HeaderMap {
        let creds = Credentials::new(common::API_KEY, common::SECRET).unwrap();
        let sig = Signer::new(&creds)
            .sign(ts, &Method::POST, target, body)
            .to_string();
        let mut h = HeaderMap::new();
        h.insert("rn-api-key", common::API_KEY.parse().unwrap());
        h.insert("rn-access-timestamp", ts.to_string().parse().unwrap());
        h.insert("rn-access-sign", sig.parse().unwrap());
        h
    }

    #[tokio::test]
    async fn a_replay_whose_body_is_held_back_until_the_original_is_forgotten_is_refused() {
        let clock = Arc::new(AtomicU64::new(NOW));
        let c = clock.clone();
        let layer =
            RampnowVerifyLayer::new(Credentials::new(common::API_KEY, common::SECRET).unwrap())
                .with_clock(move || UNIX_EPOCH + Duration::from_secs(c.load(Ordering::SeqCst)))
                .reject_replays(100);
        let calls = Arc::new(AtomicUsize::new(0));
        let cc = calls.clone();
        let svc = layer.layer(service_fn(move |_r: Request<SignedBody>| {
            cc.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")))) }
        }));
        let target = "/api/partner/v1/ext/ramp_order/quote";
        let body = b"{\"amount\":\"100\"}";

        // 1. The victim's request, accepted.
        let mut original = Request::post(target)
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        *original.headers_mut() = headers(NOW, target, body);
        let signed = original.headers().clone();
        let r = svc.clone().oneshot(original).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);

        // 2. The attacker replays the captured headers at the last second of the window, and holds
        //    the body back (a few seconds; anything under body_read_timeout, 30 s by default).
        clock.store(NOW + 60, Ordering::SeqCst);
        let (mut tx, slow) = Channel::<Bytes>::new(1);
        let mut replay = Request::post(target).body(slow).unwrap();
        *replay.headers_mut() = signed;
        let s = svc.clone();
        let replay = tokio::spawn(async move { s.oneshot(replay).await.unwrap() });
        tokio::time::sleep(Duration::from_millis(50)).await; // headers checked: now = NOW + 60

        // 3. Time passes; any other verified request (ordinary traffic) prunes the memory.
        clock.store(NOW + 62, Ordering::SeqCst);
        let other = b"{}";
        let mut later = Request::post(target)
            .body(Full::new(Bytes::from_static(other)))
            .unwrap();
        *later.headers_mut() = headers(NOW + 62, target, other);
        assert_eq!(
            svc.clone().oneshot(later).await.unwrap().status(),
            StatusCode::OK
        );

        // 4. The body arrives.
        tx.send_data(Bytes::from_static(body)).await.unwrap();
        drop(tx);
        let answer = replay.await.unwrap();
        // Stale by the time its body is in: refused, and the inner service saw only the two
        // honest requests.
        assert_eq!(
            answer.status(),
            StatusCode::UNAUTHORIZED,
            "replayed request accepted: inner service called {} times",
            calls.load(Ordering::SeqCst)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let rejection = answer.extensions().get::<Rejection>().unwrap();
        assert_eq!(rejection.kind(), RejectionKind::StaleTimestamp);
    }
}
