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
//! and [`verify::RampnowVerifyLayer`] is the server side: it checks signatures exactly as
//! Rampnow does, for sandboxes and tests (see [`verify`]).
//!
//! # Where the layer goes in a stack
//!
//! A `ServiceBuilder` lists layers from the outside in. What the signature covers — method,
//! request target, body bytes — must not change between the signing layer and the wire, and
//! every attempt must be signed when it is sent:
//!
//! | layer | where | why |
//! |---|---|---|
//! | timeout | outside | bounds the whole call, retries included; a stalled body times out before anything is sent |
//! | retry ([`retry::RampnowRetry`]) | outside | each attempt passes through the signer again: a fresh timestamp, a fresh signature, headers replaced not duplicated |
//! | redirect following (`FollowRedirectLayer`) | outside | each hop is checked again (with [`pin_origins`](RampnowAuthLayer::pin_origins), a redirect to another host is refused, not signed) |
//! | rate limit ([`limit::RateLimitLayer`]) | outside, inside retry and redirects | a request is signed when the limiter releases it, not when it was queued; each retry and each redirect hop waits its turn |
//! | request compression, body rewriting | outside, or not at all | the signature covers the bytes the signer sees; anything that changes them afterwards breaks it |
//! | response decompression | either side | responses are not signed |
//! | header-only layers (user agent, tracing) | either side | headers other than the three auth headers are not signed |
//! | the transport (hyper-util `Client`, ...) | innermost | sends the [`SignedBody`] it is given, with `Content-Length` |
//!
//! ```
//! use std::time::Duration;
//! use rampnow_auth::limit::RateLimitLayer;
//! use rampnow_auth::retry::RampnowRetry;
//! use rampnow_auth::{Credentials, Environment, RampnowAuthLayer, SignedBody};
//! use tower::ServiceBuilder;
//! use tower_http::follow_redirect::FollowRedirectLayer;
//!
//! # fn build<C>(transport: C) -> Result<(), rampnow_auth::Error>
//! # where C: tower::Service<http::Request<SignedBody>, Response = http::Response<String>> + Clone {
//! # let credentials = Credentials::new("ak_live_3f9a1c", "pk_live_secret")?;
//! let client = ServiceBuilder::new()
//!     .timeout(Duration::from_secs(10))
//!     .retry(RampnowRetry::new())
//!     .layer(FollowRedirectLayer::new())
//!     .layer(RateLimitLayer::for_environment(Environment::Production))
//!     .layer(
//!         RampnowAuthLayer::new(credentials)
//!             .pin_origins([Environment::Production.base_url()])?
//!             .sync_server_time(),
//!     )
//!     .service(transport);
//! # let _ = client; Ok(()) }
//! ```
//!
//! # What else is here
//!
//! - [`signing`]: the signing core, every rule of what is signed and what is refused, as plain
//!   synchronous functions ([`signing::sign`] → [`signing::SigningInstructions`]); the layer,
//!   the reqwest middleware and the verifier all call it.
//! - [`RampnowAuth`]: what the middleware does to each request, step by step.
//! - [`ServerTime`]: learning the server's clock from `Date` headers
//!   ([`RampnowAuthLayer::sync_server_time`]), read through a corrected [`ServerClock`].
//! - [`CredentialsHandle`]: rotating credentials without rebuilding the stack.
//! - [`SigningReceipt`]: what was signed, attached to `401` responses for debugging.
//! - [`retry`]: [`retry::RampnowRetry`], the retry policy for tower's `Retry` layer: what is
//!   safe to send again, backoff with full jitter, `Retry-After`, and a retry budget.
//! - [`verify`]: the server side, with a [`KeyStore`] of keys and opt-in replay protection.
//! - [`limit`]: [`limit::RateLimitLayer`], which holds each request until Rampnow's rate limit
//!   admits it, shared by every clone (and, with the `redis` feature, by every process), and
//!   [`Environment`]: Rampnow's production and staging, their base URLs and limits.
//! - The `redis` feature: `RateLimitLayer::redis` and `verify::RedisReplayStore`, the rate
//!   limit and the replay memory shared through Redis.
//! - The `tracing` feature: one `debug` event per signed request (never the secret or the body).
//!
//! # Where each item lives
//!
//! Each public item has one path. The client side — the layer and everything configuring it —
//! is at the crate root, flat. A module is public only where it groups a family that is not
//! re-exported at the root: [`signing`] (the core), [`retry`] (the retry policy and its wait),
//! [`limit`] (rate limiting) and [`verify`] (the server side).
//!
//! With the `reqwest` feature, `RampnowAuthLayer::reqwest_middleware` gives the same signing,
//! sharing the layer's configuration, as a `RampnowMiddleware` for reqwest through
//! reqwest-middleware.
//!
//! The [`rampnow-sandbox`](https://docs.rs/rampnow-sandbox) crate runs a local HTTPS server
//! that verifies signatures with [`verify::RampnowVerifyLayer`] and answers quotes shaped like
//! Rampnow's, to try a client without a Rampnow account, as a library in tests or as the
//! `rampnow-sandbox` program (`cargo run --example quickstart` in this repository shows one).
//!
//! [tower]: https://docs.rs/tower

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

mod body;
mod clock;
mod credentials;
mod environment;
mod error;
mod headers;
mod keys;
pub mod limit;
#[cfg(feature = "reqwest")]
mod middleware;
mod receipt;
pub mod retry;
mod sign;
mod signer;
pub mod signing;
mod sync;
mod timer;
pub mod verify;

pub use body::SignedBody;
pub use clock::{Clock, SystemClock};
pub use credentials::{Credentials, API_KEY_ENV, API_SECRET_ENV};
pub use environment::{Environment, ParseEnvironmentError, ENVIRONMENT_ENV};
pub use error::{Error, ErrorKind};
pub use headers::HeaderNames;
pub use keys::KeyStore;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use middleware::RampnowMiddleware;
pub use receipt::SigningReceipt;
pub use sign::{
    CredentialsHandle, RampnowAuth, RampnowAuthLayer, ResponseFuture, DEFAULT_MAX_BODY_SIZE,
};
pub use signer::{Signature, Signer, SIGNATURE_HEX_LEN};
pub use sync::{ServerClock, ServerTime, DEFAULT_MAX_OFFSET, MAX_ORIGINS};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
