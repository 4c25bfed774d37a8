//! The secret never appears in anything the crate writes: Debug and Display of every public
//! type, every error and rejection message, and its `tracing` events. One tour of the crate's
//! operations, everything it prints captured, then searched for the secret.

mod common;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use rampnow_auth::verify::{RampnowVerifyLayer, Rejection, VerifiedApiKey};
use rampnow_auth::{
    Credentials, HeaderNames, RampnowAuth, RampnowAuthLayer, SignedBody, Signer, SigningReceipt,
};
use tower::{service_fn, Layer, Service, ServiceExt};

const SECRET: &str = "pk_live_do_not_print_me_0123456789";

fn credentials() -> Credentials {
    Credentials::new("ak_live_3f9a1c", SECRET).unwrap()
}

/// Everything the tour printed.
#[derive(Clone, Default)]
struct Printed(Arc<Mutex<String>>);

impl Printed {
    fn debug(&self, what: &str, value: &dyn std::fmt::Debug) {
        let mut out = self.0.lock().unwrap();
        let _ = writeln!(out, "{what}: {value:?} {value:#?}");
    }

    fn display(&self, what: &str, value: &dyn std::fmt::Display) {
        let mut out = self.0.lock().unwrap();
        let _ = writeln!(out, "{what}: {value}");
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

/// A `tracing` subscriber that writes every event's fields into `Printed`.
struct Capture(Printed);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = String::from("event:");
        event.record(&mut Fields(&mut line));
        self.0 .0.lock().unwrap().push_str(&(line + "\n"));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn nothing_the_crate_prints_contains_the_secret() {
    let printed = Printed::default();
    let _guard = tracing::subscriber::set_default(Capture(printed.clone()));
    let credentials = credentials();
    printed.debug("Credentials", &credentials);

    // Signing: the pure signer, and the layer through every outcome.
    let signer = Signer::new(&credentials);
    printed.debug("Signer", &signer);
    let signature = signer.sign(1_764_288_000, &Method::POST, "/api/x?a=1", b"{}");
    printed.debug("Signature", &signature);
    let layer = RampnowAuthLayer::new(credentials.clone()).sync_server_time();
    printed.debug("RampnowAuthLayer", &layer);
    printed.debug("CredentialsHandle", &layer.credentials_handle());
    printed.debug("ServerTime", &layer.server_time().unwrap());
    printed.debug("HeaderNames", &HeaderNames::X_RAMPNOW);
    printed.debug("SignedBody", &SignedBody::from("body"));

    let verifier = RampnowVerifyLayer::new(credentials.clone()).reject_replays(10);
    printed.debug("RampnowVerifyLayer", &verifier);
    let app = service_fn(|req: Request<SignedBody>| async move {
        let key = req.extensions().get::<VerifiedApiKey>().cloned();
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!("{key:?}")))))
    });
    let server = verifier.layer(app);
    printed.debug("RampnowVerify", &server);
    let mut client: RampnowAuth<_> = layer.clone().layer(server.clone());
    printed.debug("RampnowAuth", &client);

    // Accepted, then refused for a wrong secret (with a receipt), then every layer error.
    let future = ServiceExt::<Request<SignedBody>>::ready(&mut client)
        .await
        .unwrap()
        .call(
            Request::post("https://api.rampnow.io/api/x")
                .body(SignedBody::from("{}"))
                .unwrap(),
        );
    printed.debug("ResponseFuture", &future);
    let ok = future.await.unwrap();
    printed.debug("accepted response", &ok);

    let wrong = RampnowAuthLayer::new(Credentials::new("ak_live_3f9a1c", "pk_live_wrong").unwrap())
        .layer(server.clone())
        .oneshot(
            Request::get("https://api.rampnow.io/x")
                .body(SignedBody::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    printed.debug("refused response", &wrong);
    let receipt = wrong.extensions().get::<SigningReceipt>().unwrap();
    printed.debug("SigningReceipt", receipt);
    printed.display("SigningReceipt", receipt);
    let rejection = wrong.extensions().get::<Rejection>().unwrap();
    printed.debug("Rejection", rejection);
    printed.display("Rejection", rejection);

    for (layer, uri, method) in [
        (layer.clone(), "http://api.rampnow.io/x", "GET"),
        (layer.clone(), "*", "OPTIONS"),
        (layer.clone(), "/x", "GET"),
        (
            layer.clone().allow_http(true),
            "http://api.rampnow.io/x",
            "GET",
        ),
        (layer.clone(), "https://api.rampnow.io/x", "get"),
        (
            layer.clone().max_body_size(1),
            "https://api.rampnow.io/x",
            "POST",
        ),
        (
            layer
                .clone()
                .with_clock(|| UNIX_EPOCH - Duration::from_secs(1)),
            "https://api.rampnow.io/x",
            "GET",
        ),
        (
            layer
                .clone()
                .pin_origins(["https://api.rampnow.io"])
                .unwrap(),
            "https://elsewhere.example/x",
            "GET",
        ),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(SignedBody::from("{}"))
            .unwrap();
        let err = layer
            .layer(server.clone())
            .oneshot(request)
            .await
            .unwrap_err();
        printed.debug("layer error", &err);
        printed.display("layer error", &err);
        let err = err.downcast::<rampnow_auth::Error>().unwrap();
        printed.debug("ErrorKind", &err.kind());
        printed.display("ErrorKind", &err.kind());
    }
    for err in [
        Credentials::new("", SECRET).unwrap_err(),
        Credentials::new("k", format!("{SECRET}\n")).unwrap_err(),
        HeaderNames::new("a", "a", "b").unwrap_err(),
        RampnowAuthLayer::new(credentials.clone())
            .pin_origins(["nope"])
            .unwrap_err(),
    ] {
        printed.debug("error", &err);
        printed.display("error", &err);
    }

    // A replay, to see that rejection's text too.
    let fixed = RampnowAuthLayer::new(credentials.clone())
        .with_clock(common::fixed_clock(common::now_secs()));
    for _ in 0..2 {
        let response = fixed
            .clone()
            .layer(server.clone())
            .oneshot(
                Request::get("https://api.rampnow.io/replayed")
                    .body(SignedBody::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        printed.debug("replay response", &response);
    }

    drop(_guard);
    let text = printed.text();
    // With the `tracing` feature (on in the workspace's `cargo test`), its events too.
    if cfg!(feature = "tracing") {
        assert!(
            text.contains("event: message=signed a Rampnow request"),
            "tracing events captured:\n{text}"
        );
    }
    assert!(
        text.contains("ak_live_3f9a1c"),
        "the tour printed the key, so it printed things"
    );
    assert!(!text.contains(SECRET), "the secret was printed:\n{text}");
    assert!(
        !text.contains("do_not_print"),
        "part of the secret was printed:\n{text}"
    );
    assert!(
        !text.contains(signature.to_string().as_str()),
        "a full signature was printed:\n{text}"
    );
}

#[test]
fn errors_about_credentials_never_repeat_the_secret() {
    for secret in [format!("{SECRET}\n"), format!(" {SECRET}")] {
        let err = Credentials::new("ak_live_3f9a1c", &secret).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("do_not_print"), "{text}");
    }
}
