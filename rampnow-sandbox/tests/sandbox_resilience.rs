//! The limits the sandbox plays as Rampnow does (`rate_limit` → `429` with `Retry-After`,
//! `fail_every` → `503`) and the `code` in every error body, seen by real clients over TLS on
//! 127.0.0.1.

mod common;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use common::now_secs;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rampnow_auth::{Credentials, RampnowAuthLayer, SignedBody, Signer};
use rampnow_sandbox::{LimitRefusal, Sandbox, SandboxBuilder, QUOTE_PATH};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tower::{Layer, ServiceExt};

fn quiet() -> SandboxBuilder {
    Sandbox::builder().quiet(true)
}

async fn start(builder: SandboxBuilder) -> Sandbox {
    builder.start().await.expect("the sandbox starts")
}

fn quote(amount: u32) -> String {
    format!("{QUOTE_PATH}?srcCurrency=USD&dstCurrency=BTC&srcAmount={amount}")
}

/// A status, the `Retry-After` header if any, and the body as JSON.
struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    content_type: Option<String>,
    json: Value,
}

async fn answer_of(response: Response<Incoming>) -> Answer {
    let status = response.status();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &http::HeaderValue| v.to_str().expect("ASCII").to_owned())
    };
    let retry_after = header(RETRY_AFTER).map(|v| v.parse().expect("whole seconds"));
    let content_type = header(CONTENT_TYPE);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    Answer {
        status,
        retry_after,
        content_type,
        json,
    }
}

/// Signs `request` with `credentials` through the signing layer, over the helpers' client.
async fn send_signed(
    sandbox: &Sandbox,
    credentials: &Credentials,
    request: Request<SignedBody>,
) -> Answer {
    let client = RampnowAuthLayer::new(credentials.clone()).layer(common::sandbox_client(sandbox));
    answer_of(client.oneshot(request).await.expect("request sent")).await
}

async fn get_signed(sandbox: &Sandbox, target: &str) -> Answer {
    let request = Request::get(format!("{}{target}", sandbox.url()))
        .body(SignedBody::empty())
        .unwrap();
    send_signed(sandbox, sandbox.credentials(), request).await
}

/// A GET of `target` signed by hand (origin form, for a connection made by hand).
fn signed_by_hand(sandbox: &Sandbox, target: &str, timestamp: u64) -> Request<SignedBody> {
    let signature = Signer::new(sandbox.credentials()).sign(timestamp, &Method::GET, target, b"");
    Request::get(target)
        .header("host", sandbox.addr().to_string())
        .header("rn-api-key", sandbox.credentials().api_key())
        .header("rn-access-timestamp", timestamp.to_string())
        .header("rn-access-sign", signature.to_string())
        .body(SignedBody::empty())
        .unwrap()
}

/// `n` HTTP/1 connections to the sandbox, their TLS handshakes done, ready to send at once.
async fn connections(sandbox: &Sandbox, n: usize) -> Vec<SendRequest<SignedBody>> {
    let connector = TlsConnector::from(Arc::new(sandbox.rustls_client_config()));
    let mut senders = Vec::new();
    for _ in 0..n {
        let tcp = TcpStream::connect(sandbox.addr()).await.expect("connects");
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let tls = connector.connect(name, tcp).await.expect("TLS handshake");
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("HTTP/1 handshake");
        tokio::spawn(connection);
        senders.push(sender);
    }
    senders
}

/// Checks the shape every error body has: `code`, `error` (the same code) and `reason`, and
/// nothing else, as `application/json`.
fn assert_error_shape(answer: &Answer, code: &str) {
    let json = &answer.json;
    assert_eq!(json["code"], code, "{json}");
    assert_eq!(json["error"], code, "{json}");
    let reason = json["reason"].as_str().unwrap_or_default();
    assert!(reason.len() > 20, "no reason: {json}");
    assert_eq!(json.as_object().map(|o| o.len()), Some(3), "{json}");
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
}

#[tokio::test]
async fn past_the_rate_limit_requests_are_answered_429_until_retry_after() {
    let sandbox = start(quiet().rate_limit(5)).await;
    // The connections first, so that the 8 requests leave at once, well within one second.
    let senders = connections(&sandbox, 8).await;
    let now = now_secs();
    let mut burst = tokio::task::JoinSet::new();
    for (i, mut sender) in (1..).zip(senders) {
        let request = signed_by_hand(&sandbox, &quote(i), now);
        burst.spawn(async move {
            let response = sender.send_request(request).await.expect("answered");
            answer_of(response).await
        });
    }
    let answers = burst.join_all().await;
    let ok = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    let limited: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!((ok, limited.len()), (5, 3), "statuses: {:?}", {
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    });
    let mut wait = 0;
    for answer in &limited {
        assert_error_shape(answer, "rate_limited");
        let retry_after = answer.retry_after.expect("a 429 has Retry-After");
        assert!(retry_after >= 1, "{retry_after}");
        wait = wait.max(retry_after);
    }
    // The log has them, refused before the verifier.
    let log = sandbox.log();
    assert_eq!(log.len(), 8);
    let refused: Vec<_> = log.iter().filter(|e| e.limit.is_some()).collect();
    assert_eq!(refused.len(), 3);
    for entry in refused {
        assert_eq!(entry.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(matches!(
            entry.limit,
            Some(LimitRefusal::RateLimited { limit: 5, .. })
        ));
        assert!(entry.rejection.is_none() && !entry.verified());
        assert!(entry.to_string().contains("429"), "{entry}");
    }
    assert_eq!(log.iter().filter(|e| e.verified()).count(), 5);

    // After Retry-After, the address may send again: a full window's worth.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    for amount in 100..105 {
        let answer = get_signed(&sandbox, &quote(amount)).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    }
}

#[tokio::test]
async fn every_kth_request_is_answered_503() {
    let sandbox = start(quiet().fail_every(3)).await;
    let mut failed = Vec::new();
    for n in 1..=10 {
        let answer = get_signed(&sandbox, &quote(n)).await;
        match answer.status {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_error_shape(&answer, "service_unavailable");
                assert_eq!(answer.retry_after, None);
                failed.push(n);
            }
            other => panic!("request {n}: {other} {}", answer.json),
        }
    }
    assert_eq!(failed, [3, 6, 9]);
    let logged: Vec<_> = sandbox
        .log()
        .into_iter()
        .filter_map(|e| match e.limit {
            Some(LimitRefusal::FailEvery { every, request, .. }) => {
                assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(every, 3);
                Some(request)
            }
            _ => None,
        })
        .collect();
    assert_eq!(logged, [3, 6, 9]);
}

#[tokio::test]
async fn a_request_failed_with_503_was_not_processed_so_resending_it_is_no_replay() {
    let sandbox = start(quiet().fail_every(2)).await;
    let client = common::sandbox_client(&sandbox);
    let target = quote(7);
    let now = now_secs();
    let mut statuses = Vec::new();
    for n in 1..=5 {
        // Request 1 another one; then the very same signature each time.
        let target = if n == 1 { quote(6) } else { target.clone() };
        let response = client
            .request(with_authority(
                &sandbox,
                signed_by_hand(&sandbox, &target, now),
            ))
            .await
            .expect("answered");
        let answer = answer_of(response).await;
        statuses.push((answer.status.as_u16(), answer.json["code"].clone()));
    }
    let codes: Vec<_> = statuses
        .iter()
        .map(|(status, code)| format!("{status} {}", code.as_str().unwrap_or("-")))
        .collect();
    // 2 and 4 are failed on purpose; 3 verifies (the 503 before it did not remember the
    // signature), so 5 meets the signature already used.
    assert_eq!(
        codes,
        [
            "200 -",
            "503 service_unavailable",
            "200 -",
            "503 service_unavailable",
            "401 replayed"
        ]
    );
}

/// The absolute URI the pooled client needs, on a request made for a bare connection.
fn with_authority(sandbox: &Sandbox, mut request: Request<SignedBody>) -> Request<SignedBody> {
    let target = request.uri().to_string();
    *request.uri_mut() = format!("{}{target}", sandbox.url()).parse().unwrap();
    request
}

#[tokio::test]
async fn every_error_body_has_a_code_an_error_and_a_reason() {
    let sandbox = start(quiet().max_body_size(64)).await;
    let url = sandbox.url();
    let credentials = sandbox.credentials().clone();
    let get = |target: &str| {
        Request::get(format!("{url}{target}"))
            .body(SignedBody::empty())
            .unwrap()
    };

    // 401, unsigned.
    let response = common::sandbox_client(&sandbox)
        .request(get(&quote(1)))
        .await
        .unwrap();
    assert_error_shape(&answer_of(response).await, "missing_header");
    // 401, signed with the wrong secret.
    let wrong = Credentials::new(credentials.api_key(), "not-the-sandbox-secret").unwrap();
    assert_error_shape(
        &send_signed(&sandbox, &wrong, get(&quote(2))).await,
        "signature_mismatch",
    );
    // 404, 405 and 400 from the routes, behind the verifier.
    assert_error_shape(
        &send_signed(&sandbox, &credentials, get("/api/partner/v1/nowhere")).await,
        "not_found",
    );
    let put = Request::put(format!("{url}{}", quote(3)))
        .body(SignedBody::empty())
        .unwrap();
    assert_error_shape(
        &send_signed(&sandbox, &credentials, put).await,
        "method_not_allowed",
    );
    assert_error_shape(
        &send_signed(
            &sandbox,
            &credentials,
            get(&format!(
                "{QUOTE_PATH}?srcCurrency=USD&dstCurrency=XYZ&srcAmount=1"
            )),
        )
        .await,
        "unsupported_currency",
    );
    // 413 from the verifier.
    let post = Request::post(format!("{url}{QUOTE_PATH}"))
        .body(SignedBody::from(vec![b' '; 1024]))
        .unwrap();
    let answer = send_signed(&sandbox, &credentials, post).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error_shape(&answer, "body_too_large");

    // 400 before the verifier: a target with a fragment, sent by hand.
    let connector = TlsConnector::from(Arc::new(sandbox.rustls_client_config()));
    let tcp = TcpStream::connect(sandbox.addr()).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(format!("GET {}#part HTTP/1.1\r\nHost: x\r\n\r\n", quote(4)).as_bytes())
        .await
        .unwrap();
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut received)).await;
    let received = String::from_utf8_lossy(&received);
    let body = &received[received.find("\r\n\r\n").expect("a head") + 4..];
    let json: Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(json["code"], "invalid_target", "{json}");
    assert_eq!(json["error"], "invalid_target", "{json}");
    assert!(json["reason"]
        .as_str()
        .is_some_and(|r| r.contains("fragment")));

    // 429 and 503 from the limits the sandbox plays.
    let limited = start(quiet().rate_limit(1)).await;
    let mut answers = Vec::new();
    for (n, mut sender) in (10..).zip(connections(&limited, 2).await) {
        let request = signed_by_hand(&limited, &quote(n), now_secs());
        answers.push(tokio::spawn(async move {
            answer_of(sender.send_request(request).await.expect("answered")).await
        }));
    }
    let mut statuses = Vec::new();
    for answer in answers {
        let answer = answer.await.unwrap();
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            assert_error_shape(&answer, "rate_limited");
        }
        statuses.push(answer.status);
    }
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);
    let failing = start(quiet().fail_every(1)).await;
    let answer = get_signed(&failing, &quote(20)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_error_shape(&answer, "service_unavailable");
}

#[tokio::test]
async fn out_of_range_limits_are_refused_at_start_and_on_the_command_line() {
    for builder in [
        quiet().rate_limit(0),
        quiet().rate_limit(rampnow_sandbox::MAX_RATE_LIMIT + 1),
        quiet().fail_every(0),
    ] {
        let error = builder.start().await.expect_err("refused");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("such as"), "{error}");
    }
    for flags in [
        ["--addr", "127.0.0.1:0", "--rate-limit", "0"],
        ["--addr", "127.0.0.1:0", "--fail-every", "zero"],
    ] {
        // Bounded: a sandbox that started would serve until Ctrl-C.
        let run = rampnow_sandbox::cli::run(flags.map(str::to_owned));
        let code = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("refused without starting");
        assert_eq!(code, ExitCode::from(2), "{flags:?}");
    }
}
