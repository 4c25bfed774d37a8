//! Shared test helpers: a hyper client that trusts the sandbox, a fixed clock, and a retry
//! policy for tests.
#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rampnow_auth::SignedBody;
use rampnow_sandbox::Sandbox;

pub fn fixed_clock(secs: u64) -> impl Fn() -> SystemTime + Send + Sync + 'static {
    move || UNIX_EPOCH + Duration::from_secs(secs)
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A TLS connector that trusts the sandbox's certificate, and nothing else.
pub fn sandbox_connector(sandbox: &Sandbox) -> hyper_rustls::HttpsConnector<HttpConnector> {
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(sandbox.rustls_client_config())
        .https_only()
        .enable_http1()
        .build()
}

/// A plain hyper client for the sandbox (see [`sandbox_connector`]).
pub fn sandbox_client(
    sandbox: &Sandbox,
) -> Client<hyper_rustls::HttpsConnector<HttpConnector>, SignedBody> {
    Client::builder(TokioExecutor::new()).build(sandbox_connector(sandbox))
}

/// A retry policy for tests: retries up to `attempts` times while `when` says so. Each attempt
/// goes through the signing layer again (the layer sits inside the retry).
pub struct RetryIf<Res, E> {
    pub attempts: usize,
    pub when: fn(&Result<Res, E>) -> bool,
}

impl<Res, E> RetryIf<Res, E> {
    pub fn new(attempts: usize, when: fn(&Result<Res, E>) -> bool) -> Self {
        RetryIf { attempts, when }
    }
}

impl<Res, E> Clone for RetryIf<Res, E> {
    fn clone(&self) -> Self {
        RetryIf {
            attempts: self.attempts,
            when: self.when,
        }
    }
}

impl<B: Clone, Res, E> tower::retry::Policy<Request<B>, Res, E> for RetryIf<Res, E> {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _request: &mut Request<B>,
        result: &mut Result<Res, E>,
    ) -> Option<Self::Future> {
        if self.attempts == 0 || !(self.when)(result) {
            return None;
        }
        self.attempts -= 1;
        Some(std::future::ready(()))
    }

    fn clone_request(&mut self, request: &Request<B>) -> Option<Request<B>> {
        let mut clone = Request::new(request.body().clone());
        *clone.method_mut() = request.method().clone();
        *clone.uri_mut() = request.uri().clone();
        *clone.headers_mut() = request.headers().clone();
        Some(clone)
    }
}
