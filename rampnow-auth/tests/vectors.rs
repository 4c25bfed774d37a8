//! Every shared test vector (computed independently in Python) through `Signer` and through
//! the layer with a fixed clock.

mod common;

use std::convert::Infallible;

use common::{fixed_clock, vectors};
use http::{Method, Request};
use rampnow_auth::{Credentials, RampnowAuthLayer, SignedBody, Signer};
use tower::{service_fn, Layer, ServiceExt};

#[test]
fn there_are_vectors_and_their_string_to_sign_is_the_concatenation() {
    let vectors = vectors();
    assert!(vectors.len() >= 17, "only {} vectors", vectors.len());
    for v in &vectors {
        let mut concatenated = v.timestamp.to_string().into_bytes();
        concatenated.extend_from_slice(v.method.as_bytes());
        concatenated.extend_from_slice(v.path_and_query.as_bytes());
        concatenated.extend_from_slice(&v.body);
        assert_eq!(concatenated, v.string_to_sign, "{}", v.name);
    }
}

#[test]
fn signer_reproduces_every_vector() {
    for v in vectors() {
        let credentials = Credentials::new(v.api_key.as_str(), v.secret.as_str()).unwrap();
        let method = Method::from_bytes(v.method.as_bytes()).unwrap();
        let signature =
            Signer::new(&credentials).sign(v.timestamp, &method, &v.path_and_query, &v.body);
        assert_eq!(signature.to_string(), v.signature, "vector {}", v.name);
    }
}

#[tokio::test]
async fn layer_reproduces_every_vector_from_the_uri_a_client_uses() {
    for v in vectors() {
        let credentials = Credentials::new(v.api_key.as_str(), v.secret.as_str()).unwrap();
        let layer = RampnowAuthLayer::new(credentials).with_clock(fixed_clock(v.timestamp));
        let inner = service_fn(|req: Request<SignedBody>| async move {
            Ok::<_, Infallible>(http::Response::new(req))
        });
        let request = Request::builder()
            .method(v.method.as_str())
            .uri(v.uri.as_str())
            .body(SignedBody::from(v.body.clone()))
            .unwrap();
        let sent = layer
            .layer(inner)
            .oneshot(request)
            .await
            .unwrap()
            .into_body();
        let headers = sent.headers();
        assert_eq!(headers["rn-api-key"], v.api_key.as_str(), "{}", v.name);
        assert_eq!(
            headers["rn-access-timestamp"],
            v.timestamp.to_string().as_str(),
            "{}",
            v.name
        );
        assert_eq!(
            headers["rn-access-sign"],
            v.signature.as_str(),
            "vector {}",
            v.name
        );
        // The request carries exactly the target that was signed, and the body that was signed.
        assert_eq!(
            sent.uri().path_and_query().unwrap().as_str(),
            v.path_and_query,
            "{}",
            v.name
        );
        assert_eq!(sent.body().as_bytes(), v.body.as_slice(), "{}", v.name);
    }
}

/// `tests/data/` is a copy of the shared vectors, so a user's clone can run the tests; when
/// the shared folder is next to the repository, the copy must be identical.
#[test]
fn data_copy_is_in_sync_with_the_shared_vectors() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/test-vectors/rampnow-signing.json");
    match std::fs::read_to_string(&shared) {
        Ok(original) => assert_eq!(
            original,
            common::VECTORS_JSON,
            "tests/data/rampnow-signing.json differs from {}; copy it again",
            shared.display()
        ),
        Err(_) => eprintln!("{} not found; checking the copy only", shared.display()),
    }
}
