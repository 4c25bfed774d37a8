//! Sign (and verify) requests to the Rampnow partner API.
//!
//! Every request to Rampnow carries three headers: the API key, a timestamp, and an
//! HMAC-SHA256 signature over the timestamp, the method, the request target and the exact
//! body bytes. [`RampnowAuthLayer`] is a [tower] layer that adds them to every request of any
//! tower HTTP client, computing the signature over exactly what goes on the wire:
//!
//! ```no_run
//! # fn wrap<S>(hyper_client: S) -> Result<(), rampnow_auth::Error> {
//! use rampnow_auth::{Credentials, RampnowAuthLayer};
//! use tower::ServiceBuilder;
//!
//! let client = ServiceBuilder::new()
//!     .layer(RampnowAuthLayer::new(Credentials::from_env()?))
//!     .service(hyper_client);
//! # Ok(()) }
//! ```
//!
//! [`Signer`] is the same computation as a plain synchronous function, for use without tower,
//! and [`RampnowVerifyLayer`] is the server side: it checks signatures exactly as Rampnow does,
//! for sandboxes and tests (see [`verify`]).
//!
//! See [`sign`] for what the middleware does to each request and where it goes in a stack.
//!
//! With the `sandbox` feature, `sandbox::Sandbox` runs a local HTTPS server that verifies
//! signatures with [`RampnowVerifyLayer`] and answers quotes shaped like Rampnow's, to try a
//! client without a Rampnow account (`cargo run --example quickstart` shows one).
//!
//! [tower]: https://docs.rs/tower

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod body;
mod clock;
mod credentials;
mod error;
mod headers;
mod keys;
#[cfg(feature = "sandbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "sandbox")))]
pub mod sandbox;
pub mod sign;
mod signer;
pub mod verify;

pub use body::SignedBody;
pub use clock::{Clock, SystemClock};
pub use credentials::{Credentials, API_KEY_ENV, API_SECRET_ENV};
pub use error::{Error, ErrorKind};
pub use headers::HeaderNames;
pub use keys::KeyStore;
pub use sign::{RampnowAuth, RampnowAuthLayer, DEFAULT_MAX_BODY_SIZE};
pub use signer::{Signature, Signer, SIGNATURE_HEX_LEN, SIGNATURE_LEN};
pub use verify::{RampnowVerify, RampnowVerifyLayer};
