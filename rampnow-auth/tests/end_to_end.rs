//! Signed requests over a real hyper client to a real hyper server on 127.0.0.1, whose
//! handler recomputes each signature from the bytes it received.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{hyper_client, now_secs, text, Names, TestServer, RN, X_RAMPNOW};
use http::{Method, Request, StatusCode};
use http_body_util::channel::Channel;
use http_body_util::Full;
use rampnow_auth::{Credentials, HeaderNames, RampnowAuthLayer, SignedBody};
use tower::{BoxError, Layer, ServiceExt};

fn layer(names: HeaderNames) -> RampnowAuthLayer {
    RampnowAuthLayer::new(Credentials::new(common::API_KEY, common::SECRET).unwrap())
        .header_names(names)
        .allow_http(true)
}

async fn send<B>(names: HeaderNames, request: Request<B>) -> Result<(StatusCode, String), BoxError>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let client = layer(names).layer(hyper_client());
    let response = client.oneshot(request).await?;
    let status = response.status();
    Ok((status, text(response).await))
}

async fn server(names: Names) -> TestServer {
    TestServer::start(names, now_secs, 0).await
}

#[tokio::test]
async fn get_with_query_is_verified() {
    let server = server(RN).await;
    let uri = server.url("/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD&dstCurrency=BTC&email=a%2Bb%40x.io&z=1&z=0");
    let request = Request::get(uri).body(SignedBody::empty()).unwrap();
    let (status, body) = send(HeaderNames::RN, request).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].target,
        "/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD&dstCurrency=BTC&email=a%2Bb%40x.io&z=1&z=0"
    );
    assert!(seen[0].headers["rn-api-key"] == common::API_KEY);
}

#[tokio::test]
async fn post_json_is_verified_and_sent_with_content_length() {
    let server = server(RN).await;
    let json = r#"{"orderType":"buy","srcAmount":"100.0","srcCurrency":"EUR"}"#;
    let request = Request::post(server.url("/api/partner/v1/ext/ramp_order/quote"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json)))
        .unwrap();
    let (status, body) = send(HeaderNames::RN, request).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = &server.seen()[0];
    assert_eq!(seen.body, json);
    assert_eq!(
        seen.headers["content-length"],
        json.len().to_string().as_str()
    );
    assert!(seen.headers.get("transfer-encoding").is_none());
}

#[tokio::test]
async fn empty_put_and_delete_are_verified() {
    let server = server(RN).await;
    for method in [Method::PUT, Method::DELETE] {
        let request = Request::builder()
            .method(method.clone())
            .uri(server.url("/api/partner/v1/ext/ramp_order/abc"))
            .body(SignedBody::empty())
            .unwrap();
        let (status, body) = send(HeaderNames::RN, request).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{method}: {body}");
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(seen[1].method, "DELETE");
    assert!(seen.iter().all(|s| s.body.is_empty() && s.verdict.is_ok()));
}

#[tokio::test]
async fn one_mebibyte_body_is_verified() {
    let server = server(RN).await;
    let body: Vec<u8> = (0..1024 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    let request = Request::post(server.url("/api/partner/v1/ext/bulk"))
        .body(SignedBody::from(body.clone()))
        .unwrap();
    let (status, text) = send(HeaderNames::RN, request).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(server.seen()[0].body, body);
    assert_eq!(server.seen()[0].headers["content-length"], "1048576");
}

#[tokio::test]
async fn body_streamed_in_chunks_is_collected_signed_and_sent_in_one_piece() {
    let server = server(RN).await;
    let (mut sender, body) = Channel::<Bytes>::new(2);
    let chunks: Vec<Bytes> = (0..8)
        .map(|i| {
            Bytes::from(format!(
                "{{\"chunk\":{i},\"pad\":\"{}\"}}",
                "x".repeat(i * 100)
            ))
        })
        .collect();
    let expected: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
    tokio::spawn(async move {
        for chunk in chunks {
            tokio::time::sleep(Duration::from_millis(5)).await;
            sender.send_data(chunk).await.unwrap();
        }
    });
    let request = Request::post(server.url("/api/partner/v1/ext/stream"))
        .body(body)
        .unwrap();
    let (status, text) = send(HeaderNames::RN, request).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    let seen = &server.seen()[0];
    assert_eq!(seen.body, expected);
    assert_eq!(
        seen.headers["content-length"],
        expected.len().to_string().as_str()
    );
}

#[tokio::test]
async fn x_rampnow_preset_is_verified_by_a_server_expecting_it() {
    let server = server(X_RAMPNOW).await;
    let request = Request::post(server.url("/api/partner/v1/ext/ramp_order/quote?a=1"))
        .body(SignedBody::from(r#"{"a":1}"#))
        .unwrap();
    let (status, text) = send(HeaderNames::X_RAMPNOW, request).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    let seen = &server.seen()[0];
    assert!(seen.headers.get("rn-access-sign").is_none());
    assert!(seen.headers.get("x-rampnow-sign").is_some());
}

#[tokio::test]
async fn a_server_expecting_the_other_preset_rejects() {
    // The check is not vacuous: the same request under the RN names fails an X-RAMPNOW server.
    let server = server(X_RAMPNOW).await;
    let request = Request::get(server.url("/api/x"))
        .body(SignedBody::empty())
        .unwrap();
    let (status, text) = send(HeaderNames::RN, request).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(text.contains("missing"), "{text}");
}

#[tokio::test]
async fn a_wrong_secret_is_rejected_by_the_server() {
    let server = server(RN).await;
    let client = RampnowAuthLayer::new(Credentials::new(common::API_KEY, "pk_live_wrong").unwrap())
        .allow_http(true)
        .layer(hyper_client());
    let request = Request::get(server.url("/api/x"))
        .body(SignedBody::empty())
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(text(response).await, "signature mismatch");
}
