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

/// A TLS connection to the sandbox on 127.0.0.1, its handshake done within `bound`.
pub async fn tls(
    sandbox: &Sandbox,
    bound: Duration,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(sandbox.addr())
        .await
        .expect("connects");
    tokio::time::timeout(bound, handshake(sandbox, tcp))
        .await
        .expect("the TLS handshake finishes in time")
        .expect("the TLS handshake succeeds")
}

/// A TLS handshake over `tcp` that trusts the sandbox's certificate, and nothing else.
pub async fn handshake(
    sandbox: &Sandbox,
    tcp: tokio::net::TcpStream,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let connector =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(sandbox.rustls_client_config()));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")
        .expect("an IP address is a server name");
    connector.connect(name, tcp).await
}

/// Reads until the peer closes the connection (end of stream, or an error such as a reset or
/// a TLS stream cut without `close_notify`), at most `bound`. Returns what was read and how
/// long it took, or `None` if the connection was still open after `bound`.
pub async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    bound: Duration,
) -> Option<(Vec<u8>, Duration)> {
    use tokio::io::AsyncReadExt;
    let start = std::time::Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = bound.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_elapsed) => return None,
            Ok(Ok(0) | Err(_)) => return Some((received, start.elapsed())),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}
