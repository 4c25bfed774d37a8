//! Shared test helpers: the shared test vectors, and a loopback HTTP server that checks
//! Rampnow signatures on its own (with `hmac` directly, not with the crate's `Signer`).
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rampnow_auth::SignedBody;
use sha2::Sha256;
use tokio::net::TcpListener;

pub const API_KEY: &str = "ak_live_3f9a1c";
pub const SECRET: &str = "pk_live_asjhdvcjahsgvjqhwcasdv";

/// One vector of `tests/data/rampnow-signing.json`.
#[derive(Debug, Clone)]
pub struct Vector {
    pub name: String,
    pub api_key: String,
    pub secret: String,
    pub timestamp: u64,
    pub method: String,
    pub uri: String,
    pub path_and_query: String,
    pub body: Vec<u8>,
    pub string_to_sign: Vec<u8>,
    pub signature: String,
}

pub const VECTORS_JSON: &str = include_str!("../data/rampnow-signing.json");

pub fn vectors() -> Vec<Vector> {
    let doc: serde_json::Value = serde_json::from_str(VECTORS_JSON).expect("vectors parse");
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 string"))
            .expect("valid base64")
    };
    let s = |v: &serde_json::Value| v.as_str().expect("string").to_owned();
    doc["vectors"]
        .as_array()
        .expect("vectors array")
        .iter()
        .map(|v| Vector {
            name: s(&v["name"]),
            api_key: s(&v["api_key"]),
            secret: s(&v["secret"]),
            timestamp: v["timestamp"].as_u64().expect("timestamp"),
            method: s(&v["method"]),
            uri: s(&v["uri"]),
            path_and_query: s(&v["path_and_query"]),
            body: b64(&v["body_b64"]),
            string_to_sign: b64(&v["string_to_sign_b64"]),
            signature: s(&v["signature"]),
        })
        .collect()
}

/// A clock fixed at `secs` after the epoch.
pub fn fixed_clock(secs: u64) -> impl Fn() -> SystemTime + Send + Sync + 'static {
    move || UNIX_EPOCH + Duration::from_secs(secs)
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// What the server saw of one request, and its verdict.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub verdict: Result<(), String>,
    /// When the request's head had arrived (before its body was read).
    pub arrived: std::time::Instant,
    /// The same moment on the wall clock.
    pub arrived_wall: SystemTime,
}

/// The header set the server looks for.
#[derive(Debug, Clone, Copy)]
pub struct Names {
    pub key: &'static str,
    pub ts: &'static str,
    pub sign: &'static str,
}

pub const RN: Names = Names {
    key: "rn-api-key",
    ts: "rn-access-timestamp",
    sign: "rn-access-sign",
};
pub const X_RAMPNOW: Names = Names {
    key: "x-rampnow-api-key",
    ts: "x-rampnow-timestamp",
    sign: "x-rampnow-sign",
};

/// The signature as Rampnow's docs compute it, with plain `hmac` and never the crate's
/// `Signer`: HMAC-SHA256 keyed with `secret` over timestamp + method + target + body, in
/// lowercase hex.
pub fn reference_signature(
    secret: &[u8],
    timestamp: &[u8],
    method: &str,
    target: &str,
    body: &[u8],
) -> String {
    let mut message = Vec::new();
    message.extend_from_slice(timestamp);
    message.extend_from_slice(method.as_bytes());
    message.extend_from_slice(target.as_bytes());
    message.extend_from_slice(body);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(&message);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a request as Rampnow describes, from the bytes received: exactly one of each header,
/// known key, timestamp within 60 s of `now`, and the signature recomputed with plain `hmac`.
pub fn check(
    names: Names,
    now: u64,
    method: &str,
    target: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    let one = |name: &str| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().map_err(|_| format!("{name} is not text")),
            (None, _) => Err(format!("{name} missing")),
            (Some(_), Some(_)) => Err(format!("{name} sent more than once")),
        }
    };
    let key = one(names.key)?;
    let ts = one(names.ts)?;
    let sign = one(names.sign)?;
    if key != API_KEY {
        return Err(format!("unknown key {key}"));
    }
    let ts_num: u64 = ts.parse().map_err(|_| format!("bad timestamp {ts}"))?;
    if ts_num.abs_diff(now) > 60 {
        return Err(format!("stale timestamp {ts} (now {now})"));
    }
    let expected = reference_signature(SECRET.as_bytes(), ts.as_bytes(), method, target, body);
    if !expected.eq_ignore_ascii_case(sign) {
        return Err("signature mismatch".to_owned());
    }
    Ok(())
}

/// A loopback HTTP/1 server that verifies every request and records what it saw.
pub struct TestServer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl TestServer {
    /// Starts the server. `names` is the header set it expects, `now` its clock (seconds),
    /// and the first `fail_first` requests get a 503 whatever their signature.
    pub async fn start(names: Names, now: fn() -> u64, fail_first: usize) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let server_seen = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = server_seen.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let seen = seen.clone();
                        let arrived = std::time::Instant::now();
                        let arrived_wall = SystemTime::now();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes());
                            let Ok(body) = body else {
                                return Ok::<_, Infallible>(
                                    Response::builder()
                                        .status(StatusCode::BAD_REQUEST)
                                        .body(Full::new(Bytes::from("body failed")))
                                        .unwrap(),
                                );
                            };
                            let target = parts
                                .uri
                                .path_and_query()
                                .map(|pq| pq.as_str().to_owned())
                                .unwrap_or_default();
                            let verdict = check(
                                names,
                                now(),
                                parts.method.as_str(),
                                &target,
                                &parts.headers,
                                &body,
                            );
                            let count = {
                                let mut seen = seen.lock().unwrap();
                                seen.push(Seen {
                                    method: parts.method.to_string(),
                                    target,
                                    headers: parts.headers.clone(),
                                    body: body.clone(),
                                    verdict: verdict.clone(),
                                    arrived,
                                    arrived_wall,
                                });
                                seen.len()
                            };
                            let (status, text) = if count <= fail_first {
                                (StatusCode::SERVICE_UNAVAILABLE, "try again".to_owned())
                            } else {
                                match verdict {
                                    Ok(()) => (StatusCode::OK, format!("verified {}", body.len())),
                                    Err(reason) => (StatusCode::UNAUTHORIZED, reason),
                                }
                            };
                            Ok(Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(text)))
                                .unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestServer { addr, seen }
    }

    pub fn url(&self, target: &str) -> String {
        format!("http://{}{}", self.addr, target)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A hyper-util client sending `SignedBody` requests over plain HTTP on loopback.
pub fn hyper_client() -> Client<HttpConnector, SignedBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Reads a response body to text.
/// The whole body of `response`, as UTF-8 text.
pub async fn text<B>(response: Response<B>) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
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
