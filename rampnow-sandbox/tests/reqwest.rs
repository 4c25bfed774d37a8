//! `RampnowMiddleware`: reqwest through reqwest-middleware, against the sandbox over TLS on
//! 127.0.0.1, and header for header against the tower layer.
//!
//! Needs the `reqwest` feature: `cargo test --features reqwest --test reqwest`.

mod common;

use std::convert::Infallible;
use std::io::ErrorKind as IoErrorKind;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use rampnow_auth::verify::{Rejection, RejectionKind};
use rampnow_auth::{
    Credentials, Error, ErrorKind, HeaderNames, RampnowAuthLayer, SignedBody, SigningReceipt,
};
use rampnow_sandbox::{Sandbox, SandboxBuilder, QUOTE_PATH, SANDBOX_API_KEY};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tower::{service_fn, Layer, ServiceExt};

const QUOTE_QUERY: &str = "srcCurrency=USD&dstCurrency=BTC&srcAmount=100";
const QUOTE_JSON: &str = r#"{"srcCurrency":"EUR","dstCurrency":"ETH","srcAmount":"100.0"}"#;

async fn start(builder: SandboxBuilder) -> Sandbox {
    builder
        .quiet(true)
        .start()
        .await
        .expect("the sandbox starts")
}

/// reqwest over rustls with the sandbox's client configuration (rustls' default provider, aws-lc-rs, the
/// sandbox's CA as the only root), following no redirects.
fn reqwest_client(sandbox: &Sandbox) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(sandbox.rustls_client_config())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest accepts a rustls::ClientConfig")
}

/// The middleware client: `layer`'s signing, then `after` (capture, ...), then reqwest.
fn client_with(
    sandbox: &Sandbox,
    layer: &RampnowAuthLayer,
    after: Option<Capture>,
) -> ClientWithMiddleware {
    let builder = ClientBuilder::new(reqwest_client(sandbox)).with(layer.reqwest_middleware());
    match after {
        Some(capture) => builder.with(capture),
        None => builder,
    }
    .build()
}

fn client(sandbox: &Sandbox, layer: &RampnowAuthLayer) -> ClientWithMiddleware {
    client_with(sandbox, layer, None)
}

fn get_quote_url(sandbox: &Sandbox) -> String {
    format!("{}{QUOTE_PATH}?{QUOTE_QUERY}", sandbox.url())
}

fn post_quote_url(sandbox: &Sandbox) -> String {
    format!("{}{QUOTE_PATH}", sandbox.url())
}

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.bytes().await.expect("the body arrives");
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, json)
}

/// The crate's own error inside a reqwest-middleware error.
fn rampnow_error(error: &reqwest_middleware::Error) -> &Error {
    match error {
        reqwest_middleware::Error::Middleware(error) => error
            .downcast_ref::<Error>()
            .unwrap_or_else(|| panic!("not a rampnow_auth::Error: {error:?}")),
        reqwest_middleware::Error::Reqwest(error) => {
            panic!("expected the middleware to refuse, reqwest failed: {error:?}")
        }
    }
}

fn rejection_kinds(sandbox: &Sandbox) -> Vec<Option<RejectionKind>> {
    sandbox
        .log()
        .iter()
        .map(|entry| entry.rejection.as_ref().map(Rejection::kind))
        .collect()
}

/// Middleware attached after the signing one: records the headers as they leave for reqwest.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<HeaderMap>>>);

impl Capture {
    fn taken(&self) -> Vec<HeaderMap> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[async_trait::async_trait]
impl Middleware for Capture {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        self.0.lock().unwrap().push(request.headers().clone());
        next.run(request, extensions).await
    }
}

/// Middleware attached *before* the signing one: sends once more after a 401, as a retry
/// middleware (reqwest-retry) would.
struct RetryOn401;

#[async_trait::async_trait]
impl Middleware for RetryOn401 {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let again = request.try_clone().expect("a body in bytes clones");
        let response = next.clone().run(request, extensions).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        next.run(again, extensions).await
    }
}

#[tokio::test]
async fn signed_get_and_post_quotes_verify() {
    let sandbox = start(Sandbox::builder()).await;
    let layer = RampnowAuthLayer::new(sandbox.credentials().clone());
    let client = client(&sandbox, &layer);

    let (status, quote) = json_of(client.get(get_quote_url(&sandbox)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{quote}");
    assert_eq!(quote["dstAmount"], "0.00198000");

    let response = client
        .post(post_quote_url(&sandbox))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(QUOTE_JSON)
        .send()
        .await
        .unwrap();
    let (status, quote) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{quote}");
    assert_eq!(
        (&quote["srcCurrency"], &quote["dstCurrency"]),
        (&"EUR".into(), &"ETH".into())
    );

    let log = sandbox.log();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|entry| entry.verified()), "{log:?}");
    assert_eq!(log[0].target, format!("{QUOTE_PATH}?{QUOTE_QUERY}"));
    assert_eq!(log[1].method, Method::POST);
}

/// The headers a tower `RampnowAuthLayer` (clone of `layer`) puts on the same request.
async fn tower_headers(
    layer: &RampnowAuthLayer,
    method: Method,
    url: &str,
    body: &str,
) -> HeaderMap {
    let capture = service_fn(|request: http::Request<SignedBody>| async move {
        Ok::<_, Infallible>(http::Response::new(request.headers().clone()))
    });
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .body(SignedBody::from(body.to_owned()))
        .unwrap();
    layer
        .clone()
        .layer(capture)
        .oneshot(request)
        .await
        .expect("the layer signs")
        .into_body()
}

#[tokio::test]
async fn headers_equal_the_tower_layers_for_the_same_request_and_clock() {
    const NOW: u64 = 1_727_759_033;
    // The sandbox lives at the same fixed time, so it verifies what was signed then.
    // The same requests go out under both header sets, with the same signatures: no replay
    // memory.
    let sandbox = start(
        Sandbox::builder()
            .with_clock(common::fixed_clock(NOW))
            .accept_replays(),
    )
    .await;
    let origin = sandbox.url();
    let cases = [
        (Method::GET, get_quote_url(&sandbox), ""),
        (Method::POST, post_quote_url(&sandbox), QUOTE_JSON),
        // No path: signed and sent as `/?..`; a percent-encoded query, byte for byte.
        (Method::GET, format!("{origin}?a=%20b&a=1&z="), ""),
        (Method::DELETE, format!("{origin}/api/x%2Fy?q=%C3%A9"), ""),
    ];
    for names in [HeaderNames::RN, HeaderNames::X_RAMPNOW] {
        let layer = RampnowAuthLayer::new(sandbox.credentials().clone())
            .with_clock(common::fixed_clock(NOW))
            .header_names(names.clone());
        let capture = Capture::default();
        let client = client_with(&sandbox, &layer, Some(capture.clone()));
        for (method, url, body) in &cases {
            let response = client
                .request(method.clone(), url)
                .body(*body)
                .send()
                .await
                .unwrap();
            let sent = capture.taken().pop().expect("captured");
            let tower = tower_headers(&layer, method.clone(), url, body).await;
            for name in [names.api_key(), names.timestamp(), names.signature()] {
                assert_eq!(sent.get_all(name).iter().count(), 1, "{name} once");
                assert_eq!(sent.get(name), tower.get(name), "{method} {url}: {name}");
            }
            assert_eq!(sent[names.timestamp()], NOW.to_string().as_str());
            assert!(sent[names.signature()].is_sensitive());
            // The sandbox agrees: verified (quotes 200, other paths 404 after verifying).
            assert_ne!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {url}"
            );
        }
    }
    assert!(sandbox.log().iter().all(|entry| entry.verified()));
    assert_eq!(sandbox.log().len(), 8);
}

#[tokio::test]
async fn a_wrong_secret_gets_a_401_with_a_signing_receipt() {
    let sandbox = start(Sandbox::builder()).await;
    let layer =
        RampnowAuthLayer::new(Credentials::new(SANDBOX_API_KEY, "pk_sandbox_wrong").unwrap());
    let response = client(&sandbox, &layer)
        .post(post_quote_url(&sandbox))
        .body(QUOTE_JSON)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let receipt = response
        .extensions()
        .get::<SigningReceipt>()
        .expect("a 401 carries a receipt")
        .clone();
    assert_eq!(receipt.method(), Method::POST);
    assert_eq!(receipt.path_and_query(), QUOTE_PATH);
    assert_eq!(receipt.body_len(), QUOTE_JSON.len());
    assert_eq!(
        receipt.body_sha256(),
        hex::encode(Sha256::digest(QUOTE_JSON))
    );
    assert_eq!(receipt.header_names(), &HeaderNames::RN);
    assert!(!receipt.to_string().contains("pk_sandbox_wrong"));
    let (_, answer) = json_of(response).await;
    assert_eq!(answer["error"], "signature_mismatch");
    assert_eq!(
        rejection_kinds(&sandbox),
        [Some(RejectionKind::SignatureMismatch)]
    );

    // A 200 carries none.
    let ok = RampnowAuthLayer::new(sandbox.credentials().clone());
    let response = client(&sandbox, &ok)
        .get(get_quote_url(&sandbox))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.extensions().get::<SigningReceipt>().is_none());
}

#[tokio::test]
async fn sync_learns_the_sandbox_clock_through_the_layers_shared_server_time() {
    let sandbox = start(Sandbox::builder().clock_skew_secs(300)).await;
    let layer = RampnowAuthLayer::new(sandbox.credentials().clone()).sync_server_time();
    let server_time = layer.server_time().unwrap();
    let client = client(&sandbox, &layer);

    let first = client.get(get_quote_url(&sandbox)).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    assert!(first.extensions().get::<SigningReceipt>().is_some());
    let offset = server_time.offset();
    assert!((298_000..=302_000).contains(&offset), "offset {offset} ms");

    let second = client
        .get(format!("{}&n=2", get_quote_url(&sandbox)))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(server_time.samples(), 2);

    // Learned through reqwest, used by the tower layer too: hyper's first request verifies.
    let hyper_client = common::sandbox_client(&sandbox);
    let request = http::Request::get(format!("{}&n=3", get_quote_url(&sandbox)))
        .body(SignedBody::empty())
        .unwrap();
    let response = layer.layer(hyper_client).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    assert_eq!(
        rejection_kinds(&sandbox),
        [Some(RejectionKind::StaleTimestamp), None, None]
    );
}

#[tokio::test]
async fn with_a_retry_before_it_a_single_call_is_signed_again_and_verifies() {
    let sandbox = start(Sandbox::builder().clock_skew_secs(300)).await;
    let layer = RampnowAuthLayer::new(sandbox.credentials().clone()).sync_server_time();
    let client = ClientBuilder::new(reqwest_client(&sandbox))
        .with(RetryOn401)
        .with(layer.reqwest_middleware())
        .build();
    let response = client
        .post(post_quote_url(&sandbox))
        .body(QUOTE_JSON)
        .send()
        .await
        .unwrap();
    // The retry went through the signer again: a new timestamp, the headers replaced (the
    // verifier refuses a header sent twice).
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        rejection_kinds(&sandbox),
        [Some(RejectionKind::StaleTimestamp), None]
    );
}

#[tokio::test]
async fn a_rotation_through_the_layers_handle_reaches_the_middleware() {
    let sandbox = start(Sandbox::builder()).await;
    let layer = RampnowAuthLayer::new(Credentials::new("ak_old", "pk_old").unwrap());
    let client = client(&sandbox, &layer);

    let before = client.get(get_quote_url(&sandbox)).send().await.unwrap();
    assert_eq!(before.status(), StatusCode::UNAUTHORIZED);

    layer
        .credentials_handle()
        .rotate(sandbox.credentials().clone());
    let after = client.get(get_quote_url(&sandbox)).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::OK);
    assert_eq!(
        rejection_kinds(&sandbox),
        [Some(RejectionKind::UnknownApiKey), None]
    );
}

/// A loopback listener that nothing should ever connect to.
fn untouched_listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn assert_untouched(listener: &TcpListener) {
    match listener.accept() {
        Err(error) if error.kind() == IoErrorKind::WouldBlock => {}
        other => panic!("something connected: {other:?}"),
    }
}

#[tokio::test]
async fn http_is_refused_before_anything_is_sent() {
    let sandbox = start(Sandbox::builder()).await;
    let (listener, port) = untouched_listener();
    let layer = RampnowAuthLayer::new(sandbox.credentials().clone());

    let error = client(&sandbox, &layer)
        .get(format!("http://127.0.0.1:{port}{QUOTE_PATH}?{QUOTE_QUERY}"))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_middleware());
    let error = rampnow_error(&error);
    assert_eq!(error.kind(), ErrorKind::InsecureScheme);
    assert!(error.to_string().contains("https://"), "{error}");
    assert_untouched(&listener);
}

#[tokio::test]
async fn a_pinned_layer_refuses_other_origins_for_reqwest_too() {
    let sandbox = start(Sandbox::builder()).await;
    let (listener, port) = untouched_listener();
    let layer = RampnowAuthLayer::new(sandbox.credentials().clone())
        .pin_origins([sandbox.url()])
        .unwrap();
    let client = client(&sandbox, &layer);

    let elsewhere = format!("https://127.0.0.1:{port}{QUOTE_PATH}?{QUOTE_QUERY}");
    let error = client.get(elsewhere).send().await.unwrap_err();
    assert_eq!(rampnow_error(&error).kind(), ErrorKind::OriginNotAllowed);
    assert_untouched(&listener);

    let ok = client.get(get_quote_url(&sandbox)).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_streaming_body_is_refused_with_a_body_error() {
    let sandbox = start(Sandbox::builder()).await;
    let layer = RampnowAuthLayer::new(sandbox.credentials().clone());
    let body = reqwest::Body::wrap(http_body_util::Full::new(Bytes::from(QUOTE_JSON)));

    let error = client(&sandbox, &layer)
        .post(post_quote_url(&sandbox))
        .body(body)
        .send()
        .await
        .unwrap_err();
    let error = rampnow_error(&error);
    assert_eq!(error.kind(), ErrorKind::Body);
    assert!(
        error
            .to_string()
            .starts_with("streaming bodies cannot be signed; give reqwest the body as bytes"),
        "{error}"
    );
    assert!(sandbox.log().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_before_sending() {
    let sandbox = start(Sandbox::builder()).await;
    let layer = RampnowAuthLayer::new(sandbox.credentials().clone()).max_body_size(16);
    let error = client(&sandbox, &layer)
        .post(post_quote_url(&sandbox))
        .body(QUOTE_JSON)
        .send()
        .await
        .unwrap_err();
    assert_eq!(rampnow_error(&error).kind(), ErrorKind::BodyTooLarge);
    assert!(sandbox.log().is_empty());
}

#[tokio::test]
async fn no_secret_in_debug_or_errors() {
    let secret = "pk_live_do_not_print_me";
    let layer = RampnowAuthLayer::new(Credentials::new("ak_live_x", secret).unwrap());
    let middleware = layer.reqwest_middleware();
    let debug = format!("{middleware:?} {middleware:#?}");
    assert!(!debug.contains(secret), "{debug}");
    assert!(
        debug.contains("ak_live_x"),
        "the key is shown, to tell clients apart"
    );

    let sandbox = start(Sandbox::builder()).await;
    let error = client(&sandbox, &layer)
        .get("http://127.0.0.1:9/")
        .send()
        .await
        .unwrap_err();
    let printed = format!("{error} {error:?}");
    assert!(!printed.contains(secret), "{printed}");
}

/// An HTTPS server on 127.0.0.1 that answers every request with `status` and a `Location`, and
/// counts the requests; with a client configuration that trusts it.
struct Redirector {
    port: u16,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    client_config: rustls::ClientConfig,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Redirector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn redirector(status: StatusCode, location: String) -> Redirector {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let Ok(stream) = acceptor.accept(stream).await else {
                continue;
            };
            let counted = counted.clone();
            let location = location.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let response = http::Response::builder()
                        .status(status)
                        .header(http::header::LOCATION, location.as_str())
                        .body(http_body_util::Empty::<Bytes>::new())
                        .unwrap();
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Redirector {
        port,
        requests,
        client_config,
        task,
    }
}

#[tokio::test]
async fn a_redirect_never_carries_the_key_to_another_origin() {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    let (elsewhere, port) = untouched_listener();
    let layer = RampnowAuthLayer::new(Credentials::new(SANDBOX_API_KEY, "pk_redirect").unwrap());
    for (status, location) in [
        // Plain HTTP: the key and signature would cross the network in clear.
        (StatusCode::FOUND, format!("http://127.0.0.1:{port}/stolen")),
        // Another host (a name, not the address the request went to), with the body on a 307.
        (
            StatusCode::TEMPORARY_REDIRECT,
            format!("https://localhost:{port}/stolen"),
        ),
    ] {
        let server = redirector(status, location.clone()).await;
        let url = format!("https://127.0.0.1:{}/api/partner/v1/x", server.port);
        let tls =
            || reqwest::Client::builder().tls_backend_preconfigured(server.client_config.clone());

        // The documented way: the 3xx comes back, nothing reaches the other listener.
        let client = layer
            .reqwest_client(tls().redirect(reqwest::redirect::Policy::limited(10)))
            .expect("the client builds");
        let response = client.post(&url).body("{}").send().await.unwrap();
        assert_eq!(response.status(), status, "{location}");
        assert_eq!(response.headers()["location"], location.as_str());
        assert_eq!(server.requests.load(Ordering::SeqCst), 1);
        assert_untouched(&elsewhere);

        // What the constructor prevents: the same middleware on a default client follows the
        // redirect to the other listener (it connects; nothing answers it, so give up soon).
        let leaky = ClientBuilder::new(tls().build().unwrap())
            .with(layer.reqwest_middleware())
            .build();
        let _ =
            tokio::time::timeout(Duration::from_secs(2), leaky.post(&url).body("{}").send()).await;
        match elsewhere.accept() {
            Ok((stream, _)) => drop(stream),
            Err(error) => panic!("a default client did not follow the redirect: {error}"),
        }
        // Drain any other connection attempt, so the next round starts untouched.
        while elsewhere.accept().is_ok() {}
    }
}

#[tokio::test]
async fn the_hardened_client_refuses_plain_http_itself() {
    let layer = RampnowAuthLayer::new(Credentials::new(SANDBOX_API_KEY, "pk_redirect").unwrap());
    let (listener, port) = untouched_listener();
    let url = format!("http://127.0.0.1:{port}/x");
    // The middleware refuses plain HTTP first.
    let client = layer.reqwest_client(reqwest::Client::builder()).unwrap();
    let error = client.get(&url).send().await.unwrap_err();
    assert!(error.is_middleware(), "{error}");
    // Below it, the client `harden` built refuses too (`https_only`), even a request that no
    // middleware checked: a plain reqwest client, not the middleware's.
    let hardened = layer
        .reqwest_middleware()
        .harden(reqwest::Client::builder())
        .build()
        .unwrap();
    // Bounded: a client that did send would wait for an answer that never comes.
    let sent = hardened.get(&url).send();
    let error = tokio::time::timeout(std::time::Duration::from_secs(5), sent)
        .await
        .expect("refused at once, not sent")
        .unwrap_err();
    assert!(
        error.is_builder(),
        "refused by reqwest itself, before connecting: {error}"
    );
    assert_untouched(&listener);
}

#[tokio::test]
async fn with_allow_http_no_proxy_sees_a_signed_request_in_clear() {
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    // Stands in for a proxy on another host (HTTP_PROXY=http://proxy.example:3128).
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let (target, port) = untouched_listener();
    drop(target); // nothing listens there: the request fails to connect, directly
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let layer = RampnowAuthLayer::new(Credentials::new(SANDBOX_API_KEY, "pk_proxy").unwrap())
        .allow_http(true);
    let builder = reqwest::Client::builder().proxy(reqwest::Proxy::all(&proxy_url).unwrap());
    let client = layer.reqwest_client(builder).unwrap();
    let sent = client
        .get(format!("http://127.0.0.1:{port}/api/partner/v1/x"))
        .timeout(Duration::from_secs(2))
        .send();
    let (_, seen) = tokio::join!(
        sent,
        tokio::time::timeout(Duration::from_secs(2), async {
            let (mut conn, _) = proxy.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
    );
    assert!(seen.is_err(), "the proxy received: {seen:?}");
}
