//! A user on rustls / hyper-rustls defaults, with the sandbox as a dev-dependency: the
//! process-level crypto provider is found (one provider compiled in), before and after the
//! sandbox starts, and a signed request through hyper-rustls verifies against it.

use http::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rampnow_auth::{RampnowAuthLayer, SignedBody};
use rampnow_sandbox::{Sandbox, QUOTE_PATH};
use tower::{Layer, ServiceExt};

#[tokio::test]
async fn default_rustls_setups_work_beside_the_sandbox() {
    // As the README shows it, before anything else: hyper-rustls with webpki roots, which
    // builds its rustls configuration with the process-level provider.
    let _public = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_only()
        .enable_http1()
        .build();

    let sandbox = Sandbox::builder().quiet(true).start().await.unwrap();
    // A configuration of the user's own, made with `ClientConfig::builder()`, trusting the
    // sandbox's CA.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(sandbox.ca_cert_der().clone()).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    let client = RampnowAuthLayer::new(sandbox.credentials().clone())
        .layer(Client::builder(TokioExecutor::new()).build::<_, SignedBody>(https));
    let uri = format!(
        "{}{QUOTE_PATH}?srcCurrency=USD&dstCurrency=BTC&srcAmount=100",
        sandbox.url()
    );
    let response = client
        .oneshot(Request::get(uri).body(SignedBody::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
