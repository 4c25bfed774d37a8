//! What signing a request costs, next to what it could cost at best and what users write by hand.
//!
//! One criterion group per body (0 B, 200 B, 64 KiB, 1 MiB in one piece; 64 KiB and 1 MiB also
//! as 16 chunks, like a streamed upload), each with the same functions side by side:
//!
//! - `limit`: one HMAC-SHA256 over timestamp, method, target and body, from a keyed state
//!   prepared once and cloned, hex-encoded into a stack buffer, driving `hmac`'s block-level
//!   state so that nothing is moved: nothing can sign faster than this. The layer's ratios are
//!   taken against it.
//! - `limit_mac`: the same through the `hmac::Mac` API (`clone`, `update`, `finalize`), which
//!   moves the whole state on the way to finalizing; for reference.
//! - `handwritten`: the recipe from Rampnow's docs: `format!` the message, key a new HMAC from
//!   the secret, `hex::encode`.
//! - `layer`: build the `http::Request` and send it through [`RampnowAuthLayer`] to a service
//!   that does nothing.
//! - `baseline`: build the same request and send it to the same service without the layer.
//! - `signer_headers` (bodies in one piece): sign with the crate's `Signer` and insert the three
//!   headers by hand, then send as `baseline` does: the cost of signing plus setting headers,
//!   with no middleware, to tell the two apart.
//! - `verify` / `verify_baseline`: the same request, with the headers the layer set, through
//!   [`RampnowVerifyLayer`] to a service that does nothing, and straight to that service; the
//!   verifier's cost is `verify - verify_baseline`.
//!
//! The layer's own cost is `layer - baseline`. Both are driven the same way: one poll with a
//! no-op waker, which completes because the body is in memory and the inner service is ready.
//! The clock is fixed, so every iteration signs the same message.
//!
//! ```text
//! cargo bench --bench signing -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hmac::block_api::HmacCore;
use hmac::digest::block_api::{Buffer, FixedOutputCore, UpdateCore};
use hmac::digest::Output;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderName, HeaderValue, Method, Request, Response, Uri};
use rampnow_auth::verify::RampnowVerifyLayer;
use rampnow_auth::{Credentials, RampnowAuthLayer, SignedBody, Signer, SIGNATURE_HEX_LEN};
use sha2::Sha256;
use tower::{service_fn, Layer};

const API_KEY: &str = "ak_live_3f9a1c";
const SECRET: &str = "pk_live_asjhdvcjahsgvjqhwcasdv";
const URI: &str =
    "https://api.rampnow.io/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD&dstCurrency=BTC";
/// The request target of [`URI`], as signed.
const TARGET: &str = "/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD&dstCurrency=BTC";
/// The fixed signing time, in seconds since the Unix epoch.
const TIMESTAMP: u64 = 1764288000;
/// Chunks of a streamed body.
const CHUNKS: usize = 16;

/// The fixed clock given to the layer and used by the hand-written recipe.
#[path = "../tests/support/in_memory.rs"]
mod in_memory;

use in_memory::{send, Chunked};

fn clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(TIMESTAMP)
}

/// A request body: `len` bytes of JSON-like ASCII (so the hand-written recipe's
/// `String::from_utf8_lossy` borrows instead of copying), in `chunks` pieces.
#[derive(Clone)]
struct Payload {
    name: &'static str,
    whole: Bytes,
    chunks: usize,
}

impl Payload {
    fn new(name: &'static str, len: usize, chunks: usize) -> Payload {
        let pattern = br#"{"srcCurrency":"USD","dstCurrency":"BTC","srcAmount":"100.00"},"#;
        let whole = pattern
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect::<Vec<u8>>();
        Payload {
            name,
            whole: Bytes::from(whole),
            chunks,
        }
    }

    /// The pieces the body arrives in: slices of one buffer, so making them copies nothing.
    fn pieces(&self) -> impl Iterator<Item = Bytes> {
        Chunked::new(&self.whole, self.chunks).chunks.into_iter()
    }
}

/// The inner service: takes the request and does nothing with it.
fn noop<B>(request: Request<B>) -> Ready<Result<Response<()>, Infallible>> {
    drop(black_box(request));
    ready(Ok(Response::new(())))
}

/// The service behind the verifier: takes the request and answers 200 with an empty body.
fn accept<B>(request: Request<B>) -> Ready<Result<Response<Bytes>, Infallible>> {
    drop(black_box(request));
    ready(Ok(Response::new(Bytes::new())))
}

/// `limit`: one HMAC over the message, from a prepared block-level key state, finalized in
/// place, hex-encoded on the stack.
fn limit(keyed: &HmacCore<Sha256>, timestamp: &str, pieces: &[Bytes]) -> [u8; SIGNATURE_HEX_LEN] {
    let mut core = keyed.clone();
    let mut buffer = Buffer::<HmacCore<Sha256>>::default();
    let mut update = |data: &[u8]| buffer.digest_blocks(data, |blocks| core.update_blocks(blocks));
    update(timestamp.as_bytes());
    update(Method::POST.as_str().as_bytes());
    update(black_box(TARGET).as_bytes());
    for piece in pieces {
        update(piece);
    }
    let mut out = Output::<HmacCore<Sha256>>::default();
    core.finalize_fixed_core(&mut buffer, &mut out);
    let mut hex = [0u8; SIGNATURE_HEX_LEN];
    hex::encode_to_slice(out, &mut hex).expect("64 hex digits");
    hex
}

/// `limit_mac`: the same HMAC through the `Mac` API, from a prepared key, hex-encoded on the
/// stack.
fn limit_mac(keyed: &Hmac<Sha256>, timestamp: &str, pieces: &[Bytes]) -> [u8; SIGNATURE_HEX_LEN] {
    let mut mac = keyed.clone();
    mac.update(timestamp.as_bytes());
    mac.update(Method::POST.as_str().as_bytes());
    mac.update(black_box(TARGET).as_bytes());
    for piece in pieces {
        mac.update(piece);
    }
    let mut hex = [0u8; SIGNATURE_HEX_LEN];
    hex::encode_to_slice(mac.finalize().into_bytes(), &mut hex).expect("64 hex digits");
    hex
}

/// `handwritten`: the recipe from Rampnow's docs, as users write it.
fn handwritten(secret: &str, body: &[u8]) -> String {
    let ts = clock().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let method = "POST";
    let path = black_box(TARGET);
    let body_str = String::from_utf8_lossy(body);
    let message = format!("{ts}{method}{path}{body_str}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `signer_headers`: signing without the middleware: the crate's [`Signer`] (key prepared
/// once), and the three headers inserted by hand. Compared with `baseline`, this is what any
/// code pays to sign and to put the signature in an `http::HeaderMap`; the layer adds its own
/// work (checks, reading the body, the future) on top.
fn by_hand(
    signer: &Signer,
    api_key: &HeaderValue,
    mut request: Request<SignedBody>,
) -> Request<SignedBody> {
    let seconds = clock().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let target = request.uri().path_and_query().unwrap().as_str();
    let signature = signer.sign(seconds, request.method(), target, request.body().as_bytes());
    let mut digits = itoa::Buffer::new();
    let mut hex = [0u8; SIGNATURE_HEX_LEN];
    let headers = request.headers_mut();
    headers.insert(HeaderName::from_static("rn-api-key"), api_key.clone());
    headers.insert(
        HeaderName::from_static("rn-access-timestamp"),
        HeaderValue::from_str(digits.format(seconds)).unwrap(),
    );
    headers.insert(
        HeaderName::from_static("rn-access-sign"),
        HeaderValue::from_str(signature.encode_hex(&mut hex)).unwrap(),
    );
    request
}

/// The secret's keyed state, prepared once, for each `limit` function.
struct Keyed {
    core: HmacCore<Sha256>,
    mac: Hmac<Sha256>,
}

/// Checks, before timing anything, that all the ways of signing agree.
fn check_same_signature(
    layer: &RampnowAuthLayer,
    keyed: &Keyed,
    timestamp: &str,
    signer: &Signer,
    payload: &Payload,
    pieces: &[Bytes],
) {
    let signature_of = |request: Request<SignedBody>| {
        ready(Ok::<_, Infallible>(Response::new(
            request.headers()["rn-access-sign"].clone(),
        )))
    };
    let mut signed = layer.layer(service_fn(signature_of));
    let request = Request::post(URI).body(Chunked {
        chunks: pieces.iter().cloned().collect(),
    });
    let from_layer = send(&mut signed, request.unwrap()).into_body();
    let expected = limit(&keyed.core, timestamp, pieces);
    assert_eq!(from_layer.as_bytes(), expected, "{}", payload.name);
    assert_eq!(limit_mac(&keyed.mac, timestamp, pieces), expected);
    assert_eq!(
        handwritten(SECRET, &pieces.concat()).as_bytes(),
        expected,
        "{}",
        payload.name
    );
    let request = Request::post(URI).body(SignedBody::from(pieces.concat()));
    let signed = by_hand(signer, &HeaderValue::from_static(API_KEY), request.unwrap());
    assert_eq!(signed.headers()["rn-access-sign"].as_bytes(), expected);
}

fn signing(c: &mut Criterion) {
    let payloads = [
        Payload::new("0B", 0, 1),
        Payload::new("200B", 200, 1),
        Payload::new("64KiB", 64 * 1024, 1),
        Payload::new("64KiB_16chunks", 64 * 1024, CHUNKS),
        Payload::new("1MiB", 1024 * 1024, 1),
        Payload::new("1MiB_16chunks", 1024 * 1024, CHUNKS),
    ];
    let credentials = Credentials::new(API_KEY, SECRET).unwrap();
    let layer = RampnowAuthLayer::new(credentials).with_clock(clock);
    let keyed = Keyed {
        core: HmacCore::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap(),
        mac: Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap(),
    };
    let timestamp = TIMESTAMP.to_string();
    let uri = Uri::from_static(URI);
    let signer = Signer::new(&Credentials::new(API_KEY, SECRET).unwrap());
    // Shared and marked sensitive, like the value the layer clones for each request.
    let mut api_key = HeaderValue::from_str(API_KEY).unwrap();
    api_key.set_sensitive(true);

    for payload in &payloads {
        let pieces: Vec<Bytes> = payload.pieces().collect();
        check_same_signature(&layer, &keyed, &timestamp, &signer, payload, &pieces);

        let mut group = c.benchmark_group(payload.name);
        group.throughput(Throughput::Bytes(payload.whole.len() as u64));

        group.bench_function("limit", |b| {
            b.iter(|| limit(&keyed.core, &timestamp, black_box(&pieces)));
        });
        group.bench_function("limit_mac", |b| {
            b.iter(|| limit_mac(&keyed.mac, &timestamp, black_box(&pieces)));
        });
        if payload.chunks == 1 {
            group.bench_function("handwritten", |b| {
                b.iter(|| handwritten(black_box(SECRET), black_box(&payload.whole)));
            });
        } else {
            // A body that arrives in pieces has to be put together first.
            group.bench_function("handwritten", |b| {
                b.iter(|| handwritten(black_box(SECRET), &black_box(&pieces).concat()));
            });
        }

        if payload.chunks == 1 {
            let request = || {
                Request::post(uri.clone())
                    .body(SignedBody::from(payload.whole.clone()))
                    .unwrap()
            };
            let mut signed = layer.layer(service_fn(noop::<SignedBody>));
            group.bench_function("layer", |b| b.iter(|| send(&mut signed, request())));
            let mut unsigned = service_fn(noop::<SignedBody>);
            group.bench_function("baseline", |b| b.iter(|| send(&mut unsigned, request())));
            group.bench_function("signer_headers", |b| {
                b.iter(|| send(&mut unsigned, by_hand(&signer, &api_key, request())));
            });
        } else {
            let request = || {
                let chunks = pieces.iter().cloned().collect();
                Request::post(uri.clone()).body(Chunked { chunks }).unwrap()
            };
            let mut signed = layer.layer(service_fn(noop::<SignedBody>));
            group.bench_function("layer", |b| b.iter(|| send(&mut signed, request())));
            let mut unsigned = service_fn(noop::<Chunked>);
            group.bench_function("baseline", |b| b.iter(|| send(&mut unsigned, request())));
        }

        // The verifier on the same requests: their headers as the layer set them, the same
        // body (in one piece or in chunks), through `RampnowVerifyLayer` to a service that does
        // nothing, minus the same requests straight to that service.
        let headers = {
            let capture = |request: Request<SignedBody>| {
                ready(Ok::<_, Infallible>(Response::new(
                    request.headers().clone(),
                )))
            };
            let request = Request::post(uri.clone())
                .body(SignedBody::from(payload.whole.clone()))
                .unwrap();
            send(&mut layer.layer(service_fn(capture)), request).into_body()
        };
        let verifier = RampnowVerifyLayer::new(Credentials::new(API_KEY, SECRET).unwrap())
            .with_clock(clock)
            .max_body_size(2 * 1024 * 1024);
        let received = || {
            let mut request = Request::post(uri.clone())
                .body(Chunked {
                    chunks: pieces.iter().cloned().collect(),
                })
                .unwrap();
            *request.headers_mut() = headers.clone();
            request
        };
        let mut verify = verifier.layer(service_fn(accept::<SignedBody>));
        assert_eq!(
            send(&mut verify, received()).status(),
            200,
            "{}",
            payload.name
        );
        group.bench_function("verify", |b| b.iter(|| send(&mut verify, received())));
        let mut unverified = service_fn(accept::<Chunked>);
        group.bench_function("verify_baseline", |b| {
            b.iter(|| send(&mut unverified, received()))
        });

        group.finish();
    }
}

criterion_group!(benches, signing);
criterion_main!(benches);
