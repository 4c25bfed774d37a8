//! Credentials never cross the network in clear, and no response can push the clock away:
//! the signing layer over a real plain-TCP transport on 127.0.0.1, and server-time sync fed by
//! a hostile host.

mod common;

use std::convert::Infallible;
use std::io::ErrorKind as IoErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::DATE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rampnow_auth::verify::RampnowVerifyLayer;
use rampnow_auth::{Credentials, Error, ErrorKind, RampnowAuthLayer, SignedBody};
use tower::{service_fn, BoxError, Layer, ServiceExt};

fn credentials() -> Credentials {
    Credentials::new(common::API_KEY, common::SECRET).unwrap()
}

/// A transport that sends each request over a new plain-TCP connection to `addr`, in the form
/// it is given (origin form stays origin form), as a custom connector or a proxy would.
fn plain_tcp(
    addr: SocketAddr,
) -> impl tower::Service<
    Request<SignedBody>,
    Response = Response<hyper::body::Incoming>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    service_fn(move |request: Request<SignedBody>| async move {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok::<_, BoxError>(sender.send_request(request).await?)
    })
}

/// A loopback listener that is never accepted from: a connection to it waits in its backlog.
fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

fn connected(listener: &TcpListener) -> bool {
    match listener.accept() {
        Ok(_) => true,
        Err(error) if error.kind() == IoErrorKind::WouldBlock => false,
        Err(error) => panic!("accept failed: {error}"),
    }
}

#[tokio::test]
async fn an_origin_form_request_never_reaches_a_plain_tcp_transport() {
    let (listener, addr) = listener();
    for layer in [
        RampnowAuthLayer::new(credentials()),
        RampnowAuthLayer::new(credentials()).allow_http(true),
    ] {
        let client = layer.layer(plain_tcp(addr));
        let request = Request::post("/api/partner/v1/ext/ramp_order/quote")
            .body(SignedBody::from(r#"{"srcCurrency":"EUR"}"#))
            .unwrap();
        // Nothing answers on the listener, so a request that was sent would wait: bound it.
        let outcome = tokio::time::timeout(Duration::from_secs(2), client.oneshot(request)).await;
        let error = match outcome {
            Ok(Err(error)) => error,
            Ok(Ok(_)) => panic!("an origin-form request was signed and sent"),
            Err(_) => panic!("an origin-form request was signed and sent (no answer came)"),
        };
        let error = error.downcast::<Error>().expect("the layer's own error");
        assert_eq!(error.kind(), ErrorKind::RelativeUri);
        assert!(error.to_string().contains("https://"), "{error}");
        assert!(!connected(&listener), "a connection reached the listener");
    }
}

#[tokio::test]
async fn plain_http_goes_to_loopback_only_and_only_when_allowed() {
    let (listener, addr) = listener();
    let to_loopback = format!("http://{addr}/api/x");
    // Not allowed: refused, nothing connects.
    let error = RampnowAuthLayer::new(credentials())
        .layer(plain_tcp(addr))
        .oneshot(
            Request::get(&to_loopback)
                .body(SignedBody::empty())
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.downcast::<Error>().unwrap().kind(),
        ErrorKind::InsecureScheme
    );
    assert!(!connected(&listener));
    // Allowed, but the URI names another host: refused, whatever the transport would do with
    // it (this transport would connect to the loopback listener: nothing does).
    let error = RampnowAuthLayer::new(credentials())
        .allow_http(true)
        .layer(plain_tcp(addr))
        .oneshot(
            Request::get("http://api.rampnow.io/api/x")
                .body(SignedBody::empty())
                .unwrap(),
        )
        .await
        .unwrap_err();
    let error = error.downcast::<Error>().unwrap();
    assert_eq!(error.kind(), ErrorKind::InsecureScheme);
    assert!(error.to_string().contains("api.rampnow.io"), "{error}");
    assert!(!connected(&listener));
    // Allowed, to loopback: it goes (and waits for an answer that never comes).
    let sent = RampnowAuthLayer::new(credentials())
        .allow_http(true)
        .layer(plain_tcp(addr))
        .oneshot(
            Request::get(&to_loopback)
                .body(SignedBody::empty())
                .unwrap(),
        );
    let _ = tokio::time::timeout(Duration::from_millis(300), sent).await;
    assert!(connected(&listener));
}

fn dated(time: SystemTime) -> HeaderValue {
    HeaderValue::from_str(&httpdate::fmt_http_date(time)).unwrap()
}

/// A transport in front of a verifier of `credentials()`: requests to `hostile_host` get an
/// empty `status` response dated `date`; the others are verified and dated now.
fn hostile_dates(
    hostile_host: &'static str,
    status: StatusCode,
    date: SystemTime,
) -> impl tower::Service<
    Request<SignedBody>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send,
> + Clone {
    let verifier =
        RampnowVerifyLayer::new(credentials()).layer(service_fn(|_: Request<SignedBody>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }));
    service_fn(move |request: Request<SignedBody>| {
        let verifier = verifier.clone();
        async move {
            if request.uri().host() == Some(hostile_host) {
                let mut response = Response::new(Full::new(Bytes::new()));
                response.headers_mut().insert(DATE, dated(date));
                *response.status_mut() = status;
                return Ok::<_, Infallible>(response);
            }
            let mut response = verifier.oneshot(request).await?;
            response
                .headers_mut()
                .insert(DATE, dated(SystemTime::now()));
            Ok(response)
        }
    })
}

#[tokio::test]
async fn responses_dated_2100_do_not_make_later_requests_stale() {
    // One shared, unpinned layer: it signs for a hostile host and for the real server.
    let layer = RampnowAuthLayer::new(credentials()).sync_server_time();
    let year_2100 = UNIX_EPOCH + Duration::from_secs(4_102_444_800);
    let transport = hostile_dates("hostile.example", StatusCode::OK, year_2100);
    let client = layer.clone().layer(transport);
    for _ in 0..5 {
        let request = Request::get("https://hostile.example/")
            .body(SignedBody::empty())
            .unwrap();
        client.clone().oneshot(request).await.unwrap();
    }
    let server_time = layer.server_time().unwrap();
    assert_eq!(server_time.ignored(), 5);
    assert!(
        server_time.offset().abs() < 60_000,
        "{}",
        server_time.offset()
    );
    let request = Request::get("https://api.rampnow.io/api/x")
        .body(SignedBody::empty())
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The real server's own `Date` was learned.
    assert_eq!(server_time.samples(), 1);
}

#[tokio::test]
async fn a_request_the_layer_refused_teaches_nothing() {
    let layer = RampnowAuthLayer::new(credentials())
        .pin_origins(["https://api.rampnow.io"])
        .unwrap()
        .sync_server_time();
    let far = SystemTime::now() + Duration::from_secs(1_800);
    let transport = service_fn(move |_: Request<SignedBody>| async move {
        let mut response = Response::new(Full::new(Bytes::new()));
        response.headers_mut().insert(DATE, dated(far));
        Ok::<_, Infallible>(response)
    });
    let client = layer.clone().layer(transport);
    let refused = Request::get("https://elsewhere.example/")
        .body(SignedBody::empty())
        .unwrap();
    assert!(client.oneshot(refused).await.is_err());
    let server_time = layer.server_time().unwrap();
    assert_eq!((server_time.samples(), server_time.ignored()), (0, 0));
    assert_eq!(server_time.offset(), 0);
}

#[tokio::test]
async fn another_hosts_date_within_the_bound_does_not_move_rampnows_clock() {
    // One shared, unpinned layer. Another host answers 50 minutes ahead (inside the one-hour
    // bound), eight times: Rampnow's requests are still signed with Rampnow's time.
    let layer = RampnowAuthLayer::new(credentials()).sync_server_time();
    let ahead = SystemTime::now() + Duration::from_secs(50 * 60);
    let transport = hostile_dates("other.example", StatusCode::UNAUTHORIZED, ahead);
    let client = layer.clone().layer(transport);
    for _ in 0..8 {
        let request = Request::get("https://other.example/")
            .body(SignedBody::empty())
            .unwrap();
        client.clone().oneshot(request).await.unwrap();
    }
    let server_time = layer.server_time().unwrap();
    let other: http::Uri = "https://other.example/".parse().unwrap();
    assert!(server_time.offset_for(&other) > 2_900_000);
    let rampnow: http::Uri = "https://api.rampnow.io/api/x".parse().unwrap();
    let request = Request::get(rampnow.clone())
        .body(SignedBody::empty())
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(server_time.offset_for(&rampnow).abs() < 60_000);
}
