//! The sandbox as a user runs it: started through the library API, reached over real TLS on
//! 127.0.0.1 by hyper's client with the signing layer (or without it, to send what a broken
//! client would).

mod common;

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use common::now_secs;
use http::{Method, Request, Response, StatusCode};
use http_body_util::channel::Channel;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use rampnow_auth::verify::RejectionKind;
use rampnow_auth::{Credentials, HeaderNames, RampnowAuthLayer, SignedBody, Signer};
use rampnow_sandbox::{Sandbox, SandboxBuilder, QUOTE_PATH, SANDBOX_API_KEY, SANDBOX_API_SECRET};
use serde_json::{json, Value};
use tower::{Layer, ServiceExt};

type HttpsClient = Client<HttpsConnector<HttpConnector>, SignedBody>;

fn quiet() -> SandboxBuilder {
    Sandbox::builder().quiet(true)
}

async fn start(builder: SandboxBuilder) -> Sandbox {
    builder.start().await.expect("the sandbox starts")
}

/// A plain hyper client that trusts the sandbox's certificate (and nothing else).
fn https_client(sandbox: &Sandbox) -> HttpsClient {
    common::sandbox_client(sandbox)
}

/// The layer in front of that client, signing with the sandbox's credentials.
fn layer(sandbox: &Sandbox) -> RampnowAuthLayer {
    RampnowAuthLayer::new(sandbox.credentials().clone())
}

async fn json_of(response: Response<Incoming>) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, json)
}

/// Signs with `layer` and sends.
async fn send<B>(
    sandbox: &Sandbox,
    layer: RampnowAuthLayer,
    request: Request<B>,
) -> (StatusCode, Value)
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<tower::BoxError>,
{
    let client = layer.layer(https_client(sandbox));
    json_of(client.oneshot(request).await.expect("request sent")).await
}

/// Sends as is, unsigned unless the request carries the headers itself.
async fn send_raw(sandbox: &Sandbox, request: Request<SignedBody>) -> (StatusCode, Value) {
    let response = https_client(sandbox)
        .request(request)
        .await
        .expect("request sent");
    json_of(response).await
}

fn quote_query(src: &str, dst: &str, amount: &str) -> String {
    format!("{QUOTE_PATH}?srcCurrency={src}&dstCurrency={dst}&srcAmount={amount}")
}

#[tokio::test]
async fn bodies_of_every_size_verify_under_both_header_sets() {
    let sandbox = start(quiet()).await;
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    let bodies = [Vec::new(), vec![b'x'; 200], big];
    for names in [HeaderNames::RN, HeaderNames::X_RAMPNOW] {
        for body in &bodies {
            let target = format!(
                "/api/partner/v1/ext/echo?len={}&names={}",
                body.len(),
                names.api_key()
            );
            let request = Request::post(format!("{}{target}", sandbox.url()))
                .body(SignedBody::from(body.clone()))
                .unwrap();
            let (status, json) = send(
                &sandbox,
                layer(&sandbox).header_names(names.clone()),
                request,
            )
            .await;
            // The router's 404 answers only requests the verifier let through.
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{names:?} {}: {json}",
                body.len()
            );
            assert_eq!(json["error"], "not_found");
            let entry = sandbox.log().pop().unwrap();
            assert_eq!(entry.rejection, None, "{names:?} {}", body.len());
            assert!(entry.verified());
            assert_eq!(entry.method, Method::POST);
            assert_eq!(entry.target, target);
            assert_eq!(entry.status, StatusCode::NOT_FOUND);
        }
    }
    assert_eq!(sandbox.log().len(), 6);
}

#[tokio::test]
async fn a_body_streamed_in_chunks_verifies() {
    let sandbox = start(quiet()).await;
    let (mut sender, body) = Channel::<Bytes>::new(1);
    let chunks: Vec<Bytes> = (0..16)
        .map(|i| {
            Bytes::from(format!(
                "{{\"chunk\":{i},\"pad\":\"{}\"}}",
                "y".repeat(i * 64)
            ))
        })
        .collect();
    tokio::spawn(async move {
        for chunk in chunks {
            if sender.send_data(chunk).await.is_err() {
                return;
            }
        }
    });
    let request = Request::post(format!("{}/api/partner/v1/ext/stream", sandbox.url()))
        .body(body)
        .unwrap();
    let (status, json) = send(&sandbox, layer(&sandbox), request).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{json}");
    assert_eq!(sandbox.log()[0].rejection, None);
}

#[tokio::test]
async fn signed_quotes_by_get_and_post_are_answered_deterministically() {
    let sandbox = start(quiet()).await;

    let get = Request::get(format!(
        "{}{}",
        sandbox.url(),
        quote_query("USD", "BTC", "100")
    ))
    .body(SignedBody::empty())
    .unwrap();
    let (status, quote) = send(&sandbox, layer(&sandbox), get).await;
    assert_eq!(status, StatusCode::OK, "{quote}");
    assert_eq!(quote["srcCurrency"], "USD");
    assert_eq!(quote["dstCurrency"], "BTC");
    assert_eq!(quote["srcAmount"], "100");
    assert_eq!(quote["feeAmount"], "1.00");
    assert_eq!(quote["feeCurrency"], "USD");
    assert_eq!(quote["rate"], "0.00002000");
    assert_eq!(quote["dstAmount"], "0.00198000");
    assert_eq!(quote["sandbox"], true);
    assert!(quote.get("apiKey").is_none() && !quote.to_string().contains(SANDBOX_API_KEY));
    let get_id = quote["quoteId"].clone();

    // The same quote asked by POST: same answer, same id.
    let body = json!({"srcCurrency": "USD", "dstCurrency": "BTC", "srcAmount": "100", "walletAddress": "bc1qsandbox"});
    let post = Request::post(format!("{}{QUOTE_PATH}", sandbox.url()))
        .header("content-type", "application/json")
        .body(SignedBody::from(body.to_string()))
        .unwrap();
    let (status, quote) = send(&sandbox, layer(&sandbox), post).await;
    assert_eq!(status, StatusCode::OK, "{quote}");
    assert_eq!(quote["quoteId"], get_id);
    assert_eq!(quote["dstAmount"], "0.00198000");

    let body = r#"{"srcCurrency": "EUR", "dstCurrency": "ETH", "srcAmount": "100.0"}"#;
    let post = Request::post(format!("{}{QUOTE_PATH}", sandbox.url()))
        .body(SignedBody::from(body))
        .unwrap();
    let (status, quote) = send(&sandbox, layer(&sandbox), post).await;
    assert_eq!(status, StatusCode::OK, "{quote}");
    assert_eq!(quote["srcCurrency"], "EUR");
    assert_eq!(quote["dstCurrency"], "ETH");
    assert_eq!(quote["srcAmount"], "100.0");
    assert_eq!(quote["feeAmount"], "1.00");
    assert_eq!(quote["rate"], "0.00044000");
    assert_eq!(quote["dstAmount"], "0.04356000");
    assert_ne!(quote["quoteId"], get_id);

    let log = sandbox.log();
    assert_eq!(log.len(), 3);
    assert!(log
        .iter()
        .all(|e| e.verified() && e.status == StatusCode::OK));
    assert_eq!(log[0].method, Method::GET);
    assert_eq!(log[1].target, QUOTE_PATH);
}

#[tokio::test]
async fn bad_quotes_and_other_methods_get_json_errors_after_verifying() {
    let sandbox = start(quiet()).await;
    let cases = [
        (
            Method::GET,
            quote_query("USD", "XYZ", "100"),
            "",
            StatusCode::BAD_REQUEST,
            "unsupported_currency",
        ),
        (
            Method::GET,
            format!("{QUOTE_PATH}?srcCurrency=USD&srcAmount=5"),
            "",
            StatusCode::BAD_REQUEST,
            "missing_parameter",
        ),
        (
            Method::GET,
            quote_query("USD", "BTC", "-5"),
            "",
            StatusCode::BAD_REQUEST,
            "invalid_amount",
        ),
        (
            Method::POST,
            QUOTE_PATH.to_owned(),
            "not json",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Method::PUT,
            QUOTE_PATH.to_owned(),
            "",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "/".to_owned(),
            "",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (method, target, body, expected_status, expected_error) in cases {
        let request = Request::builder()
            .method(method.clone())
            .uri(format!("{}{target}", sandbox.url()))
            .body(SignedBody::from(body))
            .unwrap();
        let (status, json) = send(&sandbox, layer(&sandbox), request).await;
        assert_eq!(status, expected_status, "{method} {target}: {json}");
        assert_eq!(json["error"], expected_error, "{method} {target}");
        assert!(json["reason"].as_str().is_some_and(|r| !r.is_empty()));
        assert!(sandbox.log().pop().unwrap().verified());
    }
}

#[tokio::test]
async fn a_wrong_secret_is_refused_as_signature_mismatch() {
    let sandbox = start(quiet()).await;
    let wrong =
        RampnowAuthLayer::new(Credentials::new(SANDBOX_API_KEY, "pk_sandbox_wrong").unwrap());
    let request = Request::get(format!(
        "{}{}",
        sandbox.url(),
        quote_query("USD", "BTC", "100")
    ))
    .body(SignedBody::empty())
    .unwrap();
    let (status, json) = send(&sandbox, wrong, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["error"], "signature_mismatch");
    assert!(json["reason"].as_str().unwrap().contains("does not match"));
    let entry = sandbox.log().pop().unwrap();
    assert_eq!(entry.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        entry.rejection.unwrap().kind(),
        RejectionKind::SignatureMismatch
    );
}

#[tokio::test]
async fn an_unknown_key_and_an_unsigned_request_are_refused() {
    let sandbox = start(quiet()).await;
    let stranger =
        RampnowAuthLayer::new(Credentials::new("ak_stranger", SANDBOX_API_SECRET).unwrap());
    let request = Request::get(format!("{}{QUOTE_PATH}", sandbox.url()))
        .body(SignedBody::empty())
        .unwrap();
    let (status, json) = send(&sandbox, stranger, request).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unknown_api_key"))
    );

    let request = Request::get(format!(
        "{}{}",
        sandbox.url(),
        quote_query("USD", "BTC", "100")
    ))
    .body(SignedBody::empty())
    .unwrap();
    let (status, json) = send_raw(&sandbox, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["error"], "missing_header");
    let kinds: Vec<_> = sandbox
        .log()
        .into_iter()
        .map(|e| e.rejection.map(|r| r.kind()))
        .collect();
    assert_eq!(
        kinds,
        [
            Some(RejectionKind::UnknownApiKey),
            Some(RejectionKind::MissingHeader)
        ]
    );
}

/// The exact same signed request, built by hand with `Signer`.
fn signed_by_hand(sandbox: &Sandbox, timestamp: u64) -> impl Fn() -> Request<SignedBody> {
    let target = quote_query("USD", "BTC", "100");
    let signature = Signer::new(sandbox.credentials()).sign(timestamp, &Method::GET, &target, b"");
    let uri = format!("{}{target}", sandbox.url());
    let key = sandbox.credentials().api_key().to_owned();
    move || {
        Request::get(&uri)
            .header("rn-api-key", &key)
            .header("rn-access-timestamp", timestamp.to_string())
            .header("rn-access-sign", signature.to_string())
            .body(SignedBody::empty())
            .unwrap()
    }
}

#[tokio::test]
async fn a_replayed_request_is_refused_the_second_time() {
    let sandbox = start(quiet()).await;
    assert_eq!(sandbox.remembered_signatures(), Some(0));
    let request = signed_by_hand(&sandbox, now_secs());

    let (status, first) = send_raw(&sandbox, request()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(sandbox.remembered_signatures(), Some(1));

    let (status, json) = send_raw(&sandbox, request()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["error"], "replayed");
    assert_eq!(
        sandbox.log()[1].rejection.as_ref().map(|r| r.kind()),
        Some(RejectionKind::Replayed)
    );
}

#[tokio::test]
async fn replays_can_be_accepted() {
    let sandbox = start(quiet().accept_replays()).await;
    assert_eq!(sandbox.remembered_signatures(), None);
    let request = signed_by_hand(&sandbox, now_secs());
    for _ in 0..2 {
        let (status, json) = send_raw(&sandbox, request()).await;
        assert_eq!(status, StatusCode::OK, "{json}");
    }
}

#[tokio::test]
async fn a_sandbox_clock_five_minutes_ahead_refuses_the_client_clock() {
    let sandbox = start(quiet().clock_skew_secs(300)).await;
    let target = format!("{}{}", sandbox.url(), quote_query("USD", "BTC", "100"));

    let request = Request::get(&target).body(SignedBody::empty()).unwrap();
    let (status, json) = send(&sandbox, layer(&sandbox), request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["error"], "stale_timestamp");
    assert!(
        json["reason"].as_str().unwrap().contains("behind"),
        "{json}"
    );

    // A client whose clock agrees with the sandbox's is accepted.
    let ahead = layer(&sandbox).with_clock(|| UNIX_EPOCH + Duration::from_secs(now_secs() + 300));
    let request = Request::get(&target).body(SignedBody::empty()).unwrap();
    let (status, json) = send(&sandbox, ahead, request).await;
    assert_eq!(status, StatusCode::OK, "{json}");
}

#[tokio::test]
async fn custom_credentials_replace_the_sandbox_pair() {
    let mine = Credentials::new("ak_test_mine", "pk_test_mine").unwrap();
    let sandbox = start(quiet().credentials(mine.clone())).await;
    assert_eq!(sandbox.credentials().api_key(), "ak_test_mine");
    let url = format!("{}{}", sandbox.url(), quote_query("GBP", "SOL", "10"));

    let request = Request::get(&url).body(SignedBody::empty()).unwrap();
    let (status, json) = send(&sandbox, RampnowAuthLayer::new(mine), request).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["dstAmount"], "0.12375000");

    let default_pair = rampnow_sandbox::sandbox_credentials();
    let request = Request::get(&url).body(SignedBody::empty()).unwrap();
    let (status, json) = send(&sandbox, RampnowAuthLayer::new(default_pair), request).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unknown_api_key"))
    );
}

#[tokio::test]
async fn the_certificate_and_url_describe_the_running_sandbox() {
    let sandbox = start(quiet()).await;
    let addr = sandbox.addr();
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);
    assert_eq!(sandbox.url(), format!("https://127.0.0.1:{}", addr.port()));
    assert!(sandbox
        .ca_cert_pem()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(!sandbox.ca_cert_der().is_empty());
    let debug = format!("{sandbox:?}");
    assert!(
        debug.contains(&sandbox.url()) && !debug.contains(SANDBOX_API_SECRET),
        "{debug}"
    );

    // Another sandbox's certificate is not trusted: the TLS handshake fails.
    let other = start(quiet()).await;
    let request = Request::get(format!("{}/", sandbox.url()))
        .body(SignedBody::empty())
        .unwrap();
    assert!(https_client(&other).request(request).await.is_err());
    assert!(sandbox.log().is_empty());
}

#[tokio::test]
async fn a_port_in_use_is_reported_and_shutdown_frees_it() {
    let sandbox = start(quiet()).await;
    let addr = sandbox.addr();
    let err = quiet().addr(addr).start().await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    assert!(err.to_string().contains("another port"), "{err}");

    sandbox.shutdown().await;
    let again = quiet()
        .addr(addr)
        .start()
        .await
        .expect("the port is free again");
    assert_eq!(again.addr(), addr);
}

#[tokio::test]
async fn an_absurd_clock_skew_is_refused() {
    let err = quiet().clock_skew_secs(i64::MIN).start().await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("ten years"), "{err}");
}
