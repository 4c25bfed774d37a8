//! No public type that holds a secret shows it in Debug (or Display, where it has one).

mod common;

use std::convert::Infallible;
use std::time::{Duration, UNIX_EPOCH};

use http::{Method, Request};
use rampnow_auth::{Credentials, RampnowAuth, RampnowAuthLayer, SignedBody, Signer};
use tower::{service_fn, Layer, Service, ServiceExt};

const SECRET: &str = "pk_live_do_not_print_me_0123456789";

fn credentials() -> Credentials {
    Credentials::new("ak_live_3f9a1c", SECRET).unwrap()
}

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the secret: {text}");
    // Not even a recognisable part of it.
    assert!(
        !text.contains("do_not_print"),
        "{what} shows part of the secret: {text}"
    );
}

#[tokio::test]
async fn debug_of_every_type_holding_a_secret_hides_it() {
    let credentials = credentials();
    assert_clean("Credentials", &format!("{credentials:?} {credentials:#?}"));
    let signer = Signer::new(&credentials);
    assert_clean("Signer", &format!("{signer:?} {signer:#?}"));
    let layer = RampnowAuthLayer::new(credentials.clone())
        .with_clock(|| UNIX_EPOCH + Duration::from_secs(1_764_288_000));
    assert_clean("RampnowAuthLayer", &format!("{layer:?} {layer:#?}"));
    let inner = service_fn(|req: Request<SignedBody>| async move {
        Ok::<_, Infallible>(http::Response::new(req))
    });
    let mut service: RampnowAuth<_> = layer.layer(inner);
    assert_clean("RampnowAuth", &format!("{service:?}"));
    assert_clean(
        "RampnowAuth::new",
        &format!("{:?}", RampnowAuth::new((), credentials.clone())),
    );

    ServiceExt::<Request<SignedBody>>::ready(&mut service)
        .await
        .unwrap();
    let future = service.call(
        Request::get("https://api.rampnow.io/x")
            .body(SignedBody::empty())
            .unwrap(),
    );
    assert_clean("ResponseFuture", &format!("{future:?}"));
    let sent = future.await.unwrap().into_body();
    // The signed request's headers are marked sensitive, so http's Debug redacts them.
    let debug = format!("{:?}", sent.headers());
    assert_clean("signed headers", &debug);
    assert!(!debug.contains(sent.headers()["rn-access-sign"].to_str().unwrap()));

    let signature = signer.sign(1, &Method::GET, "/", b"");
    let full = signature.to_string();
    let debug = format!("{signature:?}");
    assert!(
        !debug.contains(&full),
        "Signature's Debug shows it whole: {debug}"
    );
}

#[test]
fn errors_about_credentials_never_repeat_the_secret() {
    for secret in [format!("{SECRET}\n"), format!(" {SECRET}")] {
        let err = Credentials::new("ak_live_3f9a1c", &secret).unwrap_err();
        assert_clean("credentials error", &format!("{err} {err:?}"));
    }
}
