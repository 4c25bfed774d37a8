//! `RampnowRetry` in the real stack — retry, signing layer, hyper-util client — against a
//! scripted loopback server that answers a programmed sequence and records each request's
//! arrival time and headers.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::{check, hyper_client, now_secs, API_KEY, RN, SECRET};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use rampnow_auth::retry::RampnowRetry;
use rampnow_auth::{Credentials, ErrorKind, RampnowAuthLayer, SignedBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::retry::budget::TpsBudget;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

/// What the server does with one request.
#[derive(Debug, Clone)]
enum Step {
    /// Answer with this status and these extra header lines.
    Answer(u16, Vec<(&'static str, String)>),
    /// Read the whole request, then close the socket without a word.
    Drop,
    /// Read the whole request, then hold the socket open and never answer.
    Stall,
}

fn answer(status: u16) -> Step {
    Step::Answer(status, Vec::new())
}

/// One request as the server received it.
#[derive(Debug, Clone)]
struct Arrival {
    at: Instant,
    method: String,
    target: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

struct ScriptedServer {
    addr: std::net::SocketAddr,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
}

impl ScriptedServer {
    /// Serves `script` in order, one step per request; after the script, `then` for every
    /// request. Every answer closes the connection, so each attempt is a new connection.
    async fn start(script: Vec<Step>, then: Step) -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let seen = arrivals.clone();
        let script = Arc::new(Mutex::new(script.into_iter()));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                let script = script.clone();
                let then = then.clone();
                tokio::spawn(async move {
                    let Some(arrival) = read_request(stream).await else {
                        return;
                    };
                    let (arrival, mut stream) = arrival;
                    let step = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(arrival);
                        script.lock().unwrap().next().unwrap_or(then)
                    };
                    match step {
                        Step::Answer(status, headers) => {
                            let mut head = format!(
                                "HTTP/1.1 {status} Scripted\r\ncontent-length: 2\r\nconnection: close\r\n"
                            );
                            for (name, value) in headers {
                                head.push_str(&format!("{name}: {value}\r\n"));
                            }
                            head.push_str("\r\nok");
                            let _ = stream.write_all(head.as_bytes()).await;
                            let _ = stream.shutdown().await;
                        }
                        Step::Drop => drop(stream),
                        Step::Stall => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            drop(stream);
                        }
                    }
                });
            }
        });
        ScriptedServer { addr, arrivals }
    }

    fn url(&self, target: &str) -> String {
        format!("http://{}{}", self.addr, target)
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1.1 request (head, then a `content-length` body), at most 64 KiB.
async fn read_request(mut stream: TcpStream) -> Option<(Arrival, TcpStream)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buf.len() > 65_536 {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let at = Instant::now();
    let head = std::str::from_utf8(&buf[..head_end]).ok()?.to_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
            value.trim().parse().ok()?,
        );
    }
    let length: usize = headers
        .get("content-length")
        .map_or(Some(0), |v| v.to_str().ok()?.parse().ok())?;
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length.min(65_536) {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let arrival = Arrival {
        at,
        method,
        target,
        headers,
        body,
    };
    Some((arrival, stream))
}

fn credentials() -> Credentials {
    Credentials::new(API_KEY, SECRET).unwrap()
}

/// The stack under test, with hyper-util's client as the transport.
fn client(
    policy: RampnowRetry,
) -> impl Service<Request<SignedBody>, Response = Response<Incoming>, Error = BoxError> + Clone {
    ServiceBuilder::new()
        .retry(policy)
        .layer(RampnowAuthLayer::new(credentials()).allow_http(true))
        .service(hyper_client())
}

/// Fast retries, where the wait is not what is tested.
fn fast() -> RampnowRetry {
    RampnowRetry::new().base_delay(Duration::from_millis(1))
}

fn get(url: &str) -> Request<SignedBody> {
    Request::get(url).body(SignedBody::empty()).unwrap()
}

fn post(url: &str) -> Request<SignedBody> {
    Request::post(url)
        .header("content-type", "application/json")
        .body(SignedBody::from(
            r#"{"srcCurrency":"USD","dstCurrency":"BTC"}"#,
        ))
        .unwrap()
}

/// Every arrival carried a valid signature (checked with plain `hmac`).
fn assert_all_signed(arrivals: &[Arrival]) {
    for arrival in arrivals {
        check(
            RN,
            now_secs(),
            &arrival.method,
            &arrival.target,
            &arrival.headers,
            &arrival.body,
        )
        .unwrap_or_else(|reason| panic!("attempt not signed right: {reason}"));
    }
}

async fn retry_after_is_honoured(retry_after: String) {
    let server = ScriptedServer::start(
        vec![Step::Answer(429, vec![("retry-after", retry_after)])],
        answer(200),
    )
    .await;
    let response = client(RampnowRetry::new())
        .oneshot(post(
            &server.url("/api/partner/v1/ext/ramp_order/quote?x=1"),
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let arrivals = server.arrivals();
    assert_eq!(arrivals.len(), 2);
    let waited = arrivals[1].at - arrivals[0].at;
    assert!(
        waited >= Duration::from_secs(1),
        "second attempt after {waited:?}"
    );
    assert_all_signed(&arrivals);
    let ts = |a: &Arrival| a.headers[RN.ts].to_str().unwrap().parse::<u64>().unwrap();
    assert!(ts(&arrivals[1]) > ts(&arrivals[0]), "a new timestamp");
    assert_ne!(
        arrivals[1].headers[RN.sign], arrivals[0].headers[RN.sign],
        "a new signature"
    );
    assert_eq!(arrivals[1].body, arrivals[0].body, "the same body");
}

#[tokio::test]
async fn a_429_with_retry_after_seconds_is_retried_after_that_long_and_signed_afresh() {
    retry_after_is_honoured("1".to_owned()).await;
}

#[tokio::test]
async fn a_429_with_retry_after_date_is_retried_after_that_date_and_signed_afresh() {
    // Whole seconds: three seconds ahead, rounded down, is two seconds ahead at least, and
    // more than one second after the first attempt arrives.
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
    retry_after_is_honoured(date).await;
}

#[tokio::test]
async fn a_retry_after_beyond_max_delay_returns_the_response_at_once() {
    let server = ScriptedServer::start(
        vec![Step::Answer(429, vec![("retry-after", "3600".to_owned())])],
        answer(200),
    )
    .await;
    let response = client(fast())
        .oneshot(get(&server.url("/a")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response.headers()["retry-after"],
        "3600",
        "the caller sees it"
    );
    assert_eq!(server.arrivals().len(), 1);
}

#[tokio::test]
async fn a_garbage_retry_after_falls_back_to_backoff() {
    let server = ScriptedServer::start(
        vec![Step::Answer(503, vec![("retry-after", "-1".to_owned())])],
        answer(200),
    )
    .await;
    let response = client(fast())
        .oneshot(get(&server.url("/a")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.arrivals().len(), 2);
}

#[tokio::test]
async fn two_503s_then_success_takes_three_attempts() {
    let server = ScriptedServer::start(vec![answer(503), answer(503)], answer(200)).await;
    let response = client(fast())
        .oneshot(post(&server.url("/api/partner/v1/ext/ramp_order/quote")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let arrivals = server.arrivals();
    assert_eq!(arrivals.len(), 3);
    assert_all_signed(&arrivals);
    for arrival in &arrivals {
        assert_eq!(arrival.headers.get_all(RN.sign).iter().count(), 1);
    }
}

#[tokio::test]
async fn three_503s_return_the_503_after_exactly_three_attempts() {
    let server = ScriptedServer::start(Vec::new(), answer(503)).await;
    let response = client(fast())
        .oneshot(get(&server.url("/a")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.arrivals().len(), 3);
}

#[tokio::test]
async fn gateway_errors_are_retried_for_post() {
    let server = ScriptedServer::start(vec![answer(502), answer(504)], answer(201)).await;
    let response = client(fast())
        .oneshot(post(&server.url("/a")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(server.arrivals().len(), 3);
}

#[tokio::test]
async fn max_attempts_is_the_number_of_attempts_in_all() {
    let server = ScriptedServer::start(Vec::new(), answer(503)).await;
    let response = client(fast().max_attempts(5))
        .oneshot(get(&server.url("/a")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.arrivals().len(), 5);
}

#[tokio::test]
async fn other_4xx_and_500_are_sent_once() {
    for status in [400, 401, 403, 404, 409, 422, 500] {
        let server = ScriptedServer::start(Vec::new(), answer(status)).await;
        let response = client(fast())
            .oneshot(get(&server.url("/a")))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(server.arrivals().len(), 1, "{status}");
    }
}

#[tokio::test]
async fn a_post_dropped_after_it_was_sent_is_not_sent_again() {
    let server = ScriptedServer::start(vec![Step::Drop], answer(200)).await;
    let error = client(fast())
        .oneshot(post(&server.url("/api/partner/v1/ext/ramp_order")))
        .await
        .expect_err("the connection was dropped");
    assert_eq!(server.arrivals().len(), 1, "{error:?}");
}

#[tokio::test]
async fn a_get_dropped_after_it_was_sent_is_retried() {
    let server = ScriptedServer::start(vec![Step::Drop], answer(200)).await;
    let response = client(fast())
        .oneshot(get(&server.url("/a")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let arrivals = server.arrivals();
    assert_eq!(arrivals.len(), 2);
    assert_all_signed(&arrivals);
}

/// A port nobody listens on: bound, then let go.
async fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/api/partner/v1/ext/ramp_order")
}

#[tokio::test]
async fn a_refused_connection_is_retried_even_for_post() {
    let url = refused_url().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let transport = hyper_client();
    let client = ServiceBuilder::new()
        .retry(fast())
        .layer(RampnowAuthLayer::new(credentials()).allow_http(true))
        .service_fn(move |request: Request<SignedBody>| {
            counted.fetch_add(1, Ordering::SeqCst);
            transport.clone().oneshot(request)
        });
    let error = client.oneshot(post(&url)).await.expect_err("refused");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "{error:?}");
}

#[tokio::test]
async fn a_timeout_is_retried_for_get_but_not_for_post() {
    for (request, expected) in [(get as fn(&str) -> _, 3), (post, 1)] {
        let server = ScriptedServer::start(Vec::new(), Step::Stall).await;
        let client = ServiceBuilder::new()
            .retry(fast())
            .layer(RampnowAuthLayer::new(credentials()).allow_http(true))
            .timeout(Duration::from_millis(300))
            .service(hyper_client());
        let error = client
            .oneshot(request(&server.url("/a")))
            .await
            .expect_err("timed out");
        assert!(error.is::<tower::timeout::error::Elapsed>(), "{error:?}");
        // The last attempt's request may still be on its way to the server's log.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(server.arrivals().len(), expected);
    }
}

#[tokio::test]
async fn the_signing_layers_own_errors_are_not_retried() {
    // Not loopback: refused by the signing layer before anything is sent.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let client = ServiceBuilder::new()
        .retry(fast())
        .layer(RampnowAuthLayer::new(credentials()).allow_http(true))
        .service_fn(move |_request: Request<SignedBody>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, BoxError>(Response::new(String::new())) }
        });
    let error = client
        .oneshot(get("http://api.rampnow.io/a"))
        .await
        .expect_err("refused");
    let error = error
        .downcast::<rampnow_auth::Error>()
        .expect("the layer's error");
    assert_eq!(error.kind(), ErrorKind::InsecureScheme);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_tiny_budget_stops_retries_against_a_failing_upstream() {
    const REQUESTS: usize = 20;
    // No reserve, and one retry costs ten first attempts.
    let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 0, 0.1));
    let server = ScriptedServer::start(Vec::new(), answer(503)).await;
    let client = client(fast().budget(budget));
    for _ in 0..REQUESTS {
        let response = client
            .clone()
            .oneshot(get(&server.url("/a")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let seen = server.arrivals().len();
    assert!(
        seen <= REQUESTS + REQUESTS / 10 + 1,
        "{seen} requests for {REQUESTS}: the budget did not hold"
    );

    // Without a budget, the same upstream gets three times the load.
    let server = ScriptedServer::start(Vec::new(), answer(503)).await;
    let client = crate::client(fast().no_budget());
    for _ in 0..REQUESTS {
        client
            .clone()
            .oneshot(get(&server.url("/a")))
            .await
            .unwrap();
    }
    assert_eq!(server.arrivals().len(), 3 * REQUESTS);
}

/// A connector failing with an error that is no `io::Error` (as a DNS or TLS failure is):
/// hyper-util reports it as a connect error, which only the `hyper-util` feature can see.
#[tokio::test]
async fn a_connect_failure_of_any_kind_is_retried_for_post_with_the_hyper_util_feature() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let connects = Arc::new(AtomicUsize::new(0));
    let counted = connects.clone();
    let connector = tower::service_fn(move |_uri: http::Uri| {
        counted.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err::<TokioIo<TcpStream>, BoxError>(
            "no such host (a DNS failure)".into(),
        ))
    });
    let transport = Client::builder(TokioExecutor::new()).build::<_, SignedBody>(connector);
    let client = ServiceBuilder::new()
        .retry(fast())
        .layer(RampnowAuthLayer::new(credentials()).allow_http(true))
        .service(transport);
    let error = client
        .oneshot(post("http://localhost/api/partner/v1/ext/ramp_order"))
        .await
        .expect_err("cannot connect");
    let expected = if cfg!(feature = "hyper-util") { 3 } else { 1 };
    assert_eq!(connects.load(Ordering::SeqCst), expected, "{error:?}");
}
