//! Server-time sync against the sandbox, whose clock runs five minutes ahead: learned from the
//! `Date` of its refusal, then every request verifies.

mod common;

use common::RetryIf;

use http::{Request, Response, StatusCode};
use rampnow_auth::verify::{Rejection, RejectionKind};
use rampnow_auth::{RampnowAuthLayer, SignedBody, SigningReceipt};
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use rampnow_sandbox::{Sandbox, QUOTE_PATH};

type Transport = Client<hyper_rustls::HttpsConnector<HttpConnector>, SignedBody>;

fn transport(sandbox: &Sandbox) -> Transport {
    common::sandbox_client(sandbox)
}

fn quote(sandbox: &Sandbox) -> Request<SignedBody> {
    let uri = format!(
        "{}{QUOTE_PATH}?srcCurrency=USD&dstCurrency=BTC&srcAmount=100",
        sandbox.url()
    );
    Request::get(uri).body(SignedBody::empty()).unwrap()
}

async fn five_minutes_ahead() -> Sandbox {
    Sandbox::builder()
        .clock_skew_secs(300)
        .quiet(true)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn first_request_is_stale_then_sync_makes_the_next_one_verify() {
    let sandbox = five_minutes_ahead().await;
    let layer = RampnowAuthLayer::new(sandbox.credentials().clone()).sync_server_time();
    let server_time = layer.server_time().unwrap();
    let mut client = layer.layer(transport(&sandbox));

    let first = ServiceExt::<Request<SignedBody>>::ready(&mut client)
        .await
        .unwrap()
        .call(quote(&sandbox))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    assert!(
        first.extensions().get::<SigningReceipt>().is_some(),
        "a 401 carries a receipt"
    );
    assert!(
        (298_000..=302_000).contains(&server_time.offset()),
        "offset {}",
        server_time.offset()
    );

    let second = ServiceExt::<Request<SignedBody>>::ready(&mut client)
        .await
        .unwrap()
        .call(quote(&sandbox))
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    let log = sandbox.log();
    assert_eq!(
        log[0].rejection.as_ref().map(Rejection::kind),
        Some(RejectionKind::StaleTimestamp)
    );
    assert!(log[1].verified());
}

#[tokio::test]
async fn with_retry_on_the_stale_rejection_a_single_call_succeeds() {
    let sandbox = five_minutes_ahead().await;
    let client = ServiceBuilder::new()
        // Over the network the client sees no `Rejection` extension: retry a 401 by status.
        .retry(RetryIf::new(1, |result: &Result<Response<hyper::body::Incoming>, BoxError>| {
            matches!(result, Ok(r) if r.status() == StatusCode::UNAUTHORIZED)
        }))
        .layer(RampnowAuthLayer::new(sandbox.credentials().clone()).sync_server_time())
        .service(transport(&sandbox));
    let response = client.oneshot(quote(&sandbox)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(sandbox.log().len(), 2);
}
